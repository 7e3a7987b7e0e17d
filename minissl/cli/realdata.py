"""``python -m minissl realdata``: the methods on real data (digits, MNIST-1D, CIFAR-10,
image folders), one run, a table of methods x seeds, or a claim of docs/realdata.md.

    python -m minissl realdata --data mnist1d --method simclr --seed 0 --json
    python -m minissl realdata --data digits --table --seeds 3
    python -m minissl realdata --data digits --claim covariance --seeds 3
    python -m minissl realdata --data digits --claim decoupling --figure docs/img/x.png

One run prints one JSON object (``--json``) or one line; ``--table`` and ``--claim`` print
their table (mean ± sd over seeds 0..K-1), header first, with progress on stderr. A missing
optional package or an unreadable data file is one line on stderr (exit 1).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

from .. import backend as B
from .. import experiments as E
from ..budget import ResourceLimitError
from ..datasets import MissingExtra
from ..experiments import realdata as R
from ..figures import plots as P
from ..train import TrainingDiverged
from .flags import config_of, dataclass_flags, flag_error


def add_parser(subparsers):
    p = subparsers.add_parser(
        "realdata", help="the methods on real data: probes, effective rank, tables",
        description="Train a method on digits / MNIST-1D (made locally) or a local CIFAR-10 / "
                    "image folder (--path), then probe the test split. --table runs every "
                    "--methods for --seeds seeds; --claim runs one of docs/realdata.md's. Time at "
                    "the defaults on one core: ~5-10 s a run on digits, ~25-45 s on MNIST-1D "
                    "(the covariance method ~4 min); --table ~10 runs x --seeds; progress on "
                    "stderr.")
    dataclass_flags(p, R.RealDataConfig, multi=("hidden",),
                    unset="default: per data and method")
    p.add_argument("--json", action="store_true", help="one JSON object (a run) or per row")
    p.add_argument("--table", action="store_true", help="every --methods x --seeds")
    p.add_argument("--methods", nargs="+", choices=R.METHODS, default=None,
                   help="--table: the methods (default: all)")
    p.add_argument("--claim", choices=tuple(R.CLAIMS), default=None,
                   help="one claim's table (docs/realdata.md)")
    p.add_argument("--seeds", type=int, default=None,
                   help="--table/--claim: seeds --seed .. --seed + K - 1 (default 3)")
    p.add_argument("--figure", default=None,
                   help="with --table / --claim: the first seed's first-layer change W - W(0) of "
                        "each trained row, a PNG written here")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    return p


def _rows(args):
    if args.claim:
        return R.CLAIMS[args.claim]
    return R.methods_rows(args.methods or list(R.METHODS))


def _print_table(lines):
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    for r in lines:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))), flush=True)


def _table(cfg, args):
    args.seeds = 3 if args.seeds is None else args.seeds
    if args.seeds < 1:
        args._parser.error(f"--seeds: must be >= 1, got {args.seeds}")
    rows, t0 = _rows(args), time.perf_counter()
    seeds = tuple(range(cfg.seed, cfg.seed + args.seeds))          # from --seed

    def progress(row):
        print(f"# {row['label']}: " + " | ".join(R.table_lines([row])[1][1:]) +
              f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps({k: v for k, v in row.items() if k != "runs"} | {
                "runs": [{k: v for k, v in r.items() if k != "weights"} for r in row["runs"]]}),
                flush=True)
    out = E.realdata_table(cfg, rows, seeds, callback=progress)
    if not args.json:
        _print_table(R.table_lines(out))
        print(f"# data {cfg.data}, seeds {list(seeds)}, mean ± sd; "
              f"{time.perf_counter() - t0:.0f} s wall")
    if args.figure:
        _figure(cfg, out, args.figure, seeds[0])


def _figure(cfg, rows, path, seed):
    """The change ``W - W(0)`` of the first layer of each row's run of ``seed`` (the table's
    first) where it has one (a trained method whose run did not diverge), a PNG at ``path``."""
    data = R.load(cfg.data, cfg.path or None)
    runs = [(r, run) for r in rows for run in r["runs"]
            if run["seed"] == seed and "weights" in run]
    if not runs:
        print(f"# --figure: no row has a trained run of seed {seed}; no figure written",
              file=sys.stderr)
        return
    dW = [run["weights"] - R.initial_weights(replace(cfg, **r["settings"], seed=seed),
                                             data.x_train.shape[1]) for r, run in runs]
    P.save_png(P.first_layer_figure(dW, data.shape, [r["label"] for r, _ in runs], n=12,
                                    title="first-layer weights: change from initialisation, "
                                          "W - W(0)"), path, dpi=110)


def _one(cfg, args):
    records = E.realdata_run(cfg)
    out = E.realdata_summary(cfg, records)
    if args.json:
        print(json.dumps(out), flush=True)
        return
    keys = ("linear_probe", "linear_probe_hidden", "knn", "knn_hidden", "effective_rank")
    print(f"{cfg.data} {cfg.method} seed {cfg.seed}: " + ", ".join(
        f"{k} {out[k]:.3f}" for k in keys) + f", {out['seconds']:.1f} s")


def run(args):
    if args.methods is not None and not args.table:
        args._parser.error("--methods: only with --table (the methods of the table)")
    if args.seeds is not None and not (args.table or args.claim):
        args._parser.error("--seeds: only with --table or --claim (one run has one --seed)")
    try:
        cfg = config_of(R.RealDataConfig, args)
        for c in ([replace(cfg, **kw) for _, kw in _rows(args)]     # a table: what its rows run
                  if args.table or args.claim else [cfg]):
            c.validate()
    except ValueError as exc:
        flag_error(args._parser, exc, R.RealDataConfig)
    try:
        with B.blas_threads(args.threads):
            (_table if args.table or args.claim else _one)(cfg, args)
    except (MissingExtra, FileNotFoundError, TrainingDiverged) as exc:
        print(f"minissl realdata: error: {exc}", file=sys.stderr)
        return 1
    except ResourceLimitError as exc:
        flag_error(args._parser, exc, R.RealDataConfig)
    except ValueError as exc:                      # an unreadable or refused data file
        print(f"minissl realdata: error: {exc}", file=sys.stderr)
        return 1
    return 0
