"""HLTM: sampler statistics, augmentation, tree network mask, correlation metric, exact
ceiling, the reference "nce" loss, and an end-to-end recovery check."""
import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose

import minissl
from minissl import HLTM, correlation_ceiling, normalized_correlation
from minissl.metrics import best_unit_correlation, group_preactivations
from minissl.losses import LOSSES, contrastive_loss, pair_weights


# ----------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("depth,c,polarity", [(5, 2, (0.7, 1.0)), (3, 3, (0.0, 0.6)),
                                              (2, 4, (0.3, 0.9))])
def test_edge_agreement_matches_polarity(depth, c, polarity):
    """P(child = parent) = (1 + rho)/2 on every edge, root uniform. n = 100,000: the standard
    error of each frequency is <= 0.5/sqrt(n) = 0.0016; tolerance 0.008 (5 sigma)."""
    tree = HLTM(depth, c, polarity, seed=3)
    x, z = tree.sample(100_000, 0)
    nodes = np.concatenate([z, x], axis=1)                     # (n, n_nodes) BFS
    assert nodes.shape[1] == tree.n_nodes and set(np.unique(nodes)) <= {0.0, 1.0}
    par = tree.parents()
    agree = (nodes[:, 1:] == nodes[:, par[1:]]).mean(axis=0)
    assert_allclose(agree, (1 + tree.rho[1:]) / 2, atol=0.008)
    assert abs(z[:, 0].mean() - 0.5) < 0.008
    lo, hi = polarity
    assert (np.abs(tree.rho[1:]) >= lo).all() and (np.abs(tree.rho[1:]) <= hi).all()
    # both signs occur (random sign per edge)
    if tree.n_nodes > 8:
        assert (tree.rho[1:] > 0).any() and (tree.rho[1:] < 0).any()


def test_sampling_is_seeded_and_tree_fixed_by_seed():
    a, b = HLTM(4, 2, seed=5), HLTM(4, 2, seed=5)
    assert_allclose(a.rho[1:], b.rho[1:])
    assert not np.allclose(a.rho[1:], HLTM(4, 2, seed=6).rho[1:])
    assert_allclose(a.sample(50, 1)[0], b.sample(50, 1)[0])
    assert not np.array_equal(a.sample(50, 1)[0], a.sample(50, 2)[0])


@pytest.mark.parametrize("keep_depth", [None, 2, 1])
def test_positive_shares_latents_down_to_keep_depth(keep_depth):
    tree = HLTM(4, 2, (0.5, 0.9), seed=1)
    n = 30_000
    x, xp, xn, z, zp, zn = tree.pairs(n, 0, keep_depth=keep_depth, return_all_latents=True)
    keep = tree.depth if keep_depth is None else keep_depth
    shared = tree.latent_depths >= keep
    assert_allclose(zp[:, shared], z[:, shared])                 # kept exactly
    # the level just below is resampled given its shared parent:
    # P(z_pos = z) = p^2 + (1 - p)^2 = (1 + rho^2)/2
    if keep > 1:
        k = tree.level_of_depth(keep - 1)
        s = tree.level_starts
        agree = (zp[:, s[k]:s[k + 1]] == z[:, s[k]:s[k + 1]]).mean(0)
        assert_allclose(agree, (1 + tree.level_rho(k) ** 2) / 2, atol=0.015)
    assert not np.array_equal(x, xp)
    # the negative is independent of the anchor: root agreement 1/2, leaf correlations ~ 0
    assert abs((zn[:, 0] == z[:, 0]).mean() - 0.5) < 0.015
    cc = np.corrcoef(x.T, xn.T)[:tree.n_leaves, tree.n_leaves:]
    assert np.abs(cc).max() < 0.03
    # the positive's leaf i correlates with the anchor's as the spins do:
    # E[s_i s'_i] = prod of rho^2 over the edges between leaf i and its kept ancestor
    cp = np.diag(np.corrcoef(x.T, xp.T)[:tree.n_leaves, tree.n_leaves:])
    par, depth_of = tree.parents(), np.concatenate([tree.latent_depths, [0] * tree.n_leaves])
    want = []
    for leaf in range(tree.n_latents, tree.n_nodes):
        prod, i = 1.0, leaf
        while depth_of[i] < keep:
            prod, i = prod * tree.rho[i] ** 2, par[i]
        want.append(prod)
    assert_allclose(cp, want, atol=0.025)


