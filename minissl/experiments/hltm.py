"""HLTM experiments: one training run (``hltm_experiment``) and sweeps over settings.

A run builds the tree and its tree network from one seed (``derive_seed(seed, k)``: k = 1 the
init, 2 the training data, 3 the evaluation set, 4 the untrained network's loss batches),
evaluates the normalized correlation per depth on a fixed evaluation set (``eval_set``) after
every epoch (epoch 0 = untrained) and reports each epoch as a record through ``callback``.
"""
from __future__ import annotations

import math
import time
from dataclasses import MISSING, dataclass, field, replace
from functools import cached_property

import numpy as np

from .. import backend as B
from ..backend import setting
from ..hltm import HLTM
from ..kernels import twin
from ..budget import Cost, correlation_cost, net_bytes, train_cost
from ..losses import SINGLE_NEGATIVE
from ..metrics import correlation_ceiling, normalized_correlation
from ..nets import tree_network
from ..optim import notify, stopped
from ..train import (NEGATIVES, SAMPLERS, UPDATES, TrainConfig, TrainingDiverged, batches,
                     check_run, loss_and_grads, train)
from .probe import PROBE_TARGETS, hltm_probe, probe_cost

PRESETS = ("theory", "reference")
REF_TEMP = 0.01      # the reference code's temperature T on MSE; tau = T * hid / 2


