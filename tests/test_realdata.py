"""Real data: augmentations, loaders (digits, MNIST-1D, CIFAR-10 batches, image folders; the
restricted unpickler and the file bounds), the ``RealData`` source, and the runner / CLI."""
import io
import os
import pickle

import numpy as np
import pytest

from minissl import datasets as D
from minissl.datasets import augment as A
from minissl.datasets import loaders as LD

pytest.importorskip("sklearn")


# ----------------------------------------------------------------------------- augmentations
def _translate_loop(x, shape, dy, dx):
    """Reference: one sample moved by (dy, dx) (or dy along a 1-D signal), zero padding."""
    img = x.reshape(shape)
    out = np.zeros_like(img)
    if len(shape) == 1:
        for i in range(shape[0]):
            if 0 <= i - dy < shape[0]:
                out[i] = img[i - dy]
        return out.ravel()
    for i in range(shape[-2]):
        for j in range(shape[-1]):
            if 0 <= i - dy < shape[-2] and 0 <= j - dx < shape[-1]:
                out[..., i, j] = img[..., i - dy, j - dx]
    return out.ravel()


@pytest.mark.parametrize("shape", [(9,), (5, 6), (2, 4, 5)])
def test_translate_matches_a_loop(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, int(np.prod(shape))))
    out = A.translate(x, shape, 2, np.random.default_rng(3))
    g = np.random.default_rng(3)                     # the same draws, in the same order
    axes = 1 if len(shape) == 1 else 2
    shifts = [g.integers(-2, 3, len(x)) for _ in range(axes)]
    for n in range(len(x)):
        dy = shifts[0][n]
        dx = shifts[1][n] if axes == 2 else 0
        np.testing.assert_array_equal(out[n], _translate_loop(x[n], shape, dy, dx))
    assert not np.array_equal(out, x)               # something moved
    np.testing.assert_array_equal(A.translate(x, shape, 0, 1), x)


def test_translate_keeps_content_inside_and_pads_zero():
    x = np.zeros((200, 16))
    x[:, 5] = 1.0                                    # one lit pixel of a 4x4 image at (1, 1)
    out = A.translate(x, (4, 4), 1, 0)
    assert np.all(out.sum(1) == 1)                   # the pixel stays inside (|shift| <= 1)
    where = out.argmax(1)
    assert set(where) == {0, 1, 2, 4, 5, 6, 8, 9, 10}   # every shift in {-1, 0, 1}^2 happens


def test_masks_noise_and_scaling():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 50)) + 3.0
    m = A.random_mask(x, 0.7, 2)
    kept = m != 0
    assert abs(kept.mean() - 0.7) < 0.02 and np.array_equal(m[kept], x[kept])
    n = A.gaussian_noise(x, 0.5, 3) - x
    assert abs(n.std() - 0.5) < 0.01 and abs(n.mean()) < 0.01
    s = A.amplitude_scale(x, 0.5, 1.5, 4) / x        # one factor per row
    assert np.allclose(s, s[:, :1]) and 0.5 <= s.min() and s.max() <= 1.5
    assert s[:, 0].std() > 0.2
    a, b = A.complementary_masks(x, 5)
    np.testing.assert_allclose(a + b, 2 * x)
    assert np.all((a == 0) | (b == 0)) and abs((a != 0).mean() - 0.5) < 0.02
    np.testing.assert_array_equal(x, rng.normal(size=(0, 50)).sum() + np.asarray(x))


def test_compose_applies_in_order_with_one_generator():
    x = np.ones((3, 4))
    f = A.compose(lambda v, r: v * 2, lambda v, r: v + 1)
    np.testing.assert_array_equal(f(x, 0), 3 * x)
    g = A.compose(lambda v, r: A.gaussian_noise(v, 1.0, r), lambda v, r: A.random_mask(v, .5, r))
    assert np.array_equal(g(x, 7), g(x, 7)) and not np.array_equal(g(x, 7), g(x, 8))
    with pytest.raises(ValueError, match="augmentations"):
        A.compose(3)


