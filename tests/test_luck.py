"""Luck matters: per-unit selectivity, the amplification statistics, OP-direction shares,
freezing a layer, top-layer acceleration, probes and their exact Bayes ceilings, and the
commands and app views built on them."""
import itertools
import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import spearmanr

import minissl
from minissl import HLTM, TrainConfig, normalized_correlation, train
from minissl import experiments as E
from minissl.cli import commands as cli
from minissl.figures import plots
from minissl.experiments.probe import probe_sets
from minissl.metrics import group_preactivations, unit_correlations
from minissl.analysis.probes import (bayes_accuracy, expected_bayes_accuracy, posterior_all_leaves, probe,
                            representations)
from minissl.analysis.selectivity import (amplification, latent_rows, mean_interval, projection,
                                          random_basis, share, unit_norms, wilson_interval,
                                          winner_ranks)


# ----------------------------------------------------------------------------- per-unit values
def test_per_unit_against_direct_pearson():
    tree = HLTM(3, 2, (0.6, 1.0), seed=2)
    net = minissl.tree_network(tree, 4, seed=5)
    x, z = tree.sample(3000, 1)
    corr = normalized_correlation(tree, net, x=x, z=z)
    assert corr.per_unit.shape == (tree.n_latents, 4) and corr.per_unit.dtype == np.float64
    assert np.array_equal(corr.per_latent, corr.per_unit.max(axis=1))
    gs = group_preactivations(tree, net, x)                  # level k: (n, c**k, hid)
    s = tree.level_starts
    for mu in range(tree.n_latents):
        k = int(np.searchsorted(s, mu, side="right") - 1)
        g = gs[k][:, mu - s[k], :]                            # (n, hid)
        direct = [abs(np.corrcoef(z[:, mu], g[:, u])[0, 1]) for u in range(4)]
        assert_allclose(corr.per_unit[mu], direct, atol=1e-12)
    assert minissl.correlation_ceiling(tree, x=x, z=z).per_unit is None


def test_per_unit_twin_matches_reference():
    pytest.importorskip("numba")
    from minissl.kernels import hltm as KH
    rng = np.random.default_rng(3)
    z = rng.integers(0, 2, (400, 4)).astype(float)
    g = rng.standard_normal((400, 4, 3)) + 1.5 * z[:, :, None] * rng.random((1, 4, 3))
    g[:, 1, 2] = 7.0                                          # a constant unit -> 0
    ref, got = unit_correlations(z, g), KH.unit_correlations(z, g)
    assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    assert got[1, 2] == 0.0 and ref[1, 2] == 0.0
    assert_allclose(KH.best_unit_correlation(z, g), ref.max(axis=1), rtol=1e-12)
    tree = HLTM(3, 2, seed=0)
    net = minissl.tree_network(tree, 4, seed=2, backend="numba")
    a = normalized_correlation(tree, net.copy(backend="numpy"), n=300, rng=1)
    b = normalized_correlation(tree, net, n=300, rng=1)
    assert_allclose(b.per_unit, a.per_unit, rtol=1e-11, atol=1e-13)
    assert np.array_equal(b.per_latent, b.per_unit.max(axis=1))


