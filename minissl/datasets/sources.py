"""``RealData``: a loaded ``Dataset`` as a data source (``minissl.data``'s protocol).

A view of a training sample ``x`` (raw, one row) is

    v = standardise(mask(noise(scale(translate(c(x))))))     (each part optional)
    standardise(v) = (v - mu) / sigma,  mu (D,) the training split's per-feature mean,
                                        sigma one number: the RMS of the centred training split

(augmentations in ``augment``: translation by up to ``shift`` pixels / samples, amplitude
scaling by ``U(1 - scale, 1 + scale)``, Gaussian noise of std ``noise`` times the data's RMS,
masks). ``mask``: "none"; "random" (each coordinate kept with probability ``keep``, the last
step); or "complementary" (``c``: views 2i and 2i + 1 of a sample start as the complementary
pair ``augment.complementary_masks(x)``, the first step). Masks and noise act on the raw
values, whose background is 0, so a masked pixel reads as background. One number ``sigma`` (not one per feature) keeps pixels that
are always blank in the training split (digits' corners) from blowing up when a translation
moves ink there.

The protocol: ``dim``; ``views(n, m, rng)`` (n, m, D) of n training samples drawn uniformly
with replacement; ``triples(n, rng)`` (anchor, positive, ``negatives`` views of other
samples); ``labelled(n, rng)`` (two views and the samples' labels, for SupCon). For probes:
``train_set()`` and ``test_set()``, the standardised unaugmented samples and their labels.
"""
from __future__ import annotations

import numpy as np

from .. import backend as B
from ..budget import check_memory
from .augment import (amplitude_scale, complementary_masks, gaussian_noise, random_mask,
                      translate)
from .loaders import Dataset

MASKS = ("none", "random", "complementary")


class RealData:
    """Augmented views of a ``Dataset``'s training split (module docstring)."""

    def __init__(self, data, shift=0, scale=0.0, noise=0.0, mask="none", keep=0.8,
                 negatives=1, limits=None):
        if not isinstance(data, Dataset):
            raise ValueError(f"data must be a datasets.Dataset, got {type(data).__name__}")
        self.data, self.shape, self.name = data, tuple(data.shape), data.name
        self.dim = int(data.x_train.shape[1])
        self.shift = B.check_int("shift", shift, 0, max(self.shape[-2:]) - 1)
        self.scale = B.check_real("scale", scale, 0, 1)
        self.noise = B.check_real("noise", noise, 0)
        self.mask = B.check_choice("mask", mask, MASKS)
        self.keep = B.check_real("keep", keep, 0, 1, lo_open=True)
        self.negatives = B.check_int("negatives", negatives, 1, 1 << 12)
        self.limits = limits
        self.n_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
        self.mu = data.x_train.mean(0)                                  # (D,)
        self.sigma = float(np.sqrt(((data.x_train - self.mu) ** 2).mean())) or 1.0
        self.rms = float(np.sqrt((data.x_train ** 2).mean())) or 1.0   # noise unit

    def __repr__(self):
        return (f"RealData({self.name}, n_train={len(self.data.y_train)}, shape={self.shape}, "
                f"shift={self.shift}, scale={self.scale:g}, noise={self.noise:g}, "
                f"mask={self.mask!r}, keep={self.keep:g})")

    def standardise(self, x):
        """``(x - mu) / sigma`` for raw samples ``x`` (N, D)."""
        return (np.asarray(x, np.float64) - self.mu) / self.sigma

    def train_set(self):
        """``(x (N_train, D) standardised, labels (N_train,))``: the unaugmented training split."""
        return self.standardise(self.data.x_train), np.asarray(self.data.y_train)

    def test_set(self):
        """``(x (N_test, D) standardised, labels (N_test,))``: the unaugmented test split."""
        return self.standardise(self.data.x_test), np.asarray(self.data.y_test)

    def augment(self, x, m, rng):
        """m views of each raw sample ``x`` (n, D): (n, m, D), standardised."""
        rng = B.rng(rng)
        n, m = len(x), B.check_int("m", m, 1)
        check_memory(4 * 8 * n * m * self.dim, f"{n * m:,} views of dim {self.dim}",
                     f"n={n}, m={m}", self.limits)
        x = np.asarray(x, np.float64)
        if self.mask == "complementary":                 # pairs of views 2i, 2i + 1
            pairs = (m + 1) // 2
            a, b = complementary_masks(np.repeat(x, pairs, axis=0), rng)   # (n pairs, D)
            X = np.stack([a, b], axis=1).reshape(n, 2 * pairs, self.dim)[:, :m]
            X = X.reshape(n * m, self.dim)
        else:
            X = np.repeat(x, m, axis=0)                  # (n m, D): a sample's views together
        if self.shift:
            X = translate(X, self.shape, self.shift, rng)
        if self.scale:
            X = amplitude_scale(X, 1 - self.scale, 1 + self.scale, rng)
        if self.noise:
            X = gaussian_noise(X, self.noise * self.rms, rng)
        if self.mask == "random":
            X = random_mask(X, self.keep, rng)
        return self.standardise(X).reshape(n, m, self.dim)

    def sample(self, n, rng):
        """``(indices (n,), raw samples (n, D))`` drawn uniformly from the training split."""
        n = B.check_int("n", n, 1)
        idx = B.rng(rng).integers(0, len(self.data.y_train), n)
        return idx, self.data.x_train[idx]

    def views(self, n, m, rng):
        """(n, m, D): m augmented views of each of n random training samples."""
        rng = B.rng(rng)
        return self.augment(self.sample(n, rng)[1], m, rng)

    def labelled(self, n, rng):
        """``(x, x_pos, labels)``: two views (n, D) each of n training samples, their labels."""
        rng = B.rng(rng)
        idx, x = self.sample(n, rng)
        v = self.augment(x, 2, rng)
        return v[:, 0], v[:, 1], np.asarray(self.data.y_train[idx])

    def triples(self, n, rng):
        """Anchor and positive (two views of a sample) and ``negatives`` views of other random
        samples: (n, D), (n, D), (n, H, D)."""
        rng = B.rng(rng)
        v = self.views(n, 2, rng)
        neg = self.views(n * self.negatives, 1, rng).reshape(n, self.negatives, self.dim)
        return v[:, 0], v[:, 1], neg
