"""SupCon (Khosla et al. 2020) as a loss of the distances: values against a direct double
loop, gradients against central finite differences (and wrong ones that fail), the identities
its pair weights satisfy, the reduction to SimCLR's InfoNCE, the labelled sources, and
training with ``negatives="supervised"``."""
import math

import numpy as np
import pytest

import minissl
from minissl.gradcheck import check_gradients, gradient_error, numerical_gradient
from minissl.losses import (gram_distances, simclr_weights, supcon, supcon_loss,
                            supcon_weights)
from minissl.train import TrainConfig, loss_and_grads


def direct(Z, labels, tau):
    """L_i = -(τ/|P(i)|) Σ_{p∈P(i)} log(e^{-r_ip/τ} / Σ_{a≠i} e^{-r_ia/τ}), mean over i."""
    B = len(Z)
    total = 0.0
    for i in range(B):
        r = [0.5 * float(np.sum((Z[i] - Z[j]) ** 2)) for j in range(B)]
        den = sum(math.exp(-r[a] / tau) for a in range(B) if a != i)
        pos = [p for p in range(B) if p != i and labels[p] == labels[i]]
        if pos:
            total += -tau / len(pos) * sum(math.log(math.exp(-r[p] / tau) / den) for p in pos)
    return total / B


def batch(seed=0, B=10, d=3, classes=3):
    g = np.random.default_rng(seed)
    return g.normal(size=(B, d)), g.integers(0, classes, B)


