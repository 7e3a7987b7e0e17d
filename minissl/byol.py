"""BYOL without negative pairs: online net + predictor, EMA target, BatchNorm parts, DirectPred.

Networks (batch-major, hand-written forward/backward, layers composed in ``Sequential``):

    encoder   f(x):  x -> Linear -> [BN] -> ReLU -> ... -> Linear           # (N, n_0) -> (N, d)
    predictor p(z):  "none": p(z) = z;  "linear": z W_p^T  (W_p: (d, d));
                     "mlp":  z -> Linear -> [BN] -> ReLU -> Linear           # (N, d) -> (N, d)
    target   f_t:    the encoder's architecture, weights theta_t updated by EMA:
                     theta_t <- ema * theta_t + (1 - ema) * theta   after every step
                     (ema = 0: the target is a copy of the online net, SimSiam's stop-gradient)

Loss (two views x1, x2 of the same samples; online and target see the batch ``[x1; x2]``
(2N, n_0) in one pass, so BN statistics are over both views):

    l(p, z) = ½ || n(p) - n(sg(z)) ||²       n = L2 normalisation (normalize=True) or identity
    L = ½ [ mean_i l(p(f(x1_i)), f_t(x2_i)) + mean_i l(p(f(x2_i)), f_t(x1_i)) ]   (symmetric)
    L =       mean_i l(p(f(x1_i)), f_t(x2_i))                                       (otherwise)

With normalisation ``l = 1 - cos``. Gradients reach the online encoder and the predictor only.

Updates: SGD (train.SGD) with lr for the encoder and ``predictor_lr * lr`` for the predictor;
weight decay ``eta`` enters both as ``-lr * eta * W`` per step (the convention of the linear
ODE in linear_byol.py: ``dW_p/dt = alpha_p (-dL/dW_p) - eta W_p``).

DirectPred (Tian, Chen, Ganguli 2021): ``F <- rho F + (1 - rho) mean_i z_i z_i^T`` over the
predictor's inputs z; every ``freq`` steps ``F = U diag(s) U^T`` and ``W_p = U diag(p) U^T``
with ``p_j = sqrt(s_j / max_k s_k) + eps``; the predictor then gets no gradient update.

Collapse diagnostics (``collapse_diagnostics``): effective rank of the embeddings, std of the
L2-normalised embeddings times sqrt(d), the spectrum, and the loss a collapsed online
embedding would reach against the current targets.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

import numpy as np

from . import backend as B
from .batchnorm import MODES, BatchNorm, check_mode, weight_grad_parts
from .nets import backward_pass, forward_pass, normalize_backward, normalize_forward
from .train import SGD, History, TrainingDiverged

PREDICTORS = ("none", "linear", "mlp")


# ----------------------------------------------------------------------------- layers
class Linear:
    """``y = x W^T`` with ``W`` (n_out, n_in), init ``U(-1, 1)/sqrt(n_in)`` (as ReLUNet).

    Uses ``nets.forward_pass``/``backward_pass`` for a single layer; optional 0/1 ``mask``.
    """

    def __init__(self, n_in, n_out, rng, mask=None, dtype="float64", xp=np, init_scale=1.0):
        W = rng.uniform(-1.0, 1.0, (n_out, n_in)) * (init_scale / math.sqrt(n_in))
        self.mask = None if mask is None else xp.asarray(mask, dtype=dtype)
        if mask is not None:
            W = W * B.to_numpy(mask)
        self.W = xp.asarray(W, dtype=dtype)
        self.xp, self.cache, self.grads = xp, None, []

    def parameters(self):
        return [self.W]

    def forward(self, x):
        gs, _ = forward_pass([self.W], None, x, self.xp)
        self.cache = (x, gs[0])
        return gs[0]                                       # (N, n_out)

    def backward(self, dy):
        x, g = self.cache
        dWs, _, dx = backward_pass([self.W], [g], [x], dy,
                                   None if self.mask is None else [self.mask], want_input=True)
        self.grads = [dWs[0]]
        return dx                                          # (N, n_in)

    def copy(self):
        new = object.__new__(Linear)
        new.W, new.mask, new.xp, new.cache, new.grads = self.W.copy(), self.mask, self.xp, None, []
        return new


class ReLU:
    def __init__(self, xp=np):
        self.xp, self.cache, self.grads = xp, None, []

    def parameters(self):
        return []

    def forward(self, x):
        self.cache = x > 0
        return x * self.cache

    def backward(self, dy):
        return dy * self.cache

    def copy(self):
        return ReLU(self.xp)


class Sequential:
    """Layers applied in order; ``backward(dy)`` returns ``dx`` and fills ``grads()``."""

    def __init__(self, layers):
        self.layers = list(layers)

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def grads(self):
        return [g for layer in self.layers for g in layer.grads]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def copy(self):
        return Sequential([layer.copy() for layer in self.layers])

    def batchnorms(self):
        return [layer for layer in self.layers if isinstance(layer, BatchNorm)]

    def __repr__(self):
        return "Sequential(" + ", ".join(type(l).__name__ for l in self.layers) + ")"


def mlp(sizes, rng, bn_mean="normal", bn_var="normal", bn_affine=False, masks=None,
        dtype="float64", xp=np):
    """``Linear -> [BN] -> ReLU`` per hidden layer, a plain ``Linear`` on top.

    BN is left out where it would be the identity (mean and var "omit", no affine).
    """
    layers = []
    L = len(sizes) - 1
    for l in range(L):
        m = None if masks is None else masks[l]
        layers.append(Linear(sizes[l], sizes[l + 1], rng, mask=m, dtype=dtype, xp=xp))
        if l < L - 1:
            bn = BatchNorm(sizes[l + 1], bn_mean, bn_var, bn_affine, dtype=dtype, xp=xp)
            if not bn.identity:
                layers.append(bn)
            layers.append(ReLU(xp))
    return Sequential(layers)


# ----------------------------------------------------------------------------- the loss
def byol_loss(p, zt, normalize=True, symmetric=True):
    """BYOL loss of predictions ``p`` and targets ``zt``, both (2N, d) = [view 1; view 2].

    Row i of ``p`` is compared with its partner row ``(i + N) mod 2N`` of ``zt`` (the other
    view of the same sample): ``l_i = ½ || n(p_i) - n(zt_partner(i)) ||²``. Returns
    ``(L, dL/dp)``: ``L`` the mean of ``l_i`` over all 2N rows (symmetric) or over the first
    N rows; ``dL/dp`` (2N, d). ``zt`` is a constant (stop-gradient).
    """
    xp = B.array_module(p)
    if p.ndim != 2 or p.shape != zt.shape or p.shape[0] % 2:
        raise ValueError(f"p and zt must have the same shape (2N, d), got {tuple(p.shape)} "
                         f"and {tuple(zt.shape)}")
    N2 = p.shape[0]
    N = N2 // 2
    target = xp.concatenate([zt[N:], zt[:N]])              # partner rows, (2N, d)
    if normalize:
        q, qnorm = normalize_forward(p, 0.0, xp)
        t, _ = normalize_forward(target, 0.0, xp)
    else:
        q, t = p, target
    diff = q - t                                           # (2N, d)
    li = 0.5 * (diff * diff).sum(axis=1)                   # (2N,)
    w = xp.ones(N2, dtype=p.dtype) if symmetric else xp.concatenate(
        [xp.ones(N, dtype=p.dtype), xp.zeros(N, dtype=p.dtype)])
    count = float(N2 if symmetric else N)
    L = float((w * li).sum() / count)
    dq = diff * (w / count)[:, None]
    dp = normalize_backward(p, qnorm, dq, 0.0, xp) if normalize else dq
    return L, dp


# ----------------------------------------------------------------------------- diagnostics
def effective_rank(Z):
    """Roy & Vetterli's effective rank of the embeddings ``Z`` (N, d), uncentred:

    ``exp(H(s / sum s))`` with ``s`` the singular values of ``Z`` and H the Shannon entropy.
    1 when every embedding lies on one line (e.g. all equal), d when the spectrum is flat.
    """
    s = np.linalg.svd(B.to_numpy(Z), compute_uv=False)
    if s.sum() <= 0:
        return 1.0
    q = s / s.sum()
    q = q[q > 0]
    return float(np.exp(-(q * np.log(q)).sum()))


def collapse_diagnostics(Z, Zt=None, normalize=True):
    """Collapse measures for online embeddings ``Z`` (N, d) (``Zt`` target embeddings, optional).

    - ``effective_rank``: ``effective_rank(Z)`` (1 = collapsed onto a line).
    - ``std``: mean over dimensions of the std over samples of ``Z_i/||Z_i||``, times sqrt(d):
      about 1 for directions spread over the sphere, 0 for a collapsed (constant) direction.
    - ``spectrum``: singular values of the centred ``Z`` over sqrt(N), descending.
    - ``collapsed_loss``: the per-pair loss a collapsed online branch would reach against the
      targets ``Zt`` (default ``Z``): the best constant prediction's loss, ``1 - ||mean_i
      n(Zt_i)||`` with normalisation, ``½ mean_i ||Zt_i - mean Zt||²`` without. (A network whose
      online and target branches both collapse reaches 0.)
    """
    Z = B.to_numpy(Z)
    Zt = Z if Zt is None else B.to_numpy(Zt)
    N, d = Z.shape
    U = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-300)
    Ut = Zt / np.maximum(np.linalg.norm(Zt, axis=1, keepdims=True), 1e-300)
    spec = np.linalg.svd(Z - Z.mean(0), compute_uv=False) / math.sqrt(N)
    if normalize:
        collapsed = 1.0 - float(np.linalg.norm(Ut.mean(0)))
    else:
        collapsed = 0.5 * float(((Zt - Zt.mean(0)) ** 2).sum(1).mean())
    return {"effective_rank": effective_rank(Z), "std": float(U.std(0).mean() * math.sqrt(d)),
            "spectrum": spec, "collapsed_loss": collapsed}


def directpred_weights(F, eps=0.01):
    """DirectPred's predictor for the correlation ``F`` (d, d): ``U diag(p) U^T``,
    ``F = U diag(s) U^T``, ``p_j = sqrt(max(s_j, 0) / max_k s_k) + eps``.
    Returns ``(W_p, p, U)``."""
    F = 0.5 * (F + F.T)
    xp = B.array_module(F)
    s, U = xp.linalg.eigh(F)                               # ascending
    s = xp.maximum(s, 0)
    smax = float(s.max())
    if smax <= 0:
        raise ValueError("DirectPred needs a correlation matrix F with a positive eigenvalue")
    p = xp.sqrt(s / smax) + eps
    return (U * p) @ U.T, p, U


def eigen_alignment(F, Wp):
    """How well the eigenvectors of ``F`` (d, d) are eigenvectors of the predictor ``Wp`` (d, d).

    With ``F = U diag(s) U^T`` (descending s) and ``Ws = (Wp + Wp^T)/2``:
    - ``cosines[j] = |u_j . Wp u_j| / ||Wp u_j||`` (1 when u_j is an eigenvector of Wp),
    - ``offdiag = ||offdiag(U^T Ws U)||_F / ||Ws||_F`` (0 when Ws is diagonal in F's basis),
    - ``asym = ||Wp - Wp^T||_F / ||Wp||_F``,
    - ``s`` (F's eigenvalues) and ``p = diag(U^T Ws U)`` (the predictor's eigenvalues in that
      basis), ``p_directpred = sqrt(s/max s)`` for comparison.
    """
    F, Wp = B.to_numpy(F), B.to_numpy(Wp)
    s, U = np.linalg.eigh(0.5 * (F + F.T))
    s, U = s[::-1], U[:, ::-1]
    Ws = 0.5 * (Wp + Wp.T)
    M = U.T @ Ws @ U
    WU = Wp @ U
    cos = np.abs((U * WU).sum(0)) / np.maximum(np.linalg.norm(WU, axis=0), 1e-300)
    off = M - np.diag(np.diag(M))
    return {"cosines": cos, "offdiag": float(np.linalg.norm(off) / np.linalg.norm(Ws)),
            "asym": float(np.linalg.norm(Wp - Wp.T) / np.linalg.norm(Wp)),
            "s": s, "p": np.diag(M).copy(),
            "p_directpred": np.sqrt(np.maximum(s, 0) / max(s.max(), 1e-300))}


# ----------------------------------------------------------------------------- config and model
@dataclass
class BYOLConfig:
    """Settings of a BYOL run (the CLI's flags map onto these fields)."""
    hidden: tuple = (64,)          # encoder hidden widths (each Linear -> [BN] -> ReLU)
    out_dim: int = 16              # embedding width d
    predictor: str = "linear"      # "none" | "linear" | "mlp"
    predictor_hidden: int = 32     # hidden width of the "mlp" predictor
    bn_mean: str = "normal"        # BN mean part: "normal" | "detach" | "omit"
    bn_var: str = "normal"         # BN variance part: "normal" | "detach" | "omit"
    bn_affine: bool = False        # learn BN gamma, beta
    bn_predictor: bool = True      # BN also in the mlp predictor's hidden layer
    normalize: bool = True         # L2-normalise prediction and target in the loss
    symmetric: bool = True         # symmetrise the loss over the two views
    ema: float = 0.99              # target EMA decay in [0, 1); 0 = SimSiam (copy of online)
    lr: float = 0.05               # learning rate > 0 (encoder)
    predictor_lr: float = 1.0      # predictor learning rate, relative to lr (> 0)
    weight_decay: float = 0.0      # eta >= 0: each step W -= lr * eta * W
    momentum: float = 0.0          # SGD momentum in [0, 1)
    steps: int = 300               # SGD steps >= 1
    batch_size: int = 128          # samples per step (2 views each) >= 2
    predictor_reinit_every: int = 0  # re-initialise the predictor every n steps (0 = never)
    directpred: bool = False       # set the linear predictor by DirectPred instead of SGD
    directpred_rho: float = 0.3    # running-average rate rho in [0, 1)
    directpred_eps: float = 0.01   # eps >= 0 added to p_j
    directpred_freq: int = 1       # set the predictor every freq steps >= 1
    seed: int = 0                  # weight-init and data seed
    log_every: int = 10            # record diagnostics every this many steps
    eval_size: int = 512           # samples for the diagnostics

    def validate(self):
        hidden = tuple(int(h) for h in self.hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be integers >= 1, got {self.hidden!r}")
        self.hidden = hidden
        if self.predictor not in PREDICTORS:
            raise ValueError(f"predictor must be one of {PREDICTORS}, got {self.predictor!r}")
        check_mode("bn_mean", self.bn_mean)
        check_mode("bn_var", self.bn_var)
        for name, lo in (("out_dim", 1), ("predictor_hidden", 1), ("steps", 1),
                         ("batch_size", 2), ("predictor_reinit_every", 0),
                         ("directpred_freq", 1), ("log_every", 1), ("eval_size", 2)):
            v = getattr(self, name)
            if int(v) != v or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        for name in ("lr", "predictor_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not 0 <= self.directpred_rho < 1:
            raise ValueError(f"directpred_rho must be in [0, 1), got {self.directpred_rho!r}")
        if not self.directpred_eps >= 0:
            raise ValueError(f"directpred_eps must be >= 0, got {self.directpred_eps!r}")
        if self.directpred and self.predictor != "linear":
            raise ValueError(f"directpred needs predictor='linear', got {self.predictor!r}")
        return self

    @classmethod
    def field_names(cls):
        return [f.name for f in fields(cls)]


class BYOL:
    """Online encoder + predictor, EMA target, and the step that trains them.

    ``n_in``: input width n_0. ``masks``: optional 0/1 masks for the encoder's Linear layers
    (the HLTM tree network). After ``loss_and_grads`` the caches of the last pass are kept
    (``implicit_contrastive`` reads them).
    """

    def __init__(self, n_in, cfg=None, masks=None, sizes=None, **overrides):
        cfg = cfg or BYOLConfig()
        if overrides:
            cfg = BYOLConfig(**{**cfg.__dict__, **overrides})
        self.cfg = cfg.validate()
        self.xp = np
        self.rng = B.rng(cfg.seed)
        self.sizes = list(sizes) if sizes is not None else [int(n_in), *cfg.hidden, cfg.out_dim]
        if self.sizes[0] != n_in:
            raise ValueError(f"sizes[0] must equal n_in={n_in}, got {self.sizes[0]}")
        self.d = self.sizes[-1]
        self.online = mlp(self.sizes, self.rng, cfg.bn_mean, cfg.bn_var, cfg.bn_affine, masks)
        self.target = self.online.copy()
        self.predictor = self._new_predictor()
        self.F = np.zeros((self.d, self.d))    # running correlation of the predictor's input
        self.step_count = 0
        self.opt = SGD(self.online.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
        self.opt_pred = self._pred_opt()

    def _new_predictor(self):
        cfg, d = self.cfg, self.d
        if cfg.predictor == "none":
            return None
        if cfg.predictor == "linear":
            return Sequential([Linear(d, d, self.rng)])
        m, v = (cfg.bn_mean, cfg.bn_var) if cfg.bn_predictor else ("omit", "omit")
        return mlp([d, cfg.predictor_hidden, d], self.rng, m, v, cfg.bn_affine)

    def _pred_opt(self):
        if self.predictor is None:
            return None
        cfg = self.cfg
        return SGD(self.predictor.parameters(), cfg.lr * cfg.predictor_lr, cfg.momentum,
                   cfg.weight_decay / cfg.predictor_lr)

    # -- the parameters an optimiser sees
    def parameters(self):
        return self.online.parameters() + (self.predictor.parameters() if self.predictor else [])

    @property
    def Wp(self):
        """The linear predictor's weight (d, d) (None unless predictor == "linear")."""
        return self.predictor.layers[0].W if self.cfg.predictor == "linear" else None

    def embed(self, x):
        """Online encoder output f(x) (N, d) (BN uses this batch's statistics)."""
        return self.online.forward(np.asarray(x, dtype=float))

    # -- one pass
    def loss_and_grads(self, x1, x2):
        """Loss and gradients for views ``x1``, ``x2`` (N, n_0). Returns ``(L, grads, z)`` with
        ``grads`` aligned with ``parameters()`` and ``z`` the online embeddings (2N, d)."""
        x = np.concatenate([np.asarray(x1, float), np.asarray(x2, float)])   # (2N, n_0)
        z = self.online.forward(x)                                           # (2N, d)
        zt = self.target.forward(x)
        self._directpred_update(z)
        p = z if self.predictor is None else self.predictor.forward(z)
        L, dp = byol_loss(p, zt, self.cfg.normalize, self.cfg.symmetric)
        dz = dp if self.predictor is None else self.predictor.backward(dp)
        self.online.backward(dz)
        grads = self.online.grads() + (self.predictor.grads() if self.predictor else [])
        self._last = (z, zt)
        return L, grads, z

    def _directpred_update(self, z):
        cfg = self.cfg
        if self.predictor is None:
            return
        rho = cfg.directpred_rho                 # F is tracked for every predictor (alignment)
        self.F = rho * self.F + (1 - rho) * (z.T @ z) / z.shape[0]
        if cfg.directpred and self.step_count % cfg.directpred_freq == 0:
            self.Wp[...] = directpred_weights(self.F, cfg.directpred_eps)[0]

    def step(self, x1, x2):
        """One SGD step (+ EMA, predictor re-init, DirectPred); returns the loss."""
        cfg = self.cfg
        if cfg.predictor_reinit_every and self.step_count and \
                self.step_count % cfg.predictor_reinit_every == 0:
            self.predictor = self._new_predictor()
            self.opt_pred = self._pred_opt()
        L, grads, _ = self.loss_and_grads(x1, x2)
        if not math.isfinite(L):
            raise TrainingDiverged(f"BYOL diverged at step {self.step_count + 1}: loss {L}. "
                                   f"Try a smaller learning rate (lr={cfg.lr}).")
        n_on = len(self.online.parameters())
        self.opt.step(grads[:n_on])
        if self.predictor is not None and not cfg.directpred:
            self.opt_pred.step(grads[n_on:])
        a = cfg.ema
        for pt, po in zip(self.target.parameters(), self.online.parameters()):
            pt *= a
            pt += (1 - a) * po
        self.step_count += 1
        return L

    # -- analysis
    def implicit_contrastive(self, x1, x2, layer=0):
        """Split the gradient of the encoder's ``layer``-th Linear (followed by BN) into the parts
        through BN's mean, its variance and the rest (``batchnorm.weight_grad_parts``).

        Runs one forward/backward on ``[x1; x2]`` (no update). Raises ``ValueError`` when that
        Linear is not followed by a BatchNorm.
        """
        self.loss_and_grads(x1, x2)
        lins = [i for i, l in enumerate(self.online.layers) if isinstance(l, Linear)]
        if not 0 <= layer < len(lins) - 1:
            raise ValueError(f"layer must be in [0, {len(lins) - 2}], got {layer}")
        i = lins[layer]
        bn = self.online.layers[i + 1]
        if not isinstance(bn, BatchNorm):
            raise ValueError("implicit_contrastive needs BatchNorm after the layer "
                             "(bn_mean/bn_var not both 'omit')")
        f = self.online.layers[i].cache[0]
        return weight_grad_parts(f, bn.last_dy, bn.cache)

    def diagnostics(self, x1, x2):
        """``collapse_diagnostics`` of the online embeddings of ``[x1; x2]`` plus the loss."""
        L, _, z = self.loss_and_grads(x1, x2)
        zt = self._last[1]
        N = z.shape[0] // 2
        d = collapse_diagnostics(z[:N], zt[N:], self.cfg.normalize)
        d["loss"] = L
        return d


# ----------------------------------------------------------------------------- training
def train_byol(source, cfg=None, callback=None, model=None, **overrides):
    """Train BYOL on ``source.triples(n, rng)`` (anchor and positive are the two views).

    Returns ``(model, History)``; every ``log_every`` steps (and at the last) the history gets
    ``step, loss`` and the diagnostics of a fixed evaluation batch (``effective_rank, std,
    collapsed_loss, eval_loss``; ``spectrum`` only at the last record). ``callback(step,
    record, model)`` returning False stops early.
    """
    cfg = cfg or BYOLConfig()
    if overrides:
        cfg = BYOLConfig(**{**cfg.__dict__, **overrides})
    cfg.validate()
    model = model or BYOL(source.dim, cfg)
    rng = B.rng(cfg.seed + 1)
    ev1, ev2, _ = source.triples(cfg.eval_size, B.rng(cfg.seed + 2))
    hist = History()
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        x1, x2, _ = source.triples(cfg.batch_size, rng)
        L = model.step(x1, x2)
        if step % cfg.log_every == 0 or step == cfg.steps:
            d = model.diagnostics(ev1, ev2)
            rec = {"step": step, "loss": L, "eval_loss": d["loss"],
                   "effective_rank": d["effective_rank"], "std": d["std"],
                   "collapsed_loss": d["collapsed_loss"], "seconds": time.perf_counter() - t0}
            if step == cfg.steps:
                rec["spectrum"] = d["spectrum"]
            hist.append(**rec)
            if callback is not None and callback(step, rec, model) is False:
                break
    return model, hist


# ----------------------------------------------------------------------------- data and HLTM
DATASETS = ("toy", "hltm")


def make_source(data="toy", seed=0, depth=4, num_children=2, polarity=(0.7, 1.0), noise=1.0):
    """The data source of an experiment: ``"toy"`` = ``GaussianClusters(8 clusters, dim 16,
    noise)``, ``"hltm"`` = ``HLTM(depth, num_children, polarity, seed)`` (two views share the
    root and resample everything below)."""
    if data == "toy":
        from .data import GaussianClusters
        return GaussianClusters(n_clusters=8, dim=16, noise=noise, seed=seed)
    if data == "hltm":
        from .hltm import HLTM
        return HLTM(depth, num_children, polarity, seed)
    raise ValueError(f"data must be one of {DATASETS}, got {data!r}")


def make_model(source, cfg, hid=None):
    """A ``BYOL`` for ``source``; on an HLTM the encoder is the masked tree network
    (``tree.network_sizes(hid)``, ``tree.network_masks(hid)``) with BN after each hidden layer."""
    if hasattr(source, "network_masks"):
        hid = hid or 10
        return BYOL(source.dim, cfg, masks=source.network_masks(hid),
                    sizes=source.network_sizes(hid))
    return BYOL(source.dim, cfg)


class PreactivationView:
    """The online encoder seen as a network by ``hltm.normalized_correlation``: ``sizes``,
    ``dtype`` and ``preactivations(x)`` = the outputs of its Linear layers (before BN, whose
    positive per-unit rescaling leaves |correlation| unchanged), BN on ``x``'s statistics."""

    def __init__(self, model):
        self.model, self.sizes, self.dtype = model, list(model.sizes), np.dtype("float64")

    def preactivations(self, x):
        self.model.online.forward(np.asarray(x, float))
        return [l.cache[1] for l in self.model.online.layers if isinstance(l, Linear)]


def latent_recovery(model, tree, n=4000, rng=0):
    """``hltm.normalized_correlation`` of the online encoder's units (a ``Correlation``)."""
    from .hltm import normalized_correlation
    return normalized_correlation(tree, PreactivationView(model), n=n, rng=rng)


# ----------------------------------------------------------------------------- ablation
ABLATION_PREDICTORS = ("none", "linear")
ABLATION_BN_MEANS = MODES
ABLATION_EMAS = (0.0, 0.99)


def _ablation_run(data, cfg, hid, source_kw):
    src = make_source(data, **source_kw)
    model = make_model(src, cfg, hid)
    t0 = time.perf_counter()
    try:
        model, hist = train_byol(src, cfg, model=model)
        rec = hist.records[-1]
        row = {k: rec[k] for k in ("loss", "eval_loss", "effective_rank", "std", "collapsed_loss")}
        row["diverged"] = False
    except TrainingDiverged:
        row = {"loss": math.nan, "eval_loss": math.nan, "effective_rank": math.nan,
               "std": math.nan, "collapsed_loss": math.nan, "diverged": True}
    row.update(predictor=cfg.predictor, bn_mean=cfg.bn_mean, ema=cfg.ema,
               seconds=time.perf_counter() - t0)
    if data == "hltm" and not row["diverged"]:
        corr = latent_recovery(model, src, n=4000, rng=cfg.seed + 3)
        row["corr_by_depth"] = corr.by_depth
        row["corr_mean"] = float(corr.per_latent.mean())
    return row


def run_ablation(data="toy", cfg=None, predictors=ABLATION_PREDICTORS,
                 bn_means=ABLATION_BN_MEANS, emas=ABLATION_EMAS, hid=10, n_jobs=1,
                 source_kw=None, callback=None):
    """Train one BYOL per (predictor, bn_mean, ema) and return one dict per run: the final
    ``loss, eval_loss, effective_rank, std, collapsed_loss`` (and on HLTM the latent recovery
    ``corr_by_depth, corr_mean``). Other settings come from ``cfg``. ``n_jobs > 1`` runs in
    parallel processes (joblib); ``callback(i, total, row)`` after each run (serial only)."""
    cfg = (cfg or BYOLConfig()).validate()
    for p in predictors:
        if p not in PREDICTORS:
            raise ValueError(f"predictors must be among {PREDICTORS}, got {p!r}")
    for m in bn_means:
        check_mode("bn_means", m)
    grid = [BYOLConfig(**{**cfg.__dict__, "predictor": p, "bn_mean": m, "ema": e,
                          "directpred": cfg.directpred and p == "linear"}).validate()
            for p in predictors for m in bn_means for e in emas]
    kw = dict(source_kw or {})
    if n_jobs != 1:
        from joblib import Parallel, delayed
        return Parallel(n_jobs=n_jobs)(delayed(_ablation_run)(data, c, hid, kw) for c in grid)
    rows = []
    for i, c in enumerate(grid):
        rows.append(_ablation_run(data, c, hid, kw))
        if callback is not None:
            callback(i + 1, len(grid), rows[-1])
    return rows


def ablation_table(rows):
    """The ablation as text lines (a Markdown table)."""
    has_corr = any("corr_mean" in r for r in rows)
    head = ["predictor", "BN mean", "EMA", "eff. rank", "std·√d", "loss", "collapsed loss"]
    if has_corr:
        head += ["latent corr (mean)", "root corr"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["predictor"], r["bn_mean"], f"{r['ema']:g}"]
        if r["diverged"]:
            cells += ["diverged"] * 4
        else:
            cells += [f"{r['effective_rank']:.2f}", f"{r['std']:.3f}", f"{r['eval_loss']:.4f}",
                      f"{r['collapsed_loss']:.4f}"]
        if has_corr:
            if "corr_mean" in r:
                top = max(r["corr_by_depth"])
                cells += [f"{r['corr_mean']:.3f}", f"{r['corr_by_depth'][top]:.3f}"]
            else:
                cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ----------------------------------------------------------------------------- CLI
_CLI_FIELDS = ("out_dim", "predictor_hidden", "bn_var", "normalize", "symmetric", "lr",
               "predictor_lr", "weight_decay", "momentum", "steps", "batch_size",
               "predictor_reinit_every", "directpred", "seed", "eval_size")

CLI_DEFAULTS = dict(lr=0.5, weight_decay=0.02, steps=300, batch_size=64, bn_var="normal",
                    out_dim=16, hidden=(64,))


def add_byol_parser(subparsers):
    """The ``byol`` subcommand: the ablation predictor x BN mean x EMA, a table of diagnostics."""
    import argparse
    p = subparsers.add_parser(
        "byol", help="BYOL ablation: predictor x BN mean x EMA, collapse diagnostics",
        description="Train BYOL for every combination of --predictors x --bn-means x --emas and "
                    "print the collapse diagnostics (effective rank, std of the normalised "
                    "embeddings x sqrt(d), loss, loss of a collapsed online branch; on HLTM the "
                    "mean normalized correlation of the latents).")
    p.add_argument("--data", choices=DATASETS, default="toy")
    p.add_argument("--predictors", nargs="+", default=list(ABLATION_PREDICTORS),
                   choices=PREDICTORS)
    p.add_argument("--bn-means", nargs="+", default=list(ABLATION_BN_MEANS), choices=MODES)
    p.add_argument("--emas", nargs="+", type=float, default=list(ABLATION_EMAS),
                   help="target EMA decays (0 = SimSiam)")
    p.add_argument("--hidden", nargs="+", type=int, default=None,
                   help="encoder hidden widths (toy; default 64)")
    p.add_argument("--hid", type=int, default=10, help="units per latent (HLTM)")
    p.add_argument("--depth", type=int, default=4, help="HLTM depth")
    p.add_argument("--noise", type=float, default=1.0, help="toy augmentation noise")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes (joblib)")
    for name in _CLI_FIELDS:
        flag = "--" + name.replace("_", "-")
        default = CLI_DEFAULTS.get(name, getattr(BYOLConfig, name))
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            p.add_argument(flag, type=type(default), default=default)
    p.add_argument("--json", action="store_true", help="one JSON object per run")
    return p


def config_from_args(args):
    kw = {name: getattr(args, name) for name in _CLI_FIELDS}
    kw["hidden"] = tuple(args.hidden) if args.hidden else CLI_DEFAULTS["hidden"]
    kw["log_every"] = kw["steps"]
    return BYOLConfig(**kw)


def run_byol(args):
    """Run the ablation and print the table (or JSON lines); returns 0."""
    import json
    import sys
    try:
        cfg = config_from_args(args).validate()
        source_kw = {"seed": cfg.seed}
        source_kw.update({"depth": args.depth} if args.data == "hltm" else {"noise": args.noise})
        make_source(args.data, **source_kw)
        for e in args.emas:
            if not 0 <= e < 1:
                raise ValueError(f"--emas: every EMA decay must be in [0, 1), got {e!r}")
        if int(args.hid) != args.hid or args.hid < 1:
            raise ValueError(f"--hid must be an integer >= 1, got {args.hid!r}")
    except ValueError as exc:
        parser = getattr(args, "_parser", None)
        if parser is None:
            raise
        parser.error(str(exc))
    print(f"# BYOL ablation on {args.data}: lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}, "
          f"{cfg.steps} steps, batch {cfg.batch_size}, d {cfg.out_dim}, BN var {cfg.bn_var}, "
          f"normalize {cfg.normalize}, seed {cfg.seed}", file=sys.stdout)
    t0 = time.perf_counter()
    rows = run_ablation(args.data, cfg, args.predictors, args.bn_means, args.emas,
                        hid=args.hid, n_jobs=args.jobs, source_kw=source_kw)
    if args.json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.items()}, default=float))
    else:
        for line in ablation_table(rows):
            print(line)
    print(f"# {time.perf_counter() - t0:.1f} s wall")
    return 0


# ----------------------------------------------------------------------------- experiments
def trace_implicit_contrastive(source, cfg=None, layer=0, **overrides):
    """Train BYOL and, every ``log_every`` steps, split the encoder layer's gradient on a fixed
    evaluation batch into its BN paths. Returns ``(steps, norms, parts, model, history)``:
    ``norms[key]`` lists ``||dW_key||_F`` for key in direct, mean, var, mean_cross;
    ``parts`` is the last ``weight_grad_parts`` dict."""
    cfg = cfg or BYOLConfig()
    if overrides:
        cfg = BYOLConfig(**{**cfg.__dict__, **overrides})
    ev1, ev2, _ = source.triples(min(cfg.eval_size, 256), B.rng(cfg.seed + 5))
    steps, norms, last = [], {k: [] for k in ("direct", "mean", "var", "mean_cross")}, {}

    def cb(step, rec, model):
        parts = model.implicit_contrastive(ev1, ev2, layer)
        steps.append(step)
        for k in norms:
            norms[k].append(float(np.linalg.norm(parts[k])))
        last["parts"] = parts

    model, hist = train_byol(source, cfg, callback=cb)
    return steps, norms, last["parts"], model, hist


def predictor_alignment(source, cfg=None, **overrides):
    """Train BYOL with a gradient-trained linear predictor and return ``(eigen_alignment(F, W_p),
    model, history)``; ``F`` is the running correlation of the predictor's input."""
    cfg = cfg or BYOLConfig()
    cfg = BYOLConfig(**{**cfg.__dict__, **overrides, "predictor": "linear", "directpred": False})
    model, hist = train_byol(source, cfg)
    return eigen_alignment(model.F, model.Wp), model, hist


def make_doc_figures(outdir="docs/img", seed=0):
    """Run the experiments of docs/byol.md, write its PNG figures to ``outdir`` and print the
    numbers the doc quotes. ``python -c "from minissl.byol import make_doc_figures;
    make_doc_figures('docs/img')"``."""
    import os

    from . import linear_byol as LB
    from . import plots as P
    os.makedirs(outdir, exist_ok=True)

    def save(fig, name):
        with open(os.path.join(outdir, name), "wb") as fh:
            fh.write(P.to_png(fig, dpi=90))
        P.close(fig)
        print(f"wrote {os.path.join(outdir, name)}")

    src = make_source("toy", seed=seed)
    base = BYOLConfig(lr=0.5, weight_decay=0.02, steps=300, batch_size=64, log_every=10,
                      ema=0.0, seed=seed)
    # 1. collapse diagnostics over training: no BN/no predictor vs BN + predictor
    runs = {"no BN, no predictor": dict(predictor="none", bn_mean="omit", bn_var="omit"),
            "BN (mean normal) + linear predictor": dict(predictor="linear")}
    hists, spectra = {}, {}
    for label, kw in runs.items():
        _, h = train_byol(src, base, **kw)
        hists[label], spectra[label] = h, h.records[-1]["spectrum"]
        r = h.records[-1]
        print(f"{label}: effective rank {r['effective_rank']:.2f}, std {r['std']:.3f}, "
              f"loss {r['eval_loss']:.4f}, collapsed loss {r['collapsed_loss']:.4f}")
    save(P.byol_history_figure(hists), "byol_collapse.png")
    save(P.byol_spectrum_figure(spectra), "byol_spectrum.png")
    # 2. implicit contrastive term
    steps, norms, parts, _, _ = trace_implicit_contrastive(src, base, log_every=30)
    frac = norms["mean_cross"][-1] / norms["mean"][-1]
    rel = np.linalg.norm(parts["direct"] + parts["mean"] - parts["covariance"]) / \
        np.linalg.norm(parts["covariance"])
    print(f"implicit contrastive: ||dW_mean||/||dW_total|| at the end "
          f"{norms['mean'][-1] / np.linalg.norm(parts['total']):.3f}; cross-sample share "
          f"||mean_cross||/||mean|| {frac:.4f}; covariance-form error {rel:.1e}")
    save(P.implicit_contrastive_figure(steps, norms, parts), "byol_implicit_contrastive.png")
    # 3. linear BYOL: ODE vs simulation, two regimes, and the regime grid
    W0, Wp0, Wa0, X, Xp = LB.default_problem(seed=seed)
    for name, (alpha_p, eta, T) in {"survives": (1.0, 0.01, 20.0),
                                    "collapses": (0.3, 0.2, 60.0)}.items():
        t, Ws, Wps, _ = LB.integrate(W0, Wp0, Wa0, X, Xp, T, alpha_p, 1.0, eta,
                                     t_eval=np.linspace(0, T, 201))    # every T/200
        k = int(round(T / 200 / 0.01))                                  # steps per T/200
        te, We, _, _ = LB.euler(W0, Wp0, Wa0, X, Xp, T, 0.01, alpha_p, 1.0, eta,
                                record_every=10 * k)
        ts, Wss, _, _ = LB.simulate_sgd(W0, Wp0, Wa0, X, Xp, T, 0.01, alpha_p, 1.0, eta,
                                        batch_size=512, seed=seed, record_every=5 * k)
        ode_at = np.linalg.norm(Ws[::10], axis=(1, 2))
        e_eu = np.abs(We - Ws[::10]).max() / np.abs(Ws).max()
        e_sgd = np.max(np.abs(np.linalg.norm(Wss[::2], axis=(1, 2)) - ode_at) / ode_at.max())
        print(f"linear BYOL ({name}: alpha_p {alpha_p}, eta {eta}): ||W(0)|| "
              f"{ode_at[0]:.3f} -> ||W({T:g})|| {ode_at[-1]:.3e}; Euler dt=0.01 max rel. error "
              f"{e_eu:.2e}; SGD (lr 0.01, batch 512) max |Δ||W|||/max||W|| {e_sgd:.3f}")
        save(P.linear_byol_figure(t, Ws, ts, Wss, title=f"linear BYOL, α_p={alpha_p}, "
                                  f"η={eta}: ODE (lines) vs SGD (dots)"),
             f"linear_byol_{name}.png")
    etas, alphas = [0.0, 0.02, 0.05, 0.1, 0.2, 0.5], [0.1, 0.3, 1.0, 3.0, 10.0]
    G = LB.regime_grid(etas, alphas, T=100.0, dt=0.05)
    print("regime grid ||W(100)||_F (rows eta", etas, ", columns alpha_p", alphas, "):")
    print(np.array2string(G, precision=3, suppress_small=True))
    save(P.byol_regimes_figure(etas, alphas, G), "linear_byol_regimes.png")
    # 4. DirectPred vs a trained linear predictor
    al, _, h = predictor_alignment(src, base, steps=1000, lr=0.1, bn_mean="omit",
                                   bn_var="omit", predictor_lr=10.0, log_every=1000)
    print(f"trained linear predictor (no BN, wd 0.02, alpha_p 10, 1000 steps): offdiag "
          f"{al['offdiag']:.3f}, asym {al['asym']:.3f}, cosines {np.round(al['cosines'], 2)}, "
          f"p/p1 {np.round(al['p'] / al['p'][0], 2)}, sqrt(s/s1) "
          f"{np.round(al['p_directpred'], 2)}, effective rank "
          f"{h.records[-1]['effective_rank']:.2f}")
    save(P.directpred_figure(al), "byol_directpred.png")
    _, h = train_byol(src, base, steps=1000, lr=0.1, bn_mean="omit", bn_var="omit",
                      directpred=True, log_every=1000)
    r = h.records[-1]
    print(f"DirectPred (no BN, same settings): effective rank {r['effective_rank']:.2f}, "
          f"std {r['std']:.3f}")


# ----------------------------------------------------------------------------- demo helpers
def demo_ablation(data="toy", predictors=ABLATION_PREDICTORS, bn_means=ABLATION_BN_MEANS,
                  emas=ABLATION_EMAS, steps=300, lr=None, weight_decay=0.02, seed=0):
    """What the demo tab "Why BYOL does not collapse" shows for one click: returns
    ``(markdown, ablation_figure, spectrum_figure)``. Defaults: toy lr 0.5, HLTM lr 0.1
    (depth 4, hid 10, no weight decay is often enough there)."""
    from . import plots as P
    if not predictors or not bn_means or not emas:
        raise ValueError("choose at least one predictor, one BN mean mode and one EMA value")
    lr = lr or (0.5 if data == "toy" else 0.1)
    cfg = BYOLConfig(lr=lr, weight_decay=weight_decay, steps=int(steps), batch_size=64,
                     log_every=int(steps), seed=int(seed), out_dim=16 if data == "toy" else 10)
    kw = {"seed": int(seed)} if data == "toy" else {"seed": int(seed), "depth": 4}
    rows = run_ablation(data, cfg, tuple(predictors), tuple(bn_means),
                        tuple(float(e) for e in emas), hid=10, source_kw=kw)
    src = make_source(data, **kw)
    spectra = {}
    for r in rows[:: max(1, len(rows) // 4)]:
        m = make_model(src, BYOLConfig(**{**cfg.__dict__, "predictor": r["predictor"],
                                          "bn_mean": r["bn_mean"], "ema": r["ema"]}), 10)
        _, h = train_byol(src, m.cfg, model=m)
        spectra[f"{r['predictor']}/{r['bn_mean']}/ema {r['ema']:g}"] = h.records[-1]["spectrum"]
    md = "\n".join([f"BYOL on **{data}**: lr {lr:g}, weight decay {weight_decay:g}, {steps} "
                    f"steps, batch 64, BN var normal, L2-normalised loss, seed {seed}.", ""]
                   + ablation_table(rows))
    return md, P.byol_ablation_figure(rows), P.byol_spectrum_figure(spectra)


def demo_linear(eta=0.01, alpha_p=1.0, T=20.0, seed=0):
    """Linear BYOL for the demo: the ODE and BYOL's SGD (lr 0.01, batch 512) overlaid.
    Returns ``(markdown, figure)``."""
    from . import linear_byol as LB
    from . import plots as P
    W0, Wp0, Wa0, X, Xp = LB.default_problem(seed=int(seed))
    T = float(T)
    t, Ws, _, _ = LB.integrate(W0, Wp0, Wa0, X, Xp, T, float(alpha_p), 1.0, float(eta),
                               t_eval=np.linspace(0, T, 201))
    ts, Wss, _, _ = LB.simulate_sgd(W0, Wp0, Wa0, X, Xp, T, 0.01, float(alpha_p), 1.0,
                                    float(eta), batch_size=512, seed=int(seed),
                                    record_every=max(1, int(round(T / 0.01 / 40))))
    n0, nT = np.linalg.norm(Ws[0]), np.linalg.norm(Ws[-1])
    verdict = "collapses" if nT < 1e-2 * n0 else ("shrinking" if nT < 0.3 * n0 else "survives")
    md = (f"||W(0)|| = {n0:.3f} → ||W({T:g})|| = {nT:.3e} ({verdict}); "
          f"α_p = {alpha_p:g}, η = {eta:g}, β = 1.")
    return md, P.linear_byol_figure(t, Ws, ts, Wss, title=f"α_p={alpha_p:g}, η={eta:g}")