# ----------------------------------------------------------------------------- statistics
def test_amplification_on_constructed_trajectories():
    """Latent 0 keeps its order (rho 1, winner rank 0); latent 1 swaps its two best units
    (rank 1); latent 2 reverses its order (rho -1, winner rank 3, below the median)."""
    initial = np.array([[0.1, 0.2, 0.3, 0.4],
                        [0.1, 0.2, 0.3, 0.4],
                        [0.1, 0.2, 0.3, 0.4]])
    final = np.array([[0.2, 0.3, 0.4, 0.9],
                      [0.2, 0.3, 0.8, 0.5],
                      [0.9, 0.5, 0.3, 0.2]])
    assert winner_ranks(initial, final).tolist() == [0, 1, 3]
    a = amplification(initial, final, norms0=np.ones((3, 4)), norms1=1 + final)
    assert a["ranks"].tolist() == [0, 1, 3] and a["rank"] == pytest.approx(4 / 3)
    assert a["above_median"] == pytest.approx(2 / 3)
    # per latent: 1, 1 - 6*2/(4*15) = 0.8 (one adjacent swap), -1
    assert a["spearman_latent"] == pytest.approx((1 + 0.8 - 1) / 3)
    assert a["spearman"] == pytest.approx(spearmanr(initial.ravel(), final.ravel()).statistic)
    assert a["gain_winner"] == pytest.approx(np.mean([0.9 - 0.4, 0.8 - 0.3, 0.9 - 0.1]))
    rest = (final - initial)[[0, 0, 0, 1, 1, 1, 2, 2, 2], [0, 1, 2, 0, 1, 3, 1, 2, 3]]
    assert a["gain_rest"] == pytest.approx(rest.mean())
    assert a["growth_winner"] == pytest.approx(1 + np.mean([0.9, 0.8, 0.9]))
    ties = np.full((1, 3), 0.5)                               # the winner ties: rank 0
    assert winner_ranks(ties, np.array([[0.1, 0.9, 0.2]])).tolist() == [0]
    with pytest.raises(ValueError, match="initial and final"):
        amplification(initial, final[:, :3])


def test_projection_share_and_random_control():
    shape = (2, 3)                                            # P = 6, rows of 3
    U = np.zeros((6, 2))
    U[0, 0] = U[4, 1] = 1.0                                   # e_(0,0) and e_(1,1)
    W = np.array([[3.0, 4.0, 0.0], [0.0, 2.0, 0.0]])
    assert_allclose(projection(U, W), [3.0, 2.0])
    rows, layer = share(U, W)
    assert_allclose(rows, [9 / 25, 1.0]) and layer == pytest.approx(13 / 29)
    mask = np.array([[1, 1, 0], [0, 1, 1]])
    Q = random_basis(shape, 2, 0, mask=mask)
    assert_allclose(Q.T @ Q, np.eye(2), atol=1e-12)
    assert_allclose(Q[mask.ravel() == 0], 0.0)
    # a random k-dim subspace of the P_live = 4 live weights holds k/P_live of any change
    dW = W * mask
    mean = np.mean([share(random_basis(shape, 2, s, mask=mask), dW)[1] for s in range(400)])
    assert mean == pytest.approx(2 / 4, abs=0.05)        # se 0.29/sqrt(400)
    with pytest.raises(ValueError, match="k must be"):
        random_basis(shape, 5, 0, mask=mask)


def test_unit_rows_follow_the_latents():
    """Zeroing unit u of latent mu's weight row zeroes both its norm and its selectivity at the
    same (mu, u): ``latent_rows`` and ``normalized_correlation`` agree on the layout."""
    tree = HLTM(3, 2, seed=1)
    hid = 3
    net = minissl.tree_network(tree, hid, seed=0)
    mu, u = 5, 2                                              # depth 1, level 2, group 2
    net.weights[0][2 * hid + u] = 0.0
    norms = unit_norms(tree, net.weights, hid)
    assert norms.shape == (tree.n_latents, hid)
    assert np.argwhere(norms == 0).tolist() == [[mu, u]]
    corr = normalized_correlation(tree, net, n=500, rng=0)
    assert corr.per_unit[mu, u] == 0.0
    assert (np.delete(corr.per_unit.ravel(), mu * hid + u) > 0).all()
    rows = latent_rows(tree, [np.arange(12), np.arange(6), np.arange(3)], hid)
    assert rows[0].tolist() == [0, 1, 2] and rows[mu].tolist() == [6, 7, 8]


