"""``python -m minissl ...`` / ``minissl ...``: argparse over ``minissl.experiments``.

Subcommands live in the registry ``COMMANDS``: name -> ``(add_parser, run)``; ``run(args)``
returns an exit status. Flags map onto config dataclass fields (``--batch-size`` ->
``batch_size``); a bad value is reported as ``minissl <cmd>: error: --flag: ...`` (exit 2).

- ``hltm``: train the tree network on an HLTM, one row per epoch (epoch 0 = untrained): the
  mean normalized correlation per tree depth, the loss, the time; the ceiling first.
- ``sweep``: presets x polarity ranges x hid x losses x seeds in parallel processes
  (joblib), a table of mean ± std over seeds (untrained, trained and ceiling per depth).
- ``covariance``: the spectrum of a layer's covariance operator over training, and the
  cosine between the gradient step and the operator's step (what the app's tab draws).
- ``byol``: the BYOL ablation predictor x BN mean x EMA; ``byol-figures``: docs/byol.md's.
- ``selectivity``: every unit's selectivity at initialisation and at the end (does training
  amplify the luckiest units?), and the weights along OP's top eigenvectors; ``hltm --probe``
  adds linear / k-NN probes beside the Bayes accuracy.
- ``acceleration``: the bottom layer's learning with the top layer frozen, trained or scaled.
- ``decoupling``: feature decoupling on sparse-coding data (one run, or ``--table``: the
  settings of docs/decoupling.md x seeds, and ``--figure``).
- ``supervision``: SupCon on one HLTM latent against SSL, correlation per depth.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import time
from dataclasses import replace

from .. import backend as B
from .. import experiments as E
from . import realdata
from .flags import config_of as _config, dataclass_flags as _dataclass_flags, \
    flag_error as _flag_error
from ..figures import plots as P
from ..checks import MAX_SHOWN
from ..byol import PREDICTORS, PRESETS as BYOL_PRESETS, BYOLConfig
from ..hltm import check_polarity
from ..layers import BN_MODES
from ..budget import Cost, ResourceLimitError, current_limits, sparse_views_cost
from ..train import NEGATIVES, TrainingDiverged


# ----------------------------------------------------------------------------- shared
def _positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {B.shown(s)}")
    return v


def _seed(s):
    """A seed: an integer >= 0 (``backend.rng``'s)."""
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"seed must be an integer >= 0, got {B.shown(s)}")
    return v


def _jobs(s):
    """A joblib process count: an integer >= 1, or -1 (all cores), -2 (all but one), ..."""
    v = int(s)
    if v == 0 or v < -(os.cpu_count() or 1):
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, or -1 for all cores, got "
                                         f"{B.shown(s)}")
    return v


def _out_path(s):
    """A file path whose folder exists and is writable (checked when the flags are parsed,
    before anything runs)."""
    folder = os.path.dirname(os.path.abspath(s))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {B.shown(s)}: the folder "
                                         f"{B.shown(folder)} does not exist or is not writable")
    if os.path.isdir(s):
        raise argparse.ArgumentTypeError(f"cannot write {B.shown(s)}: it is a folder")
    return s


def _out_dir(s):
    """A folder that exists and is writable, or can be made in one that is."""
    path = os.path.abspath(s)
    parent = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{B.shown(s)} is not a folder")
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {B.shown(s)}: {B.shown(parent)} does "
                                         "not exist or is not writable")
    return s


class Progress:
    """Progress of a command's units of work (runs, seeds, snapshots), on stderr: a tqdm bar
    where stderr is a terminal and tqdm (the 'parallel' extra) is installed, else one line per
    unit (``# sweep: 3/12 runs, 41 s``) and, within a unit, a ``note`` at most every
    ``every`` seconds. ``--no-progress`` (where a command has it): nothing. ``lines=False``:
    no lines (a command whose table rows already come one per unit)."""

    def __init__(self, args, total, unit, desc, lines=True, every=10.0):
        self.total, self.unit, self.desc, self.every = total, unit, desc, every
        self.done, self.t0 = 0, time.perf_counter()
        self.last, self.bar = self.t0, None
        self.lines = lines and getattr(args, "progress", None) is not False
        if getattr(args, "progress", None) is not False and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", leave=False,
                            file=sys.stderr)

    def update(self, n=1):
        """``n`` more units done."""
        if not n:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines:
            self._line(f"{self.done}/{self.total} {self.unit}")

    def note(self, text):
        """Where a unit has got to (``"seed 2: step 600/3000"``), at most every ``every`` s."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)
        elif self.lines and time.perf_counter() - self.last >= self.every:
            self._line(f"{self.done}/{self.total} {self.unit}; {text}")

    def _line(self, text):
        self.last = time.perf_counter()
        print(f"# {self.desc}: {text}, {self.last - self.t0:.0f} s", file=sys.stderr, flush=True)

    def write(self, line):
        """A table row on stdout, below the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _given(args, *dests):
    """The flags among ``dests`` (attribute names) that were given (not None, not False)."""
    return ["--" + d.replace("_", "-") for d in dests
            if getattr(args, d, None) not in (None, False)]


def _refuse(parser, flags, why):
    """A usage error naming the first of ``flags`` (given ones) and why it is refused."""
    if flags:
        parser.error(f"{flags[0]}: {why}")


def _workers(n_jobs):
    """Processes joblib runs with ``n_jobs`` (-1: all cores, -2: all but one, ...)."""
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)


def _check_runs(parser, costs, copies, param, workers=1):
    """Refuse, before they are enumerated, ``len(costs) x copies`` runs (``costs``: one
    ``Cost`` per run of one copy, e.g. one seed): more than ``MAX_RUNS``, or their total work
    shared by ``workers`` processes (the wall time; memory: the largest run's) past the
    limits. A usage error naming ``param``."""
    runs = len(costs) * copies
    if runs > MAX_RUNS:
        parser.error(f"{param}: {runs:,} runs; at most {MAX_RUNS:,} in one command")
    workers = max(1, min(workers, runs))
    on = f" on {workers} processes" if workers > 1 else ""
    try:
        Cost(max(costs, key=lambda c: c.bytes).memory,
             ((sum(c.madds for c in costs) * copies / workers, f"{runs:,} runs{on}", param),)
             ).check()
    except ValueError as exc:
        parser.error(str(exc))


