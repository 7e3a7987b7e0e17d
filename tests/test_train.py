"""The training loop on the toy source: it learns, it is reproducible, it stops on divergence,
its SGD matches the formula, and bad settings are refused."""
import numpy as np
import pytest

import minissl
from minissl import GaussianClusters, ReLUNet, TrainConfig, TrainingDiverged, train
from minissl.backend import cupy_available
from minissl.train import SGD


@pytest.mark.parametrize("loss,negatives", [("simple", "given"), ("soft_triplet", "given"),
                                            ("infonce", "given"), ("infonce", "in_batch")])
def test_training_lowers_loss_and_separates_pairs(loss, negatives):
    src = GaussianClusters(n_clusters=4, dim=8, noise=0.3, seed=0,
                           negatives=3 if loss == "infonce" else 1)
    net = ReLUNet([8, 32, 16], seed=1, normalize=(loss == "simple"))
    cfg = TrainConfig(loss=loss, tau=0.5, lr=0.05, steps=300, batch_size=32,
                      negatives=negatives, seed=2)
    hist = train(net, src, cfg)
    first, last = np.mean(hist["loss"][:20]), np.mean(hist["loss"][-20:])
    assert last < first - 0.05 * abs(first)
    assert np.mean(hist["r_pos"][-20:]) < 0.5 * np.mean(hist["r_neg"][-20:])


def test_same_seed_same_history():
    src = GaussianClusters(seed=0)
    runs = [train(ReLUNet([8, 16, 4], seed=3), src, steps=30, lr=0.02, seed=5)["loss"]
            for _ in range(2)]
    assert runs[0] == runs[1]
    other = train(ReLUNet([8, 16, 4], seed=3), src, steps=30, lr=0.02, seed=6)["loss"]
    assert other != runs[0]


def test_divergence_stops_with_a_clear_message():
    src = GaussianClusters(seed=0, noise=1.0)
    net = ReLUNet([8, 64, 64, 8], seed=0)
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+.*smaller learning rate"):
        train(net, src, loss="simple", lr=50.0, steps=200)


def test_callback_sees_records_and_can_stop():
    seen = []

    def cb(rec):
        seen.append((rec["step"], rec["loss"]))
        return rec["step"] < 6
    hist = train(ReLUNet([8, 8, 4], seed=0), GaussianClusters(seed=0), steps=50, log_every=3,
                 callback=cb)
    assert [s for s, _ in seen] == [3, 6] and len(hist) == 6


def test_stop_flag_ends_the_run_after_the_step():
    import threading
    stop = threading.Event()

    def cb(rec):
        if rec["step"] == 4:
            stop.set()
    hist = train(ReLUNet([8, 8, 4], seed=0), GaussianClusters(seed=0), steps=50, callback=cb,
                 stop=stop)
    assert len(hist) == 4


def test_sgd_momentum_and_weight_decay_follow_the_formula():
    W = np.array([[1.0, -2.0]])
    opt = SGD([W], lr=0.1, momentum=0.9, weight_decay=0.01)
    g = np.array([[0.5, 0.5]])
    opt.step([g])
    v1 = g + 0.01 * np.array([[1.0, -2.0]])
    np.testing.assert_allclose(W, [[1.0, -2.0]] - 0.1 * v1)
    W_prev = W.copy()
    opt.step([g])
    v2 = 0.9 * v1 + g + 0.01 * W_prev
    np.testing.assert_allclose(W, W_prev - 0.1 * v2)


@pytest.mark.parametrize("field,value,match", [
    ("lr", 0.0, "lr must be"), ("lr", -1.0, "lr must be"), ("tau", 0.0, "tau must be"),
    ("loss", "nce2", "loss must be one of"), ("momentum", 1.0, "momentum must be"),
    ("steps", 0, "steps must be"), ("batch_size", 2.5, "batch_size must be"),
    ("negatives", "all", "negatives must be one of"), ("update", "adam", "update must be one of"),
    ("weight_decay", -0.1, "weight_decay must be"),
])
def test_config_errors_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{field: value}).validate()


def test_in_batch_needs_infonce():
    with pytest.raises(ValueError, match="in_batch.*infonce"):
        TrainConfig(loss="simple", negatives="in_batch").validate()


def test_toy_source_shapes_and_errors():
    src = GaussianClusters(n_clusters=3, dim=5, negatives=2, seed=0)
    x, xp, xn = src.triples(7, np.random.default_rng(0))
    assert x.shape == (7, 5) and xp.shape == (7, 5) and xn.shape == (7, 2, 5)
    assert src.views(4, 3, 0).shape == (4, 3, 5)
    with pytest.raises(ValueError, match="n_clusters must be"):
        GaussianClusters(n_clusters=1)
    with pytest.raises(ValueError, match="noise must be"):
        GaussianClusters(noise=-1)


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and an NVIDIA GPU")
def test_cupy_backend_matches_numpy():
    src = GaussianClusters(seed=0)
    h_np = train(ReLUNet([8, 16, 4], seed=3), src, steps=20, lr=0.02)["loss"]
    h_cp = train(ReLUNet([8, 16, 4], seed=3, backend="cupy"), src, steps=20, lr=0.02)["loss"]
    np.testing.assert_allclose(h_cp, h_np, rtol=1e-9)
    assert minissl.backend.to_numpy(ReLUNet([3, 2], backend="cupy").weights[0]).shape == (2, 3)


# ----------------------------------------------------------------------------- validate once
@pytest.mark.parametrize("backend, negatives", [("numpy", "given"), ("numba", "given"),
                                                ("numpy", "in_batch"), ("numpy", "supervised")])
def test_a_training_step_checks_its_input_once(monkeypatch, backend, negatives):
    """The run's settings are validated when it starts; then each step checks its batch once
    (one ``check_input`` of all its views, one finite check) and re-validates nothing else:
    the per-step count of each check is the difference between a 5-step and a 1-step run."""
    import importlib
    B, LS, NT, TR = (importlib.import_module(f"minissl.{m}")
                     for m in ("backend", "losses", "nets", "train"))
    counts = {}

    def counting(owner, name):
        fn = getattr(owner, name)

        def wrapped(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return fn(*args, **kwargs)
        monkeypatch.setattr(owner, name, wrapped)

    counting(NT.Network, "check_input")
    counting(B, "check_finite")
    for mod in (TR, LS):
        counting(mod, "check_loss")
    counting(TR, "check_negatives")
    per_run = []
    for steps in (1, 5):
        counts.clear()
        net = ReLUNet([8, 16, 4], seed=0, backend=backend)
        train(net, GaussianClusters(dim=8, seed=0), loss="infonce", tau=0.5, lr=0.01,
              steps=steps, batch_size=8, negatives=negatives, seed=1)
        per_run.append(dict(counts))
    per_step = {k: (per_run[1].get(k, 0) - per_run[0].get(k, 0)) / 4 for k in per_run[1]}
    assert per_step["check_input"] == 1 and per_step["check_finite"] == 1, per_step
    assert per_step.get("check_loss", 0) == 0, per_step
    assert per_step.get("check_negatives", 0) == (1 if negatives == "given" else 0), per_step
