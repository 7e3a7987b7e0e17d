"""The Gradio app in-process: the /train_hltm endpoint through gradio_client, errors naming
the field and bound, Stop, divergence, no figure leak, the covariance and losses tabs, the
plot builders they use, and the command line.

The server is launched once per module with ``prevent_thread_lock=True`` on a free port.
"""
import base64
import contextlib
import gc
import io
import json

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import demo  # noqa: E402
from app import covariance as app_cov  # noqa: E402
from app import hltm as app_hltm  # noqa: E402
from app import losses as app_losses  # noqa: E402
from app import runs as app_runs  # noqa: E402
from app import widgets as app_widgets  # noqa: E402
import minissl  # noqa: E402
from minissl.cli import commands as cli
from minissl.figures import plots  # noqa: E402

# depth 4, seed 1, 4 epochs x 100 steps of 64: measured 0.608 -> 0.833 at the root
# (ceiling 0.919), 0.2 s of training on the 2-core container.
SMALL = dict(depth=4, epochs=4, steps_per_epoch=100, batch_size=64, seed=1)


@pytest.fixture(scope="module")
def client(demo_url):
    return gradio_client.Client(demo_url, verbose=False)


def _png(plot):
    """Decode a gr.Plot value (dict from the client, PlotData in-process) to an RGB array."""
    url = plot["plot"] if isinstance(plot, dict) else plot.plot
    head, data = url.split(",", 1)
    assert head == "data:image/png;base64"
    from matplotlib.image import imread
    return imread(io.BytesIO(base64.b64decode(data)), format="png")


def _not_blank(img):
    """More than a sliver of the picture differs from its background colour."""
    rgb = img[..., :3]
    background = np.median(rgb.reshape(-1, 3), axis=0)
    return np.abs(rgb - background).sum(-1).__gt__(0.1).mean() > 0.02


class _Req:
    def __init__(self, session_hash):
        self.session_hash = session_hash


class _NoProgress:
    def __call__(self, *a, **k):
        pass


# ----------------------------------------------------------------------------- the endpoint
def test_train_hltm_endpoint_returns_corr_by_depth(client):
    tree, corr, loss, status, result = client.predict(**SMALL, api_name="/train_hltm")
    c = result["corr_by_depth"]
    assert list(c) == ["4", "3", "2", "1"]                       # root first, like the CLI
    u, ceil = result["untrained_corr_by_depth"], result["ceiling_by_depth"]
    for d in c:
        assert 0.0 <= c[d] <= ceil[d] + 0.01
    assert c["4"] > u["4"] + 0.15, (u, c)                       # the root latent is learned
    assert result["status"] == "done" and result["steps_done"] == 400
    assert status.startswith("done: step 400/400")
    assert result["loss"] < result["collapsed_loss"]            # better than collapse
    for plot in (tree, corr, loss):
        assert _not_blank(_png(plot))


def test_endpoint_numbers_are_the_cli_numbers(client):
    """The JSON's corr_by_depth is what ``python -m minissl hltm --json`` prints for the same
    setting (same code path, same evaluation set; the app's backend and its sampler)."""
    *_, result = client.predict(**SMALL, api_name="/train_hltm")
    backend = app_hltm.BACKEND
    assert result["config"]["backend"] == backend
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(["hltm", "--json", "--no-progress", "--depth", "4", "--epochs", "4",
                       "--batch-size", "64", "--samples-per-epoch", "6400", "--seed", "1",
                       "--eval-samples", str(app_hltm.EVAL_SAMPLES), "--backend", backend,
                       "--sampler", app_hltm.SAMPLER[backend]])
    assert rc in (0, None)
    last = [json.loads(line) for line in out.getvalue().splitlines()][-1]
    assert last["corr_by_depth"] == result["corr_by_depth"]
    assert last["ceiling_by_depth"] == result["ceiling_by_depth"]


def test_every_setting_has_a_default(client):
    info = client.view_api(return_format="dict", print_info=False)
    params = info["named_endpoints"]["/train_hltm"]["parameters"]
    assert [p["parameter_name"] for p in params] == list(app_hltm.HLTM_ORDER)
    for p in params:
        assert p["parameter_has_default"], p["parameter_name"]
        assert p["parameter_default"] == app_hltm.HLTM_DEFAULTS[p["parameter_name"]]


