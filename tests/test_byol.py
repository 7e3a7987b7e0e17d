"""BYOL: finite differences for the loss, the predictor and the whole network in every BN mode
(detached statistics frozen at the evaluation point) with negative controls; the linear
network's gradient equals the ODE's right-hand side on a finite population (exact); Euler and
SGD against the integrated ODE; DirectPred's eigenvalues and eigenvectors; EMA; predictor
re-initialisation; collapse end to end; HLTM latent recovery; CLI; bad input."""
import types

import numpy as np
import pytest

from minissl import byol as BY
from minissl.cli import commands as cli
from minissl import linear_byol as LB
from minissl.byol import BYOL, BYOLConfig, directpred_weights
from minissl.experiments import make_source
from minissl.gradcheck import check_gradients, gradient_error, numerical_gradient
from minissl.layers import Linear
from minissl.losses import byol_loss
from minissl.metrics import eigen_alignment, normalized_correlation


# ----------------------------------------------------------------------------- loss
@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "l2"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["one", "sym"])
def test_loss_gradient_matches_finite_differences(normalize, symmetric):
    g = np.random.default_rng(2 * normalize + symmetric)
    p, zt = g.normal(size=(6, 4)), g.normal(size=(6, 4))
    L, dp = byol_loss(p, zt, normalize, symmetric)
    check_gradients(lambda: byol_loss(p, zt, normalize, symmetric)[0], [p], [dp], tol=1e-7)
    # the value: mean over compared rows of ½||n(p_i) - n(zt_partner)||²
    n = (lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)) if normalize else (lambda a: a)
    li = 0.5 * ((n(p) - n(np.roll(zt, 3, axis=0))) ** 2).sum(1)
    assert L == pytest.approx(li.mean() if symmetric else li[:3].mean(), abs=1e-12)
    if normalize:   # ½||a - b||² = 1 - cos for unit vectors
        cos = (n(p) * n(np.roll(zt, 3, axis=0))).sum(1)
        np.testing.assert_allclose(li, 1 - cos, atol=1e-12)


@pytest.mark.parametrize("symmetric", [False, True], ids=["one", "sym"])
def test_loss_of_a_zero_row_is_one_minus_cos_with_cos_zero(symmetric):
    """With normalisation l_i = 1 - cos, cos := 0 when the prediction or the target is a zero
    vector (the paper authors' value); the gradient is that of 1 - cos (zero on such rows)."""
    g = np.random.default_rng(7)
    p, zt = g.normal(size=(6, 4)), g.normal(size=(6, 4))
    p[0] = 0.0                       # zero prediction
    zt[(1 + 3) % 6] = 0.0            # row 1's target (its partner) is zero
    p[2], zt[(2 + 3) % 6] = 0.0, 0.0  # both
    L, dp = byol_loss(p, zt, True, symmetric)
    t = np.roll(zt, 3, axis=0)
    norm = np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1)
    cos = np.where(norm > 0, (p * t).sum(1) / np.where(norm > 0, norm, 1), 0.0)
    rows = slice(None) if symmetric else slice(0, 3)
    assert cos[0] == cos[1] == cos[2] == 0.0
    assert L == pytest.approx((1 - cos)[rows].mean(), abs=1e-14)
    assert byol_loss(np.zeros((2, 3)), np.ones((2, 3)))[0] == 1.0
    assert byol_loss(np.ones((2, 3)), np.zeros((2, 3)))[0] == 1.0
    # the gradient of 1 - cos: -(u_t - u_p cos) / ||p|| per row, 0 on the zero rows of p
    pn, tn = np.linalg.norm(p, axis=1, keepdims=True), np.linalg.norm(t, axis=1, keepdims=True)
    up, ut = p / np.where(pn > 0, pn, 1), t / np.where(tn > 0, tn, 1)
    want = -(ut - up * cos[:, None]) / np.where(pn > 0, pn, np.inf) / (6 if symmetric else 3)
    want[3:] *= symmetric
    np.testing.assert_allclose(dp, want, atol=1e-14)
    assert not dp[[0, 2]].any()                      # a zero prediction gets no gradient
    q = p.copy()
    q[0], q[2] = g.normal(size=4), g.normal(size=4)    # FD away from p = 0 (cos not smooth)
    L, dq = byol_loss(q, zt, True, symmetric)
    check_gradients(lambda: byol_loss(q, zt, True, symmetric)[0], [q], [dq], tol=1e-7)
    assert gradient_error([dq * 1.01], numerical_gradient(
        lambda: byol_loss(q, zt, True, symmetric)[0], [q])) > 1e-4      # negative control


