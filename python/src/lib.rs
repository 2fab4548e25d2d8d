//! `import m2`: the m2 engine from Python, through the library's public API only.
//!
//! * [`Model`] holds a validated blob (memory-mapped, or copied from `bytes`) and the kernel
//!   path (`M2_KERNEL` or the best this CPU has); every call carves its own workspace from the
//!   blob's memory plan, so one model serves many Python threads at once.
//! * The engine runs with the GIL released (`py.detach`): features are copied out of the numpy
//!   arrays first, results are turned into Python objects after.
//! * Every error is a Python exception carrying the library's message: `ValueError` for bad
//!   input (arrays, token ids, a blob that fails validation, a checkpoint that cannot be
//!   packed), `OSError` (`FileNotFoundError`, `PermissionError`, …) for files, `MemoryError`
//!   for a workspace that cannot be allocated. Inputs are checked before they reach the engine,
//!   which itself returns errors, never panics, on bad input.

use m2::blob::{AlignedBuf, DType, LoadError, MappedBlob};
use m2::input::InputError;
use m2::kernels::Kernels;
use m2::model::{EngineError, M2};
use m2::pack::calibrate::{pack_calibrated, Calibration};
use m2::pack::{infer_config_of, pack_with_progress, read_vocab_json, PackOptions};
use m2::plan::Plan;
use m2::search::batch::{decode_in_order, Batch};
use m2::search::{decode, Caption, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArrayDescrMethods, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{
    PyFileNotFoundError, PyMemoryError, PyOSError, PyOverflowError, PyPermissionError, PyTypeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use std::io::Write;
use std::path::{Path, PathBuf};

// ---- errors ------------------------------------------------------------------------------------

fn value_error(msg: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(msg.to_string())
}

/// An I/O error on `path` as the matching `OSError` subclass, with the path in the message.
fn os_error(path: &Path, e: &std::io::Error) -> PyErr {
    let msg = format!("{}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

fn load_error(e: LoadError) -> PyErr {
    match &e {
        LoadError::Io(p, io) => os_error(p, io),
        LoadError::Blob(..) => value_error(e),
    }
}

fn input_error(e: InputError) -> PyErr {
    match &e {
        InputError::Open { path, source } => os_error(path, source),
        _ => value_error(e),
    }
}

/// All of `path` (at most `cap` bytes: `/dev/zero` is an error, not exhausted memory), read
/// with the GIL released (a pipe whose writer is another Python thread can then write).
fn read_file(py: Python<'_>, path: &Path, cap: u64) -> PyResult<Vec<u8>> {
    py.detach(|| m2::input::read_capped(path, cap))
        .map_err(|e| os_error(path, &e))
}

/// An int argument as i64, saturated (a value past i64's range becomes its nearest end) so
/// that the range check after it names the argument in a ValueError, instead of pyo3's bare
/// OverflowError for a negative or huge value. Anything but an int is a TypeError (pyo3 names
/// the argument).
fn int_sat(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    match obj.extract::<i64>() {
        Ok(v) => Ok(v),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
            Ok(if obj.lt(0)? { i64::MIN } else { i64::MAX })
        }
        Err(e) => Err(e),
    }
}

/// [`int_sat`] for an argument that may be `None`.
fn opt_int_sat(obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    if obj.is_none() {
        Ok(None)
    } else {
        int_sat(obj).map(Some)
    }
}

/// `v` as a count in `lo..=hi`, or a ValueError naming `name`.
fn in_range(v: i64, name: &str, lo: usize, hi: usize) -> PyResult<usize> {
    match usize::try_from(v) {
        Ok(u) if (lo..=hi).contains(&u) => Ok(u),
        _ => Err(value_error(format!("{name} must be between {lo} and {hi}"))),
    }
}

/// A thread count: at least 1, at most the cores this process may use (each worker thread
/// holds a workspace: `threads=10**9` must not mean a workspace per image).
fn threads_of(v: i64) -> PyResult<usize> {
    if v < 1 {
        return Err(value_error("threads must be at least 1"));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(usize::try_from(v).unwrap_or(usize::MAX).min(cores))
}

// ---- arrays in -------------------------------------------------------------------------------

/// Images of region features copied out of numpy: `data[k]` is image k's `[R, d_in]` values.
struct Images {
    data: Vec<Vec<f32>>,
}

/// A float32 or float16 numpy array as f32 values (C order) and its shape.
fn floats(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<usize>, Vec<f32>)> {
    // rust-numpy's views take byte strides in whole items, dropping a remainder: a field of a
    // structured array (f32 at a 5-byte stride) or an `as_strided` view would be read at the
    // wrong bytes. numpy copies such an array to C order first (other arrays are read in place).
    let copied;
    let obj = match obj.cast::<PyUntypedArray>() {
        Ok(a)
            if {
                let item = a.dtype().itemsize().max(1) as isize;
                a.strides().iter().any(|s| s % item != 0)
            } =>
        {
            copied = obj
                .py()
                .import("numpy")?
                .call_method1("ascontiguousarray", (obj,))?;
            &copied
        }
        _ => obj,
    };
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        let a = a.as_array();
        return Ok((a.shape().to_vec(), a.iter().copied().collect()));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, half::f16>>() {
        let a = a.as_array();
        return Ok((a.shape().to_vec(), a.iter().map(|v| v.to_f32()).collect()));
    }
    Err(value_error(match obj.cast::<PyUntypedArray>() {
        Ok(a) => format!(
            "{what} must be a float32 or float16 numpy array, got dtype {}",
            a.dtype()
        ),
        Err(_) => format!(
            "{what} must be a float32 or float16 numpy array, got {}",
            obj.get_type().name()?
        ),
    }))
}

/// One image `[R, d_in]`, checked against the model (1 ≤ R ≤ max_regions, finite values).
fn image_of(obj: &Bound<'_, PyAny>, cfg: &m2::Config) -> PyResult<Vec<f32>> {
    let (shape, data) = floats(obj, "features")?;
    check_image(&shape, &data, cfg)?;
    Ok(data)
}

fn check_image(shape: &[usize], data: &[f32], cfg: &m2::Config) -> PyResult<()> {
    let (d_in, max) = (cfg.d_in as usize, cfg.max_regions as usize);
    match *shape {
        [r, d] if d == d_in && (1..=max).contains(&r) => {}
        [_, d] if d != d_in => {
            return Err(value_error(format!(
                "features have {d} values per region; this model takes d_in {d_in}"
            )))
        }
        [r, _] => {
            return Err(value_error(format!(
                "features have {r} regions; this model takes 1 to {max}"
            )))
        }
        _ => {
            return Err(value_error(format!(
                "features of one image must be [regions, {d_in}], got shape {shape:?}"
            )))
        }
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(value_error(format!(
            "features: region {} value {} is not finite",
            i / d_in,
            i % d_in
        )));
    }
    Ok(())
}

/// Many images: a `[K, R, d_in]` array or a sequence of `[R, d_in]` arrays.
fn images_of(obj: &Bound<'_, PyAny>, cfg: &m2::Config) -> PyResult<Images> {
    if obj.cast::<PyUntypedArray>().is_ok() {
        let (shape, data) = floats(obj, "features")?;
        let [k, r, d] = shape[..] else {
            return Err(value_error(format!(
                "a batch array must be [images, regions, {}], got shape {shape:?}",
                cfg.d_in
            )));
        };
        let per = r * d;
        // (not `with_capacity(k)`: a zero-size array may declare 2⁴⁰ images)
        let mut out = Vec::new();
        for i in 0..k {
            let image = data[i * per..(i + 1) * per].to_vec();
            check_image(&[r, d], &image, cfg).map_err(|e| in_image(e, i))?;
            out.push(image);
        }
        return Ok(Images { data: out });
    }
    let mut out = Vec::new();
    for (i, item) in obj.try_iter()?.enumerate() {
        out.push(image_of(&item?, cfg).map_err(|e| in_image(e, i))?);
    }
    Ok(Images { data: out })
}

fn in_image(e: PyErr, i: usize) -> PyErr {
    Python::attach(|py| value_error(format!("image {i}: {}", e.value(py))))
}

/// Token ids `[T]` or `[K, T]` of any integer dtype, checked against the vocabulary.
fn tokens_of(obj: &Bound<'_, PyAny>, vocab: u32) -> PyResult<(Vec<usize>, Vec<u32>)> {
    let np = obj.py().import("numpy")?;
    let arr = np.call_method1("asarray", (obj,))?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    if kind != "i" && kind != "u" {
        return Err(value_error(format!(
            "tokens must be an integer array, got dtype {}",
            arr.getattr("dtype")?
        )));
    }
    // unsigned as uint64, signed as int64: no id wraps, so an error shows the id given
    fn checked<T: numpy::Element + Copy + Into<i128>>(
        arr: &Bound<'_, PyAny>,
        vocab: u32,
    ) -> PyResult<(Vec<usize>, Vec<u32>)> {
        let a = arr.extract::<PyReadonlyArrayDyn<'_, T>>()?;
        let a = a.as_array();
        let mut ids = Vec::with_capacity(a.len());
        for (i, &id) in a.iter().enumerate() {
            let id: i128 = id.into();
            if id < 0 || id >= i128::from(vocab) {
                return Err(value_error(format!(
                    "token {id} at position {i} is outside the vocabulary (0..{vocab})"
                )));
            }
            ids.push(id as u32);
        }
        Ok((a.shape().to_vec(), ids))
    }
    if kind == "u" {
        checked::<u64>(&arr.call_method1("astype", ("uint64",))?, vocab)
    } else {
        checked::<i64>(&arr.call_method1("astype", ("int64",))?, vocab)
    }
}

// ---- the model -------------------------------------------------------------------------------

enum Bytes {
    Mapped(MappedBlob),
    Owned(AlignedBuf),
}

/// A captioning model: an m2 blob (made by `m2.pack` or `m2-pack`), validated once.
#[pyclass(frozen, module = "m2")]
struct Model {
    bytes: Bytes,
    cfg: m2::Config,
    kernels: Kernels,
    threads: usize,
}

/// The keyword options of every caption method: `beam=5, max_len=20, greedy=False,
/// return_tokens=False, return_score=False`, checked against the model.
struct Options {
    /// `beam` is the plan's: 1 when greedy.
    search: SearchOptions,
    greedy: bool,
    return_tokens: bool,
    return_score: bool,
}

impl Options {
    fn parse(cfg: &m2::Config, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Options> {
        let (mut beam, mut max_len) = (5i64, m2::plan::DEFAULT_MAX_LEN as i64);
        let named = |key: &str, e: PyErr| PyTypeError::new_err(format!("{key}: {e}"));
        let (mut greedy, mut return_tokens, mut return_score) = (false, false, false);
        for (key, value) in kwargs.into_iter().flatten() {
            match key.extract::<String>()?.as_str() {
                "beam" => beam = int_sat(&value).map_err(|e| named("beam", e))?,
                "max_len" => max_len = int_sat(&value).map_err(|e| named("max_len", e))?,
                "greedy" => greedy = value.extract().map_err(|e| named("greedy", e))?,
                "return_tokens" => {
                    return_tokens = value.extract().map_err(|e| named("return_tokens", e))?
                }
                "return_score" => {
                    return_score = value.extract().map_err(|e| named("return_score", e))?
                }
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "unexpected keyword argument '{other}' (beam, max_len, greedy, \
                         return_tokens, return_score)"
                    )))
                }
            }
        }
        let max_len = in_range(max_len, "max_len", 1, cfg.max_len())?;
        let beam = in_range(beam, "beam", 1, m2::plan::MAX_BEAM.min(cfg.vocab as usize))?;
        Ok(Options {
            search: SearchOptions {
                beam: if greedy { 1 } else { beam },
                max_len,
            },
            greedy,
            return_tokens,
            return_score,
        })
    }
}

/// A zeroed workspace buffer for `plan`, or `MemoryError`.
fn workspace_memory(plan: &Plan) -> PyResult<Vec<f32>> {
    let bytes = plan.checked_total_bytes().ok_or_else(|| {
        PyMemoryError::new_err("the memory plan overflows this machine's address space")
    })?;
    let mut v = Vec::new();
    v.try_reserve_exact(bytes / 4).map_err(|_| {
        PyMemoryError::new_err(format!("cannot allocate the {bytes}-byte workspace"))
    })?;
    v.resize(bytes / 4, 0f32);
    Ok(v)
}

fn engine_error(e: EngineError) -> PyErr {
    match e {
        EngineError::Workspace(_) => PyMemoryError::new_err(e.to_string()),
        _ => value_error(e),
    }
}

/// A caption as Python returns it: the text, or `(text, tokens?, score?)`.
fn result_of<'py>(
    py: Python<'py>,
    blob: &Blob,
    c: &Caption,
    o: &Options,
) -> PyResult<Bound<'py, PyAny>> {
    let text =
        m2::text::caption_string(&c.tokens, |id| blob.token(id), false).map_err(value_error)?;
    if !o.return_tokens && !o.return_score {
        return Ok(text.into_pyobject(py)?.into_any());
    }
    let mut items: Vec<Bound<'py, PyAny>> = vec![text.into_pyobject(py)?.into_any()];
    if o.return_tokens {
        items.push(PyList::new(py, c.tokens.iter().copied())?.into_any());
    }
    if o.return_score {
        items.push(c.score.into_pyobject(py)?.into_any());
    }
    Ok(PyTuple::new(py, items)?.into_any())
}

