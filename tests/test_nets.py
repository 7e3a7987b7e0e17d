"""ReLUNet: hand-written backward against central finite differences (each loss × normalize ×
masks × bias × depths/widths), the Jacobian identities of bias-free ReLU nets, masks, seeds,
persistence and bad input."""
import os
import pickle

import numpy as np
import pytest

import minissl
import minissl.io as mio
from minissl import ReLUNet, TrainConfig
from minissl.backend import BackendError, cupy_available
from minissl.io.checkpoint import CheckpointError
from minissl.gradcheck import check_gradients, gradient_error, numerical_gradient
from minissl.train import loss_and_grads

SIZES = [[3, 2], [4, 6, 3], [5, 7, 6, 4], [3, 5, 5, 5, 2]]


def random_masks(sizes, rng):
    return [(rng.random((b, a)) < 0.6).astype(float) for a, b in zip(sizes[:-1], sizes[1:])]


def batch(sizes, rng, N=4, H=1):
    n0 = sizes[0]
    return rng.normal(size=(N, n0)), rng.normal(size=(N, n0)), rng.normal(size=(N, H, n0))


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("loss", ["simple", "soft_triplet", "infonce"])
@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "l2"])
@pytest.mark.parametrize("masked", [False, True], ids=["dense", "masked"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_training_gradient_matches_finite_differences(sizes, loss, normalize, masked, bias):
    rng = np.random.default_rng(sum(sizes) + 7 * normalize + 3 * masked + bias)
    masks = random_masks(sizes, rng) if masked else None
    net = ReLUNet(sizes, masks=masks, bias=bias, normalize=normalize, seed=11)
    H = 3 if loss == "infonce" else 1
    b = batch(sizes, rng, H=H)
    cfg = TrainConfig(loss=loss, tau=0.6, margin=0.1)
    value, _, _, grads = loss_and_grads(net, b, cfg)
    params = net.parameters()
    f = lambda: loss_and_grads(net, b, cfg)[0]  # noqa: E731
    num = numerical_gradient(f, params)
    if masked:   # masked weights are not parameters: compare on the free entries only
        for g, n, m in zip(grads, num, net.masks):
            assert (g[m == 0] == 0).all()
            n[m == 0] = 0.0
    assert gradient_error(grads, num) < 1e-6


@pytest.mark.parametrize("normalize", [False, True])
def test_simclr_training_gradient_matches_finite_differences(normalize):
    rng = np.random.default_rng(5)
    net = ReLUNet([4, 6, 3], normalize=normalize, seed=2)
    b = batch([4, 6, 3], rng, N=3)
    cfg = TrainConfig(loss="infonce", tau=0.5, negatives="in_batch")
    _, _, _, grads = loss_and_grads(net, b, cfg)
    check_gradients(lambda: loss_and_grads(net, b, cfg)[0], net.parameters(), grads, tol=1e-6)


def test_backward_is_gradient_of_sum_dout_times_output():
    rng = np.random.default_rng(6)
    net = ReLUNet([4, 5, 3], bias=True, seed=1)
    x, dout = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    net.forward(x)
    dWs = net.backward(dout, input_grad=True)
    analytic = dWs + net.grad_biases + [net.grad_input]
    f = lambda: float((net.forward(x) * dout).sum())  # noqa: E731
    check_gradients(f, net.parameters() + [x], analytic, tol=1e-7)


def test_gradient_checker_negative_control_on_network():
    """A wrong backward (ReLU gate dropped) must fail the checker."""
    rng = np.random.default_rng(7)
    net = ReLUNet([4, 8, 8, 3], seed=3)
    x, dout = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    net.forward(x)
    # wrong: the ReLU gates always open (as if no ReLU were there)
    for relu in [layer for layer in net.layers if isinstance(layer, minissl.ReLU)]:
        relu.cache = np.abs(relu.cache) + 1.0
    dWs_wrong = [W.copy() for W in net.backward(dout)]
    f = lambda: float((net.forward(x) * dout).sum())  # noqa: E731
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_gradients(f, net.weights, dWs_wrong, tol=1e-6)


@pytest.mark.parametrize("sizes", SIZES[1:], ids=lambda s: "x".join(map(str, s)))
def test_jacobian_identities(sizes):
    """Bias-free ReLU: f_L = J_l g_l at every layer, and backward = Σ_n (J_l^T dout_n) f_{l-1}^T."""
    rng = np.random.default_rng(8)
    net = ReLUNet(sizes, seed=4)
    x, dout = rng.normal(size=(5, sizes[0])), rng.normal(size=(5, sizes[-1]))
    out = net.forward(x)
    dWs = net.backward(dout)
    gs, fs = net.passes(x)
    Js = net.jacobians(x)
    for l, J in enumerate(Js):
        assert J.shape == (5, sizes[-1], sizes[l + 1])
        np.testing.assert_allclose(np.einsum("nki,ni->nk", J, gs[l]), out, atol=1e-12)
        expected = np.einsum("nki,nk,nj->ij", J, dout, fs[l])
        np.testing.assert_allclose(dWs[l], expected, atol=1e-12)


def test_jacobian_matches_finite_differences_in_g():
    rng = np.random.default_rng(9)
    net = ReLUNet([3, 6, 5, 2], seed=5)
    x = rng.normal(size=(1, 3))
    gs, _ = net.passes(x)
    J1 = net.jacobians(x)[0][0]                         # (2, 6): d f_L / d g_1
    top = ReLUNet([6, 5, 2], seed=0)                    # the layers above g_1
    for W, W_top in zip(net.weights[1:], top.weights):
        W_top[...] = W
    eps = 1e-6
    for i in range(6):
        gp, gm = gs[0].copy(), gs[0].copy()
        gp[0, i] += eps
        gm[0, i] -= eps
        up = top.forward(np.maximum(gp, 0))
        dn = top.forward(np.maximum(gm, 0))
        np.testing.assert_allclose((up - dn)[0] / (2 * eps), J1[:, i], atol=1e-7)


def test_masks_zero_at_init_and_shapes():
    rng = np.random.default_rng(10)
    masks = random_masks([5, 7, 3], rng)
    net = ReLUNet([5, 7, 3], masks=masks, seed=0)
    for W, m, shape in zip(net.weights, masks, [(7, 5), (3, 7)]):
        assert W.shape == shape
        assert (W[m == 0] == 0).all() and (W[m == 1] != 0).all()
    assert net.forward(rng.normal(size=(2, 5))).shape == (2, 3)


def test_normalized_output_has_unit_rows():
    net = ReLUNet([4, 6, 3], normalize=True, seed=0)
    out = net.forward(np.random.default_rng(0).normal(size=(5, 4)))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-12)


def test_same_seed_same_net_and_float32():
    a, b, c = ReLUNet([4, 5, 2], seed=3), ReLUNet([4, 5, 2], seed=3), ReLUNet([4, 5, 2], seed=4)
    assert all((x == y).all() for x, y in zip(a.weights, b.weights))
    assert not all((x == y).all() for x, y in zip(a.weights, c.weights))
    n32 = ReLUNet([4, 5, 2], seed=3, dtype="float32")
    out = n32.forward(np.ones((2, 4)))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, a.forward(np.ones((2, 4))), rtol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=[4]), "sizes must have between 2"),
    (dict(sizes=[4, 0, 2]), r"sizes\[1\] must be an integer in \[1, 1048576\], got 0"),
    (dict(sizes=[4] * 70), "sizes must have between 2"),
    (dict(sizes="abc"), "sizes must be a list of integers"),
    (dict(sizes=[4, 3], masks=[np.ones((4, 3))]), r"masks\[0\] must have shape \(3, 4\)"),
    (dict(sizes=[4, 3], masks=[np.ones((3, 4)), None]), "one entry per layer"),
    (dict(sizes=[4, 3], masks=[np.full((3, 4), 0.5)]), "only 0 and 1"),
    (dict(sizes=[4, 3], dtype="float16"), "dtype must be one of"),
    (dict(sizes=[4, 3], backend="torch"), "backend must be one of"),
])
def test_constructor_errors(kwargs, match):
    sizes = kwargs.pop("sizes")
    with pytest.raises(ValueError, match=match):
        ReLUNet(sizes, **kwargs)


