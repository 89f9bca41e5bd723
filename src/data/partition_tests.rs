use std::time::{Duration, Instant};

use super::*;

/// `count` labels cycling through the ten classes.
fn cyclic_labels(count: usize) -> Vec<u8> {
    (0..count).map(|i| (i % CLASS_COUNT) as u8).collect()
}

fn spec(scheme: Scheme, sites: usize, seed: u64) -> PartitionSpec {
    PartitionSpec {
        scheme,
        sites,
        seed,
        holdout_fraction: 0.1,
    }
}

/// Asserts that the shards hold every index below `count` exactly once.
fn assert_covers_once(shards: &[Shard], count: usize, case: &str) {
    let mut seen = vec![0u32; count];
    for shard in shards {
        for &index in shard.train.iter().chain(&shard.holdout) {
            seen[index] += 1;
        }
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let repeated = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!(missing, 0, "{case}: indices missing from every shard");
    assert_eq!(repeated, 0, "{case}: indices in more than one place");
}

fn classes_of(shard: &Shard, labels: &[u8]) -> Vec<u8> {
    let mut classes: Vec<u8> = shard
        .train
        .iter()
        .chain(&shard.holdout)
        .map(|&i| labels[i])
        .collect();
    classes.sort_unstable();
    classes.dedup();
    classes
}

const SCHEMES: [(&str, Scheme); 5] = [
    ("iid", Scheme::Iid),
    ("dirichlet 0.5", Scheme::Dirichlet { alpha: 0.5 }),
    ("dirichlet 100", Scheme::Dirichlet { alpha: 100.0 }),
    ("classes 2", Scheme::Classes { per_site: 2 }),
    ("classes 10", Scheme::Classes { per_site: 10 }),
];

#[test]
fn every_scheme_covers_each_index_once() {
    let labels = cyclic_labels(1000);
    for (name, scheme) in SCHEMES {
        for sites in [5, 7, 10] {
            let case = format!("{name}, {sites} sites");
            let shards = partition(&labels, &spec(scheme, sites, 3)).unwrap();
            assert_eq!(shards.len(), sites, "{case}: shard count");
            assert_covers_once(&shards, labels.len(), &case);
            assert!(shards.iter().all(|s| !s.is_empty()), "{case}: empty shard");
        }
    }
}

#[test]
fn one_site_gets_every_image() {
    let labels = cyclic_labels(200);
    let schemes = [
        Scheme::Iid,
        Scheme::Dirichlet { alpha: 0.1 },
        Scheme::Classes { per_site: 10 },
    ];
    for scheme in schemes {
        let shards = partition(&labels, &spec(scheme, 1, 0)).unwrap();
        assert_eq!(shards.len(), 1, "{scheme:?}");
        assert_eq!(shards[0].len(), 200, "{scheme:?}");
    }
}

#[test]
fn every_scheme_is_deterministic_by_seed() {
    let labels = cyclic_labels(600);
    for (name, scheme) in SCHEMES {
        let first = partition(&labels, &spec(scheme, 5, 11)).unwrap();
        let again = partition(&labels, &spec(scheme, 5, 11)).unwrap();
        let other = partition(&labels, &spec(scheme, 5, 12)).unwrap();
        assert_eq!(first, again, "{name}: same seed, different shards");
        assert_ne!(first, other, "{name}: different seeds, same shards");
    }
}

#[test]
fn shard_indices_are_sorted() {
    let labels = cyclic_labels(300);
    for (name, scheme) in SCHEMES {
        for shard in partition(&labels, &spec(scheme, 5, 1)).unwrap() {
            assert!(shard.train.is_sorted(), "{name}: train not sorted");
            assert!(shard.holdout.is_sorted(), "{name}: holdout not sorted");
        }
    }
}

#[test]
fn iid_shard_sizes_differ_by_at_most_one() {
    let shards = partition(&cyclic_labels(1003), &spec(Scheme::Iid, 10, 0)).unwrap();
    let sizes: Vec<usize> = shards.iter().map(Shard::len).collect();
    let min = *sizes.iter().min().unwrap();
    let max = *sizes.iter().max().unwrap();
    assert!(max - min <= 1, "sizes {sizes:?}");
}

#[test]
fn classes_scheme_gives_each_site_exact_class_count() {
    let labels = cyclic_labels(2000);
    for per_site in [1, 2, 3, 10] {
        let scheme = Scheme::Classes { per_site };
        for shard in partition(&labels, &spec(scheme, 10, 5)).unwrap() {
            let classes = classes_of(&shard, &labels);
            assert_eq!(classes.len(), per_site, "classes {classes:?}");
        }
    }
}

#[test]
fn small_alpha_gives_label_skew() {
    let labels = cyclic_labels(5000);
    let skewed = partition(&labels, &spec(Scheme::Dirichlet { alpha: 0.05 }, 10, 2)).unwrap();
    let spread = partition(&labels, &spec(Scheme::Dirichlet { alpha: 1000.0 }, 10, 2)).unwrap();
    let dominant_share = |shards: &[Shard]| {
        let mut total = 0.0;
        for shard in shards {
            let mut counts = [0usize; CLASS_COUNT];
            for &i in shard.train.iter().chain(&shard.holdout) {
                counts[labels[i] as usize] += 1;
            }
            total += *counts.iter().max().unwrap() as f64 / shard.len() as f64;
        }
        total / shards.len() as f64
    };
    assert!(dominant_share(&skewed) > 0.5, "alpha 0.05 is not skewed");
    assert!(dominant_share(&spread) < 0.2, "alpha 1000 is skewed");
}

#[test]
fn dirichlet_many_sites_small_alpha_finishes_quickly() {
    let labels = cyclic_labels(50_000);
    let started = Instant::now();
    let shards = partition(&labels, &spec(Scheme::Dirichlet { alpha: 0.1 }, 100, 7)).unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(shards.len(), 100);
    assert!(shards.iter().all(|s| !s.is_empty()), "empty shard");
    assert_covers_once(&shards, labels.len(), "alpha 0.1, 100 sites");
}

#[test]
fn dirichlet_survives_classes_running_out() {
    // Class 0 has one image, class 1 seven and the other classes none, so
    // some of the eight sites get nothing from the proportions and must be
    // filled from the largest ones.
    let labels = vec![0, 1, 1, 1, 1, 1, 1, 1];
    for alpha in [1e-6, 0.1, 1.0] {
        let shards = partition(&labels, &spec(Scheme::Dirichlet { alpha }, 8, 4)).unwrap();
        let case = format!("alpha {alpha}");
        assert!(
            shards.iter().all(|s| s.len() == 1),
            "{case}: sizes not all 1"
        );
        assert_covers_once(&shards, labels.len(), &case);
    }
}

#[test]
fn dirichlet_tiny_alpha_has_no_nan_and_no_empty_site() {
    // At alpha 1e-9 the gamma draws underflow to zero for whole classes.
    let labels = cyclic_labels(500);
    let shards = partition(&labels, &spec(Scheme::Dirichlet { alpha: 1e-9 }, 50, 9)).unwrap();
    assert!(shards.iter().all(|s| !s.is_empty()), "empty shard");
    assert_covers_once(&shards, labels.len(), "alpha 1e-9");
}

#[test]
fn holdout_is_fraction_of_each_shard() {
    let labels = cyclic_labels(1000);
    let mut request = spec(Scheme::Iid, 4, 0);
    request.holdout_fraction = 0.2;
    for shard in partition(&labels, &request).unwrap() {
        assert_eq!(shard.holdout.len(), 50);
        assert_eq!(shard.train.len(), 200);
    }
}

#[test]
fn holdout_keeps_one_image_on_each_side() {
    let labels = cyclic_labels(4);
    let mut request = spec(Scheme::Iid, 2, 0);
    request.holdout_fraction = 0.01;
    for shard in partition(&labels, &request).unwrap() {
        assert_eq!(shard.holdout.len(), 1);
        assert_eq!(shard.train.len(), 1);
    }
}

#[test]
fn zero_holdout_fraction_holds_out_nothing() {
    let mut request = spec(Scheme::Iid, 3, 0);
    request.holdout_fraction = 0.0;
    for shard in partition(&cyclic_labels(90), &request).unwrap() {
        assert!(shard.holdout.is_empty());
    }
}

#[test]
fn single_image_shard_holds_out_nothing() {
    let shards = partition(&cyclic_labels(3), &spec(Scheme::Iid, 3, 0)).unwrap();
    for shard in shards {
        assert_eq!(shard.train.len(), 1);
        assert!(shard.holdout.is_empty());
    }
}

#[test]
fn invalid_requests_are_rejected_by_value() {
    let labels = cyclic_labels(100);
    let holdout = |fraction| PartitionSpec {
        holdout_fraction: fraction,
        ..spec(Scheme::Iid, 2, 0)
    };
    let cases = [
        (spec(Scheme::Iid, 0, 0), PartitionError::ZeroSites),
        (
            spec(Scheme::Iid, 101, 0),
            PartitionError::MoreSitesThanImages {
                sites: 101,
                images: 100,
            },
        ),
        (
            spec(Scheme::Dirichlet { alpha: 0.0 }, 2, 0),
            PartitionError::InvalidAlpha { alpha: 0.0 },
        ),
        (
            spec(Scheme::Dirichlet { alpha: -1.0 }, 2, 0),
            PartitionError::InvalidAlpha { alpha: -1.0 },
        ),
        (
            spec(
                Scheme::Dirichlet {
                    alpha: f64::INFINITY,
                },
                2,
                0,
            ),
            PartitionError::InvalidAlpha {
                alpha: f64::INFINITY,
            },
        ),
        (
            spec(Scheme::Classes { per_site: 0 }, 2, 0),
            PartitionError::InvalidClassesPerSite { per_site: 0 },
        ),
        (
            spec(Scheme::Classes { per_site: 11 }, 2, 0),
            PartitionError::InvalidClassesPerSite { per_site: 11 },
        ),
        (
            holdout(1.0),
            PartitionError::InvalidHoldout { fraction: 1.0 },
        ),
        (
            holdout(-0.1),
            PartitionError::InvalidHoldout { fraction: -0.1 },
        ),
        (
            spec(Scheme::Classes { per_site: 2 }, 3, 0),
            PartitionError::ClassesUncovered {
                sites: 3,
                per_site: 2,
                covered: 6,
                present: 10,
                needed: 5,
            },
        ),
    ];
    for (request, expected) in cases {
        let err = partition(&labels, &request).unwrap_err();
        assert_eq!(err, expected, "{request:?}");
    }
}

#[test]
fn nan_alpha_is_rejected() {
    let request = spec(Scheme::Dirichlet { alpha: f64::NAN }, 2, 0);
    let err = partition(&cyclic_labels(10), &request).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
}

#[test]
fn nan_holdout_is_rejected() {
    let request = PartitionSpec {
        holdout_fraction: f64::NAN,
        ..spec(Scheme::Iid, 2, 0)
    };
    let err = partition(&cyclic_labels(10), &request).unwrap_err();
    assert!(err.to_string().contains("holdout fraction NaN"), "{err}");
}

#[test]
fn label_above_nine_is_rejected_by_index() {
    let labels = [0, 1, 12, 3];
    let err = partition(&labels, &spec(Scheme::Iid, 2, 0)).unwrap_err();
    assert_eq!(
        err,
        PartitionError::InvalidLabel {
            index: 2,
            label: 12
        }
    );
}

#[test]
fn classes_scheme_rejects_more_classes_than_present() {
    let labels = [0, 1, 0, 1, 0, 1];
    let err = partition(&labels, &spec(Scheme::Classes { per_site: 3 }, 2, 0)).unwrap_err();
    assert_eq!(
        err,
        PartitionError::TooFewClasses {
            per_site: 3,
            present: 2
        }
    );
}

#[test]
fn classes_scheme_rejects_site_left_empty() {
    // One image per class, but ten sites per class with 10 classes each.
    let labels = cyclic_labels(10);
    let err = partition(&labels, &spec(Scheme::Classes { per_site: 10 }, 10, 0)).unwrap_err();
    assert!(
        matches!(err, PartitionError::EmptySite { .. }),
        "expected an empty site, got {err}"
    );
}

#[test]
fn error_messages_name_the_value() {
    let err = partition(&cyclic_labels(5), &spec(Scheme::Iid, 9, 0)).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("site count 9"), "{message}");
    assert!(message.contains("only 5 images"), "{message}");
}

#[test]
fn spec_from_manifest_maps_each_scheme() {
    let mut data = DataSection {
        holdout_fraction: 0.2,
        alpha: 0.3,
        classes_per_site: 4,
        ..DataSection::default()
    };
    let cases = [
        (PartitionScheme::Iid, Scheme::Iid),
        (PartitionScheme::Dirichlet, Scheme::Dirichlet { alpha: 0.3 }),
        (PartitionScheme::Classes, Scheme::Classes { per_site: 4 }),
    ];
    for (partition, scheme) in cases {
        data.partition = partition;
        let spec = PartitionSpec::from_manifest(&data, 6, 42);
        assert_eq!(spec.scheme, scheme);
        assert_eq!(spec.sites, 6);
        assert_eq!(spec.seed, 42);
        assert_eq!(spec.holdout_fraction, 0.2);
    }
}