def test_pairs_share_root_deterministic_case():
    """With |rho| = 1 the leaves determine every latent (posterior mean is 0/1), so the
    positive's root can be read off its leaves: it equals the anchor's, the negative's
    agrees half the time."""
    tree = HLTM(3, 2, (1.0, 1.0), seed=0)
    x, xp, xn, z = tree.pairs(4000, 1)
    root = lambda leaves: tree.posterior_mean(leaves)[:, 0]
    assert_allclose(root(x), z[:, 0])
    assert_allclose(root(xp), z[:, 0])
    assert 0.45 < (root(xn) == z[:, 0]).mean() < 0.55


def test_data_source_protocol_shapes_and_views():
    tree = HLTM(3, 3, seed=2, negatives=4)
    x, xp, xn = tree.triples(7, 0)
    assert x.shape == xp.shape == (7, 27) and xn.shape == (7, 4, 27) and tree.dim == 27
    v = tree.views(5, 6, 0)
    assert v.shape == (5, 6, 27)
    det = HLTM(3, 3, (1.0, 1.0), seed=2)
    v = det.views(50, 3, 1)                                      # views share the root
    roots = det.posterior_mean(v.reshape(150, 27))[:, 0].reshape(50, 3)
    assert (roots == roots[:, :1]).all() and 0 < roots[:, 0].mean() < 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=0), "depth"), (dict(depth=2.5), "depth"), (dict(num_children=0), "num_children"),
    (dict(polarity=(0.8, 0.5)), "polarity"), (dict(polarity=(-0.1, 0.5)), "polarity"),
    (dict(polarity=(0.5, 1.2)), "polarity"), (dict(polarity=0.5), "polarity"),
    (dict(depth=3, keep_depth=4), "keep_depth"), (dict(keep_depth=0), "keep_depth"),
    (dict(negatives=0), "negatives"), (dict(depth=17, num_children=2), "leaves"),
])
def test_bad_parameters_raise_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HLTM(**kwargs)


def test_bad_sample_arguments():
    tree = HLTM(2, 2)
    with pytest.raises(ValueError, match="n must"):
        tree.sample(0, 0)
    with pytest.raises(ValueError, match="m must"):
        tree.views(3, 0, 0)
    with pytest.raises(ValueError, match="keep_depth"):
        tree.pairs(3, 0, keep_depth=3)


# ----------------------------------------------------------------------------- network
@pytest.mark.parametrize("depth,c,hid", [(3, 2, 3), (2, 3, 4), (4, 2, 1)])
def test_network_mask_mirrors_tree(depth, c, hid):
    tree = HLTM(depth, c, seed=0)
    net = minissl.tree_network(tree, hid, seed=1)
    assert net.sizes == [c ** depth] + [hid * c ** (depth - l) for l in range(1, depth + 1)]
    par, s = tree.parents(), tree.level_starts
    for l in range(1, depth + 1):                  # layer l <-> tree depth l <-> level L - l
        k = depth - l
        hid_in = 1 if l == 1 else hid
        m = minissl.backend.to_numpy(net.masks[l - 1])
        want = np.zeros_like(m)
        for out_unit, in_unit in itertools.product(range(m.shape[0]), range(m.shape[1])):
            mu = s[k] + out_unit // hid                       # the unit's latent (BFS)
            nu = s[k + 1] + in_unit // hid_in                 # the input's node (BFS)
            want[out_unit, in_unit] = par[nu] == mu
        assert_allclose(m, want)
        W = minissl.backend.to_numpy(net.weights[l - 1])
        assert (W[m == 0] == 0).all() and (W[m == 1] != 0).all()


