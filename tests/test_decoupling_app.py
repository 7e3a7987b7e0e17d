"""The app's Feature decoupling tab in-process: a short streamed run with its pictures and
status line, Stop, and bad settings named in the error."""
import base64
import io

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from app import decoupling as app_dec  # noqa: E402
from app import runs as app_runs  # noqa: E402

SHORT = dict(steps=60, width=8, dense_rank=20, seed=1)


class _Req:
    def __init__(self, session_hash):
        self.session_hash = session_hash


def _quiet(*a, **k):
    pass


def _not_blank(plot):
    from matplotlib.image import imread
    img = imread(io.BytesIO(base64.b64decode(plot.plot.split(",", 1)[1])), format="png")
    rgb = img[..., :3]
    return (np.abs(rgb - np.median(rgb.reshape(-1, 3), axis=0)).sum(-1) > 0.1).mean() > 0.02


def test_streamed_run_shows_the_neurons():
    outs = list(app_dec.train_decoupling("mask", 0.5, **SHORT, progress=_quiet))
    neurons, curves, status = outs[-1]
    assert status.startswith("done: step 60/60 · sparse alignment")
    assert "ρ_sparse" in status and "/8 neurons" in status and "/16 features" in status
    assert _not_blank(neurons) and _not_blank(curves)


def test_stop_ends_the_run():
    req = _Req("test-decoupling-stop")
    gen = app_dec.train_decoupling(**{**SHORT, "steps": 5000}, request=req, progress=_quiet)
    next(gen)
    assert app_runs.stop_training(req).startswith("stopped by the user at step")
    *_, status = list(gen)[-1]
    assert status.startswith("stopped by the user: step")
    assert "test-decoupling-stop" not in app_runs.RUNS


@pytest.mark.parametrize("setting, message", [
    (dict(augmentation="mask", strength=0.0), r"strength \(the mask's keep probability p\)"),
    (dict(dense_rank=49), r"dense rank must be an integer in \[0, 48\], got 49"),
    (dict(augmentation="crop"), r"augmentation must be one of"),
    (dict(neuron="tanh"), r"neuron must be one of \('symmetric', 'relu'\)"),
    (dict(dense_rank=0, dense_energy=1.0), r"dense_energy must be 0 when dense_rank is 0"),
    (dict(steps=5), r"steps must be an integer in \[10, 5000\]"),
])
def test_bad_settings_are_named(setting, message):
    with pytest.raises(gr.Error, match=message):
        next(app_dec.train_decoupling(**setting, progress=_quiet))


def test_largest_settings_fit_the_app_limits():
    big = {k: v[3] for k, v in app_dec.DECOUPLING_FIELDS.items()}       # every field at its maximum
    big.update(augmentation="noise", neuron="symmetric")
    cfg = app_dec.decoupling_config(big)
    assert cfg.cost().seconds < 120
