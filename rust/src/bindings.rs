//! The Python module `ntkgan._core`: numpy arrays in and out, the GIL released around the work,
//! `NtkError` mapped to `ValueError` (`NonFinite` to `FloatingPointError`), and a Rust panic turned into a
//! `RuntimeError` (never an abort).
//! Validation of user input happens in Python (`ntkgan/_validation.py`); this layer re-checks shapes.

use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadwriteArray1, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyFloatingPointError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arch::{Activation, Arch, Kind};
use crate::error::NtkError;
use crate::mlp::{self, Act, Loss, Net, Workspace};
use crate::{gram, pool};

impl From<NtkError> for PyErr {
    fn from(e: NtkError) -> PyErr {
        match e {
            NtkError::NonFinite(_) => PyFloatingPointError::new_err(e.to_string()),
            _ => PyValueError::new_err(e.to_string()),
        }
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

/// The entries of a 2-D array, row-major, and its shape: borrowed when C-contiguous, else copied into `buf`.
fn slice2<'a, T: numpy::Element + Copy>(
    a: &'a PyReadonlyArray2<'_, T>,
    buf: &'a mut Vec<T>,
) -> (&'a [T], usize, usize) {
    let (n, d) = (a.shape()[0], a.shape()[1]);
    match a.as_slice() {
        Ok(s) => (s, n, d),
        Err(_) => {
            *buf = a.as_array().iter().copied().collect();
            (buf.as_slice(), n, d)
        }
    }
}

/// The entries of a 1-D array: borrowed when contiguous, else copied into `buf`.
fn slice1<'a, T: numpy::Element + Copy>(
    a: &'a PyReadonlyArray1<'_, T>,
    buf: &'a mut Vec<T>,
) -> &'a [T] {
    match a.as_slice() {
        Ok(s) => s,
        Err(_) => {
            *buf = a.as_array().iter().copied().collect();
            buf.as_slice()
        }
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
    let (mut xb, mut yb) = (Vec::new(), Vec::new());
    let (xs, n, d) = slice2(&x, &mut xb);
    let ys = y.as_ref().map(|ya| slice2(ya, &mut yb));
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

/// What a weighted sum over `y` computes (`gram::kernel_grad` and the like).
type WeightedFn<T> =
    for<'a> fn(&Arch, Kind, gram::Points<'a>, gram::Points<'a>, &[f64]) -> Result<T, NtkError>;

/// `f(arch, kind, x, y, w)` on the arrays' data with the GIL released, and `x`'s shape `(n, d)`.
fn weighted<'py, T: Send>(
    py: Python<'py>,
    x: &PyReadonlyArray2<'py, f64>,
    y: &PyReadonlyArray2<'py, f64>,
    w: &PyReadonlyArray1<'py, f64>,
    spec: &Bound<'py, PyDict>,
    ntk: bool,
    f: WeightedFn<T>,
) -> PyResult<(T, usize, usize)> {
    let arch = parse_arch(spec)?;
    let (mut xb, mut yb, mut wb) = (Vec::new(), Vec::new(), Vec::new());
    let (xs, n, d) = slice2(x, &mut xb);
    let (ys, m, dy) = slice2(y, &mut yb);
    let ws = slice1(w, &mut wb);
    let out = run(py, || {
        f(
            &arch,
            kind_of(ntk),
            gram::Points::new(xs, n, d)?,
            gram::Points::new(ys, m, dy)?,
            ws,
        )
    })?;
    Ok((out, n, d))
}

/// A binding `$name(x, y, $w, spec, ntk)` of `$f` through [`weighted`], its result `out` and `x`'s shape
/// `(n, d)` turned into the returned value by `into: |py, out, n, d| ..`.
macro_rules! weighted_binding {
    ($(#[$doc:meta])* $name:ident($w:ident) -> $ret:ty, $f:path,
     into: |$py:ident, $out:pat_param, $n:pat_param, $d:pat_param| $into:expr) => {
        $(#[$doc])*
        #[pyfunction]
        #[pyo3(signature = (x, y, $w, spec, ntk))]
        fn $name<'py>(
            $py: Python<'py>,
            x: PyReadonlyArray2<'py, f64>,
            y: PyReadonlyArray2<'py, f64>,
            $w: PyReadonlyArray1<'py, f64>,
            spec: &Bound<'py, PyDict>,
            ntk: bool,
        ) -> PyResult<$ret> {
            let ($out, $n, $d) = weighted($py, &x, &y, &$w, spec, ntk, $f)?;
            $into
        }
    };
}

weighted_binding!(
    /// kernel_grad(x, y, weights, spec, ntk) -> (n, d) array.
    kernel_grad(weights) -> Bound<'py, PyArray2<f64>>,
    gram::kernel_grad,
    into: |py, out, n, d| out.into_pyarray(py).reshape([n, d])
);

/// `(values, gradient)` arrays returned to Python.
type ValueGrad<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>);