def test_group_sees_only_its_subtree():
    """Changing leaves outside latent mu's subtree leaves mu's units unchanged."""
    tree = HLTM(3, 2, seed=0)
    net = minissl.tree_network(tree, 4, seed=2, bias=True)
    x, _ = tree.sample(64, 0)
    x2 = x.copy()
    x2[:, 4:] = 1 - x2[:, 4:]                         # flip the right half of the leaves
    g1, g2 = group_preactivations(tree, net, x), group_preactivations(tree, net, x2)
    assert_allclose(g1[1][:, 0], g2[1][:, 0])          # left child of the root: leaves 0..3
    assert_allclose(g1[2][:, :2], g2[2][:, :2])        # its two children
    assert not np.allclose(g1[1][:, 1], g2[1][:, 1])   # the right child does change
    assert not np.allclose(g1[0], g2[0])


def test_network_passes_options_and_output_is_root_group():
    tree = HLTM(3, 2, seed=0)
    net = minissl.tree_network(tree, 5, bias=True, normalize=True, norm_eps=1e-4, seed=3, dtype="float32")
    assert net.bias and net.normalize and net.dtype == np.float32 and net.sizes[-1] == 5
    x, _ = tree.sample(10, 0)
    g_root = group_preactivations(tree, net, x)[0][:, 0]             # (10, 5)
    out = minissl.backend.to_numpy(net.forward(x))
    assert_allclose(out, g_root / (np.linalg.norm(g_root, axis=1, keepdims=True) + 1e-4),
                    rtol=1e-5)
    with pytest.raises(ValueError, match="hid"):
        minissl.tree_network(tree, 0)
    with pytest.raises(ValueError, match="mirror"):
        normalized_correlation(tree, minissl.tree_network(HLTM(2, 2), 5), n=10)


# ----------------------------------------------------------------------------- metric
def test_best_unit_correlation_constructed_inputs():
    rng = np.random.default_rng(0)
    n = 20_000
    z = rng.integers(0, 2, (n, 1)).astype(float)
    noise = rng.standard_normal((n, 1))
    units = np.stack([
        z[:, 0],                                   # equal to the latent -> 1
        7.0 - 3.0 * z[:, 0],                       # affine, negative sign -> 1
        noise[:, 0],                               # unrelated -> ~0
        np.full(n, 2.5),                           # exactly constant -> 0
        1e6 + 1e-4 * noise[:, 0],                  # nearly constant, unrelated -> ~0
    ], axis=1)                                     # (n, 5)
    per_unit = [best_unit_correlation(z, units[:, None, [j]])[0] for j in range(5)]
    assert_allclose(per_unit[:2], [1.0, 1.0], atol=1e-12)
    assert per_unit[2] < 0.03 and per_unit[3] == 0.0 and per_unit[4] < 0.03
    assert best_unit_correlation(z, units[:, None, :])[0] == pytest.approx(1.0, abs=1e-12)
    # negative control: the one-pass formula E[g^2] - E[g]^2 cancels catastrophically on the
    # nearly constant unit, so the test above is able to tell the two apart
    g = units[:, 4]
    one_pass_var = (g * g).mean() - g.mean() ** 2
    assert abs(one_pass_var - g.var()) > 10 * g.var()
    # a latent constant on the sample counts as 0, not nan
    assert best_unit_correlation(np.ones((n, 1)), units[:, None, :2])[0] == 0.0


def test_normalized_correlation_exact_unit():
    """|rho| = 1: a depth-1 unit wired to one child leaf equals ±z (+const): corr 1; a net
    with all-zero weights has constant units: 0."""
    tree = HLTM(3, 2, (1.0, 1.0), seed=4)
    net = minissl.tree_network(tree, 2, seed=0)
    W1 = minissl.backend.to_numpy(net.weights[0])
    W1[...] = 0.0
    W1[::2, ::2][np.arange(4), np.arange(4)] = 1.0      # unit 0 of group j reads leaf 2j
    net.weights[0][...] = W1
    corr = normalized_correlation(tree, net, n=2000, rng=1)
    assert corr.per_latent.shape == (tree.n_latents,)
    assert_allclose(corr.per_latent[tree.latent_depths == 1], 1.0, atol=1e-12)
    assert corr.by_depth[1] == pytest.approx(1.0, abs=1e-12) and list(corr.by_depth) == [3, 2, 1]
    for W in net.weights:
        W[...] = 0.0
    assert_allclose(normalized_correlation(tree, net, n=500, rng=1).per_latent, 0.0)


