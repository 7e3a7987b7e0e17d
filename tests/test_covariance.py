"""The covariance operator (docs/design.md, docs/theory.md): connection, exact finite-population
theorem, weighted form, matrix-free update/spectrum, pair weights, linear nets, training by OP."""

import numpy as np
import pytest

import minissl
from minissl import covariance as C
from minissl.data import GaussianClusters
from minissl.losses import chain_triples, contrastive_loss
from minissl.nets import ReLUNet
from minissl.train import TrainConfig, train

NETS = {                                  # name -> sizes
    "2layer": [5, 7, 3],
    "3layer": [6, 8, 5, 3],
    "4layer": [4, 6, 6, 5, 2],
}


def make_net(name, seed=0, masked=False):
    sizes = NETS[name]
    masks = None
    if masked:
        g = np.random.default_rng(100 + seed)
        masks = [(g.random((sizes[l + 1], sizes[l])) < 0.6).astype(float)
                 for l in range(len(sizes) - 1)]
        masks[-1] = None                  # dense top layer, masked lower layers
    return ReLUNet(sizes, masks=masks, seed=seed)


def make_views(net, N, M, seed=0, noise=0.5):
    g = np.random.default_rng(seed)
    c = g.standard_normal((N, 1, net.sizes[0]))
    return c + noise * g.standard_normal((N, M, net.sizes[0]))       # (N, M, n_0)


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300))


# ----------------------------------------------------------------------------- connection K
@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_reversibility_every_layer(name, masked, seed):
    net = make_net(name, seed, masked)
    x = np.random.default_rng(seed).standard_normal((9, net.sizes[0]))
    out = net.forward(x)
    for l in range(net.depth):
        K = minissl.connection(net, x, l)                             # (N, P, n_L)
        assert K.shape == (9, net.weights[l].size, net.sizes[-1])
        f = np.einsum("npk,p->nk", K, net.weights[l].ravel())
        assert rel(f, out) < 1e-12


def test_reversibility_negative_control():
    """A column-major vec (the wrong convention) does not reproduce f_L."""
    net = make_net("3layer", 0)
    x = np.random.default_rng(0).standard_normal((9, net.sizes[0]))
    K = minissl.connection(net, x, 1)
    f_wrong = np.einsum("npk,p->nk", K, net.weights[1].T.ravel())
    assert rel(f_wrong, net.forward(x)) > 1e-2


