"""``python -m minissl ...`` / ``minissl ...``: experiments and sweeps that print tables.

Subcommands live in the registry ``COMMANDS``: name -> ``(add_<name>_parser, run_<name>)``.
``add_<name>_parser(subparsers)`` adds the subcommand's parser; ``run_<name>(args)`` runs it
and returns an exit status. Adding a command is two lines once those functions exist::

    COMMANDS["byol"] = (add_byol_parser, run_byol)

Shared flag groups: ``add_training_flags`` (optimiser, backend, dtype, update, progress)
for every training command. Flags map onto config dataclass fields (``--batch-size`` ->
``batch_size``); a bad value is reported as ``minissl <cmd>: error: --flag: ...`` (exit 2).

Commands
- ``hltm``: train the tree network on an HLTM, one row per epoch (epoch 0 = untrained): the
  mean normalized correlation per tree depth, the loss, the time; the ceiling first.
- ``sweep``: presets × polarity ranges × hid × losses × seeds in parallel processes
  (joblib), a table of mean ± std over seeds (untrained, trained and ceiling per depth).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from . import backend as B
from .hltm import HLTM, check_polarity, correlation_ceiling, normalized_correlation
from .losses import LOSSES, SINGLE_NEGATIVE
from .train import TrainConfig, TrainingDiverged, loss_and_grads, train

PRESETS = ("theory", "reference")
REF_TEMP = 0.01      # the reference code's temperature T on MSE; tau = T * hid / 2


# ----------------------------------------------------------------------------- HLTM experiment
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
    backend: str = "numpy"             # "numpy" | "numba" | "cupy"
    dtype: str = "float64"
    eval_samples: int = 10000          # fixed evaluation set for the correlation

    def apply_preset(self):
        """A copy with every ``None`` field filled from the preset, validated."""
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        ref = self.preset == "reference"
        hid = self.hid
        fill = {"loss": "ref_nce" if ref else "infonce",
                "tau": REF_TEMP * hid / 2 if ref and isinstance(hid, int) else 0.1,
                "bias": ref, "normalize": ref}
        cfg = replace(self, **{k: v for k, v in fill.items() if getattr(self, k) is None})
        return cfg.validate()

    def validate(self):
        tree_kw = dict(depth=self.depth, num_children=self.num_children,
                       polarity=self.polarity, keep_depth=self.keep_depth,
                       negatives=self.negatives)
        HLTM(**tree_kw)     # raises ValueError naming the field
        check_polarity(self.polarity)
        for name in ("hid", "samples_per_epoch", "epochs", "eval_samples"):
            v = getattr(self, name)
            lo = 0 if name == "epochs" else (2 if name == "eval_samples" else 1)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if self.samples_per_epoch < self.batch_size:
            raise ValueError(f"samples_per_epoch must be >= batch_size ({self.batch_size}), "
                             f"got {self.samples_per_epoch}")
        B.check_backend(self.backend)
        B.check_dtype(self.dtype)
        self.train_config(steps=1).validate()
        if self.negatives > 1 and self.loss != "infonce":
            raise ValueError(f"negatives must be 1 for loss={self.loss!r} (only infonce takes "
                             f"several), got {self.negatives}")
        if self.update != "gradient" and None not in (self.bias, self.normalize):
            # train() checks the net x update combination; ask it on a one-step toy run
            # (hid 1, batch 2) so a bad combination is refused before anything is printed
            tree = HLTM(self.depth, self.num_children, self.polarity, keep_depth=self.keep_depth,
                        negatives=self.negatives)
            toy = tree.network(1, bias=self.bias, normalize=self.normalize)
            try:
                with np.errstate(all="ignore"):
                    train(toy, tree, replace(self, batch_size=2).train_config(steps=1))
            except TrainingDiverged:
                pass
        return self

    def train_config(self, steps):
        return TrainConfig(loss=self.loss, tau=self.tau, margin=self.margin, lr=self.lr,
                           momentum=self.momentum, weight_decay=self.weight_decay,
                           steps=steps, batch_size=self.batch_size, update=self.update,
                           seed=derive_seed(self.seed, 2), log_every=1)

    @property
    def steps_per_epoch(self):
        return self.samples_per_epoch // self.batch_size

    def build(self):
        """``(tree, net)`` for this configuration (call on an ``apply_preset`` config)."""
        tree = HLTM(self.depth, self.num_children, self.polarity, seed=self.seed,
                    keep_depth=self.keep_depth, negatives=self.negatives)
        net = tree.network(self.hid, bias=self.bias, normalize=self.normalize,
                           norm_eps=1e-4 if self.normalize else 0.0, seed=derive_seed(self.seed, 1),
                           backend=self.backend, dtype=self.dtype)
        return tree, net


def derive_seed(seed, stream):
    """An independent integer seed for one use (1 init, 2 training data, 3 evaluation)."""
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1)[0])


def hltm_experiment(cfg, on_epoch=None, on_step=None):
    """Train per ``cfg`` (an ``HLTMConfig``); returns ``(records, ceiling)``.

    ``records[e]`` for epoch e = 0..epochs (0 = untrained): ``{"epoch", "corr_by_depth",
    "corr" (per latent, BFS), "loss", "seconds"}``; the loss of epoch e >= 1 is the mean
    training loss of its steps, of epoch 0 the mean over 10 fresh batches. ``ceiling`` is a
    ``Correlation`` on the same fixed evaluation set. ``on_epoch(record)`` is called as each
    epoch finishes, ``on_step(step)`` after each step. A diverged run raises
    ``TrainingDiverged`` with the completed records in ``exc.records``.
    """
    cfg = cfg.apply_preset()
    tree, net = cfg.build()
    x_eval, z_eval = tree.sample(cfg.eval_samples, derive_seed(cfg.seed, 3))
    ceiling = correlation_ceiling(tree, x=x_eval, z=z_eval)
    t0 = time.perf_counter()
    records = []

    def emit(epoch, loss):
        corr = normalized_correlation(tree, net, x=x_eval, z=z_eval)
        rec = {"epoch": epoch, "corr_by_depth": corr.by_depth, "corr": corr.per_latent,
               "loss": loss, "seconds": time.perf_counter() - t0}
        records.append(rec)
        if on_epoch is not None:
            on_epoch(rec)

    tc = cfg.train_config(steps=max(1, cfg.epochs * cfg.steps_per_epoch))
    rng0 = B.rng(derive_seed(cfg.seed, 4))
    emit(0, float(np.mean([loss_and_grads(net, tree.triples(cfg.batch_size, rng0), tc)[0]
                           for _ in range(10)])))
    if cfg.epochs == 0:
        return records, ceiling
    losses = []

    def callback(step, rec, _net):
        losses.append(rec["loss"])
        if on_step is not None:
            on_step(step)
        if step % cfg.steps_per_epoch == 0:
            emit(step // cfg.steps_per_epoch, float(np.mean(losses)))
            losses.clear()

    try:
        with np.errstate(over="ignore", invalid="ignore"):    # divergence is reported below
            train(net, tree, tc, callback=callback)
    except TrainingDiverged as exc:
        exc.records = records
        raise
    return records, ceiling


# ----------------------------------------------------------------------------- shared flags
def _positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {s}")
    return v


def add_training_flags(p):
    """Optimiser / execution flags every training command takes."""
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=float, default=None, help="learning rate (> 0)")
    g.add_argument("--momentum", type=float, default=None, help="SGD momentum in [0, 1)")
    g.add_argument("--weight-decay", type=float, default=None, help="L2 weight decay (>= 0)")
    g.add_argument("--batch-size", type=int, default=None, help="anchors per step")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--update", choices=("gradient", "covariance"), default=None,
                   help="gradient: SGD on the loss; covariance: W += lr * OP vec(W)")
    g.add_argument("--backend", choices=B.BACKENDS, default=None,
                   help="array backend of the network (cupy needs a GPU)")
    g.add_argument("--dtype", choices=B.DTYPES, default=None)
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (tqdm, only when stderr is a terminal; default on)")
    g.add_argument("--threads", type=_positive_int, default=1,
                   help="BLAS threads per run (default 1: the matrices are small)")
    return g


def _add_hltm_model_flags(p, multi=False):
    """Tree / network / loss flags; with ``multi`` the swept ones take several values."""
    nargs = "+" if multi else None
    g = p.add_argument_group("model")
    g.add_argument("--preset", choices=PRESETS, nargs=nargs, default=None,
                   help="theory (bias-free, unnormalised) or reference (luckmatters ssl/hltm)")
    g.add_argument("--depth", type=int, default=None, help="tree depth L (default 5)")
    g.add_argument("--num-children", type=int, default=None, help="children per latent (2)")
    if multi:
        g.add_argument("--polarity", nargs="+", default=None, metavar="LO:HI",
                       help="polarity ranges of |rho| to sweep, e.g. 0.7:1.0 0.3:0.7")
        g.add_argument("--hid", type=int, nargs="+", default=None, help="units per latent")
        g.add_argument("--loss", nargs="+", default=None,
                       help=f"losses to sweep ({', '.join(LOSSES)}; 'preset' = the preset's)")
    else:
        g.add_argument("--polarity", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                       help="range of |rho| (default 0.7 1.0)")
        g.add_argument("--hid", type=int, default=None, help="units per latent (10)")
        g.add_argument("--loss", default=None, help=f"one of {', '.join(LOSSES)}")
    g.add_argument("--keep-depth", type=int, default=None,
                   help="positives share latents of tree depth >= this (default: root only)")
    g.add_argument("--tau", type=float, default=None,
                   help="temperature (theory 0.1; reference 0.01*hid/2)")
    g.add_argument("--margin", type=float, default=None, help="soft-triplet margin r_0")
    g.add_argument("--negatives", type=int, default=None,
                   help="H negatives per anchor (1; only infonce takes more"
                        + ("; the sweep uses 1 for the other losses)" if multi else ")"))
    g.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="output x/(||x||+1e-4)")
    g.add_argument("--samples-per-epoch", type=int, default=None, help="(64000)")
    g.add_argument("--eval-samples", type=int, default=None,
                   help="evaluation set size for the correlation (10000)")
    g.add_argument("--seed", type=int, default=None)
    return g


_FIELD_FLAGS = {f.name: "--" + f.name.replace("_", "-") for f in fields(HLTMConfig)}


def _config_from_args(args, **override):
    """An ``HLTMConfig`` from parsed args (None = default / preset), with ``override``."""
    kw = {}
    for f in fields(HLTMConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            kw[f.name] = tuple(v) if f.name == "polarity" else v
    kw.update(override)
    return HLTMConfig(**kw)


def _flag_error(parser, exc):
    """Report a config ValueError as a usage error naming the flag (exit status 2)."""
    msg = str(exc)
    head = msg.split(" ", 1)[0].split("[", 1)[0].split("=", 1)[0]
    flag = _FIELD_FLAGS.get(head)
    if flag is None and head == "sizes":
        flag = "--hid"
    parser.error(f"{flag}: {msg}" if flag else msg)


def limit_threads(n):
    """Limit BLAS threads to ``n`` while training (``backend.blas_threads``)."""
    return B.blas_threads(n)


def _progress(args, total, desc):
    """A tqdm bar on a terminal (unless --no-progress), else None."""
    if args.progress is False or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)


# ----------------------------------------------------------------------------- hltm command
def add_hltm_parser(subparsers):
    p = subparsers.add_parser(
        "hltm", help="train the tree network on an HLTM; per-epoch correlation per depth",
        description="Train the HLTM tree network and print, per epoch (0 = untrained), the "
                    "mean normalized correlation at each tree depth, the loss and the time. "
                    "The first row is the ceiling (exact posterior).")
    _add_hltm_model_flags(p)
    add_training_flags(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON object per epoch: epoch, corr_by_depth, loss, seconds")
    return p


def _fmt_row(cells, widths):
    return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))


def run_hltm(args):
    try:
        cfg = _config_from_args(args).apply_preset()
    except ValueError as exc:
        _flag_error(args._parser, exc)
    depths = list(range(cfg.depth, 0, -1))
    heads = ["epoch"] + [f"d{d}" for d in depths] + ["loss", "seconds"]
    widths = [7] + [6] * len(depths) + [11, 8]
    out = sys.stdout
    bar = _progress(args, cfg.epochs * cfg.steps_per_epoch, "hltm")

    if not args.json:
        print(f"# {cfg.preset} preset: depth {cfg.depth}, {cfg.num_children} children, "
              f"polarity {cfg.polarity}, hid {cfg.hid}, loss {cfg.loss} (tau {cfg.tau:g}), "
              f"bias {cfg.bias}, normalize {cfg.normalize}, update {cfg.update}, "
              f"lr {cfg.lr:g}, batch {cfg.batch_size}, {cfg.steps_per_epoch} steps/epoch, "
              f"backend {cfg.backend}, seed {cfg.seed}", file=out)
        print(_fmt_row(heads, widths), file=out)

    state = {"ceiling": None}

    def on_epoch(rec):
        if args.json:
            obj = {"epoch": rec["epoch"],
                   "corr_by_depth": {str(d): round(v, 6) for d, v in rec["corr_by_depth"].items()},
                   "loss": rec["loss"], "seconds": round(rec["seconds"], 3)}
            if state["ceiling"] is not None:
                obj["ceiling_by_depth"] = state["ceiling"]
            print(json.dumps(obj), file=out, flush=True)
        else:
            cells = [rec["epoch"]] + [f"{rec['corr_by_depth'][d]:.3f}" for d in depths]
            cells += [f"{rec['loss']:.5g}", f"{rec['seconds']:.1f}"]
            line = _fmt_row(cells, widths)
            if bar is not None:
                bar.write(line, file=out)
            else:
                print(line, file=out, flush=True)

    # The ceiling needs only the tree and the evaluation set: print it before training.
    tree, _ = cfg.build()
    x_eval, z_eval = tree.sample(cfg.eval_samples, derive_seed(cfg.seed, 3))
    ceil = correlation_ceiling(tree, x=x_eval, z=z_eval).by_depth
    if args.json:
        state["ceiling"] = {str(d): round(v, 6) for d, v in ceil.items()}
    else:
        print(_fmt_row(["ceiling"] + [f"{ceil[d]:.3f}" for d in depths] + ["", ""], widths),
              file=out, flush=True)
    try:
        with limit_threads(args.threads):
            hltm_experiment(cfg, on_epoch=on_epoch,
                            on_step=(lambda s: bar.update(1)) if bar is not None else None)
    except TrainingDiverged as exc:
        print(f"minissl hltm: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:        # e.g. an update rule train() does not support
        _flag_error(args._parser, exc)
    finally:
        if bar is not None:
            bar.close()
    return 0


# ----------------------------------------------------------------------------- sweep command
def _parse_range(s):
    try:
        lo, hi = (float(v) for v in s.split(":"))
    except ValueError:
        raise ValueError(f"polarity must be ranges LO:HI with 0 <= LO <= HI <= 1, "
                         f"got {s!r}") from None
    return check_polarity((lo, hi))


def add_sweep_parser(subparsers):
    p = subparsers.add_parser(
        "sweep", help="presets x polarity ranges x hid x losses x seeds, mean ± std table",
        description="Run HLTM experiments over the product of the listed values in parallel "
                    "processes (joblib) and print mean ± std over seeds of the untrained, "
                    "trained (last epoch) and ceiling correlation per depth.")
    _add_hltm_model_flags(p, multi=True)
    add_training_flags(p)
    p.add_argument("--seeds", type=_positive_int, default=3, help="seeds 1..N (default 3)")
    p.add_argument("--n-jobs", type=int, default=1,
                   help="parallel processes (joblib; -1 = all cores)")
    p.add_argument("--csv", metavar="PATH", default=None,
                   help="also write one row per configuration x seed to PATH")
    return p


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


def _sweep_one(cfg, threads=1):
    """Run one configuration; a flat result dict (NaN trained values if it diverged)."""
    with limit_threads(threads):
        return _sweep_one_inner(cfg)


def _sweep_one_inner(cfg):
    res = {"preset": cfg.preset, "polarity": f"{cfg.polarity[0]}:{cfg.polarity[1]}",
           "hid": cfg.hid, "loss": cfg.loss, "H": cfg.negatives, "tau": cfg.tau,
           "seed": cfg.seed,
           "diverged": False}
    try:
        records, ceiling = hltm_experiment(cfg)
    except TrainingDiverged as exc:
        records, res["diverged"] = exc.records, True
        tree, _ = cfg.build()
        x, z = tree.sample(cfg.eval_samples, derive_seed(cfg.seed, 3))
        ceiling = correlation_ceiling(tree, x=x, z=z)
    last = records[-1] if not res["diverged"] else None
    for d in range(cfg.depth, 0, -1):
        res[f"untrained_d{d}"] = records[0]["corr_by_depth"][d]
        res[f"trained_d{d}"] = last["corr_by_depth"][d] if last else math.nan
        res[f"ceiling_d{d}"] = ceiling.by_depth[d]
    res["final_loss"] = last["loss"] if last else math.nan
    res["seconds"] = records[-1]["seconds"] if records else math.nan
    return res


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


def run_sweep(args):
    parser = args._parser
    try:
        pols = [_parse_range(s) for s in (args.polarity or ["0.7:1.0"])]
    except ValueError as exc:
        parser.error(f"--polarity: {exc}")
    base_args = argparse.Namespace(**{k: v for k, v in vars(args).items()
                                      if k not in ("preset", "polarity", "hid", "loss", "seed")})
    try:
        base = _config_from_args(base_args)
        cfgs = sweep_configs(base, args.preset or ["theory"], pols, args.hid or [10],
                             args.loss or ["preset"], range(1, args.seeds + 1))
    except ValueError as exc:
        _flag_error(parser, exc)
    from joblib import Parallel, delayed
    print(f"# sweep: {len(cfgs)} runs ({len(cfgs) // args.seeds} configurations x "
          f"{args.seeds} seeds), depth {base.depth}, {base.epochs} epochs x "
          f"{cfgs[0].steps_per_epoch} steps, batch {base.batch_size}, update {base.update}, "
          f"n_jobs {args.n_jobs}", flush=True)
    t0 = time.perf_counter()
    results = []
    bar = _progress(args, len(cfgs), "sweep")
    try:
        for r in Parallel(n_jobs=args.n_jobs, return_as="generator")(
                delayed(_sweep_one)(c, args.threads) for c in cfgs):
            results.append(r)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    rows = sweep_table(results, base.depth)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    print(f"# {time.perf_counter() - t0:.0f} s wall; untr = untrained (epoch 0), trained = "
          f"last epoch, ceil = corr(z, E[z | subtree leaves]); mean±std over seeds")
    if args.csv:
        cols = list(results[0])
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(results)
        print(f"# wrote {len(results)} rows to {args.csv}")
    return 0


# ----------------------------------------------------------------------------- entry point
COMMANDS = {
    "hltm": (add_hltm_parser, run_hltm),
    "sweep": (add_sweep_parser, run_sweep),
}

from .byol import add_byol_parser, run_byol  # noqa: E402  (issue 7: BYOL ablation)
COMMANDS["byol"] = (add_byol_parser, run_byol)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minissl", description="Self-supervised learning with dual deep networks: "
                                    "experiments from the command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add, run) in COMMANDS.items():
        p = add(sub)
        p.set_defaults(_run=run, _parser=p)
    return parser


def main(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its status."""
    args = build_parser().parse_args(argv)
    return args._run(args)
