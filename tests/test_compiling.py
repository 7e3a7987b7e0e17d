"""Sharing a cold compile with a helper process (``kernels.compiling.Sharing``).

The helper's work is seen through Numba's own counters: a kernel the helper compiled is a cache
*hit* in this process (loaded from the cache), one this process compiled a *miss*. Each check
runs in a fresh process with an empty ``NUMBA_CACHE_DIR``; no timings.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

from minissl.kernels import compiling  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JIT_OFF = os.environ.get("NUMBA_DISABLE_JIT") == "1"
needs_jit = pytest.mark.skipif(JIT_OFF, reason="nothing is compiled with NUMBA_DISABLE_JIT=1")
two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                               reason="the helper starts only with two or more cores")

# one per-step training step (a TreeStep: six kernels and the entry point) of a float64 tree
# net; ``wait``: this process compiles nothing before the helper has claimed a job
SCRIPT = r"""
import hashlib, json, os, sys, time
import numpy as np
import minissl
from minissl.kernels import compiling, tree as KT
from minissl.train import TrainConfig, gradient_step
mode = sys.argv[1]
if mode in ("failed", "hung"):  # a helper that claims every job, then dies (or hangs)
    code = ("import os, sys, json, time; [open(os.path.join(sys.argv[1], str(i)), 'x') "
            "for i in range(len(json.loads(sys.argv[2])))]; "
            + ("time.sleep(600)" if mode == "hung" else "sys.exit(1)"))
    compiling.HELPER_TIMEOUT = 1.0
    compiling._start_helper = lambda jobs, claims: __import__("subprocess").Popen(
        [sys.executable, "-c", code, claims, json.dumps([compiling._spec(j) for j in jobs])])
variant = (0, False, KT.LOSS_CODES["infonce"], True)
jobs = [j for j in KT.kernel_jobs("float64", *variant) if j]
out = {}
if mode == "close":         # a run that ends before it needs the jobs
    sh = compiling.Sharing(jobs)
    helper, claims = sh.helper, sh.claims
    sh.close()
    out = {"stopped": helper.poll() is not None, "claims_left": os.path.exists(claims),
           "active": len(compiling._ACTIVE)}
    print(json.dumps(out)); sys.exit(0)
sh = compiling.Sharing(jobs)
out["helper"], helper = sh.helper is not None, sh.helper
def here():                 # wait (at most a minute) until the helper has taken job 0,
    t = time.time()         # then for the helper to compile it (``take``)
    while sh.helper is not None and not os.listdir(sh.claims) and time.time() < t + 60:
        time.sleep(0.01)
    compiling.take(jobs[0][0])
    compiling._compile(jobs[0])         # a cache hit only if ``take`` waited for the helper
sh.finish(here)
out["first"] = jobs[0][0].__name__
out["helper_ended"] = helper is None or helper.poll() is not None
KT._SHARED.add(("float64", variant))
t = minissl.HLTM(5, 2, seed=0)
net = minissl.tree_network(t, 10, backend="numba", seed=0)
step = gradient_step(net, TrainConfig(lr=0.1, batch_size=16))
loss, rp, rn, grads = step(t.triples(16, np.random.default_rng(3)))
out["hits"] = sum(sum(d.stats.cache_hits.values()) for d, *_ in jobs)
out["misses"] = sum(sum(d.stats.cache_misses.values()) for d, *_ in jobs)
out["first_hits"] = sum(jobs[0][0].stats.cache_hits.values())
out["loss"] = float(loss).hex()
out["grads"] = hashlib.sha256(
    b"".join(np.ascontiguousarray(g).tobytes() for g in grads)).hexdigest()
