"""Benchmark: top-k spectrum of the covariance operator of a large layer, matrix-free.

Target (issue 3): top-4 eigenpairs of OP for the 256x256 layer (P = 65,536 parameters) of the
net 64 -> 256 -> 256 -> 16, on 64 samples x 4 views, in < 2 s on 2 cores and < 1 GB memory.
The explicit OP of that layer would take P^2 * 8 bytes = 34.4 GB, so the same-run reference is
the dense path (explicit OP + numpy.linalg.eigh) on a smaller layer (64 -> 48 -> 48 -> 16,
P = 2,304), where Lanczos is also timed and both spectra are compared.

    python bench/spectrum.py                 # BLAS threads: 1 and the library default
    python bench/spectrum.py --threads 2 --repeats 5

Prints wall and CPU seconds (best of --repeats), the peak of Python/NumPy allocations during
one call (tracemalloc), the process's peak resident set (ru_maxrss) and the ratios.
BLAS threads are set with threadpoolctl when it is installed (a dependency of scikit-learn)
for everything in a setting, and passed to ``covariance_spectrum(blas_threads=...)``, whose own
default is 1; on a shared, loaded machine one thread is much faster than two.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
import tracemalloc
from contextlib import nullcontext

import numpy as np
import scipy.sparse.linalg  # noqa: F401  (load SciPy's BLAS before threadpoolctl looks)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minissl  # noqa: E402
from minissl import covariance as C  # noqa: E402
from minissl.data import GaussianClusters  # noqa: E402
from minissl.nets import ReLUNet  # noqa: E402


def thread_limit(n):
    if n is None:
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("  (threadpoolctl not installed: BLAS threads left at the default)")
        return nullcontext()
    return threadpool_limits(n)


def best_time(fn, repeats):
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    i = int(np.argmin(walls))
    return walls[i], cpus[i], out


def peak_mb(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def problem(sizes, N, M, seed=0):
    net = ReLUNet(sizes, seed=seed)
    src = GaussianClusters(n_clusters=8, dim=sizes[0], noise=0.3, seed=seed)
    return net, src.views(N, M, np.random.default_rng(seed))          # (N, M, n_0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=4, help="number of top eigenpairs (default 4)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS threads (default: run with 1 and with the library default)")
    args = ap.parse_args(argv)
    if args.k < 1 or args.repeats < 1:
        ap.error("--k and --repeats must be >= 1")

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, numpy {np.__version__}")
    net, views = problem([64, 256, 256, 16], 64, 4)
    layer, P = 1, net.weights[1].size
    ref_net, ref_views = problem([64, 48, 48, 16], 64, 4)
    ref_P = ref_net.weights[1].size
    print(f"large layer: net {net.sizes}, layer {layer} (W {tuple(net.weights[layer].shape)}, "
          f"P = {P}), views {views.shape}; explicit OP would need {P * P * 8 / 1e9:.1f} GB")
    print(f"reference layer: net {ref_net.sizes}, layer 1 (P = {ref_P}), views {ref_views.shape}")

    settings = [args.threads] if args.threads is not None else [1, None]
    for th in settings:
        label = "default" if th is None else str(th)
        print(f"\n== BLAS threads: {label}")
        with thread_limit(th):
            big = lambda: minissl.covariance_spectrum(net, views, layer, k=args.k,  # noqa: E731
                                                      method="lanczos", blas_threads=th)
            wall, cpu, (vals, vecs) = best_time(big, args.repeats)
            mem = peak_mb(big)
            rss_big = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            res = C.covariance_matvec(net, views, layer)(vecs[:, 0]) - vals[0] * vecs[:, 0]
            print(f"lanczos, P = {P}: {wall:.3f} s wall, {cpu:.3f} s CPU, peak traced "
                  f"{mem:.1f} MB (process peak RSS so far {rss_big:.0f} MB); "
                  f"top-{args.k} = {np.array2string(vals, precision=6)}; "
                  f"||OP u1 - l1 u1|| / l1 = {np.linalg.norm(res) / vals[0]:.1e}")

            lz = lambda: minissl.covariance_spectrum(ref_net, ref_views, 1, k=args.k,  # noqa: E731
                                                     method="lanczos", blas_threads=th)
            dn = lambda: minissl.covariance_spectrum(ref_net, ref_views, 1, k=args.k,  # noqa: E731
                                                     method="dense")
            lw, lc, (lv, _) = best_time(lz, args.repeats)
            dw, dc, (dv, _) = best_time(dn, args.repeats)
            lmem, dmem = peak_mb(lz), peak_mb(dn)
            print(f"reference P = {ref_P}: dense (explicit OP + eigh) {dw:.3f} s wall, "
                  f"{dc:.3f} s CPU, {dmem:.1f} MB | lanczos {lw:.3f} s wall, {lc:.3f} s CPU, "
                  f"{lmem:.1f} MB | dense/lanczos = {dw / lw:.1f}x time, "
                  f"{dmem / lmem:.1f}x memory | max rel. eigenvalue diff "
                  f"{np.abs(lv - dv).max() / dv[0]:.1e}")
            print(f"dense path at P = {P} (eigh is O(P^3)): ~{dw * (P / ref_P) ** 3 / 3600:.0f} h "
                  f"by extrapolation, {P * P * 8 / 1e9:.1f} GB for OP alone; "
                  f"lanczos large / dense reference = {wall / dw:.2f}x time")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak resident set (all of the above, incl. Python + NumPy): {rss:.0f} MB")


if __name__ == "__main__":
    main()
