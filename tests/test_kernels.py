"""Numba kernels against their NumPy twins (float64 to ~1e-12, float32 to ~1e-5).

Also run as ``NUMBA_DISABLE_JIT=1 python -m pytest tests/test_kernels.py`` (the kernels then
run as plain Python, for coverage). The PyTorch reference of bench/ is checked against minissl
when torch is installed.
"""
import math
import os
import sys

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
from minissl.layers import linear, linear_backward
from minissl.losses import simclr_weights
from minissl.metrics import best_unit_correlation, normalized_correlation
from minissl.train import check_batch, gradient_step, loss_and_grads

JIT_OFF = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300))


def grads_err(ga, gb):
    return max(rel_err(a, b) for a, b in zip(ga, gb))


def tree_net(depth=3, c=2, hid=4, **kw):
    t = HLTM(depth=depth, num_children=c, seed=1)
    return t, minissl.tree_network(t, hid, **kw)


def fused(net, batch, cfg, threads=None, step=None):
    """The compiled fused step (``kernels.mlp.FusedStep``) on a validated batch."""
    step = step or mlp.FusedStep.build(net.sizes, masks_of(net), net.dtype, threads)
    x, xp, xn = check_batch(net, batch)
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
    assert twin("linear", "numpy") is None and twin("linear", "numba") is mlp.LinearPlan
    with pytest.raises(KeyError, match="no kernel twin"):
        twin("nope", "numba")


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
    _, nb = tree_net(backend="numba", bias=True)
    assert gradient_step(nb, TrainConfig()).__qualname__ == general
    assert mlp.FusedStep.build([4, 1 << 10, 1 << 9], None, "float64") is None   # too large
    step = gradient_step(net, TrainConfig())
    with pytest.raises(ValueError, match="x_neg must have shape"):
        step((b[0], b[1], b[2][:3]))
    bad = b[2].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x_neg contains NaN"):
        step((b[0], b[1], bad))
    with pytest.raises(ValueError, match="takes exactly H=1"):
        gradient_step(net, TrainConfig(loss="simple"))((b[0], b[1], np.repeat(b[2], 2, 1)))
    net.weights[-1][0, 0] = np.inf                    # a non-finite output -> nan, no grads
    out = step(b)
    assert math.isnan(out[0]) and out[3] is None


@pytest.mark.parametrize("loss", ["infonce", "ref_nce"])
def test_train_numba_matches_numpy(loss):
    tree = HLTM(depth=3, num_children=2, seed=0)
    cfg = dict(loss=loss, tau=0.5, lr=0.05, steps=15, batch_size=16, seed=3)
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
