"""Bad input, huge input: every entry point refuses it with the documented error naming the
parameter, quickly (pytest-timeout makes a hang fail) and before allocating (tracemalloc's
peak stays far below what the request would need).

Documented errors: ``ValueError`` naming the parameter and the allowed values (NaN/inf
included, never ``TrainingDiverged``); ``ResourceLimitError`` (a ValueError) naming the
setting, the estimate and the limit; ``CheckpointError`` for a bad file. The app's and the
CLI's own cases are in tests/test_demo.py and below (``cli.main``).
"""
import math
import re
import tracemalloc

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
