//! Pictures made of CIFAR images: a grid of samples, and side-by-side pairs
//! with a caption per row (for example a synthetic image and its nearest
//! training image).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::canvas::{self, text_style};
use super::{CAPTION_WIDTH, ImagingError, TILE_GAP, TILE_SIDE};
use crate::data::{IMAGE_BYTES, IMAGE_SIDE};

/// Tiles `count` images (CIFAR CHW bytes, 3072 each) into a grid PNG, written atomically.
///
/// The grid has `columns` columns, or fewer when there are fewer images,
/// and as many rows as needed. Each image is upscaled to `TILE_SIDE` pixels.
pub fn write_grid_png(images: &[u8], columns: usize, path: &Path) -> Result<(), ImagingError> {
    let count = image_count(images)?;
    if columns == 0 {
        return Err(ImagingError::ZeroColumns);
    }
    let columns = columns.min(count);
    let rows = count.div_ceil(columns);
    let width = grid_extent(columns);
    let height = grid_extent(rows);

    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    for (index, image) in images.chunks_exact(IMAGE_BYTES).enumerate() {
        let x = tile_origin(index % columns);
        let y = tile_origin(index / columns);
        blit(&mut pixels, width, image, x, y);
    }
    canvas::write_png(path, &pixels, width, height)
}

/// Side-by-side pairs (left, right) per row, each row captioned with `captions[i]`.
pub fn write_pairs_png(
    left: &[u8],
    right: &[u8],
    captions: &[String],
    path: &Path,
) -> Result<(), ImagingError> {
    let pairs = image_count(left)?;
    let right_count = image_count(right)?;
    if right_count != pairs {
        return Err(ImagingError::UnpairedImages {
            left: pairs,
            right: right_count,
        });
    }
    if captions.len() != pairs {
        return Err(ImagingError::CaptionCount {
            captions: captions.len(),
            pairs,
        });
    }
    let width = grid_extent(2) + CAPTION_WIDTH;
    let height = grid_extent(pairs);

    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    let rows = left
        .chunks_exact(IMAGE_BYTES)
        .zip(right.chunks_exact(IMAGE_BYTES));
    for (row, (left_image, right_image)) in rows.enumerate() {
        let y = tile_origin(row);
        blit(&mut pixels, width, left_image, tile_origin(0), y);
        blit(&mut pixels, width, right_image, tile_origin(1), y);
    }

    canvas::render_over(path, pixels, width, height, |root| {
        let style = text_style(14, (HPos::Left, VPos::Center));
        let x = (grid_extent(2) + 8) as i32;
        for (row, caption) in captions.iter().enumerate() {
            let y = (tile_origin(row) + TILE_SIDE / 2) as i32;
            root.draw(&Text::new(caption.as_str(), (x, y), style.clone()))?;
        }
        Ok(())
    })
}

/// Counts the images in `bytes`, rejecting an empty or partial buffer.
fn image_count(bytes: &[u8]) -> Result<usize, ImagingError> {
    if bytes.is_empty() {
        return Err(ImagingError::NoImages);
    }
    if !bytes.len().is_multiple_of(IMAGE_BYTES) {
        return Err(ImagingError::PartialImage { len: bytes.len() });
    }
    Ok(bytes.len() / IMAGE_BYTES)
}

/// Pixels spanned by `tiles` tiles with a gap before, between and after them.
fn grid_extent(tiles: usize) -> u32 {
    tiles as u32 * (TILE_SIDE + TILE_GAP) + TILE_GAP
}

fn tile_origin(position: usize) -> u32 {
    TILE_GAP + position as u32 * (TILE_SIDE + TILE_GAP)
}

/// Copies one CHW image into the RGB canvas at (`x`, `y`), upscaled by
/// nearest neighbour to `TILE_SIDE` pixels.
fn blit(pixels: &mut [u8], width: u32, image: &[u8], x: u32, y: u32) {
    let scale = TILE_SIDE as usize / IMAGE_SIDE;
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    for row in 0..TILE_SIDE as usize {
        for column in 0..TILE_SIDE as usize {
            let source = (row / scale) * IMAGE_SIDE + column / scale;
            let target = ((y as usize + row) * width as usize + x as usize + column) * 3;
            for channel in 0..3 {
                pixels[target + channel] = image[channel * plane + source];
            }
        }
    }
}