@pytest.mark.parametrize("setting, message", [
    (dict(depth=9), r"depth must be an integer in \[2, 7\], got 9"),
    (dict(hid=0), r"hid must be an integer in \[1, 50\], got 0"),
    (dict(tau=0), r"τ must be a finite number in \(0, 100\], got 0"),
    (dict(polarity_lo=0.9, polarity_hi=0.5), r"polarity low \(0.9\) must be <= polarity high"),
    (dict(loss="hinge"), r"loss must be one of \('simple', 'soft_triplet', 'infonce'"),
])
def test_bad_setting_returns_the_error(client, setting, message):
    with pytest.raises(Exception, match=message):
        client.predict(**setting, api_name="/train_hltm")


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("key", list(app_hltm.HLTM_FIELDS))
@pytest.mark.parametrize("side", ["low", "high"])
def test_each_field_bound_is_named(key, side):
    f = app_hltm.HLTM_FIELDS[key]
    lo, hi = f.lo, f.hi
    bad = (lo - 1 if f.kind is int else lo - 0.5) if side == "low" else \
          (hi + 1 if f.kind is int else hi + 0.5)
    if f.lo_open and side == "low":
        bad = lo                                  # the open end itself is refused
    with pytest.raises(gr.Error, match=f"^.?{f.label} must be an? (integer|finite number) in"):
        app_hltm.hltm_config({**app_hltm.HLTM_DEFAULTS, key: bad})
    ok = hi if f.lo_open or key == "polarity_hi" else lo     # the bound is allowed
    app_hltm.hltm_config({**app_hltm.HLTM_DEFAULTS, key: ok})


def test_open_lower_ends_come_from_the_settings():
    """τ and the learning rate exclude 0 (their settings' metadata), the rest include it."""
    assert {k for k, f in app_hltm.HLTM_FIELDS.items() if f.lo_open} == {"tau", "lr"}


def test_non_integer_and_resource_limits():
    with pytest.raises(gr.Error, match=r"depth must be an integer in \[2, 7\], got 2.5"):
        app_hltm.hltm_config({**app_hltm.HLTM_DEFAULTS, "depth": 2.5})
    with pytest.raises(gr.Error, match=r"depth=7, num_children=3, hid=10 needs ~1\.\d GiB for "
                                       r"the tree network; the limit is 512\.0 MiB"):
        app_hltm.hltm_config({**app_hltm.HLTM_DEFAULTS, "depth": 7, "num_children": 3, "hid": 10})
    with pytest.raises(gr.Error, match=r"epochs=200, samples_per_epoch=640000, batch_size=128 "
                                       r"needs ~.* for training; the limit is 6e\+11 \(~120 s\)"):
        app_hltm.hltm_config({**app_hltm.HLTM_DEFAULTS, "hid": 50, "epochs": 200,
                          "steps_per_epoch": 5000})
    with pytest.raises(gr.Error, match="update='covariance' needs a bias-free net"):
        app_hltm.hltm_config({**app_hltm.HLTM_DEFAULTS, "preset": "reference", "update": "covariance"})


def test_examples_are_valid_settings():
    for ex in app_hltm.EXAMPLES:
        *vals, note = app_hltm.apply_example(ex.name)
        cfg = app_hltm.hltm_config(dict(zip(app_hltm.HLTM_ORDER, vals)))
        for k, v in ex.changes.items():
            assert dict(zip(app_hltm.HLTM_ORDER, vals))[k] == v
        assert ex.note in note and cfg.depth >= 2


# ----------------------------------------------------------------------------- run control
def test_stop_ends_the_run_with_its_pictures():
    req = _Req("test-stop")
    gen = app_hltm.train_hltm(**{**SMALL, "epochs": 200}, request=req, progress=_NoProgress())
    first = next(gen)
    assert first[4]["status"] == "running" and first[4]["epochs_done"] == 0
    assert app_runs.stop_training(req).startswith("stopped by the user at step")
    outs = list(gen)
    tree, corr, loss, status, result, run = outs[-1]
    assert result["status"] == "stopped" and result["epochs_done"] < 200
    assert status.startswith("stopped by the user")
    assert _not_blank(_png(tree))
    assert "test-stop" not in app_runs.RUNS
    assert app_runs.stop_training(req) == "no training run is active or queued"


def test_divergence_ends_with_a_clear_message():
    gen = app_hltm.train_hltm(depth=3, loss="simple", lr=1.0, epochs=5, steps_per_epoch=50,
                          progress=_NoProgress())
    outs = []
    with pytest.raises(gr.Error, match="training diverged at step"):
        for out in gen:
            outs.append(out)
    assert outs and outs[-1][4]["status"] == "diverged"
    assert "smaller learning rate" in outs[-1][3]


def test_no_figures_survive_a_run():
    """Every figure is closed and freed after rendering: nothing accumulates per run."""
    from matplotlib.figure import Figure

    def alive():
        gc.collect()
        return sum(isinstance(o, Figure) for o in gc.get_objects())

    before = alive()
    for seed in range(3):
        list(app_hltm.train_hltm(depth=2, epochs=2, steps_per_epoch=5, seed=seed,
                             progress=_NoProgress()))
    assert alive() == before
    fig = plots.loss_figure([0, 1], [1.0, 0.5])                 # control: a live one counts
    assert alive() == before + 1
    app_widgets.show(fig)


