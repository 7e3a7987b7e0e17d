"""Feature decoupling: the per-neuron metrics beside ``minissl.decoupling``'s, for neurons that
can die and for the two readings of "the share of a neuron in the dense subspace".

A neuron i with unit weight ``w_i`` (``W`` (m, d1) rows normalised here) is *dead* on a set of
n inputs when its output ``h_i`` is non-zero on at most a fraction ``rate`` of them
(``dead_neurons``; ``rate=0``: zero on every one, and no gradient reaches ``w_i`` or its
threshold from that set). A small positive rate makes the count less dependent on n: after
training, a neuron that learned a sparse feature fires with that feature (``k/d`` of the
samples, 12.5% at k = 3, d = 24), a dying one on a fraction of a percent. The dense subspace
span(P) (P (d1, r) orthonormal) holds of ``w_i``

    squared   ``||P^T w_i||²``  the share of ``||w_i||² = 1`` (``decoupling.dense_fraction``;
              averaged over all neurons)
    unsquared ``||P^T w_i||``   the cosine of the angle between ``w_i`` and span(P)
              (``dense_norm``; ``dense_norm_live`` averages it over the live neurons only)

The unsquared form is larger (``x >= x²`` on [0, 1]): a neuron 0.3 of the way into span(P) by
cosine has 0.09 of its squared norm there. Shapes: ``n`` inputs, ``m`` neurons.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend as B


def dead_neurons(H, rate=0.0):
    """Bool (m,): the neurons whose output is non-zero on at most a fraction ``rate`` of the
    rows of ``H`` (n, m) (``rate=0``: 0 on every row)."""
    H = np.asarray(B.to_numpy(H))
    if H.ndim != 2 or H.shape[0] < 1:
        raise ValueError(f"H must be an (n, m) array of outputs with n >= 1, got {H.shape}")
    rate = B.check_real("rate", rate, 0, 1)
    return (H != 0).mean(axis=0) <= rate


def dense_norm(W, P):
    """Per neuron ``||P^T w_i|| / ||w_i||`` (unsquared): W (m, d1), P (d1, r) -> (m,)."""
    W = np.asarray(B.to_numpy(W), dtype=np.float64)
    return np.linalg.norm((W / np.linalg.norm(W, axis=1, keepdims=True)) @ P, axis=1)


def dense_norm_live(W, P, dead):
    """The mean of ``dense_norm`` over the live neurons (``~dead``); NaN when all are dead."""
    live = ~np.asarray(dead, dtype=bool)
    return float(dense_norm(W, P)[live].mean()) if live.any() else math.nan
