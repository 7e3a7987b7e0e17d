"""Feature decoupling (Wen & Li 2021): the sparse-coding generator's statistics, the view
correlations (exact enumeration and samples against the closed forms), the per-neuron metrics,
the hand-written gradients against central differences (with negative controls), Adam, bad
parameters, and one short end-to-end run."""
import itertools
import math

import numpy as np
import pytest

from minissl.decoupling import (AUGMENTATIONS, Adam, SparseCoding, closed_form_correlations,
                                dense_fraction, feature_coverage, feature_metrics, forward,
                                gradient_error, init_params, l2_normalize_backward,
                                l2_normalize_forward, loss_and_grads, measured_correlations,
                                numerical_gradient, relu_neuron_backward, relu_neuron_forward,
                                sparse_alignment, sym_threshold_backward, sym_threshold_forward,
                                train, view_correlation, weight_norm_backward,
                                weight_norm_forward)
from minissl.losses import simclr_loss

TOL = 1e-6        # gradient checks: relative error of central differences in float64
FAIL = 1e-2       # a deliberately wrong gradient must be at least this far off


# ----------------------------------------------------------------------------- the generator
def test_basis_orthonormal_delocalised_and_dense_outside_span():
    src = SparseCoding(d=32, d1=128, k=3, dense_rank=96, seed=1)
    M, P = src.M, src.P
    assert M.shape == (128, 32) and P.shape == (128, 96)
    np.testing.assert_allclose(M.T @ M, np.eye(32), atol=1e-12)
    np.testing.assert_allclose(P.T @ P, np.eye(96), atol=1e-12)
    np.testing.assert_allclose(M.T @ P, 0, atol=1e-12)
    # delocalised: Haar columns have max |M_ij| ~ sqrt(2 log(d1 d) / d1) ~ 0.36, far from 1
    assert np.abs(M).max() < 2 * math.sqrt(math.log(128 * 32) / 128)   # 0.51
    ident = SparseCoding(d=32, d1=128, k=3, dense_rank=96, basis="identity", seed=1)
    assert np.abs(ident.M).max() == 1.0
    np.testing.assert_allclose(ident.M.T @ ident.P, 0, atol=1e-12)


def test_sample_statistics():
    src = SparseCoding(d=32, d1=128, k=3, dense_rank=20, dense_energy=2.0, seed=2)
    n = 40_000
    x, z, xi = src.sample(n, np.random.default_rng(3), return_parts=True)
    np.testing.assert_allclose(x, z @ src.M.T + xi, atol=1e-12)
    assert set(np.unique(z)) <= {-1.0, 0.0, 1.0}
    q = src.k / src.d
    nz = z != 0
    # sparsity k/d per coordinate, independent coordinates, symmetric signs
    assert abs(nz.mean() - q) < 5 * math.sqrt(q * (1 - q) / nz.size)
    assert abs(nz.sum(1).mean() - src.k) < 5 * math.sqrt(src.k * (1 - q) / n)
    assert abs(z[nz].mean()) < 5 / math.sqrt(nz.sum())
    cov_nz = np.corrcoef(nz[:, :8].T.astype(float))
    assert np.abs(cov_nz - np.eye(8)).max() < 5 / math.sqrt(n)
    # dense part: orthogonal to span(M), rank dense_rank, energy ratio dense_energy
    np.testing.assert_allclose(xi @ src.M, 0, atol=1e-10)
    assert np.linalg.matrix_rank(xi[:500]) == 20
    ratio = (xi ** 2).sum(1).mean() / (z ** 2).sum(1).mean()
    # ||ξ||^2 = σ^2 χ²_r: relative sd sqrt(2/r)/sqrt(n); ||z||^2 ~ Binomial: sd sqrt(k)/sqrt(n)
    rel_sd = math.sqrt(2 / 20 / n) + math.sqrt(1 / (src.k * n))
    assert abs(ratio / 2.0 - 1) < 5 * rel_sd
    np.testing.assert_allclose(np.cov(x.T, bias=True), src.covariance, atol=0.01)


