"""Bad input, huge input: every entry point refuses it with the documented error naming the
parameter, quickly (pytest-timeout makes a hang fail) and before allocating (tracemalloc's
peak stays far below what the request would need).

Documented errors: ``ValueError`` naming the parameter and the allowed values (NaN/inf
included, never ``TrainingDiverged``); ``ResourceLimitError`` (a ValueError) naming the
setting, the estimate and the limit; ``CheckpointError`` for a bad file. The app's and the
CLI's own cases are in tests/test_demo.py and below (``cli.main``).
"""
import contextlib
import io
import math
import os
import re
import sys
import tracemalloc
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minissl
import minissl.io as mio
from minissl.cli import commands as cli
from minissl import linear_byol as LB
from minissl import experiments as E
from minissl.backend import check_int, check_real
from minissl.byol import BYOL, BYOLConfig, train_byol
from minissl.checks import MAX_SHOWN, check_bool, check_choice, shown
from minissl.decoupling import SparseCoding, measured_correlations
from minissl.layers import BatchNorm, Linear
from minissl.io.checkpoint import CheckpointError, save_state
from minissl.covariance import covariance_operator, covariance_spectrum, covariance_update
from minissl.data import GaussianClusters
from minissl.hltm import HLTM
from minissl.budget import PUBLIC_APP, Limits, ResourceLimitError
from minissl.losses import LOSSES, TAU_MIN, contrastive_loss, pair_weights, simclr_loss
from minissl.metrics import correlation_ceiling, normalized_correlation
from minissl.nets import ReLUNet, tree_network
from minissl.train import TrainConfig, TrainingDiverged, train

pytestmark = pytest.mark.timeout(20)
MiB = 1 << 20
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
NAN, INF = float("nan"), float("inf")


@pytest.fixture(autouse=True)
def default_limits(monkeypatch):
    monkeypatch.delenv("MINISSL_MAX_MEMORY", raising=False)
    monkeypatch.delenv("MINISSL_MAX_WORK", raising=False)


def refused(fn, error, match, peak_mib=64):
    """``fn()`` raises ``error`` matching ``match``, allocating at most ``peak_mib`` MiB."""
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match) as info:
            fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < peak_mib * MiB, f"allocated {peak / MiB:.0f} MiB before refusing"
    assert not isinstance(info.value, TrainingDiverged)
    return str(info.value)


# ----------------------------------------------------------------------------- strict types
@pytest.mark.parametrize("fn, match", [
    (lambda: ReLUNet([8, 2.5, 4]), r"sizes\[1\] must be an integer in \[1, 1048576\], got 2\.5"),
    (lambda: ReLUNet("84"), r"sizes must be a list of integers"),
    (lambda: ReLUNet(b"84"), r"sizes must be a list of integers"),
    (lambda: ReLUNet([8, True]), r"sizes\[1\] must be an integer"),
    (lambda: ReLUNet([8, "4"]), r"sizes\[1\] must be an integer"),
    (lambda: ReLUNet([2, 3], init_scale=NAN), r"init_scale must be a finite number > 0, got nan"),
    (lambda: ReLUNet([2, 3], norm_eps=INF), r"norm_eps must be a finite number >= 0"),
    (lambda: BYOL(8, hidden=(2.7,)), r"hidden\[0\] must be an integer >= 1, got 2\.7"),
    (lambda: BYOL(8, hidden="64"), r"hidden must be a tuple of widths"),
    (lambda: BYOL(8, ema=NAN), r"ema must be a finite number in \[0, 1\), got nan"),
    (lambda: BYOL(8, lr=-1), r"lr must be a finite number > 0"),
    (lambda: TrainConfig(steps=NAN).validate(), r"steps must be an integer in \[1, 1000000000\]"),
    (lambda: TrainConfig(steps="10").validate(), r"steps must be an integer"),
    (lambda: TrainConfig(momentum="a").validate(), r"momentum must be a finite number in \[0, 1\)"),
    (lambda: TrainConfig(margin=NAN).validate(), r"margin must be a finite number, got nan"),
    (lambda: TrainConfig(weight_decay=INF).validate(), r"weight_decay must be a finite number >= 0"),
    (lambda: TrainConfig(tau=NAN).validate(), r"tau must be a finite number >= 1e-08"),
    (lambda: TrainConfig(tau=5e-324).validate(), r"tau must be a finite number >= 1e-08"),
    (lambda: TrainConfig(lr=True).validate(), r"lr must be a finite number > 0, got True"),
    (lambda: TrainConfig(batch_size=2.5).validate(), r"batch_size must be an integer"),
    (lambda: TrainConfig(seed=-1).validate(), r"seed must be an integer >= 0, got -1"),
    (lambda: HLTM(depth=10 ** 9), r"depth must be an integer in \[1, 64\], got 1000000000"),
    (lambda: HLTM(depth=10 ** 7, num_children=1), r"depth must be an integer in \[1, 64\]"),
    (lambda: HLTM(depth=3, num_children=2.5), r"num_children must be an integer"),
    (lambda: HLTM(polarity=(NAN, 1.0)), r"polarity must be a pair"),
    (lambda: HLTM(polarity=("0.1", "0.9")), r"polarity must be a pair"),
    (lambda: LB.default_problem(n=10 ** 9), r"n must be an integer in \[1, 1024\]"),
    (lambda: HLTM(negatives=0), r"negatives must be an integer in \[1, 65536\]"),
    (lambda: GaussianClusters(dim=1e9), r"dim must be an integer in \[1, 1048576\]"),
    (lambda: GaussianClusters(noise=NAN), r"noise must be a finite number >= 0"),
    (lambda: minissl.backend.rng(-1), r"seed must be an integer >= 0, got -1"),
    (lambda: E.HLTMConfig(seed=-1).apply_preset(), r"seed must be an integer >= 0, got -1"),
    (lambda: E.HLTMConfig(hid="10").apply_preset(), r"hid must be an integer"),
    (lambda: E.CovarianceConfig(n_samples=1.5).validate(), r"n_samples must be an integer"),
    (lambda: E.loss_curves(r_pos=NAN), r"r_pos must be a finite number >= 0"),
    (lambda: E.loss_curves(H=1e12), r"H must be an integer in \[1, 65536\]"),
    (lambda: minissl.collapsed_loss(H=10 ** 12), r"H must be an integer in \[1, 65536\]"),
])
def test_bad_settings_name_the_parameter(fn, match):
    refused(fn, ValueError, match)


