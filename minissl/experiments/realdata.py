"""Real data (digits, MNIST-1D, CIFAR-10, image folders): every method through the library's
one training loop (``train.train``) and its one BYOL (``byol.train_byol``), then probes.

Methods (``METHODS``), all with the same encoder ``n_0 -> hidden -> out_dim`` (ReLU between,
the top layer linear; bias-free unless ``bias``):

    raw          no network: the standardised input itself
    random       the encoder at its random initialisation
    simclr       InfoNCE in the SimCLR arrangement (``TrainConfig(negatives="in_batch")``;
                 with ``loss="simple"``: one given negative)
    covariance   the same loss, updates by the covariance operator
                 (``TrainConfig(update="covariance")``, SGD)
    supcon       SupCon (``negatives="supervised"``: positives share the label)
    byol         BYOL: mlp predictor with BN, EMA target, BN in encoder (``bn_mean``/``bn_var``)
    byol-nopred  BYOL without predictor (collapses)
    byol-linear  BYOL with a linear predictor trained by SGD
    directpred   BYOL with the linear predictor set by DirectPred
    supervised   the encoder + a linear head trained with softmax cross-entropy
                 (``losses.softmax_cross_entropy``), the same augmentations, Adam

Evaluation on the test split (``evaluate``): linear probe (scikit-learn logistic regression
after standardisation, fit on the unaugmented training split) and k-NN (k = 10) of the
encoder's output and of its last hidden layer, and the effective rank of the output
(``metrics.effective_rank``; near 1: collapse). Seeds (docs/design.md): the init uses
``derive_seed(seed, 1)``, the training data ``derive_seed(seed, 2)``; the split is fixed.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .. import backend as B
from ..analysis.probes import probe
from ..budget import STEP_OVERHEAD, Cost, mlp_activation_bytes, mlp_weights, training_work
from ..byol import BYOL, BYOLConfig, train_byol
from ..backend import setting
from ..checks import setting_type
from ..datasets import DATA, MASKS, RealData, load
from ..layers import BN_MODES, Linear
from ..losses import softmax_cross_entropy
from ..metrics import effective_rank, eigen_alignment
from ..nets import ReLUNet
from ..optim import SGD, Adam, notify, stopped
from ..train import TrainConfig, TrainingDiverged, train

METHODS = ("raw", "random", "simclr", "byol", "byol-nopred", "byol-linear", "directpred",
           "covariance", "supcon", "supervised")
TRAINED = METHODS[2:]
BYOL_METHODS = ("byol", "byol-nopred", "byol-linear", "directpred")
LOSSES = ("infonce", "simple")
OPTIMIZERS = ("adam", "sgd")
#: the augmentation of each data set (RealData fields) and its training length
DATA_DEFAULTS = {
    "digits": dict(shift=1, scale=0.0, noise=0.1, mask="random", keep=0.8, epochs=100),
    "mnist1d": dict(shift=4, scale=0.2, noise=0.1, mask="random", keep=0.9, epochs=100),
    "cifar10": dict(shift=2, scale=0.2, noise=0.05, mask="random", keep=0.9, epochs=20),
    "folder": dict(shift=2, scale=0.2, noise=0.05, mask="random", keep=0.9, epochs=50),
}
#: per method: optimiser, learning rate, temperature
METHOD_DEFAULTS = {
    "simclr": dict(optimizer="adam", lr=1e-3, tau=0.1),
    "supcon": dict(optimizer="adam", lr=1e-3, tau=0.1),
    "covariance": dict(optimizer="sgd", lr=0.05, tau=0.1),
    "supervised": dict(optimizer="adam", lr=1e-3),
    # BYOL: a faster predictor (10 x lr, the DirectPred paper's advice) and weight decay lift
    # the MNIST-1D hidden probe from 0.449 to 0.479 (docs/realdata.md, "BYOL's settings");
    # byol-nopred, its ablation, takes the same lr and weight decay
    "byol": dict(optimizer="sgd", lr=0.1, weight_decay=1e-3, predictor_lr=10.0),
    "byol-nopred": dict(optimizer="sgd", lr=0.1, weight_decay=1e-3),
    "byol-linear": dict(optimizer="sgd", lr=0.05, weight_decay=5e-4),
    "directpred": dict(optimizer="sgd", lr=0.05),
}
AUG_FIELDS = ("shift", "scale", "noise", "mask", "keep")
MAX_EPOCHS = 10_000


def _unused(c):
    """The first setting that ``c``'s method would silently ignore, as a ``ValueError``
    message, or None."""
    if c.optimizer == "adam" and c.weight_decay:
        return f"weight_decay must be 0 with optimizer='adam', got {c.weight_decay!r}"
    if c.loss != "infonce" and c.method not in ("simclr", "covariance"):
        return (f"loss must be 'infonce' for method={c.method!r} (only simclr and covariance "
                f"take 'simple'), got {c.loss!r}")
    if c.bias and c.method in BYOL_METHODS + ("covariance",):
        return (f"bias must be False for method={c.method!r} (the BYOL encoder has BN, the "
                f"covariance operator's identity needs a bias-free net)")
    return None


@dataclass
class RealDataConfig:
    """One run (the ``realdata`` command's flags and the app's fields are made from these
    settings); None = the data's / method's default (``resolve``: ``DATA_DEFAULTS``,
    ``METHOD_DEFAULTS``)."""
    data: str = setting("digits", "digits, mnist1d (made locally); cifar10, folder (--path)",
                        choices=DATA)
    path: str = setting("", "the local folder of cifar10 / folder data")
    method: str = setting("simclr", "how the encoder is trained", choices=METHODS)
    seed: int = setting(0, "init (stream 1) and training data (stream 2)", lo=0)
    hidden: tuple = setting((256, 256), "hidden widths, at least one")
    out_dim: int = setting(64, "output width (the embedding)", label="output width", lo=1,
                           hi=4096)
    bias: bool = setting(False, "per-unit biases (the theory's nets have none)")
    epochs: int | None = setting(None, "passes over the training split (steps = epochs x "
                                 "N / batch)", lo=0, hi=MAX_EPOCHS)
    batch_size: int = setting(256, "samples per step (2 views each)", lo=4, hi=1 << 14)
    optimizer: str | None = setting(None, "adam | sgd (BYOL, covariance: sgd only)",
                                    choices=OPTIMIZERS)
    lr: float | None = setting(None, "learning rate", lo=0, lo_open=True)
    momentum: float = setting(0.9, "SGD momentum (sgd)", lo=0, hi=0.999)
    weight_decay: float | None = setting(None, "SGD weight decay (sgd; BYOL: encoder and "
                                         "predictor)", lo=0, hi=1)
    tau: float | None = setting(None, "InfoNCE / SupCon temperature", lo=1e-3)
    loss: str = setting("infonce", "simclr / covariance: infonce (in-batch negatives) | "
                        "simple (one given negative)", choices=LOSSES)
    shift: int | None = setting(None, "augmentation: translation by up to this many pixels",
                                lo=0)
    scale: float | None = setting(None, "amplitude scaling U(1 - scale, 1 + scale)", lo=0,
                                  hi=1)
    noise: float | None = setting(None, "Gaussian noise std, times the data's RMS", lo=0)
    mask: str | None = setting(None, "none | random | complementary", choices=MASKS)
    keep: float | None = setting(None, "random mask: keep probability", lo=0, hi=1,
                                 lo_open=True)
    bn_mean: str = setting("normal", "BYOL encoder BN: mean part", choices=BN_MODES)
    bn_var: str = setting("normal", "BYOL encoder BN: variance part", choices=BN_MODES)
    ema: float = setting(0.99, "BYOL target EMA (0: SimSiam)", lo=0, hi=0.9999)
    predictor_hidden: int = setting(256, "BYOL mlp predictor hidden width", lo=1, hi=4096)
    predictor_lr: float | None = setting(None, "BYOL predictor learning rate, relative to lr "
                                         "(byol: 10)", lo=0, lo_open=True, hi=100)
    backend: str = setting("numba", "numba | numpy (cupy: a GPU)", choices=B.BACKENDS)
    dtype: str = setting("float32", "float32 | float64", choices=B.DTYPES)
    log_every: int = setting(10, "a record every this many epochs (and at the last)", lo=1)
    probe_every: int = setting(0, "probe the output every this many epochs (0: at the end)",
                               lo=0)
    knn_k: int = setting(10, "neighbours of the k-NN probe", lo=1)

    def resolve(self):
        """A copy with every None replaced by the data's and method's default."""
        B.check_choice("data", self.data, DATA)
        B.check_choice("method", self.method, METHODS)
        fill = {**DATA_DEFAULTS[self.data], "optimizer": "adam", "lr": 1e-3, "tau": 0.1,
                "weight_decay": 0.0, "predictor_lr": 1.0,
                **METHOD_DEFAULTS.get(self.method, {})}
        return replace(self, **{k: v for k, v in fill.items() if getattr(self, k) is None})

    def validate(self):
        """The resolved copy, checked: every setting against its ``setting`` bounds and
        choices (integers as ``int``), the widths, and the settings the method takes."""
        c = B.check_settings(self.resolve())
        c = replace(c, **{f.name: int(getattr(c, f.name)) for f in fields(c)
                          if setting_type(f) is int})
        if isinstance(c.hidden, (str, bytes)) or not hasattr(c.hidden, "__len__") \
                or not len(c.hidden):
            raise ValueError(f"hidden must be a tuple of one or more widths, got {c.hidden!r}")
        c.hidden = tuple(B.check_int(f"hidden[{i}]", h, 1, 4096) for i, h in enumerate(c.hidden))
        if c.method in BYOL_METHODS + ("covariance",) and c.optimizer != "sgd":
            raise ValueError(f"optimizer must be 'sgd' for method={c.method!r}, got "
                             f"{c.optimizer!r}")
        problem = _unused(c)
        if problem:
            raise ValueError(problem)
        return c

    def sizes(self, n_0):
        return [n_0, *self.hidden, self.out_dim]

    def source(self, data=None, limits=None):
        """The ``RealData`` source of this run (``data``: an already loaded ``Dataset``)."""
        data = data if data is not None else load(self.data, self.path or None)
        return RealData(data, **{k: getattr(self, k) for k in AUG_FIELDS}, limits=limits)

    def steps_per_epoch(self, n_train):
        return max(1, math.ceil(n_train / self.batch_size))

    def cost(self, n_0, n_train, n_test, n_classes=10):
        """The run's ``limits.Cost`` for data of width ``n_0`` (a resolved config), nothing
        allocated: training (2 x batch views per step through the encoder, 3x for BYOL's
        target and predictor, the covariance operator's Jacobians ~ ``2 batch n_L`` weights
        per layer), and the evaluation (both splits through the encoder, the probes)."""
        sizes, rows = self.sizes(n_0), 2 * self.batch_size
        steps = self.epochs * self.steps_per_epoch(n_train) if self.method in TRAINED else 0
        factor = {"covariance": 6.0, "supervised": 0.5}.get(
            self.method, 2.0 if self.method in BYOL_METHODS else 1.0)
        work = factor * training_work(sizes, rows, steps) + steps * rows * rows * self.out_dim
        n_eval = n_train + n_test
        evaluation = n_eval * mlp_weights(sizes) + 50 * n_eval * (
            self.hidden[-1] + self.out_dim) * n_classes + 2 * n_test * n_train * (
            self.hidden[-1] + self.out_dim) + STEP_OVERHEAD
        jac = rows * self.out_dim * max(sizes) * 8 if self.method == "covariance" else 0
        memory = ((8 * 4 * mlp_weights(sizes) + 4 * mlp_activation_bytes(sizes, rows, "float64")
                   + jac, "the networks and a training batch", f"batch_size={self.batch_size}, "
                   f"hidden={self.hidden}"),
                  (3 * mlp_activation_bytes(sizes, n_eval, "float64"), "the evaluation",
                   f"data={self.data}"))
        param = f"method={self.method}, epochs={self.epochs}, batch_size={self.batch_size}"
        return Cost(memory, ((work, "training", param),
                             (evaluation, "the evaluation (probes)", f"data={self.data}")))


# ----------------------------------------------------------------------------- evaluation
def features(net, x):
    """``(hidden, output)``: the last hidden layer (after its ReLU) and the output for ``x``
    (N, n_0), float64; ``net`` None: the input itself for both."""
    if net is None:
        return x, x
    gs, fs = net.passes(x)
    return tuple(np.asarray(B.to_numpy(a), np.float64) for a in (fs[-1], gs[-1]))


def evaluate(net, source, knn_k=10):
    """Linear and k-NN probes of the output and the last hidden layer (fit on the training
    split, scored on the test split) and the effective rank of the test outputs."""
    (xtr, ytr), (xte, yte) = source.train_set(), source.test_set()
    (htr, ztr), (hte, zte) = features(net, xtr), features(net, xte)
    k = min(knn_k, len(ytr))
    return {"linear_probe": float(probe(ztr, ytr, zte, yte, "linear")[0]),
            "linear_probe_hidden": float(probe(htr, ytr, hte, yte, "linear")[0]),
            "knn": float(probe(ztr, ytr, zte, yte, "knn", k=k)[0]),
            "knn_hidden": float(probe(htr, ytr, hte, yte, "knn", k=k)[0]),
            "effective_rank": effective_rank(zte), "effective_rank_hidden": effective_rank(hte)}


def quick_probe(net, source, n=1000):
    """The output's linear probe on at most ``n`` training and test samples (the app's curve)."""
    (xtr, ytr), (xte, yte) = source.train_set(), source.test_set()
    ztr, zte = features(net, xtr[:n])[1], features(net, xte[:n])[1]
    return float(probe(ztr, ytr[:n], zte, yte[:n], "linear")[0])


# ----------------------------------------------------------------------------- training
def encoder(cfg, n_0, limits=None):
    """The run's encoder ``ReLUNet(cfg.sizes(n_0))``, init from ``derive_seed(seed, 1)``."""
    return ReLUNet(cfg.sizes(n_0), bias=cfg.bias, seed=B.derive_seed(cfg.seed, 1),
                   backend=cfg.backend, dtype=cfg.dtype, limits=limits)


