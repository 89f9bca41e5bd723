use std::path::{Path, PathBuf};

use super::*;
use crate::data::IMAGE_BYTES;

/// `count` CIFAR images, image `i` filled with red `i`, green `2i`, blue `3i`.
fn solid_images(count: usize) -> Vec<u8> {
    let plane = IMAGE_BYTES / 3;
    let mut bytes = Vec::with_capacity(count * IMAGE_BYTES);
    for i in 0..count {
        for channel in 1..=3 {
            bytes.extend(std::iter::repeat_n((i * channel) as u8, plane));
        }
    }
    bytes
}

fn decode(path: &Path) -> image::RgbImage {
    image::open(path).expect("a decodable PNG").to_rgb8()
}

fn target(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join("nested").join(name)
}

fn class_names() -> Vec<String> {
    [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    .map(String::from)
    .to_vec()
}

/// Checks whether the picture has pixels other than white, that is, whether
/// something was drawn.
fn has_ink(picture: &image::RgbImage) -> bool {
    picture.pixels().any(|pixel| pixel.0 != [255, 255, 255])
}

#[test]
fn grid_has_expected_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "grid.png");
    write_grid_png(&solid_images(10), 4, &path).unwrap();
    let picture = decode(&path);
    let tile = TILE_SIDE + TILE_GAP;
    assert_eq!(picture.width(), 4 * tile + TILE_GAP);
    assert_eq!(picture.height(), 3 * tile + TILE_GAP);
}

#[test]
fn grid_places_image_pixels_in_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "grid.png");
    write_grid_png(&solid_images(6), 3, &path).unwrap();
    let picture = decode(&path);
    let tile = TILE_SIDE + TILE_GAP;
    for i in 0..6u32 {
        let x = TILE_GAP + (i % 3) * tile + TILE_SIDE / 2;
        let y = TILE_GAP + (i / 3) * tile + TILE_SIDE / 2;
        let expected = [i as u8, (2 * i) as u8, (3 * i) as u8];
        assert_eq!(picture.get_pixel(x, y).0, expected, "image {i}");
    }
}

#[test]
fn grid_shrinks_to_image_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "grid.png");
    write_grid_png(&solid_images(2), 8, &path).unwrap();
    let picture = decode(&path);
    assert_eq!(picture.width(), 2 * (TILE_SIDE + TILE_GAP) + TILE_GAP);
    assert_eq!(picture.height(), TILE_SIDE + 2 * TILE_GAP);
}

#[test]
fn grid_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "grid.png");
    let partial = write_grid_png(&[0u8; 100], 2, &path).unwrap_err();
    assert!(
        matches!(partial, ImagingError::PartialImage { len: 100 }),
        "{partial}"
    );
    let empty = write_grid_png(&[], 2, &path).unwrap_err();
    assert!(matches!(empty, ImagingError::NoImages), "{empty}");
    let columns = write_grid_png(&solid_images(1), 0, &path).unwrap_err();
    assert!(matches!(columns, ImagingError::ZeroColumns), "{columns}");
    assert!(!path.exists(), "a rejected grid left a file");
}

#[test]
fn pairs_have_expected_size_and_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "pairs.png");
    let left = solid_images(3);
    let right: Vec<u8> = left.iter().map(|&b| 255 - b).collect();
    let captions: Vec<String> = (0..3)
        .map(|i| format!("pair {i}: distance 0.{i}"))
        .collect();
    write_pairs_png(&left, &right, &captions, &path).unwrap();
    let picture = decode(&path);
    let tile = TILE_SIDE + TILE_GAP;
    assert_eq!(picture.width(), 2 * tile + TILE_GAP + CAPTION_WIDTH);
    assert_eq!(picture.height(), 3 * tile + TILE_GAP);
    let middle = TILE_GAP + TILE_SIDE / 2;
    assert_eq!(picture.get_pixel(middle, tile + middle).0, [1, 2, 3]);
    assert_eq!(
        picture.get_pixel(tile + middle, tile + middle).0,
        [254, 253, 252]
    );
}

