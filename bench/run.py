"""Benchmarks: minissl (numpy, numba, cupy) against plain PyTorch, side by side in one run.

    python bench/run.py            # full rows (a few minutes on 2 cores)
    python bench/run.py --quick    # fewer steps, smaller epoch (about a minute)

Prints one table. Each row is a workload timed in this process for every implementation,
the best of ``--repeats`` runs, with the ratio to PyTorch CPU (``x torch`` > 1: faster than
PyTorch), the useful floating-point work per step and the fraction of this machine's peak
(measured here with a large matmul, float32 and float64) that the best run reaches.

Rows
1. HLTM, reference configuration (depth 5, 2 children, hid 10, batch 128, 64,000 triples per
   epoch, InfoNCE with one given negative, SGD): training triples per second; and a full
   epoch = sampling the epoch's triples + training + the correlation pass (10,000 samples);
   the numba column samples with the compiled twin (``minissl.kernels.hltm.triples``), the
   torch column with a torch sampler of the same law (``torch_ref.TorchHLTM``).
2. Dense MLP 512->1024->1024->128, batch 512 (1,024 views), InfoNCE with in-batch
   negatives (SimCLR), float32: seconds per step.
3. Matrix-free covariance spectrum (top 4 eigenpairs, Lanczos) of a 256x256 layer
   (65,536 weights) of a [64, 256, 256, 32] net over 256 samples x 4 views.
4. The same rows on the GPU (CuPy against PyTorch CUDA) when a GPU is present.
5. JAX (``bench/jax_ref.py``) on the HLTM reference configuration, float32 and float64, one
   500-step epoch (64,000 triples, sampled once by ``tree.triples`` outside the timing):
   minissl numba fused step, PyTorch, JAX scanned epoch (grouped einsum, one ``lax.scan``),
   JAX per-step (one jitted call per step) and dense masked JAX (``W * mask``, scanned), each
   with 1 thread and with the budget. Interleaved rounds (every entry once per round, the
   order rotated each round), the median per entry; ``x numba`` = numba's time (same threads)
   / this time. XLA sizes its CPU thread pool once per process from the CPUs the process may
   use, so JAX runs in one worker process per thread setting (CPU affinity set before it
   starts, ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` for 1 thread), kept alive and
   driven round by round from this process; minissl and PyTorch run here.

Fairness: every implementation gets the same thread budget (``--threads``, default: the
cores) and is timed with 1 thread and with the budget; the better is reported (column
``thr``). PyTorch: ``torch.set_num_threads``; minissl: ``numba.set_num_threads``, the fused
step's chunks and NumPy's BLAS pool (``threadpoolctl``, when installed).
The first call of every kernel compiles (cached on disk): warm-up calls run before timing.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import minissl  # noqa: E402
from minissl import backend as B  # noqa: E402
from minissl.hltm import HLTM  # noqa: E402
from minissl.metrics import normalized_correlation  # noqa: E402
from minissl.nets import ReLUNet  # noqa: E402
from minissl.optim import SGD  # noqa: E402
from minissl.train import TrainConfig, gradient_step, loss_and_grads  # noqa: E402


# ----------------------------------------------------------------------------- minissl adapters
# Used by the JAX rows.
def m_tree(depth=5, num_children=2, polarity=(0.7, 1.0), seed=0):
    return minissl.HLTM(depth=depth, num_children=num_children, polarity=polarity, seed=seed)


def m_sizes_masks(tree, hid):
    return list(tree.network_sizes(hid)), [np.asarray(m) for m in tree.network_masks(hid)]


def m_triples(tree, n, rng):
    return tuple(np.asarray(a) for a in tree.triples(n, rng))


def m_net(sizes, masks, dtype, backend, seed=0):
    return minissl.ReLUNet(sizes, masks=masks, seed=seed, dtype=dtype, backend=backend)


def m_stepper(net, tau, lr, batch_size):
    """``step(batch) -> loss``: minissl's ``gradient_step`` (the compiled fused step for a
    numba net) and the plain SGD update ``W -= lr * grad``, in place."""
    cfg = minissl.TrainConfig(loss="infonce", tau=tau, lr=lr, batch_size=batch_size)
    weights, lag = net.weights, gradient_step(net, cfg)

    def step(batch):
        value, _, _, grads = lag(batch)
        for W, g in zip(weights, grads):
            W -= lr * g
        return value

    return step


# ----------------------------------------------------------------------------- timing
def best_time(fn, repeats, warmup=1):
    """Best wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