def initial_weights(cfg, n_0):
    """The first-layer weights (n_1, n_0) of the run's encoder at initialisation, BYOL's
    online encoder for the BYOL methods (``first_layer_figure`` of the change ``W - W(0)``)."""
    cfg = cfg.validate()
    net = (BYOL(n_0, byol_config(cfg, 1, 1), backend=cfg.backend, dtype=cfg.dtype).online
           if cfg.method in BYOL_METHODS else encoder(cfg, n_0))
    return B.to_numpy(net.weights[0]).copy()


def train_config(cfg, steps, log_steps):
    """The ``TrainConfig`` of simclr / covariance / supcon."""
    negatives = ("supervised" if cfg.method == "supcon" else
                 "in_batch" if cfg.loss == "infonce" else "given")
    sgd = (dict(momentum=cfg.momentum, weight_decay=cfg.weight_decay)
           if cfg.optimizer == "sgd" else {})
    return TrainConfig(loss="infonce" if cfg.method == "supcon" else cfg.loss, tau=cfg.tau,
                       lr=cfg.lr, optimizer=cfg.optimizer, negatives=negatives, steps=steps,
                       batch_size=cfg.batch_size, seed=B.derive_seed(cfg.seed, 2),
                       log_every=log_steps,
                       update="covariance" if cfg.method == "covariance" else "gradient", **sgd)