#[test]
fn pairs_draw_captions() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "pairs.png");
    let images = solid_images(1);
    write_pairs_png(&images, &images, &["nearest copy".to_string()], &path).unwrap();
    let picture = decode(&path);
    let caption_start = 2 * (TILE_SIDE + TILE_GAP) + TILE_GAP;
    let ink = (caption_start..picture.width())
        .flat_map(|x| (0..picture.height()).map(move |y| (x, y)))
        .filter(|&(x, y)| picture.get_pixel(x, y).0 != [255, 255, 255])
        .count();
    assert!(ink > 50, "caption drew only {ink} pixels");
}

#[test]
fn pairs_reject_mismatched_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "pairs.png");
    let two = solid_images(2);
    let one = solid_images(1);
    let captions = vec!["a".to_string(), "b".to_string()];
    let unpaired = write_pairs_png(&two, &one, &captions, &path).unwrap_err();
    assert!(
        matches!(unpaired, ImagingError::UnpairedImages { left: 2, right: 1 }),
        "{unpaired}"
    );
    let missing = write_pairs_png(&two, &two, &captions[..1], &path).unwrap_err();
    assert!(
        matches!(
            missing,
            ImagingError::CaptionCount {
                captions: 1,
                pairs: 2
            }
        ),
        "{missing}"
    );
}

#[test]
fn bar_chart_has_chart_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "bars.png");
    let labels = class_names();
    let real: Vec<f64> = (0..10).map(|i| i as f64 * 10.0).collect();
    let synthetic: Vec<f64> = (0..10).map(|i| 100.0 - i as f64 * 5.0).collect();
    let series = [("real", real), ("synthetic", synthetic)];
    write_bar_chart_png("Label histograms", &labels, &series, &path).unwrap();
    let picture = decode(&path);
    assert_eq!((picture.width(), picture.height()), CHART_SIZE);
    assert!(has_ink(&picture));
}

#[test]
fn bar_chart_rejects_bad_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "bars.png");
    let labels = class_names();
    let short = [("short", vec![1.0; 9])];
    let err = write_bar_chart_png("t", &labels, &short, &path).unwrap_err();
    assert!(
        matches!(
            err,
            ImagingError::SeriesLength {
                found: 9,
                expected: 10,
                ..
            }
        ),
        "{err}"
    );
    let mut values = vec![1.0; 10];
    values[4] = f64::NAN;
    let err = write_bar_chart_png("t", &labels, &[("nan", values)], &path).unwrap_err();
    assert!(
        matches!(err, ImagingError::NonFinite { index: 4, .. }),
        "{err}"
    );
    let err = write_bar_chart_png("t", &labels, &[], &path).unwrap_err();
    assert!(matches!(err, ImagingError::NoData { .. }), "{err}");
    let err = write_bar_chart_png("t", &[], &[("s", vec![])], &path).unwrap_err();
    assert!(matches!(err, ImagingError::NoData { .. }), "{err}");
}

#[test]
fn histogram_has_chart_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "hist.png");
    let synthetic: Vec<f64> = (0..500).map(|i| 5.0 + (i % 37) as f64).collect();
    let holdout: Vec<f64> = (0..80).map(|i| 12.0 + (i % 23) as f64).collect();
    let series = [("synthetic", synthetic), ("holdout", holdout)];
    write_histogram_png("Distance to closest record", &series, 30, &path).unwrap();
    let picture = decode(&path);
    assert_eq!((picture.width(), picture.height()), CHART_SIZE);
    assert!(has_ink(&picture));
}

#[test]
fn histogram_accepts_constant_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "hist.png");
    write_histogram_png("constant", &[("zeros", vec![0.0; 20])], 10, &path).unwrap();
    assert_eq!(decode(&path).dimensions(), CHART_SIZE);
}