try:
    from threadpoolctl import threadpool_limits
except ImportError:                                     # BLAS keeps its own pool
    threadpool_limits = None


def set_threads(th, torch=None):
    """One thread count for everything: Numba, the fused step's chunks, BLAS, PyTorch."""
    import numba
    from minissl.kernels import mlp
    numba.set_num_threads(th)
    mlp.THREADS = th
    if threadpool_limits is not None:
        threadpool_limits(limits=th, user_api="blas")
    if torch is not None:
        torch.set_num_threads(th)


def best_over_threads(timed, budget, torch):
    """``timed()`` -> seconds, run under 1 thread and under ``budget`` threads; the best
    ``(seconds, threads)``."""
    best = None
    for th in sorted({1, budget}):
        set_threads(th, torch)
        t = timed()
        if best is None or t < best[0]:
            best = (t, th)
    set_threads(best[1], torch)
    return best


def peak_gflops(dtype, n, repeats, budget):
    """Measured peak: the best n x n matmul of NumPy and PyTorch, with 1 and ``budget``
    threads, GFLOP/s: ``(best, numpy's best, torch's best)``."""
    import torch
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = a.T.copy()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    t_np = best_over_threads(lambda: best_time(lambda: a @ b, repeats), budget, torch)[0]
    t_th = best_over_threads(lambda: best_time(lambda: ta @ tb, repeats), budget, torch)[0]
    set_threads(budget, torch)
    return 2 * n ** 3 / min(t_np, t_th) / 1e9, 2 * n ** 3 / t_np / 1e9, 2 * n ** 3 / t_th / 1e9


# ----------------------------------------------------------------------------- HLTM row
def tree_flops(net, views):
    """Useful flops of one step of a masked net: 2 per live weight per view for the forward,
    the weight gradient and (above layer 1) the input gradient."""
    live = [int(B.to_numpy(m).sum()) if m is not None else W.size
            for m, W in zip(net.masks or [None] * net.depth, net.weights)]
    return 2 * views * (2 * sum(live) + sum(live[1:]))


def hltm_row(args, threads, torch):
    import torch_ref as T
    tree = HLTM(depth=5, num_children=2, polarity=(0.7, 1.0), seed=0)
    hid, batch = 10, 128
    n_epoch = 6400 if args.quick else 64000
    steps = n_epoch // batch
    dt = args.dtype
    cfg = TrainConfig(loss="infonce", tau=0.1, lr=0.1, batch_size=batch)
    rng = np.random.default_rng(1)
    x, xp_, xn = tree.triples(n_epoch, rng)                    # the epoch's data, shared
    x_eval, z_eval = tree.sample(10000, 2)
    results = {}

    def epoch_minissl(net, nsteps):
        opt, step = SGD(net.parameters(), cfg.lr), gradient_step(net, cfg)
        for s in range(nsteps):
            sl = slice(s * batch, (s + 1) * batch)
            _, _, _, g = step((x[sl], xp_[sl], xn[sl]))
            opt.step(g)

    # minissl numpy: slow, timed on a few steps and scaled to the epoch
    k_np = min(steps, 20 if args.quick else 40)
    net = minissl.tree_network(tree, hid, backend="numpy", dtype=dt, seed=0)
    t, th = best_over_threads(
        lambda: best_time(lambda: epoch_minissl(net, k_np), args.repeats) * steps / k_np,
        threads, torch)
    t_s = best_time(lambda: tree.triples(n_epoch, np.random.default_rng(3)), 1, 0)
    t_c = best_time(lambda: normalized_correlation(tree, net, x=x_eval, z=z_eval), 1)
    results["numpy"] = (t, t + t_s + t_c, th, f"timed on {k_np} steps")

    net = minissl.tree_network(tree, hid, backend="numba", dtype=dt, seed=0)
    t, th = best_over_threads(lambda: best_time(lambda: epoch_minissl(net, steps),
                                                args.repeats), threads, torch)
    from minissl.kernels.hltm import triples as triples_numba
    t_s = best_time(lambda: triples_numba(tree, n_epoch, np.random.default_rng(3)), 1, 1)
    t_c = best_time(lambda: normalized_correlation(tree, net, x=x_eval, z=z_eval), 1)
    results["numba"] = (t, t + t_s + t_c, th, "fused step; compiled sampler")

    tdt = T.DTYPES[dt]
    tx, txp, txn = (torch.as_tensor(a, dtype=tdt) for a in (x, xp_, xn))
    ref = minissl.tree_network(tree, hid, dtype=dt, seed=0)
    model = T.MaskedMLP(ref.sizes, [B.to_numpy(m) for m in ref.masks], dt,
                        [B.to_numpy(W) for W in ref.weights])
    step = T.make_step(model, cfg.lr, cfg.loss, cfg.tau)

    def epoch_torch():
        for s in range(steps):
            sl = slice(s * batch, (s + 1) * batch)
            step((tx[sl], txp[sl], txn[sl]))
    t, th = best_over_threads(lambda: best_time(epoch_torch, args.repeats), threads, torch)
    sampler = T.TorchHLTM(tree, dt, seed=3)
    t_s = best_time(lambda: sampler.triples(n_epoch), 1, 1)
    xe, ze = sampler.sample(10000)
    t_c = best_time(lambda: T.normalized_correlation(model, xe, ze, tree.level_starts,
                                                     tree.level_sizes, hid), 1)
    results["torch"] = (t, t + t_s + t_c, th, "autograd, masked nn.Linear")
    set_threads(threads, torch)
    flops = tree_flops(ref, batch * 3)
    return {"name": f"HLTM d5 c2 hid10 b{batch} {dt}", "steps": steps, "n": n_epoch,
            "flops": flops, "res": results, "dtype": dt}


