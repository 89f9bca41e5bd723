//! The deploy manifest: one TOML file that describes a whole run, read by
//! `fedsynth launch`, by the coordinator and by every site.
//!
//! Unknown keys are rejected, and every validation error names its key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;

/// Errors while reading or validating a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("failed to read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid manifest {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "invalid manifest value `{key}` = {value}: with {sites} sites the per-site training count is about {per_site}, fewer than the {minimum} of one batch (the larger of gan.batch_size / 2 real images and classifier.batch_size); raise data.train_limit, lower sites.count or lower the batch sizes"
    )]
    ShardTooSmall {
        key: &'static str,
        value: usize,
        sites: usize,
        per_site: usize,
        minimum: usize,
    },
    #[error("invalid manifest value `{key}` = {value}: {fix}")]
    Invalid {
        key: &'static str,
        value: String,
        fix: &'static str,
    },
}

/// A whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Manifest {
    pub run: RunSection,
    pub data: DataSection,
    pub coordinator: CoordinatorSection,
    pub sites: SitesSection,
    pub gan: GanSection,
    pub classifier: ClassifierSection,
    pub synthetic: SyntheticSection,
    pub audit: AuditSection,
}

/// `[run]`: naming, output and compute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Run name; the run folder is `<out_dir>/<name>-<timestamp>`.
    pub name: String,
    /// Parent directory of run folders.
    pub out_dir: PathBuf,
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// Sharing mode; only `synthetic` is built.
    pub mode: SharingMode,
    pub backend: BackendKind,
    /// CPU threads for the whole run on this machine; 0 uses every core.
    /// The launcher splits them between the processes it starts.
    pub threads: usize,
}

/// What sites send to the coordinator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharingMode {
    /// Synthetic images with soft labels.
    #[default]
    Synthetic,
}

/// `[data]`: where CIFAR-10 is and how it is split into shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// CIFAR-10 directory; `--data` and `FEDSYNTH_DATA` take precedence.
    pub dir: Option<PathBuf>,
    /// `iid`, `dirichlet` or `classes`.
    pub partition: PartitionScheme,
    /// Dirichlet concentration, for `partition = "dirichlet"`.
    pub alpha: f64,
    /// Classes per site, for `partition = "classes"`.
    pub classes_per_site: usize,
    /// Fraction of each shard held out as the audit's baseline.
    pub holdout_fraction: f64,
    /// Uses only this many training images (a random subset), for small runs.
    pub train_limit: Option<usize>,
    /// Evaluates on only this many test images, for small runs.
    pub test_limit: Option<usize>,
}

/// Partitioning scheme of the training split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionScheme {
    #[default]
    Iid,
    Dirichlet,
    Classes,
}

/// `[coordinator]`: the server and its deadlines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorSection {
    /// Address to serve on; port 0 picks a free port.
    pub address: String,
    /// Sites that must join, and remain, for the run to go on.
    pub min_sites: usize,
    /// Seconds to wait for `min_sites` sites to join.
    pub join_timeout_s: u64,
    /// Seconds a site has for its local training, sampling and audit.
    pub train_timeout_s: u64,
    /// Seconds a site has to finish its upload once training is done.
    pub upload_timeout_s: u64,
    /// Seconds without a progress report after which a site counts as gone.
    pub heartbeat_timeout_s: u64,
    /// Epochs of c', the classifier trained on the pooled synthetic images.
    pub final_epochs: usize,
    /// Also trains the centralised classifier c on the union of the shards
    /// (local runs only, where every shard is on this machine).
    pub centralised_baseline: bool,
}

/// `[sites]`: how many sites the launcher starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SitesSection {
    pub count: usize,
}

/// `[gan]`: the local DCGAN at each site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GanSection {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub beta1: f64,
    pub latent_dim: usize,
}

/// `[classifier]`: the local classifier c_k at each site (and c, c').
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierSection {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Learning-rate factor applied after each epoch.
    pub lr_decay: f64,
}

/// `[synthetic]`: what each site samples and sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticSection {
    /// Images each site samples before the audit's release gate.
    pub samples_per_site: usize,
    /// Images per upload chunk; a chunk must stay well under 4 MiB.
    pub chunk_images: usize,
}

