"""The JAX reference of bench/ (bench/jax_ref.py) against minissl, float64: from the same
initial weights and batches, the same losses (~1e-12 relative) and the same updated weights
(~1e-12), for one step and for a few steps of the scanned epoch and of the per-step calls
against ``minissl.train``. Skipped when JAX is not installed (the ``bench`` extra)."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="bench/jax_ref.py needs jax (the bench extra)")

import minissl  # noqa: E402

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
sys.path.insert(0, BENCH)
import jax_ref as J  # noqa: E402

J.enable_x64()
TOL = 1e-12


# ----------------------------------------------------------------------------- minissl adapters
# minissl's stable public names only (the package is being restructured): update these if
# the names move.
def m_tree(depth=5, num_children=2, seed=0):
    return minissl.HLTM(depth=depth, num_children=num_children, polarity=(0.7, 1.0), seed=seed)


def m_net(tree, hid, seed=0, backend="numpy", dtype="float64"):
    return minissl.ReLUNet(tree.network_sizes(hid), masks=tree.network_masks(hid), seed=seed,
                           dtype=dtype, backend=backend)


def m_triples(tree, n, rng):
    return tuple(np.asarray(a) for a in tree.triples(n, rng))


def m_loss_and_grads(net, batch, tau, lr):
    """minissl's ``(loss, r_pos mean, r_neg mean, grads)`` (dense masked grads) from
    ``train.gradient_step``: the compiled fused step on a numba net."""
    gradient_step = importlib.import_module("minissl.train").gradient_step
    cfg = minissl.TrainConfig(loss="infonce", tau=tau, lr=lr, batch_size=len(batch[0]))
    value, rp, rn, grads = gradient_step(net, cfg)(batch)
    return value, rp, rn, [np.asarray(g) for g in grads]


def m_step(net, batch, tau, lr):
    """minissl's loss and gradients, then plain SGD: ``(loss, r_pos, r_neg, new weights)``."""
    value, rp, rn, grads = m_loss_and_grads(net, batch, tau, lr)
    return value, rp, rn, [np.asarray(W) - lr * g for W, g in zip(net.weights, grads)]


class Batches:
    """A data source whose ``triples(n, rng)`` returns the given batches in order."""

    def __init__(self, batches):
        self.batches, self.i = list(batches), 0
        self.dim = self.batches[0][0].shape[1]            # the data-source protocol

    def triples(self, n, rng=None):
        b = self.batches[self.i]
        assert len(b[0]) == n
        self.i += 1
        return b


def m_train(net, batches, tau, lr):
    """``minissl.train`` on ``batches`` in order: the per-step losses; ``net`` is updated."""
    hist = minissl.train(net, Batches(batches), loss="infonce", tau=tau, lr=lr,
                         steps=len(batches), batch_size=len(batches[0][0]), seed=0)
    return np.array(hist["loss"])


# ----------------------------------------------------------------------------- helpers
def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300))


def weights_err(a, b):
    return max(rel_err(x, y) for x, y in zip(a, b))


def jx(a, dtype="float64"):
    return jax.numpy.asarray(np.asarray(a, dtype))


def jax_step(weights, masks, hid, batch, tau, lr, layout, dtype="float64"):
    step = J.make_step(tau, lr, layout, masks)
    params, (value, rp, rn) = step(J.to_params(weights, hid, layout, dtype),
                                   *(jx(a, dtype) for a in batch))
    return float(value), float(rp), float(rn), J.from_params(params, layout)


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("depth,c,hid", [(5, 2, 10), (3, 3, 4)])
def test_jax_compact_layout_roundtrip(depth, c, hid):
    tree = m_tree(depth, c)
    net = m_net(tree, hid, seed=3)
    masks = tree.network_masks(hid)
    C = J.dense_to_compact(net.weights, hid)
    for l, (Cl, W) in enumerate(zip(C, net.weights)):
        G = c ** (depth - l - 1)
        assert Cl.shape == (G, hid, c * (1 if l == 0 else hid))
        assert np.array_equal(J.compact_to_dense([Cl])[0], W)
    # the block structure is the tree's mask, and off-block weights are refused
    for m, ones in zip(masks, J.compact_to_dense([np.ones_like(Cl) for Cl in C])):
        assert np.array_equal(ones, m)
    bad = [np.array(W) for W in net.weights]
    bad[1][0, -1] = 1.0                                  # unit 0 reading the last group
    with pytest.raises(ValueError, match="outside"):
        J.dense_to_compact(bad, hid)


