"""Calibrate the cost model: measured seconds of HLTM runs against ``HLTMConfig.cost()``.

    python bench/calibrate_cost.py            # ~1 minute; one BLAS thread, like the app

For each setting it prints the estimated seconds (``cost().seconds``: multiply-adds over
``limits.MADDS_PER_SECOND``, with ``STEP_OVERHEAD`` per step and ``DRAW_COST`` per random
number), the measured wall time of ``hltm_experiment`` and their ratio. The model is meant to
err long (ratio measured/estimated below 1) over tiny nets with many steps, wide nets, large
batches, many negatives and large trees alike; docs/performance.md ("Cost model") records the
table and the machine.
"""
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minissl import experiments as E  # noqa: E402
from minissl.budget import limits  # noqa: E402
from minissl.backend import blas_threads  # noqa: E402

SETTINGS = [
    ("tiny net, many steps", dict(depth=2, hid=1, batch_size=2, samples_per_epoch=2000,
                                  epochs=2, eval_samples=100)),
    ("app default", dict(depth=5, hid=10, batch_size=128, samples_per_epoch=150 * 128,
                         epochs=2, eval_samples=4000)),
    ("CLI default, 1 epoch", dict(epochs=1)),
    ("wide (hid 50)", dict(depth=5, hid=50, batch_size=128, samples_per_epoch=50 * 128,
                           epochs=1, eval_samples=4000)),
    ("large batch", dict(depth=5, hid=10, batch_size=1024, samples_per_epoch=40 * 1024,
                         epochs=1, eval_samples=4000)),
    ("16 negatives", dict(depth=4, hid=10, negatives=16, batch_size=128,
                          samples_per_epoch=100 * 128, epochs=1, eval_samples=4000)),
    ("ternary depth 7, hid 1", dict(depth=7, num_children=3, hid=1, batch_size=256,
                                    samples_per_epoch=5 * 256, epochs=1, eval_samples=1000)),
    ("covariance update", dict(depth=4, hid=10, update="covariance", batch_size=128,
                               samples_per_epoch=50 * 128, epochs=1, eval_samples=4000)),
]


def main():
    print(f"# {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; MADDS_PER_SECOND {limits.MADDS_PER_SECOND:.0e}, "
          f"STEP_OVERHEAD {limits.STEP_OVERHEAD:.2g}, DRAW_COST {limits.DRAW_COST}")
    print("| setting | steps | estimated s | measured s | measured / estimated |")
    print("|---|---|---|---|---|")
    for name, kw in SETTINGS:
        cfg = E.HLTMConfig(**kw).apply_preset()
        est = cfg.cost().seconds
        t0 = time.perf_counter()
        with blas_threads(1):
            E.hltm_experiment(cfg)
        took = time.perf_counter() - t0
        steps = cfg.epochs * cfg.steps_per_epoch
        print(f"| {name} | {steps} | {est:.2f} | {took:.2f} | {took / est:.2f} |", flush=True)


if __name__ == "__main__":
    main()