def byol_config(cfg, steps, log_steps):
    """The ``BYOLConfig`` of the byol methods (SGD, momentum; encoder BN per bn_mean/bn_var)."""
    predictor = {"byol": "mlp", "byol-nopred": "none"}.get(cfg.method, "linear")
    return BYOLConfig(hidden=cfg.hidden, out_dim=cfg.out_dim, predictor=predictor,
                      predictor_hidden=cfg.predictor_hidden, predictor_lr=cfg.predictor_lr,
                      bn_mean=cfg.bn_mean, bn_var=cfg.bn_var, ema=cfg.ema, lr=cfg.lr,
                      momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                      steps=steps, batch_size=cfg.batch_size, directpred=cfg.method ==
                      "directpred", seed=B.derive_seed(cfg.seed, 1), log_every=log_steps,
                      eval_size=256)


def train_supervised(net, source, cfg, steps, log_steps, callback=None, stop=None):
    """The encoder + a linear head (out_dim -> classes, with bias) trained with softmax
    cross-entropy on one augmented view per sample, Adam (or SGD with momentum and weight
    decay); ``callback({step, loss, seconds})`` every ``log_steps`` steps. Returns the number
    of steps run."""
    head = Linear(cfg.out_dim, source.n_classes, bias=True, rng=B.derive_seed(cfg.seed, 3),
                  dtype=cfg.dtype, backend=cfg.backend)
    params = net.parameters() + head.parameters()
    opt = (SGD(params, cfg.lr, cfg.momentum, cfg.weight_decay) if cfg.optimizer == "sgd"
           else Adam(params, cfg.lr))
    rng, t0, window = B.rng(B.derive_seed(cfg.seed, 2)), time.perf_counter(), []
    labels = np.asarray(source.data.y_train)
    for step in range(1, steps + 1):
        idx, x = source.sample(cfg.batch_size, rng)
        v = source.augment(x, 1, rng)[:, 0]                       # (N, n_0)
        L, ds = softmax_cross_entropy(head.forward(net.forward(v)), labels[idx])
        if not math.isfinite(L):
            raise TrainingDiverged(f"training diverged at step {step}: the loss became {L}. "
                                   f"Try a smaller learning rate (lr={cfg.lr}).")
        net.backward(head.backward(net.asarray(ds)))
        opt.step(net.grads() + head.grads)
        window.append(L)
        if (step % log_steps == 0 or step == steps) and notify(
                callback, {"step": step, "loss_mean": float(np.mean(window)),
                           "seconds": time.perf_counter() - t0}):
            break
        window = window if step % log_steps else []
        if stopped(stop):
            break
    return step


