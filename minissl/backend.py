"""Array namespace (NumPy | CuPy), device transfer, seeded RNG, thread limits, validators.

The mathematics is written once against an array module ``xp``; this module picks it.

- ``get_xp(backend)``: the module a backend computes with ("numpy" and "numba" -> numpy,
  "cupy" -> cupy). Asking for "cupy" where CuPy or a GPU is missing raises ``BackendError``;
  there is never a silent fallback.
- ``array_module(*arrays)``: the module the given arrays live in (``cupy.get_array_module``
  behind a shim that works without CuPy). ``to_numpy(a)``: a host copy/view.
- ``rng(seed)``: NumPy's ``default_rng``; ``derive_seed(seed, stream)``: an independent seed
  per use. Data are made on the CPU so that every backend sees the same numbers.
- ``check_int``/``check_real``/``check_choice``/``check_finite``: the shared validators; each
  raises ``ValueError`` naming the parameter and the allowed values. ``setting``: a config
  dataclass field that declares its help, label and bounds once (the CLI's flags and the app's
  fields read them); ``check_settings`` checks a config's fields against them.
- ``require(module, extra)``: an optional package, or ``MissingExtra`` naming the extra.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import numbers

import numpy as np

BACKENDS = ("numpy", "numba", "cupy")
DTYPES = ("float64", "float32")


class BackendError(ValueError):
    """A backend was asked for that cannot run here (names the parameter and the choices)."""


class MissingExtra(ImportError):
    """An optional package is not installed; the message is one line naming the extra."""


def require(module, extra):
    """``module`` imported, else ``MissingExtra``: ``pip install "minissl[extra]"``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"this needs {module.split('.')[0]}, which is not installed: "
                           f'pip install "minissl[{extra}]"') from None


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
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
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
def _num(v):
    return str(v) if isinstance(v, numbers.Integral) else f"{v:g}"


def _range(lo, hi, lo_open=False):
    if hi is None:
        return f"{'>' if lo_open else '>='} {_num(lo)}" if lo is not None else ""
    if lo is None:
        return f"<= {_num(hi)}"
    return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}]"


def check_int(name, v, lo=None, hi=None):
    """``v`` as an int: an integer or an integral float (NumPy scalars too), never a bool or a
    string, within ``[lo, hi]``. Raises ``ValueError`` naming ``name`` and the range."""
    ok = isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
    if ok and not isinstance(v, numbers.Integral):
        ok = math.isfinite(v) and float(v).is_integer()
    if ok:
        v = int(v)
        ok = (lo is None or v >= lo) and (hi is None or v <= hi)
    if not ok:
        raise ValueError(f"{name} must be an integer {_range(lo, hi)}".rstrip()
                         + f", got {v!r}")
    return v


def check_real(name, v, lo=None, hi=None, *, lo_open=False):
    """``v`` as a finite float (NumPy scalars accepted; bools and strings refused) within
    ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``). Raises ``ValueError`` naming ``name``."""
    ok = isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
    if ok:
        v = float(v)
        ok = (math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo))
              and (hi is None or v <= hi))
    if not ok:
        raise ValueError(f"{name} must be a finite number {_range(lo, hi, lo_open)}".rstrip()
                         + f", got {v!r}")
    return v


def check_choice(name, v, choices):
    """``v`` if it is one of ``choices``, else ``ValueError`` listing them."""
    try:
        ok = v in choices
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {v!r}")
    return v


def setting(default, help, *, label=None, lo=None, hi=None, lo_open=False, hi_open=False,
            choices=None):
    """A config dataclass field declared once: ``help`` (the CLI's help, the app's info),
    ``label`` (the app's name), bounds ``lo``/``hi`` (open ends with ``lo_open``/``hi_open``) or
    ``choices``, kept in the field's metadata (only those given)."""
    meta = dict(help=help, label=label, lo=lo, hi=hi, lo_open=lo_open or None,
                hi_open=hi_open or None, choices=choices)
    return dataclasses.field(default=default,
                             metadata={k: v for k, v in meta.items() if v is not None})


def check_settings(cfg):
    """Check each field of the dataclass ``cfg`` against its ``setting`` metadata (``choices``:
    ``check_choice``; bounds: ``check_int`` for an int field, else ``check_real``); the first bad
    field raises ``ValueError`` naming it. Returns ``cfg``."""
    for f in dataclasses.fields(cfg):
        m, v = f.metadata, getattr(cfg, f.name)
        if "choices" in m:
            check_choice(f.name, v, m["choices"])
        elif f.type in ("int", int) and ("lo" in m or "hi" in m):
            check_int(f.name, v, m.get("lo"), m.get("hi"))
        elif "lo" in m or "hi" in m:
            v = check_real(f.name, v, m.get("lo"), m.get("hi"), lo_open=m.get("lo_open", False))
            if m.get("hi_open") and v == m["hi"]:
                raise ValueError(f"{f.name} must be in [{_num(m['lo'])}, {_num(m['hi'])}), "
                                 f"got {getattr(cfg, f.name)!r}")
    return cfg


def check_finite(name, a, xp=None):
    """Raise ``ValueError`` if the array ``a`` holds NaN or infinite values."""
    xp = xp or array_module(a)
    if not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a
