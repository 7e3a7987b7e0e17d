"""Training loop: forward, contrastive loss, hand-written backward, SGD update, history.

One step on a batch ``(x, x_pos, x_neg)`` (x_neg: (N, H, n_0)) with shared weights:

    Z = net([x; x_pos; x_neg])                       # all views in one batch, (N(2+H), n_L)
    L = mean_n loss(r_pos_n, r_neg_n)                # losses.contrastive_loss
    dW = net.backward(dL/dZ)                         # gradient of the mean loss
    v <- momentum * v + (dW + weight_decay * W);  W <- W - lr * v

With ``negatives="in_batch"`` the SimCLR arrangement is used instead (x_neg is ignored; each of
the 2N views has its partner as positive and the other 2N - 2 views as negatives).

With ``update="covariance"`` every layer moves by the covariance operator instead (DESIGN.md §1):
``W_l += lr * ΔW_l``, ``vec(ΔW_l) = OP_l vec(W_l)`` on the batch's views ``[x, x_pos]``
(N, 2, n_0), pair weights from ``covariance.covariance_pair_weights`` (ξ ≡ 1 for "simple"),
passed through the same SGD as the gradient ``-ΔW_l`` (so momentum/weight decay still apply).
Each record then holds ``cos_by_layer``: per layer, the cosine between the gradient step
``-dL/dW_l`` (of the loss on the batch) and ``ΔW_l`` (NaN where either is zero).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields

import numpy as np

from . import backend as B
from .losses import LOSSES, check_loss, contrastive_loss, simclr_loss

NEGATIVES = ("given", "in_batch")
UPDATES = ("gradient", "covariance")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and suggests a fix."""


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
    negatives: str = "given"       # "given" (x_neg from the source) or "in_batch" (SimCLR)
    update: str = "gradient"       # "gradient" (SGD on the loss) or "covariance" (OP vec W)
    seed: int = 0                  # data seed
    log_every: int = 1             # call the callback every this many steps

    def validate(self):
        check_loss(self.loss, self.tau)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {self.loss!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("steps", "batch_size", "log_every"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if self.negatives == "in_batch" and self.loss != "infonce":
            raise ValueError("negatives='in_batch' (SimCLR) needs loss='infonce'; "
                             f"got loss={self.loss!r}")
        if self.update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {self.update!r}")
        return self

    @classmethod
    def field_names(cls):
        return [f.name for f in fields(cls)]


@dataclass
class History:
    """Per-step records: ``history["loss"]`` is the list of losses, etc."""
    records: list = field(default_factory=list)

    def append(self, **rec):
        self.records.append(rec)

    def __getitem__(self, key):
        return [r[key] for r in self.records if key in r]

    def __len__(self):
        return len(self.records)


class SGD:
    """SGD with momentum and weight decay, in place: ``v = μ v + (g + λ W)``, ``W -= lr v``."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params, self.lr, self.momentum, self.wd = params, lr, momentum, weight_decay
        self.velocity = [None] * len(params)

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.wd:
                g = g + self.wd * p
            if self.momentum:
                v = g if self.velocity[i] is None else self.momentum * self.velocity[i] + g
                self.velocity[i] = v
                g = v
            p -= self.lr * g


def loss_and_grads(net, batch, cfg):
    """Forward all views, the loss and backward. Returns ``(loss, r_pos, r_neg, grads)`` with
    ``grads`` aligned with ``net.parameters()`` and ``r_pos``/``r_neg`` batch means."""
    if net.backend == "numba":                    # compiled twin (kernels/mlp.py) where it applies
        from .kernels.mlp import fused_loss_and_grads
        out = fused_loss_and_grads(net, batch, cfg)
        if out is not None:
            return out
    x, x_pos, x_neg = batch
    xp = net.xp
    x, x_pos = net.asarray(x), net.asarray(x_pos)
    N, n0 = x.shape
    if cfg.negatives == "in_batch":
        Z = net.forward(xp.concatenate([x, x_pos]))
        if not bool(xp.isfinite(Z).all()):
            return math.nan, math.nan, math.nan, None
        simclr = simclr_loss
        if net.backend == "numba":                # compiled twin (kernels/losses.py)
            from .kernels.losses import simclr_loss as simclr
        value, (d1, d2), (r_pos, r_neg) = simclr(Z[:N], Z[N:], cfg.loss, cfg.tau,
                                                 cfg.margin, return_distances=True)
        dZ = xp.concatenate([d1, d2])
    else:
        x_neg = net.asarray(x_neg)
        if x_neg.ndim == 2:
            x_neg = x_neg[:, None, :]
        H = x_neg.shape[1]
        Z = net.forward(xp.concatenate([x, x_pos, x_neg.reshape(N * H, n0)]))
        if not bool(xp.isfinite(Z).all()):
            return math.nan, math.nan, math.nan, None
        z, zp, zn = Z[:N], Z[N:2 * N], Z[2 * N:].reshape(N, H, -1)
        value, (dz, dzp, dzn), (r_pos, r_neg) = contrastive_loss(
            z, zp, zn, cfg.loss, cfg.tau, cfg.margin, return_distances=True)
        dZ = xp.concatenate([dz, dzp, dzn.reshape(N * H, -1)])
    dWs = net.backward(dZ)
    grads = dWs + (net.grad_biases if net.bias else [])
    return value, float(r_pos.mean()), float(r_neg.mean()), grads


def covariance_step(net, batch, cfg, grads):
    """The covariance-operator steps ``ΔW_l`` of every layer on the batch's views
    ``[x, x_pos]`` (N, 2, n_0), and per layer the cosine between ``-grads[l]`` and ``ΔW_l``."""
    from .covariance import covariance_pair_weights, covariance_update
    xp = net.xp
    views = xp.stack([net.asarray(batch[0]), net.asarray(batch[1])], axis=1)   # (N, 2, n_0)
    xi = None if cfg.loss == "simple" else covariance_pair_weights(
        net, views, cfg.loss, cfg.tau, cfg.margin)
    dWs = [covariance_update(net, views, l, xi) for l in range(net.depth)]
    cos = []
    for g, d in zip(grads, dWs):
        den = float(xp.sqrt((g * g).sum() * (d * d).sum()))
        cos.append(float(-(g * d).sum()) / den if den > 0 else math.nan)
    return dWs, cos


def train(net, source, cfg=None, callback=None, **overrides):
    """Train ``net`` on ``source.triples`` for ``cfg.steps`` steps; returns a ``History``.

    ``callback(step, record, net)`` is called every ``cfg.log_every`` steps (and at the last);
    returning ``False`` stops training early. Raises ``TrainingDiverged`` when the loss stops
    being finite.
    """
    cfg = cfg or TrainConfig()
    if overrides:
        cfg = TrainConfig(**{**cfg.__dict__, **overrides})
    cfg.validate()
    if cfg.update == "covariance" and (net.bias or net.normalize):
        raise ValueError("update='covariance' needs a bias-free net without output "
                         "normalisation (bias=False, normalize=False): the covariance identity "
                         "f_L = K_l^T vec(W_l) does not hold otherwise")
    if cfg.update == "covariance" and cfg.loss not in ("simple", "soft_triplet", "infonce"):
        raise ValueError("update='covariance' takes loss 'simple', 'soft_triplet' or "
                         f"'infonce' (the losses with covariance pair weights), got {cfg.loss!r}")
    rng = B.rng(cfg.seed)
    opt = SGD(net.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    hist = History()
    t0 = time.perf_counter()
    # overflow is not warned about: a non-finite loss stops the run with TrainingDiverged
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(1, cfg.steps + 1):
            batch = source.triples(cfg.batch_size, rng)
            value, r_pos, r_neg, grads = loss_and_grads(net, batch, cfg)
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"training diverged at step {step}: the loss became {value}. "
                    f"Try a smaller learning rate (lr={cfg.lr}) or a larger tau (tau={cfg.tau}).")
            cos = None
            if cfg.update == "covariance":
                dWs, cos = covariance_step(net, batch, cfg, grads)
                opt.step([-d for d in dWs])
            else:
                opt.step(grads)
            rec = {"step": step, "loss": value, "r_pos": r_pos, "r_neg": r_neg,
                   "seconds": time.perf_counter() - t0}
            if cos is not None:
                rec["cos_by_layer"] = cos
            hist.append(**rec)
            if callback is not None and (step % cfg.log_every == 0 or step == cfg.steps):
                if callback(step, rec, net) is False:
                    break
    return hist
