//! The audit on real CIFAR-10 images: copies of training images planted
//! among held-out real images must be flagged, and the real images must not.
//!
//! Planted shifts fill the new border by reflection (the column or row next
//! to the border), not by the edge replication the audit's own variants
//! use, so the match must tolerate a different fill.

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::tensor::Device;
use fedsynth::data::cifar::{IMAGE_BYTES, IMAGE_SIDE, ImageSet};
use fedsynth::privacy::audit::{AuditConfig, AuditReport, AuditSummary, run_audit};
use fedsynth::privacy::augment::{self, Variant};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};

const TRAIN: usize = 3000;
const BASELINE: usize = 1000;
const REAL: usize = 500;
const PER_KIND: usize = 60;

fn data_dir() -> PathBuf {
    match std::env::var_os("FEDSYNTH_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cifar10/cifar-10-batches-bin")
        }
    }
}

/// How a synthetic image of the planted set was made.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Origin {
    /// A held-out real image, never in the training set.
    Real,
    Exact,
    Mirrored,
    /// Gaussian noise of sigma 2/255 on every value.
    Noised,
    /// Moved one pixel in one of four directions, border reflected.
    Shifted,
}

/// The planted set and the audit of it, computed once for all tests.
struct Planted {
    train: ImageSet,
    synthetic: Vec<u8>,
    origins: Vec<Origin>,
    report: AuditReport,
}

fn planted() -> &'static Planted {
    static PLANTED: OnceLock<Planted> = OnceLock::new();
    PLANTED.get_or_init(|| {
        let dir = data_dir();
        let batch = ImageSet::read(&dir.join("data_batch_1.bin")).expect("CIFAR-10 batch 1");
        let test = ImageSet::read(&dir.join("test_batch.bin")).expect("CIFAR-10 test batch");
        let train = batch.select(&(0..TRAIN).collect::<Vec<_>>());
        let holdout = test.select(&(0..BASELINE).collect::<Vec<_>>());
        let real = test.select(&(BASELINE..BASELINE + REAL).collect::<Vec<_>>());

        let mut rng = StdRng::seed_from_u64(17);
        let mut synthetic = real.images.clone();
        let mut origins = vec![Origin::Real; REAL];
        for origin in [
            Origin::Exact,
            Origin::Mirrored,
            Origin::Noised,
            Origin::Shifted,
        ] {
            for _ in 0..PER_KIND {
                let source = train.image(rng.random_range(0..TRAIN));
                synthetic.extend(plant(origin, source, &mut rng));
                origins.push(origin);
            }
        }
        let config = AuditConfig::default();
        let report = run_audit(&synthetic, &train, &holdout, &config, &Device::flex())
            .expect("audit of the planted set");
        Planted {
            train,
            synthetic,
            origins,
            report,
        }
    })
}

fn plant(origin: Origin, image: &[u8], rng: &mut StdRng) -> Vec<u8> {
    match origin {
        Origin::Real => unreachable!("real images are not planted"),
        Origin::Exact => image.to_vec(),
        Origin::Mirrored => augment::variant_bytes(image, Variant::Mirror),
        Origin::Noised => {
            let noise = Normal::new(0.0f64, 2.0).unwrap();
            image
                .iter()
                .map(|&v| (f64::from(v) + noise.sample(rng)).round().clamp(0.0, 255.0) as u8)
                .collect()
        }
        Origin::Shifted => {
            let directions = [(0, 1), (0, -1), (1, 0), (-1, 0)];
            let (dy, dx) = directions[rng.random_range(0..directions.len())];
            shift_reflected(image, dy, dx)
        }
    }
}

