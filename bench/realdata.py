"""Benchmark: one SimCLR epoch on real data, minissl (numba backend) against PyTorch CPU.

    python bench/realdata.py              # MNIST-1D and digits, best of 3, 1 thread
    python bench/realdata.py --repeats 5 --dtype float64

The same setting on both sides: the default encoder of ``python -m minissl realdata``
(input -> 256 -> 256 -> 64, ReLU, bias-free), batch 256 (512 views), InfoNCE with in-batch
negatives (the SimCLR arrangement, τ = 0.1), Adam (lr 1e-3), one epoch = ceil(N_train / 256)
steps, the views made by the same ``RealData`` source (the data's default augmentation,
NumPy; included in both timings). PyTorch: ``nn.Linear`` layers, autograd, ``torch.optim.Adam``
(``torch_ref``). 1 thread each (``torch.set_num_threads(1)``; minissl's BLAS pool via
``threadpoolctl``). Warm-up epochs run first (Numba compiles). ``x torch`` = PyTorch's time
/ minissl's (> 1: minissl is faster). Needs ``torch`` (the ``bench`` extra).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from minissl import backend as B  # noqa: E402
from minissl.experiments.realdata import RealDataConfig, encoder  # noqa: E402
from minissl.train import TrainConfig, train  # noqa: E402

BATCH, TAU, LR = 256, 0.1, 1e-3


def setting(data):
    """``(source, cfg, steps)`` of one epoch on ``data`` with the command's defaults."""
    cfg = RealDataConfig(data=data, method="simclr").validate()
    source = cfg.source()
    return source, cfg, cfg.steps_per_epoch(len(source.data.y_train))


def minissl_epoch(source, cfg, steps, dtype):
    """Seconds of one epoch of ``train.train`` (backend numba)."""
    net = encoder(replace(cfg, dtype=dtype), source.dim)
    tc = TrainConfig(loss="infonce", tau=TAU, lr=LR, optimizer="adam", negatives="in_batch",
                     steps=steps, batch_size=BATCH, seed=1, log_every=steps)
    t0 = time.perf_counter()
    train(net, source, tc)
    return time.perf_counter() - t0


def torch_epoch(source, cfg, steps, dtype):
    """Seconds of the same epoch in PyTorch (same views, same model and optimiser)."""
    import torch
    import torch_ref
    model = torch_ref.MaskedMLP(cfg.sizes(source.dim), dtype=dtype)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    rng, dt = np.random.default_rng(1), getattr(np, dtype)
    t0 = time.perf_counter()
    for _ in range(steps):
        v = source.views(BATCH, 2, rng).astype(dt)                       # (N, 2, n_0)
        x = torch.from_numpy(np.ascontiguousarray(np.concatenate([v[:, 0], v[:, 1]])))
        opt.zero_grad(set_to_none=True)
        Z = model(x)
        loss = torch_ref.simclr_loss(Z[:BATCH], Z[BATCH:], TAU)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def best(fn, repeats, *args):
    fn(*args)                                                            # warm-up
    return min(fn(*args) for _ in range(repeats))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--data", nargs="+", default=["mnist1d", "digits"])
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, NumPy {np.__version__}, torch {torch.__version__}; "
          f"1 thread, {args.dtype}, best of {args.repeats}")
    print(f"{'data':8s} {'steps':>5s} {'minissl s':>10s} {'torch s':>9s} {'x torch':>8s}")
    with B.blas_threads(1):
        for data in args.data:
            source, cfg, steps = setting(data)
            m = best(minissl_epoch, args.repeats, source, cfg, steps, args.dtype)
            t = best(torch_epoch, args.repeats, source, cfg, steps, args.dtype)
            print(f"{data:8s} {steps:5d} {m:10.3f} {t:9.3f} {t / m:7.2f}x", flush=True)


if __name__ == "__main__":
    main()