impl Model {
    fn from_source(bytes: Bytes) -> PyResult<Model> {
        let kernels = Kernels::from_env().map_err(|e| value_error(e.to_string()))?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cfg = *blob_of(&bytes)?.config();
        Ok(Model {
            bytes,
            cfg,
            kernels,
            threads,
        })
    }

    fn blob(&self) -> PyResult<Blob<'_>> {
        blob_of(&self.bytes)
    }

    /// Caption one image's features with the GIL released.
    fn caption_features(
        &self,
        py: Python<'_>,
        features: &[f32],
        opts: &SearchOptions,
        greedy: bool,
    ) -> PyResult<Caption> {
        let blob = self.blob()?;
        let model = M2::new(&blob, self.kernels.with_threads(self.threads));
        let plan = model.plan(opts.beam, opts.max_len);
        let mut mem = workspace_memory(&plan)?;
        py.detach(|| {
            let mut ws = Workspace::new(&mut mem, plan).map_err(EngineError::from)?;
            decode(&model, features, &mut ws, opts, greedy)
        })
        .map_err(engine_error)
    }

    /// Region features of a grayscale image through `m2::regions`, for models trained on them.
    fn region_features(&self, gray: m2::regions::Gray) -> PyResult<Vec<f32>> {
        let (d_in, r) = (self.cfg.d_in as usize, self.cfg.max_regions as usize);
        if d_in != m2::regions::D_IN {
            return Err(value_error(format!(
                "images need a model trained on m2::regions features (d_in {}); this model has d_in {d_in}",
                m2::regions::D_IN
            )));
        }
        // every region the extractor tracks, then the first r in raster order (as `m2 caption
        // --image`)
        let (found, mut f) =
            m2::regions::features_from_gray(gray, m2::regions::MAX_COMPONENTS.max(r))
                .map_err(value_error)?;
        f.truncate(found.len().min(r) * d_in);
        Ok(f)
    }

    /// Caption one image's features with `**options`, as Python returns it.
    fn caption_with(
        &self,
        py: Python<'_>,
        features: &[f32],
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let o = Options::parse(&self.cfg, options)?;
        let c = self.caption_features(py, features, &o.search, o.greedy)?;
        Ok(result_of(py, &self.blob()?, &c, &o)?.unbind())
    }
}

