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
import os
import sys
import time
from dataclasses import replace

from .. import backend as B
from .. import experiments as E
from . import realdata
from .flags import config_of as _config, dataclass_flags as _dataclass_flags, \
    flag_error as _flag_error
from ..figures import plots as P
from ..byol import PREDICTORS, PRESETS as BYOL_PRESETS, BYOLConfig
from ..hltm import check_polarity
from ..layers import BN_MODES
from ..train import NEGATIVES, TrainingDiverged


# ----------------------------------------------------------------------------- shared
def _positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {s}")
    return v


def _jobs(s):
    """A joblib process count: an integer >= 1, or -1 (all cores), -2 (all but one), ..."""
    v = int(s)
    if v == 0 or v < -(os.cpu_count() or 1):
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, or -1 for all cores, got {s}")
    return v


def _csv_path(s):
    """A path whose folder exists and is writable (checked before a sweep starts)."""
    folder = os.path.dirname(os.path.abspath(s))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {s!r}: the folder {folder!r} does not "
                                         "exist or is not writable")
    if os.path.isdir(s):
        raise argparse.ArgumentTypeError(f"cannot write {s!r}: it is a folder")
    return s


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


def _progress(args, total, desc):
    """A tqdm bar on a terminal (unless --no-progress), else None."""
    if args.progress is False or not sys.stderr.isatty():
        return None
    B.require("tqdm", "parallel")
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)


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
                    "The first row is the ceiling (exact posterior).")
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
    try:
        cfg = _config(E.HLTMConfig, args).apply_preset()
        cfg.check_cost()
    except ValueError as exc:
        _flag_error(args._parser, exc, E.HLTMConfig)
    depths = list(range(cfg.depth, 0, -1))
    widths = [7] + [6] * len(depths) + [11, 8]
    if not args.json:
        print(f"# {cfg.preset} preset: depth {cfg.depth}, {cfg.num_children} children, "
              f"polarity {cfg.polarity}, hid {cfg.hid}, loss {cfg.loss} (tau {cfg.tau:g}), "
              f"bias {cfg.bias}, normalize {cfg.normalize}, update {cfg.update}, "
              f"lr {cfg.lr:g}, batch {cfg.batch_size}, {cfg.steps_per_epoch} steps/epoch, "
              f"backend {cfg.backend}{', compiled sampler' * (cfg.sampler == 'compiled')}, "
              f"seed {cfg.seed}")
        print(_fmt_row(["epoch"] + [f"d{d}" for d in depths] + ["loss", "seconds"], widths))
    bar = _progress(args, cfg.epochs, "hltm")
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
        if bar is not None:
            bar.update(1 if rec["epoch"] else 0)
            bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    try:
        with B.blas_threads(args.threads):
            records, _ = E.hltm_experiment(cfg, callback=on_epoch)
    except TrainingDiverged as exc:
        print(f"minissl hltm: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
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
                    "loss names or 'preset' (the preset's loss).")
    _add_hltm_model_flags(p, multi=True)
    add_training_flags(p)
    p.add_argument("--seeds", type=_positive_int, default=3, help="seeds 1..N (default 3)")
    p.add_argument("--n-jobs", type=_jobs, default=1,
                   help="parallel processes (joblib; -1 = all cores)")
    p.add_argument("--csv", metavar="PATH", type=_csv_path, default=None,
                   help="also write one row per configuration x seed to PATH")
    p.add_argument("--dask", metavar="SCHEDULER", default=None,
                   help="run the configurations on a Dask distributed cluster: the scheduler's "
                        "address, e.g. tcp://127.0.0.1:8786 (the 'cluster' extra; --n-jobs "
                        "is then ignored)")
    return p