@dataclass(frozen=True)
class HLTMConfig:
    """One HLTM training run (the ``hltm`` command's flags and the app's HLTM fields are made
    from these fields' ``setting`` metadata).

    ``preset="theory"``: bias-free, unnormalised network (the paper's analysis).
    ``preset="reference"``: the published code's setting (luckmatters ``ssl/hltm``): biases,
    output ``x/(||x|| + 1e-4)``, loss ``ref_nce`` with ``tau = 0.01 * hid / 2`` (its T = 0.01
    on MSE), one negative, SGD lr 0.1, batch 128, 64,000 samples per epoch.
    Fields left ``None`` take the preset's value (``apply_preset``). Frozen: the tree is built
    once per config (``tree``), by ``validate``, and shared by ``cost`` and ``build``.
    """
    preset: str = setting("theory", "theory: bias-free, unnormalised (the paper's analysis); "
                          "reference: biases + normalised output (luckmatters ssl/hltm)",
                          label="network setting", choices=PRESETS)
    depth: int = setting(5, "tree depth L (root at L, leaves at 0)", label="depth")
    num_children: int = setting(2, "children per latent", label="children")
    polarity: tuple = setting((0.7, 1.0), "range of |ρ|: |ρ| ~ U[low, high], 0 ≤ low ≤ high "
                              "≤ 1; P(child = parent) = (1+ρ)/2", label="polarity")
    keep_depth: int | None = setting(None, "positives share latents of tree depth >= this "
                                     "(default: the root only)")
    hid: int = setting(10, "hidden units per latent", label="hid", lo=1, hi=4096)
    loss: str | None = setting(None, "the loss (losses.LOSSES); preset: theory infonce, "
                               "reference ref_nce", label="loss")
    tau: float | None = setting(None, "temperature (theory 0.1; reference 0.01*hid/2)",
                                label="τ", lo=0, lo_open=True)
    margin: float = setting(0.0, "soft-triplet margin r_0")
    negatives: int = setting(1, "H negatives per anchor (only infonce takes more than 1)")
    lr: float = setting(0.1, "SGD step", label="learning rate", lo=0, lo_open=True)
    momentum: float = setting(0.0, "SGD momentum in [0, 1)")
    weight_decay: float = setting(0.0, "L2 weight decay (>= 0)")
    batch_size: int = setting(128, "anchors per step", label="batch size", lo=1)
    samples_per_epoch: int = setting(64000, "samples per epoch (steps per epoch = this // "
                                     "batch_size)", lo=1)
    epochs: int = setting(20, "epochs (one record each, plus the untrained epoch 0)",
                          label="epochs", lo=0)
    seed: int = setting(1, "tree polarities, init, data and evaluation", label="seed", lo=0)
    bias: bool | None = setting(None, "biases (preset: theory off, reference on)")
    normalize: bool | None = setting(None, "output x/(||x||+1e-4) (preset: theory off, "
                                     "reference on)")
    update: str = setting("gradient", "gradient: SGD on the loss; covariance: W += lr·OP "
                          "vec(W)", label="update rule", choices=UPDATES)
    pairing: str = setting("given", "given: H negatives per anchor; in_batch: SimCLR; "
                           "supervised: SupCon, positives share latent label_latent",
                           choices=NEGATIVES)
    label_latent: int = setting(0, "SupCon's label latent (BFS index, 0 = root; depth >= "
                                "keep_depth)")
    backend: str = setting("numpy", "array backend of the network (cupy needs a GPU)",
                           label="backend", choices=B.BACKENDS)
    sampler: str = setting("auto", "auto (compiled on backend numba, else numpy), numpy (the "
                           "same numbers on every backend) or compiled (backend numba: same "
                           "law, other random numbers; whole epochs in one compiled call)",
                           choices=SAMPLERS)
    dtype: str = setting("float64", "float64 or float32", choices=B.DTYPES)
    eval_samples: int = setting(10000, "fixed evaluation set of the correlation (stream 3)",
                                lo=2)
    # -- probes (experiments.probe): "root" or "all" latents, at epoch 0 and the last epoch
    probe: str = setting("off", "linear and k-NN probes of the root or all latents",
                         choices=PROBE_TARGETS)
    probe_samples: int = setting(2000, "probe training and test sets (streams 8 and 9)", lo=10)

    def apply_preset(self):
        """This config with every ``None`` field filled from the preset (a copy, or itself
        when nothing is ``None``), validated."""
        B.check_choice("preset", self.preset, PRESETS)
        ref = self.preset == "reference"
        fill = {"loss": "ref_nce" if ref else "infonce",
                "tau": REF_TEMP * B.check_int("hid", self.hid, 1) / 2 if ref else 0.1,
                "bias": ref, "normalize": ref}
        fill = {k: v for k, v in fill.items() if getattr(self, k) is None}
        return (replace(self, **fill) if fill else self).validate()

    def validate(self):
        """Check every field (``ValueError`` naming it); the net x update combination too.
        Once: a frozen config that passed stays valid, and a second call returns at once."""
        if self.__dict__.get("_valid"):
            return self
        B.check_settings(self)
        self.tree                        # noqa: B018  (built once; raises naming the field)
        if self.samples_per_epoch < self.batch_size:
            raise ValueError(f"samples_per_epoch must be >= batch_size ({self.batch_size}), "
                             f"got {self.samples_per_epoch}")
        B.check_backend(self.backend)
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
        object.__setattr__(self, "_valid", True)
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
        """The run's ``budget.Cost`` (docs/performance.md, "Cost model"), nothing allocated
        but the tree.

        Memory: the tree network (weights, gradients, masks: ``budget.net_bytes``), a training
        batch (``train.train_cost``: every node of its (2 + H) x batch_size samples, forward
        caches, backward buffers) and the evaluation pass (``budget.correlation_cost`` on
        ``eval_samples``). Work: ``epochs x steps_per_epoch`` training steps (each ``3 x rows x
        weights`` multiply-adds plus ``STEP_OVERHEAD`` and the draws), the 10 batches of the
        untrained loss, and ``epochs + 1`` evaluations plus the ceiling; with ``probe``, two
        probes (``experiments.probe.probe_cost``).
        """
        tree = self.tree
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

    @cached_property
    def tree(self):
        """The ``HLTM`` of this configuration, built on first use and kept (the config is
        frozen, so it cannot go stale)."""
        return HLTM(self.depth, self.num_children, self.polarity, seed=self.seed,
                    keep_depth=self.keep_depth, negatives=self.negatives,
                    label_latent=self.label_latent)

    def build(self, limits=None):
        """``(tree, net)``: the config's tree and a freshly initialised tree network (stream 1
        of the seed; call on an ``apply_preset`` config)."""
        net = tree_network(self.tree, self.hid, bias=self.bias, normalize=self.normalize,
                           norm_eps=1e-4 if self.normalize else 0.0,
                           seed=B.derive_seed(self.seed, 1), backend=self.backend,
                           dtype=self.dtype, limits=limits)
        return self.tree, net


def _like(name, default=MISSING, help=None):
    """A field of ``HLTMRun``: ``HLTMConfig``'s field ``name`` (its help, label, bounds), with
    another default and help where given."""
    f = HLTMConfig.__dataclass_fields__[name]
    return field(default=f.default if default is MISSING else default,
                  metadata={**f.metadata, **({"help": help} if help else {})})


