"""The connection sums behind the matrix-free covariance operator, for backend="numba".

Twin of ``covariance._Factors`` (same constructor and methods ``kbar_t``, ``kbar_sum``,
``apply``), which stays the reference. The twin never forms the top-down Jacobians ``J_l``
(NM, n_L, n_l): it pushes a direction up the layers (forward mode) and a co-direction down
(backward mode), so both sums are chains of matrix products (BLAS for dense layers, the
masked kernels of ``kernels/mlp.py`` for masked ones) and the gates:

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
from ..covariance import _Factors


class Factors(_Factors):
    """What ``OP_l v`` needs for one layer: the gates and ``f_{l-1}`` of every view.

    Same contract as ``covariance._Factors(net, views, layer, xi)``: ``views`` (N, M, n_0),
    ``xi`` None or (N, N) symmetric. ``kbar_t(V)`` -> (N, n_L); ``kbar_sum(c)`` ->
    (n_l, n_{l-1}); ``apply(V)`` (inherited: the formula is shared) -> ``OP vec(V)``.
    """

    def __init__(self, net, views, layer, xi):
        from ..covariance import _check_layer, _check_views, _check_xi
        self.xp = np
        self.layer = _check_layer(net, layer)
        views = _check_views(net, views)
        self.N, self.M = views.shape[:2]
        self.xi = _check_xi(net, xi, self.N)
        N, M, n0 = views.shape
        st = mlp.net_structure(net)
        self.st = st
        self.weights = net.weights
        gs, fs = mlp.forward_pass(net.weights, net.biases, views.reshape(N * M, n0),
                                  structure=st)
        self.fT = np.ascontiguousarray(fs[self.layer].T)             # (n_{l-1}, NM)
        # gates D_a of layers a = layer .. L-2 (0-based), feature-major 0/1 in the net dtype
        self.gates = {a: (gs[a].T > 0).astype(net.dtype)
                      for a in range(self.layer, net.depth - 1)}
        self.shape = tuple(net.weights[self.layer].shape)            # (n_l, n_{l-1})
        self.mask = None if net.masks is None else net.masks[self.layer]
        if self.xi is not None:
            self.lap = np.diag(self.xi.sum(axis=1)) - self.xi        # (N, N)

    def _up(self, a, hT):
        """``W_a hT`` for layer a (masked kernel or BLAS)."""
        W, st = self.weights[a], self.st[a]
        if st is None:
            return W @ hT
        out = np.empty((W.shape[0], hT.shape[1]), dtype=hT.dtype)
        mlp.masked_matmul_fm(W, st[0], st[1], hT, out)
        return out

    def _down(self, a, dT):
        """``W_a^T dT`` for layer a (masked kernel or BLAS)."""
        W, st = self.weights[a], self.st[a]
        if st is None:
            return W.T @ dT
        out = np.empty((W.shape[1], dT.shape[1]), dtype=dT.dtype)
        mlp.masked_backprop_fm(W, st[0], st[1], dT, out)
        return out

    def kbar_t(self, V):
        """``u_n = Kbar_n^T vec(V)`` (N, n_L) for ``V`` (n_l, n_{l-1}): forward mode."""
        l, L = self.layer, len(self.weights)
        hT = np.ascontiguousarray(V) @ self.fT                        # (n_l, NM)
        for a in range(l, L - 1):
            hT *= self.gates[a]
            hT = self._up(a + 1, hT)                                  # (n_{a+1}, NM)
        return hT.reshape(-1, self.N, self.M).mean(axis=2).T          # (N, n_L)

    def kbar_sum(self, c):
        """``Σ_n Kbar_n c_n`` as (n_l, n_{l-1}) for ``c`` (N, n_L): backward mode."""
        l, L = self.layer, len(self.weights)
        dT = np.repeat(np.ascontiguousarray(c.T), self.M, axis=1)     # (n_L, NM)
        for a in range(L - 1, l, -1):
            dT = self._down(a, dT)                                    # (n_{a-1}, NM)
            dT *= self.gates[a - 1]
        return (dT @ self.fT.T) / self.M                              # (n_l, n_{l-1}), unmasked