def run_sweep(args):
    parser = args._parser
    try:
        pols = [_parse_range(s) for s in (args.polarity or
                                          [":".join(map(str, E.HLTMConfig.polarity))])]
    except ValueError as exc:
        parser.error(f"--polarity: {exc}")
    base_args = argparse.Namespace(**{k: v for k, v in vars(args).items()
                                      if k not in ("preset", "polarity", "hid", "loss", "seed")})
    try:
        base = _config(E.HLTMConfig, base_args)
        cfgs = E.sweep_configs(base, args.preset or [base.preset], pols, args.hid or [base.hid],
                               args.loss or ["preset"], range(1, args.seeds + 1))
        for c in cfgs:
            c.check_cost()                    # each run alone (a sweep's total is not capped)
    except ValueError as exc:
        _flag_error(parser, exc, E.HLTMConfig)
    print(f"# sweep: {len(cfgs)} runs ({len(cfgs) // args.seeds} configurations x "
          f"{args.seeds} seeds), depth {base.depth}, {base.epochs} epochs x "
          f"{cfgs[0].steps_per_epoch} steps, batch {base.batch_size}, update {base.update}, "
          + (f"Dask scheduler {args.dask}" if args.dask else f"n_jobs {args.n_jobs}"),
          flush=True)
    t0 = time.perf_counter()
    bar = _progress(args, len(cfgs), "sweep")
    try:
        results = E.run_sweep(cfgs, args.n_jobs, args.threads,
                              callback=(lambda r: bar.update(1)) if bar is not None else None,
                              scheduler=args.dask)
    finally:
        if bar is not None:
            bar.close()
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
                    "and OP vec(W) on a fixed batch: what the app's Covariance tab draws.")
    _dataclass_flags(p, E.CovarianceConfig)
    p.add_argument("--json", action="store_true", help="one JSON object per snapshot")
    return p


def run_covariance(args):
    try:
        cfg = _config(E.CovarianceConfig, args).validate()
        cfg.cost().check()
    except ValueError as exc:
        _flag_error(args._parser, exc, E.CovarianceConfig)
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
                    "mean normalized correlation of the latents).")
    p.add_argument("--data", choices=E.DATASETS, default="toy")
    p.add_argument("--preset", choices=tuple(BYOL_PRESETS), default="minissl",
                   help="minissl's conventions or the paper authors' code's (docs/byol.md)")
    p.add_argument("--predictors", nargs="+", default=["none", "linear"], choices=PREDICTORS)
    p.add_argument("--bn-means", nargs="+", default=list(BN_MODES), choices=BN_MODES)
    p.add_argument("--emas", nargs="+", type=float, default=[0.0, 0.99],
                   help="target EMA decays (0 = SimSiam)")
    p.add_argument("--hidden", nargs="+", type=int, default=None,
                   help="encoder hidden widths (toy; default 64)")
    p.add_argument("--hid", type=int, default=10, help="units per latent (HLTM)")
    p.add_argument("--depth", type=int, default=4, help="HLTM depth")
    p.add_argument("--noise", type=float, default=1.0, help="toy augmentation noise")
    p.add_argument("--jobs", type=_jobs, default=1, help="parallel processes (joblib)")
    _dataclass_flags(p, BYOLConfig, _BYOL_FIELDS)
    p.add_argument("--json", action="store_true", help="one JSON object per run")
    return p


def run_byol(args):
    """Run the ablation and print the table (or JSON lines); returns 0."""
    try:
        kw = {name: getattr(args, name) for name in _BYOL_FIELDS
              if getattr(args, name) is not None}
        cfg = BYOLConfig.from_preset(args.preset, **kw,
                                     hidden=tuple(args.hidden or BYOLConfig.hidden))
        cfg = replace(cfg, log_every=cfg.steps).validate()
        source_kw = {"seed": cfg.seed}
        source_kw.update({"depth": args.depth} if args.data == "hltm" else {"noise": args.noise})
        E.make_source(args.data, **source_kw)
        for e in args.emas:
            if not 0 <= e < 1:
                raise ValueError(f"--emas: every EMA decay must be in [0, 1), got {e!r}")
        B.check_int("--hid", args.hid, 1, 4096)
        grid = E.ablation_grid(cfg, args.predictors, args.bn_means, args.emas)
        E.ablation_cost(args.data, grid, args.hid, source_kw).check()
    except ValueError as exc:
        _flag_error(args._parser, exc, BYOLConfig)
    print(f"# BYOL ablation on {args.data}: lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}, "
          f"{cfg.steps} steps, batch {cfg.batch_size}, d {cfg.out_dim}, BN var {cfg.bn_var}, "
          f"normalize {cfg.normalize}, preset {args.preset}, seed {cfg.seed}")
    t0 = time.perf_counter()
    rows = E.run_ablation(args.data, cfg, args.predictors, args.bn_means, args.emas,
                          hid=args.hid, n_jobs=args.jobs, source_kw=source_kw)
    if args.json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if k not in ("spectrum", "run", "runs")},
                             default=float))
    else:
        for line in E.ablation_table(rows):
            print(line)
    print(f"# {time.perf_counter() - t0:.1f} s wall")
    return 0


