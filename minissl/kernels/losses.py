"""The SimCLR arrangement of InfoNCE (``losses.simclr_loss`` with "infonce") for backend
"numba", in whole-array form.

``Z = [z1; z2]`` (B = 2N, d); view i's positive is its partner ``p(i) = (i + N) mod B``, its
negatives the other B - 2 views. With ``r_ij = max(½|Z_i|² + ½|Z_j|² - Z_i.Z_j, 0)`` and
``a_ij = -r_ij / τ`` over ``j != i``:

    L_i  = r_{i p(i)} + τ log Σ_{j != i} e^{a_ij}                  (log-sum-exp)
    P_ij = e^{a_ij} / Σ_{j' != i} e^{a_ij'}
    C_ij = dL_i/dr_ij / B:  C_{i p(i)} = (1 - P_{i p(i)}) / B,  C_ij = -P_ij / B (j != i, p(i))
    dZ   = diag(C 1 + C^T 1) Z - C Z - C^T Z                      (``losses.chain_gram``)

The twin never builds the (B, B-2) index and distance arrays of the NumPy reference nor
scatters into C: the B x B matrix is turned into C in place (the diagonal masked with -inf)
and the chain is two BLAS products. This is not a compiled loop on purpose: the exponentials
dominate, NumPy evaluates them with SIMD, and Numba without Intel SVML (absent here) calls
scalar ``exp``; a row-wise ``@njit(parallel=True)`` version measured slower.
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module


def simclr_infonce(Z, tau):
    """``(L (B,), C (B, B), r_pos (B,), mean r_neg)`` for the SimCLR InfoNCE of ``Z`` (B, d),
    computed in Z's dtype."""
    B = Z.shape[0]
    N = B // 2
    idx = np.arange(B)
    partner = (idx + N) % B
    sq = (Z * Z).sum(axis=1)
    A = Z @ Z.T                                               # (B, B) Gram, BLAS
    A *= -1
    A += 0.5 * sq[:, None]
    A += 0.5 * sq[None, :]
    np.maximum(A, 0, out=A)                                   # r_ij
    r_pos = A[idx, partner].copy()
    r_neg_mean = np.float64((A.sum(dtype=np.float64) - np.trace(A, dtype=np.float64)
                             - r_pos.sum(dtype=np.float64)) / (B * (B - 2)))
    A *= -1.0 / tau                                           # a_ij
    A[idx, idx] = -np.inf
    amax = A.max(axis=1)
    A -= amax[:, None]
    np.exp(A, out=A)
    se = A.sum(axis=1)
    A *= (-1.0 / B) / se[:, None]                             # C = -P / B
    A[idx, partner] += 1.0 / B
    L = r_pos + tau * (amax + np.log(se))
    return L, A, r_pos, r_neg_mean


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
    s = C.sum(axis=1) + C.sum(axis=0)                          # (C + C^T) 1
    dZ = s[:, None] * Z
    dZ -= C @ Z
    dZ -= C.T @ Z
    out = (float(L.mean()), (dZ[:N], dZ[N:]))
    return out + ((r_pos, r_neg_mean),) if return_distances else out
