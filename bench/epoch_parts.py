"""Where a step of the compiled HLTM epoch goes: each kernel of ``kernels.tree`` alone.

    taskset -c 1 python bench/epoch_parts.py                 # float32
    taskset -c 1 python bench/epoch_parts.py --dtype float64

Builds the tree network (depth 5, 2 children, hid 10) and its compiled epoch (batch 128, one
negative, InfoNCE τ = 0.1), runs 500 steps, then times each part of a step on the epoch's own
buffers, called ``--repeats`` times from a compiled loop (no Python per call), and a whole
500-step call; CPU time of this thread (``time.thread_time``: other processes' load does
not count, their cache traffic does). Prints a Markdown table (µs per step). The parts add
up to a little more than the epoch's step: alone, each part's data is where the previous
call of the same part left it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minissl  # noqa: E402
from minissl.kernels import tree as T  # noqa: E402
from minissl.kernels.hltm import Sampler, sample_bits  # noqa: E402
from minissl.kernels.mlp import loss_weights  # noqa: E402
from minissl.train import TrainConfig, epoch_twin  # noqa: E402


@njit
def _sampler(R, seed, n_top, parent, thr, z, out):
    for _ in range(R):
        sample_bits(seed, n_top, parent, thr, z, out)


@njit
def _patterns(R, lbits, N, H, ind, Ws, bs, pre, A2, b2, tf):
    for _ in range(R):
        T.pattern_rows(lbits, N, H, 2, ind)
        T.leaf_tables(Ws[0], bs[0], 2, Ws[1], bs[1], pre, A2, b2, tf)


@njit
def _forward(R, A2, b2, ind, Ws, bs, Ks, acts, tmp):
    L = len(Ws)
    for _ in range(R):
        T.combine(A2, b2, A2.shape[1], 0, ind, acts[2], 1, tmp)
        for l in range(2, L):
            T.combine(Ws[l], bs[l], Ks[l], 0, acts[l], acts[l + 1], 1 if l < L - 1 else 0,
                      tmp)


@njit
def _output(R, Z, Y, dY, N, H, rp, rn, cp, cn, tmp):
    for _ in range(R):
        T.top_forward(Z, Y, False, 0.0, N, H, rp, rn, tmp[0], 3e38)
        loss_weights(rp, rn, 2, 0.1, 0.0, cp, cn, 0, N)
        T.top_backward(Z, Y, dY, False, 0.0, N, H, cp, cn, tmp)


@njit
def _weight_grads(R, ind, Tm, Ks, acts, dWs, dbs):
    for _ in range(R):
        T.weight_grads(Tm.shape[1], ind, acts[2], Tm, dbs[1])
        for l in range(2, len(Ks)):
            T.weight_grads(Ks[l], acts[l], acts[l + 1], dWs[l], dbs[l])


@njit
def _input_grads(R, Ws, Ks, acts, fs, wt, zb, tmp):
    for _ in range(R):
        for l in range(2, len(Ws)):
            n_in = fs[l].shape[0]
            WT = wt[:n_in * (Ws[l].shape[0] * Ks[l] // n_in)].reshape((n_in, -1))
            T.transposed(Ws[l], 0, Ks[l], WT)
            T.combine(WT, zb, WT.shape[1], 0, acts[l + 1], fs[l], 2, tmp)


@njit
def _leaf_grads(R, W2, pre, Tm, db2, dW2, dW1, db1, S, tf):
    for _ in range(R):
        T.leaf_grads(W2, 2, pre, Tm, db2, dW2, dW1, db1, S, tf)


@njit
def _sgd(R, Ws, dWs, Vs):
    for _ in range(R):
        for l in range(len(Ws)):
            T.sgd_layer(Ws[l], dWs[l], Vs[l], 0.0, 0.0, 0.0)


def timed(fn, repeats):
    """Best CPU time per call of ``fn(R)`` (R calls in a compiled loop), µs."""
    fn(1)
    best = np.inf
    for _ in range(3):
        t = time.thread_time()
        fn(repeats)
        best = min(best, (time.thread_time() - t) / repeats * 1e6)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--repeats", type=int, default=3000)
    args = ap.parse_args(argv)
    tree = minissl.HLTM(5, 2, seed=0)
    net = minissl.tree_network(tree, 10, backend="numba", dtype=args.dtype, seed=0)
    cfg = TrainConfig(loss="infonce", tau=0.1, lr=0.1, batch_size=128, steps=500)
    ep, rng = epoch_twin(net, tree, cfg), np.random.default_rng(0)
    with np.errstate(all="ignore"):
        ep.run(rng, 500)
    w, n, sam, (N, H), R = ep.work, ep.net, ep.sampler, (ep.N, ep.H), args.repeats
    Ws, bs, Ks, acts, V = n.Ws, n.bs, n.Ks, w.acts, w.acts[0].shape[1]
    e = lambda *s: np.zeros(s, np.dtype(args.dtype))  # noqa: E731
    G1, n2, P = tree.dim // 2, Ws[1].shape[0], 4
    pre, S, A2, Tm, b2, tf = e(G1, 10, P), e(G1, 10, P), e(n2, 6), e(n2, 6), e(n2), e(P)
    tmp, Y, dY = e(4, V), e(Ws[-1].shape[0], V), e(Ws[-1].shape[0], V)
    rp, rn, cp, cn = e(N), e(N, H), e(N), e(N, H)
    seed = Sampler.seeds(rng, 1)[0]
    fs = tuple(a.copy() for a in acts)

    def epoch(_):
        with np.errstate(all="ignore"):
            ep.run(rng, 500)
    rows = {}
    rows["whole step (one 500-step call)"] = min(timed(epoch, 1) for _ in range(3)) / 500
    with np.errstate(all="ignore"):
        rows["sampler (`kernels.hltm.sample_bits`)"] = timed(lambda r: _sampler(
            r, seed, sam.n_top, sam.parent, sam.thr, ep.zbits, ep.lbits), R)
    rows["pattern indicators and tables (`pattern_rows`, `leaf_tables`)"] = timed(
        lambda r: _patterns(r, ep.lbits, N, H, w.ind, Ws, bs, pre, A2, b2, tf), R)
    rows["forward of the collapsed layer 2 and layers 3-5 (`combine`)"] = timed(
        lambda r: _forward(r, A2, b2, w.ind, Ws, bs, Ks, acts, tmp), R)
    rows["output: distances, loss weights, chain"] = timed(
        lambda r: _output(r, acts[-1], Y, dY, N, H, rp, rn, cp, cn, tmp), R)
    rows["weight gradients (`weight_grads`, the pattern sums T included)"] = timed(
        lambda r: _weight_grads(r, w.ind, Tm, Ks, acts, w.dWs, w.dbs), R)
    rows["input gradients (`transposed` + `combine`, gated)"] = timed(
        lambda r: _input_grads(r, Ws, Ks, acts, fs, e(max(W.size for W in Ws)),
                               e(max(a.shape[0] for a in acts)), tmp), R)
    rows["layers 1-2's gradients from T (`leaf_grads`)"] = timed(
        lambda r: _leaf_grads(r, Ws[1], pre, Tm, w.dbs[1], w.dWs[1], w.dWs[0], w.dbs[0], S,
                              tf), R)
    rows["SGD"] = timed(lambda r: _sgd(r, Ws, w.dWs, ep.sgd[4]), R)
    print(f"# {args.dtype}, one thread, CPU µs per step; load average {os.getloadavg()[0]:.1f}")
    print("| part | µs |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.1f} |")
    print(f"| sum of the parts | {sum(list(rows.values())[1:]):.1f} |")


if __name__ == "__main__":
    main()
