//! PNG pictures for reports: grids and side-by-side pairs of CIFAR images,
//! and bar, histogram, confusion-matrix and line charts.
//!
//! Every picture is encoded in memory and written atomically. Text is drawn
//! with the DejaVu Sans font embedded in the binary, so no system font is needed.

mod canvas;
mod charts;
mod confusion;
mod tiles;

use std::path::PathBuf;

pub use charts::{write_bar_chart_png, write_histogram_png, write_line_plot_png};
pub use confusion::write_confusion_png;
pub use tiles::{write_grid_png, write_pairs_png};

/// Width and height in pixels of the bar, histogram and line charts.
pub const CHART_SIZE: (u32, u32) = (900, 500);
/// Side in pixels of one CIFAR image in grids and pairs (2x upscaled).
pub const TILE_SIDE: u32 = 64;
/// Pixels between tiles and around the edge of grids and pairs.
pub const TILE_GAP: u32 = 2;
/// Width in pixels of the caption column of a pairs picture.
pub const CAPTION_WIDTH: u32 = 420;

/// Invalid input to a picture, or a failure to draw or write it.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    #[error("no images to draw; pass at least one 3,072-byte CIFAR image")]
    NoImages,
    #[error("image buffer of {len} bytes is not a whole number of 3,072-byte CIFAR images")]
    PartialImage { len: usize },
    #[error("invalid column count 0: a grid needs at least one column")]
    ZeroColumns,
    #[error(
        "left and right sets differ in size ({left} and {right} images); pass one right image per left image"
    )]
    UnpairedImages { left: usize, right: usize },
    #[error("{captions} captions for {pairs} pairs; pass one caption per pair")]
    CaptionCount { captions: usize, pairs: usize },
    #[error("chart `{title}` has no data: {detail}")]
    NoData { title: String, detail: &'static str },
    #[error("series `{series}` has {found} values for {expected} labels; pass one value per label")]
    SeriesLength {
        series: String,
        found: usize,
        expected: usize,
    },
    #[error(
        "series `{series}` has the non-finite value {value} at index {index}; drop NaN and infinite values before plotting"
    )]
    NonFinite {
        series: String,
        index: usize,
        value: f64,
    },
    #[error("invalid bin count 0: a histogram needs at least one bin")]
    ZeroBins,
    #[error("confusion matrix has {found} rows for {expected} class names; pass one row per class")]
    ConfusionRows { found: usize, expected: usize },
    #[error(
        "confusion matrix row {row} has {found} entries for {expected} class names; pass one entry per class"
    )]
    ConfusionColumns {
        row: usize,
        found: usize,
        expected: usize,
    },
    #[error("failed to draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("failed to encode {path} as PNG: {source}")]
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests;
