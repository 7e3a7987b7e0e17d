"""Networks to and from files: ``save(net, path)``, ``load(path)``, and ``check_state``, the
checks a state from outside (a file, a dict someone made) passes before
``ReLUNet.from_state`` builds it.

A state is ``ReLUNet.state()``: plain values and NumPy arrays. The file is the pickle-free,
atomic, bounded ``.npz`` of ``checkpoint``. A state written before BatchNorm and
``init_scale`` were stored (no ``batchnorm``, ``init_scale``, ``bn`` keys) loads as a net
without BN and ``init_scale=1``.
"""
from __future__ import annotations

import numpy as np

from .. import backend as B
from ..budget import ResourceLimitError, check_net_size
from ..layers import BatchNorm
from ..nets import ReLUNet, check_batchnorm, check_sizes
from .checkpoint import CheckpointError, load_state, save_state

STATE_KEYS = frozenset(("sizes", "bias", "normalize", "norm_eps", "dtype", "weights", "biases",
                        "masks"))                           # required
STATE_DEFAULTS = {"batchnorm": None, "init_scale": 1.0, "bn": []}   # optional (added later)
KIND = "ReLUNet"


def save(net, path):
    """Write ``net`` (a ``ReLUNet``) to ``path`` (.npz, atomic, no pickles)."""
    save_state(path, net.state(), kind=KIND)


def load(path, backend="numpy", limits=None):
    """The ``ReLUNet`` written by ``save``; refuses corrupt or foreign files
    (``CheckpointError``), NaN/inf weights, and widths past ``limits`` (``ResourceLimitError``,
    before the network is built)."""
    st = load_state(path, kind=KIND, limits=limits)
    try:
        return from_state(st, backend, limits)
    except ResourceLimitError:
        raise
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} does not describe a valid ReLUNet: {exc}") from None


def from_state(st, backend="numpy", limits=None):
    """``ReLUNet.from_state(check_state(st, limits), backend, limits)``: a state from outside,
    checked, then built."""
    return ReLUNet.from_state(check_state(st, limits), backend, limits)


def check_state(st, limits=None):
    """``st`` with the optional keys filled in, after checking everything ``from_state`` reads:
    the keys, the widths (against ``limits``, before anything is built), every array's shape
    against the widths, that arrays are finite and masks 0/1, and that every weight is 0 where
    its mask is (``_check_masked_weights``) (``ValueError`` naming the entry,
    ``ResourceLimitError`` past the limit)."""
    if not isinstance(st, dict) or not STATE_KEYS <= set(st):
        raise ValueError(f"a ReLUNet state must be a dict with keys {sorted(STATE_KEYS)}")
    unknown = sorted(set(st) - STATE_KEYS - set(STATE_DEFAULTS))
    if unknown:
        raise ValueError(f"a ReLUNet state has unknown keys {B.shown(unknown)}")
    st = {**STATE_DEFAULTS, **st}
    sizes = check_sizes(st["sizes"])
    for name in ("bias", "normalize"):                      # "False" would be truthy
        B.check_bool(name, st[name])
    if st["masks"] is not None and not isinstance(st["masks"], (list, tuple)):
        raise ValueError(f"masks must be None or a list, got {type(st['masks']).__name__}")
    check_net_size(sizes, st["masks"], B.check_dtype(st["dtype"]), limits,
                   f"the state's sizes={sizes}")
    _check_arrays(st, sizes)
    _check_masked_weights(st)
    _check_bn(st, sizes, check_batchnorm(st["batchnorm"]))
    return st


def _check_arrays(st, sizes):
    """Every weight (and bias, mask) of a state has the shape its widths say, and is finite."""
    L = len(sizes) - 1
    want = {"weights": [(sizes[l + 1], sizes[l]) for l in range(L)],
            "biases": [(sizes[l + 1],) for l in range(L)] if st["bias"] else None,
            "masks": [(sizes[l + 1], sizes[l]) for l in range(L)]}
    for name, shapes in want.items():
        arrays = st[name]
        if arrays is None and (shapes is None or name == "masks"):
            continue
        if shapes is None or not isinstance(arrays, (list, tuple)) or len(arrays) != L:
            raise ValueError(f"{name} must be a list of {L} arrays for sizes={sizes}")
        for l, (a, shape) in enumerate(zip(arrays, shapes)):
            if a is None and name == "masks":
                continue
            if not hasattr(a, "shape") or tuple(a.shape) != shape:
                raise ValueError(f"{name}[{l}] has shape {getattr(a, 'shape', None)}, expected "
                                 f"{shape} for sizes={sizes}")
            if name != "masks":
                B.check_finite(f"{name}[{l}]", B.to_numpy(a))


def _check_masked_weights(st):
    """Every mask holds only 0 and 1, and every weight where its mask is 0 is 0: the backends
    compute a masked layer differently (NumPy multiplies the stored weights, the compiled
    kernels skip the masked entries), so a non-zero masked weight would make them disagree."""
    for l, (W, m) in enumerate(zip(st["weights"], st["masks"] or [])):
        if m is None:
            continue
        m = B.to_numpy(m)
        if not np.isin(m, (0, 1)).all():
            raise ValueError(f"masks[{l}] must contain only 0 and 1")
        bad = int(np.count_nonzero(B.to_numpy(W)[m == 0]))
        if bad:
            raise ValueError(f"weights[{l}] is non-zero at {bad} entries where masks[{l}] is 0; "
                             "a masked weight must be 0 (the numpy and numba backends would "
                             "compute different networks)")


def _check_bn(st, sizes, batchnorm):
    """The state's ``bn`` entries: one per BatchNorm layer the options make, each with
    ``gamma``, ``beta`` (n,) where the BN is affine (else None) and ``fixed_stats`` None or
    ``[mean, var]`` of shape (n,) or (groups, n), every array finite."""
    bn = None if batchnorm is None else BatchNorm(1, **batchnorm)     # its options, checked
    bns = [] if bn is None or bn.identity else [bn] * (len(sizes) - 2)  # one per hidden layer
    bn_states = st["bn"]
    if not isinstance(bn_states, (list, tuple)) or len(bn_states) != len(bns):
        raise ValueError(f"bn must be a list of {len(bns)} entries (one per BatchNorm layer) "
                         f"for batchnorm={batchnorm}")
    for i, (bn, d) in enumerate(zip(bns, bn_states)):
        if not isinstance(d, dict) or set(d) != {"gamma", "beta", "fixed_stats"}:
            raise ValueError(f"bn[{i}] must be a dict with keys beta, fixed_stats, gamma")
        stats = d["fixed_stats"]
        if stats is not None and (not isinstance(stats, (list, tuple)) or len(stats) != 2):
            raise ValueError(f"bn[{i}].fixed_stats must be None or [mean, var]")
        n = sizes[i + 1]
        shapes = [(n,)] * bn.affine                        # gamma, beta: (n,); stats: or (G, n)
        named = [("gamma", d["gamma"], shapes), ("beta", d["beta"], shapes)]
        named += [(f"fixed_stats[{k}]", a, [(n,), (bn.groups, n)])
                  for k, a in enumerate(stats or []) if a is not None]
        for name, a, want in named:
            if (a is None) != (not want) or (a is not None and tuple(getattr(
                    a, "shape", ())) not in want):
                raise ValueError(f"bn[{i}].{name} has shape {getattr(a, 'shape', None)}, "
                                 f"expected {' or '.join(map(str, want)) or None}")
            if a is not None:
                B.check_finite(f"bn[{i}].{name}", B.to_numpy(a))
