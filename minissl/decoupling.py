"""Feature decoupling in contrastive learning (Wen & Li, ICML 2021, arXiv 2105.15134).

Data have *sparse* features (to learn) and *dense* features (to avoid). Augmentation helps when
it lowers the correlation of the dense features between the two views of a positive pair while
keeping that of the sparse ones ("feature decoupling"). This module has

1. the data model ``SparseCoding`` (the data-source protocol: ``dim``, ``triples``, ``views``):
   ``x = M z + ξ`` with four selectable augmentations;
2. closed forms of the two views' correlation along a direction (``view_correlation``,
   ``closed_form_correlations``), their sample estimate (``measured_correlations``), and the
   per-neuron metrics (``sparse_alignment``, ``dense_fraction``, ``feature_coverage``,
   ``feature_metrics``);
3. the network as pure ops, forward and backward side by side (``weight_norm_*``,
   ``sym_threshold_*``, ``relu_neuron_*``, ``l2_normalize_*``), ``Adam``, the training loop
   ``train`` and a prototype runner ``run_table`` (``python -m minissl.decoupling``).

Shapes: ``n`` samples, ``d1`` input width, ``d`` sparse features, ``r`` dense rank, ``m`` neurons.
Only ``minissl.backend`` and ``minissl.losses`` are imported from the package.

Design choices of the network (``train``):
- weight normalisation ``w = v / ||v||`` without a gain g. The output is L2-normalised, so a
  common gain cancels; a per-neuron gain would only re-weight neurons and make the threshold's
  scale ambiguous (``g`` and ``b`` trade off). With unit ``w``, ``b`` is in the units of the
  projection ``<w, x>``, directly comparable to a sparse feature's magnitude (``|z_j| = 1``).
  ``v`` starts with unit rows (see ``init_params``: this sets the angular learning rate).
- ``b >= 0`` by projection: ``b <- max(b, 0)`` after each Adam step (b may sit exactly at 0,
  where the neuron is linear), rather than a reparametrisation such as ``b = softplus(β)``.
- noise augmentation adds ``s ε`` with ``ε ~ N(0, I_d1)`` (per-coordinate scale s, so the
  closed form is ``a / (a + s^2)``): at ``s = 1`` the noise energy ``d1`` dwarfs ``E||x||^2``.
"""
from __future__ import annotations

import math
import numbers
import time

import numpy as np

from .backend import rng as make_rng
from .backend import to_numpy
from .losses import simclr_loss

AUGMENTATIONS = ("complementary", "mask", "noise", "none")
NEURONS = ("symmetric", "relu")
BASES = ("random", "identity")


# ============================================================================ validation
def _integer(name, v, lo, hi=None):
    """``v`` as an int in ``[lo, hi]``; a ValueError naming ``name`` and the range otherwise."""
    rng_txt = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
    if ok:
        fv = float(v)
        ok = math.isfinite(fv) and fv == int(fv) and fv >= lo and (hi is None or fv <= hi)
    if not ok:
        raise ValueError(f"{name} must be an integer {rng_txt}, got {v!r}")
    return int(v)