# ----------------------------------------------------------------------------- intervals
def _wilson_by_hand(k, n, z):
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_wilson_interval_known_values_and_the_formula():
    """Known 95% Wilson intervals (79/93: docs/hltm.md's old claim; 0/10 has upper end
    z²/(n + z²)); the formula of the module docstring for other k, n, levels; the Wald
    interval p ± z sqrt(p(1-p)/n), a wrong answer, is far off at the edges."""
    assert wilson_interval(79, 93) == pytest.approx((0.76304, 0.90816), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    lo, hi = wilson_interval(0, 10)
    z = 1.959963984540054
    assert lo == 0 and hi == pytest.approx(z * z / (10 + z * z), abs=1e-12)
    assert hi > 0.27                                               # Wald gives (0, 0)
    for k, n, conf in ((3, 7, 0.95), (68, 93, 0.9), (24, 45, 0.99), (1, 1, 0.8)):
        zq = NormalDist().inv_cdf(0.5 + conf / 2)
        assert wilson_interval(k, n, conf) == pytest.approx(_wilson_by_hand(k, n, zq),
                                                            abs=1e-9)
    with pytest.raises(ValueError, match="k must be"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, 1.0)


def test_mean_interval_is_students_t():
    """[1, 2, 3, 4]: mean 2.5, s/sqrt(n) = 0.6455, t_{0.975, 3} = 3.18245 (a normal z = 1.96
    would give 1.235..3.765); degenerate inputs."""
    m, lo, hi = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert (m, lo, hi) == pytest.approx((2.5, 0.44574, 4.55426), abs=1e-5)
    assert mean_interval([4.0, np.nan, 1.0, 3.0, 2.0]) == pytest.approx((m, lo, hi))
    assert mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    one = mean_interval([0.5])
    assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[2])
    assert all(math.isnan(v) for v in mean_interval([]))
    with pytest.raises(ValueError, match="confidence"):
        mean_interval([1.0, 2.0], 0.0)


def _summary(ranks_by_depth, spearman=0.5):
    return {d: {"selectivity": {"ranks": np.array(r), "spearman": spearman,
                                "growth_winner": 1.1, "growth_rest": 1.0},
                "op": {"share_top_layer": 0.8, "share_random_layer": 0.05}}
            for d, r in ranks_by_depth.items()}


def test_selectivity_intervals_count_the_winners_already_best():
    """Constructed ranks: depth 3 (root) ranks 0, 2; depth 2 [0, 1], [0, 0]; depth 1 all 0."""
    sums = [_summary({3: [0], 2: [0, 1], 1: [0, 0, 0, 0]}, 0.4),
            _summary({3: [2], 2: [0, 0], 1: [0, 0, 0, 0]}, 0.6)]
    iv = E.selectivity_intervals(sums)
    assert list(iv) == ["3", "2", "1", "3-2", "all"]
    assert (iv["3"]["best"], iv["3"]["latents"]) == (1, 2)
    assert (iv["3-2"]["best"], iv["3-2"]["latents"]) == (4, 6)
    assert (iv["all"]["best"], iv["all"]["latents"]) == (12, 14)
    assert iv["3-2"]["best_ci"] == pytest.approx((4 / 6, *wilson_interval(4, 6)))
    assert iv["3-2"]["best_seed"] == pytest.approx(mean_interval([2 / 3, 2 / 3]))
    assert iv["3"]["rank"][0] == 1.0 and iv["2"]["rank"][0] == 0.25
    assert iv["2"]["spearman"] == pytest.approx(mean_interval([0.4, 0.6]))
    assert "spearman" not in iv["all"]
    assert E.root_ranks(sums) == [0, 2]
    rows = E.selectivity_interval_table(iv)
    assert rows[0][:3] == ["depth", "best@init", "Wilson 95%"]
    assert rows[4][:2] == ["3-2", "4/6"] and rows[4][5] == "-"
    assert all(len(r) == len(rows[0]) for r in rows)


@pytest.fixture(scope="module")
def selectivity_run():
    cfg = E.with_settings(E.SelectivityConfig(), depth=3, steps=300, snapshots=3,
                          eval_samples=4000, k=4, n_samples=64, n_views=2, seed=1)
    return E.selectivity_experiment(cfg)


