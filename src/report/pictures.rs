//! The pictures of a run folder: a sample grid per site, the confusion
//! matrix of c', real and synthetic label histograms per site, and the
//! loss curves that the sites reported.

use std::path::Path;

use super::{ReportError, RunReport};
use crate::data::IMAGE_BYTES;

/// Columns of a site's sample grid.
const GRID_COLUMNS: usize = 16;
/// Images shown per site.
const GRID_IMAGES: usize = 128;

/// Writes the first images of `images` (CHW bytes) as a grid PNG.
pub fn write_samples(shard: u32, images: &[u8], path: &Path) -> Result<(), ReportError> {
    if images.is_empty() || !images.len().is_multiple_of(IMAGE_BYTES) {
        return Err(ReportError::Samples {
            shard,
            len: images.len(),
        });
    }
    let count = (images.len() / IMAGE_BYTES).min(GRID_IMAGES);
    draw_grid(&images[..count * IMAGE_BYTES], GRID_COLUMNS, path)
}

/// Writes `confusion.png`, `label_histograms.png` and `losses.png`.
pub fn write_charts(dir: &Path, report: &RunReport) -> Result<(), ReportError> {
    let _ = (dir, report);
    // TODO: draw the charts with `crate::imaging` once it lands on main.
    Ok(())
}

fn draw_grid(images: &[u8], columns: usize, path: &Path) -> Result<(), ReportError> {
    let _ = (images, columns, path);
    // TODO: call `crate::imaging::write_grid_png` once it lands on main.
    Ok(())
}
