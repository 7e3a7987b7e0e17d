"""Numba kernels against their NumPy twins (float64 to ~1e-12, float32 to ~1e-5).

Also run as ``NUMBA_DISABLE_JIT=1 python -m pytest tests/test_kernels.py`` (the kernels then
run as plain Python, for coverage). The PyTorch reference of bench/ is checked against minissl
when torch is installed.
"""
import importlib
import math
import os
import sys
from dataclasses import replace

import numpy as np
import pytest

import minissl
from minissl import ReLUNet, TrainConfig, TrainingDiverged, train
from minissl import covariance as C
from minissl.data import GaussianClusters
from minissl.hltm import HLTM
from minissl.kernels import hltm as KH
from minissl.kernels import losses as KL
from minissl.kernels import mlp, twin
from minissl.kernels import tree as KT
from minissl.layers import linear, linear_backward
from minissl.losses import simclr_weights
from minissl.metrics import best_unit_correlation, normalized_correlation
from minissl.optim import SGD
from minissl.train import check_batch, epoch_twin, gradient_step, loss_and_grads

JIT_OFF = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300))


def grads_err(ga, gb):
    return max(rel_err(a, b) for a, b in zip(ga, gb))


def grads_err_all(ga, gb):
    """Largest difference over all gradient arrays relative to the largest gradient entry (a
    bias gradient that is zero up to rounding, e.g. of the top layer under the simple loss,
    has no relative error of its own)."""
    scale = max(float(np.abs(np.asarray(a, float)).max()) for a in ga)
    return max(float(np.abs(np.asarray(a, float) - np.asarray(b, float)).max())
               for a, b in zip(ga, gb)) / scale


def tree_net(depth=3, c=2, hid=4, **kw):
    t = HLTM(depth=depth, num_children=c, seed=1)
    return t, minissl.tree_network(t, hid, **kw)


def checked(net, batch, cfg):
    """``(x, x_pos, x_neg)`` of a batch checked as the training loop checks it."""
    X, N, H = check_batch(net, batch, cfg)
    return X[:N], X[N:2 * N], X[2 * N:].reshape(N, H, -1)


def fused(net, batch, cfg, threads=None, step=None):
    """The compiled fused step (``kernels.mlp.FusedStep``) on a validated batch."""
    step = step or mlp.FusedStep.build(net.sizes, masks_of(net), net.dtype, threads)
    x, xp, xn = checked(net, batch, cfg)
    return step(net.weights, x, xp, xn, cfg.loss, cfg.tau, cfg.margin)


def masks_of(net):
    return None if net.masks is None else [None if m is None else np.asarray(m)
                                           for m in net.masks]


def random_masks(sizes, rng, density=0.5):
    ms = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        m = (rng.random((b, a)) < density).astype(float)
        m[:, 0] = 1                                   # every unit reads something
        ms.append(m)
    ms[-1] = None                                     # a dense top layer among masked ones
    return ms


# ----------------------------------------------------------------------------- structure
def test_row_structure_reconstructs_mask():
    rng = np.random.default_rng(0)
    m = (rng.random((7, 9)) < 0.4).astype(float)
    m[3] = 0                                          # a unit reading nothing
    cols, cnt = mlp.row_structure(m)
    back = np.zeros_like(m)
    for i in range(7):
        back[i, cols[i, :cnt[i]]] = 1
    np.testing.assert_array_equal(back, m)
    assert cnt[3] == 0
    with pytest.raises(ValueError, match="mask must be 2-D"):
        mlp.row_structure(np.ones(3))


# ----------------------------------------------------------------------------- net passes
def test_linear_plan_twin():
    """``LinearPlan``'s products equal ``layers.linear``/``linear_backward`` on a masked layer,
    masked entries of dW stay exactly zero, and outputs chain without copies."""
    rng = np.random.default_rng(1)
    m = (rng.random((7, 9)) < 0.5).astype(float)
    W, x, dg = rng.standard_normal((7, 9)) * m, rng.standard_normal((11, 9)), \
        rng.standard_normal((11, 7))
    plan = mlp.LinearPlan(m)
    g = plan.forward(W, x)
    assert rel_err(linear(x, W), g) < 1e-13 and g.T.flags["C_CONTIGUOUS"]
    dW, dx = plan.backward(W, dg, x)
    dW_ref, _, dx_ref = linear_backward(dg, x, W, m)
    assert rel_err(dW_ref, dW) < 1e-13 and rel_err(dx_ref, dx) < 1e-13
    assert not dW[m == 0].any()
    assert plan.backward(W, dg, x, want_input=False)[1] is None
    assert twin("linear", "numpy") is None and twin("linear", "numba") is KT.linear_plan
    assert isinstance(KT.linear_plan(m), mlp.LinearPlan)
    with pytest.raises(KeyError, match="no kernel twin"):
        twin("nope", "numba")