# ----------------------------------------------------------------------------- the network
CASES = [  # (predictor, bn_mean, bn_var, bn_affine, normalize)
    ("none", "omit", "omit", False, False),
    ("linear", "omit", "omit", False, True),
    ("linear", "normal", "normal", False, True),
    ("linear", "normal", "omit", True, False),
    ("linear", "detach", "normal", False, True),
    ("linear", "normal", "detach", True, True),
    ("mlp", "normal", "normal", True, True),
    ("mlp", "detach", "detach", False, True),
    ("mlp", "omit", "normal", False, False),
]


def _small_model(predictor, mean, var, affine, normalize, seed=0, hidden=(6, 5), **extra):
    cfg = BYOLConfig(hidden=hidden, out_dim=4, predictor=predictor, predictor_hidden=5,
                     bn_mean=mean, bn_var=var, bn_affine=affine, normalize=normalize,
                     ema=0.5, seed=seed, **extra)
    m = BYOL(3, cfg)
    g = np.random.default_rng(seed + 100)
    for p in m.parameters():                # move BN affine away from (1, 0); a distinct target
        p += 0.3 * g.normal(size=p.shape)
    for p in m.target.parameters():
        p += 0.3 * g.normal(size=p.shape)
    return m, g.normal(size=(5, 3)), g.normal(size=(5, 3))


def _all_bns(m):
    return m.online.batchnorms() + (m.predictor.batchnorms() if m.predictor else [])


REFERENCE_BN = dict(bn_stats="per_view", bn_omit_var="centred")


@pytest.mark.parametrize("extra", [{}, REFERENCE_BN], ids=["joint", "reference-bn"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_network_gradient_matches_finite_differences(case, extra):
    m, x1, x2 = _small_model(*case, **extra)
    m.loss_and_grads(x1, x2)
    for bn in _all_bns(m):       # detached statistics: constants at the evaluation point
        if bn.mean == "detach" or bn.var == "detach":
            bn.freeze()
    for bn in _all_bns(m):
        if bn.fixed_stats is not None:
            mu, v = bn.fixed_stats
            bn.fixed_stats = (mu if bn.mean == "detach" else None,
                              v if bn.var == "detach" else None)
    L, grads, _ = m.loss_and_grads(x1, x2)
    target_before = [p.copy() for p in m.target.parameters()]
    err = check_gradients(lambda: m.loss_and_grads(x1, x2)[0], m.parameters(), grads, tol=1e-6)
    assert err < 1e-6
    for a, b in zip(target_before, m.target.parameters()):
        np.testing.assert_array_equal(a, b)       # stop-gradient: the target never moves


def test_gradient_checker_rejects_wrong_bn_and_predictor_gradients():
    """Negative controls: detached gradients are not the gradients of the un-frozen network,
    and the online gradient without the predictor's chain is wrong."""
    m, x1, x2 = _small_model("mlp", "normal", "normal", False, True)
    _, grads, _ = m.loss_and_grads(x1, x2)
    numeric = numerical_gradient(lambda: m.loss_and_grads(x1, x2)[0], m.parameters())
    assert gradient_error(grads, numeric) < 1e-6
    d, _, _ = _small_model("mlp", "detach", "normal", False, True)
    _, grads_d, _ = d.loss_and_grads(x1, x2)
    assert gradient_error(grads_d, numeric) > 1e-3
    n_on = len(m.online.parameters())
    m.online.backward(byol_loss(m.predictor.forward(m.online.forward(
        np.concatenate([x1, x2]))), m.target.forward(np.concatenate([x1, x2])))[1],
        input_grad=True)
    assert m.online.grad_input.shape == (10, 3)
    assert gradient_error(m.online.grads(), numeric[:n_on]) > 1e-2


def test_bn_mean_path_split_on_the_network():
    """The first layer's gradient = direct + mean + var path; the mean path equals its
    pairwise (covariance) form -(1/N) sum_ij delta_i f_j^T; and it matches FD."""
    m, x1, x2 = _small_model("linear", "normal", "normal", False, True)
    parts = m.implicit_contrastive(x1, x2)
    _, grads, _ = m.loss_and_grads(x1, x2)
    np.testing.assert_allclose(parts["total"], grads[0], atol=1e-12)
    np.testing.assert_allclose(parts["mean_same"] + parts["mean_cross"], parts["mean"], atol=1e-12)
    assert np.linalg.norm(parts["mean"]) > 1e-3
    m2, _, _ = _small_model("linear", "omit", "omit", False, True)
    with pytest.raises(ValueError, match="BatchNorm after the layer"):
        m2.implicit_contrastive(x1, x2)


def _snapshot(obj, path="model", out=None, seen=None):
    """Every array and plain value reachable from ``obj`` (attributes, lists, dicts: weights,
    caches, gradients, BN statistics, F, optimiser state, generators), copied, by path."""
    out, seen = ({}, set()) if out is None else (out, seen)
    if id(obj) in seen:
        return out
    if isinstance(obj, np.ndarray):
        seen.add(id(obj))
        out[path] = obj.copy()
    elif isinstance(obj, np.random.Generator):
        out[path] = repr(obj.bit_generator.state)
    elif isinstance(obj, (list, tuple, dict)):
        seen.add(id(obj))
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for k, v in items:
            _snapshot(v, f"{path}[{k!r}]", out, seen)
    elif obj is None or isinstance(obj, (bool, int, float, str, np.generic)):
        out[path] = obj
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.ModuleType,
                                                           types.FunctionType, types.MethodType)):
        seen.add(id(obj))
        for k, v in vars(obj).items():
            if not k.startswith("__"):
                _snapshot(v, f"{path}.{k}", out, seen)
    return out