def test_views_and_triples_follow_the_protocol():
    for aug in AUGMENTATIONS:
        src = SparseCoding(d=8, d1=20, k=2, dense_rank=6, augmentation=aug, negatives=3, seed=0)
        x, xp, xn = src.triples(5, 0)
        assert x.shape == (5, 20) and xp.shape == (5, 20) and xn.shape == (5, 3, 20)
        assert src.views(4, 3, 0).shape == (4, 3, 20) and src.dim == 20
    g = np.random.default_rng(0)
    src = SparseCoding(d=8, d1=20, k=2, dense_rank=6, augmentation="complementary")
    x = src.sample(50, g)
    V = src.augment(x, 4, g)
    np.testing.assert_allclose(V[:, 0] + V[:, 1], 2 * x)            # x+ + x++ = 2 x
    np.testing.assert_allclose(V[:, 2] + V[:, 3], 2 * x)
    assert np.all((V[:, 0] == 0) | (V[:, 0] == 2 * x))
    assert not np.allclose(V[:, 0], V[:, 2])                        # pairs independent
    src = SparseCoding(d=8, d1=20, k=2, dense_rank=6, augmentation="mask", p=0.25)
    V = src.augment(x, 2, g)
    assert np.all(np.isclose(V, 0) | np.isclose(V, x[:, None] / 0.25))
    src = SparseCoding(d=8, d1=20, k=2, dense_rank=6, augmentation="none")
    V = src.augment(x, 2, g)
    np.testing.assert_array_equal(V[:, 0], V[:, 1])                 # ξ shared by the views


# ----------------------------------------------------------------------------- closed forms
def _exact_mask_moments(C, v, kind, p=0.5):
    """E[u+ u++], E[u+^2], E[u++^2] by enumerating every mask (small d1)."""
    d1 = len(v)
    masks = [np.array(m, dtype=float) for m in itertools.product((0, 1), repeat=d1)]
    out = np.zeros(3)
    if kind == "complementary":
        for D in masks:
            A, B = 2 * D * v, 2 * (1 - D) * v                        # u+ = A^T x, u++ = B^T x
            out += np.array([A @ C @ B, A @ C @ A, B @ C @ B]) / len(masks)
        return out
    prob = {i: np.prod(np.where(masks[i] == 1, p, 1 - p)) for i in range(len(masks))}
    for i, j in itertools.product(range(len(masks)), repeat=2):
        A, B = masks[i] * v / p, masks[j] * v / p
        out += prob[i] * prob[j] * np.array([A @ C @ B, A @ C @ A, B @ C @ B])
    return out


@pytest.mark.parametrize("kind,p", [("complementary", 0.5), ("mask", 0.5), ("mask", 0.3)])
def test_closed_form_against_exact_enumeration(kind, p):
    g = np.random.default_rng(4)
    G = g.standard_normal((5, 5))
    C = G @ G.T                                                     # any covariance
    v = g.standard_normal(5)
    v /= np.linalg.norm(v)
    e_pm, e_pp, e_mm = _exact_mask_moments(C, v, kind, p)
    assert view_correlation(C, v, kind, p=p) == pytest.approx(e_pm / math.sqrt(e_pp * e_mm),
                                                               rel=1e-12)
    a, b = v @ C @ v, (v ** 2) @ np.diag(C)
    if kind == "complementary":
        assert (e_pm, e_pp) == pytest.approx((a - b, a + b), rel=1e-12)
    # noise and none
    assert view_correlation(C, v, "noise", s=0.7) == pytest.approx(a / (a + 0.49))
    assert view_correlation(C, v, "none") == 1.0


@pytest.mark.parametrize("kw", [
    dict(augmentation="complementary"), dict(augmentation="mask", p=0.5),
    dict(augmentation="mask", p=0.3), dict(augmentation="noise", s=0.1),
    dict(augmentation="noise", s=1.0), dict(augmentation="none"),
    dict(augmentation="complementary", dense_rank=6),
    dict(augmentation="complementary", basis="identity"),
])
def test_measured_correlations_match_closed_forms(kw):
    src = SparseCoding(d=32, d1=128, k=3, **{"dense_rank": 96, **kw}, seed=5)
    cf = closed_form_correlations(src)
    ms = measured_correlations(src, 40_000, 6)
    for key in ("sparse", "dense"):
        tol = 5 * ms[key + "_se"] + 1e-9
        assert abs(ms[key] - cf[key]) < tol, (key, ms[key], cf[key], tol)


def test_closed_forms_on_the_reference_setting():
    """a = k/d, b ~ k(1 + ρ)/d1 (delocalised): comp. masks keep 1/3 of the sparse correlation
    and make the rank-96 dense part anti-correlated (-1/5); rank 6 stays correlated (~0.8)."""
    cf = closed_form_correlations(SparseCoding(augmentation="complementary", seed=0))
    assert cf["sparse"] == pytest.approx(1 / 3, abs=0.02)
    assert cf["dense"] == pytest.approx(-0.2, abs=0.02)
    cf6 = closed_form_correlations(SparseCoding(augmentation="complementary", dense_rank=6))
    assert cf6["dense"] == pytest.approx(0.83, abs=0.05)
    ident = SparseCoding(augmentation="complementary", basis="identity")
    assert closed_form_correlations(ident)["sparse"] == pytest.approx(0, abs=1e-12)