@pytest.mark.parametrize("G,h,K", [(4, 3, 2), (2, 5, 7), (1, 6, 1)])
def test_grouped_plan_twin(G, h, K):
    """A grouped (tree) layer's twin, on the step's kernels (``GroupedPlan``): the products of
    ``layers.linear``/``linear_backward`` and ``W^T dT``; a mask that is not grouped gets
    ``LinearPlan``, and a wrong group width (negative control) gives other products."""
    rng = np.random.default_rng(2)
    m = np.kron(np.eye(G), np.ones((h, K)))
    W, x, dg = rng.standard_normal(m.shape) * m, rng.standard_normal((13, G * K)), \
        rng.standard_normal((13, G * h))
    plan = KT.linear_plan(m)
    assert isinstance(plan, KT.GroupedPlan) and plan.K == K
    assert rel_err(linear(x, W), plan.forward(W, x)) < 1e-13
    dW, dx = plan.backward(W, dg, x)
    dW_ref, _, dx_ref = linear_backward(dg, x, W, m)
    assert rel_err(dW_ref, dW) < 1e-13 and rel_err(dx_ref, dx) < 1e-13
    assert not dW[m == 0].any() and plan.backward(W, dg, x, want_input=False)[1] is None
    assert rel_err(W.T @ dg.T, plan.down(W, np.ascontiguousarray(dg.T))) < 1e-13
    if G > 1:
        m2 = m.copy()
        m2[0, -1] = 1                                     # one unit reads another group
        assert isinstance(KT.linear_plan(m2), mlp.LinearPlan)
        wrong = KT.GroupedPlan(np.kron(np.eye(G * K), np.ones((1, 1))), 1)
        assert not rel_err(linear(x, W), wrong.forward(W, x)) < 1e-3   # other (or NaN) values


@pytest.mark.parametrize("kind", ["tree", "dense", "mixed"])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_backward_twins(kind, bias):
    rng = np.random.default_rng(1)
    if kind == "tree":
        _, net = tree_net(bias=bias, seed=2, backend="numba")
    else:
        sizes = [6, 9, 7, 4]
        masks = random_masks(sizes, rng) if kind == "mixed" else None
        net = ReLUNet(sizes, masks=masks, bias=bias, seed=2, backend="numba")
    ref = net.copy(backend="numpy")
    x = rng.standard_normal((11, net.sizes[0]))
    gs, fs = ref.passes(x)
    gk, fk = net.passes(x)
    assert max(rel_err(a, b) for a, b in zip(gs, gk)) < 1e-13
    assert max(rel_err(a, b) for a, b in zip(fs, fk)) < 1e-13
    delta = rng.standard_normal(gs[-1].shape)
    dW, dWk = ref.backward(delta, input_grad=True), net.backward(delta, input_grad=True)
    assert grads_err(dW, dWk) < 1e-13
    assert rel_err(ref.grad_input, net.grad_input) < 1e-13
    if bias:
        assert grads_err(ref.grad_biases, net.grad_biases) < 1e-13
    if net.masks is not None:                         # masked entries stay exactly zero
        for g, m in zip(dWk, net.masks):
            if m is not None:
                assert not g[m == 0].any()


@pytest.mark.parametrize("normalize", [False, True])
def test_relunet_numba_backend_matches_numpy(normalize):
    rng = np.random.default_rng(3)
    _, net = tree_net(backend="numba", normalize=normalize, norm_eps=1e-4, seed=4)
    ref = net.copy(backend="numpy")
    x = rng.standard_normal((9, net.sizes[0]))
    assert rel_err(ref.forward(x), net.forward(x)) < 1e-13
    d = rng.standard_normal((9, net.sizes[-1]))
    assert grads_err(ref.backward(d, input_grad=True), net.backward(d, input_grad=True)) < 1e-12
    assert rel_err(ref.grad_input, net.grad_input) < 1e-12
    Ja, Jb = ref.jacobians(x), net.jacobians(x)
    assert max(rel_err(a, b) for a, b in zip(Ja, Jb)) < 1e-13


# ----------------------------------------------------------------------------- fused step
FUSED_CASES = [("simple", 1), ("soft_triplet", 1), ("infonce", 1), ("infonce", 3),
               ("ref_nce", 1)]


@pytest.mark.parametrize("loss,H", FUSED_CASES)
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_step_matches_numpy_float64(loss, H, threads):
    rng = np.random.default_rng(5)
    tree, net = tree_net(backend="numba", seed=6)
    ref = net.copy(backend="numpy")
    N = 40
    x, xp = rng.random((N, tree.dim)), rng.random((N, tree.dim))
    xn = rng.random((N, H, tree.dim))
    cfg = TrainConfig(loss=loss, tau=0.7, margin=0.3)
    want = loss_and_grads(ref, (x, xp, xn), cfg)
    got = fused(net, (x, xp, xn), cfg, threads=threads)
    for a, b in zip(want[:3], got[:3]):
        assert abs(a - b) <= 1e-12 * max(abs(a), 1.0)
    assert grads_err(want[3], got[3]) < 1e-12
    for g, m in zip(got[3], net.masks):
        assert not g[m == 0].any()


@pytest.mark.parametrize("sizes", [[5, 8, 3], [5, 3]])
def test_fused_step_dense_small_net_float32(sizes):
    rng = np.random.default_rng(7)
    net = ReLUNet(sizes, backend="numba", dtype="float32", seed=8)
    ref = net.copy(backend="numpy")
    x, xp, xn = (rng.standard_normal(s) for s in ((33, 5), (33, 5), (33, 2, 5)))
    cfg = TrainConfig(loss="infonce", tau=0.5)
    want = loss_and_grads(ref, (x, xp, xn), cfg)
    got = fused(net, (x, xp, xn), cfg)
    assert abs(want[0] - got[0]) < 1e-5 * max(1, abs(want[0]))
    assert grads_err(want[3], got[3]) < 1e-5