def _assert_same(before, after):
    assert before.keys() == after.keys(), set(before) ^ set(after)
    changed = [k for k in before if not np.array_equal(before[k], after[k])
               and not (isinstance(before[k], float) and np.isnan(before[k]))]
    assert not changed, changed


EVAL_CASES = [dict(predictor="linear", directpred=True),                   # W_p set before
              dict(predictor="linear", directpred=True, directpred_set="after",
                   directpred_init="first", bn_stats="per_view"),
              dict(predictor="mlp", bn_affine=True, momentum=0.9),
              dict(predictor="linear", bn_mean="detach", bn_affine=True)]


@pytest.mark.parametrize("extra", EVAL_CASES, ids=lambda e: "-".join(map(str, e.values())))
def test_evaluation_has_no_side_effect(extra):
    """``diagnostics`` and ``implicit_contrastive`` change nothing in the model (F, W_p, BN,
    caches, optimiser, target): training with or without them gives the same bits."""
    cfg = BYOLConfig(hidden=(6, 5), out_dim=4, predictor_hidden=5, ema=0.5, lr=0.05,
                     **extra)
    g = np.random.default_rng(3)
    train = [(g.normal(size=(4, 3)), g.normal(size=(4, 3))) for _ in range(3)]
    ev1, ev2 = g.normal(size=(6, 3)) + 1.0, g.normal(size=(6, 3))
    watched, plain = BYOL(3, cfg), BYOL(3, cfg)
    for x1, x2 in train:
        assert watched.step(x1, x2) == plain.step(x1, x2)
        before = _snapshot(watched)
        d = watched.diagnostics(ev1, ev2)
        _assert_same(before, _snapshot(watched))
        if watched.online.batchnorms():
            parts = watched.implicit_contrastive(ev1, ev2)
            _assert_same(before, _snapshot(watched))
            assert np.linalg.norm(parts["total"]) > 0
        _assert_same(_snapshot(d), _snapshot(watched.diagnostics(ev1, ev2)))   # repeatable
    _assert_same(_snapshot(plain), _snapshot(watched))