@pytest.mark.parametrize("call,match", [
    (lambda: A.translate(np.ones((2, 6)), (2, 2), 1, 0), "shape"),
    (lambda: A.translate(np.ones((2, 4)), (2, 2), -1, 0), "max_shift"),
    (lambda: A.random_mask(np.ones((2, 4)), 0.0, 0), "keep"),
    (lambda: A.gaussian_noise(np.ones((2, 4)), -1, 0), "sigma"),
    (lambda: A.amplitude_scale(np.ones((2, 4)), 2.0, 1.0, 0), "hi"),
    (lambda: A.complementary_masks(np.ones(4), 0), "x must be"),
    (lambda: A.gaussian_noise(np.full((2, 2), np.nan), 1.0, 0), "x"),
])
def test_augmentations_refuse_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- loaders
def test_digits_split_is_fixed_by_seed():
    d = D.digits()
    assert d.x_train.shape == (1438, 64) and d.x_test.shape == (359, 64) and d.shape == (8, 8)
    assert np.array_equal(D.digits(0).x_test, d.x_test)
    assert not np.array_equal(D.digits(1).y_test, d.y_test)
    assert set(d.y_train) == set(range(10)) and d.x_train.max() == 16
    with pytest.raises(ValueError):
        d.x_train[0, 0] = 1.0                        # the cached arrays are read-only


def test_mnist1d_is_made_locally_and_leaves_global_rng_alone(monkeypatch):
    pytest.importorskip("mnist1d")
    import mnist1d.data
    monkeypatch.setattr(mnist1d.data.requests, "get", lambda *a, **k: pytest.fail("download"))
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    d = D.mnist1d()
    assert np.random.random() == before
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40) and d.shape == (40,)
    assert np.bincount(d.y_train, minlength=10).min() > 300


def test_a_missing_extra_is_one_line(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(D.MissingExtra) as err:
        LD.mnist1d.__wrapped__()
    msg = str(err.value)
    assert "\n" not in msg and 'pip install "minissl[data]"' in msg and "mnist1d" in msg


def _write_batch(path, n, seed, protocol=2, label_key=b"labels"):
    rng = np.random.default_rng(seed)
    d = {b"batch_label": b"test", label_key: [int(v) for v in rng.integers(0, 10, n)],
         b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
         b"filenames": [f"{i}.png".encode() for i in range(n)]}
    with open(path, "wb") as fh:
        pickle.dump(d, fh, protocol=protocol)
    return d


def test_cifar10_batches_round_trip(tmp_path):
    d1 = _write_batch(tmp_path / "data_batch_1", 12, 0)
    _write_batch(tmp_path / "data_batch_2", 8, 1, protocol=4)
    dt = _write_batch(tmp_path / "test_batch", 5, 2)
    ds = D.cifar10(tmp_path)
    assert ds.x_train.shape == (20, 1024) and ds.x_test.shape == (5, 1024)
    np.testing.assert_array_equal(ds.y_test, dt[b"labels"])
    rgb = d1[b"data"][0].reshape(3, 32, 32) / 255.0
    grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    np.testing.assert_allclose(ds.x_train[0], grey.ravel())
    colour = D.cifar10(tmp_path, grey=False, max_train=15)
    assert colour.shape == (3, 32, 32) and colour.x_train.shape == (15, 3072)
    np.testing.assert_allclose(colour.x_train[0], rgb.ravel())


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_reader_refuses_code_fifos_and_large_files(tmp_path):
    evil = tmp_path / "evil"
    evil.write_bytes(pickle.dumps({b"data": _Evil()}, protocol=2))
    with pytest.raises(D.UnsafeFileError, match=r"refused to unpickle (posix|os|nt)\.system"):
        D.read_cifar_batch(evil)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(D.UnsafeFileError, match="not a regular file"):
        D.read_cifar_batch(fifo)                    # refused before open (would block)
    _write_batch(tmp_path / "big", 4, 0)
    with pytest.raises(D.UnsafeFileError, match="more than the limit"):
        D.read_cifar_batch(tmp_path / "big", max_bytes=1000)
    (tmp_path / "junk").write_bytes(b"not a pickle at all")
    with pytest.raises(D.UnsafeFileError, match="not a CIFAR-10 batch"):
        D.read_cifar_batch(tmp_path / "junk")
    bad = tmp_path / "objects"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072)), b"labels": [0, 1]}))
    with pytest.raises(D.UnsafeFileError, match="uint8"):
        D.read_cifar_batch(bad)
    assert D.read_cifar_batch(tmp_path / "big")[0].shape == (4, 3072)   # the control