def test_numpy_scalars_are_accepted():
    cfg = TrainConfig(lr=np.float32(0.1), steps=np.int64(3), batch_size=np.int32(4),
                      momentum=np.float64(0.5), tau=np.float16(0.5)).validate()
    assert cfg.lr == pytest.approx(0.1) and cfg.steps == 3
    net = ReLUNet([np.int64(4), np.int32(3)], init_scale=np.float32(2.0))
    assert net.sizes == [4, 3] and all(type(n) is int for n in net.sizes)
    train(net, GaussianClusters(dim=4), cfg)


@FAST
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 30, 10 ** 30),
                 st.booleans(), st.text(max_size=3), st.none(),
                 st.sampled_from([np.float32(2.5), np.int64(7), np.float64(NAN), np.bool_(True)])))
def test_check_int_and_real_are_strict(v):
    ok_int = (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)) and math.isfinite(v) and float(v).is_integer() and 0 <= v <= 10 ** 6)
    if ok_int:
        assert check_int("n", v, 0, 10 ** 6) == int(v)
    else:
        with pytest.raises(ValueError, match=r"^n must be an integer in \[0, 1000000\]"):
            check_int("n", v, 0, 10 ** 6)
    ok_real = (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)) and math.isfinite(v))
    if ok_real:
        assert check_real("x", v) == float(v)
    else:
        with pytest.raises(ValueError, match=r"^x must be a finite number"):
            check_real("x", v)


# ----------------------------------------------------------------------------- NaN is not divergence
def test_nan_inputs_to_byol_are_named_not_diverged():
    model = BYOL(4, hidden=(8,), out_dim=4)
    x = np.zeros((6, 4))
    refused(lambda: model.step(np.full((6, 4), NAN), x), ValueError, r"^x1 contains NaN")
    refused(lambda: model.step(x, np.full((6, 4), INF)), ValueError, r"^x2 contains NaN")


class NaNSource:
    dim, negatives = 4, 1

    def triples(self, n, rng):
        x = np.zeros((n, 4))
        x[0, 0] = NAN
        return x, np.zeros((n, 4)), np.zeros((n, 1, 4))


def test_nan_data_in_training_is_named_not_diverged():
    refused(lambda: train(ReLUNet([4, 3]), NaNSource(), steps=3, batch_size=4), ValueError,
            r"^x contains NaN")


def test_a_finite_run_that_blows_up_still_diverges():
    with pytest.raises(TrainingDiverged, match="diverged at step"):
        train(ReLUNet([8, 16, 4], seed=0), GaussianClusters(dim=8), loss="simple", lr=50.0,
              steps=500, batch_size=16)


# ----------------------------------------------------------------------------- the losses
Z = np.random.default_rng(0).standard_normal((5, 3))


@pytest.mark.parametrize("fn, match", [
    (lambda: contrastive_loss(Z, Z, np.zeros((5, 0, 3))), r"z_neg must hold H >= 1 negatives"),
    (lambda: contrastive_loss(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 1, 3))),
     r"z must have shape \(N, d\) with N, d >= 1, got \(0, 3\)"),
    (lambda: contrastive_loss(Z, Z[:4], Z), r"z_pos must have the shape of z"),
    (lambda: contrastive_loss(Z, Z, Z, tau=5e-324), r"tau must be a finite number >= 1e-08"),
    (lambda: contrastive_loss(Z, Z, Z, margin=NAN), r"margin must be a finite number"),
    (lambda: contrastive_loss(Z, Z, Z, loss="hinge"), r"loss must be one of"),
    (lambda: contrastive_loss(Z * NAN, Z, Z), r"z contains NaN"),
    (lambda: contrastive_loss(Z * 1e200, Z, Z), r"z, z_pos, z_neg are too large"),
    (lambda: simclr_loss(Z[:1], Z[:1]), r"z1 must have N >= 2 rows"),
    (lambda: simclr_loss(Z * 1e200, Z), r"z1, z2 are too large"),
    (lambda: pair_weights(np.zeros(2), np.zeros((2, 1)), tau=0), r"tau must be a finite number"),
])
def test_bad_embeddings_are_named(fn, match):
    refused(fn, ValueError, match)


@FAST
@given(scale=st.floats(1e-300, 1e140), tau=st.floats(TAU_MIN, 1e3),
       margin=st.floats(-1e3, 1e3), seed=st.integers(0, 2 ** 16),
       N=st.integers(1, 6), H=st.integers(1, 4), d=st.integers(1, 4),
       loss=st.sampled_from(sorted(LOSSES)))
