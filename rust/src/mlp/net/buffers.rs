//! The storage of the passes: the [`Workspace`] that keeps, per half, the activations `z_l`, `h_{l+1}`,
//! the outputs `f_h` and `f`, the cotangent `dL/df`, the backprop factors `D_l` (with the penalty also
//! `delta_l` and `u_l`) and the transposed weights `W_l^T` between calls, in buffers aligned to 64 bytes
//! and sized by [`Net::buffers`] (`n x dims[l+1]` values each, row-major); and `Ptr`, the raw pointer
//! through which the tasks write their disjoint rows.

use super::Net;
use crate::mlp::real::Real;

/// A raw pointer that tasks writing disjoint entries may share.
pub(super) struct Ptr<T>(pub(super) *mut T);
unsafe impl<T> Send for Ptr<T> {}
unsafe impl<T> Sync for Ptr<T> {}

impl<T> Clone for Ptr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ptr<T> {}

impl<T> Ptr<T> {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the raw field).
    #[inline(always)]
    pub(super) fn get(self) -> *mut T {
        self.0
    }

    #[inline(always)]
    pub(super) fn at(self, offset: usize) -> *mut T {
        // SAFETY (callers): the offset stays inside the buffer the pointer came from.
        unsafe { self.0.add(offset) }
    }
}

/// The activations of the last [`Net::forward`] and the backprop factors of the last update, per half.
#[derive(Default)]
pub struct Workspace<T> {
    pub(super) n: usize,
    pub(super) bufs: PassBufs<Aligned<T>>,
}

/// The buffers of a pass, row-major: owned in a [`Workspace`], or pointers into it (`Bufs`).
#[derive(Default)]
pub(super) struct PassBufs<B> {
    /// `z_l`, l < L (n x dims[l+1]), index `half * L + l`.
    pub(super) z: Vec<B>,
    /// `h_{l+1}`, l < L (n x dims[l+1]), index `half * L + l`.
    pub(super) h: Vec<B>,
    /// `f_h` (n), index `half`.
    pub(super) out: Vec<B>,
    /// `f` (n), and the cotangent `dL/df` (n).
    pub(super) f: B,
    pub(super) ct: B,
    /// `D_l`, l = 0..=L (n x dims[l+1]), index `half * (L + 1) + l`.
    pub(super) d: Vec<B>,
    /// Penalty: input-backprop deltas `delta_l` (n x dims[l+1]), index `half * (L + 1) + l`.
    pub(super) de: Vec<B>,
    /// Penalty: adjoints `u_l` (n x dims[l]), index `half * (L + 1) + l`.
    pub(super) u: Vec<B>,
    /// Each half's `W_l^T` (l < L), the row-major right operands of backprop.
    pub(super) wt: Vec<B>,
}

/// Pointers into a [`Workspace`] for one pass.
pub(super) type Bufs<T> = PassBufs<Ptr<T>>;

impl<B> PassBufs<B> {
    /// Every buffer through `f`, in the same places.
    fn map<C>(&mut self, mut f: impl FnMut(&mut B) -> C) -> PassBufs<C> {
        fn each<B, C>(v: &mut [B], f: &mut impl FnMut(&mut B) -> C) -> Vec<C> {
            v.iter_mut().map(f).collect()
        }
        PassBufs {
            z: each(&mut self.z, &mut f),
            h: each(&mut self.h, &mut f),
            out: each(&mut self.out, &mut f),
            f: f(&mut self.f),
            ct: f(&mut self.ct),
            d: each(&mut self.d, &mut f),
            de: each(&mut self.de, &mut f),
            u: each(&mut self.u, &mut f),
            wt: each(&mut self.wt, &mut f),
        }
    }
}

/// A buffer whose first value sits on a 64-byte (cache line) boundary: the kernels' row loads then never
/// straddle two lines when a row is a whole number of lines (widths divisible by 8 in f64).
#[derive(Default)]
pub struct Aligned<T> {
    raw: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: Real> Aligned<T> {
    /// `len` zeros (kept as they are when the length does not change).
    fn resize(&mut self, len: usize) {
        if self.len == len && !self.raw.is_empty() {
            return;
        }
        let size = std::mem::size_of::<T>();
        self.raw = vec![T::ZERO; len + 64 / size];
        let addr = self.raw.as_ptr() as usize;
        self.off = ((64 - addr % 64) % 64) / size;
        self.len = len;
    }

    pub(super) fn zeros(len: usize) -> Self {
        let mut a = Aligned {
            raw: Vec::new(),
            off: 0,
            len: 0,
        };
        a.resize(len);
        a
    }

    pub(super) fn as_slice(&self) -> &[T] {
        &self.raw[self.off..self.off + self.len]
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.raw[self.off..self.off + self.len]
    }

    pub(super) fn as_mut_ptr(&mut self) -> *mut T {
        self.as_mut_slice().as_mut_ptr()
    }
}

fn resize1<T: Real>(buf: &mut Aligned<T>, size: usize) {
    buf.resize(size);
}

fn resize<T: Real>(bufs: &mut Vec<Aligned<T>>, sizes: &[usize]) {
    bufs.resize_with(sizes.len(), Aligned::default);
    for (b, &s) in bufs.iter_mut().zip(sizes) {
        b.resize(s);
    }
}

/// Per-chunk pointers into the row-major buffers of one pass: entry `i` points at row `r0` of buffer `i`.
pub(super) fn rows_of<T>(ps: &[Ptr<T>], cols: impl Fn(usize) -> usize, r0: usize) -> Vec<*mut T> {
    ps.iter()
        .enumerate()
        .map(|(i, p)| p.at(r0 * cols(i)))
        .collect()
}

impl<T: Real> Net<T> {
    /// Size the work space for `n` points (the penalty's buffers too when `penalty`) and take pointers
    /// into it.
    pub(super) fn buffers(
        &self,
        ws: &mut Workspace<T>,
        n: usize,
        backward: bool,
        penalty: bool,
    ) -> Bufs<T> {
        let (hidden, halves) = (self.hidden(), self.halves());
        let nl = hidden + 1;
        let zsizes: Vec<usize> = (0..halves * hidden)
            .map(|i| n * self.dims[i % hidden + 1])
            .collect();
        resize(&mut ws.bufs.z, if self.h_for_z { &[] } else { &zsizes });
        resize(&mut ws.bufs.h, &zsizes);
        resize(&mut ws.bufs.out, &vec![n; halves]);
        resize1(&mut ws.bufs.f, n);
        if backward {
            resize(&mut ws.bufs.wt, &vec![self.wt_len; halves]);
            let dsizes: Vec<usize> = (0..halves * nl)
                .map(|i| n * self.dims[i % nl + 1])
                .collect();
            resize(&mut ws.bufs.d, &dsizes);
            resize1(&mut ws.bufs.ct, n);
            if penalty {
                resize(&mut ws.bufs.de, &dsizes);
                let usizes: Vec<usize> = (0..halves * nl).map(|i| n * self.dims[i % nl]).collect();
                resize(&mut ws.bufs.u, &usizes);
            }
        }
        let mut b = ws.bufs.map(|a| Ptr(a.as_mut_ptr()));
        if self.h_for_z {
            b.z = b.h.clone(); // `z` is read from `h` (see `Net::h_for_z`)
        }
        b
    }
}