weighted_binding!(
    /// kernel_value_and_grad(x, y, weights, spec, ntk) -> ((n,) values, (n, d) gradient), one pass.
    kernel_value_and_grad(weights) -> ValueGrad<'py>,
    gram::kernel_value_and_grad,
    into: |py, (v, g), n, d| Ok((v.into_pyarray(py), g.into_pyarray(py).reshape([n, d])?))
);

/// softmin(cost, f, eps) -> (n,) array ``-eps * log sum_j exp(f_j - cost_ij / eps)`` (Sinkhorn's soft-min).
#[pyfunction]
#[pyo3(signature = (cost, f, eps))]
fn softmin<'py>(
    py: Python<'py>,
    cost: PyReadonlyArray2<'py, f64>,
    f: PyReadonlyArray1<'py, f64>,
    eps: f64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (mut cb, mut fb) = (Vec::new(), Vec::new());
    let (cs, n, m) = slice2(&cost, &mut cb);
    let fs = slice1(&f, &mut fb);
    let out = run(py, || crate::softmin::softmin(cs, n, m, fs, eps))?;
    Ok(out.into_pyarray(py))
}

weighted_binding!(
    /// kernel_matvec(x, y, v, spec, ntk) -> (n,) array.
    kernel_matvec(v) -> Bound<'py, PyArray1<f64>>,
    gram::kernel_matvec,
    into: |py, out, _, _| Ok(out.into_pyarray(py))
);

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

/// The SIMD path the tile loops take on this CPU ("avx512", "avx2" or "generic"; capped by $NTKGAN_SIMD).
#[pyfunction]
fn simd_path() -> &'static str {
    crate::simd::level().name()
}

/// Deliberately panic (tests check that a panic becomes a Python exception).
#[pyfunction]
fn _panic_for_tests(py: Python<'_>) -> PyResult<()> {
    run(py, || -> Result<(), NtkError> {
        panic!("deliberate panic for tests")
    })
}

/// Finite networks in one float type: the class `FiniteNet64` or `FiniteNet32` (see `ntkgan.discriminator._finite_engine`).
macro_rules! finite_net_class {
    ($name:ident, $t:ty, $pyname:literal) => {
        /// A finite discriminator's passes: `FiniteNetXX(activation, act_params, dims, scales, signs)`.
        #[pyclass(name = $pyname, module = "ntkgan._core")]
        pub struct $name {
            net: Net<$t>,
            ws: Workspace<$t>,
        }

        #[pymethods]
        impl $name {
            #[new]
            fn new(
                activation: &str,
                act_params: Vec<f64>,
                dims: Vec<usize>,
                scales: Vec<(f64, f64)>,
                signs: Vec<f64>,
            ) -> PyResult<Self> {
                let act = Act::parse(activation, &act_params)?;
                Ok($name {
                    net: Net::new(act, dims, &scales, &signs)?,
                    ws: Workspace::default(),
                })
            }

            /// Scalars in one half's flat parameter buffer.
            #[getter]
            fn n_params(&self) -> usize {
                self.net.n_params()
            }

            /// f(x) = sum_h s_h f_h(x), (n,); keeps the activations for `backward_update`.
            fn forward<'py>(
                &mut self,
                py: Python<'py>,
                params: Vec<PyReadonlyArray1<'py, $t>>,
                x: PyReadonlyArray2<'py, $t>,
            ) -> PyResult<Bound<'py, PyArray1<$t>>> {
                let ps = contiguous(&params)?;
                let mut xb = Vec::new();
                let (xs, n, _) = slice2(&x, &mut xb);
                let (net, ws) = (&self.net, &mut self.ws);
                let f = run(py, move || net.forward(&ps, xs, n, ws))?;
                Ok(f.into_pyarray(py))
            }

            /// One gradient step at the points of the last `forward` (in place; see Net::backward_update).
            fn backward_update<'py>(
                &mut self,
                py: Python<'py>,
                mut params: Vec<PyReadwriteArray1<'py, $t>>,
                x: PyReadonlyArray2<'py, $t>,
                ct: PyReadonlyArray1<'py, $t>,
                lr: f64,
                penalty: f64,
            ) -> PyResult<()> {
                let mut ps = contiguous_mut(&mut params)?;
                let (mut xb, mut cb) = (Vec::new(), Vec::new());
                let (xs, _, _) = slice2(&x, &mut xb);
                let cs = slice1(&ct, &mut cb);
                let (net, ws) = (&self.net, &mut self.ws);
                run(py, move || {
                    net.backward_update(&mut ps, xs, cs, lr, penalty, ws)
                })
            }

            /// `steps` gradient steps on a built-in loss (see Net::train), in place.
            #[allow(clippy::too_many_arguments)]
            fn train<'py>(
                &mut self,
                py: Python<'py>,
                mut params: Vec<PyReadwriteArray1<'py, $t>>,
                x: PyReadonlyArray2<'py, $t>,
                n_fake: usize,
                loss: &str,
                steps: usize,
                lr: f64,
                penalty: f64,
            ) -> PyResult<()> {
                let loss = Loss::parse(loss)?;
                let mut ps = contiguous_mut(&mut params)?;
                let mut xb = Vec::new();
                let (xs, _, _) = slice2(&x, &mut xb);
                let (net, ws) = (&self.net, &mut self.ws);
                run(py, move || {
                    net.train(&mut ps, xs, n_fake, loss, steps, lr, penalty, ws)
                })
            }

            /// (f(x), grad_x f(x)): (n,) and (n, d) (the gradient is (n, 0)... empty when want_grad is false).
            fn value_and_grad<'py>(
                &self,
                py: Python<'py>,
                params: Vec<PyReadonlyArray1<'py, $t>>,
                x: PyReadonlyArray2<'py, $t>,
                want_grad: bool,
            ) -> PyResult<(Bound<'py, PyArray1<$t>>, Bound<'py, PyArray2<$t>>)> {
                let ps = contiguous(&params)?;
                let mut xb = Vec::new();
                let (xs, n, d) = slice2(&x, &mut xb);
                let net = &self.net;
                let (f, g) = run(py, move || net.value_and_grad(&ps, xs, n, want_grad))?;
                let cols = if want_grad { d } else { 0 };
                Ok((f.into_pyarray(py), g.into_pyarray(py).reshape([n, cols])?))
            }
        }
    };
}