/// `[audit]`: the privacy audit and release gate at each site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    pub enabled: bool,
    /// Drops flagged images before upload.
    pub release_gate: bool,
    /// Neighbours in the nearest-neighbour ratio.
    pub k: usize,
    /// Nearest-neighbour ratio below which an image is flagged.
    pub nn_ratio_threshold: f64,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            name: "run".into(),
            out_dir: PathBuf::from("runs"),
            seed: 42,
            mode: SharingMode::Synthetic,
            backend: BackendKind::Flex,
            threads: 0,
        }
    }
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            dir: None,
            partition: PartitionScheme::Iid,
            alpha: 0.5,
            classes_per_site: 2,
            holdout_fraction: 0.05,
            train_limit: None,
            test_limit: None,
        }
    }
}

impl Default for CoordinatorSection {
    fn default() -> Self {
        CoordinatorSection {
            address: "127.0.0.1:0".into(),
            min_sites: 2,
            join_timeout_s: 120,
            train_timeout_s: 7200,
            upload_timeout_s: 600,
            heartbeat_timeout_s: 300,
            final_epochs: 10,
            centralised_baseline: false,
        }
    }
}

impl Default for SitesSection {
    fn default() -> Self {
        SitesSection { count: 2 }
    }
}

impl Default for GanSection {
    fn default() -> Self {
        GanSection {
            epochs: 200,
            batch_size: 128,
            learning_rate: 2e-4,
            beta1: 0.5,
            latent_dim: 100,
        }
    }
}

impl Default for ClassifierSection {
    fn default() -> Self {
        ClassifierSection {
            epochs: 10,
            batch_size: 32,
            learning_rate: 5e-3,
            lr_decay: 0.9,
        }
    }
}

