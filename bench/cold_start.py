"""Cold start of the compiled paths: the first training step in a fresh environment.

    python bench/cold_start.py                 # every scenario, 2 processes each
    python bench/cold_start.py --scenarios step,epoch-ref --rounds 2

For each scenario a child process (``--child``) starts with an empty ``NUMBA_CACHE_DIR``
(a new temporary directory), builds the HLTM tree network (depth 5, 2 children, hid 10,
float32, backend "numba") and times its first and second training step; then a second
process with the same cache directory does it again (loading the machine code instead of
compiling it). Times are wall-clock seconds and the process's CPU seconds (the machine may be
shared: CPU time is what compiling costs), and whether the stderr notice ``minissl: compiling
Numba kernels`` appeared. The ``cli`` scenarios time the whole process
``python -m minissl hltm --preset reference --epochs 2 --seed 1 --backend numba``.

Scenarios: ``step`` (the per-step path, ``train.gradient_step``: a ``TreeStep``),
``step-ref`` (the same with biases and output normalisation, loss ref_nce: the reference
preset), ``epoch`` and ``epoch-ref`` (``train.epoch_twin``: the compiled epoch of
``sampler="compiled"``; the "step" is one step of it), ``cli`` and ``cli-compiled`` (the whole
process with the NumPy or the compiled sampler).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIOS = ("step", "step-ref", "epoch", "epoch-ref", "cli", "cli-compiled")
CLI = [sys.executable, "-m", "minissl", "hltm", "--preset", "reference", "--epochs", "2",
       "--seed", "1", "--backend", "numba"]


def child(scenario):
    """Run in the fresh process: build, then time two steps; print one JSON line."""
    t_start, c_start = time.perf_counter(), time.process_time()
    sys.path.insert(0, ROOT)
    import numpy as np
    import minissl
    from minissl.train import TrainConfig, epoch_twin, gradient_step
    t_import = time.perf_counter() - t_start
    tree = minissl.HLTM(5, 2, seed=0)
    ref = scenario.endswith("-ref")
    net = minissl.tree_network(tree, 10, backend="numba", dtype="float32", seed=0, bias=ref,
                               normalize=ref, norm_eps=1e-4 if ref else 0.0)
    cfg = TrainConfig(loss="ref_nce" if ref else "infonce", tau=0.05 if ref else 0.1,
                      lr=0.1, batch_size=128, sampler="compiled")
    rng = np.random.default_rng(0)
    if scenario.startswith("epoch"):
        epoch = epoch_twin(net, tree, cfg)
        step = lambda: epoch.run(rng, 1)  # noqa: E731
    else:
        fn, batch = gradient_step(net, cfg), tree.triples(128, rng)
        step = lambda: fn(batch)  # noqa: E731
    out = {"import": t_import}
    for k in ("first", "second"):
        t, c = time.perf_counter(), time.process_time()
        step()
        out[k], out[k + "_cpu"] = time.perf_counter() - t, time.process_time() - c
    out["total_cpu"] = time.process_time() - c_start
    print(json.dumps(out), flush=True)


def run_child(scenario, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    if scenario.startswith("cli"):
        cmd = CLI + (["--sampler", "compiled"] if scenario == "cli-compiled" else [])
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        out = {"wall": time.perf_counter() - t}
    else:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", scenario],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise RuntimeError(r.stderr)
        out = json.loads(r.stdout.strip().splitlines()[-1])
    out["notice"] = "compiling Numba kernels" in r.stderr
    return out


def row(name, process, r):
    if "wall" in r:
        return (f"{name:<14} {process:<8} {'':>9} {'':>9} {'':>9}   whole process "
                f"{r['wall']:6.2f} s wall   notice: {'yes' if r['notice'] else 'no'}")
    return (f"{name:<14} {process:<8} {r['first']:9.3f} {r['first_cpu']:9.3f} "
            f"{r['second'] * 1e3:8.2f}m   import {r['import']:.2f} s, process CPU "
            f"{r['total_cpu']:.2f} s   notice: {'yes' if r['notice'] else 'no'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--rounds", type=int, default=1, help="fresh caches per scenario")
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child)
    print(f"load average {os.getloadavg()[0]:.1f} at start; {os.cpu_count()} cores; "
          f"Python {sys.version.split()[0]}")
    print(f"{'scenario':<14} {'process':<8} {'1st step':>9} {'(CPU s)':>9} {'2nd step':>9}")
    for name in args.scenarios.split(","):
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="minissl-cold-") as cache:
                for process in ("fresh", "cached"):
                    print(row(name, process, run_child(name, cache)), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at end (1st step: seconds, wall and CPU; "
          f"2nd step: milliseconds)")


if __name__ == "__main__":
    main()