def test_losses_stay_finite_for_finite_embeddings(scale, tau, margin, seed, N, H, d, loss):
    g = np.random.default_rng(seed)
    H = H if loss == "infonce" else 1
    z, zp, zn = (scale * g.standard_normal(s) for s in ((N, d), (N, d), (N, H, d)))
    value, grads = contrastive_loss(z, zp, zn, loss, tau, margin)
    assert math.isfinite(value) and all(np.isfinite(gr).all() for gr in grads)
    if N >= 2:
        value, grads = simclr_loss(z, zp, tau=tau)
        assert math.isfinite(value) and all(np.isfinite(gr).all() for gr in grads)


@FAST
@given(shapes=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=3, max_size=3),
       dtype=st.sampled_from(["float64", "float32", "int64"]))
def test_random_shapes_are_refused_with_a_named_error(shapes, dtype):
    (a, b), (c, e), (f, h) = shapes
    z, zp, zn = np.ones((a, b), dtype), np.ones((c, e), dtype), np.ones((f, h, b or 1), dtype)
    try:
        value, _ = contrastive_loss(z, zp, zn)
    except ValueError as exc:
        assert str(exc).split(" ")[0] in ("z", "z_pos", "z_neg", "z,")
    else:
        assert math.isfinite(value) and a >= 1 and b >= 1


# ----------------------------------------------------------------------------- the HLTM
def test_correlation_of_a_nan_net_is_an_error():
    tree = HLTM(3, 2)
    net = tree_network(tree, 4)
    net.weights[0][...] = NAN
    refused(lambda: normalized_correlation(tree, net, n=100), ValueError,
            r"NaN or infinite pre-activations at layer")


def test_non_binary_leaves_are_refused():
    tree = HLTM(3, 2)
    net = tree_network(tree, 4)
    x, z = tree.sample(50, 0)
    for fn in (lambda: tree.posterior_mean(x + 0.5),
               lambda: correlation_ceiling(tree, x=2 * x, z=z),
               lambda: normalized_correlation(tree, net, x=x - 0.3, z=z)):
        refused(fn, ValueError, r"x must hold binary values")
    refused(lambda: correlation_ceiling(tree, x=x, z=z + 0.5), ValueError,
            r"z must hold binary values")
    refused(lambda: correlation_ceiling(tree, x=x[:1], z=z[:1]), ValueError, r"n >= 2")


# ----------------------------------------------------------------------------- resources
@pytest.mark.parametrize("fn, match", [
    (lambda: ReLUNet([30000, 30000]),
     r"sizes=\[30000, 30000\] needs ~20\.1 GiB for the network's weights, gradients and masks; "
     r"the limit is 2\.0 GiB \(raise it with MINISSL_MAX_MEMORY=21G"),
    (lambda: GaussianClusters(n_clusters=2 ** 20, dim=2 ** 20),
     r"n_clusters=1048576, dim=1048576 needs ~8\.0 TiB for the cluster centres"),
    (lambda: GaussianClusters(dim=4).views(10 ** 9, 2, 0), r"n=1000000000, m=2 needs"),
    (lambda: HLTM(5, 2).sample(10 ** 10), r"n=10000000000 needs ~.* TiB"),
    (lambda: HLTM(5, 2, negatives=1000).triples(10 ** 6), r"n=1000000 \(x 1002\) needs"),
    (lambda: tree_network(HLTM(16, 2), 1), r"depth=16, num_children=2, hid=1 needs ~85\.3 GiB"),
    (lambda: train(ReLUNet([8, 4]), GaussianClusters(), batch_size=10 ** 7, steps=1),
     r"batch_size=10000000 needs ~.* GiB for a training batch"),
    (lambda: train(ReLUNet([8, 4]), GaussianClusters(), steps=10 ** 9),
     r"steps=1000000000, batch_size=64 needs ~.* multiply-adds \(~.* s\) for training"),
    (lambda: train_byol(GaussianClusters(dim=8), batch_size=10 ** 7),
     r"batch_size=10000000 needs ~.* for a training batch"),
    (lambda: E.HLTMConfig(hid=1000, epochs=0).apply_preset().check_cost(),
     r"depth=5, num_children=2, hid=1000 needs ~5\.1 GiB for the tree network"),
    (lambda: E.HLTMConfig(depth=16, hid=1).apply_preset().check_cost(),
     r"depth=16, num_children=2, hid=1 needs ~85\.3 GiB"),
    (lambda: E.HLTMConfig(batch_size=10 ** 7, samples_per_epoch=10 ** 7).apply_preset()
     .check_cost(), r"batch_size=10000000 needs ~.* for a training batch"),
    (lambda: E.HLTMConfig(eval_samples=10 ** 9).apply_preset().check_cost(),
     r"eval_samples=1000000000, hid=10 needs ~14\.6 TiB for the evaluation pass"),
    (lambda: E.HLTMConfig(negatives=30000).apply_preset().check_cost(),
     r"batch_size=128, negatives=30000 needs ~.* GiB for a training batch"),
    (lambda: E.HLTMConfig(samples_per_epoch=10 ** 12).apply_preset().check_cost(),
     r"epochs=20, samples_per_epoch=1000000000000, batch_size=128 needs ~.* for training"),
    (lambda: E.hltm_experiment(E.HLTMConfig(hid=1000, epochs=0)), r"hid=1000 needs"),
    (lambda: E.CovarianceConfig(n_samples=10 ** 5, n_views=8).validate().cost().check(),
     r"views of shape \(N, M\) = \(100000, 8\) needs ~10\.9 GiB"),
    (lambda: E.run_ablation(cfg=BYOLConfig(steps=10 ** 8)), r"runs=12, steps=100000000 needs"),
    (lambda: LB.euler(*LB.default_problem(), T=1e12, dt=1e-3), r"T=1e\+12, dt=0\.001 needs"),
    (lambda: E.HLTMConfig(probe="all", probe_samples=10 ** 6).apply_preset().check_cost(),
     r"probe='all', probe_samples=1000000 needs ~.* for a probe"),
    (lambda: E.selectivity_experiment(E.with_settings(E.SelectivityConfig(), steps=10 ** 9,
                                                              snapshots=1)),
     r"samples_per_epoch=128000000000, batch_size=128 needs"),
    (lambda: E.acceleration_experiment(E.with_settings(E.AccelerationConfig(), steps=10 ** 9,
                                                       snapshots=1)),
     r"arms=3, epochs=1, samples_per_epoch=128000000000"),
    (lambda: LB.simulate_sgd(*LB.default_problem(), T=1e9, lr=0.01), r"T=1e\+09, lr=0\.01 needs"),
    (lambda: ReLUNet([8, 4], limits=Limits(1 << 20, 1e9)).forward(np.zeros((100000, 8))),
     r"x with N=100000 rows needs ~36\.6 MiB for the forward and backward passes"),
])
def test_huge_requests_are_refused_before_allocating(fn, match):
    msg = refused(fn, ResourceLimitError, match)
    assert "the limit is" in msg and "raise it with MINISSL_MAX_" in msg


