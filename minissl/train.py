"""The training loop: forward, contrastive loss, hand-written backward, update, records.

One step on a batch ``(x, x_pos, x_neg)`` (x_neg: (N, H, n_0)) with shared weights:

    Z = net([x; x_pos; x_neg])                       # all views in one batch, (N(2+H), n_L)
    L = mean_n loss(r_pos_n, r_neg_n)                # losses.contrastive_loss
    dW = net.backward(dL/dZ)                         # gradient of the mean loss
    v <- momentum * v + (dW + weight_decay * W);  W <- W - lr * v        (optim.SGD)

With ``negatives="in_batch"`` the SimCLR arrangement is used instead: the batch is a pair of
views of N samples (``source.views(N, 2, rng)``; no negatives are drawn), each of the 2N views
has its partner as positive and the other 2N - 2 views as negatives.
With ``negatives="supervised"`` the batch is ``source.labelled(N, rng) -> (x, x_pos, labels)``
and the loss is SupCon (``losses.supcon_weights``): each of the 2N views has every other view
with its label as a positive (its partner included) and all 2N - 1 others in the denominator.

``optimizer="adam"`` updates with ``optim.Adam`` (lr; no momentum or weight decay) instead of
SGD. After every update each layer with a ``project()`` method applies it (a constraint, e.g.
``layers.SymmetricThreshold`` keeps its thresholds b >= 0). Any ``nets.Network`` trains here;
the compiled steps apply to ``ReLUNet`` only (``Network.compiled_steps``).

With ``frozen = (l, ...)`` (0-based indices into ``net.weights``) those layers' weights (and
biases) are left out of the update: the optimiser only holds the other parameters, so a frozen
layer keeps its initial values while its gradient still flows through it to the layers below
(the top-layer-acceleration experiment, ``experiments.acceleration``).

With ``update="covariance"`` every layer moves by the covariance operator instead:
``W_l += lr * ΔW_l``, ``vec(ΔW_l) = OP_l vec(W_l)`` on the batch's views ``[x, x_pos]``
(N, 2, n_0), pair weights from ``covariance.covariance_pair_weights`` (ξ ≡ 1 for "simple"),
passed through the same SGD as the gradient ``-ΔW_l`` (so momentum/weight decay still apply).
Each record then holds ``cos_by_layer``: per layer, the cosine between the gradient step
``-dL/dW_l`` (of the loss on the batch) and ``ΔW_l`` (NaN where either is zero).

On backend "numba" the compiled paths run where they apply (``kernels.twin("train_step")``,
``twin("train_epoch")``); ``sampler="auto"`` (the default, ``resolve_sampler``) draws an HLTM's
batches there with the compiled sampler (the same law, other random numbers): docs/design.md §4.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from . import backend as B
from .covariance import covariance_updates
from .hltm import HLTM
from .kernels import twin
from .budget import train_cost
from .losses import (LOSSES, check_labels, check_loss, check_negatives, chain_gram,
                     simclr_weights, supcon_weights, triplet_loss)
from .optim import SGD, Adam, History, notify, stopped

NEGATIVES = ("given", "in_batch", "supervised")
UPDATES = ("gradient", "covariance")
SAMPLERS = ("auto", "numpy", "compiled")
OPTIMIZERS = ("sgd", "adam")
CHUNK_STEPS = 500        # most steps per compiled call (``stop`` is checked between calls)
COVARIANCE_LOSSES = ("simple", "soft_triplet", "infonce")
MAX_STEPS = 10 ** 9
MAX_BATCH = 1 << 24


class TrainingDiverged(FloatingPointError):
    """The loss of a finite run became NaN or infinite; the message names the step and
    suggests a fix. (Non-finite inputs or settings are ``ValueError``s, never this.)"""


@dataclass
class TrainConfig:
    """Settings of a training run (the CLI's flags map onto these fields)."""
    loss: str = "infonce"          # one of losses.LOSSES
    tau: float = 1.0               # temperature τ > 0 (soft_triplet, infonce)
    margin: float = 0.0            # soft-triplet margin r_0
    lr: float = 0.01               # learning rate > 0
    momentum: float = 0.0          # SGD momentum in [0, 1)
    weight_decay: float = 0.0      # L2 weight decay >= 0
    steps: int = 1000              # number of SGD steps >= 1
    batch_size: int = 64           # anchors per step >= 1
    negatives: str = "given"       # "given" (x_neg from the source), "in_batch" (SimCLR) or
                                   # "supervised" (SupCon, positives by source.labelled)
    update: str = "gradient"       # "gradient" (SGD on the loss) or "covariance" (OP vec W)
    seed: int = 0                  # data seed
    log_every: int = 1             # call the callback every this many steps
    frozen: tuple = ()             # layers (0-based, net.weights) not updated (see module doc)
    sampler: str = "auto"          # "numpy" (source.triples) | "compiled" (HLTM, numba) | "auto"
    optimizer: str = "sgd"         # "sgd" (momentum, weight decay) | "adam" (optim.Adam, lr)

    def validate(self):
        B.check_choice("loss", self.loss, tuple(LOSSES))
        check_loss(self.loss, self.tau)
        B.check_real("margin", self.margin)
        B.check_real("lr", self.lr, 0, lo_open=True)
        B.check_real("momentum", self.momentum, 0, 1, hi_open=True)
        B.check_real("weight_decay", self.weight_decay, 0)
        B.check_int("steps", self.steps, 1, MAX_STEPS)
        B.check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        B.check_int("log_every", self.log_every, 1)
        B.check_int("seed", self.seed, 0)
        B.check_choice("negatives", self.negatives, NEGATIVES)
        if self.negatives != "given" and self.loss != "infonce":
            raise ValueError(f"negatives={self.negatives!r} (SimCLR, SupCon) needs "
                             f"loss='infonce'; got loss={self.loss!r}")
        if self.negatives != "given" and self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 for negatives={self.negatives!r} (each "
                             f"anchor needs negatives), got {self.batch_size}")
        B.check_choice("update", self.update, UPDATES)
        check_frozen(self.frozen)
        B.check_choice("sampler", self.sampler, SAMPLERS)
        B.check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.optimizer == "adam" and (self.momentum or self.weight_decay):
            raise ValueError(f"optimizer='adam' keeps its own moments and takes no momentum or "
                             f"weight_decay, got momentum={self.momentum!r}, "
                             f"weight_decay={self.weight_decay!r}")
        return self


def check_frozen(frozen, depth=None):
    """``frozen`` as a sorted tuple of distinct layer indices ``0 <= l < depth`` (``depth``
    None: only ``l >= 0``), else ``ValueError`` naming ``frozen``."""
    if isinstance(frozen, (str, bytes)) or not hasattr(frozen, "__iter__"):
        raise ValueError(f"frozen must be a tuple of layer indices, got {B.shown(frozen)}")
    hi = None if depth is None else depth - 1
    out = tuple(sorted({B.check_int("frozen (a layer index)", l, 0, hi) for l in frozen}))
    if len(out) != len(tuple(frozen)):
        raise ValueError(f"frozen must list distinct layers, got {B.shown(frozen)}")
    return out


def trainable(net, frozen=()):
    """Indices into ``net.parameters()`` of what the optimiser updates: every parameter but
    the weights (and biases) of the ``frozen`` layers."""
    frozen, L = check_frozen(frozen, net.depth), net.depth
    skip = set(frozen) | ({L + l for l in frozen} if net.bias else set())   # W_l, then b_l
    return [i for i in range(len(net.parameters())) if i not in skip]


def check_batch(net, batch, cfg):
    """A batch ``(x, x_pos, x_neg)`` from a source, checked once: ``(X, N, extra)`` with the
    views stacked ``X = [x; x_pos; x_neg]`` ((2 + H) N, n_0) on the net's device, finite
    (one ``net.check_input``), and ``extra`` H (given negatives: x_neg (N, H, n_0), or
    (N, n_0) for H = 1; the loss must take H), or the labels (N,) for
    ``negatives="supervised"``, or None for "in_batch" (x_neg ignored; N >= 2)."""
    x, x_pos, x_neg = batch
    x, x_pos = net.xp.asarray(x), net.xp.asarray(x_pos)
    N, parts = x.shape[0], [x, x_pos]
    if x.ndim != 2 or x_pos.shape != x.shape or N < (1 if cfg.negatives == "given" else 2):
        raise ValueError(f"x and x_pos must have the same shape (N, {net.sizes[0]}) with "
                         f"N >= {1 if cfg.negatives == 'given' else 2}, got "
                         f"{tuple(x.shape)} and {tuple(x_pos.shape)}")
    extra = None
    if cfg.negatives == "supervised":                 # x_neg holds the labels
        extra = check_labels(net.xp.asarray(B.to_numpy(x_neg)), N, net.xp)
    elif cfg.negatives == "given":
        x_neg = net.xp.asarray(x_neg)
        x_neg = x_neg[:, None, :] if x_neg.ndim == 2 else x_neg
        if x_neg.ndim != 3 or x_neg.shape[0] != N or x_neg.shape[2] != x.shape[1] \
                or x_neg.shape[1] < 1:
            raise ValueError(f"x_neg must have shape (N, H, n_0) = ({N}, H >= 1, "
                             f"{x.shape[1]}), got {tuple(x_neg.shape)}")
        extra = x_neg.shape[1]
        check_negatives(cfg.loss, extra)
        parts.append(x_neg.reshape(N * extra, -1))
    try:
        return net.check_input(net.xp.concatenate(parts)), N, extra
    except ValueError:                     # name the part that holds NaN or inf, if one does
        for name, part in zip(("x", "x_pos", "x_neg"), parts):
            B.check_finite(name, part, net.xp)
        raise


def finite_output(Z, factor):
    """True when the embeddings ``Z`` are finite and ``factor * Σ|Z|²`` (which bounds the
    batch's summed distances) is too: else the run has diverged (losses.check_scale)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(factor * float((Z * Z).sum()))


def loss_and_grads(net, batch, cfg):
    """Forward all views, the loss and backward. Returns ``(loss, r_pos, r_neg, grads)`` with
    ``grads`` aligned with ``net.parameters()`` and ``r_pos``/``r_neg`` batch means;
    ``(nan, nan, nan, None)`` when the output is not finite. ``cfg`` was validated by the
    caller; the batch is checked here, once (``check_batch``)."""
    X, N, extra = check_batch(net, batch, cfg)
    xp = net.xp
    Z = net.apply(X)                                   # all views in one pass
    if not finite_output(Z, Z.shape[0] if cfg.negatives != "given" else 1 + extra):
        return math.nan, math.nan, math.nan, None
    if cfg.negatives == "given":
        z, zp, zn = Z[:N], Z[N:2 * N], Z[2 * N:].reshape(N, extra, -1)
        value, (dz, dzp, dzn), (r_pos, r_neg) = triplet_loss(
            z, zp, zn, LOSSES[cfg.loss], cfg.tau, cfg.margin)
        dZ = xp.concatenate([dz, dzp, dzn.reshape(N * extra, -1)])
    else:
        if cfg.negatives == "supervised":
            L, C, r_pos, r_neg = supcon_weights(Z, xp.concatenate([extra, extra]), cfg.tau)
        else:
            weights = twin("simclr_weights", net.backend) or simclr_weights
            L, C, r_pos, r_neg = weights(Z, cfg.loss, cfg.tau, cfg.margin)
        value, dZ, r_neg = float(L.mean()), chain_gram(Z, C), xp.asarray(r_neg)
    net.backward(dZ)
    return value, float(r_pos.mean()), float(r_neg.mean()), net.grads()


def gradient_step(net, cfg):
    """The function ``batch -> (loss, r_pos, r_neg, grads)`` of a run: the compiled step
    (built once, holding its work buffers) where it applies (``kernels.tree.TrainStep.
    applies``: backend "numba", a tree network or a small plain net, no BN, given
    negatives), else ``loss_and_grads``."""
    compiled = twin("train_step", net.backend)
    if compiled is None or not compiled.applies(net, cfg):
        return lambda batch: loss_and_grads(net, batch, cfg)
    step = compiled.build(net)

    def run(batch):
        X, N, H = check_batch(net, batch, cfg)
        x_neg = X[2 * N:].reshape(N, H, -1)
        return step(net.weights, X[:N], X[N:2 * N], x_neg, cfg.loss, cfg.tau, cfg.margin)
    return run


def covariance_step(net, batch, cfg, grads):
    """The covariance-operator steps ``ΔW_l`` of every layer on the batch's views
    ``[x, x_pos]`` (N, 2, n_0), and per layer the cosine between ``-grads[l]`` and ``ΔW_l``.
    One forward of the views and one Jacobian pass serve every layer and the pair weights
    (``covariance.covariance_updates``; ξ ≡ 1 for "simple" is left out: ``xi=None``)."""
    xp = net.xp
    views = xp.stack([net.asarray(batch[0]), net.asarray(batch[1])], axis=1)   # (N, 2, n_0)
    dWs = covariance_updates(net, views, loss=None if cfg.loss == "simple" else cfg.loss,
                             tau=cfg.tau, margin=cfg.margin)
    cos = []
    for g, d in zip(grads, dWs):
        den = float(xp.sqrt((g * g).sum() * (d * d).sum()))
        cos.append(float(-(g * d).sum()) / den if den > 0 else math.nan)
    return dWs, cos


def check_run(plain, cfg):
    """Refuse a net x update combination the update rule does not cover (``plain``: the
    net is bias-free, without output normalisation or BN, ``ReLUNet.plain``)."""
    if cfg.update == "covariance" and not plain:
        raise ValueError("update='covariance' needs a bias-free net without output "
                         "normalisation or BatchNorm (bias=False, normalize=False, "
                         "batchnorm=None): the covariance identity f_L = K_l^T vec(W_l) does "
                         "not hold otherwise")
    if cfg.update == "covariance" and cfg.negatives == "supervised":
        raise ValueError("update='covariance' takes negatives 'given' or 'in_batch' (its pair "
                         "weights are those of one positive per anchor), got 'supervised'")
    if cfg.update == "covariance" and cfg.loss not in COVARIANCE_LOSSES:
        raise ValueError(f"update='covariance' takes loss one of {COVARIANCE_LOSSES} (the "
                         f"losses with covariance pair weights), got {cfg.loss!r}")


def _view_pairs(source):
    """``(x, x_pos, None)`` from ``source.views(n, 2, rng)``: a batch for in-batch negatives."""
    def pairs(n, rng):
        v = source.views(n, 2, rng)                          # (n, 2, n_0)
        return v[:, 0], v[:, 1], None
    return pairs


def batches(source, cfg):
    """The source's batch function for ``cfg.negatives``: ``labelled`` for "supervised", pairs
    of ``views`` for "in_batch" (no negatives are drawn: the batch's other views are the
    negatives), else ``triples``; a source without it (or ``dim``) is a ``ValueError``."""
    method = {"in_batch": "views", "supervised": "labelled"}.get(cfg.negatives, "triples")
    B.check_source(source, method, f"negatives={cfg.negatives!r}")   # ValueError naming it
    return _view_pairs(source) if method == "views" else getattr(source, method)


def resolve_sampler(net, source, cfg):
    """``cfg`` with "auto" resolved: "compiled" on backend numba for an HLTM, else "numpy"."""
    ok = isinstance(source, HLTM) and cfg.negatives != "supervised" and twin("triples", net.backend)
    return replace(cfg, sampler="compiled" if ok else "numpy") if cfg.sampler == "auto" else cfg


def batch_sampler(net, source, cfg):
    """``sample(n, rng)``: the source's batches (``batches``), or the compiled HLTM sampler's
    triples for ``sampler="compiled"`` (``resolve_sampler``; ValueError unless the source is
    an ``HLTM``, the net's backend "numba" and the negatives given or in-batch)."""
    if resolve_sampler(net, source, cfg).sampler == "numpy":
        return batches(source, cfg)
    compiled = twin("triples", net.backend)
    if compiled is None or not isinstance(source, HLTM) or cfg.negatives == "supervised":
        raise ValueError(f"sampler='compiled' needs an HLTM source, backend 'numba' and "
                         f"negatives 'given' or 'in_batch', got {type(source).__name__}, "
                         f"backend {net.backend!r}, negatives {cfg.negatives!r}")
    return lambda n, rng: compiled(source, n, rng)


def epoch_twin(net, source, cfg):
    """The compiled chunks of steps (``kernels.twin("train_epoch")``, built for this run)
    where they apply (``kernels.tree.TreeEpoch.applies``: the compiled sampler on an HLTM,
    the gradient update of every layer by SGD, a tree network of the source's width), else
    None."""
    epoch = twin("train_epoch", net.backend)
    if epoch is None or not epoch.applies(net, source, cfg):
        return None
    check_loss(cfg.loss, cfg.tau, source.negatives)
    return epoch.for_run(net, source, cfg)


def steps_runner(net, source, cfg):
    """``(advance, chunked)``: ``advance(n)`` runs up to n training steps and returns one
    ``(loss, r_pos, r_neg, cos_by_layer or None)`` per step run (it stops after a step whose
    loss is not finite, before that step's update); ``chunked``: True for the compiled
    chunks (``epoch_twin``), False for the per-step path (call it with n = 1)."""
    rng, cfg = B.rng(cfg.seed), resolve_sampler(net, source, cfg)
    epoch = epoch_twin(net, source, cfg)
    if epoch is not None:
        return (lambda n: [(float(v), float(rp), float(rn), None)
                           for v, rp, rn in epoch.run(rng, n)]), True
    sample, step_fn = batch_sampler(net, source, cfg), gradient_step(net, cfg)
    keep = trainable(net, cfg.frozen)                  # all parameters but the frozen layers'
    params = net.parameters()
    opt = (SGD([params[i] for i in keep], cfg.lr, cfg.momentum, cfg.weight_decay)
           if cfg.optimizer == "sgd" else Adam([params[i] for i in keep], cfg.lr))
    projected = [layer for layer in net.layers if callable(getattr(layer, "project", None))]

    def advance(n):
        out = []
        for _ in range(n):
            batch = sample(cfg.batch_size, rng)
            value, r_pos, r_neg, grads = step_fn(batch)
            cos = None
            if not math.isfinite(value):
                out.append((value, r_pos, r_neg, cos))
                break
            if cfg.update == "covariance":
                dWs, cos = covariance_step(net, batch, cfg, grads)
                opt.step([-dWs[i] for i in keep])
            else:
                opt.step([grads[i] for i in keep])
            for layer in projected:                      # constraints, e.g. thresholds b >= 0
                layer.project()
            out.append((value, r_pos, r_neg, cos))
        return out
    return advance, False


def train(net, source, cfg=None, callback=None, stop=None, **overrides):
    """Train ``net`` on ``source.triples`` (``source.labelled`` for ``negatives="supervised"``)
    for ``cfg.steps`` steps; returns a ``History``.

    Every step appends a record ``{step, loss, r_pos, r_neg, seconds[, cos_by_layer]}``;
    every ``cfg.log_every`` steps (and at the last) the record also gets ``loss_mean`` (the
    mean loss since the previous such record) and ``callback(record)`` is called: returning
    ``False`` ends the run early, as does ``stop.is_set()`` (checked every step, or every
    chunk of compiled steps: see the module docstring). Raises ``TrainingDiverged`` when the
    loss stops being finite. Before anything runs, ``budget.train_cost`` is checked against
    the environment's limits (``ResourceLimitError``; the experiments check theirs first).
    """
    cfg = replace(cfg or TrainConfig(), **overrides).validate()
    check_run(net.plain, cfg)
    train_cost(net.sizes, cfg, B.check_int("source.negatives", getattr(source, "negatives", 1), 1),
               getattr(source, "n_nodes", None), net.dtype).check()
    advance, chunked = steps_runner(net, source, cfg)
    hist, window, step = History(), [], 0
    t0 = time.perf_counter()
    # overflow is not warned about: a non-finite loss stops the run with TrainingDiverged
    with np.errstate(over="ignore", invalid="ignore"):
        while step < cfg.steps:
            n = min(cfg.steps - step, CHUNK_STEPS, cfg.log_every - step % cfg.log_every
                    if callback else CHUNK_STEPS)
            for value, r_pos, r_neg, cos in advance(n if chunked else 1):
                step += 1
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"training diverged at step {step}: the loss became {value}. Try a "
                        f"smaller learning rate (lr={cfg.lr}) or a larger tau (tau={cfg.tau}).")
                rec = {"step": step, "loss": value, "r_pos": r_pos, "r_neg": r_neg,
                       "seconds": time.perf_counter() - t0}
                if cos is not None:
                    rec["cos_by_layer"] = cos
                window.append(value)
                due = step % cfg.log_every == 0 or step == cfg.steps
                if due:
                    rec["loss_mean"] = window[0] if len(window) == 1 else float(np.mean(window))
                    window.clear()
                hist.append(**rec)
                if due and notify(callback, rec):
                    return hist
            if stopped(stop):
                break
    return hist
