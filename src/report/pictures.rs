//! The pictures of a run folder: a sample grid per site, the confusion
//! matrix of c' (and of c when present), real and synthetic label
//! histograms per site, and the loss curves that the sites reported.

use std::path::Path;

use super::{ReportError, RunReport};
use crate::data::IMAGE_BYTES;
use crate::imaging;

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
    let result = imaging::write_grid_png(&images[..count * IMAGE_BYTES], GRID_COLUMNS, path);
    result.map_err(|err| picture_error(path, err))
}

/// Writes `confusion.png` (and `confusion_centralised.png` with c),
/// `label_histograms.png`, and `losses.png` when a site reported epochs.
pub fn write_charts(dir: &Path, report: &RunReport) -> Result<(), ReportError> {
    if let Some(eval) = &report.final_classifier {
        let path = dir.join("confusion.png");
        let title = format!(
            "c' on the real test set, accuracy {:.1}%",
            eval.accuracy * 100.0
        );
        imaging::write_confusion_png(&title, &report.class_names, &eval.confusion, &path)
            .map_err(|err| picture_error(&path, err))?;
    }
    if let Some(eval) = &report.centralised {
        let path = dir.join("confusion_centralised.png");
        let title = format!(
            "c on the real test set, accuracy {:.1}%",
            eval.accuracy * 100.0
        );
        imaging::write_confusion_png(&title, &report.class_names, &eval.confusion, &path)
            .map_err(|err| picture_error(&path, err))?;
    }
    write_label_histograms(&dir.join("label_histograms.png"), report)?;
    write_losses(&dir.join("losses.png"), report)
}

/// Draws the share of each class per site, real shard beside synthetic
/// images, so shards and sample counts of different sizes compare.
fn write_label_histograms(path: &Path, report: &RunReport) -> Result<(), ReportError> {
    let mut series: Vec<(String, Vec<f64>)> = Vec::new();
    for site in &report.sites {
        for (kind, histogram) in [
            ("real", &site.real_label_histogram),
            ("synthetic", &site.synthetic_label_histogram),
        ] {
            if histogram.iter().sum::<u64>() > 0 {
                series.push((format!("{} {kind}", site.site_id), shares(histogram)));
            }
        }
    }
    if series.is_empty() {
        tracing::debug!("no label histograms to draw");
        return Ok(());
    }
    let classes = series.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let labels: Vec<String> = (0..classes)
        .map(|class| {
            report
                .class_names
                .get(class)
                .cloned()
                .unwrap_or_else(|| class.to_string())
        })
        .collect();
    let series: Vec<(&str, Vec<f64>)> = series
        .iter()
        .map(|(name, values)| (name.as_str(), values.clone()))
        .collect();
    imaging::write_bar_chart_png("Share of each class per site", &labels, &series, path)
        .map_err(|err| picture_error(path, err))
}

/// Draws one curve per site, training phase and named loss over the epochs.
fn write_losses(path: &Path, report: &RunReport) -> Result<(), ReportError> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for site in &report.sites {
        for record in &site.epochs {
            for (loss, value) in &record.losses {
                if !value.is_finite() {
                    continue;
                }
                let name = format!("{} {} {loss}", site.site_id, record.phase);
                let point = (record.epoch as f64, *value);
                match series.iter_mut().find(|(existing, _)| *existing == name) {
                    Some((_, points)) => points.push(point),
                    None => series.push((name, vec![point])),
                }
            }
        }
    }
    if series.is_empty() {
        tracing::debug!("no epoch losses to draw");
        return Ok(());
    }
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, points)| (name.as_str(), points.clone()))
        .collect();
    imaging::write_line_plot_png(
        "Training losses reported by the sites",
        "epoch",
        &series,
        path,
    )
    .map_err(|err| picture_error(path, err))
}

fn shares(histogram: &[u64]) -> Vec<f64> {
    let total = histogram.iter().sum::<u64>().max(1) as f64;
    histogram
        .iter()
        .map(|&count| count as f64 / total)
        .collect()
}

fn picture_error(path: &Path, err: imaging::ImagingError) -> ReportError {
    ReportError::Picture {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}
