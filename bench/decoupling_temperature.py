"""Why the `wenli` start plateaued under mask p = 0.5 at τ = 0.2: the temperature's hard negatives.

    python bench/decoupling_temperature.py --tau 0.2 --seeds 0 1 2      # ~30 s a seed

Trains the `wenli` preset (d 24, d1 96, dense rank 72, mask p = 0.5, 1,000 steps) at the
training temperature ``--tau`` and then, on 8 fresh batches of 256 pairs:

1. the InfoNCE loss (the training loop's, τ-prefactored) at τ = 0.2, 0.5 and 1 of the trained
   net and of the same net with its dense neurons (sparse alignment < 0.5) re-aimed at the
   least-covered sparse features ``M_j`` (V's row norm kept, b set to the median b of the
   others): a positive ``re-aimed - trained`` means the loss at that τ prefers the dense
   neurons;
2. the share of the softmax weight ``exp(r_n / τ) / Σ exp(r / τ)`` over the 2N - 2 negatives
   that lands on negatives with exactly the anchor's sparse code z, beside their share of the
   negatives: how much the loss looks at the negatives only the dense features tell apart.

docs/decoupling.md ("Why mask p = 0.5 plateaued") records the output.
"""
import argparse
import os
import sys
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minissl import backend as B  # noqa: E402
from minissl.backend import blas_threads  # noqa: E402
from minissl.decoupling import feature_coverage, sparse_alignment  # noqa: E402
from minissl.experiments.decoupling import (DecouplingConfig, decoupling_net,  # noqa: E402
                                            thresholds, train_config, train_source)
from minissl.train import loss_and_grads, train  # noqa: E402

SIZES = dict(d=24, d1=96, dense_rank=72, augmentation="mask", p=0.5, log_every=1000)


def trained(tau, seed):
    """(cfg, source, data, net) after the run."""
    cfg = DecouplingConfig.from_preset("wenli", **SIZES, tau=tau, seed=seed).validate()
    src = cfg.source()
    data = train_source(cfg, src)
    net = decoupling_net(src.dim, cfg.width, cfg.neuron, cfg.b_init, B.derive_seed(seed, 1),
                         cfg.backend, cfg.v_norm, cfg.relu_bias)
    train(net, data, train_config(cfg))
    return cfg, src, data, net


def reaimed(net, src, dense):
    """A copy of ``net`` with the ``dense`` neurons turned to the least-covered features."""
    alt = net.copy()
    live = np.setdiff1d(np.arange(net.layers[0].V.shape[0]), dense)
    order = np.argsort(feature_coverage(net.layers[0].W, src.M))
    for i, j in zip(dense, np.resize(order, len(dense))):
        alt.layers[0].V[i] = np.linalg.norm(net.layers[0].V[i]) * src.M[:, j]
        for th in thresholds(alt):
            th.b[i] = np.median(th.b[live])
    return alt


def batches(src, data, n, count=8, seed=123):
    """``count`` pairs of views (n, 2, d1) in the net's units with their codes z (n, d)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x, z, _ = src.sample(n, rng, return_parts=True)
        out.append((getattr(data, "c", 1.0) * src.augment(x, 2, rng), z))
    return out


def same_code_weight(net, views, z, tau):
    """(softmax weight on the negatives with the anchor's code, their share of negatives)."""
    n = len(z)
    Z = net.apply(np.concatenate([views[:, 0], views[:, 1]]))              # (2n, m)
    S = Z @ Z.T / tau
    idx = np.arange(2 * n)
    S[idx, idx] = S[idx, (idx + n) % (2 * n)] = -np.inf                    # self, partner
    P = np.exp(S - S.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    zz = np.concatenate([z, z])
    same = (zz[:, None, :] == zz[None, :, :]).all(axis=2)
    same[idx, idx] = same[idx, (idx + n) % (2 * n)] = False
    return float((P * same).sum(axis=1).mean()), float(same.sum(axis=1).mean() / (2 * n - 2))


def report(tau, seed):
    cfg, src, data, net = trained(tau, seed)
    al = sparse_alignment(net.layers[0].W, src.M)
    dense = np.flatnonzero(al < 0.5)
    print(f"seed {seed}, trained at tau {tau:g}: alignment {al.mean():.3f}, "
          f"{len(dense)} dense neurons")
    data_batches = batches(src, data, cfg.batch_size)
    alt = reaimed(net, src, dense)
    for t in (0.2, 0.5, 1.0):
        tc = replace(train_config(cfg), tau=t)
        loss = [np.mean([loss_and_grads(m, (v[:, 0], v[:, 1], None), tc)[0]
                         for v, _ in data_batches]) for m in (net, alt)]
        print(f"  loss at tau {t:g}: trained {loss[0]:.4f}, dense neurons re-aimed "
              f"{loss[1]:.4f}, re-aimed - trained {loss[1] - loss[0]:+.4f}")
    for t in (0.2, 1.0):
        w = np.mean([same_code_weight(net, v, z, t) for v, z in data_batches], axis=0)
        print(f"  softmax weight at tau {t:g} on negatives with the anchor's sparse code: "
              f"{w[0]:.4f} (their share of the negatives {w[1]:.4f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    with blas_threads(1):
        for seed in args.seeds:
            report(args.tau, seed)


if __name__ == "__main__":
    main()
