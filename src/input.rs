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

/// All of `path`, refusing more than `cap` bytes: a regular file by its length, before anything
/// is read; anything else (a device such as `/dev/zero`, a pipe, a `/proc` file) by reading at
/// most `cap + 1` bytes, so an endless stream is an error instead of exhausted memory.
pub fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            if cap >= 1 << 20 {
                std::format!(
                    "larger than {} MiB, the most read from such a file",
                    cap >> 20
                )
            } else {
                std::format!("larger than {cap} bytes, the most read from such a file")
            },
        )
    };
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > cap {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(bytes)
}

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
    /// A container that cannot be used (an unknown format, a missing member, no images).
    Format { path: PathBuf, why: String },
    /// One image's record in a dataset is malformed; `image` is its id.
    Record {
        path: PathBuf,
        image: std::string::String,
        why: std::string::String,
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
            InputError::Format { path, why } => write!(f, "{}: {why}", path.display()),
            InputError::Record { path, image, why } => {
                write!(f, "{}: image {image}: {why}", path.display())
            }
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

/// `path` opened for reading, if it is a regular file (or a directory, whose read fails as
/// usual). A pipe or device is refused before it is opened: opening a pipe with no writer
/// blocks forever, and features and tokens are read in place (positioned reads, `/dev/zero`
/// never ends).
pub(crate) fn open_regular(path: &Path) -> Result<std::fs::File, InputError> {
    let open = |source| InputError::Open {
        path: path.into(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(open)?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(open(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a pipe or a device)",
        )));
    }
    std::fs::File::open(path).map_err(open)
}