def test_final_winners_started_above_the_median(selectivity_run):
    """Seed 1, depth 3, 300 steps (measured: every latent's winner started above its median;
    winners' weights grew 1.16 / 1.07 / 1.03 against 1.03 / 1.02 / 1.01 for the rest; 20-70% of
    the weight change lies in OP's top-4 eigenvectors, 0.5-5% in a random 4-dim subspace)."""
    records, summary = selectivity_run
    assert [r["step"] for r in records] == [0, 100, 200, 300]
    assert list(summary) == [3, 2, 1]
    for d, s in summary.items():
        sel, op = s["selectivity"], s["op"]
        assert sel["above_median"] == 1.0, (d, sel)
        assert sel["growth_winner"] > sel["growth_rest"], (d, sel)
        assert op["share_top_layer"] > 3 * op["share_random_layer"], (d, op)
    rows = E.selectivity_table([summary, summary])
    assert rows[0][0] == "depth" and len(rows) == 4 and "±0.00" in rows[1][1]


def test_unit_view_of_hltm_records():
    cfg = E.HLTMConfig(depth=3, hid=4, epochs=2, samples_per_epoch=640, batch_size=64,
                       eval_samples=500)
    records, _ = E.hltm_experiment(cfg)
    tree = cfg.tree
    v = E.unit_view(tree, records, 2)
    assert v["traces"].shape == (3, 4) and v["initial"].shape == (tree.n_latents * 4,)
    assert v["winner"] == int(np.argmax(records[-1]["corr_units"][2]))
    assert v["winners"].sum() == tree.n_latents and set(v["spearman"]) == {3, 2, 1}
    assert_allclose(v["traces"][0], records[0]["corr_units"][2])
    with pytest.raises(ValueError, match="latent must be"):
        E.unit_view(tree, records, tree.n_latents)
    fig = plots.unit_view_figure(v)
    assert len(fig.axes) == 2
    plots.close(fig)


# ----------------------------------------------------------------------------- frozen layers
def test_frozen_layer_keeps_its_weights_and_the_rest_trains():
    src = minissl.GaussianClusters(n_clusters=4, dim=6, noise=0.3, seed=0)
    for bias in (False, True):
        net = minissl.ReLUNet([6, 8, 4], seed=1, bias=bias)
        before = net.copy()
        train(net, src, TrainConfig(loss="infonce", tau=0.5, lr=0.05, steps=5, frozen=(1,)))
        assert np.array_equal(net.weights[1], before.weights[1])
        assert not np.allclose(net.weights[0], before.weights[0])
        if bias:
            assert np.array_equal(net.biases[1], before.biases[1])
            assert not np.allclose(net.biases[0], before.biases[0])
        free = before.copy()                                  # control: unfrozen, it moves
        train(free, src, TrainConfig(loss="infonce", tau=0.5, lr=0.05, steps=5))
        assert not np.allclose(free.weights[1], before.weights[1])
    with pytest.raises(ValueError, match="frozen"):
        train(net, src, TrainConfig(frozen=(2,), steps=1))
    with pytest.raises(ValueError, match="frozen"):
        TrainConfig(frozen="1").validate()


def test_trained_top_layer_speeds_up_the_bottom_layer():
    """Depth-2 tree, simple loss, seed 1 (measured at step 60: ||ΔW_1|| / ||W_1|| 0.020 frozen,
    0.029 trained, 0.16 scaled x2): the trained top layer moves the bottom layer faster."""
    cfg = E.with_settings(E.AccelerationConfig(), steps=60, snapshots=3, eval_samples=500)
    recs = E.acceleration_experiment(cfg)
    end = {a: [r for r in recs if r["arm"] == a][-1] for a in E.ARMS}
    assert all(r["step"] == 60 and not r["diverged"] for r in end.values())
    assert end["frozen"]["dW1"] < end["trained"]["dW1"] < end["scaled"]["dW1"]
    assert end["trained"]["dW1"] > 1.2 * end["frozen"]["dW1"]
    assert end["trained"]["unit_corr"] > end["frozen"]["unit_corr"]
    lin = E.linear_acceleration(t_end=0.1)
    at = {a: [r for r in lin if r["arm"] == a][-1]["W1"] for a in E.ARMS}
    assert 1 < at["frozen"] < at["trained"] < at["scaled"]
    fig = plots.acceleration_figure(recs, lin)
    assert len(fig.axes) == 3
    plots.close(fig)


