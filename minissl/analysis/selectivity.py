"""Luck: does training amplify the selectivity a unit happens to start with?

The paper's abstract: the covariance operator "specifically amplifies initial random
selectivities". For latent mu and each of its ``hid`` units u, the selectivity is
``s_u(t) = |Pearson(z_mu, g_u(t))|`` (``metrics.normalized_correlation(...).per_unit``). For a
pair (initial, final) of such arrays, each (G, hid) over G latents, ``amplification`` gives:

    spearman         Spearman's rank correlation of s(0) and s(T) over all G*hid units
    spearman_latent  mean over latents of the Spearman over that latent's hid units
    ranks            initial rank of each latent's final winner w = argmax_u s_u(T):
                     #{u : s_u(0) > s_w(0)}  (0: it was already the best; ties in its favour)
    rank             mean of ranks;  above_median: fraction of latents whose winner started
                     strictly above the median of its latent's initial values
    gain_winner/rest mean of s(T) - s(0) over the winners / over the other units
    growth_winner/rest (given weight-row norms) mean of ||w_u(T)|| / ||w_u(0)||

The covariance operator's directions. Layer l's operator acts on ``vec(W_l)`` (P =
n_l n_{l-1}, row-major). With ``U`` (P, k) its top-k eigenvectors at initialisation
(orthonormal), unit i's weight row ``w_i``, embedded in ``vec(W_l)`` as ``e_i ⊗ w_i`` (zeros
elsewhere), projects on span(U) with length ``||U_i^T w_i||``, ``U_i = U.reshape(n_l, n_{l-1},
k)[i]`` (n_{l-1}, k) (``projection``). The share of a weight change ``Δw_i = w_i(T) - w_i(0)``
in that span is ``||U_i^T Δw_i||² / ||Δw_i||²`` in [0, 1] (``share``), of the whole layer
``||U^T vec ΔW||² / ||ΔW||²``. The control is the same share for ``random_basis``: a uniformly
random k-dim subspace of the live (unmasked) weights, whose expected share is ``k / P_live``
for any fixed change.

Intervals over runs (``wilson_interval``, ``mean_interval``; scipy.stats). A proportion
``p̂ = k/n`` (e.g. latents whose final winner was already their best unit at initialisation)
gets the Wilson score interval ``(p̂ + z²/2n ± z sqrt(p̂(1 - p̂)/n + z²/4n²)) / (1 + z²/n)``, z
the two-sided normal quantile; a mean over independent runs (seeds) the Student t interval
``x̄ ± t_{n-1} s / sqrt(n)``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend as B


# ----------------------------------------------------------------------------- selectivity
def winner_ranks(initial, final):
    """Initial rank (0 = best) of each latent's final winner ``argmax_u final[j, u]``:
    ``#{u : initial[j, u] > initial[j, winner]}``. (G, hid), (G, hid) -> (G,) int."""
    initial, final = _pair(initial, final)
    win = final.argmax(axis=1)                                        # (G,)
    s0 = initial[np.arange(len(win)), win]                            # (G,)
    return (initial > s0[:, None]).sum(axis=1)


def _pair(initial, final):
    a = np.asarray(initial, dtype=np.float64)
    b = np.asarray(final, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] < 1:
        raise ValueError(f"initial and final must be (G, hid) arrays of one shape, got "
                         f"{a.shape} and {b.shape}")
    return a, b


def _spearman(a, b):
    """Spearman's rho (scipy), NaN where either side is constant."""
    from scipy.stats import spearmanr          # slow to import; only this path needs it
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def amplification(initial, final, norms0=None, norms1=None):
    """The statistics of the module docstring for selectivities ``initial``, ``final`` (G, hid)
    (and, optionally, the weight-row norms ``norms0``, ``norms1`` of the same units)."""
    a, b = _pair(initial, final)
    G, hid = a.shape
    ranks = winner_ranks(a, b)
    win = np.zeros_like(a, dtype=bool)
    win[np.arange(G), b.argmax(axis=1)] = True
    per_latent = [_spearman(a[j], b[j]) for j in range(G)]
    gain = b - a
    out = {"spearman": _spearman(a.ravel(), b.ravel()),
           "spearman_latent": float(np.nanmean(per_latent)) if np.isfinite(per_latent).any()
           else float("nan"),
           "ranks": ranks, "rank": float(ranks.mean()),
           "above_median": float((a[win] > np.median(a, axis=1)).mean()),
           "gain_winner": float(gain[win].mean()),
           "gain_rest": float(gain[~win].mean()) if hid > 1 else float("nan")}
    if norms0 is not None:
        n0, n1 = _pair(norms0, norms1)
        growth = n1 / np.where(n0 > 0, n0, np.nan)
        out["growth_winner"] = float(np.nanmean(growth[win]))
        out["growth_rest"] = float(np.nanmean(growth[~win])) if hid > 1 else float("nan")
    return out