@dataclass(frozen=True)
class HLTMRun:
    """One theory-preset HLTM run of ``steps`` SGD steps: the settings that the covariance,
    selectivity and acceleration experiments nest (their ``run``), declared by ``HLTMConfig``.
    ``hltm_config`` is the ``HLTMConfig`` of the same run (one epoch of ``steps`` steps), so a
    seed gives the tree, init and data of ``python -m minissl hltm --seed``."""
    depth: int = _like("depth")
    num_children: int = _like("num_children")
    polarity: tuple = _like("polarity")
    hid: int = _like("hid")
    loss: str = _like("loss", "infonce", "the loss (losses.LOSSES)")
    tau: float = _like("tau", 0.1, "temperature")
    lr: float = _like("lr")
    batch_size: int = _like("batch_size")
    steps: int = setting(1000, "SGD steps", label="steps", lo=1)
    update: str = _like("update")
    seed: int = _like("seed")

    def hltm_config(self, eval_samples=10000):
        """The ``HLTMConfig`` of this run (validated; its evaluation set has ``eval_samples``)."""
        B.check_settings(self)
        return HLTMConfig(preset="theory", depth=self.depth, num_children=self.num_children,
                          polarity=self.polarity, hid=self.hid, loss=self.loss, tau=self.tau,
                          lr=self.lr, batch_size=self.batch_size, epochs=1,
                          samples_per_epoch=self.steps * self.batch_size,
                          eval_samples=eval_samples, update=self.update,
                          seed=self.seed).apply_preset()


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
    ``cfg.cost()`` is checked against ``limits`` (None: the environment's) before anything but
    the tree is built (``ResourceLimitError``). An ``apply_preset`` config is used as it is (its
    tree too); another gets its preset applied here.
    """
    cfg = cfg.apply_preset()
    cfg.check_cost(limits)
    if stopped(stop):
        return [], None
    tree, net = cfg.build(limits)
    tc = cfg.train_config(steps=max(1, cfg.epochs * cfg.steps_per_epoch))
    warm = start_compiling(net, tree, tc) if cfg.epochs else None
    try:
        return _run(cfg, tree, net, tc, callback, stop)
    finally:
        if warm is not None:
            warm.close()            # a run that ended before its first epoch: stop the helper


def start_compiling(net, tree, tc):
    """On backend "numba", when ``train`` will run the compiled epoch (``TreeEpoch.applies``),
    start compiling its kernels and the correlation's in a helper process
    (``TreeEpoch.start_compiling``; a cold cache only) while this process evaluates the
    untrained net; returns that
    ``compiling.Sharing`` or None."""
    epoch, step = twin("train_epoch", net.backend), twin("train_step", net.backend)
    if epoch is not None and epoch.applies(net, tree, tc):
        return epoch.for_run(net, tree, tc).start_compiling()
    if step is not None and tc.update == "gradient" and step.applies(net, tc):
        return step.start_compiling(net, tc)
    return None


def _run(cfg, tree, net, tc, callback, stop):
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


def sweep_one(cfg, threads=1, on_epoch=None):
    """Run one configuration; a flat result dict (NaN trained values if it diverged).
    ``on_epoch(record)`` after each epoch (``hltm_experiment``'s callback)."""
    with B.blas_threads(threads):
        res = {"preset": cfg.preset, "polarity": f"{cfg.polarity[0]}:{cfg.polarity[1]}",
               "hid": cfg.hid, "loss": cfg.loss, "H": cfg.negatives, "tau": cfg.tau,
               "seed": cfg.seed, "diverged": False}
        try:
            records, ceiling = hltm_experiment(cfg, callback=on_epoch)
        except TrainingDiverged as exc:
            records, res["diverged"] = exc.records, True
            tree = cfg.tree
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


def run_sweep(cfgs, n_jobs=1, threads=1, callback=None, scheduler=None, on_epoch=None):
    """``sweep_one`` over ``cfgs`` in parallel processes (joblib); ``callback(result)`` as
    each arrives. Returns the results in order.

    ``scheduler``: run them on a Dask distributed cluster instead, through joblib's Dask
    backend: the scheduler's address (``"tcp://host:8786"``) or a ``distributed.Client``
    (every worker thread takes configurations; ``n_jobs`` is then ignored). Needs the
    ``cluster`` extra (``dask[distributed]``); each worker must be able to import minissl.
    Ray works the same way through its joblib backend (docs/performance.md).
    ``on_epoch(i, record)`` after each epoch of run ``i`` where the runs are made in this
    process (``n_jobs=1``, no scheduler: a progress display within a run)."""
    results = []
    if n_jobs == 1 and scheduler is None:
        for i, c in enumerate(cfgs):
            results.append(sweep_one(c, threads, on_epoch and (lambda rec, i=i: on_epoch(i, rec))))
            notify(callback, results[-1])
        return results
    B.require("joblib", "parallel")
    from joblib import Parallel, delayed
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

