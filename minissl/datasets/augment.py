"""Augmentations of real data: functions on batches of arrays, composable.

Every function takes a batch ``x`` (N, D) (batch-major: one flattened sample per row), a NumPy
``Generator`` ``rng`` and its parameters, and returns a new (N, D) array (``x`` is never
changed). ``shape`` is the shape of one sample: ``(L,)`` for a 1-D signal, ``(H, W)`` for a
grey image, ``(C, H, W)`` for a colour one (the last two axes are the image's).

    translate(x, shape, max_shift, rng)   each sample moved by an integer shift drawn
                                          uniformly in [-max_shift, max_shift] per axis,
                                          zero padding (1-D: along the signal; 2-D: rows and
                                          columns independently)
    random_mask(x, keep, rng)             each coordinate kept with probability keep, else 0
    gaussian_noise(x, sigma, rng)         x + sigma * eps, eps ~ N(0, I)
    amplitude_scale(x, lo, hi, rng)       each sample times a factor ~ U(lo, hi)
    complementary_masks(x, rng)           (2 D x, 2 (I - D) x), D diagonal iid Bernoulli(1/2)
                                          per sample: a pair of views that share no coordinate
                                          (decoupling.SparseCoding's "complementary")

``compose(f, g, ...)`` chains one-view augmentations ``f(x, rng)`` (bind their parameters
with ``functools.partial`` or a lambda) left to right. Zero means "nothing here": the sources
(``sources.RealData``) augment the raw data, whose background is 0, before standardising.
"""
from __future__ import annotations

import numpy as np

from .. import backend as B


def check_batch(x, name="x"):
    """``x`` as a finite float64 (N, D) array with N >= 1, else ``ValueError``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be an (N, D) batch with N >= 1, got shape {x.shape}")
    return B.check_finite(name, x)


def check_shape(shape, D):
    """``shape`` as a tuple of 1 to 3 positive ints whose product is ``D``."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or \
            not 1 <= len(shape) <= 3:
        raise ValueError(f"shape must be (L,), (H, W) or (C, H, W), got {shape!r}")
    shape = tuple(B.check_int(f"shape[{i}]", s, 1) for i, s in enumerate(shape))
    if int(np.prod(shape)) != D:
        raise ValueError(f"shape {shape} must hold D = {D} values per sample")
    return shape


def _shifted(x, axis, shift):
    """``x`` (N, ..., n, ...) moved by ``shift[i]`` (N,) along ``axis``, zero padding."""
    n = x.shape[axis]
    src = np.arange(n)[None, :] - shift[:, None]               # (N, n) source index per target
    valid = (src >= 0) & (src < n)
    idx = np.clip(src, 0, n - 1)
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    shape[axis] = n
    idx, valid = idx.reshape(shape), valid.reshape(shape)
    return np.take_along_axis(x, np.broadcast_to(idx, x.shape), axis) * valid


def translate(x, shape, max_shift, rng):
    """Random integer translation with zero padding: per sample and per spatial axis a shift
    ``s ~ U{-max_shift, ..., max_shift}``, ``out[i] = x[i - s]`` (0 where ``i - s`` falls
    outside). 1-D samples move along the signal, images along rows and columns."""
    x = check_batch(x)
    shape = check_shape(shape, x.shape[1])
    k = B.check_int("max_shift", max_shift, 0, max(shape[-2:]))
    if k == 0:
        return x.copy()
    rng = B.rng(rng)
    y = x.reshape(x.shape[0], *shape)
    for axis in range(1 + len(shape) - min(len(shape), 2), 1 + len(shape)):
        y = _shifted(y, axis, rng.integers(-k, k + 1, x.shape[0]))
    return y.reshape(x.shape)


def random_mask(x, keep, rng):
    """Each coordinate of each sample kept with probability ``keep`` in (0, 1], else set to 0
    (no rescaling)."""
    x = check_batch(x)
    keep = B.check_real("keep", keep, 0, 1, lo_open=True)
    return x * (B.rng(rng).random(x.shape) < keep)


def gaussian_noise(x, sigma, rng):
    """``x + sigma * eps`` with ``eps ~ N(0, I)`` (sigma >= 0, in the units of ``x``)."""
    x = check_batch(x)
    sigma = B.check_real("sigma", sigma, 0)
    return x + sigma * B.rng(rng).standard_normal(x.shape) if sigma else x.copy()


def amplitude_scale(x, lo, hi, rng):
    """Each sample times one factor ``a ~ U(lo, hi)``, ``0 <= lo <= hi``."""
    x = check_batch(x)
    lo = B.check_real("lo", lo, 0)
    hi = B.check_real("hi", hi, lo)
    return x * B.rng(rng).uniform(lo, hi, (x.shape[0], 1))


def complementary_masks(x, rng):
    """Two views sharing no coordinate: ``(2 D x, 2 (I - D) x)`` with ``D`` diagonal, iid
    Bernoulli(1/2) per sample and coordinate; their mean is ``x``."""
    x = check_batch(x)
    D = B.rng(rng).random(x.shape) < 0.5
    return 2.0 * x * D, 2.0 * x * ~D


def compose(*augmentations):
    """``f(x, rng)`` applying one-view augmentations ``g(x, rng)`` in order (none: a copy)."""
    for i, g in enumerate(augmentations):
        if not callable(g):
            raise ValueError(f"augmentations[{i}] must be a function (x, rng) -> x, got {g!r}")

    def f(x, rng):
        rng, x = B.rng(rng), check_batch(x)
        for g in augmentations:
            x = g(x, rng)
        return x if augmentations else x.copy()
    return f
