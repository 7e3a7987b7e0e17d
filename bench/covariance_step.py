"""Benchmark: one ``update="covariance"`` training step, one pass per batch against per layer.

A covariance-operator step (``train.covariance_step``) moves every layer by
``ΔW_l = OP_l vec(W_l)`` on the batch's views (N, 2, n_0). It used to build each layer's
factors on its own (the pair weights from one forward, then per layer a forward and a Jacobian
pass: 2 + L forwards in all with the loss's); now every layer's factors and the pair weights
come from one forward and one Jacobian pass (``covariance.covariance_updates``). The old path
is kept here as the reference (``per_layer_step``), not in the library.

    python bench/covariance_step.py                  # depth-4 net 64-128-128-128-16, N=128
    python bench/covariance_step.py --repeats 20 --backends numpy

Times (best of ``--repeats`` interleaved rounds after a warm-up; BLAS on ``--threads``, default
1: on a loaded 2-core machine BLAS threads only add noise) the whole step: the loss and its
gradient on a batch with given negatives (``train.gradient_step``, as ``train`` runs it: the
compiled fused step on backend "numba"), then the covariance step; and the covariance step
alone; per backend and loss. Prints the ratios old / new and the largest relative difference
of the updates (the same arithmetic, shared: they agree to the last bit).

Then (``--train``, on by default) the covariance step against the gradient step on the same
net, as ``train`` runs them: seconds per step of ``train(update="gradient")`` and of
``train(update="covariance")`` (the loss, its gradient, the covariance step, the cosines and
the update), the default sampler, for the dense net on Gaussian clusters and the HLTM tree
network (depth 5, 2 children, hid 10, batch 128) on its HLTM, per backend; interleaved rounds,
best of ``--repeats``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minissl  # noqa: E402
from minissl.data import GaussianClusters  # noqa: E402
from minissl.train import TrainConfig, covariance_step, gradient_step  # noqa: E402


def per_layer_step(net, batch, cfg):
    """The reference: the covariance updates as ``train.covariance_step`` built them before,
    the pair weights and then each layer with its own forward and Jacobian pass."""
    views = np.stack([net.asarray(batch[0]), net.asarray(batch[1])], axis=1)   # (N, 2, n_0)
    xi = None if cfg.loss == "simple" else minissl.covariance_pair_weights(
        net, views, cfg.loss, cfg.tau, cfg.margin)
    return [minissl.covariance_update(net, views, l, xi) for l in range(net.depth)]


def one_pass_step(net, batch, cfg):
    return covariance_step(net, batch, cfg, [np.ones_like(W) for W in net.weights])[0]


def interleaved(fns, repeats):
    """Best wall time of each of ``fns`` over ``repeats`` rounds (each runs once per round, in
    turn, after one warm-up round), so that a changing load hits every entry alike."""
    for fn in fns.values():
        fn()                                                  # warm-up (numba compiles)
    ts = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            ts[name].append(time.perf_counter() - t)
    return {name: min(v) for name, v in ts.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,128,128,128,16", help="widths n_0,...,n_L")
    ap.add_argument("--batch", type=int, default=128, help="anchors N (default 128)")
    ap.add_argument("--repeats", type=int, default=10, help="timed repeats, best kept")
    ap.add_argument("--backends", default="numpy,numba")
    ap.add_argument("--losses", default="infonce,simple")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads (threadpoolctl; default 1, 0: leave as set)")
    ap.add_argument("--train-steps", type=int, default=40,
                    help="steps per timed train() run of the update-rule table (0: skip it)")
    args = ap.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; net {sizes} (depth {len(sizes) - 1}), N={args.batch}, "
          f"given negatives, BLAS threads {args.threads or 'default'}, best of {args.repeats} "
          f"interleaved rounds")
    print("| backend | loss | step: per layer | step: one pass | ratio | covariance part: "
          "per layer | one pass | ratio | max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    src = GaussianClusters(n_clusters=8, dim=sizes[0], noise=0.3, seed=0)
    batch = src.triples(args.batch, np.random.default_rng(0))
    for backend in args.backends.split(","):
        net = minissl.ReLUNet(sizes, seed=1, backend=backend)
        for loss in args.losses.split(","):
            cfg = TrainConfig(loss=loss, tau=0.5, update="covariance")
            grad = gradient_step(net, cfg)           # as train() does: compiled on numba
            old = per_layer_step(net, batch, cfg)
            new = one_pass_step(net, batch, cfg)
            diff = max(float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(old, new))
            t = interleaved({
                "old": lambda: per_layer_step(net, batch, cfg),
                "new": lambda: one_pass_step(net, batch, cfg),
                "old step": lambda: (grad(batch), per_layer_step(net, batch, cfg)),
                "new step": lambda: (grad(batch), one_pass_step(net, batch, cfg))},
                args.repeats)
            print(f"| {backend} | {loss} | {t['old step'] * 1e3:.2f} ms | "
                  f"{t['new step'] * 1e3:.2f} ms | {t['old step'] / t['new step']:.2f}x | "
                  f"{t['old'] * 1e3:.2f} ms | {t['new'] * 1e3:.2f} ms | "
                  f"{t['old'] / t['new']:.2f}x | {diff:.1e} |")
    if args.train_steps:
        update_rules(sizes, args)


def update_rules(sizes, args):
    """The covariance step against the gradient step on the same net, through ``train``."""
    S = args.train_steps
    print(f"\n# train(update=...): seconds per step over {S} steps, best of {args.repeats} "
          f"interleaved rounds, loss infonce, default sampler; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| net | backend | gradient step | covariance step | covariance / gradient |")
    print("|---|---|---|---|---|")
    tree = minissl.HLTM(depth=5, num_children=2, seed=0)
    nets = {f"dense {sizes}, N={args.batch}": (
                lambda b: minissl.ReLUNet(sizes, seed=1, backend=b),
                GaussianClusters(n_clusters=8, dim=sizes[0], noise=0.3, seed=0), args.batch, 0.5),
            "HLTM tree d5 c2 hid10, N=128": (
                lambda b: minissl.tree_network(tree, 10, seed=1, backend=b), tree, 128, 0.1)}
    for name, (make, src, N, tau) in nets.items():
        for backend in args.backends.split(","):
            net = make(backend)
            W0 = [np.array(W) for W in net.weights]

            def run(update):
                for W, V in zip(net.weights, W0):
                    W[...] = V
                minissl.train(net, src, loss="infonce", tau=tau, lr=0.01, steps=S,
                              batch_size=N, update=update, log_every=S)
            t = interleaved({u: (lambda u=u: run(u)) for u in ("gradient", "covariance")},
                            args.repeats)
            print(f"| {name} | {backend} | {t['gradient'] / S * 1e3:.3f} ms | "
                  f"{t['covariance'] / S * 1e3:.3f} ms | "
                  f"{t['covariance'] / t['gradient']:.1f}x |")


if __name__ == "__main__":
    main()