fn open_npy(path: &Path) -> Result<Npy, InputError> {
    let mut file = open_regular(path)?;
    let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    // The header is untrusted and read by this crate's own strict parser first: npyz's
    // Python-literal parser multiplies the shape unchecked (a panic with overflow checks, a
    // wrapped size without) and backtracks for minutes on nested brackets (found by the `npy`
    // fuzz target). Only a plain `{'descr': …, 'fortran_order': …, 'shape': (…)}` goes on.
    let header = npy_header::read(&mut file).map_err(|why| InputError::Npy {
        path: path.into(),
        header: true,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
    })?;
    // The shape's product (checked, in u64) times the item size must fit in what follows the
    // header before any reader sizes a buffer from it.
    let declared = header.declared_bytes();
    if declared.is_none_or(|b| b > file_bytes.saturating_sub(header.data_offset)) {
        return Err(InputError::ShapeTooLarge {
            path: path.into(),
            shape: header
                .shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                .collect(),
            file_bytes,
        });
    }
    use std::io::Seek;
    file.rewind().map_err(|source| InputError::Open {
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
    Ok(npy)
}

/// A strict reader of `.npy` headers (format versions 1–3): the dict literal numpy writes and
/// nothing else, in linear time.
pub(crate) mod npy_header {
    use std::io::Read;

    pub struct Header {
        pub shape: Vec<u64>,
        /// The dtype as written, e.g. `<f4`.
        pub descr: String,
        /// `fortran_order`.
        pub fortran: bool,
        /// Bytes per element (the digits of the dtype code, e.g. 4 for `<f4`).
        pub item_bytes: u64,
        /// Where the array data starts.
        pub data_offset: u64,
    }

    impl Header {
        /// Bytes the shape declares (`item_bytes · Π shape`), or `None` if that overflows a
        /// `u64` — also when only the product of the non-zero dimensions does: readers multiply
        /// the dimensions in other orders (npyz computes strides from the last dimension, so
        /// `(2, 0, 5, 10**19)` overflowed there although the whole product is 0 — found by
        /// the npy fuzz target with overflow checks), and that product bounds every partial one.
        pub fn declared_bytes(&self) -> Option<u64> {
            self.shape
                .iter()
                .filter(|&&d| d != 0)
                .try_fold(self.item_bytes, |acc, &d| acc.checked_mul(d))?;
            self.shape
                .iter()
                .try_fold(self.item_bytes, |acc, &d| acc.checked_mul(d))
        }
    }

    /// Longest header taken (numpy writes well under 4 KiB).
    const MAX_HEADER: usize = 1 << 16;
    /// Most dimensions taken.
    const MAX_DIMS: usize = 32;

    pub fn read(r: &mut impl Read) -> Result<Header, String> {
        let mut pre = [0u8; 8];
        r.read_exact(&mut pre)
            .map_err(|_| "not a .npy file (too short)".to_string())?;
        if &pre[..6] != b"\x93NUMPY" {
            return Err("not a .npy file (bad magic)".into());
        }
        let len_bytes = match pre[6] {
            1 => 2,
            2 | 3 => 4,
            v => return Err(format!("unsupported .npy format version {v}")),
        };
        let mut lb = [0u8; 4];
        r.read_exact(&mut lb[..len_bytes])
            .map_err(|_| "truncated .npy header".to_string())?;
        let len = u32::from_le_bytes(lb) as usize;
        if len > MAX_HEADER {
            return Err(format!(
                "a .npy header of {len} bytes (at most {MAX_HEADER})"
            ));
        }
        let mut h = vec![0u8; len];
        r.read_exact(&mut h)
            .map_err(|_| "truncated .npy header".to_string())?;
        let text =
            std::str::from_utf8(&h).map_err(|_| "a .npy header that is not text".to_string())?;
        let (descr, shape, fortran) = parse_dict(text).ok_or_else(|| {
            "unsupported .npy header (expected {'descr': …, 'fortran_order': …, 'shape': (…)})"
                .to_string()
        })?;
        let code = descr.trim_start_matches(['<', '>', '|', '=']);
        let item_bytes = code
            .get(1..)
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("unsupported .npy dtype {descr:?}"))?;
        Ok(Header {
            shape,
            descr,
            fortran,
            item_bytes,
            data_offset: (6 + 2 + len_bytes + len) as u64,
        })
    }

    /// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` in any key order, with
    /// numpy's padding; `None` for anything else.
    fn parse_dict(t: &str) -> Option<(String, Vec<u64>, bool)> {
        let mut c = Cursor {
            s: t.as_bytes(),
            i: 0,
        };
        c.ws();
        c.eat(b'{')?;
        let (mut descr, mut shape, mut order) = (None, None, None);
        loop {
            c.ws();
            if c.eat(b'}').is_some() {
                break;
            }
            let key = c.string()?;
            c.ws();
            c.eat(b':')?;
            c.ws();
            match key.as_str() {
                "descr" if descr.is_none() => descr = Some(c.string()?),
                "fortran_order" if order.is_none() => order = Some(c.boolean()?),
                "shape" if shape.is_none() => shape = Some(c.tuple()?),
                _ => return None,
            }
            c.ws();
            if c.eat(b',').is_none() {
                c.ws();
                c.eat(b'}')?;
                break;
            }
        }
        c.ws();
        (c.i == c.s.len()).then_some(())?;
        Some((descr?, shape?, order?))
    }

    struct Cursor<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Cursor<'_> {
        fn ws(&mut self) {
            while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
                self.i += 1;
            }
        }
        fn eat(&mut self, b: u8) -> Option<()> {
            (self.s.get(self.i) == Some(&b)).then(|| self.i += 1)
        }
        fn string(&mut self) -> Option<String> {
            let q = *self.s.get(self.i).filter(|&&q| q == b'\'' || q == b'"')?;
            self.i += 1;
            let start = self.i;
            while *self.s.get(self.i)? != q {
                self.i += 1;
            }
            let v = std::str::from_utf8(&self.s[start..self.i])
                .ok()?
                .to_string();
            self.i += 1;
            Some(v)
        }
        fn boolean(&mut self) -> Option<bool> {
            for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
                if self.s[self.i..].starts_with(word) {
                    self.i += word.len();
                    return Some(v);
                }
            }
            None
        }
        fn tuple(&mut self) -> Option<Vec<u64>> {
            self.eat(b'(')?;
            let mut dims = Vec::new();
            loop {
                self.ws();
                if self.eat(b')').is_some() {
                    return Some(dims);
                }
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                let n = std::str::from_utf8(&self.s[start..self.i])
                    .ok()?
                    .parse::<u64>()
                    .ok()?;
                let _ = self.eat(b'L'); // Python 2's long literals
                dims.push(n);
                if dims.len() > MAX_DIMS {
                    return None;
                }
                self.ws();
                if self.eat(b',').is_none() {
                    self.ws();
                    self.eat(b')')?;
                    return Some(dims);
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn header(dict: &str) -> Vec<u8> {
            let mut v = b"\x93NUMPY\x01\x00".to_vec();
            v.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            v.extend_from_slice(dict.as_bytes());
            v
        }

        #[test]
        fn numpy_headers_parse_and_others_do_not() {
            let ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 72), }   \n";
            let h = read(&mut &header(ok)[..]).unwrap();
            assert_eq!(
                (h.shape, h.item_bytes, h.data_offset),
                (vec![2, 3, 72], 4, 10 + ok.len() as u64)
            );
            let one = "{'shape': (5,), 'fortran_order': True, 'descr': '|b1'}";
            assert_eq!(read(&mut &header(one)[..]).unwrap().shape, vec![5]);
            let scalar = "{'descr': '<i8', 'fortran_order': False, 'shape': ()}";
            assert!(read(&mut &header(scalar)[..]).unwrap().shape.is_empty());
            for bad in [
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4, [[[[3, 2), }",
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                "{'descr': '<f4', 'shape': (1,), }",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} trailing",
            ] {
                assert!(read(&mut &header(bad)[..]).is_err(), "{bad}");
            }
            let huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0, 5, 10000000000000000020), }";
            assert_eq!(read(&mut &header(huge)[..]).unwrap().declared_bytes(), None);
            let empty = "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4, 72), }";
            assert_eq!(
                read(&mut &header(empty)[..]).unwrap().declared_bytes(),
                Some(0)
            );
            let nested = format!(
                "{{'descr': '<f4', 'fortran_order': False, 'shape': (4, {}3, 2), }}",
                "[".repeat(5000)
            );
            assert!(read(&mut &header(&nested)[..]).is_err());
        }
    }
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