# ----------------------------------------------------------------------------- one step
@pytest.mark.parametrize("layout", J.LAYOUTS)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_jax_one_step_matches_minissl(layout, backend):
    tree = m_tree()
    hid, tau, lr = 10, 0.1, 0.1
    net = m_net(tree, hid, seed=5, backend=backend)
    batch = m_triples(tree, 32, np.random.default_rng(2))
    W0 = [np.array(W) for W in net.weights]
    value, rp, rn, new = m_step(net, batch, tau, lr)
    jv, jrp, jrn, jnew = jax_step(W0, tree.network_masks(hid), hid, batch, tau, lr, layout)
    assert abs(jv - value) < TOL * abs(value)
    assert abs(jrp - rp) < TOL * abs(rp) and abs(jrn - rn) < TOL * abs(rn)
    assert weights_err(new, jnew) < TOL
    assert weights_err(W0, new) > 1e-7                   # the step moved the weights
    # the step moves the weights by ~1e-6 of their size: compare the gradients themselves
    grads = m_loss_and_grads(net, batch, tau, lr)[3]
    (gv, _), jg = J.make_value_and_grad(tau, layout, tree.network_masks(hid))(
        J.to_params(W0, hid, layout), *(jx(a) for a in batch))
    assert abs(float(gv) - value) < TOL * abs(value)
    assert weights_err(grads, J.from_params(jg, layout)) < TOL


def test_jax_step_several_negatives_and_random_inputs():
    """H = 2 negatives and non-binary inputs (a 3-ary tree net, hid 4)."""
    tree = m_tree(3, 3)
    hid, tau, lr = 4, 0.7, 0.05
    net = m_net(tree, hid, seed=1)
    rng = np.random.default_rng(4)
    n0 = tree.network_sizes(hid)[0]
    batch = (rng.random((12, n0)), rng.random((12, n0)), rng.random((12, 2, n0)))
    value, _, _, new = m_step(net, batch, tau, lr)
    jv, _, _, jnew = jax_step(net.weights, tree.network_masks(hid), hid, batch, tau, lr, "gfb")
    assert abs(jv - value) < TOL * abs(value)
    assert weights_err(new, jnew) < TOL


def test_jax_negative_controls():
    """The comparisons above can fail: a wrong τ, a wrong learning rate and a mis-ordered
    compact layout all give differences far above the tolerance."""
    tree = m_tree()
    hid, tau, lr = 10, 0.1, 0.1
    net = m_net(tree, hid, seed=5)
    masks = tree.network_masks(hid)
    batch = m_triples(tree, 32, np.random.default_rng(2))
    W0 = [np.array(W) for W in net.weights]
    value, _, _, new = m_step(net, batch, tau, lr)
    jv, _, _, jnew = jax_step(W0, masks, hid, batch, 0.2, lr, "gfb")         # wrong τ
    assert abs(jv - value) > 1e-3 * abs(value)
    assert weights_err(new, jnew) > 1e3 * TOL
    jv, _, _, jnew = jax_step(W0, masks, hid, batch, tau, 0.11, "gfb")       # wrong lr
    assert abs(jv - value) < TOL * abs(value) and weights_err(new, jnew) > 1e3 * TOL
    grads = m_loss_and_grads(net, batch, tau, lr)[3]
    _, jg = J.make_value_and_grad(0.2)(J.to_params(W0, hid), *(jx(a) for a in batch))
    assert weights_err(grads, J.from_params(jg)) > 1e-4                     # 1e7 x the tolerance
    C = J.dense_to_compact(W0, hid)
    C[2] = C[2][:, :, ::-1].copy()                          # children's inputs reversed
    jv, _, _, jnew = jax_step(J.compact_to_dense(C), masks, hid, batch, tau, lr, "gfb")
    assert abs(jv - value) > 1e-6 * abs(value)


def test_jax_float32_step_close_to_float64():
    tree = m_tree()
    hid = 10
    net = m_net(tree, hid, seed=5)
    batch = m_triples(tree, 32, np.random.default_rng(2))
    value, _, _, new = m_step(net, batch, 0.1, 0.1)
    jv, _, _, jnew = jax_step(net.weights, None, hid, batch, 0.1, 0.1, "gfb", "float32")
    assert jnew[0].dtype == np.float32 and isinstance(jv, float)
    assert abs(jv - value) < 1e-5 * abs(value)
    assert weights_err(new, jnew) < 1e-5


