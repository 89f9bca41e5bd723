//! Splits the training split into site shards: IID, Dirichlet label skew and
//! k classes per site, each deterministic by seed.
//!
//! These are pure functions over labels, so they load no images. Every
//! shard keeps a random held-out part as the privacy audit's baseline.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Gamma};

use crate::data::cifar::CLASS_COUNT;
use crate::launch::manifest::{DataSection, PartitionScheme};

/// Partitioning scheme: the rule that spreads labels over sites.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scheme {
    /// Every site gets a uniform random share of the images.
    Iid,
    /// Per class, the share of each site is drawn from a symmetric
    /// Dirichlet distribution with concentration `alpha`. A small alpha
    /// gives a strong label skew.
    Dirichlet { alpha: f64 },
    /// Every site contains images of exactly `per_site` classes.
    Classes { per_site: usize },
}

/// A validated request for a partition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PartitionSpec {
    pub scheme: Scheme,
    pub sites: usize,
    pub seed: u64,
    /// Share of each shard held out as the audit's baseline, in [0, 1).
    pub holdout_fraction: f64,
}

/// One site's images, as indices into the training set, in ascending order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shard {
    pub train: Vec<usize>,
    pub holdout: Vec<usize>,
}

impl Shard {
    /// Number of images in the shard, training and held-out.
    pub fn len(&self) -> usize {
        self.train.len() + self.holdout.len()
    }

    /// Whether the shard contains no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A partition request that cannot be met.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PartitionError {
    #[error("invalid site count 0: a partition needs at least one site")]
    ZeroSites,
    #[error(
        "invalid site count {sites}: there are only {images} images, so use at most {images} sites"
    )]
    MoreSitesThanImages { sites: usize, images: usize },
    #[error("invalid Dirichlet alpha {alpha}: the concentration must be a positive finite number")]
    InvalidAlpha { alpha: f64 },
    #[error("invalid classes per site {per_site}: use a value from 1 to {CLASS_COUNT}")]
    InvalidClassesPerSite { per_site: usize },
    #[error("invalid holdout fraction {fraction}: use a value in [0, 1)")]
    InvalidHoldout { fraction: f64 },
    #[error("label {label} at index {index} is not a CIFAR-10 class; labels must be 0-9")]
    InvalidLabel { index: usize, label: u8 },
    #[error(
        "{per_site} classes per site exceed the {present} classes present in the labels; use at most {present}"
    )]
    TooFewClasses { per_site: usize, present: usize },
    #[error(
        "{sites} sites with {per_site} classes each cover only {covered} of the {present} classes present; use at least {needed} sites or more classes per site"
    )]
    ClassesUncovered {
        sites: usize,
        per_site: usize,
        covered: usize,
        present: usize,
        needed: usize,
    },
    #[error(
        "site {site} is left with no images: its classes have fewer images than sites holding them; use fewer sites or more classes per site"
    )]
    EmptySite { site: usize },
}

impl PartitionSpec {
    /// Builds the spec of a run from its manifest's `[data]` section.
    pub fn from_manifest(data: &DataSection, sites: usize, seed: u64) -> Self {
        let scheme = match data.partition {
            PartitionScheme::Iid => Scheme::Iid,
            PartitionScheme::Dirichlet => Scheme::Dirichlet { alpha: data.alpha },
            PartitionScheme::Classes => Scheme::Classes {
                per_site: data.classes_per_site,
            },
        };
        PartitionSpec {
            scheme,
            sites,
            seed,
            holdout_fraction: data.holdout_fraction,
        }
    }