@pytest.mark.parametrize("tau", [0.2, 1.0, 3.0])
def test_value_matches_a_direct_double_loop(tau):
    Z, y = batch()
    value, _ = supcon_loss(Z, y, tau)
    assert value == pytest.approx(direct(Z, y, tau), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_matches_finite_differences_and_a_wrong_one_fails(seed):
    Z, y = batch(seed, B=8, classes=2)
    tau = 0.5
    _, dZ = supcon_loss(Z, y, tau)
    f = lambda: supcon_loss(Z, y, tau)[0]                    # noqa: E731
    check_gradients(f, [Z], [dZ], tol=1e-7)
    # negative controls: positives weighted 1 each instead of 1/|P(i)|, the mean over anchors
    # forgotten, only the positives' pull (the denominator's push left out)
    R, same = gram_distances(Z), y[:, None] == y[None, :]
    _, D = supcon(R, same, tau)
    P = same & ~np.eye(len(y), dtype=bool)
    wrongs = [D + P * (1 - 1 / np.maximum(P.sum(1, keepdims=True), 1)), D * len(y),
              P / np.maximum(P.sum(1, keepdims=True), 1)]
    num = numerical_gradient(f, [Z])
    for W in wrongs:
        assert gradient_error([minissl.losses.chain_gram(Z, W / len(y))], num) > 1e-2


def test_pair_weight_identities():
    """Σ_j dL_i/dr_ij = 0; non-positives are repelled (≤ 0); the positives as a group are
    attracted (Σ_p ≥ 0), while one positive can be pushed away."""
    Z, y = batch(2, B=12, classes=3)
    R, same = gram_distances(Z), y[:, None] == y[None, :]
    L, D = supcon(R, same, 0.4)
    P = same & ~np.eye(12, dtype=bool)
    np.testing.assert_allclose(D.sum(axis=1), 0, atol=1e-14)
    assert (D[~same] <= 0).all() and (np.diag(D) == 0).all()
    assert ((D * P).sum(axis=1) >= 0).all()
    # the derivative w.r.t. the distances themselves, by central differences
    Rc = R.copy()
    num = numerical_gradient(lambda: supcon(Rc, same, 0.4)[0].sum(), [Rc])[0]
    np.testing.assert_allclose(num, D, atol=1e-8)
    # two positives, one at distance 0 and one far: the near one is pushed away
    R2 = np.array([[0.0, 0.0, 3.0, 1.0], [0.0, 0.0, 3.0, 1.0], [3.0, 3.0, 0.0, 1.0],
                   [1.0, 1.0, 1.0, 0.0]])
    lab = np.array([0, 0, 0, 1])
    _, D2 = supcon(R2, lab[:, None] == lab[None, :], 0.5)
    assert D2[0, 1] < 0 < D2[0, 2] and D2[0, 1] + D2[0, 2] > 0


def test_one_positive_per_anchor_is_simclr_infonce():
    g = np.random.default_rng(3)
    N = 6
    Z = g.normal(size=(2 * N, 4))
    labels = np.concatenate([np.arange(N), np.arange(N)])
    a, b = supcon_weights(Z, labels, 0.3), simclr_weights(Z, "infonce", 0.3)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_allclose(x, y, atol=1e-14)
    assert a[3] == pytest.approx(b[3], rel=1e-12)


def test_anchor_without_positive_and_bad_input():
    Z, _ = batch(4, B=5)
    y = np.array([0, 0, 1, 2, 2])                           # anchor 2 has no positive
    L, C, r_pos, _ = supcon_weights(Z, y, 0.5)
    assert L[2] == 0 and (C[2] == 0).all() and r_pos[2] == 0
    assert supcon_loss(Z, y, 0.5)[0] == pytest.approx(direct(Z, y, 0.5), rel=1e-12)
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        supcon_loss(Z, y[:4])
    with pytest.raises(ValueError, match="labels must be integers"):
        supcon_loss(Z, y + 0.5)
    with pytest.raises(ValueError, match="tau must be"):
        supcon_loss(Z, y, 0.0)
    with pytest.raises(ValueError, match="B >= 2"):
        supcon_loss(Z[:1], y[:1])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        v, dZ = supcon_loss(Z * 300, y, 0.01)
    assert np.isfinite(v) and np.isfinite(dZ).all()


# ----------------------------------------------------------------------------- labelled sources
def test_labelled_sources():
    src = minissl.GaussianClusters(n_clusters=3, dim=4, noise=0.01, seed=0)
    x, xp, y = src.labelled(50, 1)
    assert x.shape == xp.shape == (50, 4) and y.shape == (50,)
    np.testing.assert_allclose(x, src.centers[y], atol=0.1)
    np.testing.assert_allclose(xp, src.centers[y], atol=0.1)
    tree = minissl.HLTM(4, 2, (0.9, 1.0), seed=0)
    x, xp, y = tree.labelled(4000, 2)
    assert set(np.unique(y)) == {0, 1} and x.shape == xp.shape == (4000, 16)
    # both views carry the root: its posterior from either view tracks the label
    for v in (x, xp):
        assert np.corrcoef(tree.posterior_mean(v)[:, 0], y)[0, 1] > 0.8
    low = minissl.HLTM(4, 2, (0.9, 1.0), seed=0, keep_depth=3, label_latent=2)
    _, xp, y = low.labelled(4000, 2)
    assert np.corrcoef(low.posterior_mean(xp)[:, 2], y)[0, 1] > 0.8
    with pytest.raises(ValueError, match="label_latent must be a latent of tree depth >= "):
        minissl.HLTM(4, 2, label_latent=2)
    with pytest.raises(ValueError, match="label_latent must be an integer"):
        minissl.HLTM(4, 2, label_latent=15)


# ----------------------------------------------------------------------------- training
def test_supervised_training_step_and_loop():
    src = minissl.GaussianClusters(n_clusters=4, dim=6, noise=0.3, seed=0)
    net = minissl.ReLUNet([6, 12, 5], seed=1)
    cfg = TrainConfig(negatives="supervised", tau=0.5, batch_size=8)
    x, xp, y = src.labelled(8, 3)
    value, _, _, grads = loss_and_grads(net, (x, xp, y), cfg)
    grads = [g.copy() for g in grads]
    assert value == pytest.approx(supcon_loss(net.forward(np.concatenate([x, xp])),
                                              np.concatenate([y, y]), 0.5)[0])
    f = lambda: loss_and_grads(net, (x, xp, y), cfg)[0]      # noqa: E731
    check_gradients(f, net.weights, grads, tol=1e-6)
    hist = minissl.train(net, src, cfg, lr=0.05, steps=150, batch_size=32, seed=2)
    assert np.mean(hist["loss"][-20:]) < np.mean(hist["loss"][:20]) - 0.1
    assert hist["r_neg"][-1] > hist["r_pos"][-1]


@pytest.mark.parametrize("kw,match", [
    (dict(loss="simple"), "needs loss='infonce'"),
    (dict(batch_size=1), "batch_size must be >= 2"),
])
def test_supervised_settings_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(negatives="supervised", **kw).validate()


def test_supervised_needs_a_labelled_source_and_gradient_updates():
    net = minissl.ReLUNet([4, 4], seed=0)
    src = minissl.GaussianViews(np.eye(4), 0.1 * np.eye(4))
    with pytest.raises(ValueError, match=r"source must be a data source with an integer dim and labelled\(n, rng\)"):
        minissl.train(net, src, negatives="supervised", steps=1)
    with pytest.raises(ValueError, match="update='covariance' takes negatives"):
        minissl.train(net, minissl.GaussianClusters(dim=4), negatives="supervised",
                      update="covariance", steps=1)


# ----------------------------------------------------------------------------- experiments
def test_hltm_pairings_and_the_supervision_command(capsys):
    from minissl.cli import commands as cli
    from minissl import experiments as E
    small = dict(depth=3, hid=4, epochs=1, samples_per_epoch=640, batch_size=64,
                 eval_samples=1000)
    for pairing in ("in_batch", "supervised"):
        records, _ = E.hltm_experiment(E.HLTMConfig(**small, pairing=pairing))
        assert [r["epoch"] for r in records] == [0, 1] and np.isfinite(records[-1]["loss"])
    with pytest.raises(ValueError, match="pairing must be one of"):
        E.HLTMConfig(pairing="labels").apply_preset()
    with pytest.raises(ValueError, match="label_latent must be a latent of tree depth"):
        E.HLTMConfig(**small, pairing="supervised", label_latent=1).apply_preset()
    argv = ["supervision", "--depth", "3", "--hid", "4", "--epochs", "1",
            "--samples-per-epoch", "640", "--batch-size", "64", "--eval-samples", "1000",
            "--seeds", "1", "--keep-depth", "2", "--label-latents", "0", "1"]
    assert cli.main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    head = next(r for r in rows if r[:1] == ["pairing"])
    assert head == ["pairing", "label", "seeds", "d3", "d2", "d1"]
    names = [(r[0], r[1]) for r in rows if r[:1] != ["#"]][1:]
    assert names == [("given", "-"), ("in_batch", "-"), ("supervised", "0"),
                     ("supervised", "1"), ("untrained", "-"), ("ceiling", "-")]
    assert cli.main(["hltm", "--depth", "3", "--hid", "4", "--epochs", "1",
                     "--samples-per-epoch", "640", "--batch-size", "64", "--eval-samples",
                     "1000", "--pairing", "supervised", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