# ----------------------------------------------------------------------------- BYOL row
def byol_row(args, threads, torch, dt="float64"):
    """BYOL on the HLTM tree encoder (depth 5, 2 children, hid 10, BN after each hidden layer,
    linear predictor, batch 128 of two views): seconds per ``BYOL.step``, backend numpy
    against backend numba (its masked layers through ``kernels.mlp.LinearPlan``; BN, the
    predictor, the loss and the EMA stay NumPy). The ratio column is numpy's time / this time
    (no PyTorch BYOL here)."""
    from minissl.byol import BYOLConfig, byol_for
    tree = HLTM(depth=5, num_children=2, polarity=(0.7, 1.0), seed=0)
    nsteps = 20 if args.quick else 60
    views = [tree.views(128, 2, np.random.default_rng(s)) for s in range(nsteps)]
    results = {}
    for be in ("numpy", "numba"):
        model = byol_for(tree, BYOLConfig(lr=0.05, batch_size=128, seed=0), hid=10, backend=be,
                         dtype=dt)

        def run():
            for v in views:
                model.step(v[:, 0], v[:, 1])
        t, th = best_over_threads(lambda: best_time(run, args.repeats) / nsteps, threads, torch)
        results[be] = (t, None, th, "LinearPlan for the masked layers" if be == "numba" else
                       "NumPy (BLAS)")
    set_threads(threads, torch)
    net = byol_for(tree, BYOLConfig(), hid=10).online
    return {"name": f"BYOL HLTM tree encoder b128 {dt}", "res": results, "dtype": dt,
            "ref": "numpy", "flops": tree_flops(net, 2 * 128) * 2,
            "note": "x numpy (no PyTorch BYOL); GFLOP counts the online net's masked layers, "
                    "forward and backward, and the target's forward as one more"}


# ----------------------------------------------------------------------------- dense row
def dense_row(args, threads, torch, backends=("numpy", "numba")):
    import torch_ref as T
    sizes = [512, 1024, 1024, 128]
    N = 512
    dt = "float32"
    cfg = TrainConfig(loss="infonce", tau=0.5, lr=0.01, batch_size=N, negatives="in_batch")
    rng = np.random.default_rng(0)
    nsteps = 2 if args.quick else 5
    data = [(rng.standard_normal((N, 512)).astype(dt),) for _ in range(nsteps)]
    data = [(a[0], (a[0] + 0.1 * rng.standard_normal(a[0].shape)).astype(dt), None)
            for a in data]
    results = {}
    for be in backends:
        net = ReLUNet(sizes, dtype=dt, backend=be, seed=0)
        opt = SGD(net.parameters(), cfg.lr)

        def run():
            for b in data:
                opt.step(loss_and_grads(net, b, cfg)[3])
        t, th = best_over_threads(lambda: best_time(run, args.repeats) / nsteps, threads, torch)
        results[be] = (t, None, th, "BLAS (OpenBLAS)")
    ref = ReLUNet(sizes, dtype=dt, seed=0)
    model = T.MaskedMLP(sizes, None, dt, ref.weights)
    step = T.make_step(model, cfg.lr, tau=cfg.tau, negatives="in_batch")
    tdata = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b, _ in data]

    def run_t():
        for b in tdata:
            step(b)
    t, th = best_over_threads(lambda: best_time(run_t, args.repeats) / nsteps, threads, torch)
    results["torch"] = (t, None, th, "autograd, nn.Linear")
    set_threads(threads, torch)
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    views = 2 * N
    # forward, weight gradients, input gradients above layer 1; Gram Z Z^T and chain S Z
    flops = 2 * views * (3 * macs - sizes[0] * sizes[1]) + 2 * 2 * views * views * sizes[-1]
    return {"name": f"dense 512-1024-1024-128 b{N} SimCLR {dt}", "flops": flops,
            "res": results, "dtype": dt}


