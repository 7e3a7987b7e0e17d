"""The three losses: values against their formulas, the r-derivatives and their identity,
gradients against central finite differences, the SimCLR arrangement against a direct loop,
stability at small τ, and bad input."""
import math

import numpy as np
import pytest

from minissl import contrastive_loss, simclr_loss
from minissl.gradcheck import check_gradients, gradient_error, numerical_gradient
from minissl.experiments.losses import loss_curves
from minissl.losses import LOSSES, collapsed_loss, pair_weights

CORE = ["simple", "soft_triplet", "infonce"]


def test_values_on_hand_computable_inputs():
    # r_pos = ½·1 = 0.5, r_neg = ½·4 = 2
    z, zp, zn = np.zeros((1, 2)), np.array([[1.0, 0]]), np.array([[[2.0, 0]]])
    v, _ = contrastive_loss(z, zp, zn, "simple")
    assert v == pytest.approx(0.5 - 2.0)
    v, _ = contrastive_loss(z, zp, zn, "soft_triplet", tau=1.0)
    assert v == pytest.approx(math.log(1 + math.exp(-1.5)))
    v, _ = contrastive_loss(z, zp, zn, "soft_triplet", tau=0.5, margin=1.0)
    assert v == pytest.approx(0.5 * math.log(1 + math.exp((-1.5 + 1.0) / 0.5)))
    v, _ = contrastive_loss(z, zp, zn, "infonce", tau=2.0)
    e = lambda r: math.exp(-r / 2.0)  # noqa: E731
    assert v == pytest.approx(-2.0 * math.log(e(0.5) / (e(0.5) + e(2.0))))
    # mean over anchors: a second anchor with r_pos = 0, r_neg = 0 adds L = 0 (simple)
    v2, _ = contrastive_loss(np.zeros((2, 2)), np.array([[1.0, 0], [0, 0]]),
                             np.array([[[2.0, 0]], [[0, 0]]]), "simple")
    assert v2 == pytest.approx((0.5 - 2.0 + 0.0) / 2)


@pytest.mark.parametrize("loss", CORE)
@pytest.mark.parametrize("tau", [0.1, 1.0, 3.0])
def test_r_derivatives_and_identity(loss, tau):
    rng = np.random.default_rng(0)
    H = 1 if loss != "infonce" else 5
    r_pos, r_neg = rng.uniform(0, 3, 7), rng.uniform(0, 3, (7, H))
    fn = LOSSES[loss]
    L, d_pos, d_neg = fn(r_pos, r_neg, tau, 0.3)
    # ∂L/∂r_+ = −Σ_k ∂L/∂r_k ≥ 0  (docs/design.md)
    np.testing.assert_allclose(d_pos, -d_neg.sum(1), atol=1e-14)
    assert (d_pos >= 0).all()
    # partial derivatives against central differences in r
    rp, rn = r_pos.copy(), r_neg.copy()
    num = numerical_gradient(lambda: fn(rp, rn, tau, 0.3)[0].sum(), [rp, rn])
    assert gradient_error([d_pos, d_neg], num) < 1e-8
    xi, dp = pair_weights(r_pos, r_neg, loss, tau, 0.3)
    np.testing.assert_array_equal(xi, -d_neg)


@pytest.mark.parametrize("loss,H", [("simple", 1), ("soft_triplet", 1), ("infonce", 1),
                                    ("infonce", 4)])
@pytest.mark.parametrize("d", [1, 3])
def test_embedding_gradients_match_finite_differences(loss, H, d):
    rng = np.random.default_rng(1)
    z, zp, zn = rng.normal(size=(5, d)), rng.normal(size=(5, d)), rng.normal(size=(5, H, d))
    v, grads = contrastive_loss(z, zp, zn, loss, tau=0.7, margin=0.2)
    f = lambda: contrastive_loss(z, zp, zn, loss, tau=0.7, margin=0.2)[0]  # noqa: E731
    check_gradients(f, [z, zp, zn], grads, tol=1e-7)


def test_gradient_checker_rejects_a_wrong_gradient():
    """Negative control: the checker must fail for plausible-looking wrong gradients."""
    rng = np.random.default_rng(2)
    z, zp, zn = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3, 3))
    _, (dz, dzp, dzn) = contrastive_loss(z, zp, zn, "infonce", tau=0.5)
    f = lambda: contrastive_loss(z, zp, zn, "infonce", tau=0.5)[0]  # noqa: E731
    wrong = [
        [dz, dzp, dzn * 0.9],            # negatives mis-scaled
        [dz, -dzp, dzn],                 # sign error on the positive
        [dz * 4, dzp * 4, dzn * 4],      # forgot the mean over anchors
    ]
    for w in wrong:
        with pytest.raises(AssertionError, match="gradient check failed"):
            check_gradients(f, [z, zp, zn], w, tol=1e-6)


def test_simclr_matches_direct_loop():
    rng = np.random.default_rng(3)
    N, d, tau = 4, 3, 0.4
    z1, z2 = rng.normal(size=(N, d)), rng.normal(size=(N, d))
    v, (d1, d2) = simclr_loss(z1, z2, "infonce", tau)
    Z = np.concatenate([z1, z2])
    B = 2 * N
    total, dZ = 0.0, np.zeros_like(Z)
    for i in range(B):
        p = (i + N) % B
        negs = [j for j in range(B) if j not in (i, p)]
        vi, (gi, gp, gn) = contrastive_loss(Z[i:i + 1], Z[p:p + 1], Z[negs][None], "infonce", tau)
        total += vi / B
        dZ[i] += gi[0] / B
        dZ[p] += gp[0] / B
        dZ[negs] += gn[0] / B
    assert v == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(np.concatenate([d1, d2]), dZ, atol=1e-12)
    # and against finite differences
    check_gradients(lambda: simclr_loss(z1, z2, "infonce", tau)[0], [z1, z2], [d1, d2])


