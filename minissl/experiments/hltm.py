"""HLTM experiments: one training run (``hltm_experiment``) and sweeps over settings.

A run builds the tree and its tree network from one seed (``derive_seed(seed, k)``: k = 1 the
init, 2 the training data, 3 the evaluation set, 4 the untrained network's loss batches),
evaluates the normalized correlation per depth on a fixed evaluation set (``eval_set``) after
every epoch (epoch 0 = untrained) and reports each epoch as a record through ``callback``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from .. import backend as B
from ..hltm import HLTM, check_polarity
from ..budget import Cost, correlation_cost, net_bytes, train_cost
from ..losses import SINGLE_NEGATIVE
from ..metrics import correlation_ceiling, normalized_correlation
from ..nets import tree_network
from ..optim import notify, stopped
from ..train import (NEGATIVES, TrainConfig, TrainingDiverged, batches, check_run,
                     loss_and_grads, train)
from .probe import PROBE_TARGETS, hltm_probe, probe_cost

PRESETS = ("theory", "reference")
REF_TEMP = 0.01      # the reference code's temperature T on MSE; tau = T * hid / 2


@dataclass
class HLTMConfig:
    """One HLTM training run (the ``hltm`` command's flags map onto these fields).

    ``preset="theory"``: bias-free, unnormalised network (the paper's analysis).
    ``preset="reference"``: the published code's setting (luckmatters ``ssl/hltm``): biases,
    output ``x/(||x|| + 1e-4)``, loss ``ref_nce`` with ``tau = 0.01 * hid / 2`` (its T = 0.01
    on MSE), one negative, SGD lr 0.1, batch 128, 64,000 samples per epoch.
    Fields left ``None`` take the preset's value (``apply_preset``).
    """
    preset: str = "theory"             # "theory" | "reference"
    depth: int = 5                     # tree depth L >= 1
    num_children: int = 2              # children per latent
    polarity: tuple = (0.7, 1.0)       # range of |rho|, 0 <= lo <= hi <= 1
    keep_depth: int | None = None      # positives share latents of depth >= this (None: root)
    hid: int = 10                      # units per latent
    loss: str | None = None            # losses.LOSSES; preset: infonce | ref_nce
    tau: float | None = None           # temperature; preset: 0.1 | 0.01 * hid / 2
    margin: float = 0.0                # soft-triplet margin
    negatives: int = 1                 # H negatives per anchor (infonce may take > 1)
    lr: float = 0.1                    # SGD learning rate
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 128              # anchors per step
    samples_per_epoch: int = 64000     # steps per epoch = samples_per_epoch // batch_size
    epochs: int = 20
    seed: int = 1                      # tree polarities, init, data and evaluation
    bias: bool | None = None           # preset: False | True
    normalize: bool | None = None      # preset: False | True (norm_eps 1e-4)
    update: str = "gradient"           # "gradient" | "covariance" (train.TrainConfig)
    pairing: str = "given"             # train.NEGATIVES: "given" (triples, H negatives),
                                       # "in_batch" (SimCLR), "supervised" (SupCon on a latent)
    label_latent: int = 0              # SupCon's label: this latent (BFS, 0 = root)
    backend: str = "numpy"             # "numpy" | "numba" | "cupy"
    sampler: str = "auto"              # "numpy" | "compiled" (backend numba: same law, other
                                       # random numbers; whole epochs in one compiled call) |
                                       # "auto": compiled on backend numba (train.TrainConfig)
    dtype: str = "float64"
    eval_samples: int = 10000          # fixed evaluation set for the correlation
    # -- probes (experiments.probe): "root" or "all" latents, at epoch 0 and the last epoch
    probe: str = "off"                 # "off" | "root" | "all"
    probe_samples: int = 2000          # probe training and test sets (streams 8 and 9)

    def apply_preset(self):
        """A copy with every ``None`` field filled from the preset, validated."""
        B.check_choice("preset", self.preset, PRESETS)
        ref = self.preset == "reference"
        fill = {"loss": "ref_nce" if ref else "infonce",
                "tau": REF_TEMP * B.check_int("hid", self.hid, 1) / 2 if ref else 0.1,
                "bias": ref, "normalize": ref}
        cfg = replace(self, **{k: v for k, v in fill.items() if getattr(self, k) is None})
        return cfg.validate()

    def validate(self):
        """Check every field (``ValueError`` naming it); the net x update combination too."""
        self.tree()                      # raises ValueError naming the field
        check_polarity(self.polarity)
        B.check_int("hid", self.hid, 1, 4096)
        B.check_int("samples_per_epoch", self.samples_per_epoch, 1)
        B.check_int("epochs", self.epochs, 0)
        B.check_int("eval_samples", self.eval_samples, 2)
        B.check_int("seed", self.seed, 0)
        B.check_choice("pairing", self.pairing, NEGATIVES)
        B.check_choice("probe", self.probe, PROBE_TARGETS)
        B.check_int("probe_samples", self.probe_samples, 10)
        if self.samples_per_epoch < self.batch_size:
            raise ValueError(f"samples_per_epoch must be >= batch_size ({self.batch_size}), "
                             f"got {self.samples_per_epoch}")
        B.check_backend(self.backend)
        B.check_dtype(self.dtype)
        if self.sampler == "compiled" and self.backend != "numba":
            raise ValueError(f"sampler='compiled' needs backend='numba', got "
                             f"backend={self.backend!r}")
        if self.sampler == "compiled" and self.pairing == "supervised":
            raise ValueError("sampler='compiled' draws triples; pairing='supervised' needs "
                             "the NumPy sampler's labelled batches")
        tc = self.train_config(steps=1).validate()
        if self.negatives > 1 and self.loss != "infonce":
            raise ValueError(f"negatives must be 1 for loss={self.loss!r} (only infonce takes "
                             f"several), got {self.negatives}")
        for name in ("bias", "normalize"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} must be True or False (or apply_preset() fills it)")
        check_run(not (self.bias or self.normalize), tc)
        return self

    def train_config(self, steps):
        return TrainConfig(loss=self.loss, tau=self.tau, margin=self.margin, lr=self.lr,
                           momentum=self.momentum, weight_decay=self.weight_decay,
                           steps=steps, batch_size=self.batch_size, update=self.update,
                           negatives=self.pairing, seed=B.derive_seed(self.seed, 2),
                           log_every=self.steps_per_epoch, sampler=self.sampler)

    @property
    def steps_per_epoch(self):
        return self.samples_per_epoch // self.batch_size

    def cost(self):
        """The run's ``limits.Cost`` (docs/performance.md, "Cost model"), nothing allocated.

        Memory: the tree network (weights, gradients, masks: ``nets.net_bytes``), a training
        batch (``train.train_cost``: every node of its (2 + H) x batch_size samples, forward
        caches, backward buffers) and the evaluation pass (``metrics.correlation_cost`` on
        ``eval_samples``). Work: ``epochs x steps_per_epoch`` training steps (each ``3 x rows x
        weights`` multiply-adds plus ``STEP_OVERHEAD`` and the draws), the 10 batches of the
        untrained loss, and ``epochs + 1`` evaluations plus the ceiling; with ``probe``, two
        probes (``experiments.probe.probe_cost``).
        """
        tree = self.tree()
        sizes = tree.network_sizes(B.check_int("hid", self.hid, 1, 4096))
        net = f"depth={self.depth}, num_children={self.num_children}, hid={self.hid}"
        dtype = B.check_dtype(self.dtype)
        steps = self.epochs * self.steps_per_epoch + 10
        tc = self.train_config(steps=steps)
        ev = correlation_cost(tree.n_nodes, sizes, self.eval_samples, dtype,
                              f"eval_samples={self.eval_samples}, hid={self.hid}")
        ev_all = ev.scaled(self.epochs + 2, f"epochs={self.epochs}")
        cost = (Cost(((net_bytes(sizes, [True] * self.depth, dtype), "the tree network", net),))
                + train_cost(sizes, tc, self.negatives, tree.n_nodes, dtype,
                             f"epochs={self.epochs}, samples_per_epoch={self.samples_per_epoch}")
                + Cost(ev.memory, ev_all.work))
        if self.probe == "off":
            return cost
        pc = probe_cost(tree, sizes, self.probe_samples, self.probe)
        return cost + Cost(pc.memory, pc.scaled(2, "at epoch 0 and the last").work)

    def check_cost(self, limits=None):
        """``cost().check(limits)``: ``ResourceLimitError`` naming the settings, the estimate
        and the limit; returns the ``Cost``."""
        return self.cost().check(limits)

    def tree(self):
        return HLTM(self.depth, self.num_children, self.polarity, seed=self.seed,
                    keep_depth=self.keep_depth, negatives=self.negatives,
                    label_latent=self.label_latent)

    def build(self, limits=None):
        """``(tree, net)`` for this configuration (call on an ``apply_preset`` config)."""
        tree = self.tree()
        net = tree_network(tree, self.hid, bias=self.bias, normalize=self.normalize,
                           norm_eps=1e-4 if self.normalize else 0.0,
                           seed=B.derive_seed(self.seed, 1), backend=self.backend,
                           dtype=self.dtype, limits=limits)
        return tree, net


def theory_run(c):
    """The ``HLTMConfig`` (theory preset, one epoch of ``c.steps`` steps) of an experiment
    config ``c`` that has the fields of one HLTM run (depth, num_children, polarity, hid, loss,
    tau, lr, batch_size, steps, eval_samples, update, seed)."""
    return HLTMConfig(preset="theory", depth=c.depth, num_children=c.num_children,
                      polarity=c.polarity, hid=c.hid, loss=c.loss, tau=c.tau, lr=c.lr,
                      batch_size=c.batch_size, epochs=1,
                      samples_per_epoch=B.check_int("steps", c.steps, 1) *
                      B.check_int("batch_size", c.batch_size, 1),
                      eval_samples=c.eval_samples, update=c.update, seed=c.seed).apply_preset()


def eval_set(tree, cfg):
    """The fixed evaluation set ``(x, z)`` of a run: ``cfg.eval_samples`` samples from stream 3
    of ``cfg.seed``."""
    return tree.sample(cfg.eval_samples, B.derive_seed(cfg.seed, 3))


def hltm_experiment(cfg, callback=None, stop=None, limits=None):
    """Train per ``cfg`` (an ``HLTMConfig``); returns ``(records, ceiling)``.

    ``records[e]`` for epoch e = 0..epochs (0 = untrained): ``{"epoch", "step",
    "corr_by_depth", "corr" (per latent, BFS), "corr_units" (n_latents, hid: every unit's
    |corr|), "loss", "seconds"}``, record 0 also ``"ceiling_by_depth"``; with ``cfg.probe``
    "root" or "all", records 0 and ``epochs`` also ``"probe"`` (``experiments.probe.
    hltm_probe``: a run that ends early has the untrained probe only); the loss of epoch e >= 1 is the mean training loss of its steps,
    of epoch 0 the mean over 10 fresh batches.
    ``ceiling`` is a ``Correlation`` on the same fixed evaluation set. ``callback(record)``
    after each epoch (False ends the run), ``stop.is_set()`` checked every step (every epoch
    with ``sampler="compiled"``, whose epochs are single compiled calls). A diverged run raises
    ``TrainingDiverged`` with the completed records in ``exc.records``.
    ``cfg.cost()`` is checked against ``limits`` (None: the environment's) before anything is
    built (``ResourceLimitError``).
    """
    cfg = cfg.apply_preset()
    cfg.check_cost(limits)
    if stopped(stop):
        return [], None
    tree, net = cfg.build(limits)
    x_eval, z_eval = eval_set(tree, cfg)
    ceiling = correlation_ceiling(tree, x=x_eval, z=z_eval)
    t0 = time.perf_counter()
    records = []

    def emit(epoch, loss):
        corr = normalized_correlation(tree, net, x=x_eval, z=z_eval)
        rec = {"epoch": epoch, "step": epoch * cfg.steps_per_epoch,
               "corr_by_depth": corr.by_depth, "corr": corr.per_latent,
               "corr_units": corr.per_unit, "loss": loss, "seconds": time.perf_counter() - t0}
        if epoch == 0:
            rec["ceiling_by_depth"] = ceiling.by_depth
        if cfg.probe != "off" and epoch in (0, cfg.epochs):
            rec["probe"] = hltm_probe(tree, net, cfg.seed, cfg.probe_samples, cfg.probe)
        records.append(rec)
        return notify(callback, rec)

    tc = cfg.train_config(steps=max(1, cfg.epochs * cfg.steps_per_epoch))
    rng0 = B.rng(B.derive_seed(cfg.seed, 4))
    with np.errstate(over="ignore", invalid="ignore"):        # divergence is reported below
        first = np.mean([loss_and_grads(net, batches(tree, tc)(cfg.batch_size, rng0), tc)[0]
                         for _ in range(10)])
    if emit(0, float(first)) or cfg.epochs == 0 or stopped(stop):
        return records, ceiling

    def on_epoch(rec):                           # train calls it once per epoch (log_every)
        if emit(rec["step"] // cfg.steps_per_epoch, rec["loss_mean"]):
            return False

    try:
        train(net, tree, tc, callback=on_epoch, stop=stop)
    except TrainingDiverged as exc:
        exc.records = records
        raise
    return records, ceiling


# ----------------------------------------------------------------------------- sweeps
def sweep_configs(base, presets, polarities, hids, losses, seeds):
    """The list of ``HLTMConfig`` of the grid (validated; raises ValueError)."""
    out = []
    for preset in presets:
        for pol in polarities:
            for hid in hids:
                for loss in losses:
                    for seed in seeds:
                        cfg = replace(base, preset=preset, polarity=pol, hid=hid, seed=seed,
                                      loss=None if loss == "preset" else loss)
                        if (cfg.loss or ("ref_nce" if preset == "reference" else "infonce")
                                ) in SINGLE_NEGATIVE:
                            cfg = replace(cfg, negatives=1)    # --negatives: infonce only
                        out.append(cfg.apply_preset())
    return out


def sweep_one(cfg, threads=1):
    """Run one configuration; a flat result dict (NaN trained values if it diverged)."""
    with B.blas_threads(threads):
        res = {"preset": cfg.preset, "polarity": f"{cfg.polarity[0]}:{cfg.polarity[1]}",
               "hid": cfg.hid, "loss": cfg.loss, "H": cfg.negatives, "tau": cfg.tau,
               "seed": cfg.seed, "diverged": False}
        try:
            records, ceiling = hltm_experiment(cfg)
        except TrainingDiverged as exc:
            records, res["diverged"] = exc.records, True
            tree = cfg.tree()
            x, z = eval_set(tree, cfg)
            ceiling = correlation_ceiling(tree, x=x, z=z)
    last = records[-1] if not res["diverged"] else None
    for d in range(cfg.depth, 0, -1):
        res[f"untrained_d{d}"] = records[0]["corr_by_depth"][d]
        res[f"trained_d{d}"] = last["corr_by_depth"][d] if last else math.nan
        res[f"ceiling_d{d}"] = ceiling.by_depth[d]
    res["final_loss"] = last["loss"] if last else math.nan
    res["seconds"] = records[-1]["seconds"] if records else math.nan
    return res


def run_sweep(cfgs, n_jobs=1, threads=1, callback=None, scheduler=None):
    """``sweep_one`` over ``cfgs`` in parallel processes (joblib); ``callback(result)`` as
    each arrives. Returns the results in order.

    ``scheduler``: run them on a Dask distributed cluster instead, through joblib's Dask
    backend: the scheduler's address (``"tcp://host:8786"``) or a ``distributed.Client``
    (every worker thread takes configurations; ``n_jobs`` is then ignored). Needs the
    ``cluster`` extra (``dask[distributed]``); each worker must be able to import minissl.
    Ray works the same way through its joblib backend (docs/performance.md)."""
    B.require("joblib", "parallel")
    from joblib import Parallel, delayed
    results = []
    with _joblib_backend(scheduler):
        for r in Parallel(n_jobs=n_jobs if scheduler is None else -1, return_as="generator")(
                delayed(sweep_one)(c, threads) for c in cfgs):
            results.append(r)
            notify(callback, r)
    return results


def _joblib_backend(scheduler):
    """A context: joblib's default backend (None), or its Dask backend on a Client."""
    from contextlib import ExitStack
    stack = ExitStack()
    if scheduler is None:
        return stack
    B.require("distributed", "cluster")
    from distributed import Client
    from joblib import parallel_config
    client = scheduler if isinstance(scheduler, Client) else stack.enter_context(
        Client(scheduler))
    stack.enter_context(client.as_current())
    stack.enter_context(parallel_config(backend="dask"))
    return stack


def _mean_std(vals):
    v = np.asarray(vals, float)
    if np.isnan(v).any():
        return f"div {int(np.isnan(v).sum())}/{len(v)}"
    return f"{v.mean():.3f}±{v.std():.3f}"


def sweep_table(results, depth):
    """Rows of mean ± std over seeds per configuration (preset, polarity, hid, loss)."""
    keys, groups = [], {}
    for r in results:
        k = (r["preset"], r["polarity"], r["hid"], r["loss"], r["H"])
        if k not in groups:
            keys.append(k)
            groups[k] = []
        groups[k].append(r)
    depths = list(range(depth, 0, -1))
    head = ["preset", "polarity", "hid", "loss", "H", "seeds"]
    for d in depths:
        head += [f"untr d{d}", f"trained d{d}", f"ceil d{d}"]
    rows = [head]
    for k in keys:
        g = groups[k]
        row = list(map(str, k)) + [str(len(g))]
        for d in depths:
            row += [_mean_std([r[f"{w}_d{d}"] for r in g])
                    for w in ("untrained", "trained", "ceiling")]
        rows.append(row)
    return rows

