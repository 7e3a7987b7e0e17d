"""BatchNorm: hand-written backward against central finite differences for every mean x var
mode (detached statistics checked as constants at the evaluation point), with and without
affine; the split into direct/mean/variance paths and the covariance form of the mean path
(the implicit contrastive term); a negative control; bad input."""
import numpy as np
import pytest

from minissl.layers import BN_MODES as MODES
from minissl.layers import (BatchNorm, bn_backward, bn_backward_parts, bn_forward,
                            bn_weight_grad_parts as weight_grad_parts)
from minissl.gradcheck import check_gradients, gradient_error, numerical_gradient


def _data(seed, N=7, n=4):
    g = np.random.default_rng(seed)
    return g.normal(size=(N, n)) * 1.5 + 0.7, g.normal(size=(N, n))


@pytest.mark.parametrize("mean", MODES)
@pytest.mark.parametrize("var", MODES)
@pytest.mark.parametrize("affine", [False, True], ids=["plain", "affine"])
def test_bn_backward_matches_finite_differences(mean, var, affine):
    x, dy = _data(MODES.index(mean) * 3 + MODES.index(var) + 10 * affine)
    n = x.shape[1]
    bn = BatchNorm(n, mean, var, affine)
    if affine:
        g = np.random.default_rng(1)
        bn.gamma[...] = g.normal(size=n)
        bn.beta[...] = g.normal(size=n)
    bn.forward(x)
    # a detached statistic is a constant where the gradient is taken: freeze its value
    frozen = BatchNorm(n, mean, var, affine)
    frozen.gamma, frozen.beta = bn.gamma, bn.beta
    mu, v = bn.cache["mu"], bn.cache["v"]
    fixed_mean = mu.copy() if mean == "detach" else None
    fixed_var = v.copy() if var == "detach" else None

    def f():
        y, _ = bn_forward(x, mean, var, frozen.gamma, frozen.beta, bn.eps,
                          fixed_mean=fixed_mean, fixed_var=fixed_var)
        return float((dy * y).sum())

    dx = bn.backward(dy)
    params = [x] + bn.parameters()
    analytic = [dx] + bn.grads
    check_gradients(f, params, analytic, eps=1e-6, tol=1e-7)


@pytest.mark.parametrize("mean,var", [("normal", "normal"), ("normal", "omit"),
                                      ("omit", "normal")])
def test_detach_differs_from_normal_and_fails_the_full_fd(mean, var):
    """Negative control: the detached gradient is not the gradient of the un-frozen function,
    and a deliberately wrong gradient (the mean path dropped) fails the checker."""
    x, dy = _data(3)
    _, cache = bn_forward(x, mean, var)
    dx_true, _, _ = bn_backward(dy, cache)
    numeric = numerical_gradient(lambda: float((dy * bn_forward(x, mean, var)[0]).sum()), [x])
    assert gradient_error([dx_true], numeric) < 1e-7
    direct, mpart, vpart = bn_backward_parts(dy, cache)
    wrong = direct + vpart if mean == "normal" else direct + mpart
    assert gradient_error([wrong], numeric) > 1e-2
    detached = "detach" if mean == "normal" else mean
    _, cache_d = bn_forward(x, detached, "detach" if var == "normal" else var)
    assert gradient_error([bn_backward(dy, cache_d)[0]], numeric) > 1e-2


def test_forward_statistics_and_identity():
    x, _ = _data(4, N=50)
    y, _ = bn_forward(x, "normal", "normal", eps=1e-12)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(0), 1, atol=1e-9)
    y, _ = bn_forward(x, "normal", "omit")
    np.testing.assert_allclose(y, x - x.mean(0), atol=1e-12)
    y, _ = bn_forward(x, "omit", "normal", eps=1e-12)
    np.testing.assert_allclose((y * y).mean(0), 1, atol=1e-9)
    assert BatchNorm(3, "omit", "omit").identity and not BatchNorm(3, "omit", "omit", True).identity
    y, _ = bn_forward(x, "omit", "omit")
    np.testing.assert_allclose(y, x, atol=1e-12)
    # detach changes gradients only, never values
    np.testing.assert_array_equal(bn_forward(x, "detach", "detach")[0],
                                  bn_forward(x, "normal", "normal")[0])