    /// Checks every value that does not depend on the labels.
    pub fn validate(&self) -> Result<(), PartitionError> {
        if self.sites == 0 {
            return Err(PartitionError::ZeroSites);
        }
        if !(0.0..1.0).contains(&self.holdout_fraction) {
            return Err(PartitionError::InvalidHoldout {
                fraction: self.holdout_fraction,
            });
        }
        match self.scheme {
            Scheme::Iid => {}
            Scheme::Dirichlet { alpha } => {
                if !(alpha.is_finite() && alpha > 0.0) {
                    return Err(PartitionError::InvalidAlpha { alpha });
                }
            }
            Scheme::Classes { per_site } => {
                if !(1..=CLASS_COUNT).contains(&per_site) {
                    return Err(PartitionError::InvalidClassesPerSite { per_site });
                }
            }
        }
        Ok(())
    }
}

/// Splits `labels` into `spec.sites` disjoint shards that together hold
/// every index exactly once.
///
/// Every shard is non-empty. A shard of at least two images with a positive
/// holdout fraction holds out at least one image and trains on at least one.
pub fn partition(labels: &[u8], spec: &PartitionSpec) -> Result<Vec<Shard>, PartitionError> {
    spec.validate()?;
    if spec.sites > labels.len() {
        return Err(PartitionError::MoreSitesThanImages {
            sites: spec.sites,
            images: labels.len(),
        });
    }
    let by_class = indices_by_class(labels)?;
    let mut rng = StdRng::seed_from_u64(spec.seed);

    let mut sites = match spec.scheme {
        Scheme::Iid => split_iid(labels.len(), spec.sites, &mut rng),
        Scheme::Dirichlet { alpha } => {
            let mut sites = split_dirichlet(by_class, spec.sites, alpha, &mut rng);
            fill_empty_sites(&mut sites);
            sites
        }
        Scheme::Classes { per_site } => split_classes(by_class, spec.sites, per_site, &mut rng)?,
    };

    let shards = sites
        .iter_mut()
        .map(|indices| hold_out(indices, spec.holdout_fraction, &mut rng))
        .collect::<Vec<_>>();
    tracing::debug!(
        sites = spec.sites,
        images = labels.len(),
        scheme = ?spec.scheme,
        "partitioned the training split"
    );
    Ok(shards)
}

/// Groups indices by label, rejecting a label outside 0-9.
fn indices_by_class(labels: &[u8]) -> Result<Vec<Vec<usize>>, PartitionError> {
    let mut by_class = vec![Vec::new(); CLASS_COUNT];
    for (index, &label) in labels.iter().enumerate() {
        let class = by_class
            .get_mut(label as usize)
            .ok_or(PartitionError::InvalidLabel { index, label })?;
        class.push(index);
    }
    Ok(by_class)
}

fn split_iid(count: usize, sites: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut indices: Vec<usize> = (0..count).collect();
    indices.shuffle(rng);
    split_evenly(&indices, sites)
}

/// Cuts `indices` into `parts` contiguous runs whose sizes differ by at most one.
fn split_evenly(indices: &[usize], parts: usize) -> Vec<Vec<usize>> {
    (0..parts)
        .map(|part| {
            let start = part * indices.len() / parts;
            let end = (part + 1) * indices.len() / parts;
            indices[start..end].to_vec()
        })
        .collect()
}

/// Splits each class over the sites by proportions drawn from Dir(alpha).
///
/// Each class is split once, with no re-sampling, so this always ends. A
/// class whose gamma draws all underflow to zero (possible at a tiny alpha)
/// goes whole to one random site instead of dividing by zero. Sites may come
/// out empty; [`fill_empty_sites`] fixes that.
fn split_dirichlet(
    by_class: Vec<Vec<usize>>,
    sites: usize,
    alpha: f64,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let gamma = Gamma::new(alpha, 1.0).expect("alpha was checked to be positive and finite");
    let mut assigned = vec![Vec::new(); sites];
    for mut class in by_class {
        // Draw for every class, even an empty one, so the stream of random
        // numbers does not depend on which classes are present.
        let weights: Vec<f64> = (0..sites).map(|_| gamma.sample(rng)).collect();
        class.shuffle(rng);
        let total: f64 = weights.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            let site = rng.random_range(0..sites);
            assigned[site].extend_from_slice(&class);
            continue;
        }

        // Cut points at the cumulative proportions; the last one is the
        // class size, so every image is assigned.
        let mut cumulative = 0.0;
        let mut start = 0;
        for (site, weight) in weights.iter().enumerate() {
            cumulative += weight / total;
            let end = if site + 1 == sites {
                class.len()
            } else {
                ((cumulative * class.len() as f64) as usize).clamp(start, class.len())
            };
            assigned[site].extend_from_slice(&class[start..end]);
            start = end;
        }
    }
    assigned
}

