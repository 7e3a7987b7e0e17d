"""Numba twins of the HLTM correlation statistics (``metrics.unit_correlations`` and its row
max ``metrics.best_unit_correlation``) and of the HLTM sampler (``HLTM.triples``, same law,
other random numbers).

For every latent group j (G of them) with ``hid`` units, over n samples (float64, two passes
like the twin: centre first, then multiply, so a nearly constant unit is not read as
correlated by cancellation):

    cov_{j,u}  = mean_n (z_nj - zbar_j)(g_nju - gbar_ju)
    corr_ju    = |cov_{j,u}| / sqrt(var z_j  var g_ju)              in [0, 1]  (per unit)
    corr_j     = max_u corr_ju                                       (per latent)

with a unit (or latent) whose standard deviation is at rounding level of its values
(``std <= 4 eps max|.|``) counted as 0, exactly as the NumPy twin. Two compiled sweeps over the samples in memory order, no
(n, G, hid) temporaries.

The first call compiles (``cache=True`` keeps the machine code for later processes).
"""
from __future__ import annotations

import numpy as np
from numba import njit

_EPS64 = float(np.finfo(np.float64).eps)


@njit(cache=True)
def _unit_correlations(z, g, eps_g, eps_z):
    n, G = z.shape
    hid = g.shape[2]
    zbar = np.zeros(G)
    zmax = np.zeros(G)
    gbar = np.zeros((G, hid))
    gmax = np.zeros((G, hid))
    for s in range(n):                                       # pass 1: means and max |.|
        for j in range(G):
            v = z[s, j]
            zbar[j] += v
            zmax[j] = max(zmax[j], abs(v))
            for u in range(hid):
                w = g[s, j, u]
                gbar[j, u] += w
                gmax[j, u] = max(gmax[j, u], abs(w))
    zbar /= n
    gbar /= n
    var_z = np.zeros(G)
    cov = np.zeros((G, hid))
    var_g = np.zeros((G, hid))
    for s in range(n):                                       # pass 2: centred products
        for j in range(G):
            zc = z[s, j] - zbar[j]
            var_z[j] += zc * zc
            for u in range(hid):
                gc = g[s, j, u] - gbar[j, u]
                cov[j, u] += zc * gc
                var_g[j, u] += gc * gc
    out = np.zeros((G, hid))
    for j in range(G):
        vz = var_z[j] / n
        if not np.sqrt(vz) > 4 * eps_z * zmax[j]:
            continue
        for u in range(hid):
            vg = var_g[j, u] / n
            if np.sqrt(vg) > 4 * eps_g * gmax[j, u]:
                out[j, u] = min(abs(cov[j, u] / n) / np.sqrt(vz * vg), 1.0)
    return out


def unit_correlations(z, g, dtype_eps=_EPS64):
    """Twin of ``metrics.unit_correlations``: ``|corr(z_j, g_{j,u})|`` per unit u of group j.

    ``z``: (n, G), ``g``: (n, G, hid); computed in float64. Returns (G, hid) float64 in [0, 1].
    """
    z = np.ascontiguousarray(z, dtype=np.float64)
    g = np.ascontiguousarray(g, dtype=np.float64)
    if z.ndim != 2 or g.ndim != 3 or g.shape[:2] != z.shape:
        raise ValueError(f"z must be (n, G) and g (n, G, hid) with the same n, G; got "
                         f"{z.shape} and {g.shape}")
    return _unit_correlations(z, g, float(dtype_eps), _EPS64)


def best_unit_correlation(z, g, dtype_eps=_EPS64):
    """Twin of ``metrics.best_unit_correlation``: ``max_u |corr(z_j, g_{j,u})|`` per group j,
    the row max of ``unit_correlations``. Returns (G,) float64 in [0, 1]."""
    return unit_correlations(z, g, dtype_eps).max(axis=1)


# ----------------------------------------------------------------------------- the sampler
# Twin of ``HLTM.triples`` with the same law and other random numbers: 32-bit uniforms cut
# from the generator's raw 64-bit output. An edge flips when its uniform is below
# ``round((1 - rho)/2 * 2**32)`` (the flip probability to within 2**-32); the root is the top
# bit of its uniform. Nodes are breadth-first (parents before children), ``tree.parents()``.
@njit(cache=True)
def _grow(z, start, stop, parent, thr, u, t):
    """Nodes ``start .. stop-1`` of ``z`` from their parents; returns the next draw index."""
    for i in range(start, stop):
        z[i] = z[parent[i]] ^ (u[t + i - start] < thr[i])
    return t + stop - start


@njit(cache=True)
def _triples(n, H, n_top, parent, thr, u, x, x_pos, x_neg):
    n_nodes = parent.shape[0]
    n_leaves = x.shape[1]
    z = np.zeros(n_nodes, np.uint8)
    first_leaf = n_nodes - n_leaves
    half = np.uint32(1 << 31)
    t = 0
    for a in range(n):
        z[0] = u[t] >= half
        t = _grow(z, 1, n_top, parent, thr, u, t + 1)       # the shared top levels
        t = _grow(z, n_top, n_nodes, parent, thr, u, t)     # view 1
        for j in range(n_leaves):
            x[a, j] = z[first_leaf + j]
        t = _grow(z, n_top, n_nodes, parent, thr, u, t)     # view 2
        for j in range(n_leaves):
            x_pos[a, j] = z[first_leaf + j]
        for k in range(H):                                   # independent negatives
            z[0] = u[t] >= half
            t = _grow(z, 1, n_nodes, parent, thr, u, t + 1)
            for j in range(n_leaves):
                x_neg[a, k, j] = z[first_leaf + j]
    return t


def flip_thresholds(tree):
    """``thr[i] = round((1 - rho_i)/2 * 2**32)`` per node, as uint64 (2**32 when rho = -1:
    always flips); the root's is unused. A uniform 32-bit ``u`` flips the edge iff u < thr."""
    p = (1.0 - np.nan_to_num(tree.rho, nan=1.0)) / 2.0
    return np.minimum(np.round(p * 2.0 ** 32), 2.0 ** 32).astype(np.uint64)


def triples(tree, n, rng):
    """Twin of ``HLTM.triples(n, rng)``: ``(x, x_pos, x_neg)``, (n, n_0), (n, n_0),
    (n, H, n_0) float64 in {0, 1}, with the same law (anchor and positive share the latents
    of depth >= ``keep_depth``, the negatives are independent samples) and other random
    numbers than the NumPy twin. ``rng``: a ``np.random.Generator`` (advanced); ``n``
    validated by the caller."""
    H = tree.negatives
    n_nodes, n_leaves = tree.n_nodes, tree.n_leaves
    n_top = int(tree.level_starts[tree.depth - tree.keep_depth + 1])   # nodes of shared levels
    draws = n * (n_top + 2 * (n_nodes - n_top) + H * n_nodes)
    u = rng.bit_generator.random_raw((draws + 1) // 2).view(np.uint32)   # 32-bit uniforms
    parent = np.maximum(tree.parents(), 0)
    x = np.empty((n, n_leaves))
    x_pos = np.empty((n, n_leaves))
    x_neg = np.empty((n, H, n_leaves))
    _triples(n, H, n_top, parent, flip_thresholds(tree), u, x, x_pos, x_neg)
    return x, x_pos, x_neg
