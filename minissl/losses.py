"""The three contrastive losses, each written once as a function of the distances.

Distances (docs/design.md): ``r_pos = ½||z - z_pos||²`` (N,), ``r_neg[:, k] = ½||z - z_neg_k||²``
(N, H). Per anchor:

- simple:       ``L = r_pos - r_1``                                    (H = 1)
- soft_triplet: ``L = τ log(1 + exp((r_pos - r_1 + r_0)/τ))``          (H = 1, margin r_0)
- infonce:      ``L = -τ log(e^{-r_pos/τ} / (e^{-r_pos/τ} + Σ_k e^{-r_k/τ}))``
                ``  = r_pos + τ logsumexp(-r_pos/τ, -r_1/τ, ..., -r_H/τ)``
- ref_nce:      ``L = -σ((r̄_1 - r̄_pos)/τ)`` on batch means (H = 1): the HLTM reference code's
                "nce", for side-by-side runs (see ``ref_nce``; batch-level, not per anchor)

Each loss function returns ``(L, dL/dr_pos, dL/dr_neg)`` per anchor; all satisfy
``dL/dr_pos = -Σ_k dL/dr_k >= 0``. The pair weights of the covariance operator are
``ξ_k = -dL/dr_k`` (``pair_weights``). Two chain routines carry ``dL/dr`` to embeddings:
``chain_triples`` for explicit (anchor, positive, negatives) and ``chain_gram`` for all pairs
of a batch (the SimCLR arrangement, and SupCon).

SupCon (``supcon``, Khosla et al. 2020) is the same family with positives defined by labels
(every other row of the batch with the anchor's label): a function of the whole distance
matrix ``R`` (B, B) and the positive mask, returning ``(L_i, dL_i/dr_ij)``; ``supcon_weights``
and ``supcon_loss`` chain it to the embeddings with ``chain_gram``.

Range. τ must be at least ``TAU_MIN`` (1e-8). For every finite embedding whose half squared
distances, summed over the batch, stay finite in float64 (``check_scale``: |z| up to about
1e150), every loss and gradient is finite: InfoNCE subtracts each anchor's smallest distance
before dividing by τ, the soft triplet loss is ``max(v, 0) + τ log(1 + e^{-|v|/τ})`` with
``v = r_pos - r_1 + r_0``, and the sigmoids saturate. Larger embeddings are refused with a
``ValueError`` (in training, a net whose outputs get that large has diverged).
"""
from __future__ import annotations

import math

import numpy as np

from . import backend as B
from .backend import array_module
from .layers import l2_normalize, l2_normalize_backward

TAU_MIN = 1e-8           # the smallest temperature (below it, r/τ overflows for ordinary r)


# ----------------------------------------------------------------------------- the losses
def _log1pexp(u, xp):
    """``log(1 + e^u)`` without overflow."""
    return xp.maximum(u, 0) + xp.log1p(xp.exp(-xp.abs(u)))


def _sigmoid(u, xp):
    """``1 / (1 + e^{-u})`` without overflow."""
    e = xp.exp(-xp.abs(u))
    return xp.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def simple(r_pos, r_neg, tau=1.0, margin=0.0):
    """``L = r_pos - r_1``; ``dL/dr_pos = 1``, ``dL/dr_1 = -1``. (N,), (N, 1) -> (N,), (N,), (N, 1)."""
    xp = array_module(r_pos)
    return r_pos - r_neg[:, 0], xp.ones_like(r_pos), -xp.ones_like(r_neg)


def soft_triplet(r_pos, r_neg, tau=1.0, margin=0.0):
    """``L = τ log(1 + exp(v/τ))``, ``v = r_pos - r_1 + r_0``; ``dL/dr_pos = σ(v/τ) = -dL/dr_1``.

    Computed as ``max(v, 0) + τ log1p(e^{-|v|/τ})`` (finite wherever v is)."""
    xp = array_module(r_pos)
    v = r_pos - r_neg[:, 0] + margin
    with np.errstate(over="ignore"):
        u = v / tau                                                 # may saturate to ±inf
    s = _sigmoid(u, xp)
    return xp.maximum(v, 0) + tau * xp.log1p(xp.exp(-xp.abs(u))), s, -s[:, None]


