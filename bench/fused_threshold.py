"""Where the fused step pays on dense nets: ``mlp.FusedStep`` against NumPy's reference step.

    taskset -c 1 python bench/fused_threshold.py

For dense (unmasked) ReLU nets of growing size on backend "numba", one thread (BLAS too):
CPU time of a training step's loss and gradients (batch 128, one given negative, InfoNCE),
the compiled fused step (``kernels.mlp.FusedStep``, built directly) against the general path
(``train.loss_and_grads``: BLAS products), best of 3 rounds of 20, and their ratio (> 1: the
fused step is faster). ``kernels.mlp.DENSE_FUSED_MAX`` (the dense weights beyond which
``train`` takes the general path) is set from this table.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minissl  # noqa: E402
from minissl.data import GaussianClusters  # noqa: E402
from minissl.kernels import mlp  # noqa: E402
from minissl.train import TrainConfig, check_batch, loss_and_grads  # noqa: E402

SIZES = ([8, 32, 16], [16, 32, 16], [16, 48, 16], [16, 64, 16], [32, 32, 32], [32, 48, 32],
         [32, 64, 32], [64, 128, 64, 16], [64, 128, 128, 128, 16])


def cpu_best(fn, rounds=3, calls=20):
    fn()
    best = np.inf
    for _ in range(rounds):
        t = time.thread_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.thread_time() - t) / calls)
    return best


def main():
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    print(f"# one thread, load average {os.getloadavg()[0]:.1f}; limit: "
          f"DENSE_FUSED_MAX = {mlp.DENSE_FUSED_MAX}")
    print("| dtype | sizes | dense weights | fused step | NumPy's step | NumPy / fused |")
    print("|---|---|---|---|---|---|")
    cfg = TrainConfig(loss="infonce", tau=0.5)
    for dt in ("float64", "float32"):
        for sizes in SIZES:
            src = GaussianClusters(n_clusters=8, dim=sizes[0], noise=0.3, seed=0)
            batch = src.triples(128, np.random.default_rng(0))
            net = minissl.ReLUNet(sizes, seed=1, backend="numba", dtype=dt)
            step = mlp.FusedStep(sizes, None, dt)
            X, N, H = check_batch(net, batch, cfg)
            parts = (X[:N], X[N:2 * N], X[2 * N:].reshape(N, H, -1))
            tf = cpu_best(lambda: step(net.weights, *parts, cfg.loss, cfg.tau, cfg.margin))
            tr = cpu_best(lambda: loss_and_grads(net, batch, cfg))
            nw = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
            print(f"| {dt} | {sizes} | {nw:,} | {tf * 1e3:.3f} ms | {tr * 1e3:.3f} ms | "
                  f"{tr / tf:.2f} |")


if __name__ == "__main__":
    main()