MAX_RUNS = 10_000        # runs one command enumerates (sweep, supervision, selectivity seeds)


TRAINING_FLAGS = ("lr", "momentum", "weight_decay", "batch_size", "epochs", "update",
                  "backend", "dtype")
MODEL_FLAGS = ("preset", "depth", "num_children", "polarity", "hid", "loss", "sampler",
               "keep_depth", "pairing", "label_latent", "tau", "margin", "negatives", "bias",
               "normalize", "samples_per_epoch", "eval_samples", "seed")


def add_training_flags(p):
    """Optimiser / execution flags every training command takes (``HLTMConfig``'s settings)."""
    g = p.add_argument_group("training")
    _dataclass_flags(g, E.HLTMConfig, TRAINING_FLAGS)
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (tqdm, only when stderr is a terminal; default on)")
    g.add_argument("--threads", type=_positive_int, default=1,
                   help="BLAS threads per run (default 1: the matrices are small)")
    return g




def _fmt_row(cells, widths):
    return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))


def _print_table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


# ----------------------------------------------------------------------------- hltm
def _add_hltm_model_flags(p, multi=False):
    """Tree / network / loss flags (``HLTMConfig``'s settings); with ``multi`` the swept ones
    (preset, polarity ranges, hid, loss) take several values."""
    g = p.add_argument_group("model")
    if not multi:
        _dataclass_flags(g, E.HLTMConfig, MODEL_FLAGS)
        return g
    _dataclass_flags(g, E.HLTMConfig, [n for n in MODEL_FLAGS if n != "polarity"],
                     multi=("preset", "hid", "loss"))
    g.add_argument("--polarity", nargs="+", default=None, metavar="LO:HI",
                   help="polarity ranges of |rho| to sweep, e.g. 0.7:1.0 0.3:0.7")
    return g