# ----------------------------------------------------------------------------- intervals
def _confidence(confidence):
    confidence = B.check_real("confidence", confidence, 0, 1, lo_open=True)
    if confidence >= 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return confidence


def wilson_interval(k, n, confidence=0.95):
    """The Wilson score interval ``(lo, hi)`` of the proportion of ``k`` successes in ``n``
    trials (``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``)."""
    from scipy.stats import binomtest          # slow to import; only this path needs it
    n = B.check_int("n", n, 1)
    k = B.check_int("k", k, 0, n)
    ci = binomtest(k, n).proportion_ci(confidence_level=_confidence(confidence),
                                       method="wilson")
    return float(ci.low), float(ci.high)


def mean_interval(values, confidence=0.95):
    """``(mean, lo, hi)``: the mean of ``values`` (one per independent run; NaNs dropped) and
    its Student t interval ``mean ± t_{n-1} s / sqrt(n)`` (``scipy.stats.t.interval``). lo and
    hi are NaN for fewer than 2 values, and equal the mean when the values do not vary."""
    from scipy.stats import sem, t
    confidence = _confidence(confidence)
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2 or np.ptp(v) == 0:
        return (m, math.nan, math.nan) if v.size < 2 else (m, m, m)
    lo, hi = t.interval(confidence, v.size - 1, loc=m, scale=sem(v))
    return m, float(lo), float(hi)


# ----------------------------------------------------------------------------- units <-> rows
def latent_rows(tree, per_layer, hid):
    """Per-unit values of the tree network, given per layer (``per_layer[l]`` (n_{l+1},), one
    value per row of ``net.weights[l]``), as (n_latents, hid) in BFS order: level k's latents
    (root first) are the groups of layer ``L - k``, unit u of group j is row ``j*hid + u``."""
    L = tree.depth
    return np.concatenate([np.asarray(per_layer[L - 1 - k], dtype=np.float64).reshape(-1, hid)
                           for k in range(L)])


def unit_norms(tree, weights, hid):
    """``||w_u||`` of every unit's weight row, (n_latents, hid) BFS (``latent_rows``)."""
    return latent_rows(tree, [np.linalg.norm(B.to_numpy(W), axis=1) for W in weights], hid)


# ----------------------------------------------------------------------------- OP directions
def _rows_of_basis(U, shape):
    U = np.asarray(B.to_numpy(U), dtype=np.float64)
    n_l, n_prev = shape
    if U.ndim != 2 or U.shape[0] != n_l * n_prev:
        raise ValueError(f"U must be (P, k) with P = {n_l * n_prev}, got {U.shape}")
    return U.reshape(n_l, n_prev, U.shape[1])                        # (n_l, n_{l-1}, k)


def projection(U, W):
    """``||U_i^T w_i||`` per row i of ``W`` (n_l, n_{l-1}): the length of the projection of
    unit i's weights (as ``e_i ⊗ w_i`` in vec(W)) on span(U), U (P, k). Returns (n_l,)."""
    W = np.asarray(B.to_numpy(W), dtype=np.float64)
    Ui = _rows_of_basis(U, W.shape)
    return np.linalg.norm(np.einsum("ijk,ij->ik", Ui, W), axis=1)


def share(U, dW):
    """``(per_row (n_l,), layer)``: the fraction of each row's ``||Δw_i||²`` in span(U)
    (``||U_i^T Δw_i||² / ||Δw_i||²``, NaN for an unchanged row) and of the whole
    ``||U^T vec ΔW||² / ||ΔW||²``."""
    dW = np.asarray(B.to_numpy(dW), dtype=np.float64)
    rows = projection(U, dW) ** 2
    tot = (dW * dW).sum(axis=1)
    per_row = rows / np.where(tot > 0, tot, np.nan)
    U = np.asarray(B.to_numpy(U), dtype=np.float64)
    whole = float(np.linalg.norm(U.T @ dW.ravel()) ** 2 / max((dW * dW).sum(), 1e-300))
    return per_row, whole


def random_basis(shape, k, seed, mask=None):
    """An orthonormal (P, k) basis of a uniformly random k-dim subspace of the live weights of
    a layer of ``shape`` (n_l, n_{l-1}) (``mask`` 0/1 of that shape, None for a dense layer):
    QR of a masked Gaussian matrix drawn from ``seed``. Its expected ``share`` of any fixed
    change is ``k / P_live``."""
    m = np.ones(int(np.prod(shape))) if mask is None else \
        np.asarray(B.to_numpy(mask), dtype=np.float64).ravel()
    k = B.check_int("k", k, 1, int(m.sum()))
    G = B.rng(seed).standard_normal((m.size, k)) * m[:, None]         # (P, k) live rows only
    Q, _ = np.linalg.qr(G)
    return Q