@pytest.mark.parametrize("name", ["3layer", "4layer"])
def test_connection_is_the_derivative(name):
    """K[n, i*n_{l-1}+j, :] = d f_L(x_n) / d W_l[i, j], by central differences (float64)."""
    net = make_net(name, 3)
    x = np.random.default_rng(3).standard_normal((5, net.sizes[0]))
    h = 1e-6
    for l in range(net.depth):
        K = minissl.connection(net, x, l)
        n_prev = net.sizes[l]
        for i, j in [(0, 0), (net.sizes[l + 1] - 1, n_prev - 1), (1, n_prev // 2)]:
            w0 = net.weights[l][i, j]
            net.weights[l][i, j] = w0 + h
            fp = net.forward(x)
            net.weights[l][i, j] = w0 - h
            fm = net.forward(x)
            net.weights[l][i, j] = w0
            fd = (fp - fm) / (2 * h)
            np.testing.assert_allclose(K[:, i * n_prev + j, :], fd, rtol=1e-7, atol=1e-9)


# ----------------------------------------------------------------------------- the theorem
def enumerate_population(views, own_negative=True):
    """Every (anchor sample i, anchor view a, positive view b, negative sample j, negative
    view c); ``own_negative=False`` (a deliberate error) drops the j == i negatives."""
    N, M, _ = views.shape
    I, A, Bv, J, Cv = (g.ravel() for g in np.indices((N, M, M, N, M)))
    if not own_negative:
        keep = I != J
        I, A, Bv, J, Cv = I[keep], A[keep], Bv[keep], J[keep], Cv[keep]
    return (views[I, A], views[I, Bv], views[J, Cv]), (I, J)


def mean_gradient(net, triple, loss="simple", tau=1.0, margin=0.0, weights=None):
    """Mean gradient over the enumerated triples: the real ``contrastive_loss`` (or, with
    ``weights`` w_t, the weighted simple loss ``mean_t w_t (r_+ - r_-)``) and ``net.backward``."""
    x, xp_, xn = triple
    T = x.shape[0]
    Z = net.forward(np.concatenate([x, xp_, xn]))
    z, zp, zn = Z[:T], Z[T:2 * T], Z[2 * T:]
    if weights is None:
        _, (dz, dzp, dzn) = contrastive_loss(z, zp, zn, loss, tau, margin)
    else:
        dz, dzp, dzn = chain_triples(z, zp, zn[:, None, :], weights / T, -weights[:, None] / T)
        dzn = dzn[:, 0]
    return net.backward(np.concatenate([dz, dzp, dzn]))


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("N,M", [(4, 3), (5, 2)])
def test_theorem_exact_on_finite_population(name, masked, N, M):
    """mean over all combinations of grad L_simp = -OP_l vec(W_l), every layer (float64)."""
    net = make_net(name, N + M, masked)
    views = make_views(net, N, M, seed=N * M)
    grads = mean_gradient(net, enumerate_population(views)[0])
    for l in range(net.depth):
        OP = minissl.covariance_operator(net, views, l)
        target = -(OP @ net.weights[l].ravel()).reshape(net.weights[l].shape)
        assert np.abs(grads[l]).max() > 1e-6                          # not trivially zero
        assert rel(grads[l], target) < 1e-9
        assert rel(grads[l], -minissl.covariance_update(net, views, l)) < 1e-9


@pytest.mark.parametrize("wrong", ["no_own_negative", "sample_covariance", "no_view_average"])
def test_theorem_negative_controls(wrong):
    """Each plausible mistake in the normalisation breaks the identity by far more than 1e-9."""
    net = make_net("3layer", 7)
    N, M = 4, 3
    views = make_views(net, N, M, seed=7)
    triple = enumerate_population(views, own_negative=(wrong != "no_own_negative"))[0]
    grads = mean_gradient(net, triple)
    errs = []
    for l in range(net.depth):
        if wrong == "no_view_average":        # covariance of K over all views, not of Kbar
            K = minissl.connection(net, views.reshape(N * M, -1), l)
            Kc = K - K.mean(axis=0)
            OP = 2.0 / (N * M) * np.einsum("npk,nqk->pq", Kc, Kc)
        else:
            OP = minissl.covariance_operator(net, views, l)
            if wrong == "sample_covariance":
                OP = OP * N / (N - 1)
        errs.append(rel(grads[l], -(OP @ net.weights[l].ravel()).reshape(grads[l].shape)))
    assert min(errs) > 1e-3


@pytest.mark.parametrize("name", ["2layer", "4layer"])
def test_weighted_theorem_exact(name):
    """Weighted simple loss mean_t xi[i,j] (r_+ - r_-) over the population: grad = -OP^xi vec W."""
    net = make_net(name, 11)
    N, M = 4, 2
    views = make_views(net, N, M, seed=11)
    g = np.random.default_rng(11)
    xi = g.uniform(0.2, 2.0, (N, N))
    xi = 0.5 * (xi + xi.T)
    triple, (I, J) = enumerate_population(views)
    grads = mean_gradient(net, triple, weights=xi[I, J])
    for l in range(net.depth):
        OP = minissl.covariance_operator(net, views, l, xi=xi)
        assert rel(grads[l], -(OP @ net.weights[l].ravel()).reshape(grads[l].shape)) < 1e-9
        assert rel(grads[l], -minissl.covariance_update(net, views, l, xi=xi)) < 1e-9


# ----------------------------------------------------------------------------- the weighted form
@pytest.mark.parametrize("name", ["3layer", "4layer"])
def test_weighted_operator_against_double_sum(name):
    net = make_net(name, 5)
    N, M = 5, 3
    views = make_views(net, N, M, seed=5)
    xi = np.random.default_rng(5).uniform(0, 1, (N, N))
    xi = xi + xi.T
    for l in range(net.depth):
        Kb = C.kbar(net, views, l)                                    # (N, P, n_L)
        direct = np.zeros((Kb.shape[1],) * 2)
        for i in range(N):
            for j in range(N):
                d = Kb[i] - Kb[j]
                direct += xi[i, j] * d @ d.T
        direct /= N**2
        assert rel(minissl.covariance_operator(net, views, l, xi=xi), direct) < 1e-12
        # xi == 1 gives 2 V[Kbar] (population covariance, contracted over k)
        Kc = Kb - Kb.mean(axis=0)
        twoV = 2.0 / N * np.einsum("npk,nqk->pq", Kc, Kc)
        OP1 = minissl.covariance_operator(net, views, l, xi=np.ones((N, N)))
        assert rel(OP1, twoV) < 1e-12
        assert rel(minissl.covariance_operator(net, views, l), twoV) < 1e-12
        assert np.linalg.eigvalsh(OP1).min() > -1e-12 * np.abs(OP1).max()   # PSD


# ----------------------------------------------------------------------------- matrix-free
@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_matrix_free_update_matches_explicit(name, masked, weighted):
    net = make_net(name, 2, masked)
    N, M = 6, 3
    views = make_views(net, N, M, seed=2)
    xi = None
    if weighted:
        xi = minissl.covariance_pair_weights(net, views, "infonce", tau=0.5)
    for l in range(net.depth):
        OP = minissl.covariance_operator(net, views, l, xi=xi)
        dW = minissl.covariance_update(net, views, l, xi=xi)
        assert dW.shape == net.weights[l].shape
        assert rel(dW.ravel(), OP @ net.weights[l].ravel()) < 1e-12
        if masked and net.masks[l] is not None:
            assert np.all(dW[net.masks[l] == 0] == 0)
        V = np.random.default_rng(l).standard_normal(net.weights[l].size)
        assert rel(C.covariance_matvec(net, views, l, xi=xi)(V), OP @ V) < 1e-12


@pytest.mark.parametrize("name,layer", [("3layer", 0), ("3layer", 1), ("4layer", 2)])
@pytest.mark.parametrize("masked", [False, True])
def test_lanczos_spectrum_matches_dense(name, layer, masked):
    net = make_net(name, 4, masked)
    views = make_views(net, 8, 3, seed=4)
    k = 3
    vals, vecs = minissl.covariance_spectrum(net, views, layer, k=k, method="lanczos")
    OP = minissl.covariance_operator(net, views, layer)
    w, U = np.linalg.eigh(OP)
    w, U = w[::-1][:k], U[:, ::-1][:, :k]
    assert vecs.shape == (net.weights[layer].size, k)
    assert np.all(np.diff(vals) <= 0)
    np.testing.assert_allclose(vals, w, rtol=1e-9, atol=1e-12 * w[0])
    np.testing.assert_allclose(OP @ vecs, vecs * vals, atol=1e-9 * w[0])
    assert np.min(np.abs(np.sum(vecs * U, axis=0))) > 1 - 1e-8        # same eigenvectors
    dv, dU = minissl.covariance_spectrum(net, views, layer, k=k, method="dense")
    np.testing.assert_allclose(dv, vals, rtol=1e-9)
    np.testing.assert_allclose(dU, vecs, atol=1e-6)                     # same signs


def test_spectrum_auto_large_layer_is_matrix_free():
    """A layer whose OP would take 2 GB (P = 16384) still gives its top eigenpairs."""
    net = ReLUNet([16, 128, 128, 4], seed=0)
    views = make_views(net, 16, 2, seed=0)
    vals, vecs = minissl.covariance_spectrum(net, views, 1, k=2)
    matvec = C.covariance_matvec(net, views, 1)
    for i in range(2):
        r = matvec(vecs[:, i]) - vals[i] * vecs[:, i]
        assert np.linalg.norm(r) < 1e-8 * vals[0]
    # Rayleigh quotient of random vectors stays below the top eigenvalue
    v = np.random.default_rng(0).standard_normal(vecs.shape[0])
    assert v @ matvec(v) / (v @ v) < vals[0]


# ----------------------------------------------------------------------------- pair weights
def test_pair_weights_formulas():
    net = make_net("3layer", 6)
    N, M, tau, r0 = 5, 3, 0.7, 0.2
    views = make_views(net, N, M, seed=6)
    fbar = net.forward(views.reshape(N * M, -1)).reshape(N, M, -1).mean(1)
    R = 0.5 * ((fbar[:, None] - fbar[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(minissl.covariance_pair_weights(net, views, "simple"),
                                  np.ones((N, N)))
    st = minissl.covariance_pair_weights(net, views, "soft_triplet", tau=tau, margin=r0)
    np.testing.assert_allclose(st, 1 / (1 + np.exp(-(r0 - R) / tau)), rtol=1e-13)
    nce = minissl.covariance_pair_weights(net, views, "infonce", tau=tau)
    p = np.exp(-R / tau) / (1 + np.exp(-R / tau).sum(1, keepdims=True))
    np.testing.assert_allclose(nce, N * 0.5 * (p + p.T), rtol=1e-13)
    for xi in (st, nce):
        np.testing.assert_array_equal(xi, xi.T)


@pytest.mark.parametrize("loss", ["soft_triplet", "infonce"])
@pytest.mark.parametrize("name", ["2layer", "4layer"])
def test_pair_weights_exact_without_augmentation(loss, name):
    """With no augmentation (identical views, r_+ = 0), the real loss over the population
    (every anchor against every sample, itself included) has mean gradient -OP^xi vec W."""
    net = make_net(name, 9)
    N, tau, r0 = 6, 0.8, 0.3
    x = make_views(net, N, 1, seed=9)                                 # (N, 1, n_0)
    xi = minissl.covariance_pair_weights(net, x, loss, tau=tau, margin=r0)
    if loss == "infonce":                 # anchor n, positive = itself, negatives = all N
        z = net.forward(x[:, 0])
        _, (dz, dzp, dzn) = contrastive_loss(z, z, np.broadcast_to(z, (N,) + z.shape), loss, tau)
        dZ = dz + dzp + dzn.sum(axis=0)
        net.forward(x[:, 0])
        grads = net.backward(dZ)
    else:
        triple, _ = enumerate_population(x)
        grads = mean_gradient(net, triple, loss, tau, r0)
    for l in range(net.depth):
        assert rel(grads[l], -minissl.covariance_update(net, x, l, xi=xi)) < 1e-9


@pytest.mark.parametrize("loss", ["soft_triplet", "infonce"])
def test_pair_weights_approximation_with_augmentation(loss):
    """With augmentation the large-batch weights are an approximation: the population gradient
    and the weighted covariance step still point the same way (cos > 0.95 at noise 0.1)."""
    net = make_net("3layer", 12)
    N, M = 6, 2
    views = make_views(net, N, M, seed=12, noise=0.1)
    xi = minissl.covariance_pair_weights(net, views, loss, tau=1.0)
    triple, (I, J) = enumerate_population(views)
    if loss == "soft_triplet":
        grads = mean_gradient(net, triple, loss)
    else:                                 # one negative per anchor cannot be InfoNCE's N; use
        grads = mean_gradient(net, triple, weights=xi[I, J])   # the weighted simple loss
    for l in range(net.depth):
        d = minissl.covariance_update(net, views, l, xi=xi)
        cos = -(grads[l] * d).sum() / np.linalg.norm(grads[l]) / np.linalg.norm(d)
        assert cos > 0.95


# ----------------------------------------------------------------------------- linear nets
def test_linear_flow_matches_library_on_open_gates():
    """A ReLU net whose hidden pre-activations are all positive is linear there: the library's
    matrix-free update equals the explicit linear flow 2 W2^T W2 W1 Σ, 2 W2 W1 Σ W1^T."""
    net = ReLUNet([4, 6, 3], seed=0)
    net.weights[0][...] = np.abs(net.weights[0]) + 0.05
    views = np.random.default_rng(0).uniform(0.1, 1.0, (7, 3, 4))
    assert (net.preactivations(views.reshape(21, 4))[0] > 0).all()
    lin = C.linear_covariance_update(net.weights, views)
    for l in range(2):
        assert rel(lin[l], minissl.covariance_update(net, views, l)) < 1e-12


def euler_linear_flow(W1, W2, views, dt, steps, wrong=False):
    W1, W2 = W1.copy(), W2.copy()
    for _ in range(steps):
        d1, d2 = C.linear_covariance_update([W1, W2], views)
        if wrong:
            d2 = 2 * d2
        W1, W2 = W1 + dt * d1, W2 + dt * d2
    return W1, W2


@pytest.mark.parametrize("wrong", [False, True])
def test_linear_two_layer_invariant(wrong):
    """W1 W1^T - W2^T W2 is conserved by the flow: over t = 0.15 in Euler steps dt = 1e-3 it
    moves by < 1e-3 of its norm (Euler's O(dt) drift) while W1 W1^T itself changes by > 10%.
    (The simple loss is unbounded below: this flow blows up near t = 0.4.)
    A wrong flow (ΔW2 doubled) breaks it."""
    g = np.random.default_rng(1)
    views = 0.5 * (g.standard_normal((10, 1, 4)) + 0.2 * g.standard_normal((10, 3, 4)))
    W1, W2 = 0.5 * g.standard_normal((5, 4)), 0.5 * g.standard_normal((3, 5))
    Q0 = W1 @ W1.T - W2.T @ W2
    V1, V2 = euler_linear_flow(W1, W2, views, 1e-3, 150, wrong)
    Q1 = V1 @ V1.T - V2.T @ V2
    change = np.linalg.norm(V1 @ V1.T - W1 @ W1.T) / np.linalg.norm(W1 @ W1.T)
    assert change > 0.1
    drift = np.linalg.norm(Q1 - Q0) / np.linalg.norm(Q0)
    print(f"W1W1^T change {change:.3f}, invariant drift {drift:.2e}")
    assert (drift > 1e-2) if wrong else (drift < 1e-3)


def test_linear_larger_top_layer_speeds_lower_layer():
    """dW1/dt = 2 W2^T W2 W1 Σ: scaling W2 up makes W1 grow faster (same W1, same data)."""
    g = np.random.default_rng(2)
    views = 0.5 * (g.standard_normal((10, 1, 4)) + 0.2 * g.standard_normal((10, 3, 4)))
    W1, W2 = 0.3 * g.standard_normal((5, 4)), 0.3 * g.standard_normal((3, 5))
    growth = []
    for c in (0.5, 1.0, 2.0):
        V1, _ = euler_linear_flow(W1, c * W2, views, 1e-3, 200)
        growth.append(np.linalg.norm(V1) / np.linalg.norm(W1))
    print("||W1(t)|| / ||W1(0)|| for W2 scaled by 0.5, 1, 2:", np.round(growth, 4))
    assert growth[0] < growth[1] < growth[2]
    assert growth[2] - 1 > 2 * (growth[1] - 1)


# ----------------------------------------------------------------------------- training by OP
@pytest.mark.parametrize("loss", ["simple", "soft_triplet", "infonce"])
def test_train_covariance_step_is_lr_times_update(loss):
    src = GaussianClusters(n_clusters=4, dim=6, noise=0.3, seed=0)
    net = ReLUNet([6, 8, 4], seed=1)
    before = net.copy()
    cfg = TrainConfig(loss=loss, update="covariance", lr=0.05, steps=1, batch_size=16,
                      seed=3, tau=0.5)
    hist = train(net, src, cfg)
    x, x_pos, _ = src.triples(16, np.random.default_rng(3))          # the batch train drew
    views = np.stack([x, x_pos], axis=1)                               # (N, 2, n_0)
    xi = None if loss == "simple" else minissl.covariance_pair_weights(
        before, views, loss, tau=0.5)
    for l in range(net.depth):
        step = net.weights[l] - before.weights[l]
        assert rel(step, 0.05 * minissl.covariance_update(before, views, l, xi=xi)) < 1e-10
    cos = hist["cos_by_layer"][0]
    assert len(cos) == net.depth and all(-1 <= c <= 1 for c in cos)


def test_train_covariance_cosines_positive_for_simple_loss():
    """With a large batch the gradient step of the simple loss and OP vec W agree in direction."""
    src = GaussianClusters(n_clusters=4, dim=6, noise=0.3, seed=0)
    net = ReLUNet([6, 16, 4], seed=0)
    hist = train(net, src, loss="simple", update="covariance", lr=0.01, steps=3,
                 batch_size=256, seed=0)
    cos = np.array(hist["cos_by_layer"])                               # (steps, L)
    assert cos.shape == (3, 2) and np.all(cos > 0.5)
    assert "cos_by_layer" not in train(net, src, loss="simple", steps=1).records[0]


def test_train_covariance_rejects_bias_and_bad_update():
    src = GaussianClusters(dim=4)
    with pytest.raises(ValueError, match="update='covariance' needs a bias-free"):
        train(ReLUNet([4, 5, 2], bias=True), src, update="covariance", steps=1)
    with pytest.raises(ValueError, match="update='covariance' takes loss"):
        train(ReLUNet([4, 5, 2]), src, update="covariance", loss="ref_nce", steps=1)
    with pytest.raises(ValueError, match="update must be one of"):
        train(ReLUNet([4, 5, 2]), src, update="hebbian", steps=1)


# ----------------------------------------------------------------------------- one pass per batch
def per_layer(net, views, loss=None, tau=1.0, margin=0.0, xi=None):
    """The per-layer definition (what ``train.covariance_step`` did before it took one pass):
    the pair weights from their own forward, then one ``covariance_update`` (a forward and a
    Jacobian pass) per layer."""
    if loss is not None:
        xi = minissl.covariance_pair_weights(net, views, loss, tau, margin)
    return [minissl.covariance_update(net, views, l, xi=xi) for l in range(net.depth)]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("pairs", [None, "explicit", "simple", "soft_triplet", "infonce"])
def test_covariance_updates_equal_the_per_layer_updates(backend, masked, pairs):
    """``covariance_updates`` (one forward, one Jacobian pass, ξ from the same forward)
    equals the per-layer calls and the explicit ``OP_l vec(W_l)`` at every layer of a
    depth-4 net, on both backends; the update of a perturbed net (negative control) does not."""
    if backend == "numba" and not minissl.numba_available():
        pytest.skip("numba not installed")
    net = make_net("4layer", seed=3, masked=masked).copy(backend=backend)
    views = make_views(net, 7, 3, seed=3)
    kw = {} if pairs is None else dict(loss=pairs, tau=0.7, margin=0.2)
    if pairs == "explicit":
        a = np.random.default_rng(3).random((7, 7))
        kw = dict(xi=a + a.T)
    got = C.covariance_updates(net, views, **kw)
    want = per_layer(net, views, **kw)
    xi = kw.get("xi")
    if "loss" in kw:
        xi = minissl.covariance_pair_weights(net, views, pairs, 0.7, 0.2)
    assert len(got) == net.depth
    for l in range(net.depth):
        assert got[l].shape == net.weights[l].shape
        assert rel(got[l], want[l]) < 1e-12
        OP = minissl.covariance_operator(net.copy(backend="numpy"), views, l, xi=xi)
        assert rel(got[l], (OP @ net.weights[l].ravel()).reshape(got[l].shape)) < 1e-10
    other = net.copy()
    other.weights[1][0] += 0.3                 # a different net: some layer's update differs
    assert max(rel(d, w) for d, w in zip(C.covariance_updates(other, views, **kw), want)) > 1e-3


def test_covariance_updates_rejects_bad_input():
    net = make_net("3layer")
    views = make_views(net, 4, 2)
    with pytest.raises(ValueError, match="pass xi .* or loss"):
        C.covariance_updates(net, views, xi=np.ones((4, 4)), loss="infonce")
    with pytest.raises(ValueError, match="loss must be one of"):
        C.covariance_updates(net, views, loss="ref_nce")
    with pytest.raises(ValueError, match="views must have shape"):
        C.covariance_updates(net, views[..., :3])
    with pytest.raises(ValueError, match="without BatchNorm"):
        C.covariance_updates(ReLUNet([6, 8, 5, 3], batchnorm={"mean": "normal"}), views)


@pytest.mark.parametrize("loss", ["simple", "infonce"])
def test_covariance_training_step_runs_two_forwards(loss, monkeypatch):
    """One ``update="covariance"`` step of a depth-4 net runs the network forward twice: once
    for the loss and its gradient, once for every layer's covariance factors and the pair
    weights (it was 2 + L before: one per layer, one more for the weights)."""
    from minissl.layers import Sequential
    calls = []
    forward = Sequential.forward

    def counted(self, x):
        calls.append(x.shape[0])
        return forward(self, x)
    monkeypatch.setattr(Sequential, "forward", counted)
    net = ReLUNet([6, 8, 7, 5, 3], seed=0)
    assert net.depth == 4
    train(net, GaussianClusters(dim=6, seed=0), loss=loss, update="covariance", steps=1,
          batch_size=8, lr=0.01)
    assert calls == [8 * 3, 8 * 2]          # the batch (x, x_pos, x_neg), then the views


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises_value_error():
    net = make_net("3layer")
    views = make_views(net, 4, 2)
    for bad in (-1, 3, 1.5, True):
        with pytest.raises(ValueError, match="layer must be an integer in"):
            minissl.covariance_update(net, views, bad)
    with pytest.raises(ValueError, match="views must have shape"):
        minissl.covariance_operator(net, views[:, 0], 0)
    with pytest.raises(ValueError, match="views must have shape"):
        minissl.covariance_update(net, views[..., :3], 0)
    bad_views = views.copy()
    bad_views[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="views contains NaN"):
        minissl.covariance_update(net, bad_views, 0)
    with pytest.raises(ValueError, match=r"xi must have shape \(N, N\)"):
        minissl.covariance_update(net, views, 0, xi=np.ones((3, 3)))
    with pytest.raises(ValueError, match="xi must be symmetric"):
        minissl.covariance_operator(net, views, 0, xi=np.triu(np.ones((4, 4))))
    with pytest.raises(ValueError, match="k must be an integer in"):
        minissl.covariance_spectrum(net, views, 0, k=0)
    with pytest.raises(ValueError, match=r"blas_threads \(None or an integer\) must be an integer >= 1"):
        minissl.covariance_spectrum(net, views, 0, blas_threads=0)
    with pytest.raises(ValueError, match="method must be one of"):
        minissl.covariance_spectrum(net, views, 0, method="power")
    with pytest.raises(ValueError, match="method='lanczos' needs k"):
        minissl.covariance_spectrum(net, views, 0, k=net.weights[0].size - 1, method="lanczos")
    with pytest.raises(ValueError, match="loss must be one of"):
        minissl.covariance_pair_weights(net, views, "triplet")
    with pytest.raises(ValueError, match="tau must be"):
        minissl.covariance_pair_weights(net, views, "infonce", tau=0)
    with pytest.raises(ValueError, match="x must have shape"):
        minissl.connection(net, views, 0)


# ----------------------------------------------------------------------------- GPU
@pytest.mark.skipif(not minissl.backend.cupy_available(), reason="no CuPy/GPU")
@pytest.mark.parametrize("weighted", [False, True])
def test_cupy_matches_numpy(weighted):
    import cupy
    net = ReLUNet([16, 64, 64, 4], seed=0)
    gnet = net.copy(backend="cupy")
    views = make_views(net, 16, 3, seed=0)
    xi = minissl.covariance_pair_weights(net, views, "infonce") if weighted else None
    gxi = None if xi is None else cupy.asarray(xi)
    for l in range(net.depth):
        d = minissl.covariance_update(net, views, l, xi=xi)
        gd = minissl.covariance_update(gnet, cupy.asarray(views), l, xi=gxi)
        assert isinstance(gd, cupy.ndarray)
        assert rel(cupy.asnumpy(gd), d) < 1e-10
    vals, vecs = minissl.covariance_spectrum(net, views, 1, k=3, xi=xi, method="lanczos")
    gv, gU = minissl.covariance_spectrum(gnet, cupy.asarray(views), 1, k=3, xi=gxi,
                                         method="lanczos")
    np.testing.assert_allclose(cupy.asnumpy(gv), vals, rtol=1e-8)
    assert np.min(np.abs((cupy.asnumpy(gU) * vecs).sum(0))) > 1 - 1e-6


def test_layer_is_the_0_based_index_into_net_weights_in_config_cli_and_functions(capsys):
    """One convention: ``CovarianceConfig.layer``, the ``covariance`` command's ``--layer`` and
    the covariance functions' ``layer`` all index ``net.weights`` from 0 (0 = the bottom layer,
    the leaves' weights; the paper's W_l is ``net.weights[l - 1]``), as ``TrainConfig.frozen``."""
    import json
    from minissl import experiments as E
    from minissl.backend import derive_seed
    from minissl.cli import commands as cli
    small = dict(depth=3, hid=3, steps=2, snapshots=1, n_samples=16, n_views=2, batch_size=8,
                 k=2)
    tree = minissl.HLTM(3, 2, (0.7, 1.0), seed=1)
    net = minissl.tree_network(tree, 3, seed=derive_seed(1, 1))
    views = tree.views(16, 2, derive_seed(1, 3))
    xi = C.covariance_pair_weights(net, views, "infonce", 0.1)
    for layer in (0, 2):
        rec = E.covariance_experiment(E.with_settings(E.CovarianceConfig(), layer=layer,
                                                      **small))[0]
        assert rec["shape"] == net.weights[layer].shape          # (12, 8) and (3, 6): distinct
        w, _ = C.covariance_spectrum(net, views, layer, 2, xi, tol=1e-6)
        np.testing.assert_allclose(rec["eigvals"], w, rtol=1e-6)
        argv = ["covariance", "--layer", str(layer)] + [
            a for k, v in small.items() for a in (f"--{k.replace('_', '-')}", str(v))]
        assert cli.main(argv + ["--json"]) == 0
        out = capsys.readouterr().out
        np.testing.assert_allclose(json.loads(out.splitlines()[0])["eigvals"], w, rtol=1e-6)
    assert net.weights[0].shape != net.weights[2].shape
    with pytest.raises(ValueError, match=r"layer must be an integer in \[0, 2\], got 3"):
        E.with_settings(E.CovarianceConfig(), layer=3, **small).validate()
    with pytest.raises(ValueError, match=r"layer must be an integer in \[0, 2\], got -1"):
        E.with_settings(E.CovarianceConfig(), layer=-1, **small).validate()