def add_hltm_parser(subparsers):
    p = subparsers.add_parser(
        "hltm", help="train the tree network on an HLTM; per-epoch correlation per depth",
        description="Train the HLTM tree network and print, per epoch (0 = untrained), the "
                    "mean normalized correlation at each tree depth, the loss and the time. "
                    "The first row is the ceiling (exact posterior). Time: ~20 s at the "
                    "defaults on one core, a row per epoch (~1 s each); a bar on a terminal.")
    _add_hltm_model_flags(p)
    add_training_flags(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON object per epoch: epoch, corr_by_depth, loss, seconds")
    p.add_argument("--probe", nargs="?", const="root", choices=E.PROBE_TARGETS[1:],
                   default=None, help="linear and k-NN probes of the root (or 'all' latents) "
                                      "from every layer, with the Bayes accuracy, at epoch 0 "
                                      "and the last epoch")
    _dataclass_flags(p, E.HLTMConfig, ("probe_samples",))
    return p


def _round_depths(d):
    return {str(k): round(float(v), 6) for k, v in d.items()}


def run_hltm(args):
    if args.probe is None:
        _refuse(args._parser, _given(args, "probe_samples"), "needs --probe (the probes' "
                "training and test sets)")
    try:
        cfg = _config(E.HLTMConfig, args).apply_preset()
        cfg.check_cost()
    except ValueError as exc:
        _flag_error(args._parser, exc, args=args, cls=E.HLTMConfig)
    if cfg.probe != "off":
        B.require("sklearn", "probe")                    # before the run, not at epoch 0
    depths = list(range(cfg.depth, 0, -1))
    widths = [7] + [6] * len(depths) + [11, 8]
    compiled = cfg.sampler == "compiled" or (cfg.sampler == "auto" and cfg.backend == "numba"
                                             and cfg.pairing != "supervised")
    if not args.json:
        print(f"# {cfg.preset} preset: depth {cfg.depth}, {cfg.num_children} children, "
              f"polarity {cfg.polarity}, hid {cfg.hid}, loss {cfg.loss} (tau {cfg.tau:g}), "
              f"bias {cfg.bias}, normalize {cfg.normalize}, update {cfg.update}, "
              f"lr {cfg.lr:g}, batch {cfg.batch_size}, {cfg.steps_per_epoch} steps/epoch, "
              f"backend {cfg.backend}{', compiled sampler' * compiled}, "
              f"seed {cfg.seed}")
        print(_fmt_row(["epoch"] + [f"d{d}" for d in depths] + ["loss", "seconds"], widths))
    bar = Progress(args, cfg.epochs, "epochs", "hltm", lines=False)   # a row per epoch
    ceil = {}

    def on_epoch(rec):
        if "ceiling_by_depth" in rec:                    # record 0: the ceiling comes first
            ceil.update(rec["ceiling_by_depth"])
            if not args.json:
                print(_fmt_row(["ceiling"] + [f"{ceil[d]:.3f}" for d in depths] + ["", ""],
                               widths), flush=True)
        if args.json:
            line = json.dumps({"epoch": rec["epoch"],
                               "corr_by_depth": _round_depths(rec["corr_by_depth"]),
                               "loss": rec["loss"], "seconds": round(rec["seconds"], 3),
                               "ceiling_by_depth": _round_depths(ceil),
                               **({"probe": _jsonable(rec["probe"])} if "probe" in rec else {})})
        else:
            cells = [rec["epoch"]] + [f"{rec['corr_by_depth'][d]:.3f}" for d in depths]
            line = _fmt_row(cells + [f"{rec['loss']:.5g}", f"{rec['seconds']:.1f}"], widths)
        bar.update(1 if rec["epoch"] else 0)
        bar.write(line)

    try:
        with B.blas_threads(args.threads), bar:
            records, _ = E.hltm_experiment(cfg, callback=on_epoch)
    except TrainingDiverged as exc:
        print(f"minissl hltm: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        _print_probe(cfg.tree, records)
    return 0


# ----------------------------------------------------------------------------- sweep
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
                    "trained (last epoch) and ceiling correlation per depth. --loss takes "
                    "loss names or 'preset' (the preset's loss). Time: one run of the "
                    "defaults takes ~20 s on one core, so the default sweep (3 seeds) ~1 min; "
                    "progress on stderr. A sweep's total work, shared by its processes, is "
                    "checked against MINISSL_MAX_WORK before it starts, and it has at most "
                    f"{MAX_RUNS:,} runs.")
    _add_hltm_model_flags(p, multi=True)
    add_training_flags(p)
    p.add_argument("--seeds", type=_positive_int, default=3,
                   help="seeds S..S+N-1, S = --seed (default 1; N default 3)")
    p.add_argument("--n-jobs", type=_jobs, default=1,
                   help="parallel processes (joblib; -1 = all cores)")
    p.add_argument("--csv", metavar="PATH", type=_out_path, default=None,
                   help="also write one row per configuration x seed to PATH")
    p.add_argument("--dask", metavar="SCHEDULER", default=None,
                   help="run the configurations on a Dask distributed cluster: the scheduler's "
                        "address, e.g. tcp://127.0.0.1:8786 (the 'cluster' extra)")
    return p


def _sweep_grid(args, parser):
    """``(base, cfgs)``: the sweep's configurations, refused before they are enumerated when
    there are more than ``MAX_RUNS`` or their total work is past the limits."""
    try:
        pols = [_parse_range(s) for s in (args.polarity or
                                          [":".join(map(str, E.HLTMConfig.polarity))])]
    except ValueError as exc:
        parser.error(f"--polarity: {exc}")
    if args.dask is not None:
        _refuse(parser, _given(args, "n_jobs") if args.n_jobs != 1 else [],
                "--dask runs on the cluster's workers; leave --n-jobs out")
        B.require("distributed", "cluster")
    base_args = argparse.Namespace(**{k: v for k, v in vars(args).items()
                                      if k not in ("preset", "polarity", "hid", "loss", "seed")})
    first = 1 if args.seed is None else args.seed
    try:
        base = _config(E.HLTMConfig, base_args)
        grid = [args.preset or [base.preset], pols, args.hid or [base.hid], args.loss or ["preset"]]
        if math.prod(map(len, grid)) * args.seeds > MAX_RUNS:
            _check_runs(parser, [Cost()] * math.prod(map(len, grid)), args.seeds, "--seeds")
        one = E.sweep_configs(base, *grid, [first])       # one seed: each run's cost
        costs = [c.check_cost() for c in one]
    except ValueError as exc:
        _flag_error(parser, exc, E.HLTMConfig, args)
    _check_runs(parser, costs, args.seeds, f"{len(one)} configurations x --seeds {args.seeds}",
                len(one) * args.seeds if args.dask else _workers(args.n_jobs))
    return base, E.sweep_configs(base, *grid, range(first, first + args.seeds))


def run_sweep(args):
    parser = args._parser
    base, cfgs = _sweep_grid(args, parser)
    print(f"# sweep: {len(cfgs)} runs ({len(cfgs) // args.seeds} configurations x "
          f"{args.seeds} seeds from {cfgs[0].seed}), depth {base.depth}, {base.epochs} epochs x "
          f"{cfgs[0].steps_per_epoch} steps, batch {base.batch_size}, update {base.update}, "
          + (f"Dask scheduler {args.dask}" if args.dask else f"n_jobs {args.n_jobs}"),
          flush=True)
    t0 = time.perf_counter()
    with Progress(args, len(cfgs), "runs", "sweep") as bar:
        results = E.run_sweep(cfgs, args.n_jobs, args.threads, callback=lambda r: bar.update(),
                              scheduler=args.dask, on_epoch=lambda i, rec: bar.note(
                                  f"run {i + 1}: epoch {rec['epoch']}/{cfgs[i].epochs}"))
    _print_table(E.sweep_table(results, base.depth))
    print(f"# {time.perf_counter() - t0:.0f} s wall; untr = untrained (epoch 0), trained = "
          f"last epoch, ceil = corr(z, E[z | subtree leaves]); mean±std over seeds")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(results[0]))
            w.writeheader()
            w.writerows(results)
        print(f"# wrote {len(results)} rows to {args.csv}")
    return 0


# ----------------------------------------------------------------------------- covariance
def add_covariance_parser(subparsers):
    p = subparsers.add_parser(
        "covariance", help="the covariance operator of a layer over training",
        description="Train the HLTM tree network and print, at --snapshots points (and "
                    "untrained), the top-k eigenvalues of the layer's covariance operator "
                    "OP_l = V^xi[Kbar_l] and, per layer, the cosine between the gradient step "
                    "and OP vec(W) on a fixed batch: what the app's Covariance tab draws. Time: "
                    "~2-5 s at the defaults on one core, a line per snapshot.")
    _dataclass_flags(p, E.CovarianceConfig)
    p.add_argument("--json", action="store_true", help="one JSON object per snapshot")
    return p


def _checked_config(cls, args):
    """The command's config ``cls`` from its flags, validated and its cost within the limits;
    a bad value is a usage error naming the flag."""
    try:
        cfg = _config(cls, args).validate()
        cfg.cost().check()
    except ValueError as exc:
        _flag_error(args._parser, exc, args=args, cls=cls)
    return cfg


