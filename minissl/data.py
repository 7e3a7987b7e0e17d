"""Data sources: the protocol every source follows, and two toy sources.

A data source has
- ``triples(n, rng) -> (x, x_pos, x_neg)``: anchors (n, n_0), positives (n, n_0) (another
  augmented view of the same underlying sample), negatives (n, H, n_0) (views of
  independent samples);
- ``views(n, m, rng) -> views``: (n, m, n_0), m augmented views of each of n samples (what
  the covariance operator averages over);
- ``dim``: the input width n_0;
- optionally ``labelled(n, rng) -> (x, x_pos, labels)``: two augmented views of each of n
  samples (n, n_0) and the samples' integer labels (n,), shared by both views; what SupCon
  (``TrainConfig(negatives="supervised")``) trains on. ``GaussianClusters``: the cluster;
  ``HLTM``: a chosen latent (``label_latent``, the root by default).

Sources here: ``GaussianClusters`` (views of cluster centres through noise) and
``GaussianViews`` (Gaussian samples with given data and augmentation covariances, the
setting of linear BYOL). The HLTM (hltm.py) follows the same protocol.
"""
from __future__ import annotations

import numpy as np

from . import backend as B
from .budget import check_memory


class GaussianClusters:
    """``n_clusters`` centres ``c ~ N(0, I_dim)`` drawn once from ``seed``; a sample is a centre
    chosen uniformly, a view of it is ``c + noise * ε`` with ``ε ~ N(0, I)`` (the augmentation).
    The centres and every draw are checked against the memory limit first
    (``budget.check_memory``, the environment's limits).
    """

    def __init__(self, n_clusters=4, dim=8, noise=0.3, negatives=1, seed=0):
        self.n_clusters = B.check_int("n_clusters", n_clusters, 2, 1 << 20)
        self.dim = B.check_int("dim", dim, 1, 1 << 20)
        self.noise = B.check_real("noise", noise, 0)
        self.negatives = B.check_int("negatives", negatives, 1, 1 << 16)
        check_memory(8 * self.n_clusters * self.dim, "the cluster centres",
                     f"n_clusters={self.n_clusters}, dim={self.dim}")
        self.centers = B.rng(seed).standard_normal((self.n_clusters, self.dim))

    def labels(self, n, rng):
        return B.rng(rng).integers(0, self.n_clusters, B.check_int("n", n, 1))

    def sample(self, n, rng):
        """``(x, labels)``: one view ``c + noise * ε`` (n, dim) of each of n random centres and
        the centres' ids (n,) (what a probe of the cluster id is fit and scored on)."""
        rng = B.rng(rng)
        y = self.labels(n, rng)                               # (n,)
        return self.centers[y] + self.noise * rng.standard_normal((len(y), self.dim)), y

    def views(self, n, m, rng):
        """(n, m, dim): m noisy views of each of n random centres."""
        return self.labelled_views(n, m, rng)[0]

    def labelled_views(self, n, m, rng):
        """``(views (n, m, dim), labels (n,))``: m noisy views of n random centres, and the
        centres' indices."""
        rng = B.rng(rng)
        n, m = B.check_int("n", n, 1), B.check_int("m", m, 1)
        check_memory(3 * 8 * n * m * self.dim, f"{n * m:,} views of dim {self.dim}",
                     f"n={n}, m={m}")
        y = self.labels(n, rng)                               # (n,)
        c = np.repeat(self.centers[y][:, None, :], m, axis=1)
        return c + self.noise * rng.standard_normal(c.shape), y

    def labelled(self, n, rng):
        """``(x, x_pos, labels)``: two noisy views of n random centres, and the centres."""
        v, y = self.labelled_views(n, 2, rng)
        return v[:, 0], v[:, 1], y

    def triples(self, n, rng):
        """Anchor, positive (same centre) and ``negatives`` independent samples per anchor."""
        rng = B.rng(rng)
        v = self.views(n, 2, rng)                             # (n, 2, dim)
        neg = self.views(n * self.negatives, 1, rng).reshape(n, self.negatives, self.dim)
        return v[:, 0], v[:, 1], neg


def _psd_sqrt(M):
    s, U = np.linalg.eigh(M)
    return (U * np.sqrt(np.maximum(s, 0))) @ U.T


def check_psd(name, M):
    """``M`` as a float64 symmetric positive semi-definite (n, n) matrix, else ``ValueError``."""
    M = np.asarray(M, float)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be a symmetric (n, n) matrix, got shape {M.shape}")
    B.check_finite(name, M)
    if not np.allclose(M, M.T):
        raise ValueError(f"{name} must be symmetric")
    if np.linalg.eigvalsh(M).min() < -1e-10 * max(1.0, np.abs(M).max()):
        raise ValueError(f"{name} must be positive semi-definite")
    return M


class GaussianViews:
    """Views ``x' = xbar + e`` with ``xbar ~ N(0, X)`` and ``e ~ N(0, X')`` independent per view,
    so ``E[x1 x1^T] = X + X'`` and ``E[x1 x2^T] = X`` exactly (linear BYOL's statistics)."""

    def __init__(self, X, Xp):
        self.X, self.Xp = check_psd("X", X), check_psd("Xp", Xp)
        if self.X.shape != self.Xp.shape:
            raise ValueError(f"X and Xp must have the same shape, got {self.X.shape} and "
                             f"{self.Xp.shape}")
        self.dim = self.X.shape[0]
        self._LX, self._LXp = _psd_sqrt(self.X), _psd_sqrt(self.Xp)

    def views(self, n, m, rng):
        rng = B.rng(rng)
        n, m = B.check_int("n", n, 1), B.check_int("m", m, 1)
        check_memory(3 * 8 * n * m * self.dim, f"{n * m:,} views of dim {self.dim}",
                     f"n={n}, m={m}")
        xbar = rng.standard_normal((n, self.dim)) @ self._LX.T           # (n, dim)
        e = rng.standard_normal((n, m, self.dim)) @ self._LXp.T           # (n, m, dim)
        return xbar[:, None, :] + e

    def triples(self, n, rng):
        rng = B.rng(rng)
        v = self.views(n, 2, rng)
        return v[:, 0], v[:, 1], self.views(n, 1, rng)
