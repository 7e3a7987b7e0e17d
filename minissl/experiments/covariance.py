"""The covariance operator over training (the app's Covariance tab, ``python -m minissl
covariance``): train the HLTM tree network and, at ``snapshots`` points, measure the top of
``OP_l``'s spectrum, its top eigenvector and, per layer, the cosine between the gradient step
and the covariance-operator step on a fixed batch.

``layer`` is, as everywhere in minissl, the 0-based index into ``net.weights`` (0 = the bottom
layer, from the leaves; the paper's ``W_l`` is ``net.weights[l - 1]``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import cached_property

from .. import backend as B
from ..backend import setting
from ..covariance import (DENSE_MAX_KBAR, DENSE_MAX_P, PAIR_WEIGHT_LOSSES,
                          covariance_pair_weights, covariance_spectrum)
from ..budget import Cost, mlp_weights, net_bytes, pass_cost, train_cost
from ..budget import spectrum_cost as budget_spectrum_cost
from ..optim import notify, stopped
from ..train import covariance_step, loss_and_grads, train
from .hltm import HLTMRun

def spectrum_cost(sizes, N, M, layer, k):
    """The ``limits.Cost`` of one ``covariance_spectrum`` of ``layer`` (an index into the
    weights) on N x M views with the "auto" method (``budget.spectrum_cost``: the views' pass
    and the explicit OP and ``eigh`` where "auto" forms it, else the Lanczos workspace and
    ``10 k + 40`` operator products)."""
    P, nL = sizes[layer + 1] * sizes[layer], sizes[-1]
    dense = (P <= DENSE_MAX_P and N * P * nL <= DENSE_MAX_KBAR) or k >= P - 1   # "auto"
    return budget_spectrum_cost(sizes, "float64", N, M, layer, k, dense)


@dataclass(frozen=True)
class CovarianceConfig:
    """One run of the covariance experiment (the ``covariance`` command's flags are its
    settings): the HLTM ``run`` (seed: tree, init stream 1, data 2, views 3, fixed batch 5) and
    what is measured."""
    run: HLTMRun = HLTMRun(depth=4, steps=600)
    snapshots: int = setting(12, "spectra measured during the run (plus the untrained)",
                             label="pictures", lo=1)
    layer: int = setting(1, "index into net.weights, 0 = bottom (leaves -> depth-1 units), "
                         "at most depth - 1: the paper's W_{layer+1}", label="layer (0 = bottom)")
    k: int = setting(8, "top eigenvalues", label="top k")
    n_samples: int = setting(256, "samples x for OP = V^ξ[Kbar]", label="samples N", lo=2)
    n_views: int = setting(4, "augmented views averaged in Kbar", label="views M", lo=1)

    @cached_property
    def hltm(self):
        """The ``HLTMConfig`` of the same run (theory preset), made and validated once."""
        return self.run.hltm_config()

    def validate(self):
        B.check_choice("loss", self.run.loss, PAIR_WEIGHT_LOSSES)
        tree = B.check_settings(self).hltm.tree
        B.check_int("layer", self.layer, 0, self.run.depth - 1)
        sizes = tree.network_sizes(self.run.hid)
        B.check_int("k", self.k, 1, sizes[self.layer + 1] * sizes[self.layer])   # k <= P
        return self

    def cost(self):
        """The run's ``limits.Cost``, nothing allocated: the tree network, training
        (``train.train_cost``), and per snapshot (``snapshots + 1`` of them) the pair weights and
        the top-k spectrum on the N x M views (``spectrum_cost``) and the cosine on the fixed
        batch (one covariance-operator step per layer)."""
        tree, run = self.hltm.tree, self.run
        sizes = tree.network_sizes(run.hid)
        L = run.depth
        net = f"depth={L}, num_children={run.num_children}, hid={run.hid}"
        views = spectrum_cost(sizes, self.n_samples, self.n_views, self.layer, self.k)
        batch = pass_cost(sizes, "float64", run.batch_size, 2)
        snap = f"snapshots={self.snapshots}, n_samples={self.n_samples}, n_views={self.n_views}"
        work = views.madds + L * batch.madds + 3 * run.batch_size * 3 * mlp_weights(sizes)
        return (Cost(((net_bytes(sizes, [True] * L), "the tree network", net),))
                + train_cost(sizes, self.train_config(), 1, tree.n_nodes)
                + Cost(views.memory + batch.memory,
                       (((self.snapshots + 1) * work, "the spectra and cosines", snap),)))

    def train_config(self):
        every = max(1, self.run.steps // self.snapshots)
        return replace(self.hltm.train_config(self.run.steps), log_every=every)


def covariance_experiment(cfg, callback=None, stop=None, limits=None):
    """Run ``cfg`` (a ``CovarianceConfig``); returns the list of records, one per snapshot
    (step 0 = untrained): ``{"step", "eigvals" (k,), "eigvec" (P,), "shape" (n_l, n_{l-1}),
    "cos" (per layer), "loss" (on the fixed batch)}``, NumPy arrays. ``callback(record)``
    after each (False ends the run); ``stop.is_set()`` is checked every step. ``cfg.cost()``
    is checked against ``limits`` first (``ResourceLimitError``)."""
    cfg.validate().cost().check(limits)
    if stopped(stop):
        return []
    run = cfg.run
    tree, net = cfg.hltm.build()
    views = tree.views(cfg.n_samples, cfg.n_views, B.derive_seed(run.seed, 3))  # (N, M, n_0)
    batch = tree.triples(run.batch_size, B.derive_seed(run.seed, 5))
    tc = cfg.train_config()
    lay = cfg.layer                                            # index into net.weights
    shape = tuple(net.weights[lay].shape)
    records, t0 = [], time.perf_counter()

    def measure(step):
        xi = None if run.loss == "simple" else covariance_pair_weights(net, views, run.loss,
                                                                        run.tau)
        w, U = covariance_spectrum(net, views, lay, cfg.k, xi, tol=1e-6)
        value, _, _, grads = loss_and_grads(net, batch, tc)
        _, cos = covariance_step(net, batch, tc, grads)
        rec = {"step": step, "eigvals": B.to_numpy(w), "eigvec": B.to_numpy(U[:, 0]),
               "shape": shape, "cos": cos, "loss": value, "seconds": time.perf_counter() - t0}
        records.append(rec)
        return notify(callback, rec)

    if measure(0) or stopped(stop):
        return records
    train(net, tree, tc, callback=lambda rec: not measure(rec["step"]), stop=stop)
    return records