def test_the_explicit_operator_points_to_the_matrix_free_functions():
    net = ReLUNet([256, 256, 4])                      # layer 0: 65,536 weights
    views = np.random.default_rng(0).standard_normal((32, 2, 256))
    msg = refused(lambda: covariance_operator(net, views, 0), ResourceLimitError,
                  r"layer=0 \(P = 256 x 256 = 65,536 weights\), N=32 needs ~96\.1 GiB for the "
                  r"explicit operator OP")
    assert "covariance_update and covariance_spectrum(method='lanczos') are matrix-free" in msg
    refused(lambda: covariance_spectrum(net, views, 0, k=2, method="dense"), ResourceLimitError,
            r"explicit operator OP")
    assert covariance_update(net, views, 0).shape == (256, 256)      # matrix-free: fine


def test_limits_keyword_and_environment(monkeypatch):
    tight = Limits(max_memory=64 * 1024, max_work=1e6)
    refused(lambda: ReLUNet([100, 100], limits=tight), ResourceLimitError,
            r"sizes=\[100, 100\] needs ~234\.4 KiB .* the limit is 64\.0 KiB")
    ReLUNet([100, 100])                               # the default limits admit it
    big = Limits(max_memory=64 << 30, max_work=1e15)
    assert E.HLTMConfig(hid=1000, epochs=0).apply_preset().check_cost(big).bytes > 2 << 30
    monkeypatch.setenv("MINISSL_MAX_MEMORY", "100K")
    refused(lambda: ReLUNet([100, 100]), ResourceLimitError, r"the limit is 100\.0 KiB")
    monkeypatch.setenv("MINISSL_MAX_WORK", "1e6")
    monkeypatch.setenv("MINISSL_MAX_MEMORY", "2G")
    refused(lambda: train(ReLUNet([8, 4]), GaussianClusters(), steps=100), ResourceLimitError,
            r"steps=100, batch_size=64 needs .* the limit is 1e\+06")


def test_public_app_limits_refuse_what_the_api_allows():
    cfg = E.HLTMConfig(depth=2, hid=1, batch_size=2, samples_per_epoch=5000 * 2, epochs=200,
                       eval_samples=4000).apply_preset()
    cfg.check_cost()                                  # the API's limits: fine
    msg = refused(lambda: cfg.check_cost(PUBLIC_APP), ResourceLimitError, r"for training")
    assert "the limit is 6e+11 (~120 s)" in msg       # 10^6 tiny steps: the per-step floor


# ----------------------------------------------------------------------------- checkpoints
def _state(sizes, weights):
    return {"sizes": sizes, "bias": False, "normalize": False, "norm_eps": 0.0,
            "dtype": "float64", "weights": weights, "biases": None, "masks": None}


def test_forged_checkpoint_sizes_are_bounded_before_building(tmp_path):
    path = tmp_path / "forged.npz"
    save_state(path, _state([12000, 12000], [np.zeros((2, 2))]), kind="ReLUNet")  # checksum ok
    refused(lambda: mio.load(path), ResourceLimitError,
            r"the state's sizes=\[12000, 12000\] needs ~3\.2 GiB for the network's weights")
    refused(lambda: mio.load(path, limits=Limits(8 << 30, 1e13)), CheckpointError,
            r"does not describe a valid ReLUNet: weights\[0\] has shape \(2, 2\), expected "
            r"\(12000, 12000\)")


def test_checkpoint_with_nan_weights_is_refused(tmp_path):
    path = tmp_path / "nan.npz"
    save_state(path, _state([2, 3], [np.full((3, 2), NAN)]), kind="ReLUNet")
    refused(lambda: mio.load(path), CheckpointError, r"weights\[0\] contains NaN")
    refused(lambda: mio.from_state(_state([2, 3], [np.full((3, 2), INF)])), ValueError,
            r"weights\[0\] contains NaN or infinite values")
    refused(lambda: mio.from_state({"sizes": [2, 3]}), ValueError,
            r"a ReLUNet state must be a dict with keys")