/// Moves the content by `(dy, dx)` pixels; the uncovered border takes the
/// reflection of the image about its edge.
fn shift_reflected(image: &[u8], dy: isize, dx: isize) -> Vec<u8> {
    let side = IMAGE_SIDE as isize;
    let reflect = |i: isize| {
        if i < 0 {
            -i
        } else if i >= side {
            2 * (side - 1) - i
        } else {
            i
        }
    };
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    let mut out = vec![0u8; IMAGE_BYTES];
    for c in 0..3 {
        for y in 0..side {
            for x in 0..side {
                let (sy, sx) = (reflect(y - dy), reflect(x - dx));
                out[c * plane + (y * side + x) as usize] =
                    image[c * plane + (sy * side + sx) as usize];
            }
        }
    }
    out
}

/// Share of the images of `origin` that the audit flagged.
fn flagged_share(planted: &Planted, origin: Origin) -> f64 {
    let of_origin: Vec<bool> = planted
        .origins
        .iter()
        .zip(&planted.report.synthetic)
        .filter(|(o, _)| **o == origin)
        .map(|(_, record)| record.flagged)
        .collect();
    of_origin.iter().filter(|&&f| f).count() as f64 / of_origin.len() as f64
}

#[test]
fn flags_every_exact_copy() {
    assert_eq!(flagged_share(planted(), Origin::Exact), 1.0);
}

#[test]
fn flags_every_mirrored_copy() {
    assert_eq!(flagged_share(planted(), Origin::Mirrored), 1.0);
}

#[test]
fn flags_noised_copies() {
    let share = flagged_share(planted(), Origin::Noised);
    assert!(share >= 0.95, "flagged {share} of noised copies");
}

#[test]
fn flags_shifted_copies() {
    let share = flagged_share(planted(), Origin::Shifted);
    assert!(share >= 0.95, "flagged {share} of shifted copies");
}

#[test]
fn spares_held_out_real_images() {
    let share = flagged_share(planted(), Origin::Real);
    assert!(share <= 0.05, "flagged {share} of held-out real images");
}

#[test]
fn holdout_false_positive_rate_is_low() {
    let rate = planted().report.nn_ratio.holdout_false_positive_rate;
    assert!(rate <= 0.05, "holdout false-positive rate {rate}");
}

#[test]
fn counts_exact_duplicates() {
    let report = &planted().report;
    // Exact and mirrored copies are exact duplicates of a training record.
    assert!(
        report.duplicates.exact >= 2 * PER_KIND,
        "{:?}",
        report.duplicates
    );
}

#[test]
fn copying_statistic_is_negative_with_copies() {
    let c_t = planted().report.copying.c_t;
    assert!(c_t < 0.0, "C_T {c_t}");
}

#[test]
fn nearest_record_of_exact_copy_is_its_source() {
    let planted = planted();
    let first_exact = REAL;
    let record = &planted.report.synthetic[first_exact];
    let image = &planted.synthetic[first_exact * IMAGE_BYTES..][..IMAGE_BYTES];
    assert_eq!(record.dcr, 0.0);
    assert_eq!(planted.train.image(record.nearest_train), image);
}

#[test]
fn summary_round_trips_and_holds_only_aggregates() {
    let summary = planted().report.summary();
    let json = serde_json::to_value(&summary).unwrap();
    let back: AuditSummary = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, summary);
    let object = json.as_object().unwrap();
    for value in object.values() {
        assert!(!value.is_array(), "summary holds a list: {json}");
    }
    assert!(!object.contains_key("flagged"));
    assert_eq!(summary.flagged_count, planted().report.flagged.len());
}

#[test]
fn write_outputs_creates_json_and_pictures() {
    let planted = planted();
    let dir = tempfile::tempdir().unwrap();
    planted
        .report
        .write_outputs(&planted.synthetic, &planted.train, dir.path())
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("audit.json")).unwrap()).unwrap();
    assert_eq!(
        json["flagged"].as_array().unwrap().len(),
        planted.report.flagged.len()
    );
    for name in ["closest_pairs.png", "dcr_histogram.png"] {
        let picture = image::open(dir.path().join(name));
        assert!(picture.is_ok(), "{name}: {:?}", picture.err());
    }
}