@pytest.mark.skipif(cupy_available(), reason="a GPU is present; this checks the no-GPU error")
def test_cupy_without_gpu_is_a_clear_error():
    with pytest.raises(BackendError, match="backend='cupy' cannot run here"):
        ReLUNet([3, 2], backend="cupy")


def test_forward_backward_input_errors():
    net = ReLUNet([4, 3], seed=0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        net.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="x contains NaN"):
        net.forward(np.full((2, 4), np.nan))
    with pytest.raises(RuntimeError, match="needs a forward"):
        ReLUNet([4, 3]).backward(np.zeros((2, 3)))
    net.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3\)"):
        net.backward(np.zeros((3, 3)))


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(11)
    net = ReLUNet([5, 4, 3], masks=random_masks([5, 4, 3], rng), bias=True, normalize=True,
                  seed=9)
    path = tmp_path / "net.npz"
    mio.save(net, path)
    back = mio.load(path)
    x = rng.normal(size=(3, 5))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))
    assert back.bias and back.normalize and back.masks is not None


def test_load_refuses_corrupt_foreign_and_pickled_files(tmp_path):
    net = ReLUNet([3, 2], seed=0)
    good = tmp_path / "net.npz"
    mio.save(net, good)
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable minissl checkpoint"):
        mio.load(tmp_path / "trunc.npz")
    np.savez(tmp_path / "foreign.npz", W=np.zeros(3))
    with pytest.raises(CheckpointError, match="no __meta__"):
        mio.load(tmp_path / "foreign.npz")
    # an object array would need unpickling: refused, never executed
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError):
        mio.load(tmp_path / "obj.npy")
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"weights": [1]}))
    with pytest.raises(CheckpointError):
        mio.load(tmp_path / "p.npz")
    # tampered array bytes: checksum mismatch
    import zipfile
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(tmp_path / "tamper.npz", "w") as zout:
        for item in zin.infolist():
            buf = zin.read(item.filename)
            if item.filename.startswith("a0"):
                buf = buf[:-8] + np.float64(123.0).tobytes()
            zout.writestr(item, buf)
    with pytest.raises(CheckpointError, match="corrupt"):
        mio.load(tmp_path / "tamper.npz")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "net.npz"
    mio.save(ReLUNet([3, 2], seed=0), path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        mio.save(ReLUNet([3, 2], seed=1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.npz"]


BN_OPTIONS = [{"mean": "normal", "var": "normal"},
              {"mean": "normal", "var": "detach", "affine": True},
              {"mean": "omit", "var": "normal", "affine": True, "omit_var": "centred"},
              {"mean": "detach", "var": "omit", "affine": True, "eps": 1e-3, "groups": 2},
              {"mean": "omit", "var": "omit", "affine": True}]


def _bn_net(batchnorm, rng, **kw):
    """A BN net whose affine parameters and frozen statistics are not their defaults."""
    sizes = [5, 6, 4, 3]
    net = ReLUNet(sizes, masks=random_masks(sizes, rng), bias=True, batchnorm=batchnorm,
                  init_scale=2.5, seed=4, **kw)
    for p in net.parameters()[net.depth:]:      # biases, gamma, beta (weights keep their masks)
        p += 0.3 * rng.normal(size=p.shape)
    bns = net.batchnorms()
    if bns and bns[0].mean != "omit":
        net.forward(rng.normal(size=(4, 5)))
        bns[0].freeze()                         # statistics the net now carries
        bns[0].fixed_stats = (bns[0].fixed_stats[0], None)
    return net


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalize"])
@pytest.mark.parametrize("batchnorm", BN_OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_batchnorm_net_survives_state_save_load_and_copy(tmp_path, batchnorm, normalize):
    rng = np.random.default_rng(21)
    net = _bn_net(batchnorm, rng, normalize=normalize)
    x = rng.normal(size=(6, 5))
    want = net.forward(x)
    mio.save(net, tmp_path / "bn.npz")
    copies = {"from_state": mio.from_state(net.state()),
              "load": mio.load(tmp_path / "bn.npz"),
              "copy": net.copy(), "copy_numba": net.copy(backend="numba")}
    for how, back in copies.items():
        np.testing.assert_array_equal(back.forward(x), want, err_msg=how)
        assert back.batchnorm == net.batchnorm and back.init_scale == 2.5, how
        assert repr(back) == repr(net).replace("'numba'", "'numpy'") or how == "copy_numba"
        for a, b in zip(back.parameters(), net.parameters()):
            np.testing.assert_array_equal(a, b, err_msg=how)


def test_state_of_an_older_version_loads_without_batchnorm(tmp_path):
    """A state without the keys added later (batchnorm, init_scale, bn) is a plain net."""
    net = ReLUNet([4, 5, 2], seed=3)
    st = net.state()
    old = {k: st[k] for k in ("sizes", "bias", "normalize", "norm_eps", "dtype", "weights",
                              "biases", "masks")}
    back = mio.from_state(old)
    assert back.batchnorm is None and back.init_scale == 1.0 and back.plain
    x = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))


@pytest.mark.parametrize("edit, match", [
    (lambda st: st.update(extra=1), r"unknown keys \['extra'\]"),
    (lambda st: st.update(batchnorm={"mean": "normal", "bogus": 1}),
     r"batchnorm has unknown options \['bogus'\]"),
    (lambda st: st.update(bn=st["bn"][:1]), r"bn must be a list of 2 entries"),
    (lambda st: st["bn"][1].update(gamma=np.ones(3)), r"bn\[1\]\.gamma has shape \(3,\)"),
    (lambda st: st["bn"][0].update(fixed_stats=[np.full((1, 6), np.nan), None]),
     r"bn\[0\]\.fixed_stats\[0\] contains NaN"),
    (lambda st: st.update(init_scale=0.0), r"init_scale must be"),
])
def test_bad_batchnorm_state_is_refused(edit, match):
    net = _bn_net({"mean": "normal", "affine": True}, np.random.default_rng(2))
    st = net.state()
    edit(st)
    with pytest.raises(ValueError, match=match):
        mio.from_state(st)