# ----------------------------------------------------------------------------- other tabs
def test_covariance_tab_run():
    outs = list(app_cov.train_covariance(depth=3, hid=4, steps=20, snapshots=2, n_samples=32,
                                      n_views=2, k=3, layer=1, batch_size=32,
                                      progress=_NoProgress()))
    spec, cos, vec, status = outs[-1]
    assert status.startswith("done: step 20/20")
    for p in (spec, cos, vec):
        assert _not_blank(_png(p))
    with pytest.raises(gr.Error, match=r"layer \(0 = bottom\) must be an integer in "
                                       r"\[0, depth − 1 = 2\], got 3"):
        next(app_cov.train_covariance(depth=3, layer=3, progress=_NoProgress()))
    with pytest.raises(gr.Error, match=r"loss must be one of \('simple', 'soft_triplet', 'infonce'\)"):
        next(app_cov.train_covariance(loss="ref_nce", progress=_NoProgress()))


@pytest.mark.parametrize("vary", ["r_pos", "r_neg", "tau"])
def test_losses_tab_plot(vary):
    assert _not_blank(_png(app_losses.loss_curves_plot(vary, negatives=4)))


def test_losses_tab_errors():
    with pytest.raises(gr.Error, match=r"τ must be a finite number in \(0, 100\]"):
        app_losses.loss_curves_plot(tau=0)
    with pytest.raises(gr.Error, match="choose at least one loss"):
        app_losses.loss_curves_plot(losses=[])


def test_tree_levels_match_the_tree():
    tree = minissl.HLTM(3, 3, (0.7, 1.0), seed=0)
    per = np.arange(tree.n_latents, dtype=float) / tree.n_latents
    corr, pol = tree.by_level(per), tree.polarity_by_level
    assert [len(c) for c in corr] == [1, 3, 9]
    assert [len(p) for p in pol] == [3, 9, 27]
    pos = plots.tree_layout(3, 3)
    assert [len(x) for x, _ in pos] == [1, 3, 9, 27]
    np.testing.assert_allclose(pos[1][0], pos[2][0].reshape(3, 3).mean(1))   # parent = mean
    with pytest.raises(ValueError, match="depth=3 levels"):
        plots.tree_figure(3, 3, corr[:2], pol)


# ----------------------------------------------------------------------------- command line
def test_main_flags(monkeypatch):
    seen = {}
    monkeypatch.setattr(demo, "launch", lambda app, **kw: seen.update(kw))
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    demo.main([])
    assert seen == {"server_name": "127.0.0.1", "server_port": 7860, "share": False}
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7123")
    demo.main(["--share", "--host", "0.0.0.0"])
    assert seen == {"server_name": "0.0.0.0", "server_port": 7123, "share": True}
    demo.main(["--port", "8001"])
    assert seen["server_port"] == 8001
    with pytest.raises(SystemExit):
        demo.main(["--port", "0"])


def test_each_tab_links_its_course_notebook(demo_url):
    """Every tab's "Learn it step by step" line links a course notebook that the app serves."""
    import re
    import urllib.request
    from app import widgets
    for n in (1, 2, 3, 4, 5, 6):
        line = widgets.course_link(n)
        url = re.search(r"\]\((/gradio_api/file=[^)]+)\)", line).group(1)
        with urllib.request.urlopen(demo_url.rstrip("/") + url, timeout=30) as r:
            nb = json.loads(r.read())
        assert nb["nbformat"] == 4 and line.count(f"notebook {n},") == 1
    assert widgets.course_link(99) == ""


def test_importing_demo_after_numba_started_its_threads_keeps_numba_compiling():
    """demo.py pins the thread variables for the processes it starts; in a process where
    Numba has already launched its thread pool (the tests, a notebook), a changed
    NUMBA_NUM_THREADS would make every later compile fail ("Cannot set NUMBA_NUM_THREADS
    ..."), so demo leaves that one alone there."""
    import os
    import pathlib
    import subprocess
    import sys
    import numba
    if numba.config.NUMBA_DEFAULT_NUM_THREADS < 2:
        pytest.skip("one core: Numba's default thread count is already 1")
    code = ("import numpy as np\nfrom numba import njit, prange\n"
            "@njit(parallel=True)\ndef f(x):\n    s = 0.0\n"
            "    for i in prange(x.shape[0]):\n        s += x[i]\n    return s\n"
            "f(np.ones(8))\nimport demo\n"
            "@njit\ndef g(x):\n    return x + 1.0\nprint(g(1.0))\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], cwd=pathlib.Path(__file__).resolve().parents[1], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "2.0", out.stderr[-600:]