def fit(cfg, source, on_record, stop=None, limits=None):
    """Train the method's network; ``on_record(rec, net)`` after every logged step (returns
    False to end the run). Returns ``(net, extra)``: the encoder, and ``{step: steps run}``
    with, for the BYOL methods, the predictor's alignment with its input's correlation
    (``byol_extra``)."""
    steps_epoch = cfg.steps_per_epoch(len(source.data.y_train))
    steps, log_steps = cfg.epochs * steps_epoch, cfg.log_every * steps_epoch
    if cfg.method in BYOL_METHODS:
        holder = {}

        def byol_record(rec):
            return on_record({**rec, "loss_mean": rec["loss"]}, holder.get("net"))
        bcfg = byol_config(cfg, steps, log_steps)
        model = BYOL(source.dim, bcfg, backend=cfg.backend, dtype=cfg.dtype)
        holder["net"] = model.online
        train_byol(source, bcfg, callback=byol_record, model=model, stop=stop)
        return model.online, {**byol_extra(model), "step": model.step_count}
    net = encoder(cfg, source.dim, limits)
    if cfg.method == "supervised":
        done = train_supervised(net, source, cfg, steps, log_steps,
                                lambda r: on_record(r, net), stop)
    else:
        done = len(train(net, source, train_config(cfg, steps, log_steps),
                         callback=lambda r: on_record(r, net), stop=stop))
    return net, {"step": done}


