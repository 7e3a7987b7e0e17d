"""Central finite differences, the first oracle for every hand-written gradient.

``numerical_gradient(f, params)``: for each array ``p`` in ``params`` (perturbed in place,
restored afterwards) and each entry ``i``, ``(f(p_i + ε) - f(p_i - ε)) / 2ε``. Use float64.
``gradient_error(analytic, numeric)``: ``max |a - n| / max(max |n|, floor)`` over all arrays,
a scale-free worst-case error; ``check_gradients`` raises ``AssertionError`` above ``tol``.
"""
from __future__ import annotations

import numpy as np

from .backend import to_numpy


def numerical_gradient(f, params, eps=1e-6):
    """Central differences of the scalar ``f()`` w.r.t. each array in ``params`` (NumPy)."""
    grads = []
    for p in params:
        if p.dtype != np.float64:
            raise ValueError(f"finite differences need float64 parameters, got {p.dtype}")
        g = np.zeros(p.shape)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            fp = float(f())
            flat[i] = old - eps
            fm = float(f())
            flat[i] = old
            gflat[i] = (fp - fm) / (2 * eps)
        grads.append(g)
    return grads


def gradient_error(analytic, numeric, floor=1e-8):
    """Worst entry-wise difference relative to the largest numeric entry (scale-free)."""
    a = np.concatenate([to_numpy(x).ravel() for x in analytic])
    n = np.concatenate([to_numpy(x).ravel() for x in numeric])
    if a.shape != n.shape:
        raise ValueError(f"gradient sizes differ: {a.shape} vs {n.shape}")
    return float(np.abs(a - n).max() / max(np.abs(n).max(), floor))


def check_gradients(f, params, analytic, eps=1e-6, tol=1e-6):
    """Assert that ``analytic`` matches central differences of ``f``; return the error."""
    err = gradient_error(analytic, numerical_gradient(f, params, eps))
    if not err <= tol:
        raise AssertionError(f"gradient check failed: relative error {err:.3e} > tol {tol:.1e}")
    return err