def infonce(r_pos, r_neg, tau=1.0, margin=0.0):
    """``L = r_pos + τ LSE(-r/τ)`` over ``r = (r_pos, r_1..r_H)``.

    With ``p = softmax(-r/τ)``: ``dL/dr_k = -p_k``, ``dL/dr_pos = 1 - p_0 = Σ_k p_k``.
    Computed as ``L = (r_pos - r_min) + τ log Σ e^{-(r - r_min)/τ}`` with ``r_min`` the anchor's
    smallest distance, so that nothing overflows for small τ or large r.
    """
    xp = array_module(r_pos)
    r = xp.concatenate([r_pos[:, None], r_neg], axis=1)            # (N, 1+H)
    rmin = r.min(axis=1, keepdims=True)
    with np.errstate(over="ignore"):
        e = xp.exp(-((r - rmin) / tau))                             # the largest term is 1
    se = e.sum(axis=1, keepdims=True)
    p = e / se                                                      # (N, 1+H)
    return r_pos - rmin[:, 0] + tau * xp.log(se[:, 0]), p[:, 1:].sum(axis=1), -p[:, 1:]


def ref_nce(r_pos, r_neg, tau=1.0, margin=0.0):
    """The HLTM reference code's "nce" (luckmatters ``ssl/hltm``): minus the softmax
    probability (not its log) of the positive, on the BATCH-MEAN distances, one negative:

        L = -σ((r̄_1 - r̄_pos)/τ),   r̄ = mean over the N anchors,   s = σ(.)
        dL/dr̄_pos = s(1 - s)/τ = -dL/dr̄_1

    Batch-level, not per anchor: every anchor gets the same ``L`` (so the mean is L) and the
    same derivatives ``N ∂L/∂r_n = ∂L/∂r̄``, which the shared chain (``/N``) turns into the
    exact gradient. The reference uses ``MSE = 2 r̄ / d`` (d = embedding width) and temperature
    T, i.e. ``τ = T d / 2`` here (T = 0.01, d = hid = 10 -> τ = 0.05). ``margin`` is unused.
    """
    xp = array_module(r_pos)
    u = (r_neg[:, 0].mean() - r_pos.mean()) / tau
    s = _sigmoid(u, xp)
    w = s * (1 - s) / tau
    return -s * xp.ones_like(r_pos), w * xp.ones_like(r_pos), -w * xp.ones_like(r_neg)


LOSSES = {"simple": simple, "soft_triplet": soft_triplet, "infonce": infonce,
          "ref_nce": ref_nce}
SINGLE_NEGATIVE = ("simple", "soft_triplet", "ref_nce")


def check_loss(loss, tau=1.0, H=None, margin=0.0):
    """Validate a loss name, τ (``>= TAU_MIN``), the margin (finite) and the number of
    negatives (``H >= 1``); return the loss function."""
    B.check_choice("loss", loss, tuple(LOSSES))
    B.check_real("tau", tau, TAU_MIN)
    B.check_real("margin", margin)
    if H is not None:
        check_negatives(loss, H)
    return LOSSES[loss]


def check_negatives(loss, H):
    """``ValueError`` unless ``loss`` (a name of ``LOSSES``) takes ``H`` negatives per anchor."""
    if H < 1:
        raise ValueError(f"there must be H >= 1 negatives per anchor, got H={H}")
    if loss in SINGLE_NEGATIVE and H != 1:
        raise ValueError(f"loss={loss!r} takes exactly H=1 negative per anchor, got H={H}; "
                         f"use loss='infonce' for several negatives")


def pair_weights(r_pos, r_neg, loss="infonce", tau=1.0, margin=0.0):
    """``ξ_k = -dL/dr_k`` (N, H) and ``dL/dr_pos`` (N,): the weights the covariance operator uses."""
    fn = check_loss(loss, tau, r_neg.shape[1], margin)
    check_scale("r_pos, r_neg", r_pos, r_neg)
    _, d_pos, d_neg = fn(r_pos, r_neg, float(tau), float(margin))
    return -d_neg, d_pos