def _brute_force_posterior(tree, x):
    """E[z_mu | leaves under mu] by enumerating every assignment of the tree (small trees)."""
    n_nodes, par = tree.n_nodes, tree.parents()
    configs = np.array(list(itertools.product([0, 1], repeat=n_nodes)))     # (2^nodes, nodes)
    p = np.full(len(configs), 0.5)
    for i in range(1, n_nodes):
        same = configs[:, i] == configs[:, par[i]]
        p = p * np.where(same, (1 + tree.rho[i]) / 2, (1 - tree.rho[i]) / 2)
    leaf0 = tree.n_latents
    out = np.zeros((len(x), tree.n_latents))
    for mu in range(tree.n_latents):
        leaves = [i for i in range(leaf0, n_nodes)
                  if any(a == mu for a in _ancestors(i, par))]
        for r, row in enumerate(x):
            match = (configs[:, leaves] == row[np.array(leaves) - leaf0]).all(1)
            out[r, mu] = (p * match * configs[:, mu]).sum() / (p * match).sum()
    return out


def _ancestors(i, par):
    while i >= 0:
        yield i
        i = par[i]


@pytest.mark.parametrize("depth,c,polarity", [(2, 2, (0.2, 0.9)), (1, 3, (0.5, 0.8)),
                                              (2, 2, (0.9, 1.0))])
def test_posterior_mean_matches_brute_force(depth, c, polarity):
    tree = HLTM(depth, c, polarity, seed=7)
    x, _ = tree.sample(40, 0)
    assert_allclose(tree.posterior_mean(x), _brute_force_posterior(tree, x), atol=1e-12)


def test_ceiling_identity_and_bounds():
    """corr(z, E[z|x]) = sqrt(Var E[z|x] / Var z) (since Cov(z, E[z|x]) = Var E[z|x]); the
    ceiling is 1 when |rho| = 1 and falls with weaker polarity."""
    tree = HLTM(4, 2, (0.6, 0.9), seed=1)
    x, z = tree.sample(100_000, 2)
    ceil = correlation_ceiling(tree, x=x, z=z)
    post = tree.posterior_mean(x)
    assert_allclose(ceil.per_latent, np.sqrt(post.var(0) / z.var(0)), atol=0.01)
    assert_allclose(correlation_ceiling(HLTM(3, 2, (1.0, 1.0)), n=500).per_latent, 1.0)
    weak = correlation_ceiling(HLTM(4, 2, (0.2, 0.4), seed=1), n=20_000, rng=2)
    assert max(weak.by_depth.values()) < min(ceil.by_depth.values())
    # no unit does better than the posterior mean (up to sampling error)
    net = minissl.tree_network(tree, 10, seed=0)
    learned = normalized_correlation(tree, net, x=x, z=z)
    assert (learned.per_latent <= ceil.per_latent + 0.01).all()
    with pytest.raises(ValueError, match="both x and z"):
        correlation_ceiling(tree, x=x)