# ----------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("argv, match", [
    (["hltm", "--seed", "-1"], r"--seed: seed must be an integer >= 0, got -1"),
    (["hltm", "--hid", "1000", "--epochs", "0"], r"hid=1000 needs ~5\.1 GiB for the tree network"),
    (["hltm", "--depth", "16", "--hid", "1"], r"hid=1 needs ~85\.3 GiB"),
    (["hltm", "--batch-size", "10000000", "--samples-per-epoch", "10000000"],
     r"batch_size=10000000 needs"),
    (["hltm", "--eval-samples", "1000000000"], r"eval_samples=1000000000, hid=10 needs"),
    (["hltm", "--eval-samples", "1e9"], r"--eval-samples: invalid int value: '1e9'"),
    (["hltm", "--negatives", "1000000"], r"--negatives: negatives must be an integer in"),
    (["hltm", "--samples-per-epoch", "1000000000000"], r"samples_per_epoch=1000000000000"),
    (["hltm", "--tau", "nan"], r"--tau: tau must be a finite number"),
    (["hltm", "--lr", "inf"], r"--lr: lr must be a finite number > 0"),
    (["sweep", "--n-jobs", "0"], r"--n-jobs: must be an integer >= 1, or -1 for all cores"),
    (["sweep", "--csv", "/nonexistent/x.csv"], r"--csv: cannot write '/nonexistent/x\.csv'"),
    (["byol", "--jobs", "0"], r"--jobs: must be an integer >= 1"),
    (["byol", "--steps", "100000000"], r"runs=12, steps=100000000 needs"),
    (["covariance", "--n-samples", "100000", "--n-views", "8"], r"\(100000, 8\) needs"),
    (["selectivity", "--steps", "1000000000"], r"samples_per_epoch=128000000000"),
    (["acceleration", "--steps", "1000000000"], r"arms=3, epochs=1"),
])
def test_cli_refuses_with_a_usage_error(argv, match, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv + (["--no-progress"] if argv[0] in ("hltm", "sweep") else []))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(match, err), err


# ============================================================================= round 2 (#21)
HUGE_INT = 10 ** 300                       # 301 digits
HUGE_TEXT = "x" * 5_000_000                # 5 MB
BOUND = 400                                # characters any validator message may have


# ----------------------------------------------------------------------------- strings are not bools
@pytest.mark.parametrize("fn, match", [
    (lambda: ReLUNet([2, 3], normalize="False", bias="no"), r"bias must be True or False, got 'no'"),
    (lambda: ReLUNet([2, 3], normalize="False"), r"normalize must be True or False, got 'False'"),
    (lambda: ReLUNet([2, 3], bias=1), r"bias must be True or False, got 1$"),
    (lambda: ReLUNet([2, 3], normalize=None), r"normalize must be True or False, got None"),
    (lambda: Linear(2, 3, bias="False"), r"bias must be True or False"),
    (lambda: BatchNorm(4, affine="True"), r"affine must be True or False"),
    (lambda: BYOL(8, normalize="False"), r"normalize must be True or False, got 'False'"),
    (lambda: BYOLConfig(symmetric="yes").validate(), r"symmetric must be True or False"),
    (lambda: BYOLConfig(directpred=0).validate(), r"directpred must be True or False, got 0"),
    (lambda: E.HLTMConfig(bias="no").apply_preset(), r"bias must be True or False, got 'no'"),
    (lambda: E.HLTMConfig(normalize=1.0).apply_preset(), r"normalize must be True or False"),
    (lambda: mio.from_state({**_state([2, 3], [np.zeros((3, 2))]), "bias": "no"}),
     r"bias must be True or False"),
])
def test_strings_and_numbers_are_not_booleans(fn, match):
    refused(fn, ValueError, match)


def test_booleans_still_work():
    assert ReLUNet([2, 3], bias=np.bool_(True), normalize=False).bias is True
    assert E.HLTMConfig(bias=True, normalize=False).apply_preset().bias is True


@FAST
@given(st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.none(),
                 st.sampled_from([np.bool_(False), np.int8(1), "True", "", [], [True]])))
def test_check_bool_takes_only_bools(v):
    if isinstance(v, (bool, np.bool_)):
        assert check_bool("flag", v) is bool(v)
    else:
        with pytest.raises(ValueError, match=r"^flag must be True or False, got "):
            check_bool("flag", v)


# ----------------------------------------------------------------------------- echoed values are cut
HOSTILE_VALUES = st.one_of(
    st.integers(-10 ** 400, 10 ** 400), st.text(min_size=0, max_size=3000),
    st.lists(st.integers(), max_size=400), st.floats(allow_nan=True),
    st.sampled_from([HUGE_INT, -HUGE_INT, 10 ** 5000, HUGE_TEXT, [HUGE_TEXT], {"k": HUGE_TEXT},
                     b"\x00" * 10000, np.arange(10 ** 5)]))


@FAST
@given(HOSTILE_VALUES)
def test_no_validator_message_exceeds_a_bound(v):
    """Whatever the value (a 301-digit integer, a 5 MB string, a long list), a refusal echoes at
    most ``MAX_SHOWN`` characters of it: every message stays under ``BOUND``."""
    checks = [lambda: check_int("n", v, 0, 10), lambda: check_real("lr", v, 0, 1, hi_open=True),
              lambda: check_choice("loss", v, ("a", "b")), lambda: check_bool("bias", v),
              lambda: ReLUNet(v), lambda: ReLUNet([2, v]), lambda: HLTM(polarity=v),
              lambda: TrainConfig(frozen=v).validate(), lambda: TrainConfig(lr=v).validate(),
              lambda: TrainConfig(loss=v).validate(), lambda: BYOLConfig(ema=v).validate(),
              lambda: BYOLConfig(hidden=v).validate(), lambda: GaussianClusters(noise=v),
              lambda: E.HLTMConfig(hid=v).apply_preset(), lambda: minissl.backend.rng(v),
              lambda: train(ReLUNet([4, 3]), v, steps=1)]
    for fn in checks:
        try:
            fn()
        except (ValueError, TypeError) as exc:
            assert len(str(exc)) < BOUND, (fn, str(exc)[:200])
    assert len(shown(v)) <= MAX_SHOWN


