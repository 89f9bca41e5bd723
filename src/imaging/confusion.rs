//! The confusion matrix as a heat map: rows are true classes, columns are
//! predicted classes, each cell shaded by its share of the row and labelled
//! with its count.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, VPos};

use super::ImagingError;
use super::canvas::{self, series_color, text_style};

/// Pixels left of the matrix for the row names.
const LEFT: u32 = 120;
/// Pixels above the matrix for the title and the axis note.
const TOP: u32 = 64;
/// Pixels below the matrix for the column names.
const BOTTOM: u32 = 110;
const RIGHT: u32 = 20;

/// Heat map of `confusion[true][predicted]` counts with class names on both axes.
pub fn write_confusion_png(
    title: &str,
    class_names: &[String],
    confusion: &[Vec<u64>],
    path: &Path,
) -> Result<(), ImagingError> {
    let classes = class_names.len();
    if classes == 0 {
        return Err(ImagingError::NoData {
            title: title.to_string(),
            detail: "no class names",
        });
    }
    if confusion.len() != classes {
        return Err(ImagingError::ConfusionRows {
            found: confusion.len(),
            expected: classes,
        });
    }
    if let Some((row, entries)) = confusion
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != classes)
    {
        return Err(ImagingError::ConfusionColumns {
            row,
            found: entries.len(),
            expected: classes,
        });
    }

    let cell = cell_side(classes);
    let (width, height) = picture_size(classes);
    canvas::render(path, width, height, |root| {
        let centre = (width / 2) as i32;
        root.draw(&Text::new(
            title,
            (centre, 10),
            text_style(22, (HPos::Center, VPos::Top)),
        ))?;
        let note = "rows: true class, columns: predicted class, shade: share of the row";
        root.draw(&Text::new(
            note,
            (centre, 40),
            text_style(13, (HPos::Center, VPos::Top)),
        ))?;

        let count_size = (cell / 4).clamp(9, 14);
        for (row, entries) in confusion.iter().enumerate() {
            let row_total: u64 = entries.iter().sum();
            for (column, &count) in entries.iter().enumerate() {
                let share = if row_total == 0 {
                    0.0
                } else {
                    count as f64 / row_total as f64
                };
                let x = (LEFT + column as u32 * cell) as i32;
                let y = (TOP + row as u32 * cell) as i32;
                let corner = (x + cell as i32, y + cell as i32);
                root.draw(&Rectangle::new([(x, y), corner], shade(share).filled()))?;
                root.draw(&Rectangle::new([(x, y), corner], RGBColor(200, 200, 200)))?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let style = text_style(count_size, (HPos::Center, VPos::Center)).color(&ink);
                let middle = (x + cell as i32 / 2, y + cell as i32 / 2);
                root.draw(&Text::new(count.to_string(), middle, style))?;
            }
        }

        let row_style = text_style(13, (HPos::Right, VPos::Center));
        let column_style =
            text_style(13, (HPos::Left, VPos::Center)).transform(FontTransform::Rotate90);
        let matrix_bottom = (TOP + classes as u32 * cell) as i32;
        for (index, name) in class_names.iter().enumerate() {
            let middle = (index as u32 * cell + cell / 2) as i32;
            let row_anchor = (LEFT as i32 - 8, TOP as i32 + middle);
            root.draw(&Text::new(name.as_str(), row_anchor, row_style.clone()))?;
            let column_anchor = (LEFT as i32 + middle, matrix_bottom + 8);
            root.draw(&Text::new(
                name.as_str(),
                column_anchor,
                column_style.clone(),
            ))?;
        }
        Ok(())
    })
}

/// Width and height in pixels of the picture for `classes` classes.
pub(super) fn picture_size(classes: usize) -> (u32, u32) {
    let side = classes as u32 * cell_side(classes);
    (LEFT + side + RIGHT, TOP + side + BOTTOM)
}

/// Side of one cell: about 480 pixels for the whole matrix, within 16-64.
fn cell_side(classes: usize) -> u32 {
    (480 / classes.max(1) as u32).clamp(16, 64)
}

/// Blends white into the first series colour by `share` in [0, 1].
fn shade(share: f64) -> RGBColor {
    let RGBColor(r, g, b) = series_color(0);
    let blend = |channel: u8| (255.0 - share * (255.0 - channel as f64)).round() as u8;
    RGBColor(blend(r), blend(g), blend(b))
}