# ----------------------------------------------------------------------------- probes
def test_probe_is_scikit_learns():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 5))
    Y = np.stack([(X[:, 0] + 0.5 * rng.standard_normal(400)) > 0,
                  (X[:, 1] * X[:, 2]) > 0], axis=1).astype(int)          # (400, 2)
    tr, te = slice(0, 300), slice(300, None)
    lin = probe(X[tr], Y[tr], X[te], Y[te], "linear", C=0.5)
    knn = probe(X[tr], Y[tr], X[te], Y[te], "knn", k=7)
    for t in range(2):
        m = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
        assert lin[t] == m.fit(X[tr], Y[tr, t]).score(X[te], Y[te, t])
        assert knn[t] == KNeighborsClassifier(7).fit(X[tr], Y[tr, t]).score(X[te], Y[te, t])
    assert lin[0] > 0.8 and lin[1] < 0.7 < knn[1]            # linear vs not linear
    assert probe(X[tr], np.zeros(300), X[te], np.zeros(100))[0] == 1.0
    with pytest.raises(ValueError, match="kind"):
        probe(X[tr], Y[tr], X[te], Y[te], "svm")


def _enumerate(tree):
    """Every configuration of the tree's nodes and its probability (brute force)."""
    par = tree.parents()
    conf = np.array(list(itertools.product([0, 1], repeat=tree.n_nodes)))
    p = np.full(len(conf), 0.5)
    for i in range(1, tree.n_nodes):
        p = p * np.where(conf[:, i] == conf[:, par[i]], 1 + tree.rho[i], 1 - tree.rho[i]) / 2
    return conf, p


@pytest.mark.parametrize("c,polarity", [(2, (0.3, 0.9)), (3, (0.6, 1.0))])
def test_bayes_accuracy_against_enumeration(c, polarity):
    """Depth 2: every latent configuration enumerated. For each leaf pattern x, P(x) and
    P(z_mu = 1 | x) (all leaves) and P(z_mu = 1 | x under mu); the Bayes accuracy is
    sum_x P(x) max(p, 1 - p). The library's posteriors over all leaf patterns, weighted by
    P(x), give the same to 1e-12."""
    tree = HLTM(2, c, polarity, seed=4)
    conf, p = _enumerate(tree)
    leaves = conf[:, tree.n_latents:]
    xs = np.array(list(itertools.product([0, 1], repeat=tree.n_leaves)), dtype=float)
    px = np.array([p[(leaves == x).all(1)].sum() for x in xs])
    post_all = np.array([[(p * (leaves == x).all(1) * conf[:, mu]).sum() / q
                          for mu in range(tree.n_latents)] for x, q in zip(xs, px)])
    mine_all = posterior_all_leaves(tree, xs)
    assert_allclose(mine_all, post_all, atol=1e-12)
    want_all = (px[:, None] * np.maximum(post_all, 1 - post_all)).sum(0)
    assert_allclose((px[:, None] * np.maximum(mine_all, 1 - mine_all)).sum(0), want_all,
                    atol=1e-12)
    sub = tree.posterior_mean(xs)                             # given mu's subtree only
    want_sub = []
    for mu in range(tree.n_latents):                          # enumerate with the other leaves
        under = np.flatnonzero(_under(tree, mu))              # marginalised out
        acc = 0.0
        for pattern in itertools.product([0, 1], repeat=len(under)):
            m = (leaves[:, under] == pattern).all(1)
            q = p[m].sum()
            acc += max((p[m] * conf[m, mu]).sum(), q - (p[m] * conf[m, mu]).sum())
        want_sub.append(acc)
    assert_allclose((px[:, None] * np.maximum(sub, 1 - sub)).sum(0), want_sub, atol=1e-12)
    assert want_all[0] == pytest.approx(want_sub[0], abs=1e-12)       # the root: the same
    assert (np.array(want_all[1:]) >= np.array(want_sub[1:]) - 1e-12).all()


