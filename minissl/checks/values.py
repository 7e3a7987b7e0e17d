"""The shared validators: each returns the value it checked, or raises ``ValueError`` naming
the parameter and the allowed values (NaN, inf, bools and strings are refused as numbers)."""
from __future__ import annotations

import math
import numbers

import numpy as np


def format_number(v):
    """``v`` for a message: an integer as is, a float with ``:g``."""
    return str(v) if isinstance(v, numbers.Integral) else f"{v:g}"


def _range(lo, hi, lo_open=False):
    if hi is None:
        return f"{'>' if lo_open else '>='} {format_number(lo)}" if lo is not None else ""
    if lo is None:
        return f"<= {format_number(hi)}"
    return f"in {'(' if lo_open else '['}{format_number(lo)}, {format_number(hi)}]"


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
