"""The connection products behind the matrix-free covariance operator, for backend="numba".

Twin of ``covariance.JacobianProducts`` (same constructor arguments and methods ``kbar_t``,
``kbar_sum``). The twin never forms the top-down Jacobians ``J_l`` (NM, n_L, n_l): it pushes
a direction up the layers (forward mode) and a co-direction down (backward mode), so both sums
are chains of matrix products (BLAS for dense layers, the masked kernels of ``kernels/mlp.py``
for masked ones) and the gates:

    u_n = Kbar_n^T vec(V) = mean_m J_l(x_nm) V f_{l-1}(x_nm)
        : h = V f_{l-1} (n_l per view);  h <- W_{a+1} (D_a h) for a = l .. L-1   -> (N, n_L)
    Σ_n Kbar_n c_n = (1/M) Σ_{nm} (J_l(x_nm)^T c_n) f_{l-1}(x_nm)^T
        : d = c_n (n_L per view);  d <- D_{a-1} (W_a^T d) for a = L .. l+1;  then d f^T

(``D_a = diag(g_a > 0)``, layer l's own gate included, none on the linear top layer). Per
product this costs ~2 NM (n_l n_{l-1} + the layers above) flops and NM (n_l + n_L) memory,
instead of reading the NM n_L n_l entries of J twice. Activations are kept feature-major
(n, NM) so views are columns; a masked layer (the HLTM tree network) skips its zeros.
"""
from __future__ import annotations

import numpy as np

from . import mlp


class GateProducts:
    """``Kbar^T vec(V)`` and ``Σ_n Kbar_n c_n`` of one layer from the gates of every view.

    ``weights`` (list of (n_l, n_{l-1})), ``plans`` (per layer a ``mlp.LinearPlan`` or None
    for a dense layer), ``gs``/``fs`` the pre-activations and Linear inputs of the N*M views
    (n-major), ``layer`` 0-based, ``N, M``.
    """

    def __init__(self, weights, plans, gs, fs, layer, N, M):
        self.weights, self.plans, self.layer, self.N, self.M = weights, plans, layer, N, M
        self.fT = np.ascontiguousarray(fs[layer].T)                  # (n_{l-1}, NM)
        # gates D_a of layers a = layer .. L-2 (0-based), feature-major 0/1 in the dtype
        self.gates = {a: (gs[a].T > 0).astype(fs[layer].dtype)
                      for a in range(layer, len(weights) - 1)}

    def _up(self, a, hT):
        """``W_a hT`` for layer a (masked kernel or BLAS)."""
        W, plan = self.weights[a], self.plans[a]
        return W @ hT if plan is None else plan.forward(W, hT.T).T

    def _down(self, a, dT):
        """``W_a^T dT`` for layer a (masked kernel or BLAS)."""
        W, plan = self.weights[a], self.plans[a]
        if plan is None:
            return W.T @ dT
        out = np.empty((W.shape[1], dT.shape[1]), dtype=dT.dtype)
        mlp.masked_backprop_fm(W, plan.cols, plan.cnt, np.ascontiguousarray(dT), out)
        return out

    def kbar_t(self, V):
        """``u_n = Kbar_n^T vec(V)`` (N, n_L) for ``V`` (n_l, n_{l-1}): forward mode."""
        l, L = self.layer, len(self.weights)
        hT = np.ascontiguousarray(V) @ self.fT                        # (n_l, NM)
        for a in range(l, L - 1):
            hT = self._up(a + 1, hT * self.gates[a])                  # (n_{a+1}, NM)
        return hT.reshape(-1, self.N, self.M).mean(axis=2).T          # (N, n_L)

    def kbar_sum(self, c):
        """``Σ_n Kbar_n c_n`` as (n_l, n_{l-1}) for ``c`` (N, n_L): backward mode."""
        l, L = self.layer, len(self.weights)
        dT = np.repeat(np.ascontiguousarray(c.T), self.M, axis=1)     # (n_L, NM)
        for a in range(L - 1, l, -1):
            dT = self._down(a, dT) * self.gates[a - 1]                # (n_{a-1}, NM)
        return (dT @ self.fT.T) / self.M                              # (n_l, n_{l-1}), unmasked