def test_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            arr = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    (tmp_path / "cat" / "notes.txt").write_text("skipped")
    ds = D.image_folder(tmp_path, size=8, test_fraction=0.2)
    assert ds.classes == ("cat", "dog") and ds.shape == (8, 8)
    assert ds.x_train.shape == (8, 64) and ds.x_test.shape == (2, 64)
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    with pytest.raises(ValueError, match="max_images"):
        D.image_folder(tmp_path, size=8, max_images=4)
    (tmp_path / "dog" / "broken.png").write_bytes(b"nope")
    with pytest.raises(D.UnsafeFileError, match="not a readable image"):
        D.image_folder(tmp_path, size=8)


def test_load_needs_a_path_for_local_data():
    with pytest.raises(ValueError, match="needs a local path"):
        D.load("cifar10")
    with pytest.raises(ValueError, match="data must be one of"):
        D.load("imagenet")
    assert D.load("digits").name == "digits"


# ----------------------------------------------------------------------------- the source
def test_source_standardises_from_the_training_split_and_follows_the_protocol():
    src = D.RealData(D.digits())
    x, y = src.train_set()
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
    assert abs(np.sqrt((x ** 2).mean()) - 1) < 1e-12
    v = src.views(6, 3, 0)
    assert v.shape == (6, 3, 64)
    assert np.allclose(v[:, 0], v[:, 1])            # no augmentation: views are the sample
    a, p, labels = src.labelled(5, 1)
    assert a.shape == p.shape == (5, 64) and labels.shape == (5,)
    rows = [np.flatnonzero((np.abs(x - a[i]) < 1e-9).all(1)) for i in range(5)]
    assert all(labels[i] in y[r] for i, r in enumerate(rows))
    a, p, neg = D.RealData(D.digits(), negatives=3).triples(4, 2)
    assert neg.shape == (4, 3, 64)


def test_source_views_are_augmented_and_complementary():
    raw = D.digits()
    src = D.RealData(raw, mask="complementary")
    v = src.views(50, 4, 0) * src.sigma + src.mu     # back to raw values
    lit = np.abs(v) > 1e-9
    assert not (lit[:, 0] & lit[:, 1]).any()         # views 0 and 1 share no pixel
    assert lit[:, 0].any() and lit[:, 1].any()
    np.testing.assert_allclose(v[:, 0] + v[:, 1], v[:, 2] + v[:, 3], atol=1e-9)   # both 2x
    assert not np.allclose(v[:, 0], v[:, 2])         # pairs independent
    aug = D.RealData(raw, shift=1, scale=0.2, noise=0.1, mask="random", keep=0.8)
    w = aug.views(20, 2, 1)
    assert not np.allclose(w[:, 0], w[:, 1])
    assert np.array_equal(aug.views(20, 2, 1), w)   # seeded
    with pytest.raises(ValueError, match="mask"):
        D.RealData(raw, mask="cutout")
    with pytest.raises(ValueError, match="shift"):
        D.RealData(raw, shift=8)


def test_unpickler_allows_latin1_bytes_only():
    assert LD.latin1_encode("ab\xff") == b"ab\xff"
    with pytest.raises(D.UnsafeFileError, match="rot13"):
        LD.latin1_encode("ab", "rot13")


# ----------------------------------------------------------------------------- runner, CLI
from minissl.experiments import realdata as R  # noqa: E402


def _small(**kw):
    base = dict(data="digits", hidden=(32,), out_dim=8, batch_size=64, epochs=2, log_every=1)
    return R.RealDataConfig(**{**base, **kw})


