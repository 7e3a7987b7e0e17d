"""Array namespace (NumPy | CuPy), device transfer, seeded RNG, thread limits, validators.

The mathematics is written once against an array module ``xp``; this module picks it.

- ``get_xp(backend)``: the module a backend computes with ("numpy" and "numba" -> numpy,
  "cupy" -> cupy). Asking for "cupy" where CuPy or a GPU is missing raises ``BackendError``;
  there is never a silent fallback.
- ``array_module(*arrays)``: the module the given arrays live in (``cupy.get_array_module``
  behind a shim that works without CuPy). ``to_numpy(a)``: a host copy/view.
- ``rng(seed)``: NumPy's ``default_rng``; ``derive_seed(seed, stream)``: an independent seed
  per use. Data are made on the CPU so that every backend sees the same numbers.
- ``check_finite``; and, from ``minissl.checks`` (the validators, settings metadata and
  optional packages, kept out of the core), ``check_int``/``check_real``/``check_bool``/
  ``check_choice``, ``shown``, ``setting``/``check_settings``, ``require``: ``B.check_int``.
"""
from __future__ import annotations

import functools

import numpy as np

from .checks import (MissingExtra, check_bool, check_choice, check_int,  # noqa: F401
                     check_real, check_settings, check_source, require, setting, shown)

BACKENDS = ("numpy", "numba", "cupy")
DTYPES = ("float64", "float32")


class BackendError(ValueError):
    """A backend was asked for that cannot run here (names the parameter and the choices)."""


@functools.lru_cache(maxsize=None)
def _cupy():
    """The cupy module, or None where it does not import (asked once per process)."""
    try:
        import cupy  # noqa: F401
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one usable GPU."""
    cp = _cupy()
    if cp is None:
        return False
    try:
        return bool(cp.is_available())
    except Exception:
        return False


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except Exception:
        return False
    return True


def check_backend(backend: str) -> str:
    """Validate a backend name and that it can run here; return it."""
    check_choice("backend", backend, BACKENDS)
    if backend == "cupy" and not cupy_available():
        why = "CuPy is not installed" if _cupy() is None else "CuPy sees no usable GPU"
        raise BackendError(
            f"backend='cupy' cannot run here: {why}. Install the 'gpu' extra on a machine "
            f"with an NVIDIA GPU, or choose backend='numpy' or 'numba'."
        )
    if backend == "numba" and not numba_available():
        raise BackendError("backend='numba' needs the numba package (pip install numba)")
    return backend


def check_dtype(dtype) -> np.dtype:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {shown(dtype)}")
    return np.dtype(name)


def get_xp(backend: str):
    """The array module for ``backend`` (validated)."""
    check_backend(backend)
    return _cupy() if backend == "cupy" else np


def array_module(*arrays):
    """``cupy.get_array_module`` that also works where CuPy is absent."""
    cp = _cupy()
    if cp is None:
        return np
    return cp.get_array_module(*arrays)


def to_numpy(a):
    """A NumPy array with the values of ``a`` (CuPy arrays are copied to the host)."""
    if array_module(a) is np:
        return np.asarray(a)
    return _cupy().asnumpy(a)


# ----------------------------------------------------------------------------- randomness
def rng(seed=None) -> np.random.Generator:
    """NumPy's seeded generator; an existing Generator is passed through."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        seed = check_int("seed", seed, 0)
    return np.random.default_rng(seed)


def derive_seed(seed, stream):
    """An independent integer seed for one use of ``seed`` (e.g. 1 init, 2 training data,
    3 evaluation): ``SeedSequence([seed, stream])``'s first word."""
    return int(np.random.SeedSequence([check_int("seed", seed, 0), stream]).generate_state(1)[0])


def blas_threads(n):
    """A context that limits NumPy's/SciPy's BLAS pool to ``n`` threads (None: unchanged).

    The networks here are small: one BLAS thread is usually fastest, and several fight over a
    busy machine (docs/performance.md).
    """
    from contextlib import nullcontext

    if n is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=int(n), user_api="blas")


# ----------------------------------------------------------------------------- validators
def check_finite(name, a, xp=None):
    """Raise ``ValueError`` if the array ``a`` holds NaN or infinite values."""
    xp = xp or array_module(a)
    if not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a
