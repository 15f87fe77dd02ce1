r"""The training problem of an infinite-width discriminator: the training points with their fake and real
masses, kernel access (a dense Gram matrix or matrix-free products), exact-duplicate merging, and the two
closed-form solves (linear losses; quadratic losses by ``eigh``, Krylov or matrix-free Lanczos).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dsymv

from ntkgan.discriminator._losses import Loss
from ntkgan.discriminator._spectral import lanczos_apply
from ntkgan.kernels import kernel, kernel_matvec
from ntkgan.threads import blas_single_thread

__all__ = ["_Problem", "_curvature_bound", "_has_duplicate_rows", "_solve_linear", "_solve_quadratic"]


def _has_duplicate_rows(z: np.ndarray) -> bool:
    """Whether two rows of ``z`` are equal: rows sorted lexicographically (``lexsort``, ~5x faster than
    ``np.unique(axis=0)``'s sort of row records), then neighbours compared."""
    if z.shape[0] < 2:
        return False
    s = z[np.lexsort(z.T[::-1])]
    return bool(np.any(np.all(s[1:] == s[:-1], axis=1)))


class _Problem:
    r"""Training points with their fake and real masses, and kernel access (dense Gram or matvecs).

    Point :math:`u` carries fake mass :math:`w^f_u` and real mass :math:`w^r_u` (:math:`1/N`, :math:`1/M`
    per copy), so :math:`\partial L / \partial f(u) = w^f_u \ell'_{\mathrm{fake}}(f_u) + w^r_u
    \ell'_{\mathrm{real}}(f_u)`.  :meth:`merged` collapses exact duplicates (a fake point equal to a real
    one included): :math:`k(\cdot, u)` is then one function with one coefficient, which removes the null
    space of :math:`K` they create (there the separate coefficients would grow like :math:`t` while their
    sum, the only thing that matters, stays bounded).
    """

    def __init__(self, support, wf, wr, arch, kind, backend, f0_values):
        self.support = support
        self.n = support.shape[0]
        self.wf, self.wr = wf, wr
        self.mass = wf + wr
        self.arch, self.kind, self.backend = arch, kind, backend
        self.f0 = f0_values  # (n,) or None
        self._gram = None
        self._gram_f = None  # the Gram as a Fortran-ordered array (its transpose view), for dsymv
        self._deriv_parts = None  # (index, masses) of the fake and of the real terms, for dloss
        self.n_matvec = 0
        # maps to the parent problem (identity unless built by merged()): parent point i is point
        # inverse[i] here; point u here is parent point first[u]
        self.first = self.inverse = np.arange(self.n)

    @classmethod
    def from_samples(cls, support, n_fake, arch, kind, backend, f0_values):
        n = support.shape[0]
        fake = np.arange(n) < n_fake
        wf = np.where(fake, 1.0 / n_fake, 0.0)
        wr = np.where(fake, 0.0, 1.0 / (n - n_fake))
        return cls(support, wf, wr, arch, kind, backend, f0_values)

    def merged(self) -> _Problem:
        """The same problem on the distinct points (masses added)."""
        if not _has_duplicate_rows(self.support):
            return self
        _, first, inverse = np.unique(self.support, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        m = first.size
        wf = np.bincount(inverse, weights=self.wf, minlength=m)
        wr = np.bincount(inverse, weights=self.wr, minlength=m)
        f0 = None if self.f0 is None else self.f0[first]
        out = _Problem(self.support[first], wf, wr, self.arch, self.kind, self.backend, f0)
        out.first, out.inverse = first, inverse
        return out

    def expand(self, coef: np.ndarray) -> np.ndarray:
        """Coefficients of a merged problem as coefficients on the parent's points (on first copies)."""
        out = np.zeros(self.inverse.size)
        out[self.first] = coef
        return out

    def gram(self) -> np.ndarray:
        if self._gram is None:
            self._gram = kernel(self.support, arch=self.arch, kind=self.kind, backend=self.backend)
        return self._gram

    def kmv(self, v: np.ndarray, dense: bool) -> np.ndarray:
        """``K @ v`` from the dense Gram or through kernel_matvec."""
        self.n_matvec += 1
        if dense:
            return self.gram() @ v
        return kernel_matvec(self.support, None, v, arch=self.arch, kind=self.kind, backend=self.backend)

    def symv(self, v: np.ndarray, dense: bool) -> np.ndarray:
        """``K @ v`` using the symmetry of :math:`K`: BLAS ``dsymv`` on one triangle of the dense Gram
        (half the memory traffic: 55 us instead of 100 us at n = 1000, one thread), else kernel_matvec.

        The Gram of :func:`ntkgan.kernel` is exactly symmetric; ``dsymv`` reads its lower triangle (the
        upper triangle of the transposed, Fortran-ordered view, so nothing is copied).
        """
        if not dense:
            return self.kmv(v, False)
        self.n_matvec += 1
        if self._gram_f is None:
            gt = self.gram().T
            self._gram_f = gt if gt.flags.f_contiguous else np.asfortranarray(gt)
        return dsymv(1.0, self._gram_f, v)

    def f0_or_zero(self) -> np.ndarray:
        return np.zeros(self.n) if self.f0 is None else self.f0

    def dloss(self, loss: Loss, f: np.ndarray) -> np.ndarray:
        r""":math:`\partial L / \partial f(u) = w^f_u \ell'_{\mathrm{fake}}(f_u) + w^r_u \ell'_{\mathrm{real}}(f_u)`.

        Each term is evaluated on the points that carry its mass only: a slice when they are contiguous
        (fake then real, the unmerged layout), else an index array, found once per problem.
        """
        if self._deriv_parts is None:
            parts = []
            for mass in (self.wf, self.wr):
                on = np.flatnonzero(mass > 0)
                if on.size == self.n:
                    parts.append((slice(None), mass))
                elif on.size and on[-1] - on[0] + 1 == on.size:
                    parts.append((slice(int(on[0]), int(on[-1]) + 1), mass[on[0]:on[-1] + 1]))
                elif on.size:
                    parts.append((on, mass[on]))
                else:
                    parts.append(None)
            self._deriv_parts = parts
        out = np.zeros_like(f)
        for part, deriv in zip(self._deriv_parts, (loss.fake_deriv, loss.real_deriv)):
            if part is not None:
                on, mass = part
                out[on] += mass * deriv(f[on])
        if not np.isfinite(out).all():
            raise FloatingPointError(f"loss {loss.name!r}: a derivative is not finite")
        return out

    def curvature(self, loss: Loss, f: np.ndarray) -> np.ndarray:
        r""":math:`\partial^2 L / \partial f(u)^2` by central differences of :math:`\ell'`."""
        h = 1e-6 * (1.0 + np.abs(f))
        return (self.dloss(loss, f + h) - self.dloss(loss, f - h)) / (2 * h)


def _solve_linear(loss: Loss, prob: _Problem, t: float) -> np.ndarray:
    gf, gr = loss.linear_params()
    return -t * (prob.wf * gf + prob.wr * gr)


def _solve_quadratic(loss: Loss, prob: _Problem, psi: Callable, method: str, tol: float) -> tuple[np.ndarray, dict]:
    kf, rf, kr, rr = loss.quadratic_params()
    d = prob.wf * kf + prob.wr * kr  # D
    rho = (prob.wf * kf * rf + prob.wr * kr * rr) / d
    sq = np.sqrt(d)  # D^{1/2}
    b = sq * (rho - prob.f0_or_zero())
    if method == "eigh":
        A = sq[:, None] * prob.gram() * sq[None, :]
        lam, V = scipy.linalg.eigh(A, check_finite=False, overwrite_a=True, driver="evd")
        return sq * (V @ (psi(lam) * (V.T @ b))), {"eigen_min": float(lam[0]), "eigen_max": float(lam[-1])}
    dense = method == "krylov"
    if dense:
        prob.gram()
    # one BLAS thread for the n x n products: spinning BLAS workers would slow the Rust calls around them
    with blas_single_thread():
        y, it = lanczos_apply(lambda v: sq * prob.kmv(sq * v, dense), b, psi, rtol=tol)
    return sq * y, {"iterations": it}


def _curvature_bound(loss: Loss, prob: _Problem) -> float:
    r"""A bound on :math:`\max_u |\partial^2 L/\partial f_u^2| / \omega_u` over :math:`f \in [-6, 6]`.

    :math:`\partial^2 L/\partial f_u^2 / \omega_u = (1 - c_u)\,\ell''_{\mathrm{fake}}
    + c_u\,\ell''_{\mathrm{real}}` with the real share :math:`c_u = w^r_u / \omega_u` (0 or 1 unless a fake point equals a real one), so
    the two second derivatives (central differences of :math:`\ell'`) are evaluated once on the 49-point
    grid and mixed over the distinct shares.
    """
    f = np.linspace(-6.0, 6.0, 49)
    h = 1e-6 * (1.0 + np.abs(f))
    cf = (loss.fake_deriv(f + h) - loss.fake_deriv(f - h)) / (2 * h)
    cr = (loss.real_deriv(f + h) - loss.real_deriv(f - h)) / (2 * h)
    share = np.unique(prob.wr / prob.mass)[:, None]
    curv = (1.0 - share) * cf[None, :] + share * cr[None, :]
    if not np.isfinite(curv).all():
        raise FloatingPointError(f"loss {loss.name!r}: a derivative is not finite")
    return float(np.max(np.abs(curv)))