@pytest.mark.parametrize("fn, match", [
    (lambda: check_int("n", HUGE_INT, 0, 10), r"got 10{50,}… \(301 characters\)$"),
    (lambda: check_choice("loss", HUGE_TEXT, ("a",)), r"got 'x+… \(5,000,002 characters\)$"),
    (lambda: check_int("n", 10 ** 5000, 0, 10), r"got <an integer of 16,610 bits>"),
    (lambda: ReLUNet(HUGE_TEXT), r"sizes must be a list of integers .*\(5,000,002 characters\)"),
    (lambda: HLTM(polarity=HUGE_TEXT), r"polarity must be a pair .*characters\)$"),
    (lambda: Limits(max_memory=HUGE_TEXT, max_work=1.0), r"max_memory must be .*characters\)$"),
])
def test_huge_values_are_echoed_cut(fn, match):
    msg = refused(fn, ValueError, match, peak_mib=80)
    assert len(msg) < BOUND


def test_malformed_environment_limits_are_cut(monkeypatch):
    monkeypatch.setenv("MINISSL_MAX_MEMORY", "9" * 100_000 + "Q")
    msg = refused(lambda: ReLUNet([4, 4]), ValueError, r"^MINISSL_MAX_MEMORY='9+… \(100,003 "
                  r"characters\) is not allowed; use e\.g\. MINISSL_MAX_MEMORY=2G$")
    assert len(msg) < BOUND


# ----------------------------------------------------------------------------- numbers past a float
@pytest.mark.parametrize("fn, match", [
    (lambda: train(ReLUNet([8, 4]), GaussianClusters(), lr=10 ** 400, steps=1),
     r"^lr must be a finite number > 0, got 10+… \(401 characters\)$"),
    (lambda: TrainConfig(tau=-10 ** 400).validate(), r"^tau must be a finite number"),
    (lambda: BYOL(8, lr=10 ** 400), r"^lr must be a finite number > 0"),
    (lambda: GaussianClusters(noise=10 ** 309), r"^noise must be a finite number >= 0"),
    (lambda: check_real("x", 10 ** 400), r"^x must be a finite number, got"),
    (lambda: E.HLTMConfig(lr=10 ** 400).apply_preset(), r"^lr must be a finite number > 0"),
])
def test_integers_too_large_for_a_float_are_value_errors(fn, match):
    """``float(10**400)`` raises OverflowError; the validators say which parameter it was."""
    refused(fn, ValueError, match)


@pytest.mark.parametrize("fn, match", [
    (lambda: BYOL(8, ema=1.0), r"ema must be a finite number in \[0, 1\), got 1\.0"),
    (lambda: TrainConfig(momentum=1.0).validate(), r"momentum must be a finite number in \[0, 1\)"),
    (lambda: minissl.optim.Adam([], beta2=1.0), r"beta2 must be a finite number in \[0, 1\)"),
    (lambda: E.run_ablation(emas=[1.0]), r"emas must be a finite number in \[0, 1\), got 1\.0"),
])
def test_half_open_ranges_say_so(fn, match):
    refused(fn, ValueError, match)


# ----------------------------------------------------------------------------- the data-source protocol
@pytest.mark.parametrize("source, negatives, match", [
    ("data.csv", "given", r"source must be a data source with an integer dim and triples\(n, rng\)"
                          r" -> \(x, x_pos, x_neg\) \(for negatives='given'\).*got str 'data\.csv'"),
    (np.zeros((10, 8)), "in_batch", r"source must be a data source with an integer dim and "
                                    r"views\(n, m, rng\)"),
    (None, "supervised", r"labelled\(n, rng\) -> \(x, x_pos, labels\).*got NoneType None"),
    (type("TextDim", (), {"dim": "8", "triples": lambda self, n, rng: 0})(), "given",
     r"source must be a data source with an integer dim"),
])
def test_train_names_a_source_without_the_protocol(source, negatives, match):
    refused(lambda: train(ReLUNet([8, 4]), source, negatives=negatives, steps=1,
                          batch_size=4), ValueError, match)


# ----------------------------------------------------------------------------- checkpoints, round 2
def _masked_state():
    tree = HLTM(3, 2)
    return tree, tree_network(tree, 4).state()


def test_nonzero_masked_weights_are_refused(tmp_path):
    """A masked weight must be 0: the NumPy backend multiplies the stored weights, the
    compiled one skips masked entries, so a forged file made them compute different nets."""
    tree, st = _masked_state()
    st["weights"][0] = np.where(st["masks"][0] == 0, 3.0, st["weights"][0])
    save_state(tmp_path / "m.npz", st, kind="ReLUNet")                 # checksum ok
    n = int((st["masks"][0] == 0).sum())
    refused(lambda: mio.load(tmp_path / "m.npz"), CheckpointError,
            rf"weights\[0\] is non-zero at {n} entries where masks\[0\] is 0; a masked weight "
            r"must be 0")
    refused(lambda: mio.from_state(st), ValueError, r"weights\[0\] is non-zero")
    st["weights"][0] = st["weights"][0] * st["masks"][0]
    st["masks"][1] = st["masks"][1] * 2.0
    refused(lambda: mio.from_state(st), ValueError, r"masks\[1\] must contain only 0 and 1")
    _, good = _masked_state()
    assert mio.from_state(good).masks is not None                      # a clean state loads


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "folder", "link_to_dev_zero"])
def test_files_that_are_not_regular_are_refused_before_opening(tmp_path, kind):
    """A FIFO never returned and /dev/zero read until MemoryError; both are refused by
    ``os.stat`` before they are opened (pytest-timeout fails a hang)."""
    path = tmp_path / "x.npz"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "link_to_dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path = "/dev/zero"
    what = {"fifo": "a FIFO", "folder": "a folder"}.get(kind, "a character device")
    refused(lambda: mio.load(path), CheckpointError,
            rf"is {what}; a checkpoint is read only from a regular file")


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path):
    path = tmp_path / "big.npz"
    with open(path, "wb") as fh:                     # sparse: 3 GiB of nothing on disk
        fh.truncate(3 << 30)
    refused(lambda: mio.load(path), ResourceLimitError,
            r"path='.*big\.npz' needs ~3\.0 GiB for the checkpoint file \(3,221,225,472 bytes, "
            r"less 16 MiB of headers\); the limit is 2\.0 GiB")
    with open(path, "r+b") as fh:
        fh.truncate(1 << 20)                         # small but not a zip: read, refused
    refused(lambda: mio.load(path), CheckpointError, r"is not a readable minissl checkpoint")