# ----------------------------------------------------------------------------- spectrum row
def spectrum_row(args, threads, torch):
    try:
        from minissl.covariance import covariance_spectrum
    except ImportError as e:
        return {"name": "spectrum 65,536-weight layer", "skip": f"minissl.covariance: {e}"}
    import torch_ref as T
    from minissl.data import GaussianClusters
    sizes = [64, 256, 256, 32]
    src = GaussianClusters(n_clusters=8, dim=64, noise=0.3, seed=0)
    views = src.views(256, 4, np.random.default_rng(0))
    k = 4
    results = {}
    n_mv = {}
    vals = {}
    for be, how in (("numpy", "eigsh; OP v through J (einsum)"),
                    ("numba", "eigsh; OP v up/down the layers")):
        net = ReLUNet(sizes, backend=be, seed=0)
        t, th = best_over_threads(lambda: best_time(
            lambda: covariance_spectrum(net, views, 1, k=k, method="lanczos", tol=1e-8),
            args.repeats), threads, torch)
        vals[be] = covariance_spectrum(net, views, 1, k=k, method="lanczos", tol=1e-8)[0]
        results[be] = (t, None, th, how)
    net = ReLUNet(sizes, seed=0)
    t, th = best_over_threads(lambda: best_time(
        lambda: T.covariance_spectrum(net.weights, views, 1, k, tol=1e-8, counter=n_mv),
        args.repeats), threads, torch)
    vals["torch"] = T.covariance_spectrum(net.weights, views, 1, k, tol=1e-8)[0]
    agree = max(float(np.max(np.abs(v - vals["numpy"]) / np.abs(vals["numpy"])))
                for v in vals.values())
    results["torch"] = (t, None, th, "eigsh; torch OP v up/down the layers")
    set_threads(threads, torch)
    N, M = views.shape[:2]
    NM = N * M
    # per matvec: forward-like u = Kbar^T vec(V) and backward-like sum, each ~ 2 NM (n_l n_{l-1}
    # + n_L n_l) flops
    per_mv = 2 * 2 * NM * (256 * 256 + 32 * 256)
    flops = per_mv * max(n_mv.get("count", 1), 1)
    return {"name": "spectrum 256x256 layer, top 4, N256 M4", "flops": flops, "res": results,
            "dtype": "float64",
            "note": f"{n_mv.get('count', '?')} matvecs; eigenvalues agree to {agree:.0e}"}


