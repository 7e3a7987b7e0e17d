"""Numba twin of the SimCLR arrangement of InfoNCE (``losses.simclr_loss`` with "infonce").

``Z = [z1; z2]`` (B = 2N, d); view i's positive is its partner ``p(i) = (i + N) mod B``, its
negatives the other B - 2 views. With ``r_ij = max(½|Z_i|² + ½|Z_j|² - Z_i.Z_j, 0)`` (from
the Gram matrix, one BLAS product) and ``a_ij = -r_ij / τ`` over ``j != i``:

    L_i = r_{i p(i)} + τ log Σ_{j != i} e^{a_ij}                  (log-sum-exp)
    P_ij = e^{a_ij} / Σ_{j' != i} e^{a_ij'}
    C_ij = dL_i/dr_ij / B:  C_{i p(i)} = (1 - P_{i p(i)}) / B,  C_ij = -P_ij / B (j != i, p(i))
    dZ = (diag(S 1) - S) Z,  S = C + C^T                          (``losses.chain_gram``)

The NumPy twin builds (B, B-2) index and distance arrays and scatters into C; here one
compiled pass per row reads the Gram matrix and writes C (rows in parallel with ``prange``),
and the two products stay in BLAS. Only InfoNCE takes in-batch negatives (as in the twin).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..backend import array_module


@njit(cache=True, parallel=True)
def _simclr_rows(G, tau, C, L, stats):
    """Rows of the SimCLR InfoNCE from the Gram matrix ``G`` (B, B): writes ``C`` (B, B),
    ``L`` (B,) and per row ``stats[i] = (r_pos, sum of the B-2 negative r)``."""
    B = G.shape[0]
    N = B // 2
    for i in prange(B):
        p = (i + N) % B
        gi = 0.5 * G[i, i]
        amax = -np.inf
        for j in range(B):
            if j != i:
                r = max(gi + 0.5 * G[j, j] - G[i, j], 0.0)
                amax = max(amax, -r / tau)
        se = 0.0
        sneg = 0.0
        for j in range(B):
            if j != i:
                r = max(gi + 0.5 * G[j, j] - G[i, j], 0.0)
                e = math.exp(-r / tau - amax)
                se += e
                C[i, j] = e
                if j != p:
                    sneg += r
        rp = max(gi + 0.5 * G[p, p] - G[i, p], 0.0)
        for j in range(B):
            C[i, j] = -C[i, j] / se / B if j != i else 0.0       # -P_ij / B
        C[i, p] += 1.0 / B                                       # (1 - P_ip) / B
        L[i] = rp + tau * (amax + math.log(se))
        stats[i, 0] = rp
        stats[i, 1] = sneg


def simclr_infonce(Z, tau):
    """``(L (B,), C (B, B), r_pos (B,), mean r_neg)`` for the SimCLR InfoNCE of ``Z`` (B, d)."""
    B = Z.shape[0]
    G = Z @ Z.T                                               # (B, B) Gram, BLAS
    C = np.empty((B, B), dtype=Z.dtype)
    L = np.empty(B)
    stats = np.empty((B, 2))
    _simclr_rows(G, float(tau), C, L, stats)
    return L, C, stats[:, 0], stats[:, 1].sum() / (B * (B - 2))


def simclr_loss(z1, z2, loss="infonce", tau=1.0, margin=0.0, return_distances=False):
    """Twin of ``losses.simclr_loss`` for ``loss="infonce"`` on NumPy arrays: returns
    ``(value, (dz1, dz2))`` (and, with ``return_distances``, ``(r_pos (2N,), r_neg_mean)``:
    the mean of the negatives' distances instead of the (2N, 2N-2) array)."""
    from ..losses import _check_embeddings, check_loss
    if array_module(z1) is not np:
        raise ValueError("kernels.losses.simclr_loss takes NumPy arrays (backend 'numba')")
    z1, z2 = np.asarray(z1), np.asarray(z2)
    _check_embeddings(z1, z2, z2)
    N = z1.shape[0]
    check_loss(loss, tau, 2 * N - 2)
    if loss != "infonce":
        raise ValueError(f"loss must be 'infonce' for in-batch negatives, got {loss!r}")
    Z = np.concatenate([z1, z2], axis=0)                       # (2N, d)
    L, C, r_pos, r_neg_mean = simclr_infonce(Z, tau)
    S = C + C.T
    dZ = S.sum(axis=1)[:, None] * Z - S @ Z                    # chain_gram
    out = (float(L.mean()), (dZ[:N], dZ[N:]))
    return out + ((r_pos, r_neg_mean),) if return_distances else out
