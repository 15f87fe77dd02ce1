//! The Python module `ntkgan._core`: numpy arrays in and out, the GIL released around the work,
//! `NtkError` mapped to `ValueError`, and a Rust panic turned into a `RuntimeError` (never an abort).
//! Validation of user input happens in Python (`ntkgan/_validation.py`); this layer re-checks shapes.

use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arch::{Activation, Arch, Kind};
use crate::error::NtkError;
use crate::{gram, pool};

impl From<NtkError> for PyErr {
    fn from(e: NtkError) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

fn get<'py>(spec: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    spec.get_item(key)?
        .ok_or_else(|| PyValueError::new_err(format!("architecture spec lacks {key:?}")))
}

macro_rules! field {
    ($spec:expr, $key:expr, $ty:ty) => {
        get($spec, $key)?.extract::<$ty>().map_err(|e| {
            PyValueError::new_err(format!(
                "architecture spec field {:?}: {}",
                $key,
                PyErr::from(e)
            ))
        })?
    };
}

/// Parse the dict made by `ntkgan.Mlp.rust_spec()`.
fn parse_arch(spec: &Bound<'_, PyDict>) -> PyResult<Arch> {
    let name = field!(spec, "activation", String);
    let params = field!(spec, "params", Vec<f64>);
    let act = Activation::parse(&name, &params)?;
    Ok(Arch::new(
        field!(spec, "depth", usize),
        act,
        field!(spec, "w_std", f64),
        field!(spec, "b_std", f64),
        field!(spec, "standard", bool),
        field!(spec, "width", f64),
    )?)
}

/// A C-contiguous copy-free view when possible, else an owned row-major copy.
fn rows(a: &PyReadonlyArray2<'_, f64>) -> (Vec<f64>, bool, usize, usize) {
    let shape = a.shape();
    match a.as_slice() {
        Ok(_) => (Vec::new(), true, shape[0], shape[1]),
        Err(_) => (
            a.as_array().iter().copied().collect(),
            false,
            shape[0],
            shape[1],
        ),
    }
}

/// Run `f` without the GIL, turning a panic into a RuntimeError.
fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, NtkError> + Send) -> PyResult<T> {
    let res = py.detach(move || catch_unwind(AssertUnwindSafe(f)));
    match res {
        Ok(r) => Ok(r?),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "internal error in ntkgan._core (please report): {msg}"
            )))
        }
    }
}

fn kind_of(ntk: bool) -> Kind {
    if ntk {
        Kind::Ntk
    } else {
        Kind::Nngp
    }
}

/// kernel(x, y, spec, ntk) -> (n, m) array; y=None means y = x (symmetric).
#[pyfunction]
#[pyo3(signature = (x, y, spec, ntk))]
fn kernel<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: Option<PyReadonlyArray2<'py, f64>>,
    spec: &Bound<'py, PyDict>,
    ntk: bool,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let arch = parse_arch(spec)?;
    let (xo, xc, n, d) = rows(&x);
    let xs: &[f64] = if xc { x.as_slice()? } else { &xo };
    let yv = y.as_ref().map(rows);
    let ys: Option<(&[f64], usize, usize)> = match (&y, &yv) {
        (Some(ya), Some((yo, yc, m, dy))) => Some((if *yc { ya.as_slice()? } else { yo }, *m, *dy)),
        _ => None,
    };
    let m = ys.map(|t| t.1).unwrap_or(n);
    let out = run(py, || {
        let xp = gram::Points::new(xs, n, d)?;
        let yp = match ys {
            Some((s, m, dy)) => Some(gram::Points::new(s, m, dy)?),
            None => None,
        };
        gram::gram(&arch, kind_of(ntk), xp, yp)
    })?;
    out.into_pyarray(py).reshape([n, m])
}

/// kernel_grad(x, y, weights, spec, ntk) -> (n, d) array.
#[pyfunction]
#[pyo3(signature = (x, y, weights, spec, ntk))]
fn kernel_grad<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    weights: PyReadonlyArray1<'py, f64>,
    spec: &Bound<'py, PyDict>,
    ntk: bool,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let arch = parse_arch(spec)?;
    let (xo, xc, n, d) = rows(&x);
    let (yo, yc, m, dy) = rows(&y);
    let xs: &[f64] = if xc { x.as_slice()? } else { &xo };
    let ys: &[f64] = if yc { y.as_slice()? } else { &yo };
    let wo: Vec<f64>;
    let ws: &[f64] = match weights.as_slice() {
        Ok(s) => s,
        Err(_) => {
            wo = weights.as_array().iter().copied().collect();
            &wo
        }
    };
    let out = run(py, || {
        gram::kernel_grad(
            &arch,
            kind_of(ntk),
            gram::Points::new(xs, n, d)?,
            gram::Points::new(ys, m, dy)?,
            ws,
        )
    })?;
    out.into_pyarray(py).reshape([n, d])
}