# ----------------------------------------------------------------------------- GPU rows
def gpu_rows(args, torch):
    if not B.cupy_available():
        return None, "no CuPy/GPU here (minissl.backend.cupy_available() is False)"
    if not torch.cuda.is_available():
        return None, "CuPy sees a GPU but this torch build has no CUDA"
    import cupy as cp
    import torch_ref as T
    rows = []
    sizes = [512, 1024, 1024, 128]
    N = 512 if args.quick else 4096
    dt = "float32"
    cfg = TrainConfig(loss="infonce", tau=0.5, lr=0.01, batch_size=N, negatives="in_batch")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((N, 512)).astype(dt)
    b = (a + 0.1 * rng.standard_normal(a.shape)).astype(dt)
    nsteps = 5 if args.quick else 20
    net = ReLUNet(sizes, dtype=dt, backend="cupy", seed=0)
    opt = SGD(net.parameters(), cfg.lr)
    ca, cb = cp.asarray(a), cp.asarray(b)

    def run_cp():
        for _ in range(nsteps):
            opt.step(loss_and_grads(net, (ca, cb, None), cfg)[3])
        cp.cuda.Device().synchronize()
    t_cp = best_time(run_cp, args.repeats) / nsteps
    model = T.MaskedMLP(sizes, None, dt, ReLUNet(sizes, dtype=dt, seed=0).weights).cuda()
    step = T.make_step(model, cfg.lr, tau=cfg.tau, negatives="in_batch")
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()

    def run_t():
        for _ in range(nsteps):
            step((ta, tb))
        torch.cuda.synchronize()
    t_t = best_time(run_t, args.repeats) / nsteps
    macs = sum(p * q for p, q in zip(sizes[:-1], sizes[1:]))
    flops = 2 * 2 * N * (3 * macs - sizes[0] * sizes[1]) + 4 * (2 * N) ** 2 * sizes[-1]
    rows.append({"name": f"GPU dense 512-1024-1024-128 b{N} SimCLR {dt}", "flops": flops,
                 "dtype": dt, "res": {"cupy": (t_cp, None, 0, ""), "torch": (t_t, None, 0, "CUDA")},
                 "gpu": True})
    # HLTM on the GPU with a large batch
    tree = HLTM(depth=5, num_children=2, seed=0)
    Nb = 4096
    x, xp_, xn = tree.triples(Nb * 4, np.random.default_rng(1))
    net = minissl.tree_network(tree, 10, backend="cupy", dtype=dt, seed=0)
    hc = TrainConfig(loss="infonce", tau=0.1, lr=0.1, batch_size=Nb)
    opt = SGD(net.parameters(), hc.lr)
    cx, cxp, cxn = cp.asarray(x), cp.asarray(xp_), cp.asarray(xn)

    def run_cp2():
        for s in range(4):
            sl = slice(s * Nb, (s + 1) * Nb)
            opt.step(loss_and_grads(net, (cx[sl], cxp[sl], cxn[sl]), hc)[3])
        cp.cuda.Device().synchronize()
    t_cp = best_time(run_cp2, args.repeats) / 4
    ref = minissl.tree_network(tree, 10, dtype=dt, seed=0)
    model = T.MaskedMLP(ref.sizes, ref.masks, dt, ref.weights).cuda()
    step = T.make_step(model, hc.lr, hc.loss, hc.tau)
    tx, txp, txn = (torch.from_numpy(v.astype(dt)).cuda() for v in (x, xp_, xn))

    def run_t2():
        for s in range(4):
            sl = slice(s * Nb, (s + 1) * Nb)
            step((tx[sl], txp[sl], txn[sl]))
        torch.cuda.synchronize()
    t_t = best_time(run_t2, args.repeats) / 4
    rows.append({"name": f"GPU HLTM d5 c2 hid10 b{Nb} {dt}", "flops": tree_flops(ref, 3 * Nb),
                 "dtype": dt, "res": {"cupy": (t_cp, None, 0, ""), "torch": (t_t, None, 0, "CUDA")},
                 "gpu": True})
    return rows, None


# ----------------------------------------------------------------------------- JAX rows
JAX_VARIANTS = (("jax-expert", "expert", "(G, k, hid) live weights, feature-major batches "
                 "laid out beforehand, lax.scan epoch: the reference"),
                ("jax-scan", "scan", "grouped einsum, lax.scan epoch"),
                ("jax-step", "step", "grouped einsum, jit call per step, packed weights"),
                ("jax-dense", "dense", "dense W*mask, lax.scan epoch"))


class JaxWorker:
    """``python bench/jax_ref.py --worker DATA`` on the first ``threads`` CPUs of this process:
    the affinity is set before the child starts, so XLA's CPU thread pool (sized once, from the
    CPUs the process may use) has ``threads`` workers; with 1 thread also
    ``--xla_cpu_multi_thread_eigen=false``. (``intra_op_parallelism_threads`` is no XLA flag:
    XLA_FLAGS ignores it without leading dashes and aborts on it with them.)
    ``compile``: {variant: (trace+lower s, XLA compile s)}; ``time(variant)`` -> (seconds,
    (final loss, weight movement))."""

    def __init__(self, data_path, threads):
        import json
        import subprocess
        self.json = json
        cpus = sorted(os.sched_getaffinity(0))[:threads]
        env = dict(os.environ)
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                                + " --xla_cpu_multi_thread_eigen=false").strip()
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(here, "jax_ref.py"), "--worker", data_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus))
        self.info = self._read()
        self.compile = self.info["compile"]

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"JAX worker exited (status {self.proc.wait()})")
        return self.json.loads(line)

    def time(self, variant):
        self.proc.stdin.write(variant + "\n")
        self.proc.stdin.flush()
        r = self._read()
        return r["seconds"], (r["loss"], r["moved"])

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=30)


