//! Reading inputs from files (std): region features and token sequences from `.npy`, and any
//! `.npy` array of a plain element type. Every malformed input is an [`InputError`] whose
//! message names the file and the problem in one line.
//!
//! ```no_run
//! # fn main() -> Result<(), m2::input::InputError> {
//! // [K, R, 2048] bottom-up-attention features, f32 or f16, checked against the model's d_in
//! let feats = m2::input::read_features("feats.npy".as_ref(), 2048)?;
//! for k in 0..feats.images {
//!     let rows: &[f32] = feats.image(k); // [R, d_in], what `M2::encode` and the searches take
//! #   let _ = rows;
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::vec::Vec;

/// Why an input file cannot be used. `Display` is one line naming the file; the I/O error
/// behind [`InputError::Open`] and [`InputError::Npy`] is its [`source`](std::error::Error::source).
#[derive(Debug)]
#[non_exhaustive]
pub enum InputError {
    /// The file cannot be opened or read.
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a `.npy` file, or its array data cannot be decoded.
    Npy {
        path: PathBuf,
        /// The header failed (not a `.npy` file), rather than the array data.
        header: bool,
        source: std::io::Error,
    },
    /// A Fortran-ordered array.
    FortranOrder { path: PathBuf },
    /// The array has the wrong number of dimensions; `expected` says which shapes are taken.
    Shape {
        path: PathBuf,
        expected: &'static str,
        shape: Vec<usize>,
    },
    /// Features whose last dimension is not the model's `d_in`.
    Width {
        path: PathBuf,
        found: usize,
        d_in: usize,
    },
    /// An array with no elements; `what` names the array (`feature`, `token`).
    Empty {
        path: PathBuf,
        what: &'static str,
        shape: Vec<usize>,
    },
    /// An element type the reader does not take; `expected` names the ones it does.
    DType {
        path: PathBuf,
        expected: &'static str,
        found: std::string::String,
    },
    /// A header whose shape declares more bytes than the file holds (or than any file can:
    /// the product overflows), caught before anything is allocated.
    ShapeTooLarge {
        path: PathBuf,
        shape: Vec<usize>,
        file_bytes: u64,
    },
    /// Fewer values than the header's shape.
    Truncated {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    /// A NaN or infinite feature value.
    NonFinite {
        path: PathBuf,
        image: usize,
        region: usize,
        index: usize,
    },
    /// A token id outside the vocabulary, at `[row, col]`.
    TokenOutOfRange {
        path: PathBuf,
        id: i64,
        row: usize,
        col: usize,
        vocab: u32,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Open { path, .. } => write!(f, "cannot open {}", path.display()),
            InputError::Npy {
                path, header: true, ..
            } => write!(f, "{} is not a .npy file", path.display()),
            InputError::Npy { path, .. } => {
                write!(f, "{}: cannot read the array data", path.display())
            }
            InputError::FortranOrder { path } => write!(
                f,
                "{}: Fortran-ordered arrays are not supported (save with np.ascontiguousarray)",
                path.display()
            ),
            InputError::Shape {
                path,
                expected,
                shape,
            } => write!(f, "{}: {expected}, found shape {shape:?}", path.display()),
            InputError::Width { path, found, d_in } => write!(
                f,
                "{}: features have {found} values per region, the model's d_in is {d_in}",
                path.display()
            ),
            InputError::Empty { path, what, shape } => {
                write!(
                    f,
                    "{}: empty {what} array (shape {shape:?})",
                    path.display()
                )
            }
            InputError::DType {
                path,
                expected,
                found,
            } => write!(f, "{}: {expected}, found dtype {found}", path.display()),
            InputError::ShapeTooLarge {
                path,
                shape,
                file_bytes,
            } => write!(
                f,
                "{}: the header's shape {shape:?} declares more data than the file's {file_bytes} \
                 bytes",
                path.display()
            ),
            InputError::Truncated {
                path,
                found,
                expected,
            } => write!(
                f,
                "{}: truncated array ({found} of {expected} values)",
                path.display()
            ),
            InputError::NonFinite {
                path,
                image,
                region,
                index,
            } => write!(
                f,
                "{}: image {image} has a NaN or infinite value at region {region}, index {index}",
                path.display()
            ),
            InputError::TokenOutOfRange {
                path,
                id,
                row,
                col,
                vocab,
            } => write!(
                f,
                "{}: token id {id} at [{row}, {col}] is outside the vocabulary of {vocab}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InputError::Open { source, .. } | InputError::Npy { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An array read from a `.npy` file: its shape and its values in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

mod sealed {
    pub trait Sealed {}
}

/// Element types [`read_npy`] reads: the file's dtype must be this type (no conversion).
pub trait Element: sealed::Sealed + Sized {
    #[doc(hidden)]
    fn read<R: std::io::Read>(npy: npyz::NpyFile<R>) -> std::io::Result<Vec<Self>>;
}

macro_rules! element {
    ($($t:ty)*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            fn read<R: std::io::Read>(npy: npyz::NpyFile<R>) -> std::io::Result<Vec<Self>> {
                npy.into_vec::<$t>()
            }
        }
    )*};
}
element!(f32 f64 i8 i16 i32 i64 u8 u16 u32 u64 bool);

type Npy = npyz::NpyFile<std::io::BufReader<std::fs::File>>;

fn open_npy(path: &Path) -> Result<Npy, InputError> {
    let file = std::fs::File::open(path).map_err(|source| InputError::Open {
        path: path.into(),
        source,
    })?;
    let npy =
        npyz::NpyFile::new(std::io::BufReader::new(file)).map_err(|source| InputError::Npy {
            path: path.into(),
            header: true,
            source,
        })?;
    if npy.order() != npyz::Order::C {
        return Err(InputError::FortranOrder { path: path.into() });
    }
    // The shape is untrusted: its product (in u64, checked) times the item size must fit in
    // the file before any reader sizes a buffer from it.
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let item = dtype_code(&npy.dtype().descr())
        .get(1..)
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    let declared = npy
        .shape()
        .iter()
        .try_fold(item, |acc, &d| acc.checked_mul(d));
    if declared.is_none_or(|b| b > file_bytes) {
        return Err(InputError::ShapeTooLarge {
            path: path.into(),
            shape: shape_of(&npy),
            file_bytes,
        });
    }
    Ok(npy)
}

fn shape_of(npy: &Npy) -> Vec<usize> {
    npy.shape().iter().map(|&s| s as usize).collect()
}

/// The dtype code without byte order: `f4`, `i8`, `b1`, …
fn dtype_code(descr: &str) -> &str {
    descr
        .trim_matches('\'')
        .trim_start_matches(['<', '>', '|', '='])
}

fn read_data<T>(path: &Path, v: std::io::Result<Vec<T>>) -> Result<Vec<T>, InputError> {
    v.map_err(|source| InputError::Npy {
        path: path.into(),
        header: false,
        source,
    })
}

/// Read a whole `.npy` array of element type `T` (the file's dtype must be `T`), any shape.
pub fn read_npy<T: Element>(path: &Path) -> Result<Array<T>, InputError> {
    let npy = open_npy(path)?;
    let shape = shape_of(&npy);
    let data = read_data(path, T::read(npy))?;
    let expected = shape.iter().product();
    if data.len() != expected {
        return Err(InputError::Truncated {
            path: path.into(),
            found: data.len(),
            expected,
        });
    }
    Ok(Array { shape, data })
}

/// Images of region features, `[K, R, d_in]` f32 (a `[R, d_in]` file is one image).
#[derive(Clone, Debug, PartialEq)]
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

/// Read `[K, R, d_in]` or `[R, d_in]` features, f32 or f16, and check them against `d_in`:
/// the shape, at least one value, and no NaN or infinity.
pub fn read_features(path: &Path, d_in: usize) -> Result<Features, InputError> {
    let npy = open_npy(path)?;
    let shape = shape_of(&npy);
    let descr = npy.dtype().descr();
    let (images, regions, last) = match shape[..] {
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
    if last != d_in {
        return Err(InputError::Width {
            path: path.into(),
            found: last,
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
    let data: Vec<f32> = match dtype_code(&descr) {
        "f4" => read_data(path, npy.into_vec::<f32>())?,
        "f2" => read_data(path, npy.into_vec::<half::f16>())?
            .into_iter()
            .map(|x| x.to_f32())
            .collect(),
        _ => {
            return Err(InputError::DType {
                path: path.into(),
                expected: "features must be float32 or float16",
                found: descr,
            })
        }
    };
    if data.len() != images * regions * d_in {
        return Err(InputError::Truncated {
            path: path.into(),
            found: data.len(),
            expected: images * regions * d_in,
        });
    }
    let f = Features {
        images,
        regions,
        d_in,
        data,
    };
    for k in 0..images {
        if let Some(i) = f.image(k).iter().position(|v| !v.is_finite()) {
            return Err(InputError::NonFinite {
                path: path.into(),
                image: k,
                region: i / d_in,
                index: i % d_in,
            });
        }
    }
    Ok(f)
}

/// Read `[K, T]` (or `[T]`) token ids of any integer dtype, checking every id against the
/// vocabulary: `(K, T, ids)`.
pub fn read_tokens(path: &Path, vocab: u32) -> Result<(usize, usize, Vec<u32>), InputError> {
    let npy = open_npy(path)?;
    let shape = shape_of(&npy);
    let descr = npy.dtype().descr();
    let (k, t) = match shape[..] {
        [k, t] => (k, t),
        [t] => (1, t),
        _ => {
            return Err(InputError::Shape {
                path: path.into(),
                expected: "tokens must be [K, T]",
                shape,
            })
        }
    };
    if k == 0 || t == 0 {
        return Err(InputError::Empty {
            path: path.into(),
            what: "token",
            shape,
        });
    }
    fn widen<T: Into<i64>>(v: std::io::Result<Vec<T>>) -> std::io::Result<Vec<i64>> {
        v.map(|v| v.into_iter().map(Into::into).collect())
    }
    let ids = match dtype_code(&descr) {
        "i8" => npy.into_vec::<i64>(),
        "i4" => widen(npy.into_vec::<i32>()),
        "i2" => widen(npy.into_vec::<i16>()),
        "i1" => widen(npy.into_vec::<i8>()),
        "u4" => widen(npy.into_vec::<u32>()),
        "u2" => widen(npy.into_vec::<u16>()),
        "u1" => widen(npy.into_vec::<u8>()),
        _ => {
            return Err(InputError::DType {
                path: path.into(),
                expected: "tokens must be an integer array",
                found: descr,
            })
        }
    };
    let ids = read_data(path, ids)?;
    let mut out = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        if id < 0 || id >= vocab as i64 {
            return Err(InputError::TokenOutOfRange {
                path: path.into(),
                id,
                row: i / t,
                col: i % t,
                vocab,
            });
        }
        out.push(id as u32);
    }
    Ok((k, t, out))
}