@pytest.mark.parametrize("method", R.METHODS)
def test_every_method_runs_and_reports(method):
    records = R.run(_small(method=method, probe_every=1 if method == "simclr" else 0))
    last = records[-1]
    for k in ("linear_probe", "linear_probe_hidden", "knn", "effective_rank", "seconds"):
        assert np.isfinite(last[k])
    assert 0.5 < last["linear_probe_hidden"] <= 1          # digits are easy
    if method in R.TRAINED:
        assert [r["epoch"] for r in records[:-1]] == [1, 2]
        assert records[0]["weights"].shape == (32, 64)
    if method == "simclr":
        assert "linear_probe" in records[0]
    if method == "covariance":
        assert all(-1 <= r["cos"] <= 1 for r in records[:-1])
    if method == "byol-linear":
        assert 0 <= last["predictor_offdiag"]


@pytest.mark.slow
def test_supervised_reference_learns_and_stops():
    import threading
    short = R.run(_small(method="supervised", epochs=1))[-1]
    random = R.run(_small(method="random"))[-1]
    assert short["linear_probe"] > random["linear_probe"] - 0.02
    seen = []
    R.run(_small(method="supervised", epochs=5), callback=lambda r: seen.append(r) or False)
    assert len(seen) == 2                                  # ended after the first record
    stop = threading.Event()
    stop.set()
    assert R.run(_small(method="simclr", epochs=5), stop=stop)[-1]["step"] == 1
    assert R.run(_small(method="simclr", epochs=1))[-1]["step"] == 23     # 1438 / 64


def test_config_errors_and_cost():
    from minissl.budget import Limits, ResourceLimitError
    with pytest.raises(ValueError, match="method must be one of"):
        R.RealDataConfig(method="mae").validate()
    with pytest.raises(ValueError, match="optimizer must be 'sgd'"):
        R.RealDataConfig(method="byol", optimizer="adam").validate()
    with pytest.raises(ValueError, match="bias must be False"):
        R.RealDataConfig(method="covariance", bias=True).validate()
    with pytest.raises(ResourceLimitError, match="epochs=1000"):
        R.run(R.RealDataConfig(epochs=1000), limits=Limits(max_memory=1 << 30, max_work=1e9))