def jax_rows(args, threads, torch):
    """The HLTM reference step: minissl numba, PyTorch and the JAX variants, float32 and
    float64, 1 and ``threads`` threads, interleaved rounds, medians (see the docstring)."""
    try:
        import jax  # noqa: F401  (only checks it is installed; JAX runs in the workers)
    except ImportError as e:
        return [{"name": "HLTM JAX comparison", "skip": f"no jax ({e})"}]
    import tempfile
    hid, batch, steps = 10, 128, 500
    tree = m_tree(5, 2, (0.7, 1.0), 0)
    sizes, masks = m_sizes_masks(tree, hid)
    data = m_triples(tree, steps * batch, np.random.default_rng(1))    # the epoch, shared
    W0 = [np.asarray(W, np.float64) for W in m_net(sizes, masks, "float64", "numpy").weights]
    with tempfile.TemporaryDirectory(prefix="minissl-jax-") as tmp:
        return [jax_row(args, threads, torch, os.path.join(tmp, f"epoch-{dt}.npz"), dt,
                        hid, batch, steps, sizes, masks, W0, data)
                for dt in args.jax_dtypes.split(",")]


def jax_row(args, threads, torch, path, dt, hid, batch, steps, sizes, masks, W0, data,
            tau=0.1, lr=0.1):
    """One dtype of ``jax_rows``: every entry trains the same epoch from the same weights."""
    import torch_ref as T
    rounds = args.rounds or (5 if args.quick else 9)
    ths = sorted({1, threads})
    x, xp_, xn = data
    np.savez(path, dtype=dt, hid=hid, steps=steps, tau=tau, lr=lr, L=len(W0), unroll=1,
             x=x, x_pos=xp_, x_neg=xn, **{f"W{l}": W for l, W in enumerate(W0)},
             **{f"M{l}": m for l, m in enumerate(masks)})
    sl = [slice(s * batch, (s + 1) * batch) for s in range(steps)]

    # minissl numba: one net, weights reset before every epoch (outside the timing)
    net = m_net(sizes, masks, dt, "numba")
    m_step = m_stepper(net, tau, lr, batch)
    bx, bxp, bxn = (a.astype(dt) for a in data)

    def epoch_numba():
        for W, W_0 in zip(net.weights, W0):
            W[...] = W_0
        t = time.perf_counter()
        for s in sl:
            v = m_step((bx[s], bxp[s], bxn[s]))
        t = time.perf_counter() - t
        return t, (float(v), weight_movement(net.weights, W0))

    tdt = T.DTYPES[dt]
    tx, txp, txn = (torch.as_tensor(a, dtype=tdt) for a in data)
    model = T.MaskedMLP(sizes, masks, dt, W0)
    t_step = T.make_step(model, lr, "infonce", tau)

    def epoch_torch():
        with torch.no_grad():
            for lin, W_0 in zip(model.layers, W0):
                lin.weight.copy_(torch.as_tensor(W_0, dtype=tdt))
        t = time.perf_counter()
        for s in sl:
            v = t_step((tx[s], txp[s], txn[s]))
        t = time.perf_counter() - t
        return t, (float(v), weight_movement([lin.weight.detach().numpy() for lin in model.layers],
                                             W0))

    # minissl's epoch as a user runs it: train() with the compiled sampler, one compiled call
    # for the 500 steps, sampling included (its own batches: same law, other numbers)
    enet = m_net(sizes, masks, dt, "numba")
    ecfg = minissl.TrainConfig(loss="infonce", tau=tau, lr=lr, batch_size=batch, steps=steps,
                               log_every=steps, sampler="compiled")

    def epoch_compiled(cfg=ecfg):
        for W, W_0 in zip(enet.weights, W0):
            W[...] = W_0
        t = time.perf_counter()
        h = minissl.train(enet, m_tree(5, 2, (0.7, 1.0), 0), cfg)
        t = time.perf_counter() - t
        return t, (float(h["loss"][-1]), weight_movement(enet.weights, W0))

    # what a user gets by default: train(net, tree, loss, tau, lr, batch_size, steps), every
    # other setting (sampler, log_every=1, ...) left at TrainConfig's defaults
    dcfg = minissl.TrainConfig(loss="infonce", tau=tau, lr=lr, batch_size=batch, steps=steps)

    workers = {}
    try:
        for th in ths:
            workers[th] = JaxWorker(path, th)
        entries = []
        for th in ths:
            entries.append(("epoch", th, epoch_compiled,
                            "train(sampler='compiled'): sampling + 500 steps, 1 call"))
            entries.append(("default", th, (lambda: epoch_compiled(dcfg)),
                            f"train() with its defaults (sampler={dcfg.sampler!r}, "
                            f"log_every={dcfg.log_every}): what a user gets"))
            entries.append(("numba", th, epoch_numba, "fused step (minissl)"))
            entries.append(("torch", th, epoch_torch, "autograd, masked nn.Linear"))
            for name, var, how in JAX_VARIANTS:
                entries.append((name, th, (lambda w=workers[th], v=var: w.time(v)), how))
        times = {(e[0], e[1]): [] for e in entries}
        losses = {}
        for r in range(rounds + 1):                           # round 0: warm-up, not kept
            k = r % len(entries)
            for impl, th, fn, _ in entries[k:] + entries[:k]:
                if impl in ("numba", "torch", "epoch", "default"):
                    set_threads(th, torch)
                t, v = fn()
                if r:
                    times[(impl, th)].append(t)
                losses[(impl, th)] = v
    finally:
        set_threads(threads, torch)
        for w in workers.values():
            w.close()
    res = {}
    for impl, th, _, how in entries:
        ts = np.array(times[(impl, th)])
        paired = np.array(times[("jax-expert", th)]) / ts      # same round, same threads
        res[(impl, th)] = (float(np.median(ts)), float(ts.min()), float(ts.max()), how,
                           float(np.median(paired)))
    ref = losses[("numba", ths[0])]
    agree = [max(abs(v[i] - ref[i]) / abs(ref[i]) for e, v in losses.items()
                 if e[0] not in ("epoch", "default"))
             for i in (0, 1)]
    comp = "; ".join(
        f"{th} thr: " + ", ".join(f"{v} {a + b:.2f} s (trace+lower {a:.2f}, XLA {b:.2f})"
                                  for v, (a, b) in w.compile.items())
        for th, w in workers.items())
    return {"name": f"HLTM d5 c2 hid10 b{batch} {dt} (JAX)", "kind": "jax", "steps": steps,
            "n": steps * batch, "dtype": dt, "res": res,
            "flops": tree_flops(m_net(sizes, masks, dt, "numpy"), batch * 3),
            "note": f"median of {rounds} interleaved rounds of a {steps}-step epoch; all "
                    f"entries on the shared batches (all but 'epoch' and 'default', which "
                    f"sample their own) "
                    f"agree: final loss to {agree[0]:.0e}, weight movement "
                    f"||W - W0|| ({ref[1]:.3e}) to {agree[1]:.0e} (relative); "
                    f"JAX compile: {comp}"}


