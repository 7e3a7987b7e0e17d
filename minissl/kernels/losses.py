"""Twin of ``losses.simclr_weights`` (the SimCLR arrangement of InfoNCE), in whole-array form.

``Z = [z1; z2]`` (B = 2N, d); view i's positive is its partner ``p(i) = (i + N) mod B``, its
negatives the other B - 2 views. With ``r_ij = max(½|Z_i|² + ½|Z_j|² - Z_i.Z_j, 0)`` and
``a_ij = -r_ij / τ`` over ``j != i``:

    L_i  = r_{i p(i)} + τ log Σ_{j != i} e^{a_ij}                  (log-sum-exp)
    P_ij = e^{a_ij} / Σ_{j' != i} e^{a_ij'}
    C_ij = dL_i/dr_ij / B:  C_{i p(i)} = (1 - P_{i p(i)}) / B,  C_ij = -P_ij / B (j != i, p(i))

The twin never builds the (B, B-2) index and distance arrays of the reference nor scatters
into C: the B x B matrix is turned into C in place (the diagonal masked with -inf). It is not
a compiled loop on purpose: the exponentials dominate, NumPy evaluates them with SIMD, and
Numba without Intel SVML (absent here) calls scalar ``exp``; a row-wise
``@njit(parallel=True)`` version measured slower.
"""
from __future__ import annotations

import numpy as np


def simclr_weights(Z, loss="infonce", tau=1.0, margin=0.0):
    """``(L (B,), C (B, B), r_pos (B,), mean r_neg)`` like ``losses.simclr_weights``, for
    ``loss="infonce"`` (the only loss that takes the B - 2 negatives), in Z's dtype."""
    if loss != "infonce":
        raise ValueError(f"loss must be 'infonce' for in-batch negatives, got {loss!r}")
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
    r_neg_mean = float((A.sum(dtype=np.float64) - np.trace(A, dtype=np.float64)
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