def test_cli_json_and_errors(capsys, monkeypatch):
    import json
    from minissl.cli import commands as cli
    assert cli.main(["realdata", "--data", "digits", "--method", "raw", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("linear_probe", "linear_probe_hidden", "knn", "effective_rank", "seconds"):
        assert k in out
    assert out["linear_probe"] == out["linear_probe_hidden"] > 0.9
    assert cli.main(["realdata", "--data", "cifar10"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs a local path" in err
    monkeypatch.setattr(R, "load", lambda *a: (_ for _ in ()).throw(
        D.MissingExtra('mnist1d is not installed: pip install "minissl[data]"')))
    assert cli.main(["realdata", "--data", "mnist1d", "--method", "raw"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "minissl[data]"' in err
    with pytest.raises(SystemExit):
        cli.main(["realdata", "--lr", "0"])
    assert "--lr" in capsys.readouterr().err


def test_cli_table(capsys):
    from minissl.cli import commands as cli
    assert cli.main(["realdata", "--data", "digits", "--table", "--methods", "raw", "random",
                     "--seeds", "2", "--hidden", "16", "--out-dim", "4"]) == 0
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    assert lines[0].split()[:2] == ["setting", "linear_probe"]
    assert lines[1].startswith("raw") and lines[2].startswith("random") and "±" in lines[1]
    assert "# raw" in cap.err


def test_first_layer_and_curve_figures():
    from minissl.figures import plots
    rng = np.random.default_rng(0)
    for shape, W in (((8, 8), rng.normal(size=(20, 64))), ((40,), rng.normal(size=(20, 40)))):
        fig = plots.first_layer_figure([W, 2 * W], shape, ["a", "b"], n=6)
        assert len(fig.axes) == 12
        plots.close(fig)
    fig = plots.realdata_curves_figure([1, 2], [0.5, 0.4], [2], [0.9])
    assert len(fig.axes) == 2
    plots.close(fig)


# ----------------------------------------------------------------------------- settings, review
FLAGS = ["--data", "--path", "--method", "--seed", "--hidden", "--out-dim", "--bias",
         "--no-bias", "--epochs", "--batch-size", "--optimizer", "--lr", "--momentum",
         "--weight-decay", "--tau", "--loss", "--shift", "--scale", "--noise", "--mask", "--keep",
         "--bn-mean", "--bn-var", "--ema", "--predictor-hidden", "--predictor-lr", "--backend", "--dtype",
         "--log-every", "--probe-every", "--knn-k", "--json", "--table", "--methods", "--claim",
         "--seeds", "--figure", "--threads"]


def test_flags_are_the_configs_settings(capsys):
    """Every field is a ``setting`` with help; the flags are made from them and keep their
    names, types and choices; no flag given leaves the config's own defaults."""
    from dataclasses import fields
    from minissl.cli import commands as cli
    assert all(f.metadata.get("help") for f in fields(R.RealDataConfig))
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    actions = sub.choices["realdata"]._actions
    assert [o for a in actions for o in a.option_strings][2:] == FLAGS
    by = {a.dest: a for a in actions}
    assert (by["hidden"].type, by["hidden"].nargs) == (int, "+")
    assert (by["epochs"].type, by["shift"].type, by["keep"].type) == (int, int, float)
    assert tuple(by["method"].choices) == R.METHODS and tuple(by["data"].choices) == D.DATA
    args = parser.parse_args(["realdata", "--hidden", "32", "16", "--epochs", "3"])
    assert cli._config(R.RealDataConfig, args) == R.RealDataConfig(hidden=(32, 16), epochs=3)
    with pytest.raises(SystemExit):
        parser.parse_args(["realdata", "--help"])
    assert "(default: per data and method)" in capsys.readouterr().out


@pytest.mark.parametrize("kw, match", [
    (dict(keep=2.0), r"keep must be a finite number in \(0, 1\], got 2.0"),
    (dict(scale=-1.0), r"scale must be"),
    (dict(shift=-1), r"shift must be an integer >= 0"),
    (dict(epochs=1.5), r"epochs must be an integer"),
    (dict(hidden=()), r"hidden must be a tuple of one or more widths"),
    (dict(hidden=(8, 0)), r"hidden\[1\] must be an integer in \[1, 4096\]"),
    (dict(weight_decay=1e-3), r"weight_decay must be 0 with optimizer='adam'"),
    (dict(method="supcon", loss="simple"), r"loss must be 'infonce' for method='supcon'"),
    (dict(method="byol", bias=True), r"bias must be False for method='byol'"),
    (dict(dtype="float16"), r"dtype must be one of"),
])
def test_validate_checks_every_setting(kw, match):
    with pytest.raises(ValueError, match=match):
        R.RealDataConfig(**kw).validate()


def test_validate_returns_integers():
    c = R.RealDataConfig(epochs=3.0, seed=np.int64(2), shift=1.0).validate()
    assert (type(c.epochs), type(c.seed), type(c.shift)) == (int, int, int)
    assert R.run(R.RealDataConfig(**{**_small(method="random").__dict__, "epochs": 2.0}))


def test_cli_names_the_flag_of_an_augmentation_setting(capsys):
    from minissl.cli import commands as cli
    with pytest.raises(SystemExit) as exc:
        cli.main(["realdata", "--keep", "2", "--method", "raw"])
    assert exc.value.code == 2 and "--keep: keep must be" in capsys.readouterr().err


def test_byol_defaults_reach_its_optimisers():
    """byol's defaults (lr 0.1, weight decay 1e-3, predictor 10 x lr) reach ``BYOLConfig`` and
    the predictor's SGD; byol-nopred shares lr and weight decay; the other BYOL methods keep a
    predictor at lr; a flag overrides."""
    c = R.RealDataConfig(data="mnist1d", method="byol").validate()
    assert (c.lr, c.weight_decay, c.predictor_lr) == (0.1, 1e-3, 10.0)
    b = R.byol_config(c, 1, 1)
    assert (b.lr, b.weight_decay, b.predictor_lr, b.ema) == (0.1, 1e-3, 10.0, 0.99)
    model = R.BYOL(40, b)
    assert model.opt.lr == pytest.approx(0.1) and model.opt_pred.lr == pytest.approx(1.0)
    assert model.opt_pred.wd == pytest.approx(1e-4)          # lr * eta per step, as the encoder
    nopred = R.RealDataConfig(method="byol-nopred").validate()
    assert (nopred.lr, nopred.weight_decay) == (c.lr, c.weight_decay)   # a like-for-like ablation
    for m in ("byol-nopred", "byol-linear", "directpred"):
        assert R.RealDataConfig(method=m).validate().predictor_lr == 1.0
    assert R.RealDataConfig(method="byol", predictor_lr=2.0).validate().predictor_lr == 2.0
    with pytest.raises(ValueError, match="predictor_lr must be"):
        R.RealDataConfig(method="byol", predictor_lr=0.0).validate()


@pytest.mark.parametrize("method", ["simclr", "byol", "directpred"])
def test_initial_weights_are_the_runs_start(method):
    """``initial_weights`` is the first layer the run starts from (a run with a vanishing
    learning rate ends there), BYOL's online encoder too."""
    cfg = _small(method=method, epochs=1, lr=1e-9)
    w = R.run(cfg)[-1]["weights"]
    w0 = R.initial_weights(cfg, 64)
    assert np.abs(w0).max() > 0.01 and np.allclose(w, w0, atol=1e-6)


def test_supervised_follows_the_optimizer():
    runs = {o: R.run(_small(method="supervised", optimizer=o, lr=0.01, epochs=1))[-1]["weights"]
            for o in ("adam", "sgd")}
    assert not np.allclose(runs["adam"], runs["sgd"], atol=1e-3)


def test_table_runs_carry_their_seed_and_the_figure_skips_untrained_rows(capsys, tmp_path):
    from minissl.cli import commands as cli
    png = tmp_path / "dw.png"
    assert cli.main(["realdata", "--data", "digits", "--table", "--methods", "raw", "simclr",
                     "--seeds", "2", "--hidden", "16", "--out-dim", "4", "--epochs", "1",
                     "--figure", str(png)]) == 0
    assert png.stat().st_size > 1000
    rows = R.table(_small(epochs=1), R.methods_rows(("random",)), seeds=(1, 2))
    assert [r["seed"] for r in rows[0]["runs"]] == [1, 2]


def test_table_checks_every_row_before_running():
    from minissl.budget import Limits, ResourceLimitError
    seen = []
    rows = (("random", dict(method="random")), ("long", dict(method="simclr", epochs=1000)))
    with pytest.raises(ResourceLimitError, match="epochs=1000"):
        R.table(_small(), rows, seeds=(0,), callback=seen.append,
                limits=Limits(max_memory=1 << 30, max_work=1e9))
    assert seen == []
    with pytest.raises(ValueError, match="keep must be"):
        R.table(_small(), (("random", dict(method="random")), ("bad", dict(keep=2.0))),
                seeds=(0,), callback=seen.append)
    assert seen == []


def test_cli_table_checks_its_rows_methods_not_the_default_one(capsys):
    """--weight-decay with a table of SGD methods runs (the default --method, SimCLR's Adam,
    is not what the table trains); the same flag with an Adam row is refused, naming it."""
    from minissl.cli import commands as cli
    assert cli.main(["realdata", "--data", "digits", "--weight-decay", "2e-3", "--epochs", "1",
                     "--hidden", "16", "--out-dim", "4", "--table", "--methods", "byol-nopred",
                     "--seeds", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("byol-nopred")
    with pytest.raises(SystemExit) as exc:
        cli.main(["realdata", "--data", "digits", "--weight-decay", "2e-3", "--table",
                  "--methods", "simclr", "byol-nopred", "--seeds", "1"])
    assert exc.value.code == 2 and "--weight-decay: weight_decay must be 0 with optimizer" \
        in capsys.readouterr().err