# ----------------------------------------------------------------------------- ref_nce
def test_ref_nce_matches_reference_formula_and_gradient():
    """ref_nce with tau = T d / 2 equals the reference code's
    -e^{-P/T} / (e^{-P/T} + e^{-Q/T}), P = MSE(f, f_pos), Q = MSE(f, f_neg); its gradient
    passes central finite differences (and a wrong one fails)."""
    rng = np.random.default_rng(0)
    N, d, T = 16, 10, 0.3
    z, zp, zn = rng.standard_normal((3, N, d)) * 0.3
    P, Q = ((z - zp) ** 2).mean(), ((z - zn) ** 2).mean()
    want = -np.exp(-P / T) / (np.exp(-P / T) + np.exp(-Q / T))
    tau = T * d / 2
    val, (dz, dzp, dzn) = contrastive_loss(z, zp, zn, "ref_nce", tau)
    assert val == pytest.approx(want, rel=1e-12)
    f = lambda a, b, c: contrastive_loss(a, b, c, "ref_nce", tau)[0]
    h = 1e-6
    for arr, grad, k in ((z, dz, 0), (zp, dzp, 1), (zn, dzn, 2)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            args = [z.copy(), zp.copy(), zn.copy()]
            args[k][idx] += h
            up = f(*args)
            args[k][idx] -= 2 * h
            num[idx] = (up - f(*args)) / (2 * h)
        assert_allclose(grad, num, atol=1e-8)
        assert not np.allclose(grad * 1.01, num, atol=1e-8)      # negative control
    xi, d_pos = pair_weights(*_dists(z, zp, zn), loss="ref_nce", tau=tau)
    assert_allclose(d_pos, xi.sum(1))
    assert (d_pos > 0).all()
    assert "ref_nce" in LOSSES
    with pytest.raises(ValueError, match="H=1"):
        contrastive_loss(z, zp, np.stack([zn, zn], 1), "ref_nce", tau)


def _dists(z, zp, zn):
    return 0.5 * ((z - zp) ** 2).sum(1), 0.5 * ((z - zn) ** 2).sum(1)[:, None]


# ----------------------------------------------------------------------------- end to end
def test_training_recovers_top_latent():
    """minissl.train on the tree (theory setting: bias-free, InfoNCE) raises the top-depth
    correlation well above the untrained network's, fixed seed; and stays under the ceiling."""
    tree = HLTM(3, 2, (0.7, 1.0), seed=3)
    net = minissl.tree_network(tree, 10, seed=3)
    x, z = tree.sample(5000, 123)
    before = normalized_correlation(tree, net, x=x, z=z).by_depth[3]
    minissl.train(net, tree, minissl.TrainConfig(loss="infonce", tau=0.1, lr=0.1, steps=3000,
                                                 batch_size=64, seed=0))
    after = normalized_correlation(tree, net, x=x, z=z).by_depth[3]
    ceil = correlation_ceiling(tree, x=x, z=z).by_depth[3]
    # measured: 0.607 -> 0.756, ceiling 0.780
    assert after > before + 0.1, (before, after, ceil)
    assert 0.9 * ceil < after <= ceil + 0.01


# ----------------------------------------------------------------------------- settings
def test_a_run_builds_its_tree_once(monkeypatch):
    """``apply_preset``, ``check_cost``, ``build`` and ``hltm_experiment`` share one HLTM (the
    config is frozen and keeps it); a changed config (``replace``) builds its own."""
    from dataclasses import FrozenInstanceError, replace
    from minissl import experiments as E
    from minissl.experiments import hltm as EH
    built = []
    monkeypatch.setattr(EH, "HLTM", lambda *a, **k: built.append(1) or HLTM(*a, **k))
    cfg = E.HLTMConfig(depth=3, hid=3, epochs=1, samples_per_epoch=256, batch_size=64,
                       eval_samples=200).apply_preset()
    cfg.check_cost()
    assert cfg.build()[0] is cfg.tree and cfg.apply_preset() is cfg
    records, _ = E.hltm_experiment(cfg)
    assert len(built) == 1 and len(records) == 2
    replace(cfg, seed=2).apply_preset()
    assert len(built) == 2
    with pytest.raises(FrozenInstanceError):           # frozen: the tree cannot go stale
        cfg.depth = 4


def test_experiments_nest_one_hltm_run():
    """The covariance, selectivity and acceleration configs declare none of the HLTM run's
    settings themselves: they nest an ``HLTMRun``, set by name through ``with_settings``."""
    from dataclasses import fields
    from minissl import experiments as E
    run = set(E.leaf_fields(E.HLTMRun()))
    for cls in (E.CovarianceConfig, E.SelectivityConfig, E.AccelerationConfig):
        own = {f.name for f in fields(cls)}
        assert own & run == set() and "run" in own, cls
        cfg = E.with_settings(cls(), depth=3, seed=5, snapshots=2)
        assert (cfg.run.depth, cfg.run.seed, cfg.snapshots) == (3, 5, 2)
        assert cfg.hltm.depth == 3 and cfg.hltm.seed == 5            # the same run's HLTMConfig
    with pytest.raises(TypeError, match="no setting 'depht'"):
        E.with_settings(E.CovarianceConfig(), depht=3)