@pytest.mark.parametrize("var", MODES)
def test_mean_path_is_a_cross_sample_covariance_term(var):
    """dW_direct + dW_mean = sum_i delta_i (f_i - fbar)^T (covariance form), the mean path is
    -(1/N) sum_{i,j} delta_i f_j^T, and its cross-sample (j != i) piece is (N-1)/N of it in
    expectation; every piece adds up to the finite-difference weight gradient."""
    g = np.random.default_rng(5)
    N, n_in, n_out = 9, 5, 4
    f = np.abs(g.normal(size=(N, n_in))) + 0.3               # ReLU-like inputs, nonzero mean
    W = g.normal(size=(n_out, n_in))
    dy = g.normal(size=(N, n_out))
    _, cache = bn_forward(f @ W.T, "normal", var)
    parts = weight_grad_parts(f, dy, cache)
    delta = bn_backward_parts(dy, cache)[0]
    pairwise = -np.einsum("ia,jb->ab", delta, f) / N
    np.testing.assert_allclose(parts["mean"], pairwise, atol=1e-12)
    np.testing.assert_allclose(parts["mean_same"] + parts["mean_cross"], parts["mean"], atol=1e-12)
    cross = -sum(np.outer(delta[i], f[j]) for i in range(N) for j in range(N) if i != j) / N
    np.testing.assert_allclose(parts["mean_cross"], cross, atol=1e-12)
    np.testing.assert_allclose(parts["direct"] + parts["mean"], parts["covariance"], atol=1e-12)
    np.testing.assert_allclose(parts["covariance"],
                               N * np.cov(delta.T, f.T, bias=True)[:n_out, n_out:], atol=1e-12)
    fixed_var = cache["v"].copy() if var == "detach" else None
    numeric = numerical_gradient(lambda: float(
        (dy * bn_forward(f @ W.T, "normal", var, fixed_var=fixed_var)[0]).sum()), [W])
    assert gradient_error([parts["total"]], numeric) < 1e-7
    assert gradient_error([parts["direct"] + parts["var"]], numeric) > 1e-2


@pytest.mark.parametrize("var", MODES)
@pytest.mark.parametrize("groups,omit_var", [(2, "moment"), (1, "centred"), (2, "centred")])
@pytest.mark.parametrize("mean", MODES)
def test_per_view_and_centred_variance_match_finite_differences(mean, var, groups, omit_var):
    """Statistics per block of N/groups rows (BYOL's per-view BN) and, with the mean omitted,
    the authors' centred unbiased variance: the backward matches central differences (a
    detached statistic frozen where the gradient is taken), and a dropped variance path
    fails the check."""
    x, dy = _data(11 + MODES.index(mean) + 3 * MODES.index(var), N=8)
    y, cache = bn_forward(x, mean, var, groups=groups, omit_var=omit_var)
    fm = cache["mu"].copy() if mean == "detach" else None
    fv = cache["v"].copy() if var == "detach" else None
    numeric = numerical_gradient(lambda: float((dy * bn_forward(
        x, mean, var, fixed_mean=fm, fixed_var=fv, groups=groups, omit_var=omit_var)[0]).sum()),
        [x])
    direct, mpart, vpart = bn_backward_parts(dy, cache)
    assert gradient_error([direct + mpart + vpart], numeric) < 1e-7
    if var == "normal":
        assert gradient_error([direct + mpart], numeric) > 1e-3           # negative control
    if mean == "omit" and var != "omit" and omit_var == "centred":      # what it computes
        x3 = x.reshape(groups, -1, x.shape[1])
        want = x3 / np.sqrt(x3.var(axis=1, ddof=1, keepdims=True) + 1e-5)
        np.testing.assert_allclose(y, want.reshape(x.shape), atol=1e-12)
    if groups == 2 and mean == "normal" and var == "normal":             # each view alone
        for half in (slice(0, 4), slice(4, 8)):
            np.testing.assert_allclose(y[half], bn_forward(x[half])[0], atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="mean must be one of"):
        BatchNorm(3, mean="center")
    with pytest.raises(ValueError, match="var must be one of"):
        bn_forward(np.zeros((2, 2)), var="none")
    with pytest.raises(ValueError, match="n must be"):
        BatchNorm(0)
    with pytest.raises(ValueError, match="eps must be"):
        BatchNorm(2, eps=0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, n\)"):
        bn_forward(np.zeros(3))