def run_covariance(args):
    cfg = _checked_config(E.CovarianceConfig, args)
    if not args.json:
        r = cfg.run
        print(f"# covariance operator of layer {cfg.layer} (net.weights[{cfg.layer}], the paper's "
              f"W_{cfg.layer + 1}): depth {r.depth}, hid {r.hid}, "
              f"loss {r.loss} (tau {r.tau:g}), update {r.update}, lr {r.lr:g}, "
              f"N {cfg.n_samples} x M {cfg.n_views} views, seed {r.seed}")

    def show(rec):
        if args.json:
            print(json.dumps({"step": rec["step"], "eigvals": [round(float(v), 8) for v in
                                                               rec["eigvals"]],
                              "cos": [round(c, 6) for c in rec["cos"]],
                              "loss": rec["loss"]}), flush=True)
        else:
            cos = " ".join(f"{c:.3f}" for c in rec["cos"])
            top = " ".join(f"{v:.4g}" for v in rec["eigvals"][:4])
            print(f"step {rec['step']:5d}  top eigenvalues {top}  cos per layer {cos}  "
                  f"loss {rec['loss']:.4g}", flush=True)

    try:
        with B.blas_threads(1):
            E.covariance_experiment(cfg, callback=show)
    except TrainingDiverged as exc:
        print(f"minissl covariance: {exc}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- byol
_BYOL_FIELDS = ("out_dim", "predictor_hidden", "bn_var", "normalize", "symmetric", "lr",
                "predictor_lr", "weight_decay", "momentum", "steps", "batch_size",
                "predictor_reinit_every", "directpred", "seed", "eval_size")


def add_byol_parser(subparsers):
    """The ``byol`` subcommand: the ablation predictor x BN mean x EMA, a table of diagnostics."""
    p = subparsers.add_parser(
        "byol", help="BYOL ablation: predictor x BN mean x EMA, collapse diagnostics",
        description="Train BYOL for every combination of --predictors x --bn-means x --emas and "
                    "print the collapse diagnostics (effective rank, std of the normalised "
                    "embeddings x sqrt(d), loss, loss of a collapsed online branch; on HLTM the "
                    "mean normalized correlation of the latents). Time at the defaults on one "
                    "core: ~5 s (toy), ~10 s (--data hltm); progress on stderr, a line per run.")
    p.add_argument("--data", choices=E.DATASETS, default="toy")
    p.add_argument("--preset", choices=tuple(BYOL_PRESETS), default="minissl",
                   help="minissl's conventions or the paper authors' code's (docs/byol.md)")
    p.add_argument("--predictors", nargs="+", default=["none", "linear"], choices=PREDICTORS)
    p.add_argument("--bn-means", nargs="+", default=list(BN_MODES), choices=BN_MODES)
    p.add_argument("--emas", nargs="+", type=float, default=[0.0, 0.99],
                   help="target EMA decays (0 = SimSiam)")
    p.add_argument("--hidden", nargs="+", type=int, default=None,
                   help="encoder hidden widths (toy; default 64)")
    p.add_argument("--hid", type=int, default=None, help="units per latent (hltm; default 10)")
    p.add_argument("--depth", type=int, default=None, help="HLTM depth (hltm; default 4)")
    p.add_argument("--noise", type=float, default=None,
                   help="augmentation noise (toy; default 1.0)")
    p.add_argument("--jobs", type=_jobs, default=1, help="parallel processes (joblib)")
    _dataclass_flags(p, BYOLConfig, _BYOL_FIELDS)
    p.add_argument("--json", action="store_true", help="one JSON object per run")
    return p


def _byol_flags_apply(args):
    """Refuse the flags the ablation would not use: the other dataset's (toy: --hidden,
    --noise, --out-dim; hltm: --hid, --depth), the predictor's without a predictor, the mlp
    predictor's width without --predictors mlp, --directpred without a linear one."""
    parser = args._parser
    toy = args.data == "toy"
    _refuse(parser, _given(args, "hid", "depth") if toy else
            _given(args, "hidden", "noise", "out_dim"),
            f"has no effect with --data {args.data} (the {'toy' if not toy else 'hltm'} "
            "data's setting)")
    _refuse(parser, _given(args, "predictor_lr", "predictor_reinit_every")
            if set(args.predictors) == {"none"} else [], "--predictors none has no predictor")
    _refuse(parser, _given(args, "predictor_hidden") if "mlp" not in args.predictors else [],
            "only the mlp predictor has a hidden layer: add --predictors mlp")
    _refuse(parser, _given(args, "directpred") if "linear" not in args.predictors else [],
            "DirectPred sets a linear predictor: add --predictors linear")


def run_byol(args):
    """Run the ablation and print the table (or JSON lines); returns 0."""
    _byol_flags_apply(args)
    hid = 10 if args.hid is None else args.hid
    try:
        kw = {name: getattr(args, name) for name in _BYOL_FIELDS
              if getattr(args, name) is not None}
        cfg = BYOLConfig.from_preset(args.preset, **kw,
                                     hidden=tuple(args.hidden or BYOLConfig.hidden))
        cfg = replace(cfg, log_every=cfg.steps).validate()
        source_kw = {"seed": cfg.seed}
        source_kw.update({"depth": 4 if args.depth is None else args.depth}
                         if args.data == "hltm" else
                         {"noise": 1.0 if args.noise is None else args.noise})
        E.make_source(args.data, **source_kw)
        for e in args.emas:
            B.check_real("--emas: every EMA decay", e, 0, 1, hi_open=True)
        B.check_int("--hid", hid, 1, 4096)
        grid = E.ablation_grid(cfg, args.predictors, args.bn_means, args.emas)
        E.ablation_cost(args.data, grid, hid, source_kw).check()
    except ValueError as exc:
        _flag_error(args._parser, exc, args=args, cls=BYOLConfig,
                    rename={"noise": "noise", "depth": "depth"})
    print(f"# BYOL ablation on {args.data}: lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}, "
          f"{cfg.steps} steps, batch {cfg.batch_size}, d {cfg.out_dim}, BN var {cfg.bn_var}, "
          f"normalize {cfg.normalize}, preset {args.preset}, seed {cfg.seed}, "
          f"{len(grid)} runs", flush=True)
    t0 = time.perf_counter()
    with Progress(args, len(grid), "runs", "byol") as bar:
        rows = E.run_ablation(args.data, cfg, args.predictors, args.bn_means, args.emas,
                              hid=hid, n_jobs=args.jobs, source_kw=source_kw,
                              callback=lambda row: bar.update())
    if args.json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if k not in ("spectrum", "run", "runs")},
                             default=float))
    else:
        for line in E.ablation_table(rows):
            print(line)
    print(f"# {time.perf_counter() - t0:.1f} s wall")
    return 0