impl Default for SyntheticSection {
    fn default() -> Self {
        SyntheticSection {
            samples_per_site: 5000,
            chunk_images: 256,
        }
    }
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            enabled: true,
            release_gate: true,
            k: 50,
            nn_ratio_threshold: 0.5,
        }
    }
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(path, &text)
    }

    /// Parses and validates manifest text; `path` names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|err| ManifestError::Parse {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Serialises the manifest back to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a manifest always serialises")
    }

    /// Checks every value that parsing cannot.
    pub fn validate(&self) -> Result<(), ManifestError> {
        positive("sites.count", self.sites.count)?;
        positive("coordinator.min_sites", self.coordinator.min_sites)?;
        if self.coordinator.min_sites > self.sites.count {
            return Err(invalid(
                "coordinator.min_sites",
                self.coordinator.min_sites,
                "must not exceed sites.count",
            ));
        }
        let address = &self.coordinator.address;
        let port = address
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
            return Err(invalid(
                "coordinator.address",
                address,
                "use HOST:PORT, such as 127.0.0.1:0 (port 0 picks a free port)",
            ));
        }
        if self.run.threads > crate::backend::MAX_THREADS {
            return Err(invalid(
                "run.threads",
                self.run.threads,
                "must be at most 1024 (more threads than cores only slow a run down); use 0 for every core",
            ));
        }
        positive("gan.epochs", self.gan.epochs)?;
        positive("classifier.epochs", self.classifier.epochs)?;
        positive("coordinator.final_epochs", self.coordinator.final_epochs)?;
        if let Some(limit) = self.data.train_limit {
            positive("data.train_limit", limit)?;
        }
        if let Some(limit) = self.data.test_limit {
            positive("data.test_limit", limit)?;
        }
        positive("gan.batch_size", self.gan.batch_size)?;
        if !self.gan.batch_size.is_multiple_of(2) {
            return Err(invalid(
                "gan.batch_size",
                self.gan.batch_size,
                "must be even: half real, half generated images",
            ));
        }
        positive("gan.latent_dim", self.gan.latent_dim)?;
        positive("classifier.batch_size", self.classifier.batch_size)?;
        positive(
            "synthetic.samples_per_site",
            self.synthetic.samples_per_site,
        )?;
        if self.synthetic.samples_per_site > crate::training::infer::MAX_SAMPLES {
            return Err(invalid(
                "synthetic.samples_per_site",
                self.synthetic.samples_per_site,
                "use at most 500000, the most images a site samples and holds in memory at once",
            ));
        }
        positive("synthetic.chunk_images", self.synthetic.chunk_images)?;
        // 1,024 images of 3,072 bytes plus labels is 3.2 MB, under 4 MiB.
        if self.synthetic.chunk_images > 1024 {
            return Err(invalid(
                "synthetic.chunk_images",
                self.synthetic.chunk_images,
                "use at most 1024 so a chunk stays under the 4 MiB gRPC message limit",
            ));
        }
        rate("gan.learning_rate", self.gan.learning_rate)?;
        rate("classifier.learning_rate", self.classifier.learning_rate)?;
        fraction("gan.beta1", self.gan.beta1, false)?;
        fraction("classifier.lr_decay", self.classifier.lr_decay, true)?;
        fraction("data.holdout_fraction", self.data.holdout_fraction, false)?;
        if self.data.partition == PartitionScheme::Dirichlet
            && !(self.data.alpha.is_finite() && self.data.alpha > 0.0)
        {
            return Err(invalid(
                "data.alpha",
                self.data.alpha,
                "must be a positive number",
            ));
        }
        if self.data.partition == PartitionScheme::Classes
            && !(1..=10).contains(&self.data.classes_per_site)
        {
            return Err(invalid(
                "data.classes_per_site",
                self.data.classes_per_site,
                "must be between 1 and 10",
            ));
        }
        if self.audit.enabled {
            positive("audit.k", self.audit.k)?;
            if !(self.audit.nn_ratio_threshold > 0.0 && self.audit.nn_ratio_threshold <= 1.0) {
                return Err(invalid(
                    "audit.nn_ratio_threshold",
                    self.audit.nn_ratio_threshold,
                    "must be in (0, 1]",
                ));
            }
        }
        self.check_shard_size()?;
        if !self.run.backend.is_compiled() {
            return Err(invalid(
                "run.backend",
                self.run.backend,
                "is not compiled into this binary; rebuild with `--features wgpu` or use \"flex\"",
            ));
        }
        Ok(())
    }
}

impl Manifest {
    /// Rejects shards too small to fill one batch of real images. The
    /// count is the mean over sites, after the holdout is set aside, so a
    /// skewed partition can still give one site fewer.
    fn check_shard_size(&self) -> Result<(), ManifestError> {
        let (key, value) = match self.data.train_limit {
            Some(limit) => ("data.train_limit", limit),
            None => ("sites.count", self.sites.count),
        };
        let pool = self.data.train_limit.unwrap_or(CIFAR_TRAIN_IMAGES);
        let per_site = pool / self.sites.count;
        let held_out = (per_site as f64 * self.data.holdout_fraction).round() as usize;
        let per_site = per_site.saturating_sub(held_out);
        let minimum = (self.gan.batch_size / 2).max(self.classifier.batch_size);
        if per_site < minimum {
            return Err(ManifestError::ShardTooSmall {
                key,
                value,
                sites: self.sites.count,
                per_site,
                minimum,
            });
        }
        Ok(())
    }
}

/// Images in the CIFAR-10 training split, which a run without
/// `data.train_limit` partitions.
const CIFAR_TRAIN_IMAGES: usize = 50_000;

fn invalid(key: &'static str, value: impl std::fmt::Display, fix: &'static str) -> ManifestError {
    ManifestError::Invalid {
        key,
        value: value.to_string(),
        fix,
    }
}

fn positive(key: &'static str, value: usize) -> Result<(), ManifestError> {
    if value == 0 {
        return Err(invalid(key, value, "must be at least 1"));
    }
    Ok(())
}

fn rate(key: &'static str, value: f64) -> Result<(), ManifestError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid(key, value, "must be a positive number"));
    }
    Ok(())
}