def test_simclr_rejects_single_negative_losses():
    z = np.zeros((3, 2))
    with pytest.raises(ValueError, match="H=1"):
        simclr_loss(z, z, "simple")


@pytest.mark.parametrize("loss", CORE)
def test_stable_at_small_tau_and_large_distances(loss):
    rng = np.random.default_rng(4)
    z, zp, zn = rng.normal(size=(6, 4)) * 300, rng.normal(size=(6, 4)) * 300, \
        rng.normal(size=(6, 1, 4)) * 300
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        v, grads = contrastive_loss(z, zp, zn, loss, tau=0.01)
        r = np.array([1e6, 0.0]), np.array([[0.0], [1e6]])
        out = LOSSES[loss](*r, 0.01, 0.0)
    assert np.isfinite(v) and all(np.isfinite(g).all() for g in grads)
    assert all(np.isfinite(o).all() for o in out)
    # exact asymptotics: infonce / soft_triplet → max(r_pos - r_neg, 0) as τ → 0
    if loss != "simple":
        assert out[0][0] == pytest.approx(1e6, rel=1e-9) and out[0][1] == pytest.approx(0, abs=1e-6)


def test_simclr_stable_at_small_tau():
    rng = np.random.default_rng(5)
    z1, z2 = rng.normal(size=(8, 4)) * 100, rng.normal(size=(8, 4)) * 100
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        v, (d1, d2) = simclr_loss(z1, z2, "infonce", tau=0.01)
    assert np.isfinite(v) and np.isfinite(d1).all() and np.isfinite(d2).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(tau=0.0), "tau must be"),
    (dict(tau=-1.0), "tau must be"),
    (dict(tau=float("nan")), "tau must be"),
    (dict(loss="triplet"), "loss must be one of"),
])
def test_bad_loss_arguments(kwargs, match):
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=match):
        contrastive_loss(z, z, z[:, None], **kwargs)


def test_bad_shapes_and_values():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="z_pos must have the shape"):
        contrastive_loss(z, np.zeros((2, 4)), z[:, None])
    with pytest.raises(ValueError, match="z_neg must have shape"):
        contrastive_loss(z, z, np.zeros((3, 1, 3)))
    with pytest.raises(ValueError, match="H=1"):
        contrastive_loss(z, z, np.zeros((2, 2, 3)), "soft_triplet")
    bad = z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="z contains NaN"):
        contrastive_loss(bad, z, z[:, None])


@pytest.mark.parametrize("vary", ["r_pos", "r_neg", "tau"])
@pytest.mark.parametrize("H", [1, 4])
def test_loss_curves_sign_conventions(vary, H):
    """ξ = -dL/dr_k >= 0 and dL/dr_+ = Σ_k ξ_k (all H negatives equal: H ξ) for every loss;
    L increases with r_+ and decreases with r_-."""
    t, curves = loss_curves(vary, r_pos=0.7, r_neg=1.3, tau=0.5, H=H)
    for name, (L, dp, xi) in curves.items():
        h = H if name == "infonce" else 1
        assert (xi >= 0).all()
        np.testing.assert_allclose(dp, h * xi, rtol=1e-12, atol=1e-15)
        if vary == "r_pos":
            assert (np.diff(L) > 0).all()
            np.testing.assert_allclose(np.gradient(L, t)[1:-1], dp[1:-1], rtol=2e-3, atol=1e-6)
        if vary == "r_neg":
            assert (np.diff(L) < 0).all()
            np.testing.assert_allclose(np.gradient(L, t)[1:-1], -h * xi[1:-1], rtol=2e-3,
                                       atol=1e-6)


@pytest.mark.parametrize("loss, tau, H, expected", [
    ("simple", 1.0, 1, 0.0),
    ("soft_triplet", 0.5, 1, 0.5 * np.log(2)),
    ("infonce", 0.1, 1, 0.1 * np.log(2)),
    ("infonce", 2.0, 7, 2.0 * np.log(8)),
])
def test_collapsed_loss(loss, tau, H, expected):
    assert collapsed_loss(loss, tau, H) == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------- cross-entropy
def test_softmax_cross_entropy_value_and_gradient():
    from minissl.losses import softmax_cross_entropy
    rng = np.random.default_rng(4)
    s, y = rng.normal(size=(6, 4)) * 3, np.array([0, 3, 1, 1, 2, 0])
    L, d = softmax_cross_entropy(s, y)
    direct = np.mean([-np.log(np.exp(s[i, y[i]]) / np.exp(s[i]).sum()) for i in range(6)])
    assert L == pytest.approx(direct, rel=1e-12)
    check_gradients(lambda: softmax_cross_entropy(s, y)[0], [s], [d], tol=1e-8)
    np.testing.assert_allclose(d.sum(1), 0, atol=1e-15)        # softmax sums to one
    for wrong in (d * 6, d + (np.arange(4) == 0) / 6.0, -d):     # no mean, one-hot off, sign
        with pytest.raises(AssertionError, match="gradient check failed"):
            check_gradients(lambda: softmax_cross_entropy(s, y)[0], [s], [wrong], tol=1e-6)
    big, _ = softmax_cross_entropy(np.array([[1e4, 0.0], [0.0, 1e4]]), np.array([1, 1]))
    assert big == pytest.approx(5e3)                            # stable for large logits
    with pytest.raises(ValueError, match="labels must be in"):
        softmax_cross_entropy(s, np.array([0, 4, 1, 1, 2, 0]))