fn contiguous<'a, T: numpy::Element>(
    params: &'a [PyReadonlyArray1<'_, T>],
) -> PyResult<Vec<&'a [T]>> {
    params
        .iter()
        .map(|p| {
            p.as_slice()
                .map_err(|_| PyValueError::new_err("parameter buffers must be contiguous"))
        })
        .collect()
}

/// The parameter buffers as slices, in place ([`contiguous`] for writing).
fn contiguous_mut<'a, T: numpy::Element>(
    params: &'a mut [PyReadwriteArray1<'_, T>],
) -> PyResult<Vec<&'a mut [T]>> {
    params
        .iter_mut()
        .map(|p| {
            p.as_slice_mut()
                .map_err(|_| PyValueError::new_err("parameter buffers must be contiguous"))
        })
        .collect()
}

finite_net_class!(FiniteNet64, f64, "FiniteNet64");
finite_net_class!(FiniteNet32, f32, "FiniteNet32");

/// gemm_rate(m, k, n, dtype, seconds) -> GFLOP/s of the finite networks' GEMM (C = A B, A m x k, B k x n,
/// split into row chunks over the thread pool).
#[pyfunction]
#[pyo3(signature = (m, k, n, dtype, seconds))]
fn gemm_rate(
    py: Python<'_>,
    m: usize,
    k: usize,
    n: usize,
    dtype: &str,
    seconds: f64,
) -> PyResult<f64> {
    if m == 0 || k == 0 || n == 0 || !(seconds.is_finite() && seconds >= 0.0) {
        return Err(PyValueError::new_err(
            "m, k, n must be >= 1 and seconds finite and >= 0",
        ));
    }
    match dtype {
        "float64" => run(py, move || Ok(mlp::gemm_rate::<f64>(m, k, n, seconds))),
        "float32" => run(py, move || Ok(mlp::gemm_rate::<f32>(m, k, n, seconds))),
        other => Err(PyValueError::new_err(format!(
            "dtype must be 'float32' or 'float64', got {other:?}"
        ))),
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(kernel, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_grad, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_matvec, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_value_and_grad, m)?)?;
    m.add_function(wrap_pyfunction!(softmin, m)?)?;
    m.add_function(wrap_pyfunction!(gemm_rate, m)?)?;
    m.add_class::<FiniteNet64>()?;
    m.add_class::<FiniteNet32>()?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_reset_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(simd_path, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TAU", gram::TAU)?;
    Ok(())
}
