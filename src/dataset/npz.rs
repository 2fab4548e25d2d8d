//! bottom-up-attention.pytorch's per-image `.npz` files (`np.savez_compressed`): the features
//! are the member `x` `[N, d_in]`; the other members (`bbox`, `num_bbox`, `image_w`,
//! `image_h`, `info`) are not needed for captioning. A single file is one image; a directory
//! holds one file per image, the image id being the file name without `.npz`.

use super::{decode_floats, open_file, ImageId, Raw, Source};
use crate::input::{npy_header, InputError};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest `x` member read.
const MAX_MEMBER: u64 = super::MAX_RECORD;

pub struct Npz {
    path: PathBuf,
    files: Vec<(ImageId, PathBuf)>,
}

fn id_of(file: &Path) -> ImageId {
    ImageId::parse(
        &file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

impl Npz {
    pub fn file(path: &Path) -> Result<Npz, InputError> {
        open_file(path)?;
        Ok(Npz {
            path: path.into(),
            files: vec![(id_of(path), path.into())],
        })
    }

    pub fn dir(path: &Path) -> Result<Npz, InputError> {
        let open_err = |source| InputError::Open {
            path: path.into(),
            source,
        };
        let mut files = Vec::new();
        for e in std::fs::read_dir(path).map_err(open_err)? {
            let p = e.map_err(open_err)?.path();
            if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("npz")) {
                files.push((id_of(&p), p));
            }
        }
        // numeric ids in numeric order, then names
        files.sort();
        if let Some(w) = files.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(InputError::Format {
                path: path.into(),
                why: format!("two files for image {}", w[0].0),
            });
        }
        Ok(Npz {
            path: path.into(),
            files,
        })
    }
}

impl Source for Npz {
    fn path(&self) -> &Path {
        &self.path
    }
    fn len(&self) -> usize {
        self.files.len()
    }
    fn id(&self, k: usize) -> ImageId {
        self.files[k].0.clone()
    }
    fn read_raw(&self, k: usize, max_rows: usize, out: &mut Vec<f32>) -> Result<Raw, InputError> {
        let (id, file) = &self.files[k];
        let record = |why: String| InputError::Record {
            path: file.clone(),
            image: id.to_string(),
            why,
        };
        let mut zip = zip::ZipArchive::new(open_file(file)?)
            .map_err(|e| record(format!("not an .npz (zip) file: {e}")))?;
        let mut x = zip
            .by_name("x.npy")
            .map_err(|_| record("no member `x` (the region features)".into()))?;
        if x.size() > MAX_MEMBER {
            return Err(record(format!(
                "member `x` of {} bytes (at most {MAX_MEMBER})",
                x.size()
            )));
        }
        let mut bytes = Vec::with_capacity(x.size() as usize);
        x.by_ref()
            .take(MAX_MEMBER)
            .read_to_end(&mut bytes)
            .map_err(|e| record(format!("cannot decompress `x`: {e}")))?;
        let h = npy_header::read(&mut &bytes[..])
            .map_err(|why| record(format!("member `x`: {why}")))?;
        let f16 = match h.descr.as_str() {
            "<f4" => false,
            "<f2" => true,
            d => return Err(record(format!("`x` has dtype {d}, not float32 or float16"))),
        };
        if h.fortran {
            return Err(record("`x` is Fortran-ordered".into()));
        }
        let (n, width) = match h.shape[..] {
            [n, d] => (n as usize, d as usize),
            _ => {
                return Err(record(format!(
                    "`x` has shape {:?}, not [N, d_in]",
                    h.shape
                )))
            }
        };
        let item = if f16 { 2 } else { 4 };
        let data = &bytes[(h.data_offset as usize).min(bytes.len())..];
        match n.checked_mul(width).and_then(|v| v.checked_mul(item)) {
            Some(b) if b == data.len() => {}
            _ => {
                return Err(record(format!(
                    "`x` holds {} bytes, its shape {:?} says otherwise",
                    data.len(),
                    h.shape
                )))
            }
        }
        let rows = n.min(max_rows);
        decode_floats(&data[..rows * width * item], f16, out);
        Ok(Raw { regions: n, width })
    }
}
