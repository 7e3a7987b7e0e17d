"""Numba twin of the HLTM correlation statistics (``minissl.hltm.best_unit_correlation``).

For every latent group j (G of them) with ``hid`` units, over n samples (float64, two passes
like the twin: centre first, then multiply, so a nearly constant unit is not read as
correlated by cancellation):

    cov_{j,u}  = mean_n (z_nj - zbar_j)(g_nju - gbar_ju)
    corr_j     = max_u |cov_{j,u}| / sqrt(var z_j  var g_ju)        in [0, 1]

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
def _best_unit_correlation(z, g, eps_g, eps_z):
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
    out = np.zeros(G)
    for j in range(G):
        vz = var_z[j] / n
        if not np.sqrt(vz) > 4 * eps_z * zmax[j]:
            continue
        best = 0.0
        for u in range(hid):
            vg = var_g[j, u] / n
            if np.sqrt(vg) > 4 * eps_g * gmax[j, u]:
                best = max(best, min(abs(cov[j, u] / n) / np.sqrt(vz * vg), 1.0))
        out[j] = best
    return out


def best_unit_correlation(z, g, dtype_eps=_EPS64):
    """Twin of ``hltm.best_unit_correlation``: ``max_u |corr(z_j, g_{j,u})|`` per group j.

    ``z``: (n, G), ``g``: (n, G, hid); computed in float64. Returns (G,) float64 in [0, 1].
    """
    z = np.ascontiguousarray(z, dtype=np.float64)
    g = np.ascontiguousarray(g, dtype=np.float64)
    if z.ndim != 2 or g.ndim != 3 or g.shape[:2] != z.shape:
        raise ValueError(f"z must be (n, G) and g (n, G, hid) with the same n, G; got "
                         f"{z.shape} and {g.shape}")
    return _best_unit_correlation(z, g, float(dtype_eps), _EPS64)
