"""The connection products behind the matrix-free covariance operator, for backend="numba".

Twin of ``covariance.JacobianProducts`` (the same ``every_layer(net, gs, fs, N, M)`` and
methods ``kbar_t``, ``kbar_sum``). The twin never forms the top-down Jacobians ``J_l``
(NM, n_L, n_l): it pushes a direction up the layers (forward mode) and a co-direction down
(backward mode), so both sums are chains of matrix products (BLAS for dense layers, the
masked kernels (``tree.linear_plan``) for masked ones) and the gates:

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


class GateProducts:
    """``Kbar^T vec(V)`` and ``Σ_n Kbar_n c_n`` of one layer from the gates of every view.

    ``weights`` (list of (n_l, n_{l-1})), ``plans`` (per layer a masked layer's plan,
    ``tree.linear_plan``: ``mlp.LinearPlan`` or ``tree.GroupedPlan``, or None
    for a dense layer), ``gates`` (the 0/1 gates ``D_a`` of layers a = 0 .. L-2, each
    feature-major (n_a, NM) in the dtype), ``fT`` the layer's Linear inputs (n_{l-1}, NM),
    ``layer`` 0-based, ``N, M``. ``every_layer(net, gs, fs, N, M)``: one per layer from the
    pre-activations ``gs`` and Linear inputs ``fs`` of one forward (n-major), sharing the
    gates; the net is read duck-typed (``weights``, ``linears()`` with their ``plan``).
    """

    def __init__(self, weights, plans, gates, fT, layer, N, M):
        self.weights, self.plans, self.layer, self.N, self.M = weights, plans, layer, N, M
        self.gates, self.fT = gates, fT

    @classmethod
    def every_layer(cls, net, gs, fs, N, M):
        weights, plans = net.weights, [lin.plan for lin in net.linears()]
        gates = [(g.T > 0).astype(fs[0].dtype) for g in gs[:-1]]   # D_a, (n_a, NM)
        return [cls(weights, plans, gates, np.ascontiguousarray(f.T), l, N, M)
                for l, f in enumerate(fs)]

    def _up(self, a, hT):
        """``W_a hT`` for layer a (masked kernel or BLAS)."""
        W, plan = self.weights[a], self.plans[a]
        return W @ hT if plan is None else plan.forward(W, hT.T).T

    def _down(self, a, dT):
        """``W_a^T dT`` for layer a (masked kernel or BLAS)."""
        W, plan = self.weights[a], self.plans[a]
        return W.T @ dT if plan is None else plan.down(W, dT)

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