# ----------------------------------------------------------------------------- EMA, reinit
@pytest.mark.parametrize("ema", [0.0, 0.7])
def test_ema_target(ema):
    m, x1, x2 = _small_model("linear", "normal", "normal", True, True)
    m.cfg.ema = ema
    before = [p.copy() for p in m.target.parameters()]
    m.step(x1, x2)
    for t, b, o in zip(m.target.parameters(), before, m.online.parameters()):
        np.testing.assert_allclose(t, ema * b + (1 - ema) * o, atol=1e-14)


def test_predictor_reinit_every_n_steps():
    m, x1, x2 = _small_model("linear", "normal", "normal", False, True)
    m.cfg.predictor_reinit_every = 2
    used = []                     # the predictor each of steps 1..5 trained
    for _ in range(5):
        m.step(x1, x2)
        used.append(m.predictor)
    assert used[0] is used[1] and used[1] is not used[2] and used[2] is used[3]
    assert used[3] is not used[4]


# ----------------------------------------------------------------------------- DirectPred
@pytest.mark.parametrize("d", [3, 6])
def test_directpred_eigenvalues_and_eigenvectors(d):
    g = np.random.default_rng(d)
    U, _ = np.linalg.qr(g.normal(size=(d, d)))
    s = np.linspace(4.0, 0.25, d)
    F = (U * s) @ U.T
    Wp, p, V = directpred_weights(F, eps=0.01)
    np.testing.assert_allclose(Wp, Wp.T, atol=1e-14)
    for j in range(d):
        np.testing.assert_allclose(Wp @ U[:, j], (np.sqrt(s[j] / s[0]) + 0.01) * U[:, j],
                                   atol=1e-12)
    al = eigen_alignment(F, Wp)
    assert al["offdiag"] < 1e-12 and np.all(al["cosines"] > 1 - 1e-12)
    np.testing.assert_allclose(al["p"], al["p_directpred"] + 0.01, atol=1e-12)
    rand = eigen_alignment(F, g.normal(size=(d, d)))        # negative control
    assert rand["offdiag"] > 0.1 and rand["cosines"].min() < 0.9


def test_directpred_in_training():
    src = make_source("toy", seed=0)
    cfg = BYOLConfig(directpred=True, directpred_freq=3, steps=7, lr=0.1, batch_size=32,
                     log_every=7, eval_size=64)
    m, _ = BY.train_byol(src, cfg)
    x1, x2, _ = src.triples(32, np.random.default_rng(9))
    F_before = m.F.copy()
    m.step(x1, x2)                                            # step index 7: F updated only
    z = m._last[0]
    np.testing.assert_allclose(m.F, 0.3 * F_before + 0.7 * z.T @ z / len(z), atol=1e-12)
    Wp_before = m.Wp.copy()
    m.step(x1, x2)                                            # step index 8: not a multiple of 3
    np.testing.assert_array_equal(m.Wp, Wp_before)
    m.step(x1, x2)                                            # step index 9: set from F
    np.testing.assert_allclose(m.Wp, directpred_weights(m.F, 0.01)[0], atol=1e-12)
    with pytest.raises(ValueError, match="directpred needs predictor='linear'"):
        BYOLConfig(directpred=True, predictor="mlp").validate()


def test_reference_preset_and_its_options():
    """The paper authors' choices (docs/byol.md): BN statistics per view, centred unbiased
    variance without centring, DirectPred's F from the first batch with a 1e-4 floor and W_p
    set after the update, the predictor's weight decay as in its optimiser."""
    cfg = BYOLConfig.from_preset("reference", directpred=True, predictor="linear",
                                 weight_decay=0.1, predictor_lr=10.0, steps=3, batch_size=8,
                                 hidden=(6,), out_dim=4)
    assert (cfg.bn_stats, cfg.bn_omit_var, cfg.directpred_init, cfg.directpred_floor,
            cfg.directpred_set, cfg.predictor_wd) == \
        ("per_view", "centred", "first", 1e-4, "after", "optimizer")
    m = BYOL(3, cfg)
    assert all(bn.groups == 2 for bn in m.online.batchnorms())
    assert m.opt_pred.wd == 0.1 and BYOL(3, cfg, predictor_wd="ode").opt_pred.wd == 0.01
    g = np.random.default_rng(0)
    x1, x2 = g.normal(size=(8, 3)), g.normal(size=(8, 3))
    Wp0 = m.Wp.copy()
    m.step(x1, x2)
    z = m._last[0]
    np.testing.assert_allclose(m.F, z.T @ z / len(z), atol=1e-14)    # F starts at batch 1
    np.testing.assert_allclose(m.Wp, directpred_weights(m.F, 0.01, 1e-4)[0], atol=1e-14)
    assert not np.allclose(Wp0, m.Wp)                                # set after the update
    Wp, p, _ = directpred_weights(np.diag([4.0, 1e-12, 0.0]), eps=0.0, floor=1e-4)
    np.testing.assert_allclose(np.sort(p), [1e-4, 1e-4, 1.0], atol=1e-9)
    with pytest.raises(ValueError, match="preset must be one of"):
        BYOLConfig.from_preset("luck")