print(json.dumps(out))
"""


def run_script(mode, tmp_path, helper="1", timeout=600):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), MINISSL_COMPILE_HELPER=helper)
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def in_process_step():
    import hashlib
    import minissl
    from minissl.train import TrainConfig, gradient_step
    t = minissl.HLTM(5, 2, seed=0)
    net = minissl.tree_network(t, 10, backend="numba", seed=0)
    loss, _, _, grads = gradient_step(net, TrainConfig(lr=0.1, batch_size=16))(
        t.triples(16, np.random.default_rng(3)))
    return float(loss).hex(), hashlib.sha256(
        b"".join(np.ascontiguousarray(g).tobytes() for g in grads)).hexdigest()


def test_claims_are_exclusive(tmp_path):
    assert compiling._claim(str(tmp_path), 3) is True
    assert compiling._claim(str(tmp_path), 3) is False          # the other process took it
    assert compiling._claim(str(tmp_path), 4) is True
    assert compiling._claim(None, 3) is True                    # no helper: all are ours


@needs_jit
@two_cores
def test_helper_compiles_jobs_that_this_process_loads_and_the_step_is_unchanged(tmp_path):
    """With the helper, some of the step's kernels are cache hits here (the helper compiled
    them; ``take`` waited for the first, which the helper had claimed); without it
    (MINISSL_COMPILE_HELPER=0, the control) none is; the step's loss and gradients are bit for
    bit those of this test process, whichever compiled them."""
    shared = run_script("shared", tmp_path / "a")
    alone = run_script("shared", tmp_path / "b", helper="0")
    assert shared["helper"] and shared["hits"] >= 1
    assert shared["first"] == "combine" and shared["first_hits"] == 1   # waited (``take``)
    assert not alone["helper"] and alone["hits"] == 0 and alone["misses"] >= 6
    assert shared["loss"] == alone["loss"] == in_process_step()[0]
    assert shared["grads"] == alone["grads"] == in_process_step()[1]


@needs_jit
@two_cores
def test_a_failed_helper_leaves_its_jobs_to_this_process(tmp_path):
    """A helper that claims every job and exits without compiling: the step still runs, its
    kernels compiled here when first needed (all misses), with the same numbers."""
    out = run_script("failed", tmp_path)
    assert out["helper"] and out["hits"] == 0 and out["misses"] >= 6
    assert (out["loss"], out["grads"]) == in_process_step()


@needs_jit
@two_cores
def test_a_hung_helper_is_stopped_after_the_timeout(tmp_path):
    """A helper that claims every job and then hangs: after ``HELPER_TIMEOUT`` (1 s here)
    this process stops it and compiles the kernels itself (a hang would hit the
    subprocess's 300 s guard instead)."""
    out = run_script("hung", tmp_path, timeout=300)
    assert out["helper"] and out["helper_ended"] and out["misses"] >= 6
    assert (out["loss"], out["grads"]) == in_process_step()


@needs_jit
@two_cores
def test_close_stops_the_helper_and_removes_its_claims(tmp_path):
    out = run_script("close", tmp_path)
    assert out == {"stopped": True, "claims_left": False, "active": 0}


@needs_jit
def test_no_helper_without_jobs_to_share_or_when_switched_off(monkeypatch):
    """Nothing to compile (every job already in this process), or the setting off: no
    helper process is started."""
    from minissl.kernels import tree as KT
    started = []
    monkeypatch.setattr(compiling, "_start_helper", lambda *a: started.append(a))
    jobs = [j for j in KT.kernel_jobs("float64", 0, False, 0, True) if j]
    for d, template, dtype, lits in jobs:
        d.compile(compiling.signature(template, dtype, lits).args)
    compiling.Sharing(jobs).finish()
    monkeypatch.setattr(compiling, "HELPER", False)
    monkeypatch.setattr(compiling, "cached", lambda *a: False)
    compiling.Sharing(jobs).finish()
    assert started == []


@needs_jit
def test_a_run_starts_compiling_the_kernels_it_will_need(monkeypatch):
    """``experiments.hltm.start_compiling`` hands the helper the kernels of the path ``train``
    will take (the compiled epoch, or the per-step path of a tree net with the NumPy
    sampler) and the correlation's; nothing for backend numpy or a net without kernels.
    Seen on a pretend-cold cache with the helper off (no process started)."""
    import minissl
    from minissl.experiments.hltm import start_compiling
    from minissl.kernels import tree as KT
    from minissl.train import TrainConfig
    monkeypatch.setattr(compiling, "cached", lambda *a: False)
    monkeypatch.setattr(compiling, "HELPER", False)
    monkeypatch.setattr(KT, "_PENDING", {})
    t = minissl.HLTM(3, 2, seed=0)

    def names(net, **kw):
        sh = start_compiling(net, t, TrainConfig(batch_size=8, **kw))
        return None if sh is None else [j[0].__name__ for j in sh.todo]
    tree_net = minissl.tree_network(t, 4, backend="numba")
    epoch = names(tree_net)
    assert epoch[0] == "_unit_correlations" and "sample_bits" in epoch and "sgd_layer" in epoch
    step = names(tree_net, sampler="numpy")
    assert step[0] == "_unit_correlations" and "top_backward" in step
    assert "sample_bits" not in step and "sgd_layer" not in step
    assert names(minissl.tree_network(t, 4)) is None                      # backend numpy
    dense = minissl.ReLUNet([t.dim, 64, 64, 8], backend="numba")           # no tree kernels
    assert names(dense, sampler="numpy") is None


# 40 steps of the compiled epoch, float32/float64 x plain/reference: SHA-256 of every weight
EPOCH = r"""
import hashlib, numpy as np, minissl
from minissl.train import TrainConfig
h = hashlib.sha256()
for dt in ("float32", "float64"):
    for ref in (False, True):
        t = minissl.HLTM(5, 2, seed=0)
        net = minissl.tree_network(t, 10, backend="numba", dtype=dt, seed=0, bias=ref,
                                   normalize=ref, norm_eps=1e-4 if ref else 0.0)
        minissl.train(net, t, TrainConfig(loss="ref_nce" if ref else "infonce",
                                          tau=0.05 if ref else 0.1, lr=0.1, batch_size=128,
                                          steps=40, sampler="compiled", seed=1))
        for W in net.weights:
            h.update(np.ascontiguousarray(W).tobytes())
print(h.hexdigest())
"""


@pytest.mark.slow
@needs_jit
@two_cores
def test_the_compiled_epoch_trains_alike_whoever_compiled_it(tmp_path):
    """The weights after 40 steps of the compiled epoch in four variants, from an empty cache
    with the helper, without it, and with the package's usual cache: the same bits."""
    digests = []
    for helper in ("1", "0"):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / helper),
                   MINISSL_COMPILE_HELPER=helper)
        r = subprocess.run([sys.executable, "-c", EPOCH], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr
        digests.append(r.stdout.split()[-1])
    here = subprocess.run([sys.executable, "-c", EPOCH], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert here.returncode == 0, here.stderr
    assert digests[0] == digests[1] == here.stdout.split()[-1]
