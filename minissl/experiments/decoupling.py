"""Feature decoupling (Wen & Li 2021): train a one-layer network on ``SparseCoding`` data and
watch whether its neurons learn the sparse features or the dense ones.

The network (``decoupling_net``): ``z = normalize(h(W x))`` with ``W = V / ||V||`` (unit rows,
``layers.WeightNormLinear``), ``h`` the symmetric thresholded ReLU with a learned threshold
``b >= 0`` (``layers.SymmetricThreshold``, projected after every step) or a plain ReLU, and
the output L2-normalised (``layers.L2Normalize``), a ``nets.Network``. Loss: InfoNCE in the
SimCLR arrangement (2N views, τ prefactor), optimiser Adam: the one training loop,
``train.train(negatives="in_batch", optimizer="adam")``, which applies the threshold's
``project()`` after every step.

A run derives its seeds from ``cfg.seed`` (docs/design.md): the data model's bases use the
seed itself, ``derive_seed(seed, 1)`` the init, 2 the training data, 4 the untrained loss
batch, 5 the clean samples on which a neuron counts as dead (active on at most ``DEAD_RATE`` =
1% of them); ``decoupling_table`` measures the view correlations on stream 3.

Two presets (``DecouplingConfig.from_preset``, ``DECOUPLING_PRESETS``) set the conventions of
the network's start and the loss's temperature, the rest of the run being the same:

- ``"minissl"`` (the field defaults): the input as drawn (per-coordinate std
  ``sqrt(tr C / d1)``, 0.22 for d1 = 128, k = 3, dense energy 1), V's rows of norm 1, b = 0
  (the symmetric neuron starts linear), ReLU neurons without bias, τ = 0.2;
- ``"wenli"`` (Wen & Li's conventions, as an independent implementation of the model uses
  them): the input scaled to unit pixel variance after the augmentation
  (``input_scale="pixel"``: ``x / sqrt(tr C / d1)``, so b is in pixel standard deviations;
  noise of per-coordinate std s, drawn in raw units, is ``s / sqrt(tr C / d1)`` of them), V's
  rows of norm 0.1 (``v_norm``: Adam's first steps turn w ten times faster, ``lr sqrt(d1) /
  ||v||`` radians per step), b = 1 pixel standard deviation, ReLU neurons with a learned
  bias (``h = ReLU(s - b)``, ``BiasedReLU``, b from ``b_init``); and, chosen here by
  measurement rather than taken from that implementation, no temperature (``tau`` = 1: the
  logits are the cosines of the unit outputs, so the softmax weights of any two negatives
  differ by at most ``e^2``). At ``tau`` = 0.2 the loss weighs the hardest negatives most,
  among them the samples with the anchor's sparse code, which only the dense features tell
  apart: under mask p = 0.5 a few neurons then settle in the dense subspace
  (docs/decoupling.md, "Why mask p = 0.5 plateaued").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .. import backend as B
from ..backend import setting
from ..analysis.decoupling import dead_neurons, dense_norm_live
from ..decoupling import (SparseCoding, closed_form_correlations, dense_fraction,
                          feature_coverage, feature_metrics, measured_correlations,
                          sparse_alignment)
from ..layers import L2Normalize, ReLU, SymmetricThreshold, WeightNormLinear
from ..budget import DRAW_COST, Cost, training_work
from ..losses import check_loss
from ..nets import Network
from ..optim import notify, stopped
from ..train import TrainConfig, loss_and_grads, train

NEURONS = ("symmetric", "relu")
DECOUPLING_BACKENDS = ("numpy", "numba")
INPUT_SCALES = ("raw", "pixel")
SOURCE_FIELDS = ("d", "d1", "k", "dense_rank", "dense_energy", "augmentation", "p", "s",
                 "noise_scale", "basis")
METRICS = ("alignment", "aligned", "dense_fraction", "dense_live", "dead", "silent", "coverage",
           "coverage_min", "covered", "b_mean", "loss")
EVAL_SAMPLES = 1024      # clean samples (stream 5) on which a neuron counts as dead ...
DEAD_RATE = 0.01         # ... when it is active (h != 0) on at most this fraction of them
#: the presets' fields (module docstring); "minissl" is the fields' defaults
DECOUPLING_PRESETS = {"minissl": {},
                      "wenli": dict(input_scale="pixel", v_norm=0.1, b_init=1.0,
                                    relu_bias=True, tau=1.0)}


@dataclass
class DecouplingConfig:
    """One training run on sparse-coding data (the ``decoupling`` command's flags and the app's
    fields are made from these settings; the data model's are checked by ``SparseCoding``)."""
    d: int = setting(32, "sparse features (columns of M)")
    d1: int = setting(128, "input width")
    k: float = setting(3.0, "expected active sparse features per sample, 0 < k <= d")
    dense_rank: int = setting(96, "dense directions r, 0 <= r <= d1 - d", label="dense rank")
    dense_energy: float = setting(1.0, "E|ξ|² / E|Mz|² (0 when r = 0)", label="dense energy")
    augmentation: str = setting("complementary", "how the two views are made: complementary, "
                                "mask, noise or none", label="augmentation")
    p: float = setting(0.5, "mask keep probability (augmentation mask)")
    s: float = setting(0.1, "noise scale (augmentation noise)")
    noise_scale: str = setting("coordinate", "noise std s per coordinate, or relative: s "
                               "sqrt(E|x|²/d1) (noise energy s² E|x|²)")
    basis: str = setting("random", "M delocalised (Haar, random) or coordinate-aligned "
                         "(identity)")
    neuron: str = setting("symmetric", "symmetric: ReLU(s-b) - ReLU(-s-b), learned b ≥ 0; or "
                          "relu", label="neuron", choices=NEURONS)
    width: int = setting(64, "neurons m", label="neurons", lo=1, hi=4096)
    b_init: float = setting(0.0, "initial threshold b (symmetric neuron; ReLU with "
                            "relu_bias), in the units of the input (input_scale)", lo=0)
    v_norm: float = setting(1.0, "initial norm of V's rows (W = V/|V|): Adam turns w by about "
                            "lr sqrt(d1)/|v| radians per step", lo=0, lo_open=True, hi=1e6)
    input_scale: str = setting("raw", "raw: x as drawn; pixel: x / sqrt(tr C / d1), unit "
                               "pixel variance (b in pixel std)", choices=INPUT_SCALES)
    relu_bias: bool = setting(False, "ReLU neurons: a learned bias, h = ReLU(s - b), b from "
                              "b_init")
    tau: float = setting(0.2, "InfoNCE temperature")
    batch_size: int = setting(256, "samples per step (2N views)", lo=2, hi=1 << 16)
    lr: float = setting(3e-3, "Adam step", lo=0, lo_open=True)
    steps: int = setting(1000, "Adam steps (0: only the untrained record)", label="steps",
                         lo=0, hi=10 ** 9)
    log_every: int = setting(50, "a record every this many steps (and at the last)", lo=1)
    seed: int = setting(0, "bases (the seed), init (stream 1), data (2), loss batch (4)",
                        label="seed", lo=0)
    backend: str = setting("numba", "numba: the whole-array SimCLR twin; numpy: reference",
                           choices=DECOUPLING_BACKENDS)

    @classmethod
    def from_preset(cls, name="minissl", **fields_):
        """A config with ``DECOUPLING_PRESETS[name]``'s fields, ``fields_`` on top."""
        name = B.check_choice("preset", name, tuple(DECOUPLING_PRESETS))
        return cls(**{**DECOUPLING_PRESETS[name], **fields_})

    def validate(self):
        self.source()
        B.check_settings(self)
        if not isinstance(self.relu_bias, (bool, np.bool_)):
            raise ValueError(f"relu_bias must be True or False, got {self.relu_bias!r}")
        check_loss("infonce", self.tau)
        return self

    def cost(self):
        """The run's ``limits.Cost``, nothing allocated. Memory: the basis (a Haar (d1, d1)
        QR), the network with its gradient and Adam's moments, a batch of 2N views with its
        masks and caches, and the SimCLR (2N, 2N) matrices. Work: the QR, ``steps + 1``
        forward/backward passes of the (d1 -> width) layer on 2N views
        (``limits.training_work``), the Gram products and ``chain_gram`` (``4 (2N)^2 width``)
        and the draws."""
        n2, d1, m = 2 * self.batch_size, self.d1, self.width
        size = f"d1={d1}, width={m}"
        batch = f"batch_size={self.batch_size}, d1={d1}, width={m}"
        steps = f"steps={self.steps}, batch_size={self.batch_size}, width={m}"
        memory = ((3 * d1 * d1 * 8 + 2 * EVAL_SAMPLES * (d1 + m) * 8,
                   "the data model's basis and the dead-neuron samples", f"d1={d1}"),
                  (4 * m * d1 * 8, "the network, its gradient and Adam's moments", size),
                  ((6 * n2 * d1 + 8 * n2 * m + 6 * n2 * n2) * 8, "a training batch", batch))
        k = self.steps + 1
        draws = self.batch_size * (2 * self.d + self.dense_rank + 2 * d1)
        work = (training_work([d1, m], n2, k) + k * (4 * n2 * n2 * m + DRAW_COST * draws)
                + 2 * d1 ** 3 + (k // self.log_every + 2) * EVAL_SAMPLES * d1 * m)
        return Cost(memory, ((work, "training", steps),))

    def source(self):
        """The data model ``SparseCoding`` of this run (validates its fields)."""
        return SparseCoding(**{f: getattr(self, f) for f in SOURCE_FIELDS}, seed=self.seed)


class PixelScaled:
    """The data source ``source`` (a ``SparseCoding``) with every view and sample multiplied
    by ``c = 1 / sqrt(tr C / d1)`` (after the augmentation): unit variance per input
    coordinate on average. Its ``M``, ``P`` are the source's (the metrics are scale-free)."""

    def __init__(self, source):
        self.source, self.dim, self.negatives = source, source.dim, source.negatives
        self.M, self.P = source.M, source.P
        self.c = 1.0 / math.sqrt(pixel_variance(source))

    def sample(self, n, rng):
        return self.c * self.source.sample(n, rng)

    def views(self, n, m, rng):
        return self.c * self.source.views(n, m, rng)

    def triples(self, n, rng):
        return tuple(self.c * a for a in self.source.triples(n, rng))


def pixel_variance(source):
    """``tr C / d1 = k (1 + dense_energy) / d1``: the mean variance of an input coordinate."""
    return source.k * (1 + source.dense_energy) / source.d1


def train_source(cfg, src):
    """What the network sees: ``src`` (``input_scale="raw"``) or ``PixelScaled(src)``."""
    return PixelScaled(src) if cfg.input_scale == "pixel" else src


class BiasedReLU:
    """``h = ReLU(s - b)`` per unit with a learned bias ``b`` (n,) (no constraint):
    ``ds = dh 1[s > b]``, ``db = -Σ_n ds``. The ReLU neuron of the "wenli" preset."""

    def __init__(self, n, b_init=0.0, *, dtype="float64", xp=np):
        n = B.check_int("n", n, 1)
        self.xp, self.b = xp, xp.full(n, B.check_real("b_init", b_init), B.check_dtype(dtype))
        self.cache, self.grads = None, []

    def parameters(self):
        return [self.b]

    def forward(self, s):
        self.cache = s
        return self.xp.maximum(s - self.b, 0)

    def backward(self, dh):
        ds = dh * (self.cache > self.b)
        self.grads = [-ds.sum(axis=0)]
        return ds

    def copy(self):
        new = object.__new__(BiasedReLU)
        new.__dict__.update(self.__dict__, b=self.b.copy(), cache=None, grads=[])
        return new


def decoupling_net(d1, width, neuron="symmetric", b_init=0.0, seed=0, backend="numpy",
                   v_norm=1.0, relu_bias=False):
    """``Network(WeightNormLinear, SymmetricThreshold | ReLU | BiasedReLU, L2Normalize)``,
    (N, d1) -> (N, width), V's rows of norm ``v_norm``; ``backend`` "numba" gives the loss the
    whole-array SimCLR twin."""
    B.check_choice("neuron", neuron, NEURONS)
    first = WeightNormLinear(d1, width, rng=seed)
    first.V *= B.check_real("v_norm", v_norm, 0, lo_open=True)
    first.need_input_grad = False
    h = (SymmetricThreshold(width, b_init) if neuron == "symmetric" else
         BiasedReLU(width, b_init) if relu_bias else ReLU())
    return Network([first, h, L2Normalize()], [d1, width], backend=backend)


def thresholds(net):
    """The ``SymmetricThreshold`` or ``BiasedReLU`` layers of a net (empty for plain ReLU)."""
    return [layer for layer in net.layers if isinstance(layer, (SymmetricThreshold, BiasedReLU))]


def train_config(cfg):
    """The ``train.TrainConfig`` of a run: InfoNCE in the SimCLR arrangement, Adam."""
    return TrainConfig(loss="infonce", tau=cfg.tau, lr=cfg.lr, optimizer="adam",
                       negatives="in_batch", steps=max(cfg.steps, 1), batch_size=cfg.batch_size,
                       log_every=cfg.log_every, seed=B.derive_seed(cfg.seed, 2))


def neuron_record(net, src, step, loss, seconds, x_eval=None):
    """The record of the net's state: ``feature_metrics`` (means and counts; ``dense_fraction``
    the squared share over all neurons), per neuron ``alignment_per_neuron``,
    ``dense_per_neuron``, ``b`` (or None), per sparse feature ``coverage_per_feature``, and
    ``b_mean``, ``loss``, ``seconds``; with clean inputs ``x_eval`` (n, d1) in the net's units,
    ``dead`` (the share of neurons active on at most ``DEAD_RATE`` of them), ``silent`` (the
    share never active on them) and ``dense_live`` (the unsquared ``||P^T w_i||`` over the
    neurons not dead), else NaN."""
    W = net.layers[0].W
    th = thresholds(net)
    b = th[0].b.copy() if th else None
    H = net.layers[1].forward(x_eval @ W.T) if x_eval is not None else None     # (n, m)
    dead = dead_neurons(H, DEAD_RATE) if H is not None else None
    rec = {"step": step, "loss": loss, **feature_metrics(W, src.M, src.P),
           "dead": float(dead.mean()) if dead is not None else math.nan,
           "silent": float(dead_neurons(H).mean()) if H is not None else math.nan,
           "dense_live": dense_norm_live(W, src.P, dead) if dead is not None else math.nan,
           "b_mean": float(b.mean()) if b is not None else 0.0,
           "alignment_per_neuron": sparse_alignment(W, src.M),
           "dense_per_neuron": dense_fraction(W, src.P),
           "coverage_per_feature": feature_coverage(W, src.M), "b": b, "seconds": seconds}
    return rec


def decoupling_experiment(cfg, callback=None, stop=None, limits=None):
    """Train per ``cfg`` (a ``DecouplingConfig``); returns the records.

    Record 0 (step 0, untrained; its loss on one batch) also holds ``rho``: the closed-form
    view correlations ``{"sparse", "dense"}``. Then a record every ``cfg.log_every`` steps and
    at the last (``neuron_record``; ``loss`` the mean training loss since the last record).
    ``callback(record)`` after each (False ends the run), ``stop.is_set()`` every step.
    ``cfg.cost()`` is checked against ``limits`` (None: the environment's) first.
    """
    cfg.validate().cost().check(limits)
    src, tc = cfg.source(), train_config(cfg)
    data = train_source(cfg, src)
    net = decoupling_net(src.dim, cfg.width, cfg.neuron, cfg.b_init, B.derive_seed(cfg.seed, 1),
                         cfg.backend, cfg.v_norm, cfg.relu_bias)
    X0 = data.views(cfg.batch_size, 2, B.derive_seed(cfg.seed, 4))
    x_eval = data.sample(EVAL_SAMPLES, B.derive_seed(cfg.seed, 5))          # (n, d1) clean
    loss0 = loss_and_grads(net, (X0[:, 0], X0[:, 1], None), tc)[0]
    records = [{**neuron_record(net, src, 0, loss0, 0.0, x_eval),
                "rho": closed_form_correlations(src)}]
    if notify(callback, records[0]) or stopped(stop) or cfg.steps == 0:
        return records

    def on_record(r):
        records.append(neuron_record(net, src, r["step"], r["loss_mean"], r["seconds"], x_eval))
        return not notify(callback, records[-1])

    train(net, data, tc, callback=on_record, stop=stop)
    return records


# ----------------------------------------------------------------------------- the table
#: (label, DecouplingConfig fields over the base): d=32, d1=128, k=3 throughout.
DECOUPLING_SETTINGS = (
    ("none", dict(augmentation="none")),
    ("noise s=0.1", dict(augmentation="noise", s=0.1)),
    ("noise s=1.0", dict(augmentation="noise", s=1.0)),
    ("noise s=1.0 relative", dict(augmentation="noise", s=1.0, noise_scale="relative")),
    ("mask p=0.5", dict(augmentation="mask", p=0.5)),
    ("mask p=0.4", dict(augmentation="mask", p=0.4)),
    ("mask p=0.3", dict(augmentation="mask", p=0.3)),
    ("complementary", dict(augmentation="complementary")),
    ("r6 complementary", dict(augmentation="complementary", dense_rank=6)),
    ("r6 none", dict(augmentation="none", dense_rank=6)),
    ("r6 x3 complementary", dict(augmentation="complementary", dense_rank=6, dense_energy=3.0)),
    ("r6 x3 none", dict(augmentation="none", dense_rank=6, dense_energy=3.0)),
    ("relu none", dict(augmentation="none", neuron="relu")),
    ("relu complementary", dict(augmentation="complementary", neuron="relu")),
)
DECOUPLING_LABELS = tuple(label for label, _ in DECOUPLING_SETTINGS)


def decoupling_row(label, cfgs, measured=0, stop=None, limits=None, on_record=None):
    """Run each config (one per seed) and summarise: closed-form (and, with ``measured`` > 0
    samples, measured) view correlations and ``{metric: (mean, std)}`` over the seeds.
    ``on_record(record)``: each run's callback (progress)."""
    finals, rhos, meas = [], [], []
    for cfg in cfgs:
        records = decoupling_experiment(cfg, on_record, stop=stop, limits=limits)
        finals.append(records[-1])
        rhos.append(records[0]["rho"])
        if measured:
            meas.append(measured_correlations(cfg.source(), measured,
                                              B.derive_seed(cfg.seed, 3)))
    c = cfgs[0]
    row = {"label": label, "augmentation": c.augmentation, "p": c.p, "s": c.s,
           "neuron": c.neuron, "dense_rank": c.dense_rank, "dense_energy": c.dense_energy,
           "seeds": [cfg.seed for cfg in cfgs], "steps": finals[0]["step"],
           "rho_sparse": float(np.mean([r["sparse"] for r in rhos])),
           "rho_dense": float(np.mean([r["dense"] for r in rhos])),
           "seconds": float(np.mean([f["seconds"] for f in finals]))}
    if meas:
        for key in ("sparse", "dense"):
            row[f"rho_{key}_measured"] = float(np.mean([m[key] for m in meas]))
    for key in METRICS:
        vals = [f[key] for f in finals]
        row[key] = (float(np.mean(vals)), float(np.std(vals)))
    return row


def decoupling_table(settings=DECOUPLING_SETTINGS, seeds=(0, 1, 2), base=None,
                     measured=0, callback=None, stop=None, limits=None, on_record=None):
    """One row (``decoupling_row``) per ``(label, overrides)`` of ``settings``, each over
    ``seeds``, the other fields from ``base`` (a ``DecouplingConfig``). ``callback(row)``
    after each row (False ends the table); ``stop`` ends the current run and the table.
    ``limits`` bounds each run (``decoupling_experiment``); ``on_record`` is each run's
    callback (progress within the table)."""
    base = base or DecouplingConfig()
    cfgs = [[replace(base, **kw, seed=s).validate() for s in seeds] for _, kw in settings]
    rows = []
    for (label, _), group in zip(settings, cfgs):
        rows.append(decoupling_row(label, group, measured, stop, limits, on_record))
        if notify(callback, rows[-1]) or stopped(stop):
            break
    return rows


def decoupling_table_lines(rows):
    """The table as rows of strings (header first): correlations beside the measured
    alignment, neurons above 0.9, the dense fraction squared over all neurons (``dense
    frac²``) and unsquared over the live ones (``dense live``), the dead (active on at most
    ``DEAD_RATE`` of the clean samples) and silent (never active) shares, coverage, covered
    features, b, loss."""
    meas = any("rho_sparse_measured" in r for r in rows)
    head = ["setting", "ρ_sp", "ρ_dn"] + (["ρ̂_sp", "ρ̂_dn"] if meas else []) + [
        "alignment", "#>0.9", "dense frac²", "dense live", "dead", "silent", "coverage", "#cov>0.9",
        "b mean", "loss", "s/run"]
    out = [head]
    for r in rows:
        def pm(k, f="{:.2f}"):
            return f"{f.format(r[k][0])}±{f.format(r[k][1])}"
        cells = [r["label"], f"{r['rho_sparse']:.2f}", f"{r['rho_dense']:.2f}"]
        if meas:
            cells += [f"{r.get('rho_sparse_measured', math.nan):.2f}",
                      f"{r.get('rho_dense_measured', math.nan):.2f}"]
        cells += [pm("alignment"), pm("aligned", "{:.1f}"), pm("dense_fraction"),
                  pm("dense_live"), pm("dead"), pm("silent"), pm("coverage"),
                  pm("covered", "{:.1f}"),
                  pm("b_mean", "{:.3f}"), pm("loss"), f"{r['seconds']:.1f}"]
        out.append(cells)
    return out