# ----------------------------------------------------------------------------- linear BYOL
def test_linear_network_gradient_equals_ode_rhs_on_a_finite_population():
    """On N samples x M views with all ordered view pairs enumerated, E[x1 x1^T] = X + X' and
    E[x1 x2^T] = X exactly, so BYOL's hand-written gradient equals expected_grads to ~1e-12."""
    g = np.random.default_rng(0)
    n, d, N, M = 5, 3, 4, 3
    views = g.normal(size=(N, 1, n)) + 0.5 * g.normal(size=(N, M, n))
    xbar = views.mean(1)
    X = xbar.T @ xbar / N
    C = views - xbar[:, None]
    Xp = np.einsum("nma,nmb->ab", C, C) / (N * M)
    a, b = np.meshgrid(np.arange(M), np.arange(M), indexing="ij")
    x1 = views[:, a.ravel()].reshape(-1, n)
    x2 = views[:, b.ravel()].reshape(-1, n)
    for symmetric in (False, True):
        cfg = BYOLConfig(hidden=(), out_dim=d, predictor="linear", normalize=False,
                         symmetric=symmetric, seed=1)
        m = BYOL(n, cfg)
        m.target.layers[0].W[...] = g.normal(size=(d, n))
        _, grads, _ = m.loss_and_grads(x1, x2)
        gW, gWp = LB.expected_grads(m.online.layers[0].W, m.Wp, m.target.layers[0].W, X, Xp)
        np.testing.assert_allclose(grads[0], gW, atol=1e-12)
        np.testing.assert_allclose(grads[1], gWp, atol=1e-12)
        L = LB.expected_loss(m.online.layers[0].W, m.Wp, m.target.layers[0].W, X, Xp)
        assert m.loss_and_grads(x1, x2)[0] == pytest.approx(L, abs=1e-12)
    check_gradients(lambda: LB.expected_loss(m.online.layers[0].W, m.Wp, m.target.layers[0].W,
                                             X, Xp), [m.online.layers[0].W, m.Wp], [gW, gWp])


@pytest.mark.parametrize("alpha_p,eta", [(1.0, 0.0), (3.0, 0.05), (0.3, 0.2)])
def test_euler_converges_to_the_integrated_ode(alpha_p, eta):
    """Euler with step dt (= BYOL's update on the expected loss) is within 2e-2 (relative, max
    entry) of the DOP853 solution on [0, 10] at dt = 0.01, and the error halves with dt."""
    W0, Wp0, Wa0, X, Xp = LB.default_problem()
    T = 10.0
    t, Ws, Wps, Was = LB.integrate(W0, Wp0, Wa0, X, Xp, T, alpha_p, 1.0, eta,
                                   t_eval=np.linspace(0, T, 6))
    errs = []
    for dt in (0.01, 0.005):
        te, We, Wpe, Wae = LB.euler(W0, Wp0, Wa0, X, Xp, T, dt, alpha_p, 1.0, eta,
                                    record_every=int(round(2 / dt)))
        np.testing.assert_allclose(te, t, atol=1e-9)
        errs.append(max(np.abs(A - B).max() / np.abs(B).max()
                        for A, B in ((We, Ws), (Wpe, Wps), (Wae, Was))))
    assert errs[0] < 2e-2
    assert 1.8 < errs[0] / errs[1] < 2.2          # first-order convergence


