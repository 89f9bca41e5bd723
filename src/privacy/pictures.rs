//! The audit's two pictures: closest pairs side by side and a histogram of
//! the two DCR distributions.
//!
//! NOTE: this is a private stand-in drawn with `image` alone, so it draws no
//! text (captions and titles are dropped) until the shared `crate::imaging`
//! writers with the same signatures are available to call instead.

use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};

use crate::data::cifar::{IMAGE_BYTES, IMAGE_SIDE};
use crate::fsutil;

const SCALE: u32 = 2;
const GAP: u32 = 4;

/// Writes one row per pair: the `left` image, a gap, the `right` image,
/// each scaled by 2. Both slices hold CHW images of `IMAGE_BYTES` each.
pub fn write_pairs_png(
    left: &[u8],
    right: &[u8],
    _captions: &[String],
    path: &Path,
) -> Result<(), String> {
    let rows = (left.len() / IMAGE_BYTES).min(right.len() / IMAGE_BYTES);
    let cell = IMAGE_SIDE as u32 * SCALE;
    let width = 2 * cell + 3 * GAP;
    let height = (rows as u32 * (cell + GAP) + GAP).max(cell);
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for row in 0..rows {
        let y = GAP + row as u32 * (cell + GAP);
        let span = row * IMAGE_BYTES..(row + 1) * IMAGE_BYTES;
        blit(&mut canvas, &left[span.clone()], GAP, y);
        blit(&mut canvas, &right[span], 2 * GAP + cell, y);
    }
    save(&canvas, path)
}

/// Writes a histogram of each series over shared bins, bars of the
/// series side by side in each bin, heights as the share of the series.
/// NaN values are left out.
pub fn write_histogram_png(
    _title: &str,
    series: &[(&str, Vec<f64>)],
    bins: usize,
    path: &Path,
) -> Result<(), String> {
    const COLOURS: [[u8; 3]; 4] = [[214, 39, 40], [31, 119, 180], [44, 160, 44], [255, 127, 14]];
    let (width, height, margin) = (640u32, 320u32, 10u32);
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let bins = bins.max(1);
    let finite = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite());
    let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if low.is_finite() && !series.is_empty() {
        let span = (high - low).max(f64::EPSILON);
        let bin_width = (width - 2 * margin) / bins as u32;
        let bar_width = (bin_width / series.len() as u32).max(1);
        let plot_height = f64::from(height - 2 * margin);
        for (s, (_, values)) in series.iter().enumerate() {
            let mut counts = vec![0usize; bins];
            let valid: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            for v in &valid {
                let bin = (((v - low) / span) * bins as f64) as usize;
                counts[bin.min(bins - 1)] += 1;
            }
            let colour = Rgb(COLOURS[s % COLOURS.len()]);
            for (bin, &count) in counts.iter().enumerate() {
                let share = count as f64 / valid.len().max(1) as f64;
                let bar = (share * plot_height) as u32;
                let x0 = margin + bin as u32 * bin_width + s as u32 * bar_width;
                for x in x0..(x0 + bar_width).min(width) {
                    for y in (height - margin - bar)..(height - margin) {
                        canvas.put_pixel(x, y, colour);
                    }
                }
            }
        }
    }
    save(&canvas, path)
}

/// Copies one CHW image into `canvas` at `(x0, y0)`, scaled by `SCALE`.
fn blit(canvas: &mut RgbImage, image: &[u8], x0: u32, y0: u32) {
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    for y in 0..IMAGE_SIDE {
        for x in 0..IMAGE_SIDE {
            let at = y * IMAGE_SIDE + x;
            let pixel = Rgb([image[at], image[plane + at], image[2 * plane + at]]);
            for dy in 0..SCALE {
                for dx in 0..SCALE {
                    let px = x0 + x as u32 * SCALE + dx;
                    let py = y0 + y as u32 * SCALE + dy;
                    canvas.put_pixel(px, py, pixel);
                }
            }
        }
    }
}

fn save(canvas: &RgbImage, path: &Path) -> Result<(), String> {
    let mut bytes = Cursor::new(Vec::new());
    canvas
        .write_to(&mut bytes, ImageFormat::Png)
        .map_err(|err| err.to_string())?;
    fsutil::write_atomic(path, bytes.get_ref()).map_err(|err| err.to_string())
}