/// `(values, gradient)` arrays returned to Python.
type ValueGrad<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>);

/// kernel_value_grad(x, y, weights, spec, ntk) -> ((n,) values, (n, d) gradient), one pass.
#[pyfunction]
#[pyo3(signature = (x, y, weights, spec, ntk))]
fn kernel_value_grad<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    weights: PyReadonlyArray1<'py, f64>,
    spec: &Bound<'py, PyDict>,
    ntk: bool,
) -> PyResult<ValueGrad<'py>> {
    let arch = parse_arch(spec)?;
    let (xo, xc, n, d) = rows(&x);
    let (yo, yc, m, dy) = rows(&y);
    let xs: &[f64] = if xc { x.as_slice()? } else { &xo };
    let ys: &[f64] = if yc { y.as_slice()? } else { &yo };
    let wo: Vec<f64>;
    let ws: &[f64] = match weights.as_slice() {
        Ok(s) => s,
        Err(_) => {
            wo = weights.as_array().iter().copied().collect();
            &wo
        }
    };
    let (v, g) = run(py, || {
        gram::kernel_value_grad(
            &arch,
            kind_of(ntk),
            gram::Points::new(xs, n, d)?,
            gram::Points::new(ys, m, dy)?,
            ws,
        )
    })?;
    Ok((v.into_pyarray(py), g.into_pyarray(py).reshape([n, d])?))
}

/// softmin(cost, f, eps) -> (n,) array ``-eps * log sum_j exp(f_j - cost_ij / eps)`` (Sinkhorn's soft-min).
#[pyfunction]
#[pyo3(signature = (cost, f, eps))]
fn softmin<'py>(
    py: Python<'py>,
    cost: PyReadonlyArray2<'py, f64>,
    f: PyReadonlyArray1<'py, f64>,
    eps: f64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (co, cc, n, m) = rows(&cost);
    let cs: &[f64] = if cc { cost.as_slice()? } else { &co };
    let fo: Vec<f64>;
    let fs: &[f64] = match f.as_slice() {
        Ok(s) => s,
        Err(_) => {
            fo = f.as_array().iter().copied().collect();
            &fo
        }
    };
    let out = run(py, || crate::softmin::softmin(cs, n, m, fs, eps))?;
    Ok(out.into_pyarray(py))
}

/// kernel_matvec(x, y, v, spec, ntk) -> (n,) array.
#[pyfunction]
#[pyo3(signature = (x, y, v, spec, ntk))]
fn kernel_matvec<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    v: PyReadonlyArray1<'py, f64>,
    spec: &Bound<'py, PyDict>,
    ntk: bool,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let arch = parse_arch(spec)?;
    let (xo, xc, n, d) = rows(&x);
    let (yo, yc, m, dy) = rows(&y);
    let xs: &[f64] = if xc { x.as_slice()? } else { &xo };
    let ys: &[f64] = if yc { y.as_slice()? } else { &yo };
    let vo: Vec<f64>;
    let vs: &[f64] = match v.as_slice() {
        Ok(s) => s,
        Err(_) => {
            vo = v.as_array().iter().copied().collect();
            &vo
        }
    };
    let out = run(py, || {
        gram::kernel_matvec(
            &arch,
            kind_of(ntk),
            gram::Points::new(xs, n, d)?,
            gram::Points::new(ys, m, dy)?,
            vs,
        )
    })?;
    Ok(out.into_pyarray(py))
}

/// Use n threads from now on.
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    if n == 0 {
        return Err(PyValueError::new_err("n must be >= 1, got 0"));
    }
    pool::set_num_threads(n);
    Ok(())
}

/// Number of threads in use.
#[pyfunction]
fn get_num_threads() -> usize {
    pool::num_threads()
}

/// Forget the pool inherited across fork (called in the child by ntkgan.threads).
#[pyfunction]
fn _reset_after_fork() {
    pool::reset_after_fork();
}

/// The SIMD path the tile loops take on this CPU ("avx2" or "generic").
#[pyfunction]
fn simd_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "generic"
}

/// Deliberately panic (tests check that a panic becomes a Python exception).
#[pyfunction]
fn _panic_for_tests(py: Python<'_>) -> PyResult<()> {
    run(py, || -> Result<(), NtkError> {
        panic!("deliberate panic for tests")
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(kernel, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_grad, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_matvec, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_value_grad, m)?)?;
    m.add_function(wrap_pyfunction!(softmin, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_reset_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(simd_path, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TAU", gram::TAU)?;
    Ok(())
}
