"""The shared validators: each returns the value it checked, or raises ``ValueError`` naming
the parameter and the allowed values (NaN, inf, bools and strings are refused as numbers;
strings and numbers are refused as bools). A value echoed in a message is ``shown``: its repr
cut to ``MAX_SHOWN`` characters, so a 5 MB string or a 300-digit integer never comes back
whole."""
from __future__ import annotations

import math
import numbers

import numpy as np

MAX_SHOWN = 80           # characters of a value echoed in a message


def shown(v, limit=MAX_SHOWN):
    """``repr(v)`` for a message, at most ``limit`` characters: a longer one is cut and says
    how long it was (``'aaaa… (5,000,002 characters)'``); an integer too long to print
    (``sys.get_int_max_str_digits``) is described by its size."""
    try:
        text = repr(v)
    except ValueError:                                   # int past the str-digits limit
        return f"<an integer of {int(v).bit_length():,} bits>"
    if len(text) <= limit:
        return text
    tail = f"… ({len(text):,} characters)"
    return text[:max(1, limit - len(tail))] + tail


def format_number(v):
    """``v`` for a message: an integer as is, a float with ``:g``."""
    return shown(v) if isinstance(v, numbers.Integral) else f"{v:g}"


def _range(lo, hi, lo_open=False, hi_open=False):
    if hi is None:
        return f"{'>' if lo_open else '>='} {format_number(lo)}" if lo is not None else ""
    if lo is None:
        return f"{'<' if hi_open else '<='} {format_number(hi)}"
    return (f"in {'(' if lo_open else '['}{format_number(lo)}, {format_number(hi)}"
            f"{')' if hi_open else ']'}")


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
                         + f", got {shown(v)}")
    return v


def check_real(name, v, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """``v`` as a finite float (NumPy scalars accepted; bools, strings and integers too large
    for a float refused) within ``[lo, hi]`` (an open end with ``lo_open``/``hi_open``).
    Raises ``ValueError`` naming ``name``."""
    ok = isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
    if ok:
        try:
            f = float(v)
        except OverflowError:                            # an int past 1.8e308
            f = math.inf
        ok = (math.isfinite(f) and (lo is None or (f > lo if lo_open else f >= lo))
              and (hi is None or (f < hi if hi_open else f <= hi)))
        v = f if ok else v
    if not ok:
        raise ValueError(f"{name} must be a finite number {_range(lo, hi, lo_open, hi_open)}"
                         .rstrip() + f", got {shown(v)}")
    return v


def check_bool(name, v):
    """``v`` as a bool: ``True`` or ``False`` (a NumPy bool too). Strings (``"False"`` is
    truthy), numbers and None are refused: ``ValueError`` naming ``name``."""
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {shown(v)}")
    return bool(v)


def check_choice(name, v, choices):
    """``v`` if it is one of ``choices``, else ``ValueError`` listing them."""
    try:
        ok = v in choices
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {shown(v)}")
    return v


SOURCE_METHODS = {"triples": "triples(n, rng) -> (x, x_pos, x_neg)",
                  "views": "views(n, m, rng) -> (n, m, dim) array",
                  "labelled": "labelled(n, rng) -> (x, x_pos, labels)"}


def check_source(source, method, why):
    """``source`` if it follows the data-source protocol a run needs: an integer ``dim`` and a
    callable ``method`` (one of ``SOURCE_METHODS``); else ``ValueError`` naming ``source``, the
    protocol and ``why`` it is needed (a path such as "data.csv" is not a source)."""
    dim = getattr(source, "dim", None)
    if (not callable(getattr(source, method, None)) or isinstance(dim, (bool, np.bool_))
            or not isinstance(dim, numbers.Integral)):
        raise ValueError(f"source must be a data source with an integer dim and "
                         f"{SOURCE_METHODS[method]} (for {why}), such as GaussianClusters or "
                         f"HLTM; got {type(source).__name__} {shown(source)}")
    return source