def test_fused_gradient_finite_differences_and_negative_control():
    """Central differences in float64 on the fused step's loss; a wrong structure fails."""
    rng = np.random.default_rng(9)
    tree, net = tree_net(depth=2, hid=3, backend="numba", seed=10)
    N = 12
    b = (rng.random((N, tree.dim)), rng.random((N, tree.dim)), rng.random((N, 2, tree.dim)))
    cfg = TrainConfig(loss="infonce", tau=0.6)
    _, _, _, g = fused(net, b, cfg)
    h = 1e-6
    for l, W in enumerate(net.weights):
        i, j = np.argwhere(net.masks[l] > 0)[rng.integers(0, int(net.masks[l].sum()))]
        w0 = W[i, j]
        W[i, j] = w0 + h
        lp = fused(net, b, cfg)[0]
        W[i, j] = w0 - h
        lm = fused(net, b, cfg)[0]
        W[i, j] = w0
        fd = (lp - lm) / (2 * h)
        assert abs(fd - g[l][i, j]) < 1e-7 * max(1.0, abs(fd))
    # negative control: drop one connection from the plan -> the gradient check must fail
    step = mlp.FusedStep.build(net.sizes, masks_of(net), net.dtype)
    bad = list(step.cnts)
    bad[0] = step.cnts[0].copy()
    bad[0][0] -= 1
    step.cnts = tuple(bad)
    g_bad = fused(net, b, cfg, step=step)[3]
    ref = loss_and_grads(net.copy(backend="numpy"), b, cfg)[3]
    assert grads_err(ref, g) < 1e-12
    assert grads_err(ref, g_bad) > 1e-3


def test_fused_step_declines_and_validates():
    rng = np.random.default_rng(11)
    tree, net = tree_net(backend="numba")
    b = (rng.random((8, tree.dim)), rng.random((8, tree.dim)), rng.random((8, 1, tree.dim)))
    general = gradient_step(net, TrainConfig(negatives="in_batch")).__qualname__
    assert gradient_step(net, TrainConfig()).__qualname__ != general
    _, nb = tree_net(backend="numba", bias=True, normalize=True)     # the reference preset
    assert gradient_step(nb, TrainConfig()).__qualname__ != general
    dense_bias = ReLUNet([6, 5, 3], bias=True, backend="numba")      # no compiled step
    assert gradient_step(dense_bias, TrainConfig()).__qualname__ == general
    bn = ReLUNet([6, 5, 3], batchnorm={"mean": "normal"}, backend="numba")
    assert gradient_step(bn, TrainConfig()).__qualname__ == general
    assert mlp.FusedStep.build([4, 1 << 10, 1 << 9], None, "float64") is None   # too large
    assert mlp.FusedStep.build([32, 64, 32], None, "float64") is None    # dense: BLAS pays
    assert mlp.FusedStep.build([32, 64, 32], random_masks([32, 64, 32], rng),
                               "float64") is None                    # its dense top layer
    assert mlp.FusedStep.build([16, 32, 16], None, "float64") is not None
    assert mlp.FusedStep.build([16, 64, 16], None, "float64") is None    # 2,048: per dtype
    assert mlp.FusedStep.build([16, 64, 16], None, "float32") is not None
    assert KT.build_step([4, 1 << 10, 1 << 9], None, "float64", biases=[0]) is None
    step = gradient_step(net, TrainConfig())
    with pytest.raises(ValueError, match="x_neg must have shape"):
        step((b[0], b[1], b[2][:3]))
    bad = b[2].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):     # the batch is checked stacked
        step((b[0], b[1], bad))
    with pytest.raises(ValueError, match="takes exactly H=1"):
        gradient_step(net, TrainConfig(loss="simple"))((b[0], b[1], np.repeat(b[2], 2, 1)))
    net.weights[-1][0, 0] = np.inf                    # a non-finite output -> nan, no grads
    out = step(b)
    assert math.isnan(out[0]) and out[3] is None


@pytest.mark.parametrize("loss", ["infonce", "ref_nce"])
def test_train_numba_matches_numpy(loss):
    tree = HLTM(depth=3, num_children=2, seed=0)
    cfg = dict(loss=loss, tau=0.5, lr=0.05, steps=15, batch_size=16, seed=3, sampler="numpy")
    ha = train(minissl.tree_network(tree, 4, seed=1), tree, **cfg)["loss"]
    hb = train(minissl.tree_network(tree, 4, seed=1, backend="numba"), tree, **cfg)["loss"]
    np.testing.assert_allclose(hb, ha, rtol=1e-11, atol=1e-13)
    net = minissl.tree_network(tree, 4, seed=1, backend="numba")
    with pytest.raises(TrainingDiverged):
        train(net, tree, loss="infonce", lr=1e6, steps=30, batch_size=8)


def test_train_in_batch_numba_general_path():
    src = GaussianClusters(dim=5, seed=0)
    cfg = dict(loss="infonce", negatives="in_batch", lr=0.05, steps=5, batch_size=8)
    ha = train(ReLUNet([5, 6, 3], seed=1), src, **cfg)["loss"]
    hb = train(ReLUNet([5, 6, 3], seed=1, backend="numba"), src, **cfg)["loss"]
    np.testing.assert_allclose(hb, ha, rtol=1e-11)


# ----------------------------------------------------------------------------- tree nets
def ref_tree(bias=False, normalize=False, depth=3, c=2, hid=4, H=1, dtype="float64"):
    """A tree, and the same tree network on backends numpy and numba (the reference preset's
    options when ``bias``/``normalize``)."""
    tree = HLTM(depth=depth, num_children=c, seed=1, negatives=H)
    kw = dict(bias=bias, normalize=normalize, norm_eps=1e-4 if normalize else 0.0, seed=2,
              dtype=dtype)
    return tree, minissl.tree_network(tree, hid, **kw), \
        minissl.tree_network(tree, hid, backend="numba", **kw)