/// Moves single images from the largest sites to empty ones.
///
/// Callers ensure there are at least as many images as sites, so while a
/// site is empty the largest contains at least two images and keeps one.
fn fill_empty_sites(sites: &mut [Vec<usize>]) {
    for empty in 0..sites.len() {
        if !sites[empty].is_empty() {
            continue;
        }
        let largest = (0..sites.len())
            .max_by_key(|&site| (sites[site].len(), std::cmp::Reverse(site)))
            .expect("there is at least one site");
        let moved = sites[largest]
            .pop()
            .expect("the largest site contains at least two images");
        sites[empty].push(moved);
    }
}

/// Gives each site `per_site` classes and splits each class evenly over the
/// sites that hold it.
///
/// The present classes are shuffled by the seed, and site `s` takes
/// positions `s * per_site .. (s + 1) * per_site` of that order, wrapping
/// around, so consecutive sites cover every class once enough sites exist.
fn split_classes(
    by_class: Vec<Vec<usize>>,
    sites: usize,
    per_site: usize,
    rng: &mut StdRng,
) -> Result<Vec<Vec<usize>>, PartitionError> {
    let mut present: Vec<usize> = (0..CLASS_COUNT)
        .filter(|&class| !by_class[class].is_empty())
        .collect();
    if per_site > present.len() {
        return Err(PartitionError::TooFewClasses {
            per_site,
            present: present.len(),
        });
    }
    let covered = (sites * per_site).min(present.len());
    if covered < present.len() {
        return Err(PartitionError::ClassesUncovered {
            sites,
            per_site,
            covered,
            present: present.len(),
            needed: present.len().div_ceil(per_site),
        });
    }
    present.shuffle(rng);

    let mut holders = vec![Vec::new(); CLASS_COUNT];
    for site in 0..sites {
        for slot in 0..per_site {
            let class = present[(site * per_site + slot) % present.len()];
            holders[class].push(site);
        }
    }

    let mut assigned = vec![Vec::new(); sites];
    for (class, mut indices) in by_class.into_iter().enumerate() {
        if holders[class].is_empty() {
            continue;
        }
        indices.shuffle(rng);
        let parts = split_evenly(&indices, holders[class].len());
        for (&site, part) in holders[class].iter().zip(parts) {
            assigned[site].extend(part);
        }
    }
    if let Some(site) = assigned.iter().position(Vec::is_empty) {
        return Err(PartitionError::EmptySite { site });
    }
    Ok(assigned)
}

/// Holds out a random `fraction` of one site's images.
fn hold_out(indices: &mut [usize], fraction: f64, rng: &mut StdRng) -> Shard {
    let count = holdout_count(indices.len(), fraction);
    indices.shuffle(rng);
    let (holdout, train) = indices.split_at(count);
    let mut shard = Shard {
        train: train.to_vec(),
        holdout: holdout.to_vec(),
    };
    shard.train.sort_unstable();
    shard.holdout.sort_unstable();
    shard
}

/// Rounds `len * fraction`, keeping at least one image on each side when
/// the fraction is positive and the shard has two images or more.
fn holdout_count(len: usize, fraction: f64) -> usize {
    if fraction <= 0.0 || len < 2 {
        return 0;
    }
    ((len as f64 * fraction).round() as usize).clamp(1, len - 1)
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
