"""How much memory and work one request may take, and small estimators of both.

Units: memory in bytes; work in multiply-adds (one ``a += b * c``; a GEMM of shapes
(m, k) @ (k, n) is ``m * k * n``). ``seconds_estimate(work) = work / MADDS_PER_SECOND`` with a
rate calibrated on one core (docs/performance.md, "Cost model"), for messages such as "~30 s".
Fixed costs that are not multiply-adds are counted in the same unit: ``STEP_OVERHEAD`` per
training step (Python and NumPy call overhead, what a tiny network's step costs) and
``DRAW_COST`` per random number drawn for the data.

- ``Limits(max_memory, max_work)``: frozen. ``DEFAULT`` is generous (the Python API);
  ``PUBLIC_APP`` is tight (a shared web app: 512 MiB, ~2 minutes of work).
- ``current_limits(override=None)``: ``override`` if given, else ``DEFAULT`` with the
  environment variables ``MINISSL_MAX_MEMORY`` (bytes: "2147483648", "512M", "2G", "1.5GiB";
  K/M/G/T are powers of 1024) and ``MINISSL_MAX_WORK`` (multiply-adds: "1e13") applied.
  Entry points take ``limits=None`` (meaning ``current_limits()``) or a ``Limits``.
- ``check_memory`` / ``check_work`` raise ``ResourceLimitError`` (a ValueError) naming the
  parameter, the estimate, the limit and how to raise it.
- Estimators (Python ints, nothing allocated): ``array_bytes``, ``mlp_weights``,
  ``mlp_activation_bytes``, ``mlp_step_work``, ``training_work``.
- ``Cost(memory, work)``: an estimate as parts ``(amount, what, param)``; ``cost.check(limits)``
  checks every part, then the totals. Each entry point builds its ``Cost`` next to the code
  it estimates (``nets.net_bytes``, ``train.train_cost``, ``HLTMConfig.cost``, ...).

This module imports only ``minissl.checks`` (``shown``: values echoed in messages are cut).
"""
from __future__ import annotations

import math
import operator
import os
import re
from dataclasses import dataclass

import numpy as np

from ..checks import shown

# Calibration (docs/performance.md, "Cost model"; bench/calibrate_cost.py): one core of the
# 2-core x86_64 container ran the tree network's training steps at 8.7e9-2.6e10 multiply-adds
# per second, and a tiny network's step took 0.33-0.42 ms idle, 0.62 ms at load average 4.8
# (of which 0.06 ms drawing its data).
MADDS_PER_SECOND = 5e9   # about half the slowest measured BLAS rate: estimates err long
STEP_OVERHEAD = 4e6      # one training step's fixed cost (0.8 ms at MADDS_PER_SECOND)
DRAW_COST = 50           # one random number of the data (HLTM: 7 ns per node and sample)
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1 << 40}


class ResourceLimitError(ValueError):
    """A request would need more memory or work than the limits allow."""


@dataclass(frozen=True)
class Limits:
    """``max_memory``: bytes one request may allocate; ``max_work``: multiply-adds it may do."""
    max_memory: int
    max_work: float

    def __post_init__(self):
        if isinstance(self.max_memory, bool) or not isinstance(self.max_memory, int) \
                or self.max_memory <= 0:
            raise ValueError(f"max_memory must be a positive int (bytes), got {shown(self.max_memory)}")
        if isinstance(self.max_work, bool) or not isinstance(self.max_work, (int, float)) \
                or not 0 < self.max_work < math.inf:
            raise ValueError(f"max_work must be a positive finite number (multiply-adds), "
                             f"got {shown(self.max_work)}")


DEFAULT = Limits(max_memory=2 * GiB, max_work=1e13)
PUBLIC_APP = Limits(max_memory=512 * MiB, max_work=120 * MADDS_PER_SECOND)


def seconds_estimate(work):
    """Seconds that ``work`` multiply-adds take at ``MADDS_PER_SECOND`` (a rough upper guess)."""
    return work / MADDS_PER_SECOND


def format_bytes(n):
    """``n`` bytes for people: "512 B", "1.5 KiB", "74.5 GiB" (powers of 1024)."""
    n = int(n)
    if n < KiB:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} EiB"


def _format_seconds(s):
    return f"{s:.2g} s" if s < 10 else f"{s:,.0f} s"


def _round_up(x):
    """``x`` rounded up to two significant digits (a limit that admits ``x``)."""
    step = 10.0 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / step) * step