# ----------------------------------------------------------------------------- metrics
def test_metrics_on_constructed_weights():
    src = SparseCoding(d=16, d1=64, k=2, dense_rank=30, seed=7)
    M, P = src.M, src.P
    W = np.vstack([3 * M[:, 2], -M[:, 5], P[:, 0] + P[:, 4], (M[:, 0] + M[:, 1]) / 2])
    al, df = sparse_alignment(W, M), dense_fraction(W, P)
    np.testing.assert_allclose(al[:2], 1)
    np.testing.assert_allclose(df[:2], 0, atol=1e-24)
    np.testing.assert_allclose(df[2], 1)
    assert al[2] < 1e-12
    np.testing.assert_allclose(al[3], 1 / math.sqrt(2))
    cov = feature_coverage(W, M)
    assert cov[2] == pytest.approx(1) and cov[5] == pytest.approx(1)
    assert cov[0] == pytest.approx(1 / math.sqrt(2)) and cov[7] < 1e-12
    met = feature_metrics(W, M, P)
    assert met["aligned"] == 2 and met["covered"] == 2
    assert met["dense_fraction"] == pytest.approx(0.25)


# ----------------------------------------------------------------------------- gradients
def _setup(n=6, m=4, d1=5, seed=8):
    g = np.random.default_rng(seed)
    x, v = g.standard_normal((n, d1)), g.standard_normal((m, d1))
    b = g.uniform(0.1, 0.6, m)
    return g, x, v, b


def _check(f, arrays, analytic):
    return gradient_error(analytic, numerical_gradient(f, arrays))


def test_weight_norm_gradient_and_negative_control():
    g, _, v, _ = _setup()
    c = g.standard_normal(v.shape)
    w, nrm = weight_norm_forward(v)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1)
    dv = weight_norm_backward(c, w, nrm)
    f = lambda: (c * weight_norm_forward(v)[0]).sum()                # noqa: E731
    assert _check(f, [v], [dv]) < TOL
    assert _check(f, [v], [c / nrm]) > FAIL                          # projection left out


def test_symmetric_threshold_gradients_and_negative_controls():
    g, x, v, b = _setup()
    w = weight_norm_forward(v)[0]
    h, s = sym_threshold_forward(x, w, b)
    assert np.abs(np.abs(s) - b).min() > 1e-3                        # no kink within ε
    np.testing.assert_allclose(h, np.sign(s) * np.maximum(np.abs(s) - b, 0))
    assert np.any(h == 0) and np.any(h != 0)
    c = g.standard_normal(h.shape)
    dx, dw, db = sym_threshold_backward(c, x, w, b, s)
    f = lambda: (c * sym_threshold_forward(x, w, b)[0]).sum()        # noqa: E731
    assert _check(f, [x, w, b], [dx, dw, db]) < TOL
    # negative controls: one-sided gate, and the threshold's sign flipped
    on = s > b
    assert _check(f, [w], [(c * on).T @ x]) > FAIL
    assert _check(f, [b], [-db]) > FAIL


def test_relu_neuron_and_l2_normalize_gradients():
    g, x, v, _ = _setup()
    w = weight_norm_forward(v)[0]
    h, s = relu_neuron_forward(x, w)
    c = g.standard_normal(h.shape)
    dx, dw = relu_neuron_backward(c, x, w, s)
    f = lambda: (c * relu_neuron_forward(x, w)[0]).sum()             # noqa: E731
    assert _check(f, [x, w], [dx, dw]) < TOL
    assert _check(f, [w], [c.T @ x]) > FAIL                          # gate left out
    hh = g.standard_normal((6, 4))
    z, nrm = l2_normalize_forward(hh)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1)
    dh = l2_normalize_backward(c, z, nrm)
    f = lambda: (c * l2_normalize_forward(hh)[0]).sum()              # noqa: E731
    assert _check(f, [hh], [dh]) < TOL
    assert _check(f, [hh], [c / nrm]) > FAIL