def _docs_img():
    """docs/img of the source tree minissl runs from, or None (an installed package)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "docs", "img")
    return path if os.path.isdir(path) else None


def add_byol_figures_parser(subparsers):
    p = subparsers.add_parser(
        "byol-figures", help="the experiments and figures of docs/byol.md",
        description="Run the experiments of docs/byol.md, write its PNG figures to --outdir "
                    "and print the numbers the doc quotes. Time: ~10-30 s on one core, with "
                    "a progress line per experiment on stderr. Needs the 'figures' extra.")
    p.add_argument("--outdir", type=_out_dir, default=None,
                   help="folder for the PNG files (made if missing; default: docs/img of the "
                        "source tree minissl runs from, whatever the current folder)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the toy data, the runs and the linear problem (default 0)")
    return p


def run_byol_figures(args):
    outdir = args.outdir or _docs_img()
    if outdir is None:
        args._parser.error("--outdir: give the folder to write the figures to (this minissl "
                           "is not in a source tree with docs/img)")
    B.require("matplotlib", "figures")
    print(f"# byol-figures: writing to {os.path.abspath(outdir)}, seed {args.seed}",
          flush=True)
    with B.blas_threads(1), Progress(args, 4, "experiments", "byol-figures") as bar:
        E.byol_doc_figures(outdir, args.seed, progress=bar.update)
    return 0


# ----------------------------------------------------------------------------- luck matters
# (selectivity amplification, top-layer acceleration, probes; docs/hltm.md, docs/theory.md)
def _print_probe(tree, records):
    """The probe tables of an ``hltm --probe`` run (untrained, then trained)."""
    for rec in (records[0], records[-1] if len(records) > 1 else None):
        if rec is not None and "probe" in rec:
            print(f"# probe accuracy at epoch {rec['epoch']} (test set of {rec['probe']['n']}; "
                  "mean over each depth's latents)")
            _print_table(E.probe_rows(tree, rec["probe"]))


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def add_selectivity_parser(subparsers):
    p = subparsers.add_parser(
        "selectivity", help="does training amplify the selectivity units start with?",
        description="Train the HLTM tree network (as `hltm` with the same seed) and compare "
                    "every unit's selectivity |corr(z, g_u)| at initialisation and at the end, "
                    "per tree depth; and the units' weights along the top-k eigenvectors of the "
                    "covariance operator at initialisation against a random k-dim subspace. "
                    "With --seeds N: mean ± std over seeds S..S+N-1 (S = --seed), and 95% "
                    "intervals (Wilson for 'winner already best at init', t over seeds). Time: "
                    "~25 s per seed at the defaults on one core; progress on stderr.")
    _dataclass_flags(p, E.SelectivityConfig)
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help="run seeds S..S+N-1 (S = --seed, default 1) and print mean ± std and "
                        "95%% intervals")
    p.add_argument("--n-jobs", type=_jobs, default=1,
                   help="parallel processes (joblib; -1 = all cores)")
    p.add_argument("--json", action="store_true", help="one JSON object per seed")
    return p


def _selectivity_summaries(cfg, seeds, args, show):
    """One summary per seed: in this process with a progress note per snapshot (``--n-jobs
    1``), else in parallel processes (``run_selectivity_seeds``), a progress line per seed."""
    with Progress(args, len(seeds), "seeds", "selectivity") as bar:
        if args.n_jobs != 1:
            return E.run_selectivity_seeds(cfg, seeds, args.n_jobs,
                                           callback=lambda r: (show(r), bar.update()))
        out = []
        for s in seeds:
            with B.blas_threads(1):
                out.append(E.selectivity_experiment(E.with_settings(cfg, seed=s), callback=(
                    lambda rec, s=s: bar.note(f"seed {s}: step {rec['step']}/{cfg.run.steps}"))
                )[1])
            show(out[-1])
            bar.update()
        return out


def run_selectivity(args):
    try:
        cfg = _config(E.SelectivityConfig, args).validate()
        cost = E.selectivity_cost(cfg).check()           # each seed's run alone
    except ValueError as exc:
        _flag_error(args._parser, exc, args=args, cls=E.SelectivityConfig)
    r = cfg.run
    _check_runs(args._parser, [cost], args.seeds or 1, f"--seeds {args.seeds or 1}",
                _workers(args.n_jobs))
    seeds = list(range(r.seed, r.seed + (args.seeds or 1)))
    print(f"# selectivity: depth {r.depth}, {r.num_children} children, polarity "
          f"{r.polarity}, hid {r.hid}, loss {r.loss} (tau {r.tau:g}), lr {r.lr:g}, "
          f"batch {r.batch_size}, {r.steps} steps, {cfg.snapshots} snapshots, update "
          f"{r.update}, OP top k {cfg.k} (N {cfg.n_samples} x M {cfg.n_views}), seeds "
          f"{seeds if len(seeds) <= 8 else f'{seeds[0]}..{seeds[-1]}'}", flush=True)
    t0, done = time.perf_counter(), []

    def show(summary):
        done.append(summary)
        print(f"# seed {seeds[len(done) - 1]} done ({len(done)}/{len(seeds)}, "
              f"{time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps(_jsonable(summary)), flush=True)
    summaries = _selectivity_summaries(cfg, seeds, args, show)
    _print_table(E.selectivity_table(summaries))
    if len(seeds) > 1:
        _print_selectivity_intervals(summaries, r.hid)
    print(f"# {time.perf_counter() - t0:.0f} s wall. rho s0,sT: Spearman of initial and final "
          "selectivity over the depth's units; rank0 win: initial rank (0 = best of hid) of "
          "each latent's final winner; win>med: share of winners that started above their "
          "latent's median; gain: final - initial selectivity; |w|: final / initial weight-row "
          "norm; rho p0,pT: Spearman of ||U_i^T w_i|| (projection on OP's top-k eigenvectors "
          "at init) at init and at the end; p-rank win: the selectivity winner's initial rank "
          "by that projection; dW in OP / rand: share of ||W_T - W_0||^2 in span(U) / in a "
          "random k-dim subspace; win/rest in OP: the same per unit row")
    return 0


def _print_selectivity_intervals(summaries, hid):
    print(f"# 95% intervals over the {len(summaries)} seeds; best@init: latents whose final "
          f"winner was already their best unit at init (chance 1/hid = {1 / hid:.2f}); Wilson: "
          "that proportion pooled over the latents (taken as independent); per seed: the mean "
          "of each seed's share, t interval over seeds; rank0 win and the rest: mean over "
          "seeds, t interval")
    _print_table(E.selectivity_interval_table(E.selectivity_intervals(summaries)))
    print(f"# initial rank of the root's winner per seed: {E.root_ranks(summaries)}")


def add_acceleration_parser(subparsers):
    p = subparsers.add_parser(
        "acceleration", help="does training the top layer speed up the bottom layer?",
        description="Train the HLTM tree network with its top layer frozen, trained, or "
                    "scaled up at initialisation (same init and data) and print the bottom "
                    "layer's learning over time; then the same three arms for the exact "
                    "linear two-layer flow. Time: ~3-10 s at the defaults on one core; "
                    "progress on stderr, a line per arm.")
    _dataclass_flags(p, E.AccelerationConfig)
    p.add_argument("--figure", metavar="PATH", type=_out_path, default=None,
                   help="write the figure (PNG; the 'figures' extra)")
    p.add_argument("--json", action="store_true", help="one JSON object per record")
    return p


def run_acceleration(args):
    cfg = _checked_config(E.AccelerationConfig, args)
    if args.figure:
        B.require("matplotlib", "figures")
    r = cfg.run
    print(f"# acceleration: depth {r.depth}, {r.num_children} children, polarity "
          f"{r.polarity}, hid {r.hid}, loss {r.loss} (tau {r.tau:g}), lr {r.lr:g}, "
          f"update {r.update}, {r.steps} steps, batch {r.batch_size}, {cfg.snapshots} "
          f"snapshots, top scale {cfg.top_scale:g}, seed {r.seed}", flush=True)
    arms = []

    def tick(rec):
        if rec["arm"] not in arms:
            bar.update(len(arms) > 0)
            arms.append(rec["arm"])
        bar.note(f"arm {rec['arm']}: step {rec['step']}/{r.steps}")
    with B.blas_threads(1), Progress(args, len(E.ARMS), "arms", "acceleration") as bar:
        records = E.acceleration_experiment(cfg, callback=tick)
        bar.update()
        linear = E.linear_acceleration(cfg.top_scale)
    if args.json:
        for r in records + linear:
            print(json.dumps(r))
    for key, what in (("unit_corr", "mean |corr| of the depth-1 units"),
                      ("best_corr", "best unit's |corr| (mean over depth-1 latents)"),
                      ("dW1", "||W_1(t) - W_1(0)|| / ||W_1(0)||")):
        print(f"# HLTM, bottom layer: {what} (* = last record before the loss diverged)")
        _print_table(E.acceleration_rows(records, key))
    for key, what in (("W1", "||W_1(t)|| / ||W_1(0)||"), ("align", "||W_1 e_1||^2 / ||W_1||^2")):
        print(f"# linear two-layer flow (Euler dt 1e-3), {what}")
        _print_table(E.acceleration_rows(linear, key, "t"))
    if args.figure:
        P.save_png(P.acceleration_figure(records, linear), args.figure)
    return 0


# ----------------------------------------------------------------------------- decoupling
def add_decoupling_parser(subparsers):
    p = subparsers.add_parser(
        "decoupling", help="feature decoupling: what augmentation makes neurons learn",
        description="Train a one-layer network (weight-normalised, symmetric thresholded ReLU "
                    "or ReLU, L2-normalised output) with InfoNCE on sparse-coding data "
                    "x = Mz + ξ and print the neurons' sparse alignment, dense fraction and "
                    "feature coverage beside the closed-form view correlations. --table runs "
                    "the settings of docs/decoupling.md. Time on one core: one run ~10-25 s "
                    "(a row every --log-every steps); --table ~5-6 min (13 settings x 3 "
                    "seeds), progress on stderr, a row as each setting ends. --preset wenli: "
                    "input at unit pixel variance, V's rows of norm 0.1, b = 1, ReLU with a "
                    "learned bias, τ = 1 (flags given override the preset).")
    p.add_argument("--preset", choices=tuple(E.DECOUPLING_PRESETS), default="minissl",
                   help="the conventions: minissl (the defaults) or wenli (Wen & Li's "
                        "conventions: input_scale pixel, v_norm 0.1, b_init 1, relu_bias, tau 1)")
    _dataclass_flags(p, E.DecouplingConfig)
    p.add_argument("--table", action="store_true",
                   help="run the settings of docs/decoupling.md (other flags: the base)")
    p.add_argument("--only", nargs="+", default=None, choices=E.DECOUPLING_LABELS,
                   metavar="LABEL", help="with --table: these settings only")
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help="with --table: seeds S..S+N-1 (S = --seed, default 0; N default 3)")
    p.add_argument("--measured", type=_positive_int, default=None,
                   help="with --table: also measure the view correlations on N >= 2 samples")
    p.add_argument("--figure", metavar="PATH", type=_out_path, default=None,
                   help="with --table: write the figure (PNG) to PATH")
    p.add_argument("--threads", type=_positive_int, default=1, help="BLAS threads (1)")
    p.add_argument("--json", action="store_true", help="one JSON object per record / row")
    return p


DECOUPLING_KEYS = ("step", "loss", "alignment", "aligned", "dense_fraction", "dense_live",
                   "dead", "silent", "coverage", "coverage_min", "covered", "b_mean", "seconds")
DECOUPLING_WIDTHS = [6, 8, 6, 6, 6, 6, 5, 6, 6, 7, 6]


def _decoupling_run(cfg, args):
    if not args.json:
        src = cfg.source()
        print(f"# {src!r}; {_decoupling_start(cfg)}; batch "
              f"{cfg.batch_size}, Adam lr {cfg.lr:g}, {cfg.steps} steps")
        print(_fmt_row(["step", "loss", "align", "#>0.9", "dense²", "cover", "#cov", "dn live",
                        "dead", "b mean", "s"], DECOUPLING_WIDTHS))

    def show(rec):
        if args.json:
            out = {k: rec[k] if isinstance(rec[k], int) else round(float(rec[k]), 6)
                   for k in DECOUPLING_KEYS}
            if "rho" in rec:
                out["rho"] = {k: round(v, 6) for k, v in rec["rho"].items()}
            print(json.dumps(out), flush=True)
            return
        if "rho" in rec:
            print(f"# views (closed form): rho_sparse {rec['rho']['sparse']:.3f}, rho_dense "
                  f"{rec['rho']['dense']:.3f}")
        cells = [rec["step"], f"{rec['loss']:.4f}", f"{rec['alignment']:.3f}", rec["aligned"],
                 f"{rec['dense_fraction']:.3f}", f"{rec['coverage']:.3f}", rec["covered"],
                 f"{rec['dense_live']:.3f}", f"{rec['dead']:.3f}", f"{rec['b_mean']:.4f}",
                 f"{rec['seconds']:.1f}"]
        print(_fmt_row(cells, DECOUPLING_WIDTHS), flush=True)
    E.decoupling_experiment(cfg, callback=show)


def _decoupling_start(cfg):
    """The network's start in words (the preset's fields)."""
    return (f"neuron {cfg.neuron}{' + bias' if cfg.neuron == 'relu' and cfg.relu_bias else ''}"
            f", width {cfg.width}, input {cfg.input_scale}, |v| {cfg.v_norm:g}, b_init "
            f"{cfg.b_init:g}, tau {cfg.tau:g}")


def _decoupling_settings(base, args):
    """The table's settings, refused before anything runs: a flag every chosen setting
    overrides, ``--log-every`` (the table reads each run's last record), and the table's runs
    past ``MAX_RUNS`` or the limits (their training, and the measured correlations' samples)."""
    parser = args._parser
    settings = [s for s in E.DECOUPLING_SETTINGS if args.only is None or s[0] in args.only]
    _refuse(parser, _given(args, "log_every"), "--table reads only each run's last record")
    for name in E.leaf_fields(base):
        if getattr(args, name, None) is not None and all(name in kw for _, kw in settings):
            parser.error(f"--{name.replace('_', '-')}: every setting of --table sets {name} "
                         "(choose others with --only, or leave out --table)")
    costs = []
    try:
        for _, kw in settings:
            c = replace(base, **kw).validate()
            costs.append(c.cost() + (sparse_views_cost(c, args.measured, 2, param=f"--measured "
                                     f"{args.measured}") if args.measured else Cost()))
            costs[-1].check()
    except ValueError as exc:
        _flag_error(parser, exc, args=args, cls=E.DecouplingConfig)
    n = args.seeds or 3
    _check_runs(parser, costs, n, f"--seeds {n} x {len(settings)} settings")
    return settings


def _decoupling_table(base, args):
    settings = _decoupling_settings(base, args)
    seeds = tuple(range(base.seed, base.seed + (args.seeds or 3)))
    src = base.source()
    if not args.json:
        print(f"# decoupling table: {len(settings)} settings x seeds {list(seeds)}, "
              f"{base.steps} steps each; a row as each setting ends, the table at the end; "
              f"preset {args.preset}: {_decoupling_start(base)}; d {src.d}, d1 {src.d1}, "
              f"k {src.k:g}, dense rank {src.dense_rank}, dense energy "
              f"{src.dense_energy:g}; pixel std sqrt(tr C/d1) = "
              f"{E.pixel_variance(src) ** 0.5:.3f} (raw units)", flush=True)
        head = E.decoupling_table_lines([])[0]
        head[3:3] = ["ρ̂_sp", "ρ̂_dn"] if args.measured else []   # as the rows will have
        print("# " + " | ".join(head), flush=True)

    def show(row):
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print("# " + " | ".join(E.decoupling_table_lines([row])[1]), flush=True)

    def tick(rec):
        if rec["step"] == 0:                             # a run starts: the one before ended
            bar.update(len(started))
            started[:] = [1]
        bar.note(f"step {rec['step']}/{base.steps}")
    t0, started = time.perf_counter(), []
    with Progress(args, len(settings) * len(seeds), "runs", "decoupling --table") as bar:
        rows = E.decoupling_table(settings, seeds, base, args.measured or 0, callback=show,
                                  on_record=tick)
        bar.update()
    if not args.json:
        print(f"# {len(settings)} settings x seeds {list(seeds)}, {base.steps} steps each, "
              f"{time.perf_counter() - t0:.0f} s wall; mean±std over seeds; dense frac²: "
              f"||P^T w||² over all neurons; dense live: ||P^T w|| (unsquared) over the live "
              f"neurons; dead: share of neurons active (output != 0) on at most "
              f"{E.DEAD_RATE:.0%} of {E.EVAL_SAMPLES} clean samples, silent: on none")
        _print_table(E.decoupling_table_lines(rows))
    if args.figure:
        P.save_png(P.decoupling_figure(rows), args.figure, dpi=110)


def run_decoupling(args):
    if not args.table:
        _refuse(args._parser, _given(args, "only", "seeds", "measured", "figure"),
                "needs --table (it sets the table's settings, seeds, samples or figure)")
    try:
        given = {k: v for k, v in vars(_config(E.DecouplingConfig, args)).items()
                 if getattr(args, k, None) is not None}
        cfg = E.DecouplingConfig.from_preset(args.preset, **given).validate()
        cfg.cost().check()                               # one run (each of the table's alone)
        if args.measured:
            B.check_int("measured", args.measured, 2)
    except ValueError as exc:
        _flag_error(args._parser, exc, args=args, cls=E.DecouplingConfig)
    if args.figure:
        B.require("matplotlib", "figures")
    with B.blas_threads(args.threads):
        if args.table:
            _decoupling_table(cfg, args)
        else:
            _decoupling_run(cfg, args)
    return 0


# ----------------------------------------------------------------------------- supervision
def add_supervision_parser(subparsers):
    p = subparsers.add_parser(
        "supervision", help="SupCon on an HLTM latent against SSL: correlation per depth",
        description="Train the HLTM tree network with each --pairings (given: InfoNCE with H "
                    "negatives; in_batch: SimCLR; supervised: SupCon with the label of each "
                    "--label-latents) for --seeds seeds and print the trained normalized "
                    "correlation per depth (mean±std), the untrained value and the ceiling. "
                    "Time: ~20 s per run at the defaults on one core (9 runs: ~3 min); "
                    "progress on stderr.")
    g = p.add_argument_group("model")
    _dataclass_flags(g, E.HLTMConfig, [n for n in MODEL_FLAGS
                                       if n not in ("pairing", "label_latent")])
    add_training_flags(p)
    p.add_argument("--pairings", nargs="+", choices=NEGATIVES, default=None,
                   help=f"default: all of {', '.join(NEGATIVES)}")
    p.add_argument("--label-latents", nargs="+", type=int, default=None,
                   help="latents (BFS, 0 = root) SupCon is supervised on (default 0; others "
                        "need --keep-depth at or below their depth)")
    p.add_argument("--seeds", type=_positive_int, default=3,
                   help="seeds S..S+N-1, S = --seed (default 1; N default 3)")
    p.add_argument("--n-jobs", type=_jobs, default=1,
                   help="parallel processes (joblib; -1 = all cores)")
    return p


def _supervision_configs(args):
    """The runs' configs, refused before they are enumerated past ``MAX_RUNS`` or the
    limits; errors of the pairing's and label's settings name the command's own flags."""
    parser = args._parser
    pairings = args.pairings or list(NEGATIVES)
    _refuse(parser, _given(args, "label_latents") if "supervised" not in pairings else [],
            "needs --pairings supervised")
    rename = {"negatives": "pairings" if args.negatives is None else "negatives",
              "label_latent": "label_latents"}
    try:
        base = _config(E.HLTMConfig, args)
        if base.apply_preset().loss != "infonce" and set(pairings) - {"given"}:
            raise ValueError(f"loss must be infonce for pairings in_batch and supervised "
                             f"(SimCLR, SupCon), got {base.apply_preset().loss!r}; add "
                             "--pairings given")
        first = 1 if args.seed is None else args.seed
        one = E.supervision_configs(base, pairings, args.label_latents or [0], [first])
        costs = [c.check_cost() for c in one]
    except ValueError as exc:
        _flag_error(parser, exc, args=args, cls=E.HLTMConfig, rename=rename)
    _check_runs(parser, costs, args.seeds, f"{len(one)} runs per seed x --seeds {args.seeds}",
                _workers(args.n_jobs))
    return E.supervision_configs(base, pairings, args.label_latents or [0],
                                 range(first, first + args.seeds))


def run_supervision(args):
    cfgs = _supervision_configs(args)
    c = cfgs[0]
    print(f"# supervision: depth {c.depth}, polarity {c.polarity}, hid {c.hid}, loss {c.loss} "
          f"(tau {c.tau:g}), lr {c.lr:g}, batch {c.batch_size}, {c.epochs} epochs x "
          f"{c.steps_per_epoch} steps, keep_depth {c.keep_depth or c.depth}, {len(cfgs)} runs, "
          f"seeds {c.seed}..{c.seed + args.seeds - 1}", flush=True)
    t0 = time.perf_counter()
    with Progress(args, len(cfgs), "runs", "supervision") as bar:
        results = E.run_supervision(cfgs, args.n_jobs, args.threads,
                                    callback=lambda r: bar.update(), on_epoch=lambda i, rec:
                                    bar.note(f"run {i + 1}: epoch {rec['epoch']}/{c.epochs}"))
    _print_table(E.supervision_table(results, c.depth))
    print(f"# {time.perf_counter() - t0:.0f} s wall; trained correlation per depth (root "
          f"first), mean±std over seeds")
    return 0


# ----------------------------------------------------------------------------- entry point
COMMANDS = {
    "hltm": (add_hltm_parser, run_hltm),
    "sweep": (add_sweep_parser, run_sweep),
    "covariance": (add_covariance_parser, run_covariance),
    "byol": (add_byol_parser, run_byol),
    "byol-figures": (add_byol_figures_parser, run_byol_figures),
    "selectivity": (add_selectivity_parser, run_selectivity),
    "acceleration": (add_acceleration_parser, run_acceleration),
    "decoupling": (add_decoupling_parser, run_decoupling),
    "supervision": (add_supervision_parser, run_supervision),
    "realdata": (realdata.add_parser, realdata.run),
}


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose errors echo no value past ``MAX_SHOWN`` characters (argparse
    quotes a bad value whole: ``invalid int value: '999...'``), and which takes no
    abbreviations (``--pairing`` is not ``--pairings``, ``--see`` not ``--seeds``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message):
        def cut(m):
            return f"{m.group()[:MAX_SHOWN - 25]}… ({len(m.group()):,} characters)"
        super().error(re.sub(r"\S{%d,}" % (MAX_SHOWN + 20), cut, message))


def build_parser():
    parser = _Parser(
        prog="minissl", description="Self-supervised learning with dual deep networks: "
                                    "experiments from the command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add, run) in COMMANDS.items():
        p = add(sub)
        p.set_defaults(_run=run, _parser=p)
    return parser


def main(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its status. Bad
    flags, a malformed ``MINISSL_MAX_*`` variable and a missing optional package are usage
    errors (one line, exit status 2), before anything runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv
    try:
        current_limits()                               # MINISSL_MAX_MEMORY=garbage: refused
    except ValueError as exc:
        args._parser.error(str(exc))
    try:
        return args._run(args)
    except B.MissingExtra as exc:                      # one line, never a traceback
        args._parser.error(str(exc))