def test_sgd_follows_the_ode():
    """BYOL's SGD on sampled Gaussian views (lr 0.01, batch 512) stays within 10% (relative,
    Frobenius) of the ODE on [0, 5]."""
    W0, Wp0, Wa0, X, Xp = LB.default_problem()
    t, Ws, Wps, _ = LB.integrate(W0, Wp0, Wa0, X, Xp, 5.0, 1.0, 1.0, 0.01,
                                 t_eval=np.linspace(0, 5, 6))
    ts, Wss, Wpss, _ = LB.simulate_sgd(W0, Wp0, Wa0, X, Xp, 5.0, 0.01, 1.0, 1.0, 0.01,
                                       batch_size=512, seed=0, record_every=100)
    np.testing.assert_allclose(ts, t, atol=1e-9)
    for A, B in ((Wss, Ws), (Wpss, Wps)):
        rel = np.linalg.norm(A - B, axis=(1, 2)) / np.linalg.norm(B, axis=(1, 2))
        assert rel.max() < 0.1


def test_regimes_collapse_with_large_weight_decay_and_survive_with_a_fast_predictor():
    G = LB.regime_grid([0.0, 0.5], [0.1, 10.0], T=100.0, dt=0.05)
    assert G[1, 0] < 1e-3 and G[1, 1] < 1e-3            # eta = 0.5: collapse
    assert G[0, 1] > 0.5                                # eta = 0, fast predictor: survives
    G2 = LB.regime_grid([0.2], [0.1, 10.0], T=100.0, dt=0.05)
    assert G2[0, 0] < 1e-3 and G2[0, 1] > 0.2          # eta = 0.2: slow predictor collapses


# ----------------------------------------------------------------------------- end to end
E2E = dict(log_every=300, ema=0.0)         # BYOLConfig's defaults: lr 0.5, batch 64, ...


