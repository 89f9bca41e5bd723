//! Reading the images to audit: a CIFAR-10 record file, or a directory of
//! 32x32 RGB PNG files taken in file-name order.

use std::path::{Path, PathBuf};

use crate::data::cifar::{DataError, IMAGE_BYTES, IMAGE_SIDE, ImageSet};

/// Errors while reading synthetic images.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "synthetic images {0} not found; pass a CIFAR-10 record file or a directory of PNG files"
    )]
    Missing(PathBuf),
    #[error(transparent)]
    Records(#[from] DataError),
    #[error("failed to list {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} holds no .png file; write the synthetic images there as 32x32 RGB PNG files")]
    NoPng(PathBuf),
    #[error("{0} holds no image record; pass a CIFAR-10 record file with at least one image")]
    EmptyRecords(PathBuf),
    #[error("failed to decode {path} as PNG: {source}")]
    Decode {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("{path} is {width}x{height}; every synthetic image must be 32x32 RGB")]
    WrongSize {
        path: PathBuf,
        width: u32,
        height: u32,
    },
}

/// Reads synthetic images as CHW bytes from a record file or a PNG directory.
pub fn read_synthetic(path: &Path) -> Result<Vec<u8>, InputError> {
    if path.is_dir() {
        read_png_dir(path)
    } else if path.is_file() {
        let set = ImageSet::read(path)?;
        if set.is_empty() {
            return Err(InputError::EmptyRecords(path.to_path_buf()));
        }
        Ok(set.images)
    } else {
        Err(InputError::Missing(path.to_path_buf()))
    }
}

/// Reads every `.png` file in `dir`, sorted by file name, as CHW bytes.
/// An alpha channel is dropped; grey images are expanded to RGB.
pub fn read_png_dir(dir: &Path) -> Result<Vec<u8>, InputError> {
    let list_error = |source| InputError::List {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_error)? {
        let path = entry.map_err(list_error)?.path();
        let is_png = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("png"));
        if is_png && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(InputError::NoPng(dir.to_path_buf()));
    }
    files.sort();

    let mut images = Vec::with_capacity(files.len() * IMAGE_BYTES);
    for path in files {
        let decoded = image::open(&path).map_err(|source| InputError::Decode {
            path: path.clone(),
            source,
        })?;
        let (width, height) = (decoded.width(), decoded.height());
        if width as usize != IMAGE_SIDE || height as usize != IMAGE_SIDE {
            return Err(InputError::WrongSize {
                path,
                width,
                height,
            });
        }
        images.extend(hwc_to_chw(decoded.to_rgb8().as_raw()));
    }
    Ok(images)
}

/// Converts one interleaved RGB image to R, G and B planes.
fn hwc_to_chw(rgb: &[u8]) -> Vec<u8> {
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    let mut out = vec![0u8; IMAGE_BYTES];
    for (pixel, values) in rgb.chunks_exact(3).enumerate() {
        for (channel, &value) in values.iter().enumerate() {
            out[channel * plane + pixel] = value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    #[test]
    fn reads_png_directory_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        RgbImage::from_pixel(32, 32, Rgb([10, 20, 30]))
            .save(dir.path().join("b.png"))
            .unwrap();
        RgbImage::from_pixel(32, 32, Rgb([1, 2, 3]))
            .save(dir.path().join("a.png"))
            .unwrap();
        let images = read_synthetic(dir.path()).unwrap();
        assert_eq!(images.len(), 2 * IMAGE_BYTES);
        assert_eq!(images[0], 1);
        assert_eq!(images[1024], 2);
        assert_eq!(images[IMAGE_BYTES + 2048], 30);
    }

    #[test]
    fn rejects_empty_record_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.bin");
        std::fs::write(&path, b"").unwrap();
        let err = read_synthetic(&path).unwrap_err().to_string();
        assert!(err.contains("empty.bin"), "{err}");
        assert!(err.contains("no image record"), "{err}");
    }

    #[test]
    fn rejects_png_of_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        RgbImage::new(64, 32)
            .save(dir.path().join("big.png"))
            .unwrap();
        let err = read_synthetic(dir.path()).unwrap_err().to_string();
        assert!(err.contains("64x32"), "{err}");
        assert!(err.contains("must be 32x32"), "{err}");
    }

    #[test]
    fn rejects_directory_without_png() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_synthetic(dir.path()).unwrap_err();
        assert!(matches!(err, InputError::NoPng(_)), "{err}");
    }

    #[test]
    fn rejects_missing_path() {
        let err = read_synthetic(Path::new("/nonexistent/synthetic.bin")).unwrap_err();
        assert!(matches!(err, InputError::Missing(_)), "{err}");
    }

    #[test]
    fn reads_record_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synthetic.bin");
        let set = ImageSet {
            images: vec![5; 2 * IMAGE_BYTES],
            labels: vec![1, 2],
        };
        set.write(&path).unwrap();
        assert_eq!(read_synthetic(&path).unwrap(), set.images);
    }
}