# ----------------------------------------------------------------------------- epochs
def test_jax_scanned_epoch_and_per_step_match_minissl_train():
    tree = m_tree()
    hid, tau, lr, steps, N = 10, 0.1, 0.1, 4, 32
    masks = tree.network_masks(hid)
    x, xp, xn = m_triples(tree, steps * N, np.random.default_rng(7))
    batches = [(x[s * N:(s + 1) * N], xp[s * N:(s + 1) * N], xn[s * N:(s + 1) * N])
               for s in range(steps)]
    net = m_net(tree, hid, seed=2)
    W0 = [np.array(W) for W in net.weights]
    losses = m_train(net, batches, tau, lr)
    data = J.batches_to_device(x, xp, xn, steps, "float64")
    for layout in ("gfb", "dense"):
        params, (jl, _, _) = J.make_epoch(tau, lr, layout, masks)(
            J.to_params(W0, hid, layout), *data)
        assert rel_err(losses, np.asarray(jl)) < TOL
        assert weights_err(net.weights, J.from_params(params, layout)) < TOL
    for packed in (False, True):
        p0 = J.to_params(W0, hid)
        shapes = [p.shape for p in p0] if packed else None
        step = J.make_step(tau, lr, "gfb", shapes=shapes)
        params, out = J.run_steps(step, J.pack(p0)[0] if packed else p0, J.split_steps(*data))
        assert abs(float(out[0]) - losses[-1]) < TOL * abs(losses[-1])
        params = J.unpack(params, shapes) if packed else params
        assert weights_err(net.weights, J.from_params(params)) < TOL
    # negative control: the same epoch with another τ drifts away from minissl's
    _, (jl, _, _) = J.make_epoch(0.2, lr)(J.to_params(W0, hid), *data)
    assert rel_err(losses, np.asarray(jl)) > 1e-3


@pytest.mark.parametrize("depth,c,hid,H", [(5, 2, 10, 1), (3, 3, 4, 2)])
def test_jax_expert_epoch_matches_minissl_train(depth, c, hid, H):
    """The strong reference (live (G, k, hid) weights, feature-major batches laid out
    beforehand, one scan) trains minissl's epoch: the same losses and weights."""
    tree = minissl.HLTM(depth=depth, num_children=c, polarity=(0.7, 1.0), seed=0, negatives=H)
    tau, lr, steps, N = 0.1, 0.1, 4, 16
    x, xp, xn = m_triples(tree, steps * N, np.random.default_rng(7))
    batches = [(x[s * N:(s + 1) * N], xp[s * N:(s + 1) * N], xn[s * N:(s + 1) * N])
               for s in range(steps)]
    net = m_net(tree, hid, seed=2)
    W0 = [np.array(W) for W in net.weights]
    assert all(np.array_equal(W, V) for W, V in zip(J.from_expert(J.to_expert(W0, hid)), W0))
    losses = m_train(net, batches, tau, lr)
    xs = J.expert_batches(x, xp, xn, steps, "float64")
    params, (jl, _, _) = J.make_expert_epoch(N, H, tau, lr)(J.to_expert(W0, hid), xs)
    assert rel_err(losses, np.asarray(jl)) < TOL
    assert weights_err(net.weights, J.from_expert(params)) < TOL
    # negative control: the views in another order (positives and negatives swapped)
    swapped = J.expert_batches(x, xn[:, 0], xp[:, None], steps, "float64") if H == 1 else \
        J.expert_batches(xp, x, xn, steps, "float64")
    _, (jl, _, _) = J.make_expert_epoch(N, H, tau, lr)(J.to_expert(W0, hid), swapped)
    assert rel_err(losses, np.asarray(jl)) > 1e-6


def test_jax_bench_worker_protocol(tmp_path):
    """bench/run.py's worker: compiles, then times the variants on request."""
    tree = m_tree(3, 2)
    hid, steps, N = 4, 3, 8
    x, xp, xn = m_triples(tree, steps * N, np.random.default_rng(0))
    W0 = m_net(tree, hid).weights
    masks = tree.network_masks(hid)
    path = tmp_path / "epoch.npz"
    np.savez(path, dtype="float64", hid=hid, steps=steps, tau=0.1, lr=0.1, L=len(W0),
             unroll=1, x=x, x_pos=xp, x_neg=xn, **{f"W{l}": W for l, W in enumerate(W0)},
             **{f"M{l}": m for l, m in enumerate(masks)})
    p = subprocess.run([sys.executable, os.path.join(BENCH, "jax_ref.py"), "--worker",
                        str(path)], input="expert\nscan\nstep\ndense\nquit\n", capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(s) for s in p.stdout.splitlines()]
    assert lines[0]["ready"] and set(lines[0]["compile"]) == {"expert", "scan", "step", "dense"}
    assert len(lines) == 5 and all(r["seconds"] > 0 for r in lines[1:])
    # the four variants trained the same epoch: the same final loss and weights
    assert max(abs(r["loss"] - lines[1]["loss"]) for r in lines[1:]) < TOL * abs(lines[1]["loss"])
    assert max(abs(r["moved"] - lines[1]["moved"]) for r in lines[1:]) < 1e-9 * lines[1]["moved"]
    assert lines[1]["moved"] > 0