def test_tree_groups_recognises_tree_networks_only():
    tree, net, _ = ref_tree(depth=3, c=3, hid=2)
    assert KT.tree_groups(net.sizes, masks_of(net)) == [3, 6, 6]
    rng = np.random.default_rng(0)
    assert KT.tree_groups([6, 9, 7, 4], random_masks([6, 9, 7, 4], rng)) is None
    assert KT.tree_groups(net.sizes, None) is None
    other = [m.copy() for m in masks_of(net)]
    other[1][0, -1] = 1                                # one extra connection
    assert KT.tree_groups(net.sizes, other) is None


TREE_CASES = [dict(loss="infonce"), dict(loss="ref_nce", bias=True, normalize=True),
              dict(loss="infonce", H=3), dict(loss="soft_triplet", c=3, hid=3),
              dict(loss="simple", bias=True)]


@pytest.mark.parametrize("case", TREE_CASES)
@pytest.mark.parametrize("binary", [True, False])
def test_tree_step_matches_loss_and_grads(case, binary):
    """The compiled step of a tree network (``TreeStep``: biases, output normalisation)
    returns what ``loss_and_grads`` returns, on binary and on real-valued inputs."""
    case = dict(case)
    loss = case.pop("loss")
    tree, a, b = ref_tree(**case)
    batch = tree.triples(12, np.random.default_rng(3))
    if not binary:
        batch = tuple(x + 0.3 * np.random.default_rng(4).standard_normal(x.shape) for x in batch)
    cfg = TrainConfig(loss=loss, tau=0.5, margin=0.1)
    want = loss_and_grads(a, batch, cfg)
    got = gradient_step(b, cfg)(batch)
    for x, y in zip(want[:3], got[:3]):
        assert abs(x - y) <= 1e-12 * max(abs(x), 1.0)
    assert len(got[3]) == len(want[3]) and grads_err_all(want[3], got[3]) < 1e-12
    for g, m in zip(got[3], b.masks):
        assert not g[m == 0].any()


def test_tree_step_float32():
    tree, a, b = ref_tree(bias=True, normalize=True, depth=4, hid=5, dtype="float32")
    batch = tree.triples(40, np.random.default_rng(5))
    cfg = TrainConfig(loss="ref_nce", tau=0.05)
    want, got = loss_and_grads(a, batch, cfg), gradient_step(b, cfg)(batch)
    assert abs(want[0] - got[0]) < 1e-5 * max(1, abs(want[0]))
    assert grads_err(want[3], got[3]) < 1e-4


def test_tree_step_finite_differences_and_negative_control():
    """Central differences of the loss (reference preset: biases, normalised output) agree
    with the compiled step's weight and bias gradients; a step built without the
    normalisation does not."""
    tree, _, net = ref_tree(bias=True, normalize=True, depth=2, hid=3)
    batch = tree.triples(10, np.random.default_rng(6))
    cfg = TrainConfig(loss="infonce", tau=0.6)
    step = gradient_step(net, cfg)
    g = step(batch)[3]
    rng, h = np.random.default_rng(7), 1e-6
    params = net.parameters()
    for l, p in enumerate(params):
        live = np.argwhere(net.masks[l] > 0) if l < net.depth else np.arange(p.size)[:, None]
        idx = tuple(live[rng.integers(len(live))])
        p0 = p[idx]
        p[idx] = p0 + h
        lp = step(batch)[0]
        p[idx] = p0 - h
        lm = step(batch)[0]
        p[idx] = p0
        assert abs((lp - lm) / (2 * h) - g[l][idx]) < 1e-7 * max(1.0, abs(g[l][idx]))
    wrong = KT.build_step(net.sizes, masks_of(net), net.dtype, weights=net.weights,
                          biases=net.biases, normalize=False)
    x, xp, xn = checked(net, batch, cfg)
    g_bad = wrong(net.weights, x, xp, xn, cfg.loss, cfg.tau, cfg.margin)[3]
    assert grads_err(g, g_bad) > 1e-3