def parse_bytes(text):
    """Bytes from "2147483648", "1e9", "512M", "2G", "2GB", "1.5GiB" (K/M/G/T: powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?[0-9]+)?)\s*(?:([KMGT])(?:i?B)?|B)?\s*", text, re.I)
    if m is None:
        raise ValueError(f"not a byte count: {shown(text)}")
    n = float(m.group(1)) * _UNITS[(m.group(2) or "").upper()]
    if not 1 <= n < math.inf:
        raise ValueError(f"not a positive byte count: {shown(text)}")
    return int(n)


def _from_env(name, parse, example):
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return parse(text)
    except ValueError:
        raise ValueError(f"{name}={shown(text)} is not allowed; use e.g. {name}={example}") from None


def _parse_work(text):
    work = float(text)
    if not 0 < work < math.inf:
        raise ValueError(text)
    return work


def current_limits(override=None):
    """``override`` if not None, else ``DEFAULT`` updated from MINISSL_MAX_MEMORY/MAX_WORK.

    A malformed variable raises ValueError naming it and showing an allowed value.
    """
    if override is not None:
        if not isinstance(override, Limits):
            raise TypeError(f"limits must be a minissl.limits.Limits or None, "
                            f"got {type(override).__name__}")
        return override
    memory = _from_env("MINISSL_MAX_MEMORY", parse_bytes, "2G")
    work = _from_env("MINISSL_MAX_WORK", _parse_work, "1e13")
    return Limits(max_memory=DEFAULT.max_memory if memory is None else memory,
                  max_work=DEFAULT.max_work if work is None else work)


def check_memory(nbytes, what, param, limits=None):
    """Raise ``ResourceLimitError`` if ``nbytes > limits.max_memory``.

    ``what``: what needs the memory ("the evaluation pass"); ``param``: the parameter that
    drives it, as the user wrote it ("hid=1000", "path='net.npz'").
    """
    lim = current_limits(limits)
    if nbytes > lim.max_memory:
        need = f"{max(1, -(-int(nbytes) // GiB))}G"
        raise ResourceLimitError(
            f"{param} needs ~{format_bytes(nbytes)} for {what}; the limit is "
            f"{format_bytes(lim.max_memory)} (raise it with MINISSL_MAX_MEMORY={need} or "
            f"limits=Limits(max_memory=..., max_work=...))")


def check_work(work, what, param, limits=None):
    """Raise ``ResourceLimitError`` if ``work > limits.max_work`` (multiply-adds)."""
    lim = current_limits(limits)
    if work > lim.max_work:
        secs = _format_seconds(seconds_estimate(work))
        limit_secs = _format_seconds(seconds_estimate(lim.max_work))
        raise ResourceLimitError(
            f"{param} needs ~{work:.3g} multiply-adds (~{secs}) for {what}; the limit is "
            f"{lim.max_work:.3g} (~{limit_secs}) (raise it with MINISSL_MAX_WORK="
            f"{_round_up(work):.2g} or limits=Limits(max_memory=..., max_work=...))")


# ----------------------------------------------------------------------------- estimators
def array_bytes(shape, dtype):
    """``prod(shape) * itemsize`` as a Python int (no overflow, nothing allocated)."""
    shape = tuple(map(operator.index, shape if np.ndim(shape) else (shape,)))
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return math.prod(shape) * np.dtype(dtype).itemsize


def mlp_weights(sizes, masks=None):
    """Weight entries an MLP holds: ``sum_l n_{l+1} n_l``, plus as many per masked layer.

    Masks do not reduce the count: masked weights are stored dense, and each mask that is not
    None is itself a dense array of the weights' shape. Only ``m is None`` is looked at.
    """
    dense = [int(a) * int(b) for a, b in zip(sizes[:-1], sizes[1:])]
    masked = 0 if masks is None else sum(d for d, m in zip(dense, masks) if m is not None)
    return sum(dense) + masked


def mlp_activation_bytes(sizes, batch, dtype):
    """Forward caches of a batch: ``2 * batch * sum_l n_l * itemsize``.

    (Pre-activations and activations of every layer; input and output included, so an upper
    bound.)
    """
    return 2 * int(batch) * sum(int(n) for n in sizes) * np.dtype(dtype).itemsize


def mlp_step_work(sizes, batch, live_weights=None):
    """Multiply-adds of one forward + backward pass: ``3 * live_weights * batch``.

    (Forward ``f @ W.T``, backward ``delta.T @ f`` and ``delta @ W``.) ``live_weights``: the
    weights the products touch; None means all, ``sum_l n_{l+1} n_l`` (dense products multiply
    masked zeros too).
    """
    if live_weights is None:
        live_weights = mlp_weights(sizes)
    return 3 * int(live_weights) * int(batch)


def training_work(sizes, batch, steps, live_weights=None):
    """``steps * (mlp_step_work + STEP_OVERHEAD)``: a training loop's multiply-adds, with the
    fixed cost of a step, so that many steps of a tiny network count too."""
    return int(steps) * (mlp_step_work(sizes, batch, live_weights) + STEP_OVERHEAD)


@dataclass(frozen=True)
class Cost:
    """An estimate of what a request needs, as parts: ``memory`` ``((bytes, what, param),
    ...)`` and ``work`` ``((multiply-adds, what, param), ...)``. Parts add up (an upper bound:
    transient buffers are counted as if they were all alive at once)."""
    memory: tuple = ()
    work: tuple = ()

    @property
    def bytes(self):
        return sum(int(p[0]) for p in self.memory)

    @property
    def madds(self):
        return float(sum(p[0] for p in self.work))

    @property
    def seconds(self):
        return seconds_estimate(self.madds)

    def __add__(self, other):
        return Cost(self.memory + other.memory, self.work + other.work)

    def scaled(self, k, param):
        """The cost of ``k`` such requests one after the other (memory unchanged)."""
        return Cost(self.memory, tuple((w * k, f"{k} runs of {what}", f"{param}, {p}")
                                       for w, what, p in self.work))

    def check(self, limits=None):
        """Raise ``ResourceLimitError`` for the first part, or the total, over ``limits``."""
        for n, what, param in self.memory:
            check_memory(n, what, param, limits)
        for w, what, param in self.work:
            check_work(w, what, param, limits)
        if len(self.memory) > 1:
            check_memory(self.bytes, "all of it together (" + ", ".join(
                p[1] for p in self.memory) + ")", _params(self.memory), limits)
        if len(self.work) > 1:
            check_work(self.madds, "all of it together (" + ", ".join(
                p[1] for p in self.work) + ")", _params(self.work), limits)
        return self


def _params(parts):
    seen = []
    for p in parts:
        if p[2] not in seen:
            seen.append(p[2])
    return "; ".join(seen)