def _real(name, v, lo, hi=None, lo_open=False, hi_open=False):
    """``v`` as a finite float in the interval; a ValueError naming ``name`` and it otherwise."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    interval = f"{left}{lo}, {hi if hi is not None else 'inf'}{right if hi is not None else ')'}"
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
    if ok:
        fv = float(v)
        ok = (math.isfinite(fv) and (fv > lo if lo_open else fv >= lo)
              and (hi is None or (fv < hi if hi_open else fv <= hi)))
    if not ok:
        raise ValueError(f"{name} must be a finite number in {interval}, got {v!r}")
    return float(v)


def _choice(name, v, allowed):
    if v not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {v!r}")
    return v


# ============================================================================ 1. the data model
class SparseCoding:
    """Sparse coding with dense features: ``x = M z + ξ`` (Wen & Li's data model).

    - ``M`` (d1, d): orthonormal columns, *delocalised* (``basis="random"``: the first d columns
      of a Haar-random orthogonal matrix, so ``max |M_ij| ~ sqrt(2 log(d1 d) / d1)``).
      ``basis="identity"`` (``M = I[:, :d]``, coordinate-aligned) is there to show why
      delocalisation matters: then complementary masks decorrelate the sparse features too.
    - ``z`` in {-1, 0, 1}^d, independent coordinates, ``P(z_j != 0) = k/d``, random sign;
      ``E z z^T = (k/d) I``, ``E ||M z||^2 = k``.
    - ``ξ = σ P g``, ``g ~ N(0, I_r)``, ``P`` (d1, r) orthonormal with ``P^T M = 0`` (dense
      features outside span(M)); ``σ^2 = dense_energy k / r`` so that
      ``E ||ξ||^2 / E ||M z||^2 = dense_energy``. ξ is part of the sample: both views share it.
    - population covariance ``C = (k/d) M M^T + σ^2 P P^T`` (``covariance``); mean 0.

    Augmentations of a sample x (``augmentation``):
    - ``"complementary"``: ``x+ = 2 D x``, ``x++ = 2 (I - D) x``, D diagonal iid Bernoulli(1/2);
      with m views, views 2i and 2i+1 are a complementary pair, pairs independent;
    - ``"mask"``: each view ``D_i x / p``, D_i iid Bernoulli(p) diagonal (keep probability p);
    - ``"noise"``: each view ``x + s ε``, ε ~ N(0, I_d1);
    - ``"none"``: each view is x.
    """

    def __init__(self, d=32, d1=128, k=3, dense_rank=96, dense_energy=1.0,
                 augmentation="complementary", p=0.5, s=0.1, negatives=1, basis="random",
                 seed=0):
        self.d = _integer("d", d, 1)
        self.d1 = _integer("d1", d1, self.d)
        self.k = _real("k", k, 0, self.d, lo_open=True)
        self.dense_rank = _integer("dense_rank", dense_rank, 0, self.d1 - self.d)
        self.dense_energy = _real("dense_energy", dense_energy, 0)
        if self.dense_rank == 0 and self.dense_energy > 0:
            raise ValueError(f"dense_energy must be 0 when dense_rank is 0, got {dense_energy!r}")
        self.augmentation = _choice("augmentation", augmentation, AUGMENTATIONS)
        self.p = _real("p", p, 0, 1, lo_open=True)
        self.s = _real("s", s, 0)
        self.negatives = _integer("negatives", negatives, 1)
        self.basis = _choice("basis", basis, BASES)
        self.seed = seed
        g = make_rng(seed)
        d, d1, r = self.d, self.d1, self.dense_rank
        if self.basis == "random":
            Q = _haar_orthogonal(d1, g)                                    # (d1, d1)
            self.M = Q[:, :d]                                               # (d1, d)
            self.P = Q[:, d:d + r]                                          # (d1, r)
        else:
            self.M = np.eye(d1)[:, :d]
            R = _haar_orthogonal(d1 - d, g)[:, :r]                          # (d1-d, r)
            self.P = np.vstack([np.zeros((d, r)), R])                       # (d1, r)
        self.sigma = math.sqrt(self.dense_energy * self.k / r) if r else 0.0
        self.dim = d1

    def __repr__(self):
        return (f"SparseCoding(d={self.d}, d1={self.d1}, k={self.k}, dense_rank={self.dense_rank},"
                f" dense_energy={self.dense_energy}, augmentation={self.augmentation!r},"
                f" p={self.p}, s={self.s}, basis={self.basis!r}, seed={self.seed!r})")

    @property
    def covariance(self):
        """``C = E x x^T = (k/d) M M^T + σ^2 P P^T`` (d1, d1), exact."""
        return (self.k / self.d) * self.M @ self.M.T + self.sigma ** 2 * self.P @ self.P.T

    def sample(self, n, rng, return_parts=False):
        """n clean samples ``x`` (n, d1); with ``return_parts`` also ``(z (n, d), ξ (n, d1))``."""
        n = _integer("n", n, 1)
        rng = make_rng(rng)
        nz = rng.random((n, self.d)) < self.k / self.d                       # (n, d)
        sign = np.where(rng.random((n, self.d)) < 0.5, -1.0, 1.0)
        z = nz * sign                                                        # (n, d)
        xi = (self.sigma * rng.standard_normal((n, self.dense_rank))) @ self.P.T   # (n, d1)
        x = z @ self.M.T + xi                                                # (n, d1)
        return (x, z, xi) if return_parts else x

    def augment(self, x, m, rng):
        """m augmented views of each row of ``x`` (n, d1) -> (n, m, d1)."""
        m = _integer("m", m, 1)
        rng = make_rng(rng)
        X = np.repeat(x[:, None, :], m, axis=1)                              # (n, m, d1)
        a = self.augmentation
        if a == "none":
            return X
        if a == "noise":
            return X + self.s * rng.standard_normal(X.shape)
        if a == "mask":
            return X * (rng.random(X.shape) < self.p) / self.p
        # complementary: one mask per pair of views, its complement for the partner
        n_pairs = (m + 1) // 2
        D = rng.random((x.shape[0], n_pairs, x.shape[1])) < 0.5              # (n, pairs, d1)
        D = np.stack([D, ~D], axis=2).reshape(x.shape[0], 2 * n_pairs, x.shape[1])[:, :m]
        return 2.0 * D * X

    def views(self, n, m, rng):
        """(n, m, d1): m augmented views of each of n fresh samples."""
        rng = make_rng(rng)
        return self.augment(self.sample(n, rng), m, rng)

    def triples(self, n, rng):
        """Anchor and positive (two views of one sample), ``negatives`` views of other samples:
        (n, d1), (n, d1), (n, H, d1)."""
        rng = make_rng(rng)
        v = self.views(n, 2, rng)
        neg = self.views(n * self.negatives, 1, rng).reshape(n, self.negatives, self.d1)
        return v[:, 0], v[:, 1], neg


def _haar_orthogonal(n, rng):
    """A Haar-random orthogonal (n, n) matrix (QR of a Gaussian with the sign fix)."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


# ============================================================================ 2. closed forms
def view_correlation(C, V, augmentation, p=0.5, s=0.1):
    """Correlation of the two views' projections ``u± = v^T x±`` along unit directions.

    ``C`` (d1, d1) the data covariance, ``V`` (d1,) or (d1, q) unit columns -> float or (q,).
    With ``a = v^T C v`` and ``b = Σ_i v_i^2 C_ii``, ``ρ = E[u+ u++] / sqrt(E[u+^2] E[u++^2])``
    (the means are 0: x is centred and the augmentation is independent of x):

    - complementary masks, ``u+ = 2 Σ_i v_i D_i x_i``, ``u++ = 2 Σ_i v_i (1 - D_i) x_i``:
      ``E[D_i (1 - D_j)] = 1/4 (i != j), 0 (i = j)`` gives ``E[u+ u++] = Σ_{i!=j} v_i v_j C_ij
      = a - b``; ``E[D_i D_j] = 1/4 (i != j), 1/2 (i = j)`` gives ``E[u+^2] = (a - b) + 2b
      = a + b``: ``ρ = (a - b) / (a + b)``;
    - independent masks ``D x / p``: ``E[u+ u++] = a``, ``E[u+^2] = (a - b) + b/p``:
      ``ρ = a / (a + b (1 - p) / p)``;
    - noise ``x + s ε``: ``E[u+ u++] = a``, ``E[u+^2] = a + s^2 ||v||^2``: ``ρ = a / (a + s^2)``;
    - none: ``ρ = 1``.

    For a delocalised v (``v_i^2 ~ 1/d1``) ``b ~ tr(C)/d1``, the per-coordinate energy, so
    masks keep a feature correlated only if its variance ``a`` is large against ``tr(C)/d1``;
    for a coordinate-aligned v (``v = e_i``) ``b = a`` and complementary masks give ``ρ = 0``.
    """
    _choice("augmentation", augmentation, AUGMENTATIONS)
    V = np.asarray(V, dtype=float)
    single = V.ndim == 1
    V = V[:, None] if single else V                                         # (d1, q)
    a = np.einsum("iq,ij,jq->q", V, C, V)                                   # (q,)
    b = (V ** 2 * np.diag(C)[:, None]).sum(axis=0)                          # (q,)
    if augmentation == "complementary":
        rho = (a - b) / (a + b)
    elif augmentation == "mask":
        rho = a / (a + b * (1 - p) / p)
    elif augmentation == "noise":
        rho = a / (a + s ** 2 * (V ** 2).sum(axis=0))
    else:
        rho = np.ones_like(a)
    return float(rho[0]) if single else rho


def closed_form_correlations(source):
    """The closed-form ``ρ`` averaged over the sparse directions ``M_j`` and over the dense
    directions ``P_l`` (NaN when there are none): ``{"sparse": ..., "dense": ...}``."""
    C = source.covariance
    out = {}
    for key, V in (("sparse", source.M), ("dense", source.P)):
        out[key] = (float(view_correlation(C, V, source.augmentation, source.p, source.s).mean())
                    if V.shape[1] else float("nan"))
    return out


def measured_correlations(source, n, rng, blocks=20):
    """Sample estimate of the same averages from ``n`` pairs of views, with a standard error.

    Along each direction ``ρ̂ = mean(u+ u++) / sqrt(mean(u+^2) mean(u++^2))`` (no centring; the
    means are 0), averaged over the directions. The standard error is the spread of the
    estimate over ``blocks`` disjoint blocks of samples divided by ``sqrt(blocks)``.
    Returns ``{"sparse", "dense", "sparse_se", "dense_se"}``.
    """
    n = _integer("n", n, 2)
    blocks = _integer("blocks", blocks, 2, n)
    X = source.views(n, 2, make_rng(rng))                                   # (n, 2, d1)
    out = {}
    for key, V in (("sparse", source.M), ("dense", source.P)):
        if not V.shape[1]:
            out[key] = out[key + "_se"] = float("nan")
            continue
        U1, U2 = X[:, 0] @ V, X[:, 1] @ V                                   # (n, q)

        def est(i):
            return float(((U1[i] * U2[i]).mean(0)
                          / np.sqrt((U1[i] ** 2).mean(0) * (U2[i] ** 2).mean(0))).mean())
        out[key] = est(slice(None))
        per = [est(i) for i in np.array_split(np.arange(n), blocks)]
        out[key + "_se"] = float(np.std(per, ddof=1) / math.sqrt(blocks))
    return out


# ============================================================================ 2. metrics
def _unit_rows(W):
    W = np.asarray(to_numpy(W), dtype=float)
    return W / np.linalg.norm(W, axis=1, keepdims=True)


def sparse_alignment(W, M):
    """Per neuron ``max_j |M_j^T w_i| / ||w_i||``: W (m, d1), M (d1, d) -> (m,)."""
    return np.abs(_unit_rows(W) @ M).max(axis=1)


def dense_fraction(W, P):
    """Per neuron the share of ``||w_i||^2`` in span(P): ``||P^T w_i||^2 / ||w_i||^2`` -> (m,)."""
    return ((_unit_rows(W) @ P) ** 2).sum(axis=1)


def feature_coverage(W, M):
    """Per sparse feature ``max_i |M_j^T w_i| / ||w_i||``: W (m, d1), M (d1, d) -> (d,)."""
    return np.abs(_unit_rows(W) @ M).max(axis=0)


def feature_metrics(W, M, P, threshold=0.9):
    """Summary: mean sparse alignment, neurons with alignment > ``threshold``, mean dense
    fraction, mean and min coverage and the number of features covered above ``threshold``."""
    al, df, cov = sparse_alignment(W, M), dense_fraction(W, P), feature_coverage(W, M)
    return {"alignment": float(al.mean()), "aligned": int((al > threshold).sum()),
            "dense_fraction": float(df.mean()), "coverage": float(cov.mean()),
            "coverage_min": float(cov.min()), "covered": int((cov > threshold).sum())}


# ============================================================================ 3. ops
def weight_norm_forward(v):
    """``w_i = v_i / ||v_i||`` per row: v (m, d1) -> w (m, d1), norms (m, 1)."""
    nrm = np.sqrt((v * v).sum(axis=1, keepdims=True))                       # (m, 1)
    return v / nrm, nrm


def weight_norm_backward(dw, w, nrm):
    """``dL/dv_i = (dw_i - w_i <w_i, dw_i>) / ||v_i||`` (the Jacobian ``(I - w w^T)/||v||``)."""
    return (dw - w * (w * dw).sum(axis=1, keepdims=True)) / nrm             # (m, d1)


def sym_threshold_forward(x, w, b):
    """Symmetric thresholded ReLU, ``h_i(x) = ReLU(<w_i,x> - b_i) - ReLU(-<w_i,x> - b_i)``
    ``= sign(s_i) max(|s_i| - b_i, 0)`` with ``s_i = <w_i, x>`` (soft thresholding, b >= 0).

    x (n, d1), w (m, d1), b (m,) -> h (n, m), s (n, m).
    """
    s = x @ w.T                                                             # (n, m)
    return np.maximum(s - b, 0) - np.maximum(-s - b, 0), s


def sym_threshold_backward(dh, x, w, b, s):
    """``∂h/∂s = 1[|s| > b]``, ``∂h/∂b = -sign(s) 1[|s| > b]``; ``ds = dh ∂h/∂s``:
    ``dx = ds w`` (n, d1), ``dw = ds^T x`` (m, d1), ``db = -Σ_n dh sign(s) 1[|s| > b]`` (m,)."""
    on = np.abs(s) > b                                                      # (n, m)
    ds = dh * on
    return ds @ w, ds.T @ x, -(ds * np.sign(s)).sum(axis=0)


def relu_neuron_forward(x, w):
    """One-sided ReLU neuron ``h_i(x) = ReLU(<w_i, x>)``: x (n, d1), w (m, d1) -> h, s (n, m)."""
    s = x @ w.T
    return np.maximum(s, 0), s


def relu_neuron_backward(dh, x, w, s):
    """``ds = dh 1[s > 0]``; ``dx = ds w``, ``dw = ds^T x``."""
    ds = dh * (s > 0)
    return ds @ w, ds.T @ x


def l2_normalize_forward(h, eps=1e-8):
    """``z = h / sqrt(||h||^2 + eps^2)`` per row: h (n, m) -> z (n, m), norms (n, 1).
    (eps keeps a sample whose neurons are all below threshold, h = 0, finite: z = 0.)"""
    nrm = np.sqrt((h * h).sum(axis=1, keepdims=True) + eps ** 2)
    return h / nrm, nrm


def l2_normalize_backward(dz, z, nrm):
    """``dh = (dz - z <z, dz>) / ||h||`` (exact for the eps form: ``(I - h h^T/n^2)/n``)."""
    return (dz - z * (z * dz).sum(axis=1, keepdims=True)) / nrm


class Adam:
    """Adam (Kingma & Ba) on a dict of arrays, updated in place:
    ``m = β1 m + (1-β1) g``, ``u = β2 u + (1-β2) g^2``,
    ``θ -= lr (m / (1-β1^t)) / (sqrt(u / (1-β2^t)) + eps)``."""

    def __init__(self, lr=3e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr = _real("lr", lr, 0, lo_open=True)
        self.beta1 = _real("beta1", beta1, 0, 1, hi_open=True)
        self.beta2 = _real("beta2", beta2, 0, 1, hi_open=True)
        self.eps = _real("eps", eps, 0, lo_open=True)
        self.t, self.m, self.u = 0, {}, {}

    def step(self, params, grads):
        self.t += 1
        c1, c2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        for key, g in grads.items():
            if key not in self.m:
                self.m[key], self.u[key] = np.zeros_like(g), np.zeros_like(g)
            m, u = self.m[key], self.u[key]
            m *= self.beta1
            m += (1 - self.beta1) * g
            u *= self.beta2
            u += (1 - self.beta2) * g * g
            params[key] -= self.lr * (m / c1) / (np.sqrt(u / c2) + self.eps)


# ============================================================================ 3. finite differences
def numerical_gradient(f, arrays, eps=1e-6):
    """Central differences of the scalar ``f()`` w.r.t. each float64 array (perturbed in place,
    restored afterwards)."""
    grads = []
    for a in arrays:
        if a.dtype != np.float64:
            raise ValueError(f"finite differences need float64 arrays, got {a.dtype}")
        g, flat = np.zeros(a.shape), a.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            fp = float(f())
            flat[i] = old - eps
            fm = float(f())
            flat[i] = old
            g.reshape(-1)[i] = (fp - fm) / (2 * eps)
        grads.append(g)
    return grads


def gradient_error(analytic, numeric, floor=1e-8):
    """``max |a - n| / max(max |n|, floor)`` over all arrays (scale-free worst case)."""
    a = np.concatenate([np.ravel(x) for x in analytic])
    n = np.concatenate([np.ravel(x) for x in numeric])
    return float(np.abs(a - n).max() / max(np.abs(n).max(), floor))


# ============================================================================ 3. the network
def init_params(m, d1, rng, b_init=0.0, neuron="symmetric"):
    """``v`` (m, d1) uniform on the unit sphere, ``||v_i|| = 1``; ``b`` (m,) = b_init for the
    symmetric neuron.

    The norm of ``v`` matters with weight normalisation: the gradient w.r.t. v is
    ``(I - w w^T) dw / ||v||`` and Adam moves each coordinate by about ``lr``, so the direction
    ``w`` turns by about ``lr sqrt(d1) / ||v||`` radians per step. Unit rows make that ~0.03 at
    ``lr = 3e-3, d1 = 128``; ``v ~ N(0, I)`` (``||v|| ~ sqrt(d1)``) would be ``sqrt(d1)``
    times slower (measured: complementary masks reach alignment 0.45 instead of 0.85 in 1,000
    steps).
    """
    rng = make_rng(rng)
    v = rng.standard_normal((m, d1))
    params = {"v": v / np.linalg.norm(v, axis=1, keepdims=True)}
    if neuron == "symmetric":
        params["b"] = np.full(m, float(b_init))
    return params


def forward(params, x, neuron="symmetric"):
    """``z = normalize(h(x; v/||v||, b))``: x (n, d1) -> z (n, m) and a cache for backward."""
    w, wn = weight_norm_forward(params["v"])
    if neuron == "symmetric":
        h, s = sym_threshold_forward(x, w, params["b"])
    else:
        h, s = relu_neuron_forward(x, w)
    z, zn = l2_normalize_forward(h)
    return z, (x, w, wn, s, z, zn)


def backward(dz, params, cache, neuron="symmetric"):
    """Gradients ``{"v", "b"}`` of the loss from ``dz`` (n, m)."""
    x, w, wn, s, z, zn = cache
    dh = l2_normalize_backward(dz, z, zn)
    grads = {}
    if neuron == "symmetric":
        _, dw, grads["b"] = sym_threshold_backward(dh, x, w, params["b"], s)
    else:
        _, dw = relu_neuron_backward(dh, x, w, s)
    grads["v"] = weight_norm_backward(dw, w, wn)
    return grads


def loss_and_grads(params, x1, x2, neuron="symmetric", tau=0.2):
    """Symmetric in-batch InfoNCE (``simclr_loss``, 2N anchors) of the two views' embeddings;
    both views go through the network as one batch. x1, x2 (N, d1) -> (value, grads)."""
    N = x1.shape[0]
    z, cache = forward(params, np.concatenate([x1, x2], axis=0), neuron)   # (2N, m)
    value, (dz1, dz2) = simclr_loss(z[:N], z[N:], loss="infonce", tau=tau)
    return value, backward(np.concatenate([dz1, dz2], axis=0), params, cache, neuron)


def train(source, neuron="symmetric", width=64, tau=0.2, batch=256, lr=3e-3, steps=1000,
          seed=0, b_init=0.0, log_every=0):
    """Train the one-layer network on ``source`` with Adam; ``b`` is kept >= 0 by projection
    (``b <- max(b, 0)`` after every Adam step). Returns a dict: ``w`` (m, d1) unit rows, ``b``,
    ``loss`` (per step), ``seconds``, and ``metrics`` (``feature_metrics`` plus ``b_mean``).
    """
    _choice("neuron", neuron, NEURONS)
    width = _integer("width", width, 1)
    tau = _real("tau", tau, 0, lo_open=True)
    batch = _integer("batch", batch, 2)
    steps = _integer("steps", steps, 0)
    b_init = _real("b_init", b_init, 0)
    g = make_rng(seed)
    params = init_params(width, source.dim, g, b_init, neuron)
    opt = Adam(lr)
    losses = np.empty(steps)
    t0 = time.perf_counter()
    for t in range(steps):
        X = source.views(batch, 2, g)                                       # (batch, 2, d1)
        losses[t], grads = loss_and_grads(params, X[:, 0], X[:, 1], neuron, tau)
        opt.step(params, grads)
        if neuron == "symmetric":
            np.maximum(params["b"], 0, out=params["b"])
        if log_every and (t + 1) % log_every == 0:
            print(f"step {t + 1}: loss {losses[t]:.4f}", flush=True)
    seconds = time.perf_counter() - t0
    w, _ = weight_norm_forward(params["v"])
    met = feature_metrics(w, source.M, source.P)
    met["b_mean"] = float(params["b"].mean()) if neuron == "symmetric" else 0.0
    met["final_loss"] = float(losses[-50:].mean()) if steps else float("nan")
    return {"w": w, "b": params.get("b"), "loss": losses, "seconds": seconds, "metrics": met}


# ============================================================================ 3. prototype runner
#: (label, SparseCoding keyword arguments, neuron); d=32, d1=128, k=3 throughout.
SETTINGS = (
    ("none", dict(augmentation="none"), "symmetric"),
    ("noise s=0.1", dict(augmentation="noise", s=0.1), "symmetric"),
    ("noise s=1.0", dict(augmentation="noise", s=1.0), "symmetric"),
    ("mask p=0.5", dict(augmentation="mask", p=0.5), "symmetric"),
    ("mask p=0.3", dict(augmentation="mask", p=0.3), "symmetric"),
    ("complementary", dict(augmentation="complementary"), "symmetric"),
    ("r6 complementary", dict(augmentation="complementary", dense_rank=6), "symmetric"),
    ("r6 none", dict(augmentation="none", dense_rank=6), "symmetric"),
    ("r6 x3 complementary", dict(augmentation="complementary", dense_rank=6, dense_energy=3.0),
     "symmetric"),
    ("r6 x3 none", dict(augmentation="none", dense_rank=6, dense_energy=3.0), "symmetric"),
    ("relu none", dict(augmentation="none"), "relu"),
    ("relu complementary", dict(augmentation="complementary"), "relu"),
)


def run_table(settings=SETTINGS, seeds=(0, 1, 2), steps=1000, base=None, **train_kw):
    """Run every setting for every seed (the source's basis and the run share the seed); return
    rows of ``(label, closed-form correlations, {metric: (mean, std)}, seconds per run)``."""
    base = dict(d=32, d1=128, k=3, dense_rank=96, dense_energy=1.0) if base is None else base
    rows = []
    for label, kw, neuron in settings:
        runs, closed = [], []
        for seed in seeds:
            src = SparseCoding(**{**base, **kw}, seed=seed)
            closed.append(closed_form_correlations(src))
            runs.append(train(src, neuron=neuron, steps=steps, seed=seed, **train_kw))
        keys = runs[0]["metrics"].keys()
        stats = {k: (float(np.mean([r["metrics"][k] for r in runs])),
                     float(np.std([r["metrics"][k] for r in runs]))) for k in keys}
        cf = {k: float(np.mean([c[k] for c in closed])) for k in ("sparse", "dense")}
        rows.append((label, cf, stats, float(np.mean([r["seconds"] for r in runs]))))
        print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row):
    label, cf, st, sec = row

    def pm(k, f="{:.2f}"):
        return f"{f.format(st[k][0])}±{f.format(st[k][1])}"
    return (f"{label:<20} | {cf['sparse']:6.2f} {cf['dense']:6.2f} | {pm('alignment')} "
            f"{pm('aligned', '{:.1f}'):>9} | {pm('dense_fraction')} | {pm('coverage')} "
            f"{pm('covered', '{:.1f}'):>9} | {pm('b_mean', '{:.3f}')} | {pm('final_loss')} | "
            f"{sec:5.1f}s")


HEADER = ("setting              | ρ_sp  ρ_dn  | alignment  #>0.9     | dense frac | coverage   "
          "#cov>0.9  | b mean        | loss      | s/run")


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Feature-decoupling prototype (Wen & Li 2021)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    a = ap.parse_args(argv)
    settings = [s for s in SETTINGS if a.only is None or s[0] in a.only]
    print(HEADER)
    t0 = time.perf_counter()
    rows = run_table(settings, seeds=a.seeds, steps=a.steps)
    print(f"total wall time {time.perf_counter() - t0:.1f}s")
    return rows


if __name__ == "__main__":
    main()