@pytest.mark.parametrize("neuron", ["symmetric", "relu"])
def test_network_gradient_through_simclr_loss(neuron):
    g = np.random.default_rng(9)
    src = SparseCoding(d=4, d1=10, k=2, dense_rank=4, augmentation="noise", s=0.3, seed=9)
    X = src.views(5, 2, g)
    params = init_params(6, 10, g, neuron=neuron)
    if neuron == "symmetric":
        params["b"] = g.uniform(0.0, 0.3, 6)
    z, _ = forward(params, X[:, 0], neuron)
    _, grads = loss_and_grads(params, X[:, 0], X[:, 1], neuron, tau=0.2)
    keys = list(grads)
    f = lambda: loss_and_grads(params, X[:, 0], X[:, 1], neuron, 0.2)[0]   # noqa: E731
    assert _check(f, [params[k] for k in keys], [grads[k] for k in keys]) < TOL
    wrong = {k: grads[k].copy() for k in keys}
    wrong["v"] = -wrong["v"]
    assert _check(f, [params[k] for k in keys], [wrong[k] for k in keys]) > FAIL
    # the loss is simclr_loss of the normalised embeddings
    z2, _ = forward(params, X[:, 1], neuron)
    assert f() == pytest.approx(simclr_loss(z, z2, tau=0.2)[0])


def test_adam():
    p = {"a": np.array([1.0, -2.0, 3.0])}
    opt = Adam(lr=0.1)
    opt.step(p, {"a": np.array([0.5, -4.0, 0.0])})
    # first step: m̂ = g, û = g^2, so θ moves by lr sign(g) (0 where g = 0)
    np.testing.assert_allclose(p["a"], [0.9, -1.9, 3.0], atol=1e-6)
    q = {"x": np.array([5.0, -3.0])}
    opt = Adam(lr=0.05)
    for _ in range(2000):
        opt.step(q, {"x": 2 * q["x"]})
    assert np.abs(q["x"]).max() < 1e-2


# ----------------------------------------------------------------------------- bad parameters
@pytest.mark.parametrize("kw,name", [
    (dict(d=0), "d"), (dict(d=2.5), "d"), (dict(d=True), "d"),
    (dict(d1=16, d=32), "d1"), (dict(d1=float("nan")), "d1"),
    (dict(k=0), "k"), (dict(k=33), "k"), (dict(k=float("inf")), "k"),
    (dict(dense_rank=97), "dense_rank"), (dict(dense_rank=-1), "dense_rank"),
    (dict(dense_rank=3.5), "dense_rank"),
    (dict(dense_energy=-1.0), "dense_energy"), (dict(dense_energy=float("nan")), "dense_energy"),
    (dict(dense_rank=0, dense_energy=1.0), "dense_energy"),
    (dict(augmentation="crop"), "augmentation"),
    (dict(p=0.0), "p"), (dict(p=1.5), "p"), (dict(s=-0.1), "s"), (dict(s=float("inf")), "s"),
    (dict(negatives=0), "negatives"), (dict(basis="eye"), "basis"),
])
def test_bad_source_parameters_raise(kw, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        SparseCoding(**kw)


@pytest.mark.parametrize("kw,name", [
    (dict(neuron="tanh"), "neuron"), (dict(tau=0), "tau"), (dict(batch=1), "batch"),
    (dict(steps=-1), "steps"), (dict(lr=0), "lr"), (dict(b_init=-0.1), "b_init"),
    (dict(width=0), "width"),
])
def test_bad_training_parameters_raise(kw, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        train(SparseCoding(d=4, d1=10, k=1, dense_rank=4), steps=kw.pop("steps", 1), **kw)


def test_bad_sample_sizes_raise():
    src = SparseCoding(d=4, d1=10, k=1, dense_rank=4)
    with pytest.raises(ValueError, match="^n must"):
        src.sample(0, 0)
    with pytest.raises(ValueError, match="^m must"):
        src.views(3, 0, 0)
    with pytest.raises(ValueError, match="^augmentation must"):
        view_correlation(np.eye(3), np.ones(3) / math.sqrt(3), "rotate")


# ----------------------------------------------------------------------------- end to end
def test_complementary_masks_decouple_high_rank_dense_features():
    """High-rank dense features: complementary masks learn sparse features, no augmentation
    learns mostly dense directions (fixed seed; a shortened run, ~2 s each). Seeds 0-2 gave
    alignment 0.71-0.82 vs 0.18 and dense fraction 0.20-0.29 vs 0.77-0.78."""
    base = dict(d=16, d1=64, k=2, dense_rank=40, dense_energy=1.0, seed=0)
    out = {}
    for aug in ("none", "complementary"):
        r = train(SparseCoding(augmentation=aug, **base), width=32, batch=128, steps=600, seed=0)
        out[aug] = r["metrics"]
        assert np.all(r["b"] >= 0) and np.isfinite(r["loss"]).all()
    none, comp = out["none"], out["complementary"]
    assert comp["alignment"] > none["alignment"] + 0.3, out
    assert comp["dense_fraction"] < none["dense_fraction"] - 0.3, out