def byol_extra(model):
    """A linear predictor's alignment with the correlation F of its input
    (``metrics.eigen_alignment``): ``offdiag`` and the mean cosine of F's top 10 eigenvectors."""
    if model.Wp is None:
        return {}
    a = eigen_alignment(model.F, model.Wp)
    return {"predictor_offdiag": a["offdiag"], "predictor_cosine": float(a["cosines"][:10].mean()),
            "predictor_asym": a["asym"]}


def check_cost(cfg, source, limits=None):
    """Check the cost of the validated ``cfg`` on its ``source`` against ``limits``
    (``ResourceLimitError``); returns ``source``."""
    d = source.data
    cfg.cost(source.dim, len(d.y_train), len(d.y_test), source.n_classes).check(limits)
    return source


def run(cfg, callback=None, stop=None, limits=None, data=None):
    """Train and evaluate per ``cfg`` (a ``RealDataConfig``); returns the records.

    While training: ``{epoch, step, loss, seconds, weights}`` every ``log_every`` epochs
    (``weights``: the first layer's, (n_1, n_0); ``linear_probe`` too every ``probe_every``
    epochs, on at most 1,000 samples). The last record has the evaluation (``evaluate``), the
    run's ``seconds`` (training and evaluation) and ``train_seconds``. ``callback(record)``
    after each (False ends the training); ``stop.is_set()`` every step. ``data``: an already
    loaded ``Dataset``; ``cfg.cost`` is checked against ``limits`` first."""
    cfg = cfg.validate()
    t0 = time.perf_counter()
    source = check_cost(cfg, cfg.source(data, limits), limits)
    steps_epoch, records = cfg.steps_per_epoch(len(source.data.y_train)), []

    def on_record(r, net):
        epoch = r["step"] / steps_epoch
        rec = {"epoch": epoch, "step": r["step"], "loss": r["loss_mean"],
               "seconds": r["seconds"], "weights": B.to_numpy(net.weights[0]).copy()}
        if "cos_by_layer" in r:
            rec["cos"] = float(np.nanmean(r["cos_by_layer"]))
        if "effective_rank" in r:
            rec["effective_rank"] = r["effective_rank"]
        if cfg.probe_every and round(epoch) % cfg.probe_every == 0:
            rec["linear_probe"] = quick_probe(net, source)
        records.append(rec)
        return notify(callback, rec) is not True

    net, extra = None, {}
    if cfg.method == "random":
        net = encoder(cfg, source.dim, limits)
    elif cfg.method in TRAINED and cfg.epochs:
        net, extra = fit(cfg, source, on_record, stop, limits)
    t_train = time.perf_counter() - t0
    step = extra.pop("step", 0)
    final = {"epoch": step / steps_epoch, "step": step, **evaluate(net, source, cfg.knn_k),
             **extra, "train_seconds": t_train, "seconds": time.perf_counter() - t0}
    if net is not None:
        final["weights"] = B.to_numpy(net.weights[0]).copy()
    records.append(final)
    notify(callback, final)
    return records