def add_byol_figures_parser(subparsers):
    p = subparsers.add_parser(
        "byol-figures", help="the experiments and figures of docs/byol.md",
        description="Run the experiments of docs/byol.md, write its PNG figures and print the "
                    "numbers the doc quotes.")
    p.add_argument("--outdir", default="docs/img")
    p.add_argument("--seed", type=int, default=0)
    return p


def run_byol_figures(args):
    with B.blas_threads(1):
        E.byol_doc_figures(args.outdir, args.seed)
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
                    "With --seeds N: mean ± std over seeds 1..N.")
    _dataclass_flags(p, E.SelectivityConfig)
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help="run seeds 1..N (overrides --seed) and print mean ± std")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel processes (joblib)")
    p.add_argument("--json", action="store_true", help="one JSON object per seed")
    return p


def run_selectivity(args):
    try:
        cfg = _config(E.SelectivityConfig, args).validate()
        E.selectivity_cost(cfg).check()                  # each seed's run alone
    except ValueError as exc:
        _flag_error(args._parser, exc, E.SelectivityConfig)
    r = cfg.run
    seeds = list(range(1, args.seeds + 1)) if args.seeds else [r.seed]
    print(f"# selectivity: depth {r.depth}, {r.num_children} children, polarity "
          f"{r.polarity}, hid {r.hid}, loss {r.loss} (tau {r.tau:g}), lr {r.lr:g}, "
          f"batch {r.batch_size}, {r.steps} steps, update {r.update}, OP top k {cfg.k} "
          f"(N {cfg.n_samples} x M {cfg.n_views}), seeds {seeds}", flush=True)
    t0 = time.perf_counter()

    def show(summary):
        if args.json:
            print(json.dumps(_jsonable(summary)), flush=True)
    summaries = E.run_selectivity_seeds(cfg, seeds, args.n_jobs, callback=show)
    _print_table(E.selectivity_table(summaries))
    print(f"# {time.perf_counter() - t0:.0f} s wall. rho s0,sT: Spearman of initial and final "
          "selectivity over the depth's units; rank0 win: initial rank (0 = best of hid) of "
          "each latent's final winner; win>med: share of winners that started above their "
          "latent's median; gain: final - initial selectivity; |w|: final / initial weight-row "
          "norm; rho p0,pT: Spearman of ||U_i^T w_i|| (projection on OP's top-k eigenvectors "
          "at init) at init and at the end; p-rank win: the selectivity winner's initial rank "
          "by that projection; dW in OP / rand: share of ||W_T - W_0||^2 in span(U) / in a "
          "random k-dim subspace; win/rest in OP: the same per unit row")
    return 0


def add_acceleration_parser(subparsers):
    p = subparsers.add_parser(
        "acceleration", help="does training the top layer speed up the bottom layer?",
        description="Train the HLTM tree network with its top layer frozen, trained, or "
                    "scaled up at initialisation (same init and data) and print the bottom "
                    "layer's learning over time; then the same three arms for the exact "
                    "linear two-layer flow.")
    _dataclass_flags(p, E.AccelerationConfig)
    p.add_argument("--figure", metavar="PATH", default=None, help="write the figure (PNG)")
    p.add_argument("--json", action="store_true", help="one JSON object per record")
    return p


def run_acceleration(args):
    try:
        cfg = _config(E.AccelerationConfig, args).validate()
        cfg.cost().check()
    except ValueError as exc:
        _flag_error(args._parser, exc, E.AccelerationConfig)
    r = cfg.run
    print(f"# acceleration: depth {r.depth}, {r.num_children} children, polarity "
          f"{r.polarity}, hid {r.hid}, loss {r.loss} (tau {r.tau:g}), lr {r.lr:g}, "
          f"update {r.update}, {r.steps} steps, batch {r.batch_size}, top scale "
          f"{cfg.top_scale:g}, seed {r.seed}", flush=True)
    with B.blas_threads(1):
        records = E.acceleration_experiment(cfg)
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
                    "the settings of docs/decoupling.md.")
    _dataclass_flags(p, E.DecouplingConfig)
    p.add_argument("--table", action="store_true",
                   help="run the settings of docs/decoupling.md (other flags: the base)")
    p.add_argument("--only", nargs="+", default=None, choices=E.DECOUPLING_LABELS,
                   metavar="LABEL", help="with --table: these settings only")
    p.add_argument("--seeds", type=_positive_int, default=3, help="with --table: seeds 0..N-1")
    p.add_argument("--measured", type=int, default=0,
                   help="with --table: also measure the view correlations on N samples")
    p.add_argument("--figure", metavar="PATH", default=None,
                   help="with --table: write the figure (PNG) to PATH")
    p.add_argument("--threads", type=_positive_int, default=1, help="BLAS threads (1)")
    p.add_argument("--json", action="store_true", help="one JSON object per record / row")
    return p


