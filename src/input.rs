//! Reading inputs (std only; the `m2` CLI and `m2-pack --calibrate`): region features and token
//! sequences from `.npy`, image ids from JSON. Every malformed input becomes a one-line error
//! naming the file and the problem.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// Images of region features, `[K, R, d_in]` f32 (a `[R, d_in]` file is one image).
pub struct Features {
    pub images: usize,
    pub regions: usize,
    pub d_in: usize,
    pub data: Vec<f32>,
}

impl Features {
    /// Image `k`'s rows `[R, d_in]`.
    pub fn image(&self, k: usize) -> &[f32] {
        let n = self.regions * self.d_in;
        &self.data[k * n..(k + 1) * n]
    }
}

fn open_npy(path: &Path) -> Result<npyz::NpyFile<std::io::BufReader<std::fs::File>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not a .npy file", path.display()))?;
    if npy.order() != npyz::Order::C {
        bail!(
            "{}: Fortran-ordered arrays are not supported (save with np.ascontiguousarray)",
            path.display()
        );
    }
    Ok(npy)
}

/// Read `[K, R, d_in]` or `[R, d_in]` features, f32 or f16, and check them against `d_in`.
pub fn read_features(path: &Path, d_in: usize) -> Result<Features> {
    let npy = open_npy(path)?;
    let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
    let descr = npy.dtype().descr();
    let (images, regions, last) = match shape[..] {
        [k, r, d] => (k, r, d),
        [r, d] => (1, r, d),
        _ => bail!(
            "{}: features must be [K, R, d_in] or [R, d_in], found shape {shape:?}",
            path.display()
        ),
    };
    if last != d_in {
        bail!(
            "{}: features have {last} values per region, the model's d_in is {d_in}",
            path.display()
        );
    }
    if images == 0 || regions == 0 {
        bail!("{}: empty feature array (shape {shape:?})", path.display());
    }
    let data: Vec<f32> = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "f4" => npy.into_vec::<f32>(),
        "f2" => npy
            .into_vec::<half::f16>()
            .map(|v| v.into_iter().map(|x| x.to_f32()).collect()),
        _ => bail!(
            "{}: features must be float32 or float16, found dtype {descr}",
            path.display()
        ),
    }
    .with_context(|| format!("{}: cannot read the array data", path.display()))?;
    if data.len() != images * regions * d_in {
        bail!(
            "{}: truncated array ({} of {} values)",
            path.display(),
            data.len(),
            images * regions * d_in
        );
    }
    let f = Features {
        images,
        regions,
        d_in,
        data,
    };
    for k in 0..images {
        if let Some(i) = f.image(k).iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: image {k} has a NaN or infinite value at region {}, index {}",
                path.display(),
                i / d_in,
                i % d_in
            );
        }
    }
    Ok(f)
}

/// Read `[K, T]` token ids (any integer dtype), checking every id against the vocabulary.
pub fn read_tokens(path: &Path, vocab: u32) -> Result<(usize, usize, Vec<u32>)> {
    let npy = open_npy(path)?;
    let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
    let descr = npy.dtype().descr();
    let (k, t) = match shape[..] {
        [k, t] => (k, t),
        [t] => (1, t),
        _ => bail!(
            "{}: tokens must be [K, T], found shape {shape:?}",
            path.display()
        ),
    };
    if k == 0 || t == 0 {
        bail!("{}: empty token array (shape {shape:?})", path.display());
    }
    fn widen<T: Into<i64>>(v: std::io::Result<Vec<T>>) -> std::io::Result<Vec<i64>> {
        v.map(|v| v.into_iter().map(Into::into).collect())
    }
    let ids: Vec<i64> = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "i8" => npy.into_vec::<i64>(),
        "i4" => widen(npy.into_vec::<i32>()),
        "i2" => widen(npy.into_vec::<i16>()),
        "i1" => widen(npy.into_vec::<i8>()),
        "u4" => widen(npy.into_vec::<u32>()),
        "u2" => widen(npy.into_vec::<u16>()),
        "u1" => widen(npy.into_vec::<u8>()),
        _ => bail!(
            "{}: tokens must be an integer array, found dtype {descr}",
            path.display()
        ),
    }
    .with_context(|| format!("{}: cannot read the array data", path.display()))?;
    let mut out = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        if id < 0 || id >= vocab as i64 {
            bail!(
                "{}: token id {id} at [{}, {}] is outside the vocabulary of {vocab}",
                path.display(),
                i / t,
                i % t
            );
        }
        out.push(id as u32);
    }
    Ok((k, t, out))
}

/// Read image ids: a JSON list of `K` numbers or strings.
pub fn read_ids(path: &Path, images: usize) -> Result<Vec<serde_json::Value>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Some(list) = v.as_array() else {
        bail!("{}: ids must be a JSON list", path.display());
    };
    if list.len() != images {
        bail!("{}: {} ids for {images} images", path.display(), list.len());
    }
    if let Some(bad) = list.iter().find(|x| !(x.is_number() || x.is_string())) {
        bail!(
            "{}: id {bad} is neither a number nor a string",
            path.display()
        );
    }
    Ok(list.clone())
}