def _under(tree, mu):
    """Which leaves lie under latent mu (bool, (n_leaves,))."""
    par, leaf0 = tree.parents(), tree.n_latents
    out = []
    for i in range(leaf0, tree.n_nodes):
        a = i
        while a >= 0 and a != mu:
            a = par[a]
        out.append(a == mu)
    return np.array(out)


def test_bayes_accuracy_thresholds_and_ties():
    p = np.array([[0.9, 0.5], [0.2, 0.5], [0.6, 0.1]])
    z = np.array([[1, 0], [1, 1], [0, 0]])
    assert_allclose(bayes_accuracy(p, z), [1 / 3, (0.5 + 0.5 + 1) / 3])
    assert_allclose(expected_bayes_accuracy(p), [(0.9 + 0.8 + 0.6) / 3, (0.5 + 0.5 + 0.9) / 3])


def test_hltm_probe_and_its_table():
    tree = HLTM(3, 2, (0.7, 1.0), seed=1)
    net = minissl.tree_network(tree, 4, seed=2)
    res = E.hltm_probe(tree, net, seed=1, n=400, targets="all")
    assert res["latents"].tolist() == list(range(7))
    assert list(res["linear"]) == ["leaves", "layer 1", "layer 2", "output"]
    assert res["knn"]["output"].shape == (7,)
    assert res["bayes_all"][0] == res["bayes_subtree"][0]
    assert (res["expected_all"] >= res["expected_subtree"] - 1e-12).all()
    # the probe of the leaves is the same probe scikit-learn makes on the same sets
    (x_tr, z_tr), (x_te, z_te) = probe_sets(tree.sample, 400, 1)
    assert_allclose(res["linear"]["leaves"], probe(x_tr, z_tr, x_te, z_te, "linear"))
    rows = E.probe_rows(tree, res)
    assert rows[0][:2] == ["probe", "linear d3"] and rows[-1][0] == "bayes | all"
    root = E.hltm_probe(tree, net, seed=1, n=400, targets="root")
    assert root["latents"].tolist() == [0]
    assert_allclose(root["linear"]["output"], res["linear"]["output"][:1])


def test_cluster_probe_reads_the_cluster_id():
    src = minissl.GaussianClusters(n_clusters=4, dim=8, noise=0.3, seed=0)
    x, y = src.sample(200, 1)
    assert x.shape == (200, 8) and set(np.unique(y)) <= set(range(4))
    assert np.linalg.norm(x - src.centers[y], axis=1).max() < 0.3 * 8
    net = minissl.ReLUNet([8, 16, 4], seed=0)
    res = E.cluster_probe(src, net, seed=0, n=300)
    assert res["chance"] == 0.25 and list(res["linear"]) == ["leaves", "layer 1", "output"]
    assert res["linear"]["leaves"] > 0.95 and res["knn"]["leaves"] > 0.95
    assert res["linear"]["leaves"] <= res["bayes"] + 0.02        # nearest centre: the ceiling


def test_representations_are_the_layers():
    net = minissl.ReLUNet([5, 6, 4, 3], seed=0)
    x = np.random.default_rng(0).standard_normal((7, 5))
    R = representations(net, x)
    assert list(R) == ["leaves", "layer 1", "layer 2", "output"]
    gs = net.preactivations(x)
    assert_allclose(R["layer 1"], np.maximum(gs[0], 0))
    assert_allclose(R["output"], gs[2])


