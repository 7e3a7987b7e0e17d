"""The app's Real data tab in-process: a short streamed run with its pictures and status
line, Stop, and bad settings named in the error."""
import pytest

gr = pytest.importorskip("gradio")
pytest.importorskip("sklearn")

from app import realdata as app_real  # noqa: E402
from app import runs as app_runs  # noqa: E402
from test_decoupling_app import _Req, _not_blank, _quiet  # noqa: E402

SHORT = dict(data="digits", augmentation="complementary masks", method="simclr", epochs=3,
             width=16, seed=1)


def test_streamed_run_shows_loss_probe_and_weights():
    outs = list(app_real.train_realdata(**SHORT, progress=_quiet))
    curves, weights, status = outs[-1]
    assert status.startswith("done: digits · simclr · test linear probe: output")
    assert "effective rank" in status and _not_blank(curves) and _not_blank(weights)


def test_stop_ends_the_run():
    req = _Req("test-realdata-stop")
    gen = app_real.train_realdata(**{**SHORT, "epochs": 200, "width": 128}, request=req,
                                  progress=_quiet)
    next(gen)
    assert app_runs.stop_training(req).startswith("stopped by the user at step")
    *_, status = list(gen)[-1]
    assert status.startswith("stopped by the user: digits")
    assert "test-realdata-stop" not in app_runs.RUNS


@pytest.mark.parametrize("setting, message", [
    (dict(data="cifar10"), r"data must be one of \('digits', 'mnist1d'\)"),
    (dict(augmentation="crop"), r"augmentation must be one of"),
    (dict(method="mae"), r"method must be one of"),
    (dict(epochs=0), r"epochs must be an integer in \[1, 200\], got 0"),
    (dict(width=4), r"hidden width must be an integer in \[8, 256\]"),
    (dict(data="mnist1d", method="covariance", epochs=200, width=256), r"needs ~.* multiply-adds"),
])
def test_bad_settings_are_named(setting, message):
    with pytest.raises(gr.Error, match=message):
        next(app_real.train_realdata(**{**SHORT, **setting}, progress=_quiet))


def test_default_settings_fit_the_app_limits():
    for data in app_real.APP_DATA:
        for method in app_real.APP_METHODS:
            if method != "covariance":
                app_real.realdata_config(dict(data=data, augmentation="default", method=method,
                                              epochs=40, width=128, seed=0))


def test_fields_come_from_the_config_settings():
    """The number fields are RealDataConfig's settings (help, integer kind, the app's default),
    the endpoint's inputs and defaults are unchanged."""
    import inspect
    from dataclasses import fields
    from minissl import experiments as E
    help_ = {f.name: f.metadata["help"] for f in fields(E.RealDataConfig)}
    for key in ("epochs", "seed"):
        field = app_real.REALDATA_FIELDS[key]
        assert field.hint.startswith(help_[key]) and field.kind is int and field.label == key
    assert app_real.REALDATA_FIELDS["epochs"].default == 40
    params = inspect.signature(app_real.train_realdata).parameters
    assert list(params)[:6] == list(app_real.REALDATA_ORDER)
    assert [params[k].default for k in app_real.REALDATA_ORDER] == [
        "digits", "default", "simclr", 40, 128, 0]