#[test]
fn histogram_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "hist.png");
    let err = write_histogram_png("t", &[("s", vec![1.0])], 0, &path).unwrap_err();
    assert!(matches!(err, ImagingError::ZeroBins), "{err}");
    let err = write_histogram_png("t", &[("s", vec![])], 5, &path).unwrap_err();
    assert!(matches!(err, ImagingError::NoData { .. }), "{err}");
    let err = write_histogram_png("t", &[("s", vec![1.0, f64::INFINITY])], 5, &path).unwrap_err();
    assert!(
        matches!(err, ImagingError::NonFinite { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn bin_shares_put_maximum_in_last_bin() {
    let shares = charts_bin_shares(&[0.0, 0.5, 1.0, 1.0], 0.0, 0.5, 2);
    assert_eq!(shares, vec![0.25, 0.75]);
}

fn charts_bin_shares(values: &[f64], start: f64, width: f64, bins: usize) -> Vec<f64> {
    super::charts::bin_shares(values, start, width, bins)
}

#[test]
fn confusion_has_expected_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "confusion.png");
    let confusion: Vec<Vec<u64>> = (0..10)
        .map(|row| {
            (0..10)
                .map(|col| {
                    if row == col {
                        80
                    } else {
                        row as u64 + col as u64
                    }
                })
                .collect()
        })
        .collect();
    write_confusion_png("c' on the test split", &class_names(), &confusion, &path).unwrap();
    let picture = decode(&path);
    assert_eq!(picture.dimensions(), confusion::picture_size(10));
    assert!(has_ink(&picture));
}

#[test]
fn confusion_rejects_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "confusion.png");
    let names = class_names();
    let rows = vec![vec![0u64; 10]; 9];
    let err = write_confusion_png("t", &names, &rows, &path).unwrap_err();
    assert!(
        matches!(
            err,
            ImagingError::ConfusionRows {
                found: 9,
                expected: 10
            }
        ),
        "{err}"
    );
    let mut ragged = vec![vec![0u64; 10]; 10];
    ragged[3].pop();
    let err = write_confusion_png("t", &names, &ragged, &path).unwrap_err();
    assert!(
        matches!(
            err,
            ImagingError::ConfusionColumns {
                row: 3,
                found: 9,
                expected: 10
            }
        ),
        "{err}"
    );
}

#[test]
fn line_plot_has_chart_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "losses.png");
    let generator: Vec<(f64, f64)> = (1..=5).map(|e| (e as f64, 2.0 / e as f64)).collect();
    let discriminator: Vec<(f64, f64)> = (1..=5).map(|e| (e as f64, 0.7)).collect();
    let series = [("generator", generator), ("discriminator", discriminator)];
    write_line_plot_png("GAN losses", "epoch", &series, &path).unwrap();
    let picture = decode(&path);
    assert_eq!((picture.width(), picture.height()), CHART_SIZE);
    assert!(has_ink(&picture));
}

#[test]
fn line_plot_accepts_single_point() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "one.png");
    write_line_plot_png("one epoch", "epoch", &[("loss", vec![(1.0, 0.5)])], &path).unwrap();
    assert_eq!(decode(&path).dimensions(), CHART_SIZE);
}

#[test]
fn line_plot_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = target(&dir, "lines.png");
    let err = write_line_plot_png("t", "x", &[], &path).unwrap_err();
    assert!(matches!(err, ImagingError::NoData { .. }), "{err}");
    let err = write_line_plot_png("t", "x", &[("s", vec![])], &path).unwrap_err();
    assert!(matches!(err, ImagingError::NoData { .. }), "{err}");
    let points = vec![(0.0, 1.0), (1.0, f64::NAN)];
    let err = write_line_plot_png("t", "x", &[("s", points)], &path).unwrap_err();
    assert!(
        matches!(err, ImagingError::NonFinite { index: 3, .. }),
        "{err}"
    );
}

#[test]
fn failed_write_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let path = blocker.join("grid.png");
    let err = write_grid_png(&solid_images(1), 1, &path).unwrap_err();
    assert!(matches!(err, ImagingError::Write { .. }), "{err}");
    assert!(err.to_string().contains("grid.png"), "{err}");
}