/// Read `[K, R, d_in]` or `[R, d_in]` features, f32 or f16 (little-endian, C order), and
/// check them against `d_in`: the shape, at least one value, and no NaN or infinity. The whole
/// array in memory; [`crate::dataset`] reads the same files one image at a time.
pub fn read_features(path: &Path, d_in: usize) -> Result<Features, InputError> {
    use crate::dataset::Source;
    let src = crate::dataset::npy::Npy::open(path, d_in)?;
    let (images, regions) = (src.len(), src.regions());
    let mut data = Vec::new();
    images
        .checked_mul(regions)
        .and_then(|n| n.checked_mul(d_in))
        .and_then(|n| data.try_reserve_exact(n).ok())
        .ok_or_else(|| InputError::ShapeTooLarge {
            path: path.into(),
            shape: vec![images, regions, d_in],
            file_bytes: 0,
        })?;
    let mut image = Vec::new();
    for k in 0..images {
        src.read_raw(k, regions, &mut image)?;
        if let Some(i) = image.iter().position(|v| !v.is_finite()) {
            return Err(InputError::NonFinite {
                path: path.into(),
                image: k,
                region: i / d_in,
                index: i % d_in,
            });
        }
        data.extend_from_slice(&image);
    }
    Ok(Features {
        images,
        regions,
        d_in,
        data,
    })
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
        // past i64::MAX is out of range like any id ≥ vocab
        "u8" => npy.into_vec::<u64>().map(|v| {
            v.into_iter()
                .map(|x| x.min(i64::MAX as u64) as i64)
                .collect()
        }),
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