fn blob_of(bytes: &Bytes) -> PyResult<Blob<'_>> {
    match bytes {
        Bytes::Mapped(m) => m.blob(),
        Bytes::Owned(b) => Blob::parse_skip_checksum(b),
    }
    .map_err(|e| value_error(format!("model blob: {e}")))
}

#[pymethods]
impl Model {
    /// Open a blob file (memory-mapped, validated: checksum and structure).
    #[new]
    #[pyo3(signature = (path, mmap = true))]
    fn new(py: Python<'_>, path: PathBuf, mmap: bool) -> PyResult<Model> {
        // the GIL released: the checksum pass reads every byte, and a pipe's writer may be
        // another Python thread
        let m = py.detach(|| {
            if mmap {
                MappedBlob::open(&path)
            } else {
                MappedBlob::read(&path)
            }
        });
        Model::from_source(Bytes::Mapped(m.map_err(load_error)?))
    }

    /// A model from the bytes of a blob (copied into an aligned buffer, validated).
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Model> {
        let buf = AlignedBuf::from_bytes(data);
        Blob::parse(&buf).map_err(|e| value_error(format!("model blob: {e}")))?;
        Model::from_source(Bytes::Owned(buf))
    }

    /// The blob's hyper-parameters: d_in, d_model, h, …, max_regions, token ids.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, v) in self.cfg.fields() {
            match v {
                m2::config::FieldValue::U32(x) => d.set_item(name, x)?,
                m2::config::FieldValue::F32(x) => d.set_item(name, x)?,
            }
        }
        Ok(d)
    }

    /// Region feature size the model takes.
    #[getter]
    fn d_in(&self) -> usize {
        self.cfg.d_in as usize
    }

    /// Most regions per image.
    #[getter]
    fn max_regions(&self) -> usize {
        self.cfg.max_regions as usize
    }

    /// Longest caption (words): the positional table's, capped at the engine's 64.
    #[getter]
    fn max_len(&self) -> usize {
        self.cfg.max_len()
    }

    /// The vocabulary, index = token id (bytes that are not UTF-8 replaced).
    #[getter]
    fn vocab(&self) -> PyResult<Vec<String>> {
        Ok(self
            .blob()?
            .tokens()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect())
    }

    /// The kernel path the engine runs (`M2_KERNEL` or the best this CPU has).
    #[getter]
    fn kernel(&self) -> &'static str {
        self.kernels.isa().name()
    }

    /// Bytes of the blob (the weights, read in place).
    #[getter]
    fn blob_bytes(&self) -> PyResult<usize> {
        Ok(self.blob()?.len())
    }

    /// The memory plan: the blob's bytes and the workspace one caption needs.
    #[pyo3(signature = (beam = 5, max_len = 20, regions = None))]
    fn memory_plan<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = int_sat)] beam: i64,
        #[pyo3(from_py_with = int_sat)] max_len: i64,
        #[pyo3(from_py_with = opt_int_sat)] regions: Option<i64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("beam", beam)?;
        kwargs.set_item("max_len", max_len)?;
        let o = Options::parse(&self.cfg, Some(&kwargs))?;
        let (beam, max_len) = (o.search.beam, o.search.max_len);
        let max = self.cfg.max_regions as usize;
        let regions = in_range(regions.unwrap_or(max as i64), "regions", 1, max)?;
        // with the blob's bytes per quantised activation, as `m2 info` (2 for int8a16)
        let plan =
            Plan::new(&self.cfg, beam, regions, max_len).with_act_bytes(self.blob()?.act_bytes());
        let d = PyDict::new(py);
        d.set_item("weights_bytes", self.blob()?.len())?;
        d.set_item("workspace_bytes", plan.checked_total_bytes())?;
        d.set_item("beam", beam)?;
        d.set_item("regions", regions)?;
        d.set_item("max_len", max_len)?;
        Ok(d)
    }

    /// Caption one image: `features [R, d_in]` float32/float16, 1 ≤ R ≤ max_regions.
    #[pyo3(signature = (features, **options))]
    fn caption(
        &self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let x = image_of(features, &self.cfg)?;
        self.caption_with(py, &x, options)
    }

    /// Caption many images (`[K, R, d_in]` or a list of `[R, d_in]`) on `threads` worker
    /// threads (default: all cores), the GIL released; captions in input order.
    #[pyo3(signature = (features, threads = None, **options))]
    fn caption_batch(
        &self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = opt_int_sat)] threads: Option<i64>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let o = Options::parse(&self.cfg, options)?;
        let images = images_of(features, &self.cfg)?;
        let threads = match threads {
            Some(t) => threads_of(t)?,
            None => self.threads,
        };
        let n = images.data.len();
        let workers = threads.min(n).max(1);
        let kernels = self
            .kernels
            .with_threads(if workers > 1 { 1 } else { threads });
        let blob = self.blob()?;
        let plan = M2::new(&blob, kernels).plan(o.search.beam, o.search.max_len);
        let mut mems = (0..workers)
            .map(|_| workspace_memory(&plan))
            .collect::<PyResult<Vec<_>>>()?;
        let batch = Batch {
            kernels,
            plan,
            search: o.search,
            greedy: o.greedy,
        };
        let mut out: Vec<Caption> = Vec::with_capacity(n);
        py.detach(|| {
            decode_in_order(
                &blob,
                &batch,
                &mut mems,
                n,
                |k, buf| {
                    buf.clear();
                    buf.extend_from_slice(&images.data[k]);
                    Ok(())
                },
                |k, e| (k, e),
                |_, d| {
                    out.push(d.caption);
                    Ok(())
                },
            )
        })
        .map_err(|(k, e)| match k {
            Some(k) => value_error(format!("image {k}: {e}")),
            None => engine_error(e),
        })?;
        out.iter()
            .map(|c| Ok(result_of(py, &blob, c, &o)?.unbind()))
            .collect()
    }

    /// Caption an 8-bit grayscale image `[H, W]` (uint8) through `m2::regions`, for models
    /// trained on its features (the demo): bright strokes on a dark background, or dark on
    /// light (read inverted).
    #[pyo3(signature = (image, **options))]
    fn caption_image(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let Ok(a) = image.extract::<PyReadonlyArrayDyn<'_, u8>>() else {
            return Err(value_error(
                "image must be a uint8 numpy array [height, width] (grayscale)",
            ));
        };
        let a = a.as_array();
        let [height, width] = a.shape()[..] else {
            return Err(value_error(format!(
                "image must be grayscale [height, width], got shape {:?} (convert colour frames to gray first)",
                a.shape()
            )));
        };
        if u64::try_from(width * height).map_or(true, |p| p > m2::regions::MAX_PNG_PIXELS) {
            return Err(value_error(format!(
                "an image of {width}x{height} pixels is larger than the {}-pixel limit",
                m2::regions::MAX_PNG_PIXELS
            )));
        }
        let gray = m2::regions::Gray {
            width,
            height,
            pixels: a.iter().copied().collect(),
        };
        let x = self.region_features(gray)?;
        self.caption_with(py, &x, options)
    }

    /// Caption a PNG scene (any colour type; converted to grayscale) through `m2::regions`.
    #[pyo3(signature = (path, **options))]
    fn caption_png(
        &self,
        py: Python<'_>,
        path: PathBuf,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        // a PNG of the 50-megapixel limit, stored uncompressed, is 200 MB
        let bytes = read_file(py, &path, 256 << 20)?;
        let gray = m2::regions::from_png(&bytes)
            .map_err(|e| value_error(format!("{}: {e}", path.display())))?;
        let x = self.region_features(gray).map_err(|e| {
            Python::attach(|py| value_error(format!("{}: {}", path.display(), e.value(py))))
        })?;
        self.caption_with(py, &x, options)
    }

    /// Teacher-forced log-probabilities: `features [R, d_in]` and `tokens [T]` → `[T, V]`, or
    /// `features [K, R, d_in]` and `tokens [K, T]` → `[K, T, V]` (as `m2 score`). Tokens:
    /// `<bos>` first, `<pad>` after the caption.
    fn score<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
        tokens: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (tshape, ids) = tokens_of(tokens, self.cfg.vocab)?;
        let one = features
            .cast::<PyUntypedArray>()
            .is_ok_and(|a| a.ndim() == 2);
        let (images, t_len) = match (one, &tshape[..]) {
            (true, &[t]) => (images_one(features, &self.cfg)?, t),
            (false, &[k, t]) => {
                let im = images_of(features, &self.cfg)?;
                if im.data.len() != k {
                    return Err(value_error(format!(
                        "{k} token sequences for {} images",
                        im.data.len()
                    )));
                }
                (im, t)
            }
            _ => {
                return Err(value_error(format!(
                    "tokens must be [T] for one image [R, d_in] or [K, T] for [K, R, d_in], got shape {tshape:?}"
                )))
            }
        };
        if t_len == 0 || t_len > self.cfg.max_len() {
            return Err(value_error(format!(
                "sequences must have 1 to {} tokens (this model's positional table, capped at 64), got {t_len}",
                self.cfg.max_len()
            )));
        }
        let v = self.cfg.vocab as usize;
        let k = images.data.len();
        let n_out = k
            .checked_mul(t_len)
            .and_then(|n| n.checked_mul(v))
            .ok_or_else(|| PyMemoryError::new_err("the log-probs do not fit in memory"))?;
        let mut logp = Vec::new();
        logp.try_reserve_exact(n_out)
            .map_err(|_| PyMemoryError::new_err(format!("cannot allocate {n_out} log-probs")))?;
        logp.resize(n_out, 0f32);
        let blob = self.blob()?;
        let model = M2::new(&blob, self.kernels.with_threads(self.threads));
        let plan = model.plan(1, t_len);
        let mut mem = workspace_memory(&plan)?;
        py.detach(|| {
            let mut ws = Workspace::new(&mut mem, plan).map_err(|e| (0, e.into()))?;
            for (i, x) in images.data.iter().enumerate() {
                let out = &mut logp[i * t_len * v..(i + 1) * t_len * v];
                model
                    .score(x, &ids[i * t_len..(i + 1) * t_len], &mut ws, out)
                    .map_err(|e| (i, e))?;
            }
            Ok::<(), (usize, EngineError)>(())
        })
        .map_err(|(i, e)| value_error(format!("image {i}: {e}")))?;
        let shape = if one {
            vec![t_len, v]
        } else {
            vec![k, t_len, v]
        };
        let arr = ArrayD::from_shape_vec(IxDyn(&shape), logp).map_err(value_error)?;
        Ok(arr.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!(
            "m2.Model(d_in={}, d_model={}, vocab={}, max_regions={}, kernel={})",
            self.cfg.d_in,
            self.cfg.d_model,
            self.cfg.vocab,
            self.cfg.max_regions,
            self.kernels.isa().name()
        )
    }
}