# ----------------------------------------------------------------------------- distances and chain
def check_scale(name, *parts, factor=1.0):
    """``ValueError`` unless ``factor * Σ parts`` (half squared distances, or squares that
    bound them) is finite: the embeddings ``name`` are too large for float64 (module
    docstring, "Range")."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = factor * sum(float(p.sum()) for p in parts)
    if not math.isfinite(total):
        raise ValueError(f"{name} are too large: their half squared distances, summed over the "
                         "batch, overflow float64; rescale the embeddings (|z| below ~1e150)")


def distances(z, z_pos, z_neg):
    """``r_pos`` (N,) and ``r_neg`` (N, H) for ``z, z_pos`` (N, d) and ``z_neg`` (N, H, d)."""
    dp = z - z_pos
    dn = z[:, None, :] - z_neg
    with np.errstate(over="ignore", invalid="ignore"):
        return 0.5 * (dp * dp).sum(-1), 0.5 * (dn * dn).sum(-1)


def chain_triples(z, z_pos, z_neg, c_pos, c_neg):
    """Gradients of ``Σ_n c_pos[n] r_pos[n] + Σ_nk c_neg[n,k] r_neg[n,k]`` w.r.t. the embeddings.

    ``d r_pos / d z = z - z_pos``, ``d r_pos / d z_pos = -(z - z_pos)``, likewise per negative.
    Returns ``(dz, dz_pos, dz_neg)`` with the shapes of ``(z, z_pos, z_neg)``.
    """
    gp = c_pos[:, None] * (z - z_pos)                  # (N, d)
    gn = c_neg[:, :, None] * (z[:, None, :] - z_neg)   # (N, H, d)
    return gp + gn.sum(axis=1), -gp, -gn


def gram_distances(Z):
    """All pairwise ``r_ij = ½||Z_i - Z_j||²`` for ``Z`` (B, d) -> (B, B)."""
    sq = (Z * Z).sum(axis=1)
    r = 0.5 * (sq[:, None] + sq[None, :]) - Z @ Z.T
    return array_module(Z).maximum(r, 0)


def chain_gram(Z, C):
    """Gradient of ``Σ_ij C_ij r_ij`` w.r.t. ``Z`` (B, d), ``r_ij = ½||Z_i - Z_j||²``:

    ``dZ = (diag(C 1 + C^T 1) - C - C^T) Z``.
    """
    S = C + C.T
    return S.sum(axis=1)[:, None] * Z - S @ Z


# ----------------------------------------------------------------------------- public entry points
def check_embeddings(z, z_pos, z_neg):
    """``z_neg`` as (N, H, d) after checking shapes (N, H, d >= 1) and finiteness."""
    if z.ndim != 2 or min(z.shape) < 1:
        raise ValueError(f"z must have shape (N, d) with N, d >= 1, got {tuple(z.shape)}")
    if z_pos.shape != z.shape:
        raise ValueError(f"z_pos must have the shape of z {tuple(z.shape)}, got {tuple(z_pos.shape)}")
    if z_neg.ndim == 2:
        z_neg = z_neg[:, None, :]
    if z_neg.ndim != 3 or z_neg.shape[0] != z.shape[0] or z_neg.shape[2] != z.shape[1]:
        raise ValueError(f"z_neg must have shape (N, H, d) = ({z.shape[0]}, H, {z.shape[1]}), "
                         f"got {tuple(z_neg.shape)}")
    if z_neg.shape[1] < 1:
        raise ValueError(f"z_neg must hold H >= 1 negatives per anchor, got shape "
                         f"{tuple(z_neg.shape)}")
    xp = array_module(z)
    for name, a in (("z", z), ("z_pos", z_pos), ("z_neg", z_neg)):
        if not bool(xp.isfinite(a).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
    return z_neg


def contrastive_loss(z, z_pos, z_neg, loss="infonce", tau=1.0, margin=0.0,
                     return_distances=False):
    """Mean loss over N anchors and its gradients.

    ``z``, ``z_pos``: (N, d); ``z_neg``: (N, H, d) (or (N, d) for H = 1).
    Returns ``(value, (dz, dz_pos, dz_neg))``; ``dz_neg`` has the shape ``z_neg`` was given in;
    with ``return_distances`` also ``(r_pos, r_neg)``.
    """
    xp = array_module(z)
    z, z_pos, z_neg_in = xp.asarray(z), xp.asarray(z_pos), xp.asarray(z_neg)
    z_neg = check_embeddings(z, z_pos, z_neg_in)
    fn = check_loss(loss, tau, z_neg.shape[1], margin)
    check_scale("z, z_pos, z_neg", *distances(z, z_pos, z_neg))
    value, (dz, dzp, dzn), r = triplet_loss(z, z_pos, z_neg, fn, float(tau), float(margin))
    out = (value, (dz, dzp, dzn.reshape(z_neg_in.shape)))
    return out + (r,) if return_distances else out


def triplet_loss(z, z_pos, z_neg, fn, tau, margin):
    """``contrastive_loss`` of checked embeddings (z_neg (N, H, d)) with the loss function
    ``fn``: ``(mean loss, (dz, dz_pos, dz_neg), (r_pos, r_neg))``."""
    N = z.shape[0]
    r_pos, r_neg = distances(z, z_pos, z_neg)
    L, d_pos, d_neg = fn(r_pos, r_neg, tau, margin)
    return float(L.mean()), chain_triples(z, z_pos, z_neg, d_pos / N, d_neg / N), (r_pos, r_neg)


def simclr_weights(Z, loss="infonce", tau=1.0, margin=0.0):
    """The SimCLR arrangement's loss weights for ``Z = [z1; z2]`` (B = 2N, d): view i's
    positive is its partner ``(i + N) mod B``, its negatives the other B - 2 views.

    Returns ``(L (B,), C (B, B), r_pos (B,), r_neg_mean)``: per-anchor losses, the chain weights
    ``C_ij = (dL_i/dr_ij) / B`` (``chain_gram(Z, C)`` is then the gradient of the mean loss)
    and the mean negative distance. ``kernels.losses.simclr_weights`` is its twin.
    """
    xp = array_module(Z)
    nB = Z.shape[0]
    N = nB // 2
    fn = LOSSES[loss]                                      # checked by the caller
    R = gram_distances(Z)                                  # (2N, 2N)
    idx = xp.arange(nB)
    partner = (idx + N) % nB
    r_pos = R[idx, partner]                                # (2N,)
    # negatives: every j other than i and partner(i), in increasing j
    keep = xp.ones((nB, nB), dtype=bool)
    keep[idx, idx] = False
    keep[idx, partner] = False
    cols = xp.nonzero(keep)[1].reshape(nB, nB - 2)         # (2N, 2N-2)
    r_neg = xp.take_along_axis(R, cols, axis=1)
    L, d_pos, d_neg = fn(r_pos, r_neg, float(tau), float(margin))
    C = xp.zeros((nB, nB), dtype=Z.dtype)                  # C_ij = dL_i/dr_ij / B
    C[idx, partner] = d_pos / nB
    C[idx[:, None], cols] = d_neg / nB
    return L, C, r_pos, float(r_neg.mean())


def simclr_loss(z1, z2, loss="infonce", tau=1.0, margin=0.0, return_distances=False):
    """The SimCLR arrangement (``simclr_weights``), mean over the 2N anchors.

    Returns ``(value, (dz1, dz2))`` (and ``(r_pos (2N,), r_neg (2N, 2N-2))`` if
    ``return_distances``). Only ``infonce`` takes the 2N - 2 negatives; the others raise.
    """
    xp = array_module(z1)
    z1, z2 = xp.asarray(z1), xp.asarray(z2)
    check_embeddings(z1, z2, z2)
    N = z1.shape[0]
    if N < 2:
        raise ValueError(f"z1 must have N >= 2 rows (the SimCLR arrangement needs negatives), "
                         f"got N={N}")
    Z = xp.concatenate([z1, z2], axis=0)                   # (2N, d)
    check_loss(loss, tau, 2 * N - 2, margin)
    with np.errstate(over="ignore"):
        check_scale("z1, z2", Z * Z, factor=2 * N)         # bounds the sum of all r_ij
    L, C, r_pos, _ = simclr_weights(Z, loss, tau, margin)
    dZ = chain_gram(Z, C)
    out = (float(L.mean()), (dZ[:N], dZ[N:]))
    if not return_distances:
        return out
    R = gram_distances(Z)
    keep = ~(xp.eye(2 * N, dtype=bool) | xp.roll(xp.eye(2 * N, dtype=bool), N, axis=1))
    return out + ((r_pos, R[keep].reshape(2 * N, 2 * N - 2)),)


# ----------------------------------------------------------------------------- SupCon
def supcon(R, positives, tau=1.0):
    """The supervised contrastive loss (Khosla et al. 2020, ``L^sup_out``) as a function of
    the distances, with InfoNCE's τ prefactor.

    ``R`` (B, B): ``r_ij = ½||z_i - z_j||²``; ``positives`` (B, B) bool: ``P(i)``, the
    ``j != i`` with i's label (the diagonal is ignored). Per anchor, ``a != i`` over the batch:

        L_i = -(τ/|P(i)|) Σ_{p∈P(i)} log( e^{-r_ip/τ} / Σ_{a≠i} e^{-r_ia/τ} )
            = (1/|P(i)|) Σ_{p∈P(i)} r_ip + τ LSE_{a≠i}(-r_ia/τ)
        dL_i/dr_ij = 1[j ∈ P(i)]/|P(i)| - q_ij,   q_ij = e^{-r_ij/τ} / Σ_{a≠i} e^{-r_ia/τ}

    What holds: ``Σ_j dL_i/dr_ij = 0`` (InfoNCE's ``dL/dr_+ = -Σ_k dL/dr_k`` with the
    positives summed); a non-positive j is always repelled (``-q_ij <= 0``) and the positives
    are attracted as a group (``Σ_{p∈P(i)} dL_i/dr_ip = 1 - Σ_p q_ip >= 0``), but one positive
    may be pushed away (``dL_i/dr_ip < 0`` when ``q_ip > 1/|P(i)|``: it holds more than its
    share of the softmax). With one positive per anchor (labels = sample identity, two views
    each) it is InfoNCE in the SimCLR arrangement. An anchor without positives gets ``L_i = 0``
    and zero weights (as the authors' code, which divides by ``max(|P(i)|, 1)``).

    Returns ``(L (B,), D (B, B))`` with ``D_ij = dL_i/dr_ij`` (``D_ii = 0``).
    """
    xp = array_module(R)
    eye = xp.eye(R.shape[0], dtype=bool)
    P = positives & ~eye
    n_pos = P.sum(axis=1)                                  # (B,)
    Rm = xp.where(eye, xp.inf, R)                          # the diagonal left out
    rmin = Rm.min(axis=1, keepdims=True)                   # each anchor's nearest other row
    with np.errstate(over="ignore"):
        e = xp.exp(-((Rm - rmin) / tau))                   # the largest term is 1
    se = e.sum(axis=1, keepdims=True)
    has = n_pos > 0
    inv = xp.where(has, 1.0 / xp.maximum(n_pos, 1), 0.0)   # 1/|P(i)|, 0 without positives
    L = ((P * (R - rmin)).sum(axis=1) * inv + tau * xp.log(se[:, 0])) * has
    D = (P * inv[:, None] - e / se) * has[:, None]
    return L, D


def check_labels(labels, n, xp=np):
    """``labels`` as a (B,) integer array (one label per row of the batch), else ValueError."""
    labels = xp.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) (one per embedding), got "
                         f"{tuple(labels.shape)}")
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind != "f" or not bool((labels == xp.round(labels)).all()):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    return labels


def supcon_weights(Z, labels, tau=1.0):
    """SupCon on embeddings ``Z`` (B, d) with ``labels`` (B,): every other row with the same
    label is a positive (``supcon``), every other row is in the denominator.

    Returns ``(L (B,), C (B, B), r_pos (B,), r_neg_mean)`` like ``simclr_weights``: per-anchor
    losses, ``C_ij = (dL_i/dr_ij) / B`` (``chain_gram(Z, C)`` is the gradient of the mean
    loss), each anchor's mean distance to its positives (0 without positives) and the mean
    distance to the other labels' rows (NaN if there are none). Inputs checked by the caller
    (``supcon_loss``; the training loop checks its batch).
    """
    xp = array_module(Z)
    nB = Z.shape[0]
    same = labels[:, None] == labels[None, :]
    R = gram_distances(Z)                                  # (B, B)
    L, D = supcon(R, same, float(tau))
    P = same & ~xp.eye(nB, dtype=bool)
    r_pos = (R * P).sum(axis=1) / xp.maximum(P.sum(axis=1), 1)
    n_neg = int((~same).sum())
    r_neg = float((R * ~same).sum() / n_neg) if n_neg else float("nan")
    return L, D / nB, r_pos, r_neg


def supcon_loss(Z, labels, tau=1.0):
    """Mean SupCon loss over the B rows of ``Z`` (B, d) with ``labels`` (B,) and its gradient:
    ``(value, dZ)``. Two views of N samples: ``Z = [z1; z2]``, ``labels = [y; y]``."""
    xp = array_module(Z)
    Z = xp.asarray(Z)
    check_embeddings(Z, Z, Z)
    check_loss("infonce", tau)
    if Z.shape[0] < 2:
        raise ValueError(f"Z must have B >= 2 rows (SupCon contrasts rows), got B={Z.shape[0]}")
    labels = check_labels(labels, Z.shape[0], xp)
    with np.errstate(over="ignore"):
        check_scale("Z", Z * Z, factor=Z.shape[0])         # bounds the sum of all r_ij
    L, C, _, _ = supcon_weights(Z, labels, tau)
    return float(L.mean()), chain_gram(Z, C)


# ----------------------------------------------------------------------------- BYOL
def byol_loss(p, zt, normalize=True, symmetric=True):
    """BYOL loss of predictions ``p`` and targets ``zt``, both (2N, d) = [view 1; view 2].

    Row i of ``p`` is compared with its partner row ``(i + N) mod 2N`` of ``zt`` (the other
    view of the same sample):

        normalize:  l_i = 1 - cos(p_i, zt_partner(i)) = 1 - n(p_i) . n(zt_partner(i))
                        = ½ || n(p_i) - n(zt_partner(i)) ||²  when neither row is zero
        else:       l_i = ½ || p_i - zt_partner(i) ||²

    ``n`` the L2 normalisation, ``n(0) = 0``, so ``cos = 0`` and ``l_i = 1`` when either row
    is zero (the paper authors' value). Returns ``(L, dL/dp)``: ``L`` the mean of ``l_i`` over
    all 2N rows (symmetric) or over the first N rows; ``dL/dp`` (2N, d), through
    ``l2_normalize_backward`` (which removes the radial part, so ``n(p) - n(zt)`` and
    ``-n(zt)`` give the same gradient; zero on a zero row of p). ``zt`` is a constant
    (stop-gradient).
    """
    xp = array_module(p)
    if p.ndim != 2 or p.shape != zt.shape or p.shape[0] % 2:
        raise ValueError(f"p and zt must have the same shape (2N, d), got {tuple(p.shape)} "
                         f"and {tuple(zt.shape)}")
    N2 = p.shape[0]
    N = N2 // 2
    target = xp.concatenate([zt[N:], zt[:N]])              # partner rows, (2N, d)
    if normalize:
        q, qnorm = l2_normalize(p, 0.0, xp)
        t, _ = l2_normalize(target, 0.0, xp)
    else:
        q, t = p, target
    diff = q - t                                           # (2N, d)
    li = 1.0 - (q * t).sum(axis=1) if normalize else 0.5 * (diff * diff).sum(axis=1)   # (2N,)
    w = xp.ones(N2, dtype=p.dtype) if symmetric else xp.concatenate(
        [xp.ones(N, dtype=p.dtype), xp.zeros(N, dtype=p.dtype)])
    count = float(N2 if symmetric else N)
    L = float((w * li).sum() / count)
    dq = diff * (w / count)[:, None]
    dp = l2_normalize_backward(dq, p, qnorm, 0.0, xp) if normalize else dq
    return L, dp


# ----------------------------------------------------------------------------- supervised
def softmax_cross_entropy(logits, labels):
    """Softmax cross-entropy of ``logits`` (N, K) against integer ``labels`` (N,) in [0, K):

    ``L = mean_i [ logsumexp_k(s_ik) - s_{i,y_i} ]``,  ``dL/ds_ik = (softmax(s_i)_k - [k = y_i]) / N``.

    Returns ``(L, dL/dlogits (N, K))``; stable for any finite logits (each row's max is
    subtracted first)."""
    xp = array_module(logits)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must be (N, K) with N >= 1, got {tuple(logits.shape)}")
    N, K = logits.shape
    y = check_labels(labels, N, xp).astype(int)
    if int(y.min()) < 0 or int(y.max()) >= K:
        raise ValueError(f"labels must be in [0, {K}), got values in [{int(y.min())}, "
                         f"{int(y.max())}]")
    s = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(s)
    Z = e.sum(axis=1, keepdims=True)
    rows = xp.arange(N)
    L = float((xp.log(Z[:, 0]) - s[rows, y]).mean())
    d = e / Z
    d[rows, y] -= 1.0
    return L, d / N


# ----------------------------------------------------------------------------- reference values
def collapsed_loss(loss="infonce", tau=1.0, H=1, margin=0.0):
    """The loss of a collapsed embedding (every input mapped to one point: ``r_+ = r_k = 0``):
    simple 0, soft triplet ``τ log(1 + e^{r_0/τ})``, InfoNCE ``τ log(1 + H)``."""
    H = B.check_int("H", H, 1, MAX_CURVE_NEGATIVES)
    fn = check_loss(loss, tau, H, margin)
    return float(fn(np.zeros(1), np.zeros((1, H)), float(tau), float(margin))[0][0])


MAX_CURVE_NEGATIVES = 1 << 16     # H of collapsed_loss (and experiments.loss_curves)
