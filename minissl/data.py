"""Data sources: the toy Gaussian-cluster source and the protocol every source follows.

A data source has
- ``triples(n, rng) -> (x, x_pos, x_neg)``: anchors (n, n_0), positives (n, n_0) (another
  augmented view of the same underlying sample), negatives (n, H, n_0) (views of
  independent samples);
- ``views(n, m, rng) -> views``: (n, m, n_0), m augmented views of each of n samples (what
  the covariance operator averages over);
- ``dim``: the input width n_0.
"""
from __future__ import annotations

import numpy as np

from .backend import rng as make_rng


class GaussianClusters:
    """``n_clusters`` centres ``c ~ N(0, I_dim)`` drawn once from ``seed``; a sample is a centre
    chosen uniformly, a view of it is ``c + noise * ε`` with ``ε ~ N(0, I)`` (the augmentation).
    """

    def __init__(self, n_clusters=4, dim=8, noise=0.3, negatives=1, seed=0):
        for name, v, lo in (("n_clusters", n_clusters, 2), ("dim", dim, 1),
                            ("negatives", negatives, 1)):
            if int(v) != v or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise!r}")
        self.n_clusters, self.dim, self.noise = int(n_clusters), int(dim), float(noise)
        self.negatives = int(negatives)
        self.centers = make_rng(seed).standard_normal((self.n_clusters, self.dim))

    def _augment(self, c, rng):
        return c + self.noise * rng.standard_normal(c.shape)

    def labels(self, n, rng):
        return make_rng(rng).integers(0, self.n_clusters, n)

    def views(self, n, m, rng):
        """(n, m, dim): m noisy views of each of n random centres."""
        rng = make_rng(rng)
        c = self.centers[self.labels(n, rng)]                 # (n, dim)
        return self._augment(np.repeat(c[:, None, :], m, axis=1), rng)

    def triples(self, n, rng):
        """Anchor, positive (same centre) and ``negatives`` independent samples per anchor."""
        rng = make_rng(rng)
        v = self.views(n, 2, rng)                             # (n, 2, dim)
        neg = self.views(n * self.negatives, 1, rng).reshape(n, self.negatives, self.dim)
        return v[:, 0], v[:, 1], neg
