"""Feature decoupling in contrastive learning (Wen & Li, ICML 2021, arXiv 2105.15134): the
data model, the closed forms of the views' correlation, and the per-neuron metrics.

Data have *sparse* features (to learn) and *dense* features (to avoid). Augmentation helps when
it lowers the correlation of the dense features between the two views of a positive pair while
keeping that of the sparse ones ("feature decoupling"). This module has

1. the data model ``SparseCoding`` (the data-source protocol: ``dim``, ``triples``, ``views``):
   ``x = M z + ξ`` with four augmentations;
2. closed forms of the two views' correlation along a direction (``view_correlation``,
   ``closed_form_correlations``) and their sample estimate (``measured_correlations``);
3. the per-neuron metrics (``sparse_alignment``, ``dense_fraction``, ``feature_coverage``,
   ``feature_metrics``): functions of the weights and the model's bases M and P only.

The network (``layers.WeightNormLinear`` + ``layers.SymmetricThreshold`` or ``ReLU`` +
``L2Normalize``), its training (Adam, ``optim.Adam``) and the runner are in
``experiments/decoupling.py``; docs/decoupling.md has the results.

Shapes: ``n`` samples, ``d1`` input width, ``d`` sparse features, ``r`` dense rank, ``m``
neurons. Only ``minissl.backend`` and ``minissl.budget`` are imported from the package.

Noise scale: the noise augmentation adds ``s ε`` with ``ε ~ N(0, I_d1)`` (per-coordinate scale
s, so the closed form is ``a / (a + s^2)``): at ``s = 1`` the noise energy ``d1`` dwarfs
``E||x||^2 = k (1 + dense_energy)``. ``noise_scale="relative"`` scales the noise to the data
instead: per-coordinate std ``s sqrt(E||x||^2 / d1)``, so ``E||noise||^2 = s^2 E||x||^2``
(what noise of total energy ``s^2`` on an L2-normalised input is, up to the spread of
``||x||``); the closed form is the same with that std.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend as B
from .budget import sparse_views_cost

AUGMENTATIONS = ("complementary", "mask", "noise", "none")
BASES = ("random", "identity")
NOISE_SCALES = ("coordinate", "relative")
MAX_DIM = 4096           # d1 limit: the basis is a Haar-random (d1, d1) orthogonal matrix


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
    - ``"noise"``: each view ``x + s ε``, ε ~ N(0, I_d1) (``noise_scale="coordinate"``), or
      ``x + s sqrt(E||x||^2 / d1) ε`` (``noise_scale="relative"``: noise energy
      ``s^2 E||x||^2``, ``E||x||^2 = k (1 + dense_energy)``);
    - ``"none"``: each view is x.
    """

    def __init__(self, d=32, d1=128, k=3, dense_rank=96, dense_energy=1.0,
                 augmentation="complementary", p=0.5, s=0.1, negatives=1, basis="random",
                 seed=0, noise_scale="coordinate"):
        self.d = B.check_int("d", d, 1, MAX_DIM)
        self.d1 = B.check_int("d1", d1, self.d, MAX_DIM)
        self.k = B.check_real("k", k, 0, self.d, lo_open=True)
        self.dense_rank = B.check_int("dense_rank", dense_rank, 0, self.d1 - self.d)
        self.dense_energy = B.check_real("dense_energy", dense_energy, 0)
        if self.dense_rank == 0 and self.dense_energy > 0:
            raise ValueError(f"dense_energy must be 0 when dense_rank is 0, got {dense_energy!r}")
        self.augmentation = B.check_choice("augmentation", augmentation, AUGMENTATIONS)
        self.p = B.check_real("p", p, 0, 1, lo_open=True)
        self.s = B.check_real("s", s, 0)
        self.noise_scale = B.check_choice("noise_scale", noise_scale, NOISE_SCALES)
        self.negatives = B.check_int("negatives", negatives, 1)
        self.basis = B.check_choice("basis", basis, BASES)
        self.seed = seed
        g = B.rng(seed)
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
                f" p={self.p}, s={self.s}, noise_scale={self.noise_scale!r},"
                f" basis={self.basis!r}, seed={self.seed!r})")

    @property
    def noise_std(self):
        """The per-coordinate standard deviation of the noise augmentation."""
        if self.noise_scale == "coordinate":
            return self.s
        return self.s * math.sqrt(self.k * (1 + self.dense_energy) / self.d1)

    @property
    def covariance(self):
        """``C = E x x^T = (k/d) M M^T + σ^2 P P^T`` (d1, d1), exact."""
        return (self.k / self.d) * self.M @ self.M.T + self.sigma ** 2 * self.P @ self.P.T

    def sample(self, n, rng, return_parts=False):
        """n clean samples ``x`` (n, d1); with ``return_parts`` also ``(z (n, d), ξ (n, d1))``."""
        n = B.check_int("n", n, 1)
        rng = B.rng(rng)
        nz = rng.random((n, self.d)) < self.k / self.d                       # (n, d)
        sign = np.where(rng.random((n, self.d)) < 0.5, -1.0, 1.0)
        z = nz * sign                                                        # (n, d)
        xi = (self.sigma * rng.standard_normal((n, self.dense_rank))) @ self.P.T   # (n, d1)
        x = z @ self.M.T + xi                                                # (n, d1)
        return (x, z, xi) if return_parts else x

    def augment(self, x, m, rng):
        """m augmented views of each row of ``x`` (n, d1) -> (n, m, d1)."""
        m = B.check_int("m", m, 1)
        rng = B.rng(rng)
        X = np.repeat(x[:, None, :], m, axis=1)                              # (n, m, d1)
        a = self.augmentation
        if a == "none":
            return X
        if a == "noise":
            return X + self.noise_std * rng.standard_normal(X.shape)
        if a == "mask":
            return X * (rng.random(X.shape) < self.p) / self.p
        # complementary: one mask per pair of views, its complement for the partner
        n_pairs = (m + 1) // 2
        D = rng.random((x.shape[0], n_pairs, x.shape[1])) < 0.5              # (n, pairs, d1)
        D = np.stack([D, ~D], axis=2).reshape(x.shape[0], 2 * n_pairs, x.shape[1])[:, :m]
        return 2.0 * D * X

    def views(self, n, m, rng):
        """(n, m, d1): m augmented views of each of n fresh samples (memory checked first)."""
        rng = B.rng(rng)
        sparse_views_cost(self, n, m).check()
        return self.augment(self.sample(n, rng), m, rng)

    def triples(self, n, rng):
        """Anchor and positive (two views of one sample), ``negatives`` views of other samples:
        (n, d1), (n, d1), (n, H, d1)."""
        rng = B.rng(rng)
        sparse_views_cost(self, n, 2, 1 + self.negatives, f"n={n}, negatives={self.negatives}").check()
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
    B.check_choice("augmentation", augmentation, AUGMENTATIONS)
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
        out[key] = (float(view_correlation(C, V, source.augmentation, source.p,
                                           source.noise_std).mean())
                    if V.shape[1] else float("nan"))
    return out


def measured_correlations(source, n, rng, blocks=20):
    """Sample estimate of the same averages from ``n`` pairs of views, with a standard error.

    Along each direction ``ρ̂ = mean(u+ u++) / sqrt(mean(u+^2) mean(u++^2))`` (no centring; the
    means are 0), averaged over the directions. The standard error is the spread of the
    estimate over ``blocks`` disjoint blocks of samples divided by ``sqrt(blocks)``.
    Returns ``{"sparse", "dense", "sparse_se", "dense_se"}``.
    """
    n = B.check_int("n", n, 2)
    blocks = B.check_int("blocks", blocks, 2, n)
    X = source.views(n, 2, B.rng(rng))                                   # (n, 2, d1)
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


# ============================================================================ 3. metrics
def _unit_rows(W):
    W = np.asarray(B.to_numpy(W), dtype=float)
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