DECOUPLING_KEYS = ("step", "loss", "alignment", "aligned", "dense_fraction", "coverage",
                   "coverage_min", "covered", "b_mean", "seconds")


def _decoupling_run(cfg, args):
    if not args.json:
        src = cfg.source()
        print(f"# {src!r}; neuron {cfg.neuron}, width {cfg.width}, tau {cfg.tau:g}, "
              f"batch {cfg.batch_size}, Adam lr {cfg.lr:g}, {cfg.steps} steps")
        print(_fmt_row(["step", "loss", "align", "#>0.9", "dense", "cover", "#cov", "b mean",
                        "s"], [6, 8, 6, 6, 6, 6, 5, 7, 6]))

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
                 f"{rec['b_mean']:.4f}", f"{rec['seconds']:.1f}"]
        print(_fmt_row(cells, [6, 8, 6, 6, 6, 6, 5, 7, 6]), flush=True)
    E.decoupling_experiment(cfg, callback=show)


def _decoupling_table(base, args):
    settings = [s for s in E.DECOUPLING_SETTINGS if args.only is None or s[0] in args.only]
    seeds = tuple(range(args.seeds))

    def show(row):
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print("# " + " | ".join(E.decoupling_table_lines([row])[1]), flush=True)
    t0 = time.perf_counter()
    rows = E.decoupling_table(settings, seeds, base, args.measured, callback=show)
    if not args.json:
        print(f"# {len(settings)} settings x seeds {list(seeds)}, {base.steps} steps each, "
              f"{time.perf_counter() - t0:.0f} s wall; mean±std over seeds")
        _print_table(E.decoupling_table_lines(rows))
    if args.figure:
        P.save_png(P.decoupling_figure(rows), args.figure, dpi=110)


def run_decoupling(args):
    try:
        cfg = _config(E.DecouplingConfig, args).validate()
        cfg.cost().check()                               # one run (each of the table's alone)
        if args.measured:
            B.check_int("measured", args.measured, 2)
    except ValueError as exc:
        _flag_error(args._parser, exc, E.DecouplingConfig)
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
                    "correlation per depth (mean±std), the untrained value and the ceiling.")
    _add_hltm_model_flags(p)
    add_training_flags(p)
    p.add_argument("--pairings", nargs="+", choices=NEGATIVES, default=list(NEGATIVES))
    p.add_argument("--label-latents", nargs="+", type=int, default=[0],
                   help="latents (BFS, 0 = root) SupCon is supervised on")
    p.add_argument("--seeds", type=_positive_int, default=3, help="seeds 1..N (default 3)")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel processes (joblib)")
    return p


def run_supervision(args):
    try:
        base = _config(E.HLTMConfig, args)
        cfgs = E.supervision_configs(base, args.pairings, args.label_latents,
                                     range(1, args.seeds + 1))
        for c in cfgs:
            c.check_cost()                               # each run alone
    except ValueError as exc:
        _flag_error(args._parser, exc, E.HLTMConfig)
    c = cfgs[0]
    print(f"# supervision: depth {c.depth}, polarity {c.polarity}, hid {c.hid}, loss {c.loss} "
          f"(tau {c.tau:g}), lr {c.lr:g}, batch {c.batch_size}, {c.epochs} epochs x "
          f"{c.steps_per_epoch} steps, keep_depth {c.keep_depth or c.depth}, {len(cfgs)} runs",
          flush=True)
    t0 = time.perf_counter()
    results = E.run_supervision(cfgs, args.n_jobs, args.threads)
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
    try:
        return args._run(args)
    except B.MissingExtra as exc:                      # one line, never a traceback
        print(f"minissl {args.command}: {exc}", file=sys.stderr)
        return 2
