"""BYOL without negative pairs: online net + predictor, EMA target, BatchNorm parts, DirectPred.

Networks (``nets.ReLUNet``, built from ``layers.py``; batch-major):

    encoder   f(x):  x -> Linear -> [BN] -> ReLU -> ... -> Linear           # (N, n_0) -> (N, d)
    predictor p(z):  "none": p(z) = z;  "linear": z W_p^T  (W_p: (d, d));
                     "mlp":  z -> Linear -> [BN] -> ReLU -> Linear           # (N, d) -> (N, d)
    target   f_t:    the encoder's architecture, weights theta_t updated by EMA:
                     theta_t <- ema * theta_t + (1 - ema) * theta   after every step
                     (ema = 0: the target is a copy of the online net, SimSiam's stop-gradient)

Loss (two views x1, x2 of the same samples; online and target see the batch ``[x1; x2]``
(2N, n_0) in one pass; BN statistics over both views, or per view with ``bn_stats="per_view"``):

    l(p, z) = 1 - n(p) . n(sg(z))    (normalize=True; = ½ || n(p) - n(sg(z)) ||² for p, z != 0)
    l(p, z) = ½ || p - sg(z) ||²     (normalize=False)
    L = ½ [ mean_i l(p(f(x1_i)), f_t(x2_i)) + mean_i l(p(f(x2_i)), f_t(x1_i)) ]   (symmetric)

``n`` the L2 normalisation with ``n(0) = 0``: ``l = 1 - cos``, ``cos = 0`` for a zero row
(``losses.byol_loss``). Gradients reach the online encoder and the predictor only.

Updates: SGD with lr for the encoder and ``predictor_lr * lr`` for the predictor; weight decay
``eta`` enters both as ``-lr * eta * W`` per step (``predictor_wd="ode"``, the convention of
the linear ODE in linear_byol.py: ``dW_p/dt = alpha_p (-dL/dW_p) - eta W_p``), or as the same
``eta`` in the predictor's SGD (``"optimizer"``: ``-lr * predictor_lr * eta * W_p``).

DirectPred (Tian, Chen, Ganguli 2021): ``F <- rho F + (1 - rho) mean_i z_i z_i^T`` over the
predictor's inputs z (F starts at 0, or at the first batch's correlation); every ``freq``
steps ``F = U diag(s) U^T`` and ``W_p = U diag(p) U^T`` with
``p_j = max(sqrt(max(s_j, 0) / max_k s_k) + eps, floor)``; the predictor then gets no
gradient update. ``PRESETS["reference"]`` gathers the paper authors' choices (docs/byol.md).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from . import backend as B
from .backend import setting
from .layers import BN_MODES, BN_OMIT_VAR, BatchNorm, Linear, bn_weight_grad_parts
from .budget import Cost, byol_cost
from .losses import byol_loss
from .metrics import collapse_diagnostics
from .nets import ReLUNet, check_sizes
from .optim import SGD, History, ema_update, notify, stopped
from .train import TrainingDiverged

PREDICTORS = ("none", "linear", "mlp")
BN_STATS = ("joint", "per_view")
PREDICTOR_WD = ("ode", "optimizer")
DIRECTPRED_INIT = ("zero", "first")
DIRECTPRED_SET = ("before", "after")
PRESETS = {
    "minissl": {},
    # the paper authors' code (facebookresearch/luckmatters ssl/real-dataset), docs/byol.md
    "reference": dict(bn_stats="per_view", bn_omit_var="centred", directpred_init="first",
                      directpred_floor=1e-4, directpred_set="after", predictor_wd="optimizer"),
}


def directpred_weights(F, eps=0.01, floor=0.0):
    """DirectPred's predictor for the correlation ``F`` (d, d): ``U diag(p) U^T``,
    ``F = U diag(s) U^T``, ``p_j = max(sqrt(max(s_j, 0) / max_k s_k) + eps, floor)``.
    Returns ``(W_p, p, U)``."""
    F = 0.5 * (F + F.T)
    xp = B.array_module(F)
    s, U = xp.linalg.eigh(F)                               # ascending
    s = xp.maximum(s, 0)
    smax = float(s.max())
    if smax <= 0:
        raise ValueError("DirectPred needs a correlation matrix F with a positive eigenvalue")
    p = xp.maximum(xp.sqrt(s / smax) + eps, floor)
    return (U * p) @ U.T, p, U


# ----------------------------------------------------------------------------- config
@dataclass
class BYOLConfig:
    """Settings of a BYOL run (the ``byol`` command's flags and help come from these fields).

    The defaults are the setting of every documented run (docs/byol.md: lr 0.5, weight decay
    0.02, batch 64, 300 steps, d 16); the HLTM runs take lr 0.1, d 10, no weight decay.
    Seeds (``backend.derive_seed(seed, stream)``): 1 the weights (online, predictor and its
    re-initialisations), 2 the training batches, 3 the diagnostics' evaluation batch."""
    hidden: tuple = setting((64,), "encoder hidden widths (each Linear -> [BN] -> ReLU)")
    out_dim: int = setting(16, "embedding width d", lo=1)
    predictor: str = setting("linear", "none | linear | mlp", choices=PREDICTORS)
    predictor_hidden: int = setting(32, "hidden width of the mlp predictor", lo=1)
    bn_mean: str = setting("normal", "BN mean part", choices=BN_MODES)
    bn_var: str = setting("normal", "BN variance part", choices=BN_MODES)
    bn_affine: bool = setting(False, "learn BN gamma, beta")
    bn_predictor: bool = setting(True, "BN also in the mlp predictor's hidden layer")
    bn_stats: str = setting("joint", "BN statistics over both views at once, or per_view",
                            choices=BN_STATS)
    bn_omit_var: str = setting("moment", "with bn_mean omit: divide by the second moment, or "
                               "the centred unbiased variance", choices=BN_OMIT_VAR)
    normalize: bool = setting(True, "L2-normalise prediction and target in the loss")
    symmetric: bool = setting(True, "symmetrise the loss over the two views")
    ema: float = setting(0.99, "target EMA decay; 0 = SimSiam (a copy of the online net)",
                         lo=0, hi=1, hi_open=True)
    lr: float = setting(0.5, "learning rate (encoder)", lo=0, lo_open=True)
    predictor_lr: float = setting(1.0, "predictor learning rate, relative to lr", lo=0,
                                  lo_open=True)
    weight_decay: float = setting(0.02, "weight decay eta", lo=0)
    predictor_wd: str = setting("ode", "predictor decay per step: lr*eta (ode) or "
                                "lr*predictor_lr*eta (optimizer)", choices=PREDICTOR_WD)
    momentum: float = setting(0.0, "SGD momentum", lo=0, hi=1, hi_open=True)
    steps: int = setting(300, "SGD steps", lo=1)
    batch_size: int = setting(64, "samples per step (2 views each)", lo=2)
    predictor_reinit_every: int = setting(0, "re-initialise the predictor every n steps (0 = "
                                          "never)", lo=0)
    directpred: bool = setting(False, "set the linear predictor by DirectPred instead of SGD")
    directpred_rho: float = setting(0.3, "DirectPred's running-average rate rho", lo=0, hi=1,
                                    hi_open=True)
    directpred_eps: float = setting(0.01, "eps added to DirectPred's p_j", lo=0)
    directpred_freq: int = setting(1, "set the predictor every freq steps", lo=1)
    directpred_floor: float = setting(0.0, "p_j >= floor (the authors: 1e-4)", lo=0)
    directpred_init: str = setting("zero", "F starts at 0, or at the first batch's "
                                   "correlation", choices=DIRECTPRED_INIT)
    directpred_set: str = setting("before", "set W_p before the forward of a step, or after "
                                  "its update", choices=DIRECTPRED_SET)
    seed: int = setting(0, "the run's seed (weights: stream 1, batches 2, evaluation 3)", lo=0)
    log_every: int = setting(10, "record diagnostics every this many steps", lo=1)
    eval_size: int = setting(512, "samples for the diagnostics", lo=2)

    @classmethod
    def from_preset(cls, name="minissl", **fields_):
        """A config from ``PRESETS[name]`` with ``fields_`` on top."""
        return cls(**{**PRESETS[B.check_choice("preset", name, tuple(PRESETS))], **fields_})

    def validate(self):
        if isinstance(self.hidden, (str, bytes)) or not hasattr(self.hidden, "__len__"):
            raise ValueError(f"hidden must be a tuple of widths, got {B.shown(self.hidden)}")
        self.hidden = tuple(B.check_int(f"hidden[{i}]", h, 1) for i, h in enumerate(self.hidden))
        B.check_settings(self)
        if self.directpred and self.predictor != "linear":
            raise ValueError(f"directpred needs predictor='linear', got {self.predictor!r}")
        return self

    def predictor_sizes(self, d):
        """Widths of the predictor for embeddings of width ``d`` (None: no predictor)."""
        return {"none": None, "linear": [d, d], "mlp": [d, self.predictor_hidden, d]}[
            self.predictor]

    def cost(self, sizes, draws_per_sample=None, masked=False, dtype="float64"):
        """The ``budget.Cost`` of ``train_byol`` with an encoder of widths ``sizes``
        (``budget.byol_cost``), nothing allocated."""
        return byol_cost(self, sizes, self.predictor_sizes(sizes[-1]), draws_per_sample,
                         masked, dtype)


# ----------------------------------------------------------------------------- the model
class BYOL:
    """Online encoder + predictor, EMA target, and the step that trains them.

    ``n_in``: input width n_0. ``masks``/``sizes``: optional masks and widths of the encoder
    (the HLTM tree network). ``backend``/``dtype`` as ``ReLUNet``. After ``loss_and_grads``
    the caches of the last pass are kept. Only ``step`` changes the model; the evaluations
    (``diagnostics``, ``implicit_contrastive``) run on a copy (``evaluation``).
    """

    def __init__(self, n_in, cfg=None, masks=None, sizes=None, *, backend="numpy",
                 dtype="float64", **overrides):
        self.cfg = cfg = replace(cfg or BYOLConfig(), **overrides).validate()
        self.rng = B.rng(B.derive_seed(cfg.seed, 1))       # the weights: stream 1
        n_in = B.check_int("n_in", n_in, 1)
        self.sizes = check_sizes(sizes if sizes is not None else [n_in, *cfg.hidden, cfg.out_dim])
        if self.sizes[0] != n_in:
            raise ValueError(f"sizes[0] must equal n_in={n_in}, got {self.sizes[0]}")
        self.d = self.sizes[-1]
        self.masked = masks is not None
        Cost(cfg.cost(self.sizes, masked=self.masked, dtype=dtype).memory[:1]).check()
        self.net_options = dict(backend=backend, dtype=dtype)
        self.online = ReLUNet(self.sizes, masks=masks, batchnorm=self._bn(), seed=self.rng,
                              **self.net_options)
        self.xp = self.online.xp
        self.target = self.online.copy()
        self.predictor = self._new_predictor()
        self.F = self.xp.zeros((self.d, self.d), dtype=self.online.dtype)   # predictor-input corr.
        self.step_count = 0
        self.opt = SGD(self.online.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
        self.opt_pred = self._pred_opt()

    def _bn(self, parts=True):
        """BatchNorm options of the encoder (``parts``) or of a BN without mean and variance
        parts (the mlp predictor with ``bn_predictor=False``: only an affine map, if any)."""
        cfg = self.cfg
        mean, var = (cfg.bn_mean, cfg.bn_var) if parts else ("omit", "omit")
        return dict(mean=mean, var=var, affine=cfg.bn_affine, omit_var=cfg.bn_omit_var,
                    groups=2 if cfg.bn_stats == "per_view" else 1)

    def _new_predictor(self):
        cfg, d = self.cfg, self.d
        if cfg.predictor == "none":
            return None
        sizes = [d, d] if cfg.predictor == "linear" else [d, cfg.predictor_hidden, d]
        return ReLUNet(sizes, batchnorm=self._bn(cfg.bn_predictor), seed=self.rng,
                       **self.net_options)

    def _pred_opt(self):
        if self.predictor is None:
            return None
        cfg = self.cfg
        wd = cfg.weight_decay / cfg.predictor_lr if cfg.predictor_wd == "ode" else cfg.weight_decay
        return SGD(self.predictor.parameters(), cfg.lr * cfg.predictor_lr, cfg.momentum, wd)

    # -- the parameters an optimiser sees
    def parameters(self):
        return self.online.parameters() + (self.predictor.parameters() if self.predictor else [])

    @property
    def Wp(self):
        """The linear predictor's weight (d, d) (None unless predictor == "linear")."""
        return self.predictor.weights[0] if self.cfg.predictor == "linear" else None

    def set_weights(self, online=None, predictor=None, target=None):
        """Copy weight lists into the online encoder, the predictor and the target (each a list
        aligned with that network's ``weights``; None leaves it as is)."""
        for name, net, Ws in (("online", self.online, online), ("target", self.target, target),
                              ("predictor", self.predictor, predictor)):
            if Ws is None:
                continue
            if net is None or len(Ws) != len(net.weights):
                raise ValueError(f"{name} must be a list of {len(net.weights) if net else 0} "
                                 f"weight arrays")
            for l, (W, mine) in enumerate(zip(Ws, net.weights)):
                W = net.asarray(W)
                if W.shape != mine.shape:
                    raise ValueError(f"{name}[{l}] must have shape {tuple(mine.shape)}, got "
                                     f"{tuple(W.shape)}")
                mine[...] = B.check_finite(f"{name}[{l}]", W, self.xp)

    # -- one pass
    def loss_and_grads(self, x1, x2, track=True):
        """Loss and gradients for views ``x1``, ``x2`` (N, n_0). Returns ``(L, grads, z)`` with
        ``grads`` aligned with ``parameters()`` and ``z`` the online embeddings (2N, d).
        ``track``: update DirectPred's ``F`` (and set ``W_p`` when due) with this batch."""
        x1 = self.online.check_input(x1, "x1")
        x2 = self.online.check_input(x2, "x2")
        if x1.shape != x2.shape:
            raise ValueError(f"x1 and x2 must have the same shape (N, {self.sizes[0]}) (two "
                             f"views of the same N samples), got {tuple(x1.shape)} and "
                             f"{tuple(x2.shape)}")
        x = self.xp.concatenate([x1, x2])                                    # (2N, n_0)
        z = self.online.forward(x)                                           # (2N, d)
        zt = self.target.forward(x)
        if track:
            self._track(z)
        p = z if self.predictor is None else self.predictor.forward(z)
        L, dp = byol_loss(p, zt, self.cfg.normalize, self.cfg.symmetric)
        dz = dp
        if self.predictor is not None:
            self.predictor.backward(dp, input_grad=True)
            dz = self.predictor.grad_input
        self.online.backward(dz)
        grads = self.online.grads() + (self.predictor.grads() if self.predictor else [])
        self._last, self.last_loss = (z, zt), L
        return L, grads, z

    def _track(self, z):
        """DirectPred's running correlation (tracked for every predictor: the alignment), and
        the predictor set from it before the forward when due."""
        cfg = self.cfg
        if self.predictor is None:
            return
        rho = cfg.directpred_rho
        if self.step_count == 0 and cfg.directpred_init == "first":
            self.F = (z.T @ z) / z.shape[0]
        else:
            self.F = rho * self.F + (1 - rho) * (z.T @ z) / z.shape[0]
        if cfg.directpred_set == "before":
            self._directpred_set()

    def _directpred_set(self):
        cfg = self.cfg
        if cfg.directpred and self.step_count % cfg.directpred_freq == 0:
            self.Wp[...] = directpred_weights(self.F, cfg.directpred_eps,
                                              cfg.directpred_floor)[0]

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
        if self.predictor is not None and not (cfg.directpred and cfg.directpred_set == "before"):
            self.opt_pred.step(grads[n_on:])
        if cfg.directpred_set == "after":
            self._directpred_set()
        ema_update(self.target.parameters(), self.online.parameters(), cfg.ema)
        self.step_count += 1
        return L

    # -- analysis
    def evaluation(self, x1, x2):
        """A copy of the model that has run ``loss_and_grads(x1, x2, track=False)``: its caches
        hold that pass; this model (weights, caches, F, W_p, optimisers) is left as it was."""
        ev = object.__new__(BYOL)
        ev.__dict__.update(self.__dict__, online=self.online.copy(), target=self.target.copy(),
                           predictor=None if self.predictor is None else self.predictor.copy())
        ev.loss_and_grads(x1, x2, track=False)
        return ev

    def implicit_contrastive(self, x1, x2, layer=0):
        """Split the gradient of the encoder's ``layer``-th Linear (followed by BN) into the parts
        through BN's mean, its variance and the rest (``layers.bn_weight_grad_parts``).

        Runs one forward/backward on ``[x1; x2]`` on a copy (``evaluation``: nothing in the
        model changes). Raises ``ValueError`` when that Linear is not followed by a BatchNorm.
        """
        layers = self.online.layers
        lins = [i for i, lay in enumerate(layers) if isinstance(lay, Linear)]
        if not 0 <= layer < len(lins) - 1:
            raise ValueError(f"layer must be in [0, {len(lins) - 2}], got {layer}")
        i = lins[layer]
        bn = layers[i + 1]
        if not isinstance(bn, BatchNorm):
            raise ValueError("implicit_contrastive needs BatchNorm after the layer "
                             "(bn_mean/bn_var not both 'omit')")
        layers = self.evaluation(x1, x2).online.layers
        return bn_weight_grad_parts(layers[i].cache[0], layers[i + 1].last_dy, layers[i + 1].cache)

    def diagnostics(self, x1, x2):
        """``collapse_diagnostics`` of the online embeddings of ``[x1; x2]`` plus the loss
        (evaluated on a copy: nothing in the model changes, ``evaluation``)."""
        ev = self.evaluation(x1, x2)
        z, zt = ev._last
        L = ev.last_loss
        N = z.shape[0] // 2
        d = collapse_diagnostics(z[:N], zt[N:], self.cfg.normalize)
        d["loss"] = L
        return d


def byol_for(source, cfg, hid=None, **net_options):
    """A ``BYOL`` for ``source``; on an HLTM (a source with ``network_masks``) the encoder is
    the masked tree network (``tree.network_sizes(hid)``, ``tree.network_masks(hid)``, hid
    default 10) with BN after each hidden layer."""
    if hasattr(source, "network_masks"):
        hid = hid or 10
        return BYOL(source.dim, cfg, masks=source.network_masks(hid),
                    sizes=source.network_sizes(hid), **net_options)
    return BYOL(source.dim, cfg, **net_options)


def source_cost(source, cfg, model=None):
    """``cfg.cost`` for training on ``source`` (``model``'s encoder, or a dense one from
    ``cfg``); an HLTM source draws every node per sample."""
    sizes = model.sizes if model is not None else [source.dim, *cfg.hidden, cfg.out_dim]
    return cfg.cost(sizes, getattr(source, "n_nodes", None),
                    model is not None and model.masked,
                    model.online.dtype if model is not None else "float64")


def train_byol(source, cfg=None, callback=None, model=None, stop=None, **overrides):
    """Train BYOL on ``source.triples(n, rng)`` (anchor and positive are the two views).

    Returns ``(model, History)``; every ``log_every`` steps (and at the last) the history gets
    a record ``{step, loss, eval_loss, effective_rank, std, collapsed_loss, seconds}`` (the
    diagnostics of a fixed evaluation batch; ``spectrum`` only at the last record) and
    ``callback(record)`` is called; returning False, or ``stop.is_set()``, ends the run.
    Its cost (``BYOLConfig.cost``) is checked against the environment's limits first
    (``ResourceLimitError``; the experiments check theirs before).
    """
    cfg = replace(cfg or BYOLConfig(), **overrides).validate()
    source_cost(source, cfg, model).check()
    model = model or BYOL(source.dim, cfg)
    rng = B.rng(B.derive_seed(cfg.seed, 2))                       # training batches
    ev1, ev2, _ = source.triples(cfg.eval_size, B.derive_seed(cfg.seed, 3))   # evaluation
    hist = History()
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        x1, x2, _ = source.triples(cfg.batch_size, rng)
        L = model.step(x1, x2)
        last = step == cfg.steps or stopped(stop)
        if step % cfg.log_every == 0 or last:
            d = model.diagnostics(ev1, ev2)
            rec = {"step": step, "loss": L, "eval_loss": d["loss"],
                   "effective_rank": d["effective_rank"], "std": d["std"],
                   "collapsed_loss": d["collapsed_loss"], "seconds": time.perf_counter() - t0}
            if last:
                rec["spectrum"] = d["spectrum"]
            hist.append(**rec)
            if notify(callback, rec):
                break
        if last:
            break
    return model, hist
