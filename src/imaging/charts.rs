//! Bar, histogram and line charts, drawn with plotters at `CHART_SIZE`.
//!
//! Every value must be finite. A NaN or infinite value is rejected with its
//! series and index instead of being left out of the picture unseen.

use std::ops::Range;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::canvas::{self, FONT, series_color, text_style};
use super::{CHART_SIZE, ImagingError};

/// Share of the data's span added above the highest value, where the
/// legend sits.
const LEGEND_HEADROOM: f64 = 0.25;

/// Draws grouped bars, one group per label and one bar per series in each group.
pub fn write_bar_chart_png(
    title: &str,
    labels: &[String],
    series: &[(&str, Vec<f64>)],
    path: &Path,
) -> Result<(), ImagingError> {
    if labels.is_empty() {
        return Err(no_data(title, "no labels"));
    }
    if series.is_empty() {
        return Err(no_data(title, "no series"));
    }
    for (name, values) in series {
        if values.len() != labels.len() {
            return Err(ImagingError::SeriesLength {
                series: name.to_string(),
                found: values.len(),
                expected: labels.len(),
            });
        }
        check_finite(name, values.iter().copied())?;
    }
    let all = series.iter().flat_map(|(_, values)| values.iter().copied());
    let (low, high) = bounds(all.chain([0.0])).expect("the chain contains zero");
    // Bars stand on zero; the headroom above keeps the legend off the bars.
    let y_range = padded(
        low,
        high,
        if low < 0.0 { 0.1 } else { 0.0 },
        LEGEND_HEADROOM,
    );
    let x_range = 0.0..labels.len() as f64;
    let bar_width = 0.8 / series.len() as f64;

    let (width, height) = CHART_SIZE;
    canvas::render(path, width, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range, y_range.clone())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .label_style((FONT, 13))
            .draw()?;

        for (index, (name, values)) in series.iter().enumerate() {
            let color = series_color(index);
            let offset = 0.1 + index as f64 * bar_width;
            let bars = values.iter().enumerate().map(|(group, &value)| {
                let left = group as f64 + offset;
                Rectangle::new([(left, 0.0), (left + bar_width, value)], color.filled())
            });
            chart.draw_series(bars)?.label(*name).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
            });
        }

        // plotters places numeric ticks only, so the group names are drawn
        // under the axis at each group's centre.
        let style = text_style(13, (HPos::Center, VPos::Top));
        for (group, label) in labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(group as f64 + 0.5, y_range.start));
            root.draw(&Text::new(label.as_str(), (x, y + 6), style.clone()))?;
        }
        draw_legend(&mut chart)
    })
}

/// Draws overlaid histograms over one shared set of `bins` equal bins, each bar
/// the share of its series' values in that bin, so series of different
/// sizes compare.
pub fn write_histogram_png(
    title: &str,
    series: &[(&str, Vec<f64>)],
    bins: usize,
    path: &Path,
) -> Result<(), ImagingError> {
    if bins == 0 {
        return Err(ImagingError::ZeroBins);
    }
    if series.is_empty() {
        return Err(no_data(title, "no series"));
    }
    for (name, values) in series {
        check_finite(name, values.iter().copied())?;
    }
    let all = series.iter().flat_map(|(_, values)| values.iter().copied());
    let (low, high) = bounds(all).ok_or_else(|| no_data(title, "every series is empty"))?;
    let x_range = padded(low, high, 0.0, 0.0);
    let bin_width = (x_range.end - x_range.start) / bins as f64;
    let shares: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, values)| bin_shares(values, x_range.start, bin_width, bins))
        .collect();
    let top = shares.iter().flatten().copied().fold(0.0, f64::max);
    let y_range = 0.0..(top * (1.0 + LEGEND_HEADROOM)).max(f64::MIN_POSITIVE);

    let (width, height) = CHART_SIZE;
    canvas::render(path, width, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range.clone(), y_range)?;
        chart
            .configure_mesh()
            .x_desc("value")
            .y_desc("share of the series")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;

        for (index, ((name, _), series_shares)) in series.iter().zip(&shares).enumerate() {
            let color = series_color(index);
            let bars = series_shares.iter().enumerate().map(|(bin, &share)| {
                let left = x_range.start + bin as f64 * bin_width;
                Rectangle::new(
                    [(left, 0.0), (left + bin_width, share)],
                    color.mix(0.4).filled(),
                )
            });
            chart.draw_series(bars)?.label(*name).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
            });
        }
        draw_legend(&mut chart)
    })
}

/// Draws one line with point markers per series of (x, y) points, with
/// `x_label` as the x axis title.
pub fn write_line_plot_png(
    title: &str,
    x_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    path: &Path,
) -> Result<(), ImagingError> {
    if series.is_empty() {
        return Err(no_data(title, "no series"));
    }
    for (name, points) in series {
        check_finite(name, points.iter().flat_map(|&(x, y)| [x, y]))?;
    }
    let points = || series.iter().flat_map(|(_, points)| points.iter().copied());
    let (x_low, x_high) =
        bounds(points().map(|(x, _)| x)).ok_or_else(|| no_data(title, "every series is empty"))?;
    let (y_low, y_high) = bounds(points().map(|(_, y)| y)).expect("x and y have equal counts");
    let x_range = padded(x_low, x_high, 0.0, 0.0);
    let y_range = padded(y_low, y_high, 0.05, LEGEND_HEADROOM);

    let (width, height) = CHART_SIZE;
    canvas::render(path, width, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range, y_range)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;

        for (index, (name, points)) in series.iter().enumerate() {
            let color = series_color(index);
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            let markers = points
                .iter()
                .map(|&point| Circle::new(point, 3, color.filled()));
            chart.draw_series(markers)?;
        }
        draw_legend(&mut chart)
    })
}

type Chart<'a> = ChartContext<
    'a,
    BitMapBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn draw_legend(chart: &mut Chart<'_>) -> Result<(), canvas::DrawError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

fn no_data(title: &str, detail: &'static str) -> ImagingError {
    ImagingError::NoData {
        title: title.to_string(),
        detail,
    }
}

fn check_finite(series: &str, values: impl Iterator<Item = f64>) -> Result<(), ImagingError> {
    for (index, value) in values.enumerate() {
        if !value.is_finite() {
            return Err(ImagingError::NonFinite {
                series: series.to_string(),
                index,
                value,
            });
        }
    }
    Ok(())
}

/// Returns the minimum and maximum, or `None` for no values.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |range, value| match range {
        None => Some((value, value)),
        Some((low, high)) => Some((low.min(value), high.max(value))),
    })
}

/// Widens [`low`, `high`] by the fractions `below` and `above` of its span,
/// or by 0.5 on each side when the span is zero, so a constant series still
/// gets an axis.
fn padded(low: f64, high: f64, below: f64, above: f64) -> Range<f64> {
    let span = high - low;
    if span <= 0.0 {
        return (low - 0.5)..(high + 0.5);
    }
    (low - span * below)..(high + span * above)
}

/// Returns the share of `values` in each of `bins` bins of `bin_width` from
/// `start`. The maximum value falls in the last bin.
pub(super) fn bin_shares(values: &[f64], start: f64, bin_width: f64, bins: usize) -> Vec<f64> {
    let mut counts = vec![0usize; bins];
    for &value in values {
        let bin = (((value - start) / bin_width) as usize).min(bins - 1);
        counts[bin] += 1;
    }
    let total = values.len().max(1) as f64;
    counts
        .into_iter()
        .map(|count| count as f64 / total)
        .collect()
}