def test_defaults_are_the_documented_setting_and_seeds_are_derived():
    """One source of BYOL's defaults (docs/byol.md's runs, the CLI, the app); the weights
    come from stream 1 of the seed, not the seed itself (the data source's)."""
    cfg = BYOLConfig()
    assert (cfg.lr, cfg.batch_size, cfg.weight_decay, cfg.steps, cfg.out_dim, cfg.hidden) == \
        (0.5, 64, 0.02, 300, 16, (64,))
    m = BYOL(16, BYOLConfig(seed=3))
    from minissl import backend as B
    from minissl.nets import ReLUNet
    same = ReLUNet([16, 64, 16], batchnorm=m._bn(), seed=B.rng(B.derive_seed(3, 1)))
    other = ReLUNet([16, 64, 16], batchnorm=m._bn(), seed=B.rng(3))
    np.testing.assert_array_equal(m.online.weights[0], same.weights[0])
    assert not np.allclose(m.online.weights[0], other.weights[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_collapse_without_bn_and_predictor_not_with_them(seed):
    src = make_source("toy", seed=seed)
    _, h0 = BY.train_byol(src, BYOLConfig(**E2E, predictor="none", bn_mean="omit",
                                          bn_var="omit", seed=seed))
    _, h1 = BY.train_byol(src, BYOLConfig(**E2E, predictor="linear", bn_mean="normal",
                                          bn_var="normal", seed=seed))
    r0, r1 = h0.records[-1], h1.records[-1]
    assert r0["effective_rank"] < 1.5 and r0["std"] < 0.05          # collapsed
    assert r1["effective_rank"] > 4 and r1["std"] > 0.5             # not collapsed
    assert r1["collapsed_loss"] > 2 * r1["eval_loss"]               # beats a constant
    assert r1["spectrum"][3] > 0.1 * r1["spectrum"][0]
    assert r0["spectrum"][1] < 0.1 * r0["spectrum"][0]


def test_hltm_latent_recovery_and_tree_encoder():
    src = make_source("hltm", seed=1, depth=3)
    cfg = BYOLConfig(out_dim=4, steps=3, batch_size=16, log_every=3, eval_size=32)
    m = BY.byol_for(src, cfg, hid=4)
    assert m.sizes == src.network_sizes(4)
    masks = src.network_masks(4)
    for lin, mask in zip([l for l in m.online.layers if isinstance(l, Linear)], masks):
        np.testing.assert_array_equal(lin.W[mask == 0], 0)
    m, _ = BY.train_byol(src, cfg, model=m)
    corr = normalized_correlation(src, m.online, n=500, rng=0)
    assert set(corr.by_depth) == {1, 2, 3}
    assert np.all((corr.per_latent >= 0) & (corr.per_latent <= 1))


def test_cli_byol_prints_the_table(capsys):
    args = cli.build_parser().parse_args(["byol", "--steps", "5", "--predictors", "linear",
                                          "--bn-means", "normal", "omit", "--emas", "0",
                                          "--eval-size", "64"])
    assert cli.run_byol(args) == 0
    out = capsys.readouterr().out
    assert out.count("| linear |") == 2 and "eff. rank" in out


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("field,value,match", [
    ("predictor", "deep", "predictor must be one of"),
    ("bn_mean", "centre", "bn_mean must be one of"),
    ("bn_var", None, "bn_var must be one of"),
    ("ema", 1.0, r"ema must be a finite number in \[0, 1\), got 1\.0"),
    ("lr", 0, "lr must be a finite number > 0"),
    ("predictor_lr", -1, "predictor_lr must be"),
    ("weight_decay", -0.1, "weight_decay must be"),
    ("batch_size", 1, "batch_size must be an integer >= 2"),
    ("directpred_rho", 1.0, r"directpred_rho must be a finite number in \[0, 1\)"),
    ("hidden", (4, 0), r"hidden\[1\] must be an integer >= 1"),
])
def test_bad_config(field, value, match):
    with pytest.raises(ValueError, match=match):
        BYOLConfig(**{field: value}).validate()


def test_bad_input_elsewhere():
    with pytest.raises(ValueError, match="data must be one of"):
        make_source("mnist")
    with pytest.raises(ValueError, match="p and zt must have the same shape"):
        byol_loss(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="positive eigenvalue"):
        directpred_weights(np.zeros((3, 3)))
    W0, Wp0, Wa0, X, Xp = LB.default_problem()
    with pytest.raises(ValueError, match="Xp must be positive semi-definite"):
        LB.integrate(W0, Wp0, Wa0, X, -Xp, 1.0)
    with pytest.raises(ValueError, match="alpha_p must be a finite number > 0"):
        LB.euler(W0, Wp0, Wa0, X, Xp, 1.0, 0.1, alpha_p=0)
    with pytest.raises(ValueError, match="lr \\* beta must be in"):
        LB.simulate_sgd(W0, Wp0, Wa0, X, Xp, 1.0, lr=2.0)


def test_cli_byol_bad_flags_are_usage_errors(capsys):
    from minissl.cli import main
    with pytest.raises(SystemExit) as e:
        main(["byol", "--emas", "2"])
    assert e.value.code == 2 and "--emas" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["byol", "--lr", "0"])
    assert "lr must be a finite number > 0" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["numba", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_byol_runs_on_every_backend_with_the_same_numbers(backend):
    """BYOL is built from the shared layers, so it runs on each backend: the tree encoder's
    masked layers in the compiled kernels ("numba") or on the GPU ("cupy")."""
    from minissl.backend import cupy_available, to_numpy
    if backend == "cupy" and not cupy_available():
        pytest.skip("needs CuPy and an NVIDIA GPU")
    src = make_source("hltm", seed=1, depth=3)
    cfg = BYOLConfig(out_dim=4, steps=4, batch_size=16, log_every=2, eval_size=32)
    _, ha = BY.train_byol(src, cfg, model=BY.byol_for(src, cfg, hid=4))
    m = BY.byol_for(src, cfg, hid=4, backend=backend)
    assert all(lin.plan is not None for lin in m.online.linears()) or backend != "numba"
    m, hb = BY.train_byol(src, cfg, model=m)
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-10)
    np.testing.assert_allclose(hb["effective_rank"], ha["effective_rank"], rtol=1e-8)
    assert to_numpy(m.online.weights[0]).shape == tuple(m.online.weights[0].shape)