def test_a_file_that_grows_is_read_as_it_was(tmp_path):
    path = tmp_path / "n.npz"
    mio.save(ReLUNet([3, 2]), path)
    from minissl.io.checkpoint import _Bounded        # noqa: PLC2701 (the reader under test)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        with open(path, "ab") as grow:
            grow.write(b"\0" * 4096)
        bounded = _Bounded(fh, size)
        assert bounded.seek(0, 2) == size and bounded.read() == b""
        bounded.seek(size - 10)
        assert len(bounded.read(1 << 20)) == 10


def test_a_failed_save_names_the_target_not_the_temporary_file(tmp_path):
    target = tmp_path / "missing" / "net.npz"
    with pytest.raises(FileNotFoundError) as info:
        mio.save(ReLUNet([3, 2]), target)
    assert info.value.filename == str(target) and ".minissl-" not in str(info.value)
    assert "cannot write in" in str(info.value)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        mio.save(ReLUNet([3, 2]), tmp_path / "dir.npz")
    assert info.value.filename == str(tmp_path / "dir.npz") and ".minissl-" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["dir.npz"]       # no temporary file left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_save_into_a_read_only_folder_names_the_target(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(PermissionError) as info:
        mio.save(ReLUNet([3, 2]), folder / "net.npz")
    assert info.value.filename == str(folder / "net.npz")


def test_a_forged_header_field_is_echoed_cut(tmp_path):
    path = tmp_path / "k.npz"
    save_state(path, {"a": np.ones(2)}, kind="K" * 500_000)
    msg = refused(lambda: mio.load(path), CheckpointError, r"holds a 'K+… \(500,002 characters\)")
    assert len(msg) < BOUND + len(str(path))


# ----------------------------------------------------------------------------- sizes that multiply
def test_the_correlation_checks_its_cost_before_drawing():
    """``normalized_correlation`` drew its n samples (1.2 GB) and then refused on its limit:
    the cost of n is checked first."""
    tree = HLTM(5, 2)
    net = tree_network(tree, 10)
    refused(lambda: normalized_correlation(tree, net, n=1_000_000), ResourceLimitError,
            r"n=1000000 needs ~.* GiB for the evaluation pass")
    refused(lambda: correlation_ceiling(tree, n=1_000_000, limits=Limits(64 << 20, 1e13)),
            ResourceLimitError, r"n=1000000 needs .* the limit is 64\.0 MiB")
    assert normalized_correlation(tree, net, n=200).per_latent.shape == (tree.n_latents,)


@pytest.mark.parametrize("k, method, match", [
    (19_990, "auto", r"k=19990, layer=0 \(P = 100 x 200 = 20,000 weights\) needs ~8\.9 GiB for "
                     r"the Lanczos workspace \(ncv = 20000 vectors of length P\)"),
    (12_000, "lanczos", r"needs ~.* GiB for the Lanczos workspace \(ncv = 20000"),
    (19_999, "auto", r"explicit operator OP"),
])
def test_the_spectrum_workspace_is_in_the_estimate(k, method, match):
    """eigsh keeps ncv = max(2k + 1, 20) Lanczos vectors of length P (4 GiB at k near P), the
    dense path P² numbers more: refused before the solver allocates."""
    net = ReLUNet([200, 100, 4])
    views = np.random.default_rng(0).standard_normal((16, 2, 200))
    refused(lambda: covariance_spectrum(net, views, 0, k=k, method=method), ResourceLimitError,
            match)


@pytest.mark.parametrize("fn, match", [
    (lambda: SparseCoding().views(10 ** 7, 4, 0), r"n=10000000, m=4 needs ~186\.0 GiB for "
                                                  r"10,000,000 samples of dim 128 with 4 views"),
    (lambda: SparseCoding(negatives=1000).triples(10 ** 5, 0),
     r"n=100000, negatives=1000 needs ~1\.1 TiB"),
    (lambda: SparseCoding().views(3, 10 ** 9, 0), r"n=3, m=1000000000 needs"),
    (lambda: measured_correlations(SparseCoding(), 10 ** 9, 0), r"n=1000000000, m=2 needs"),
    (lambda: SparseCoding().views(2.5, 2, 0), r"n must be an integer >= 1, got 2\.5"),
])
def test_sparse_coding_views_are_sized_before_drawing(fn, match):
    refused(fn, ValueError, match)


