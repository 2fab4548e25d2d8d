//! `.npy` features `[K, R, d_in]` or `[R, d_in]` (f32 or f16, little-endian, C order), read
//! image by image with positioned reads: memory holds one image, whatever the file's size.

use super::{decode_floats, io_record, open_file, ImageId, Raw, Source};
use crate::input::{npy_header, InputError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct Npy {
    path: PathBuf,
    file: std::fs::File,
    images: usize,
    regions: usize,
    width: usize,
    f16: bool,
    data_offset: u64,
}

impl Npy {
    pub fn open(path: &Path, d_in: usize) -> Result<Npy, InputError> {
        let mut file = open_file(path)?;
        let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let h = npy_header::read(&mut file).map_err(|why| InputError::Npy {
            path: path.into(),
            header: true,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
        })?;
        let shape: Vec<usize> = h
            .shape
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect();
        let f16 = match h.descr.as_str() {
            "<f4" => false,
            "<f2" => true,
            _ => {
                return Err(InputError::DType {
                    path: path.into(),
                    expected: "features must be little-endian float32 or float16",
                    found: h.descr,
                })
            }
        };
        if h.fortran {
            return Err(InputError::FortranOrder { path: path.into() });
        }
        let (images, regions, width) = match shape[..] {
            [k, r, d] => (k, r, d),
            [r, d] => (1, r, d),
            _ => {
                return Err(InputError::Shape {
                    path: path.into(),
                    expected: "features must be [K, R, d_in] or [R, d_in]",
                    shape,
                })
            }
        };
        if width != d_in {
            return Err(InputError::Width {
                path: path.into(),
                found: width,
                d_in,
            });
        }
        if images == 0 || regions == 0 {
            return Err(InputError::Empty {
                path: path.into(),
                what: "feature",
                shape,
            });
        }
        let declared = h.declared_bytes();
        if declared.is_none_or(|b| b > file_bytes.saturating_sub(h.data_offset)) {
            return Err(InputError::ShapeTooLarge {
                path: path.into(),
                shape,
                file_bytes,
            });
        }
        Ok(Npy {
            path: path.into(),
            file,
            images,
            regions,
            width,
            f16,
            data_offset: h.data_offset,
        })
    }
}

impl Npy {
    /// Rows per image (`R`).
    pub fn regions(&self) -> usize {
        self.regions
    }
}

impl Source for Npy {
    fn path(&self) -> &Path {
        &self.path
    }
    fn len(&self) -> usize {
        self.images
    }
    fn id(&self, k: usize) -> ImageId {
        ImageId::Num(k as u64)
    }
    fn read_raw(&self, k: usize, max_rows: usize, out: &mut Vec<f32>) -> Result<Raw, InputError> {
        let item: u64 = if self.f16 { 2 } else { 4 };
        let rows = self.regions.min(max_rows);
        // u64 and checked: on a 32-bit host one image of a huge file may not be addressable
        let (image_bytes, want) = (
            self.regions as u64 * self.width as u64 * item,
            rows as u64 * self.width as u64 * item,
        );
        let mut bytes = usize::try_from(want)
            .ok()
            .and_then(|n| {
                let mut v = Vec::new();
                v.try_reserve_exact(n).ok().map(|_| {
                    v.resize(n, 0u8);
                    v
                })
            })
            .ok_or_else(|| {
                io_record(
                    &self.path,
                    &self.id(k),
                    std::io::ErrorKind::OutOfMemory.into(),
                )
            })?;
        self.file
            .read_exact_at(&mut bytes, self.data_offset + k as u64 * image_bytes)
            .map_err(|e| io_record(&self.path, &self.id(k), e))?;
        decode_floats(&bytes, self.f16, out);
        Ok(Raw {
            regions: self.regions,
            width: self.width,
        })
    }
}