def summary(cfg, records):
    """The JSON object of one run: the settings and the final record's numbers."""
    last = {k: v for k, v in records[-1].items() if k != "weights"}
    loss = [r["loss"] for r in records[:-1]]
    return {"data": cfg.data, "method": cfg.method, "seed": cfg.seed, **last,
            "loss": loss[-1] if loss else None,
            "settings": {k: v for k, v in asdict(cfg.resolve()).items()
                         if k not in ("data", "method", "seed")}}


# ----------------------------------------------------------------------------- tables
#: the claims of docs/realdata.md: (label, RealDataConfig fields over the base) per claim
CLAIMS = {
    "covariance": (("gradient, InfoNCE (SGD)", dict(method="simclr", optimizer="sgd",
                                                    lr=0.05)),
                   ("covariance, InfoNCE", dict(method="covariance")),
                   ("gradient, simple (SGD)", dict(method="simclr", optimizer="sgd", lr=0.05,
                                                   loss="simple")),
                   ("covariance, simple", dict(method="covariance", loss="simple"))),
    "byol": (("BYOL, mlp predictor, BN", dict(method="byol")),
             ("no predictor", dict(method="byol-nopred")),
             ("BN mean detach", dict(method="byol", bn_mean="detach")),
             ("BN mean omit", dict(method="byol", bn_mean="omit")),
             ("BN var detach", dict(method="byol", bn_var="detach")),
             ("BN var omit", dict(method="byol", bn_var="omit")),
             ("no BN", dict(method="byol", bn_mean="omit", bn_var="omit")),
             ("EMA 0 (SimSiam)", dict(method="byol", ema=0.0))),
    "directpred": (("linear predictor (SGD)", dict(method="byol-linear")),
                   ("DirectPred", dict(method="directpred"))),
    "decoupling": (("no augmentation", dict(mask="none", shift=0, scale=0.0, noise=0.0)),
                   ("random masks p=0.5", dict(mask="random", keep=0.5, shift=0, scale=0.0,
                                               noise=0.0)),
                   ("complementary masks", dict(mask="complementary", shift=0, scale=0.0,
                                                noise=0.0))),
}
TABLE_KEYS = ("linear_probe", "linear_probe_hidden", "knn", "knn_hidden", "effective_rank",
              "cos", "predictor_offdiag", "predictor_cosine", "seconds")