# ----------------------------------------------------------------------------- CLI and app
def test_hltm_probe_flag_and_json(capsys):
    argv = ["hltm", "--depth", "2", "--hid", "3", "--epochs", "1", "--samples-per-epoch", "256",
            "--eval-samples", "200", "--probe", "--probe-samples", "200"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "# probe accuracy at epoch 0" in out and "# probe accuracy at epoch 1" in out
    assert "bayes | all" in out
    assert cli.main(argv + ["--json"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert "probe" in lines[0] and "probe" in lines[-1] and lines[0]["probe"]["latents"] == [0]
    with pytest.raises(SystemExit):
        cli.main(argv[:-2] + ["--probe", "some"])


def test_selectivity_and_acceleration_commands(capsys, tmp_path):
    assert cli.main(["selectivity", "--depth", "2", "--hid", "4", "--steps", "20",
                             "--snapshots", "2", "--k", "2", "--n-samples", "16",
                             "--n-views", "2", "--eval-samples", "200", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[1])["2"]["selectivity"]["ranks"] is not None
    assert out[2].split()[:3] == ["depth", "rho", "s0,sT"]
    with pytest.raises(SystemExit):
        cli.main(["selectivity", "--k", "0"])
    assert "--k" in capsys.readouterr().err
    assert cli.main(["selectivity", "--depth", "2", "--hid", "4", "--steps", "20",
                     "--snapshots", "2", "--k", "2", "--n-samples", "16", "--n-views", "2",
                     "--eval-samples", "200", "--seeds", "2", "--seed", "5"]) == 0
    cap = capsys.readouterr()
    assert "seeds [5, 6]" in cap.out.splitlines()[0]
    assert "# seed 5 done (1/2" in cap.err and "# seed 6 done (2/2" in cap.err
    assert any(line.split()[:3] == ["depth", "best@init", "Wilson"] for line in
               cap.out.splitlines())
    assert "# initial rank of the root's winner per seed: [" in cap.out
    png = tmp_path / "acc.png"
    assert cli.main(["acceleration", "--steps", "10", "--snapshots", "2",
                             "--eval-samples", "200", "--figure", str(png)]) == 0
    out = capsys.readouterr().out
    assert "# HLTM, bottom layer" in out and "# linear two-layer flow" in out
    assert out.count("frozen  trained") >= 5                  # 3 HLTM + 2 linear tables
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_app_luck_views_and_acceleration():
    gr = pytest.importorskip("gradio")
    from app import covariance as app_cov
    from app import hltm as app_hltm
    run = {"cfg": app_hltm.hltm_config({**app_hltm.HLTM_DEFAULTS, "depth": 3, "hid": 4,
                                        "epochs": 2, "steps_per_epoch": 10, "batch_size": 32})}
    run["records"], _ = E.hltm_experiment(run["cfg"])
    assert "probe" in run["records"][0] and "probe" in run["records"][-1]
    units, probe_plot = app_hltm.luck_figures(run, 3)
    assert units is not None and probe_plot is not None
    assert app_hltm.luck_figures(None, 0) == (None, None)
    with pytest.raises(gr.Error, match="latent must be"):
        app_hltm.luck_figures(run, 7)
    fig, md = list(app_cov.run_acceleration(steps=10))[-1]       # streamed from the worker
    assert "top frozen" in md and "top scaled" in md
    with pytest.raises(gr.Error, match="top scale"):
        next(app_cov.run_acceleration(top_scale=9.0))


def test_corr_panels_one_per_depth():
    fig = plots.corr_panels_figure([0, 1, 2], [[0.5, 0.6, 0.7]] * 3, untrained=[0.5] * 3,
                                   ceiling=[0.9] * 3)
    assert sum(ax.get_visible() for ax in fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["depth 3 (root)", "depth 2", "depth 1"]
    plots.close(fig)
