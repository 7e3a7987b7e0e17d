"""The Losses tab's curves: each loss and its pair weight as one of ``r_+``, ``r_-`` or ``τ``
varies (``loss_curves``), from the loss functions of ``minissl.losses``."""
from __future__ import annotations

import numpy as np

from .. import backend as B
from ..losses import MAX_CURVE_NEGATIVES, TAU_MIN, check_loss

LOSS_VARIABLES = ("r_pos", "r_neg", "tau")
MAX_CURVE_POINTS = 1 << 16        # n of loss_curves
THREE_LOSSES = ("simple", "soft_triplet", "infonce")


def loss_curves(vary="r_pos", *, r_pos=1.0, r_neg=1.0, tau=1.0, margin=0.0, H=1, lo=None,
                hi=None, n=201, losses=THREE_LOSSES):
    """Each loss, ``dL/dr_+`` and the pair weight ``ξ = -dL/dr_k`` as one of ``r_+``, ``r_-``
    (all H negatives at the same distance) or ``τ`` varies, the others held fixed.

    Returns ``(t, {loss: (L, dL/dr_pos, xi)})`` with every array (n,). Only InfoNCE takes
    ``H`` negatives; the others are defined with H = 1.
    """
    B.check_choice("vary", vary, LOSS_VARIABLES)
    r_pos, r_neg = B.check_real("r_pos", r_pos, 0), B.check_real("r_neg", r_neg, 0)
    tau, margin = B.check_real("tau", tau, TAU_MIN), B.check_real("margin", margin)
    H, n = B.check_int("H", H, 1, MAX_CURVE_NEGATIVES), B.check_int("n", n, 2, MAX_CURVE_POINTS)
    lo = None if lo is None else B.check_real("lo", lo)
    hi = None if hi is None else B.check_real("hi", hi)
    if vary == "tau":
        lo, hi = (0.05 if lo is None else lo), (5.0 if hi is None else hi)
        if not TAU_MIN <= lo < hi:
            raise ValueError(f"tau range must satisfy {TAU_MIN:g} <= lo < hi, got lo={lo}, "
                             f"hi={hi}")
    else:
        lo, hi = (0.0 if lo is None else lo), (4.0 if hi is None else hi)
        if not 0 <= lo < hi:
            raise ValueError(f"{vary} range must satisfy 0 <= lo < hi, got lo={lo}, hi={hi}")
    t = np.linspace(lo, hi, n)                                        # (n,)
    out = {}
    for name in losses:
        h = int(H) if name == "infonce" else 1
        fn = check_loss(name, 1.0 if vary == "tau" else tau, h)
        rp = t if vary == "r_pos" else np.full_like(t, r_pos)
        rn = np.repeat((t if vary == "r_neg" else np.full_like(t, r_neg))[:, None], h, 1)
        if vary == "tau":
            vals = [fn(rp[i:i + 1], rn[i:i + 1], float(t[i]), margin) for i in range(len(t))]
            L = np.array([v[0][0] for v in vals])
            dp = np.array([v[1][0] for v in vals])
            xi = np.array([-v[2][0, 0] for v in vals])
        else:
            L, dp, dn = fn(rp, rn, float(tau), float(margin))
            xi = -dn[:, 0]
        out[name] = (L, dp, xi)
    return t, out