def weight_movement(weights, initial):
    """``sqrt(sum_l ||W_l - W0_l||²)``: how far an epoch moved the weights (as jax_ref's)."""
    return float(np.sqrt(sum(np.sum((np.asarray(W, np.float64) - W0) ** 2)
                             for W, W0 in zip(weights, initial))))


def print_jax_row(r, peak):
    """Rows of ``jax_rows`` in the table: per (impl, threads), the median s/step, x torch
    (PyTorch with the same threads), GFLOP/step, %peak, then x expert: the strong JAX
    reference's time / this time, the median over rounds of the ratio within a round (same
    threads; the two ran seconds apart under the same load), and the ratio of the medians;
    x numba (same threads) and x best JAX (the fastest JAX variant, same threads)."""
    steps = r["steps"]
    best_jax = {th: min(v[0] for (i, t_), v in r["res"].items() if i.startswith("jax") and t_ == th)
                for th in {k[1] for k in r["res"]}}
    for (impl, th), (t, lo, hi, how, paired) in r["res"].items():
        per_step = t / steps
        t_torch = r["res"][("torch", th)][0]
        t_numba = r["res"][("numba", th)][0]
        t_expert = r["res"][("jax-expert", th)][0]
        frac = 100 * r["flops"] / per_step / (peak[r["dtype"]] * 1e9)
        print(f"{r['name'][:40]:<40} {impl:<10} {th:>3} {per_step:>10.6f} {t_torch / t:>8.2f} "
              f"{r['flops'] / 1e9:>10.4f} {frac:6.2f}  x expert {paired:5.2f} (per round), "
              f"{t_expert / t:5.2f} (medians); x numba {t_numba / t:5.2f}, x best JAX "
              f"{best_jax[th] / t:5.2f}; {r['n'] / t:>9,.0f} triples/s; rounds "
              f"{lo / steps * 1e6:.0f}-{hi / steps * 1e6:.0f} us/step ({how})")
    print(f"{'':<40} {r['note']}")