def methods_rows(methods):
    """``(label, fields)`` rows, one per method (the ``--table`` of the command)."""
    return tuple((m, dict(method=m)) for m in methods)


def table(base, rows, seeds=(0, 1, 2), callback=None, stop=None, limits=None):
    """Run every ``(label, fields)`` of ``rows`` over ``base`` (a ``RealDataConfig``) for each
    seed; one row per label: ``{label, settings, seeds, runs, KEY: (mean, sd)}`` (``runs``:
    the final record of each seed's run that did not diverge, with its ``seed``) for the
    ``TABLE_KEYS`` the runs report (``cos``: the mean over training of the cosine between the
    covariance step and the gradient; ``diverged``: how many seeds' runs diverged, left out of
    the means). ``callback(row)`` after each row (False ends). Every row's settings and cost
    are checked before the first run (a bad last row fails at once, not after the others)."""
    data, out = load(base.data, base.path or None), []
    for _, kw in rows:
        c = replace(base, **kw).validate()
        check_cost(c, c.source(data, limits), limits)
    for label, kw in rows:
        runs, diverged = [], 0
        for s in seeds:
            try:
                records = run(replace(base, **kw, seed=s), stop=stop, limits=limits, data=data)
            except TrainingDiverged:
                diverged += 1
                continue
            cos = [r["cos"] for r in records[:-1] if "cos" in r]
            runs.append({**records[-1], "seed": s,
                         **({"cos": float(np.mean(cos))} if cos else {})})
        row = {"label": label, "settings": kw, "seeds": list(seeds), "runs": runs,
               "diverged": diverged}
        for k in TABLE_KEYS:
            vals = [r[k] for r in runs if k in r]
            if vals:
                row[k] = (float(np.mean(vals)), float(np.std(vals)))
        out.append(row)
        if notify(callback, row) or stopped(stop):
            break
    return out


def table_lines(rows):
    """The table as rows of strings, header first: mean ± sd of each key any row has."""
    keys = [k for k in TABLE_KEYS if any(k in r for r in rows)]
    div = any(r.get("diverged") for r in rows)
    out = [["setting", *keys] + ["diverged"] * div]
    for r in rows:
        fmt = lambda k: "{:.1f}" if k in ("effective_rank", "seconds") else "{:.3f}"  # noqa
        out.append([r["label"]] + [f"{fmt(k).format(r[k][0])} ± {fmt(k).format(r[k][1])}"
                                   if k in r else "" for k in keys] +
                   [f"{r.get('diverged', 0)}/{len(r['seeds'])}"] * div)
    return out


realdata_run, realdata_summary, realdata_table, realdata_table_lines = run, summary, table, \
    table_lines