# ----------------------------------------------------------------------------- the CLI, round 2
def _usage_error(argv, capsys, match, monkeypatch=None, env=None):
    """``cli.main(argv)`` is a usage error (exit 2, one line naming the flag), fast and before
    anything is printed on stdout or allocated."""
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    msg = refused(lambda: cli.main(argv), SystemExit, "^2$")
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err, (out, err)
    last = err.strip().splitlines()[-1]
    assert re.search(match, last), last
    return last


@pytest.mark.parametrize("argv, match", [
    (["sweep", "--seeds", "100000000"], r"--seeds: 100,000,000 runs; at most 10,000"),
    (["sweep", "--seeds", "200"], r"1 configurations x --seeds 200 needs ~6\.27e\+13 "
                                  r"multiply-adds .* for 200 runs; the limit is 1e\+13"),
    (["sweep", "--hid", "3", "4", "5", "--loss", "simple", "infonce", "--seeds", "2000"],
     r"--seeds: 12,000 runs; at most 10,000"),
    (["selectivity", "--seeds", "100000000"], r"--seeds 100000000: 100,000,000 runs"),
    (["selectivity", "--seeds", "1000"], r"--seeds 1000 needs .* for 1,000 runs"),
    (["supervision", "--seeds", "100000000"], r"3 runs per seed x --seeds 100000000: "
                                              r"300,000,000 runs"),
    (["decoupling", "--table", "--measured", "1000000000"],
     r"--measured 1000000000 needs ~10\.7 TiB for 1,000,000,000 samples"),
    (["decoupling", "--table", "--seeds", "1000"], r"--seeds 1000 x 14 settings: 14,000 runs"),
    (["selectivity", "--n-jobs", "0"], r"--n-jobs: must be an integer >= 1, or -1"),
    (["supervision", "--n-jobs", "0"], r"--n-jobs: must be an integer >= 1, or -1"),
    (["acceleration", "--figure", "/nonexistent/a.png"], r"--figure: cannot write "
                                                         r"'/nonexistent/a\.png'"),
    (["decoupling", "--table", "--figure", "/nonexistent/d.png"], r"--figure: cannot write"),
    (["byol-figures", "--seed", "-1"], r"--seed: seed must be an integer >= 0, got '-1'"),
    (["byol-figures", "--outdir", "/nonexistent/deeper/img"], r"--outdir: cannot write in"),
    (["decoupling", "--seeds", "2"], r"--seeds: needs --table"),
    (["decoupling", "--measured", "100"], r"--measured: needs --table"),
    (["decoupling", "--table", "--augmentation", "mask"], r"--augmentation: every setting of "
                                                          r"--table sets augmentation"),
    (["decoupling", "--table", "--log-every", "5"], r"--log-every: --table reads only"),
    (["hltm", "--probe-samples", "500"], r"--probe-samples: needs --probe"),
    (["byol", "--depth", "3"], r"--depth: has no effect with --data toy"),
    (["byol", "--data", "hltm", "--noise", "0.5"], r"--noise: has no effect with --data hltm"),
    (["byol", "--predictor-hidden", "8"], r"--predictor-hidden: only the mlp predictor"),
    (["byol", "--predictors", "none", "--directpred"], r"--directpred: DirectPred sets a linear"),
    (["supervision", "--pairing", "given"], r"unrecognized arguments: --pairing given"),
    (["sweep", "--seed", "7", "--see", "3"], r"unrecognized arguments: --see 3"),   # no prefixes
    (["supervision", "--loss", "simple"], r"--loss: loss must be infonce for pairings in_batch "
                                          r"and supervised"),
    (["supervision", "--label-latents", "1"], r"--label-latents: "),
    (["selectivity", "--hid", "3"], r"--k \(not given: its default does not fit --hid\): k must"),
    (["hltm", "--depth", str(HUGE_INT)], r"--depth: depth must be an integer in \[1, 64\], "
                                         r"got 10+… \(301 characters\)$"),
    (["hltm", "--hid", "9" * 5000], r"--hid: .*characters\)$"),
])
def test_cli_refuses_hostile_flags_cleanly(argv, match, capsys):
    last = _usage_error(argv, capsys, match)
    assert len(last) < BOUND + 200


@pytest.mark.parametrize("argv", [["byol-figures"], ["hltm"], ["decoupling", "--table"]])
def test_a_malformed_limit_variable_is_a_usage_error(argv, capsys, monkeypatch):
    _usage_error(argv, capsys, r"MINISSL_MAX_MEMORY='garbage' is not allowed; use e\.g\. "
                 r"MINISSL_MAX_MEMORY=2G", monkeypatch, {"MINISSL_MAX_MEMORY": "garbage"})


def test_a_missing_cluster_extra_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)       # import distributed fails
    _usage_error(["sweep", "--dask", "tcp://127.0.0.1:1"], capsys,
                 r'this needs distributed, which is not installed: pip install "minissl\[cluster\]"')


class Ran(Exception):
    """The sweep's runner was reached."""


@FAST
@given(st.integers(-10 ** 30, 10 ** 30))
def test_any_seeds_count_is_refused_or_accepted_before_running(n):
    """``--seeds N`` for any integer: a usage error before anything is enumerated, or the
    runs reach the runner (mocked); never a traceback, a hang or a MemoryError."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            mock.patch.object(E, "run_sweep", side_effect=Ran):
        try:
            cli.main(["sweep", "--seeds", str(n)])
            raise AssertionError("returned without running")
        except SystemExit as e:
            assert e.code == 2 and "Traceback" not in err.getvalue()
            assert n < 1 or n > 31, err.getvalue()          # 32 default runs pass the limit
        except Ran:
            assert 1 <= n <= 31
    if n < 1:
        assert "--seeds: must be an integer >= 1" in err.getvalue()
