//! The reference's `coco_detections.hdf5` (feature `hdf5`): one dataset `<image_id>_features`
//! `[N, d_in]` per image, as its data loader reads it (`f['%d_features' % image_id]`). Float
//! datasets of any width are converted to f32 by the HDF5 library.

use super::{ImageId, Raw, Source};
use crate::input::InputError;
use std::path::{Path, PathBuf};

pub struct Hdf5 {
    path: PathBuf,
    file: hdf5::File,
    /// Image ids and their dataset names, ordered by id.
    images: Vec<(ImageId, String)>,
}

impl Hdf5 {
    pub fn open(path: &Path) -> Result<Hdf5, InputError> {
        let fail = |e: hdf5::Error| InputError::Format {
            path: path.into(),
            why: format!("not a readable HDF5 file ({e})"),
        };
        let file = hdf5::File::open(path).map_err(fail)?;
        let mut images: Vec<(ImageId, String)> = file
            .member_names()
            .map_err(fail)?
            .into_iter()
            .filter_map(|name| {
                let id = name.strip_suffix("_features")?;
                Some((ImageId::parse(id), name))
            })
            .collect();
        images.sort();
        Ok(Hdf5 {
            path: path.into(),
            file,
            images,
        })
    }
}

impl Source for Hdf5 {
    fn path(&self) -> &Path {
        &self.path
    }
    fn len(&self) -> usize {
        self.images.len()
    }
    fn id(&self, k: usize) -> ImageId {
        self.images[k].0.clone()
    }
    fn read_raw(&self, k: usize, max_rows: usize, out: &mut Vec<f32>) -> Result<Raw, InputError> {
        let (id, name) = &self.images[k];
        let record = |why: String| InputError::Record {
            path: self.path.clone(),
            image: id.to_string(),
            why,
        };
        let ds = self
            .file
            .dataset(name)
            .map_err(|e| record(format!("dataset {name}: {e}")))?;
        let (n, width) = match ds.shape()[..] {
            [n, d] => (n, d),
            ref s => {
                return Err(record(format!(
                    "dataset {name} has shape {s:?}, not [N, d_in]"
                )))
            }
        };
        if !matches!(
            ds.dtype().and_then(|t| t.to_descriptor()),
            Ok(hdf5::types::TypeDescriptor::Float(_))
        ) {
            return Err(record(format!("dataset {name} is not floating point")));
        }
        // the dataset's size before reading it (a tiny chunked file can declare a huge shape)
        let bytes = (n as u64)
            .checked_mul(width as u64)
            .and_then(|v| v.checked_mul(4));
        if bytes.is_none_or(|b| b > super::MAX_RECORD) {
            return Err(record(format!(
                "dataset {name} of {n} × {width} values is larger than {} bytes",
                super::MAX_RECORD
            )));
        }
        let v: Vec<f32> = ds
            .read_raw()
            .map_err(|e| record(format!("dataset {name}: {e}")))?;
        let rows = n.min(max_rows);
        out.clear();
        out.extend_from_slice(&v[..(rows * width).min(v.len())]);
        Ok(Raw { regions: n, width })
    }
}