fn images_one(features: &Bound<'_, PyAny>, cfg: &m2::Config) -> PyResult<Images> {
    Ok(Images {
        data: vec![image_of(features, cfg)?],
    })
}

// ---- pack ------------------------------------------------------------------------------------

fn dtype_of(name: &str, what: &str) -> PyResult<DType> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "int8" | "i8" => Ok(DType::I8),
        "int8a16" => Ok(DType::I8A16),
        _ => Err(value_error(format!(
            "{what} must be \"f32\", \"f16\", \"int8\" or \"int8a16\", got {name:?}"
        ))),
    }
}

// `pack`'s default damping, written as a literal so that Python's signature shows it.
const _: () = assert!(Calibration::DAMPING == 0.1);

/// Pack a reference checkpoint (safetensors) and its vocabulary (JSON list) into a blob at
/// `out` (written atomically), as `m2-pack` does. `calibrate`: features `[K, R, d_in]` (a
/// numpy array, or the path of a `.npy`) to GPTQ-round the int8 weights on. Returns the blob's
/// size in bytes.
#[pyfunction]
#[pyo3(signature = (checkpoint, vocab, dtype, out, heads = 8, regions = 50, calibrate = None, readout_dtype = None, damping = 0.1, threads = None))]
#[allow(clippy::too_many_arguments)]
fn pack(
    py: Python<'_>,
    checkpoint: PathBuf,
    vocab: PathBuf,
    dtype: &str,
    out: PathBuf,
    #[pyo3(from_py_with = int_sat)] heads: i64,
    #[pyo3(from_py_with = int_sat)] regions: i64,
    calibrate: Option<&Bound<'_, PyAny>>,
    readout_dtype: Option<&str>,
    damping: f64,
    #[pyo3(from_py_with = opt_int_sat)] threads: Option<i64>,
) -> PyResult<usize> {
    let dim = |v: i64, name: &str| in_range(v, name, 1, m2::config::MAX_DIM as usize);
    let (heads, regions) = (dim(heads, "heads")? as u32, dim(regions, "regions")? as u32);
    let mut inputs = vec![checkpoint.clone(), vocab.clone()];
    let calibrate_path = calibrate.and_then(|c| c.extract::<PathBuf>().ok());
    inputs.extend(calibrate_path.clone());
    if let Some(i) = inputs.iter().find(|i| m2::output::same_file(&out, i)) {
        return Err(value_error(format!(
            "refusing to overwrite the input {} with the output",
            i.display()
        )));
    }
    let opts = PackOptions {
        dtype: dtype_of(dtype, "dtype")?,
        readout_dtype: readout_dtype
            .map(|d| dtype_of(d, "readout_dtype"))
            .transpose()?,
        heads,
        max_regions: regions,
        ..PackOptions::default()
    };
    let threads = match threads {
        Some(t) => threads_of(t)?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // a checkpoint ten times COCO's (~150 MB at f32); a vocabulary of words
    let st = read_file(py, &checkpoint, 2 << 30)?;
    let vocab_list = read_vocab_json(&read_file(py, &vocab, 256 << 20)?)
        .map_err(|e| value_error(format!("{}: {e}", vocab.display())))?;
    let in_ckpt = |e: m2::pack::PackError| value_error(format!("{}: {e}", checkpoint.display()));
    let features = match (calibrate, &calibrate_path) {
        (None, _) => None,
        (Some(_), Some(p)) => {
            let d_in = infer_config_of(&st, &vocab_list, &opts)
                .map_err(in_ckpt)?
                .d_in as usize;
            Some(m2::input::read_features(p, d_in).map_err(input_error)?)
        }
        (Some(a), None) => {
            let (shape, data) = floats(a, "calibrate")?;
            let [images, regions, d_in] = shape[..] else {
                return Err(value_error(format!(
                    "calibrate must be [images, regions, d_in], got shape {shape:?}"
                )));
            };
            if data.iter().any(|v| !v.is_finite()) {
                return Err(value_error("calibrate holds NaN or infinite values"));
            }
            Some(m2::input::Features {
                images,
                regions,
                d_in,
                data,
            })
        }
    };
    let blob = py
        .detach(|| match &features {
            None => pack_with_progress(&st, &vocab_list, &opts, &mut |_, _| {}),
            Some(f) => {
                let cal = Calibration {
                    features: &f.data,
                    images: f.images,
                    regions: f.regions,
                    damping,
                    threads,
                };
                pack_calibrated(&st, &vocab_list, &opts, &cal, &mut |_, _, _| {})
            }
        })
        .map_err(in_ckpt)?;
    m2::output::write_atomic(&out, |f| f.write_all(&blob)).map_err(|e| os_error(&out, &e))?;
    Ok(blob.len())
}

/// The m2 engine: `m2.Model(path).caption(features)`.
#[pymodule(name = "m2")]
fn m2_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(pack, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