# ----------------------------------------------------------------------------- table
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps, a 6,400-triple epoch")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per entry (best kept)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="thread budget for Numba and PyTorch (default: all cores)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                    help="dtype of the HLTM row (the dense row is float32, spectrum float64)")
    ap.add_argument("--rows", default="hltm,dense,byol,spectrum,gpu,jax",
                    help="comma-separated subset of hltm,dense,byol,spectrum,gpu,jax")
    ap.add_argument("--jax-dtypes", default="float32,float64",
                    help="dtypes of the JAX rows (comma-separated)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved rounds of the JAX rows (default 5 with --quick, else 9)")
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 3
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be >= 1")
    import numba
    import torch
    threads = min(args.threads, numba.config.NUMBA_NUM_THREADS)
    set_threads(threads, torch)
    rows_wanted = args.rows.split(",")

    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start; Python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {numba.__version__}, torch {torch.__version__}, "
          f"minissl {minissl.__version__}")
    print(f"threads: budget {threads} for each side (torch.set_num_threads; "
          f"numba.set_num_threads and BLAS via threadpoolctl"
          f"{'' if threadpool_limits else ' (absent: BLAS keeps its pool)'}); "
          f"each timed with 1 and {threads}, best kept, 'thr' column)")
    n = 1024 if args.quick else 2048
    p32 = peak_gflops(np.float32, n, max(args.repeats, 3), threads)
    p64 = peak_gflops(np.float64, n, max(args.repeats, 3), threads)
    print(f"measured peak ({n}^3 matmul, best of numpy/torch): float32 {p32[0]:.0f} GFLOP/s "
          f"(numpy {p32[1]:.0f}, torch {p32[2]:.0f}), float64 {p64[0]:.0f} GFLOP/s "
          f"(numpy {p64[1]:.0f}, torch {p64[2]:.0f})")
    peak = {"float32": p32[0], "float64": p64[0]}

    rows, notes = [], []
    t0 = time.perf_counter()
    if "hltm" in rows_wanted:
        rows.append(hltm_row(args, threads, torch))
    if "dense" in rows_wanted:
        rows.append(dense_row(args, threads, torch))
    if "byol" in rows_wanted:
        rows.extend(byol_row(args, threads, torch, dt) for dt in ("float64", "float32"))
    if "spectrum" in rows_wanted:
        rows.append(spectrum_row(args, threads, torch))
    if "gpu" in rows_wanted:
        g, why = gpu_rows(args, torch)
        if g is None:
            notes.append(f"GPU rows skipped: {why}")
        else:
            rows.extend(g)
    if "jax" in rows_wanted:
        rows.extend(jax_rows(args, threads, torch))

    print()
    hdr = f"{'workload':<40} {'impl':<9} {'thr':>3} {'s/step':>10} {'x torch':>8} " \
          f"{'GFLOP/step':>10} {'%peak':>6}  extra"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "skip" in r:
            print(f"{r['name']:<40} skipped: {r['skip']}")
            continue
        if r.get("kind") == "jax":
            print_jax_row(r, peak)
            continue
        t_ref = r["res"][r.get("ref", "torch")][0]
        steps = r.get("steps")
        for impl, (t, t_epoch, th, how) in r["res"].items():
            if r.get("gpu"):
                frac = ""
            else:
                frac = f"{100 * r['flops'] / t / (peak[r['dtype']] * 1e9):6.2f}"
            if steps:                                   # HLTM: t is the whole epoch's training
                per_step = t / steps
                extra = (f"{r['n'] / t:>9,.0f} triples/s; full epoch {t_epoch:6.2f} s  "
                         f"({how})")
                flops = r["flops"]
                frac = f"{100 * flops / per_step / (peak[r['dtype']] * 1e9):6.2f}"
            else:
                per_step = t
                extra = how + (f"; {r['note']}" if r.get("note") else "")
            print(f"{r['name'][:40]:<40} {impl:<9} {th:>3} {per_step:>10.5f} "
                  f"{t_ref / t:>8.2f} {r['flops'] / 1e9:>10.4f} {frac:>6}  {extra}")
    for n_ in notes:
        print(n_)
    print(f"(ratios: torch time / impl time, same process; total {time.perf_counter() - t0:.0f} s;"
          f" load average {os.getloadavg()[0]:.1f} at end)")


if __name__ == "__main__":
    main()
