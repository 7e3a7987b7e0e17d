"""Cold start of the compiled paths: the first training step in a fresh environment.

    python bench/cold_start.py                 # every scenario, 2 processes each
    python bench/cold_start.py --scenarios step,epoch-ref --rounds 2

For each scenario a child process (``--child``) starts with an empty ``NUMBA_CACHE_DIR``
(a new temporary directory), builds the HLTM tree network (depth 5, 2 children, hid 10,
float32, backend "numba") and times its first and second training step; then a second
process with the same cache directory does it again (loading the machine code instead of
compiling it). Times are wall-clock seconds (what a user waits) and CPU seconds of the process
and its compile helper (``kernels.compiling.Sharing``: on a cold cache a second process takes
half of the kernels; ``--helper both``, the default, runs every scenario with it on and, as
``MINISSL_COMPILE_HELPER=0``, off), and whether the stderr notice ``minissl: compiling
Numba kernels`` appeared. The ``cli`` scenarios time the whole process.

Scenarios: ``train`` (what a first-time user runs: ``minissl.train(net, tree, steps=1)`` with
every default, the tree network on backend "numba", float64: the compiled epoch, sampler
"auto"), ``epoch`` and ``epoch-ref`` (``train.epoch_twin``, float32: the compiled epoch; the
"step" is one step of it; ``-ref``: biases, output normalisation, loss ref_nce, the reference
preset), ``step`` and ``step-ref`` (the per-step path of ``sampler="numpy"``,
``train.gradient_step``: a ``TreeStep``), ``cli`` (``python -m minissl hltm --backend numba
--epochs 1``: the default run, one epoch), ``cli-ref`` (``python -m minissl hltm --preset
reference --epochs 2 --seed 1 --backend numba``), ``cli-numpy-sampler`` (the same with
``--sampler numpy``) and ``app`` (the app's default run, backend "numba" with the compiled
sampler, as its startup warm-up runs it: ``app.hltm.warm_up``'s experiment, 1 epoch of 2
steps, float64, evaluation included; the "step" is that whole run, the import of the app,
Gradio included, is reported apart). The README's examples use backend "numpy" (the default
of ``ReLUNet``, ``tree_network`` and the CLI): nothing compiles, Numba is not even imported.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIOS = ("train", "epoch", "epoch-ref", "step", "step-ref", "cli", "cli-ref",
             "cli-numpy-sampler", "app")
CLI = {"cli": ["--backend", "numba", "--epochs", "1"],
       "cli-ref": ["--preset", "reference", "--epochs", "2", "--seed", "1", "--backend", "numba"],
       "cli-numpy-sampler": ["--preset", "reference", "--epochs", "2", "--seed", "1",
                             "--backend", "numba", "--sampler", "numpy"]}


def child(scenario):
    """Run in the fresh process: build, then time two steps; print one JSON line."""
    t_start, c_start = time.perf_counter(), cpu()
    sys.path.insert(0, ROOT)
    import numpy as np
    import minissl
    from minissl.train import TrainConfig, epoch_twin, gradient_step
    if scenario == "app":                   # the app's warm-up: its default setting's run
        import app.hltm as A
        from minissl import experiments as E
        cfg = A.hltm_config({**A.HLTM_DEFAULTS, "epochs": 1, "steps_per_epoch": 2})
        step = lambda: E.hltm_experiment(cfg, limits=A.LIMITS)  # noqa: E731
        return time_steps(step, time.perf_counter() - t_start, c_start)
    t_import = time.perf_counter() - t_start
    tree = minissl.HLTM(5, 2, seed=0)
    if scenario == "train":                 # every default: float64, sampler "auto", ...
        net = minissl.tree_network(tree, 10, backend="numba")
        step = lambda: minissl.train(net, tree, steps=1)  # noqa: E731
        return time_steps(step, t_import, c_start)
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
    return time_steps(step, t_import, c_start)


def cpu():
    """CPU seconds of this process and its finished children (the compile helper)."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


def time_steps(step, t_import, c_start):
    out = {"import": t_import}
    for k in ("first", "second"):
        t, c = time.perf_counter(), cpu()
        step()
        out[k], out[k + "_cpu"] = time.perf_counter() - t, cpu() - c
    out["total_cpu"] = cpu() - c_start
    print(json.dumps(out), flush=True)


def run_child(scenario, cache, helper):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, MINISSL_COMPILE_HELPER=helper)
    if scenario.startswith("cli"):
        cmd = [sys.executable, "-m", "minissl", "hltm"] + CLI[scenario]
        t, c = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        c2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = {"wall": time.perf_counter() - t,
               "cpu": c2.ru_utime + c2.ru_stime - c.ru_utime - c.ru_stime}
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
        return (f"{name:<25} {process:<8} {'':>9} {'':>9} {'':>9}   whole process "
                f"{r['wall']:6.2f} s wall, {r['cpu']:6.2f} s CPU   notice: "
                f"{'yes' if r['notice'] else 'no'}")
    return (f"{name:<25} {process:<8} {r['first']:9.3f} {r['first_cpu']:9.3f} "
            f"{r['second'] * 1e3:8.2f}m   import {r['import']:.2f} s, process CPU "
            f"{r['total_cpu']:.2f} s   notice: {'yes' if r['notice'] else 'no'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--rounds", type=int, default=1, help="fresh caches per scenario")
    ap.add_argument("--helper", choices=("on", "off", "both"), default="both",
                    help="the compile helper process on, off (MINISSL_COMPILE_HELPER=0) or "
                         "each in turn")
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child)
    print(f"load average {os.getloadavg()[0]:.1f} at start; {os.cpu_count()} cores; "
          f"Python {sys.version.split()[0]}")
    print(f"{'scenario':<25} {'process':<8} {'1st step':>9} {'(CPU s)':>9} {'2nd step':>9}")
    helpers = {"on": ["1"], "off": ["0"], "both": ["0", "1"]}[args.helper]
    for name in args.scenarios.split(","):
        for _ in range(args.rounds):
            for helper in helpers:
                with tempfile.TemporaryDirectory(prefix="minissl-cold-") as cache:
                    for process in ("fresh", "cached"):
                        label = name + ("" if helper == "1" else " (alone)")
                        print(row(label, process, run_child(name, cache, helper)), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at end (1st step: seconds, wall and CPU; "
          f"2nd step: milliseconds)")


if __name__ == "__main__":
    main()