/// Checks `value` in [0, 1), or in (0, 1] when `upper_inclusive`.
fn fraction(key: &'static str, value: f64, upper_inclusive: bool) -> Result<(), ManifestError> {
    let ok = if upper_inclusive {
        value > 0.0 && value <= 1.0
    } else {
        (0.0..1.0).contains(&value)
    };
    if !ok {
        let fix = if upper_inclusive {
            "must be in (0, 1]"
        } else {
            "must be in [0, 1)"
        };
        return Err(invalid(key, value, fix));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn empty_manifest_takes_defaults() {
        let manifest = parse("").unwrap();
        assert_eq!(manifest, Manifest::default());
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = parse("[gan]\nepochz = 3\n").unwrap_err().to_string();
        assert!(err.contains("epochz"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("[sites]\ncount = 0\n", "sites.count"),
            ("[coordinator]\nmin_sites = 3\n", "coordinator.min_sites"),
            ("[gan]\nbatch_size = 7\n", "gan.batch_size"),
            (
                "[data]\npartition = \"dirichlet\"\nalpha = 0.0\n",
                "data.alpha",
            ),
            (
                "[data]\npartition = \"classes\"\nclasses_per_site = 11\n",
                "data.classes_per_site",
            ),
            (
                "[synthetic]\nchunk_images = 5000\n",
                "synthetic.chunk_images",
            ),
            ("[classifier]\nlr_decay = 1.5\n", "classifier.lr_decay"),
            (
                "[coordinator]\naddress = \"nonsense\"\n",
                "coordinator.address",
            ),
            (
                "[coordinator]\naddress = \"127.0.0.1:99999\"\n",
                "coordinator.address",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err}");
        }
    }

    #[test]
    fn rejects_zero_epochs_and_zero_limits() {
        let cases = [
            ("[gan]\nepochs = 0\n", "gan.epochs"),
            ("[classifier]\nepochs = 0\n", "classifier.epochs"),
            (
                "[coordinator]\nfinal_epochs = 0\n",
                "coordinator.final_epochs",
            ),
            ("[data]\ntrain_limit = 0\n", "data.train_limit"),
            ("[data]\ntest_limit = 0\n", "data.test_limit"),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err}");
            assert!(err.contains("at least 1"), "{text:?} gave {err}");
        }
    }

    #[test]
    fn rejects_samples_per_site_above_bound() {
        let limit = crate::training::infer::MAX_SAMPLES;
        let text = format!("[synthetic]\nsamples_per_site = {}\n", limit + 1);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("synthetic.samples_per_site"), "{err}");
        assert!(err.contains(&format!("at most {limit}")), "{err}");
        let text = format!("[synthetic]\nsamples_per_site = {limit}\n");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn rejects_threads_above_bound() {
        let limit = crate::backend::MAX_THREADS;
        let text = format!("[run]\nthreads = {}\n", limit + 1);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("run.threads"), "{err}");
        assert!(err.contains(&format!("at most {limit}")), "{err}");
        let text = format!("[run]\nthreads = {limit}\n");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn rejects_shards_too_small_for_one_batch() {
        let text = "[data]\ntrain_limit = 3\n[sites]\ncount = 2\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("`data.train_limit` = 3"), "{err}");
        assert!(err.contains("with 2 sites"), "{err}");
        assert!(err.contains("per-site training count is about 1,"), "{err}");
        assert!(err.contains("the 64 of one batch"), "{err}");
    }

    #[test]
    fn rejects_too_many_sites_for_split() {
        let err = parse("[sites]\ncount = 1000\n[coordinator]\nmin_sites = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`sites.count` = 1000"), "{err}");
        assert!(err.contains("count is about 47,"), "{err}");
    }

    #[test]
    fn accepts_shards_of_exactly_one_batch() {
        // 68 images per site, 3 held out (5%), leaves 65 >= 64.
        assert!(parse("[data]\ntrain_limit = 136\n").is_ok());
    }

    #[test]
    fn manifest_round_trips_through_toml() {
        let mut manifest = Manifest::default();
        manifest.sites.count = 3;
        manifest.data.train_limit = Some(600);
        let again = parse(&manifest.to_toml()).unwrap();
        assert_eq!(again, manifest);
    }
}