def compiled_per_step(net, tree, cfg, steps, rng):
    """The reference of the compiled epoch: ``kernels.hltm.triples`` batches, then
    ``loss_and_grads`` and ``optim.SGD`` per step (NumPy), returning the per-step stats."""
    rng, out = np.random.default_rng(rng), []
    opt = SGD(net.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    for _ in range(steps):
        batch = KH.triples(tree, cfg.batch_size, rng)
        value, rp, rn, grads = loss_and_grads(net, batch, cfg)
        opt.step(grads)
        out.append((value, rp, rn))
    return np.array(out)


EPOCH_CASES = [dict(loss="infonce"), dict(loss="ref_nce", bias=True, normalize=True),
               dict(loss="infonce", H=3, momentum=0.9, weight_decay=0.01),
               dict(loss="soft_triplet", c=3, hid=3),          # collapsed layers 1-2, c = 3
               dict(loss="simple", c=4, hid=3, depth=2)]       # 2**4 > 3 + 4: no collapse


@pytest.mark.parametrize("case", EPOCH_CASES)
def test_tree_epoch_matches_the_per_step_reference(case):
    """``TreeEpoch.run`` (the compiled epoch: sampling, steps, SGD) equals the NumPy steps on
    the batches of ``kernels.hltm.triples`` drawn from the same generator; weights and
    biases of the net are current after every call, and a changed weight is seen."""
    case = dict(case)
    loss, mom, wd = case.pop("loss"), case.pop("momentum", 0.0), case.pop("weight_decay", 0.0)
    tree, a, b = ref_tree(**case)
    cfg = TrainConfig(loss=loss, tau=0.5, margin=0.1, lr=0.1, momentum=mom, weight_decay=wd,
                      batch_size=16, sampler="compiled")
    ep = epoch_twin(b, tree, cfg)
    assert ep is not None and ep.net.pat == KT.collapses(b.sizes, ep.Ks)
    rng, rng_ref = np.random.default_rng(8), np.random.default_rng(8)
    got = np.concatenate([ep.run(rng, 3), ep.run(rng, 2)])   # two calls, one stream
    want = compiled_per_step(a, tree, cfg, 5, rng_ref)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert max(rel_err(x, y) for x, y in zip(a.parameters(), b.parameters())) < 1e-12
    # a weight changed between calls is seen by the next call (and the check would see a
    # difference: the reference without the change disagrees)
    a2 = a.copy()
    for net in (a, b):
        net.weights[-1][0, 0] += 1e-2
    state = rng.bit_generator.state
    got = ep.run(rng, 1)
    rng_ref.bit_generator.state = state
    assert abs(got[0, 0] - compiled_per_step(a, tree, cfg, 1, rng_ref)[0, 0]) \
        <= 1e-12 * max(1.0, abs(got[0, 0]))
    rng_ref.bit_generator.state = state
    assert abs(got[0, 0] - compiled_per_step(a2, tree, cfg, 1, rng_ref)[0, 0]) > 1e-9


def test_tree_epoch_float32_and_divergence():
    tree, a, b = ref_tree(bias=True, normalize=True, depth=4, hid=5, dtype="float32")
    cfg = TrainConfig(loss="ref_nce", tau=0.05, lr=0.1, batch_size=32, sampler="compiled")
    got = epoch_twin(b, tree, cfg).run(np.random.default_rng(1), 4)
    want = compiled_per_step(a, tree, cfg, 4, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    small, _, c = ref_tree()
    c.weights[-1][0, 0] = np.inf                        # not finite: stops before the update
    W = c.weights[0].copy()
    ep = epoch_twin(c, small, TrainConfig(lr=0.1, batch_size=8, sampler="compiled"))
    st = ep.run(np.random.default_rng(0), 3)
    assert st.shape == (1, 3) and np.isnan(st).all() and np.array_equal(W, c.weights[0])


def test_tree_epoch_gradient_finite_differences_and_negative_control():
    """One compiled step with the collapsed layers 1-2 moves every weight and bias by
    ``-lr`` times the central difference of the loss on the batch it drew; an epoch built
    without the biases does not."""
    tree, a, b = ref_tree(bias=True, normalize=True, depth=3, hid=3)
    cfg = TrainConfig(loss="infonce", tau=0.5, lr=1.0, batch_size=8, sampler="compiled")
    batch = KH.triples(tree, 8, np.random.default_rng(2))
    before = [p.copy() for p in b.parameters()]
    ep = epoch_twin(b, tree, cfg)
    assert ep.net.pat
    ep.run(np.random.default_rng(2), 1)
    moved = [p0 - p for p0, p in zip(before, b.parameters())]          # = lr * grad
    rng, h = np.random.default_rng(3), 1e-6
    for l, p in enumerate(a.parameters()):
        idx = tuple(np.argwhere(moved[l] != 0)[rng.integers(np.count_nonzero(moved[l]))])
        p0 = p[idx]
        p[idx] = p0 + h
        lp = loss_and_grads(a, batch, cfg)[0]
        p[idx] = p0 - h
        lm = loss_and_grads(a, batch, cfg)[0]
        p[idx] = p0
        assert abs((lp - lm) / (2 * h) - moved[l][idx]) < 1e-7 * max(1.0, abs(moved[l][idx]))
    _, _, c = ref_tree(bias=True, normalize=True, depth=3, hid=3)
    wrong = KT.TreeEpoch(c.weights, None, ep.Ks, tree, 8, "infonce", 0.5, 0.0, 1.0,
                         normalize=True, eps=1e-4)
    w0 = [W.copy() for W in c.weights]
    wrong.run(np.random.default_rng(2), 1)
    assert max(rel_err(m, W0 - W) for m, W0, W in zip(moved, w0, c.weights)) > 1e-3


def test_train_with_the_compiled_sampler():
    """``train(sampler="compiled")``: whole chunks ending at callback steps, the records of
    the per-step path with the same batches, ``loss_mean`` at callback records; errors where
    the compiled sampler cannot run."""
    tree, a, b = ref_tree(bias=True, normalize=True)
    cfg = dict(loss="ref_nce", tau=0.05, lr=0.1, steps=7, batch_size=16, seed=4,
               sampler="compiled", log_every=3)
    seen = []
    hb = train(b, tree, **cfg, callback=lambda r: seen.append((r["step"], r["loss_mean"],
                                                               b.weights[0].copy())))
    want = compiled_per_step(a, tree, TrainConfig(**{k: v for k, v in cfg.items()
                                                     if k != "log_every"}), 7, 4)
    np.testing.assert_allclose(hb["loss"], want[:, 0], rtol=1e-12)
    assert [s for s, _, _ in seen] == [3, 6, 7]
    assert seen[0][1] == pytest.approx(np.mean(want[:3, 0]), rel=1e-12)
    assert not np.array_equal(seen[0][2], seen[1][2])      # the weights after step 3, then 6
    assert len(hb) == 7 and "loss_mean" not in hb.records[0]
    with pytest.raises(ValueError, match="sampler='compiled' needs an HLTM"):
        train(ReLUNet([5, 4], backend="numba"), GaussianClusters(dim=5), sampler="compiled",
              steps=1)
    with pytest.raises(ValueError, match="sampler='compiled' needs an HLTM"):
        train(a, tree, sampler="compiled", steps=1)        # backend numpy
    with pytest.raises(ValueError, match="sampler must be one of"):
        TrainConfig(sampler="fast").validate()
    _, _, plain = ref_tree()
    with pytest.raises(TrainingDiverged, match="diverged at step"):
        train(plain, tree, loss="infonce", lr=1e6, steps=40, batch_size=8,
              sampler="compiled", log_every=40)


def test_the_default_sampler_and_chunks(monkeypatch):
    """``sampler="auto"`` is the compiled sampler on backend numba for an HLTM with given or
    in-batch negatives, NumPy's elsewhere (so a seed gives the same numbers on a backend and
    sampler); without a callback the compiled epoch runs whole chunks, with the same numbers."""
    T = importlib.import_module("minissl.train")
    tree, a, b = ref_tree()
    auto = TrainConfig()
    assert auto.sampler == "auto"
    for net, src, neg, want in [(b, tree, "given", "compiled"), (b, tree, "in_batch", "compiled"),
                                (b, tree, "supervised", "numpy"), (a, tree, "given", "numpy"),
                                (b, GaussianClusters(dim=tree.dim), "given", "numpy")]:
        assert T.resolve_sampler(net, src, replace(auto, negatives=neg)).sampler == want
    assert T.resolve_sampler(a, tree, replace(auto, sampler="compiled")).sampler == "compiled"
    cfg = dict(loss="infonce", tau=0.5, lr=0.1, steps=7, batch_size=16, seed=4, log_every=3)
    w0 = [W.copy() for W in b.weights]
    calls, run = [], KT.TreeEpoch.run
    monkeypatch.setattr(KT.TreeEpoch, "run", lambda self, rng, k: calls.append(k) or
                        run(self, rng, k))
    runs = [train(b, tree, **cfg, callback=lambda r: None)]
    for W, W0 in zip(b.weights, w0):
        W[...] = W0
    runs.append(train(b, tree, **cfg))
    assert calls == [3, 3, 1, 7]                 # chunks end at callbacks; none: one chunk
    assert runs[0]["loss"] == runs[1]["loss"]
    assert [r.get("loss_mean") is not None for r in runs[1].records] == \
        [r.get("loss_mean") is not None for r in runs[0].records]
    hn = train(a, tree, **cfg)["loss"]                        # backend numpy: NumPy's sampler
    assert not np.allclose(hn, runs[0]["loss"])
    np.testing.assert_allclose(train(ref_tree()[2], tree, **cfg, sampler="numpy")["loss"], hn,
                               rtol=1e-11)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_simclr_twin(dtype, tol):
    """``kernels.losses.simclr_weights`` returns what ``losses.simclr_weights`` returns."""
    rng = np.random.default_rng(17)
    Z = rng.standard_normal((18, 4)).astype(dtype)
    a = simclr_weights(Z, "infonce", 0.4)
    b = KL.simclr_weights(Z, "infonce", 0.4)
    assert rel_err(a[0], b[0]) < tol and rel_err(a[1], b[1]) < tol and rel_err(a[2], b[2]) < tol
    assert abs(a[3] - b[3]) < tol * a[3] and isinstance(b[3], float)
    assert twin("simclr_weights", "numba") is KL.simclr_weights
    with pytest.raises(ValueError, match="loss must be 'infonce'"):
        KL.simclr_weights(Z, "simple")


# ----------------------------------------------------------------------------- compiling
class _FakeDispatcher:
    def __init__(self, name, module):
        self.py_func = lambda: None
        self.py_func.__name__, self.py_func.__module__ = name, module
        self.stats = type("S", (), {"cache_path": "/some/cache"})()


def test_compile_notice_once_and_only_for_minissl_kernels():
    """The notice is printed when Numba starts compiling a minissl kernel, once; compiles of
    other code and later compiles print nothing (no timing involved)."""
    import io
    from minissl.kernels.compiling import CompileNotice
    from numba.core.event import Event, EventStatus
    out = io.StringIO()
    notice = CompileNotice(stream=out)

    def start(name, module):
        notice.notify(Event("numba:compile", EventStatus.START,
                            data={"dispatcher": _FakeDispatcher(name, module)}))
    start("helper", "somebody.else")
    assert out.getvalue() == ""
    start("sample_bits", "minissl.kernels.hltm")
    first = out.getvalue()
    assert first.startswith("minissl: compiling Numba kernels, once (~6 s)") and \
        "/some/cache" in first
    start("run_step", "minissl.kernels.tree")
    assert out.getvalue() == first


@pytest.mark.skipif(JIT_OFF, reason="nothing is compiled with NUMBA_DISABLE_JIT=1")
def test_compile_notice_cold_cache_only(tmp_path):
    """A fresh process with an empty cache prints the notice on stderr; the next process,
    loading the cached kernels, prints nothing."""
    import subprocess
    code = ("import numpy as np; from minissl.hltm import HLTM; "
            "from minissl.kernels import hltm; hltm.triples(HLTM(2, 2), 3, np.random.default_rng(0))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert "minissl: compiling Numba kernels, once" in runs[0].stderr
    assert "compiling" not in runs[1].stderr


def test_cache_falls_back_to_a_temp_dir_when_nothing_is_writable(monkeypatch):
    import numba
    from minissl.kernels import compiling

    def refuse(**kw):
        def deco(f):
            raise RuntimeError("cannot cache function: no locator available")
        return deco
    monkeypatch.setattr(compiling, "njit", refuse)
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    with pytest.warns(RuntimeWarning, match="caching compiled kernels in"):
        path = compiling.ensure_cache()
    assert path.endswith("minissl-numba-cache") and numba.config.CACHE_DIR == path
    monkeypatch.undo()
    assert compiling.ensure_cache() is None


# ----------------------------------------------------------------------------- HLTM statistics
def test_best_unit_correlation_twin():
    rng = np.random.default_rng(12)
    n, G, hid = 500, 5, 3
    z = rng.integers(0, 2, (n, G)).astype(float)
    g = rng.standard_normal((n, G, hid)) + 2.0 * z[:, :, None] * rng.random((1, G, hid))
    g[:, 1, :] = 3.0                                  # constant units -> 0
    z[:, 2] = 1.0                                     # constant latent -> 0
    a = best_unit_correlation(z, g)
    b = KH.best_unit_correlation(z, g)
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    assert b[1] == 0 and b[2] == 0 and b[0] > 0.3
    with pytest.raises(ValueError, match="z must be"):
        KH.best_unit_correlation(z, g[:, :2])


@pytest.mark.parametrize("polarity,keep", [((0.6, 0.6), None), ((0.3, 0.9), 2)])
def test_sampler_twin_has_the_law(polarity, keep):
    """Same law as ``HLTM.triples`` (other random numbers): leaf means, anchor/positive and
    anchor/negative agreement per leaf, and leaf-pair agreement within 5 standard errors."""
    tree = HLTM(depth=3, num_children=2, polarity=polarity, seed=3, keep_depth=keep,
                negatives=2)
    n = 20000
    a = tree.triples(n, np.random.default_rng(0))
    b = KH.triples(tree, n, np.random.default_rng(1))
    assert b[0].shape == (n, 8) and b[1].shape == (n, 8) and b[2].shape == (n, 2, 8)

    def stats(x, xp, xn):
        return np.concatenate([x.mean(0), (x == xp).mean(0), (x == xn[:, 1]).mean(0),
                               (x[:, :1] == x[:, 1:]).mean(0)])
    se = 0.5 / np.sqrt(n)
    assert np.abs(stats(*a) - stats(*b)).max() < 5 * np.sqrt(2) * se
    # negative control: a tree with other polarities is told apart
    other = HLTM(depth=3, num_children=2, polarity=(0.95, 1.0), seed=3, keep_depth=keep,
                 negatives=2)
    c = KH.triples(other, n, np.random.default_rng(2))
    assert np.abs(stats(*a) - stats(*c)).max() > 10 * se
    # rho = +-1 exactly: the positive equals the anchor when only the root is shared
    det = HLTM(depth=3, num_children=2, polarity=(1.0, 1.0), seed=0)
    x, xp, xn = KH.triples(det, 50, np.random.default_rng(0))
    np.testing.assert_array_equal(x, xp)


def test_normalized_correlation_numba_net_matches_numpy():
    tree = HLTM(depth=3, num_children=2, seed=0)
    net = minissl.tree_network(tree, 4, seed=2, backend="numba")
    a = normalized_correlation(tree, net.copy(backend="numpy"), n=400, rng=1)
    b = normalized_correlation(tree, net, n=400, rng=1)
    np.testing.assert_allclose(b.per_latent, a.per_latent, rtol=1e-11, atol=1e-13)


# ----------------------------------------------------------------------------- covariance sums
@pytest.mark.parametrize("sizes", [[6, 5, 4], [6, 8, 7, 3], [6, 4], "tree"])
@pytest.mark.parametrize("weighted", [False, True])
def test_covariance_factors_twin(sizes, weighted):
    rng = np.random.default_rng(13)
    if sizes == "tree":
        tree, net = tree_net(depth=3, hid=3, backend="numba", seed=3)
        views = tree.views(7, 3, rng)
    else:
        net = ReLUNet(sizes, backend="numba", seed=3)
        views = GaussianClusters(dim=6, seed=0).views(7, 3, rng)
    xi = None
    if weighted:
        a = rng.random((7, 7))
        xi = a + a.T
    for layer in range(net.depth):
        A = C.Factors(net.copy(backend="numpy"), views, layer, xi)
        K = C.Factors(net, views, layer, xi)
        assert isinstance(A.products, C.JacobianProducts)
        assert type(K.products).__name__ == "GateProducts"
        V = rng.standard_normal(net.weights[layer].shape)
        c = rng.standard_normal((7, net.sizes[-1]))
        assert rel_err(A.products.kbar_t(V), K.products.kbar_t(V)) < 1e-12
        assert rel_err(A.products.kbar_sum(c), K.products.kbar_sum(c)) < 1e-12
        assert rel_err(A.apply(V), K.apply(V)) < 1e-12


def test_covariance_spectrum_numba_matches_numpy():
    rng = np.random.default_rng(14)
    net = ReLUNet([6, 12, 10, 3], backend="numba", seed=5)
    views = GaussianClusters(dim=6, seed=1).views(20, 3, rng)
    w_b, U_b = C.covariance_spectrum(net, views, 1, k=3, method="lanczos")
    w_a, U_a = C.covariance_spectrum(net.copy(backend="numpy"), views, 1, k=3, method="lanczos")
    np.testing.assert_allclose(w_b, w_a, rtol=1e-9)
    np.testing.assert_allclose(np.abs(U_b.T @ U_a).diagonal(), 1.0, atol=1e-7)
    upd = C.covariance_update(net, views, 1)
    ref = C.covariance_update(net.copy(backend="numpy"), views, 1)
    assert rel_err(ref, upd) < 1e-12


# ----------------------------------------------------------------------------- the torch reference
def _torch_ref():
    pytest.importorskip("torch")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
    import torch_ref
    return torch_ref


@pytest.mark.parametrize("loss", ["simple", "soft_triplet", "infonce"])
def test_torch_reference_step_matches_minissl(loss):
    T = _torch_ref()
    import torch
    rng = np.random.default_rng(15)
    tree, net = tree_net(seed=7)
    model = T.MaskedMLP(net.sizes, net.masks, "float64", net.weights)
    b = (rng.random((10, tree.dim)), rng.random((10, tree.dim)), rng.random((10, 1, tree.dim)))
    cfg = TrainConfig(loss=loss, tau=0.7, margin=0.2, lr=0.1)
    value, _, _, g = loss_and_grads(net, b, cfg)
    step = T.make_step(model, cfg.lr, loss, cfg.tau, cfg.margin)
    tv = float(step(tuple(torch.from_numpy(a) for a in b)))
    assert abs(tv - value) < 1e-12 * max(1, abs(value))
    for lin, W, dW, m in zip(model.layers, net.weights, g, net.masks):
        new = lin.weight.detach().numpy() * m
        assert rel_err(W - cfg.lr * dW, new) < 1e-12


def test_torch_reference_simclr_and_spectrum():
    T = _torch_ref()
    import torch
    rng = np.random.default_rng(16)
    net = ReLUNet([5, 7, 3], seed=2)
    x, xp = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    cfg = TrainConfig(loss="infonce", tau=0.5, negatives="in_batch")
    value = loss_and_grads(net, (x, xp, None), cfg)[0]
    model = T.MaskedMLP(net.sizes, None, "float64", net.weights)
    Z = model(torch.from_numpy(np.concatenate([x, xp])))
    assert abs(float(T.simclr_loss(Z[:6], Z[6:], 0.5)) - value) < 1e-12
    views = GaussianClusters(dim=5, seed=0).views(15, 3, rng)
    w_t = T.covariance_spectrum(net.weights, views, 0, k=2)[0]
    w_m = C.covariance_spectrum(net, views, 0, k=2, method="dense")[0]
    np.testing.assert_allclose(w_t, w_m, rtol=1e-9)


def test_torch_hltm_sampler_law():
    """Flip frequencies of the torch sampler match the tree's polarities."""
    pytest.importorskip("torch")
    T = _torch_ref()
    tree = HLTM(depth=2, num_children=2, polarity=(0.3, 0.9), seed=4)
    x, z = T.TorchHLTM(tree, seed=0).sample(20000)
    x, z = x.numpy(), z.numpy()
    nodes = np.concatenate([z, x], axis=1)           # BFS order, leaves last
    par = tree.parents()
    for i in range(1, tree.n_nodes):
        same = (nodes[:, i] == nodes[:, par[i]]).mean()
        assert abs(same - (1 + tree.rho[i]) / 2) < 0.02


@pytest.mark.skipif(not minissl.backend.cupy_available(), reason="no CuPy/GPU")
def test_cupy_tree_training_matches_numpy():
    tree = HLTM(depth=3, num_children=2, seed=0)
    cfg = dict(loss="infonce", tau=0.5, lr=0.05, steps=10, batch_size=16, seed=3)
    ha = train(minissl.tree_network(tree, 4, seed=1), tree, **cfg)["loss"]
    hb = train(minissl.tree_network(tree, 4, seed=1, backend="cupy"), tree, **cfg)["loss"]
    np.testing.assert_allclose(hb, ha, rtol=1e-9)


@pytest.mark.parametrize("kind", ["tree", "dense"])
def test_compiled_steps_see_overflowing_outputs_like_the_reference(kind):
    """Finite outputs whose squares overflow (``train.finite_output``): the reference and the
    compiled steps both return NaN and no gradients."""
    if kind == "tree":
        tree, _, net = ref_tree()
        batch = tree.triples(6, np.random.default_rng(0))
    else:
        net = ReLUNet([5, 4, 3], backend="numba", seed=0)
        rng = np.random.default_rng(0)
        batch = (rng.random((6, 5)), rng.random((6, 5)), rng.random((6, 1, 5)))
    net.weights[-1][...] *= 1e160
    cfg = TrainConfig(loss="infonce", tau=0.5)
    want = loss_and_grads(net.copy(backend="numpy"), batch, cfg)
    got = gradient_step(net, cfg)(batch)
    assert math.isnan(want[0]) and want[3] is None
    assert math.isnan(got[0]) and got[3] is None


@pytest.mark.skipif(JIT_OFF, reason="nothing is compiled with NUMBA_DISABLE_JIT=1")
def test_calls_by_address_check_the_declared_signature():
    """A compiled caller runs a kernel through its address (``kernels.calls.via``, the
    compiled epoch's calls); arguments unlike the declared signature fail to compile, and a
    kernel missing from the table raises instead of jumping to address 0."""
    from numba import njit
    from numba.core.errors import TypingError
    from minissl.kernels import calls
    sig = "A2 i i A2 -> none"
    call = calls.via(0, KT.transposed, sig)

    @njit
    def caller(table, W, WT):
        call(table, W, 0, 2, WT)
    table = calls.addresses([(KT.transposed, sig, np.float64, ())])
    W, WT = np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2))
    caller(table, W, WT)
    assert table[0] != 0 and np.array_equal(WT, W.T)      # WT[k, o] = W[o, k]
    with pytest.raises(TypingError, match="declared"):
        caller(table, W[0], WT)                            # 1-d where 2-d is declared
    with pytest.raises(RuntimeError, match="not in the address table"):
        caller(np.zeros(1, np.int64), W, WT)
