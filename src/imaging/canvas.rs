//! The drawing surface shared by every picture: an RGB buffer that plotters
//! draws on, encoded as PNG and written atomically.

use std::path::Path;
use std::sync::Once;

use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ImagingError;
use crate::fsutil;

/// Font family name that every picture draws text with.
pub(super) const FONT: &str = "sans-serif";

/// Errors from plotters drawing on the bitmap.
pub(super) type DrawError =
    DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;

/// A drawing area over an RGB buffer.
pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Registers the embedded DejaVu Sans font with plotters, once per process.
fn register_fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // DejaVu Sans as shipped in the `dejavu` crate always parses, so a
        // failure here is a broken build, not bad input.
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font is invalid"));
        register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans Bold font is invalid"));
    });
}

/// Draws on a white `width` x `height` canvas and writes it to `path` as PNG.
pub(super) fn render<F>(path: &Path, width: u32, height: u32, draw: F) -> Result<(), ImagingError>
where
    F: FnOnce(&Area<'_>) -> Result<(), DrawError>,
{
    let pixels = vec![255u8; width as usize * height as usize * 3];
    render_over(path, pixels, width, height, draw)
}

/// Draws over existing RGB `pixels` and writes the result to `path` as PNG.
pub(super) fn render_over<F>(
    path: &Path,
    mut pixels: Vec<u8>,
    width: u32,
    height: u32,
    draw: F,
) -> Result<(), ImagingError>
where
    F: FnOnce(&Area<'_>) -> Result<(), DrawError>,
{
    register_fonts();
    let drawn = {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root).and_then(|()| root.present())
    };
    drawn.map_err(|err| ImagingError::Draw {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    write_png(path, &pixels, width, height)
}

/// Encodes RGB `pixels` as PNG and writes them to `path` atomically.
pub(super) fn write_png(
    path: &Path,
    pixels: &[u8],
    width: u32,
    height: u32,
) -> Result<(), ImagingError> {
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes)
        .write_image(pixels, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|source| ImagingError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
    fsutil::write_atomic(path, &bytes).map_err(|source| ImagingError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Text style of `size` pixels anchored at `anchor`.
pub(super) fn text_style(size: u32, anchor: (HPos, VPos)) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(Pos::new(anchor.0, anchor.1))
}

/// Colour of series `index`, from a palette that keeps neighbours distinct.
pub(super) fn series_color(index: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    COLORS[index % COLORS.len()]
}
