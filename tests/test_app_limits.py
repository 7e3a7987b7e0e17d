"""The app under bad, huge or many requests: bounded lists, a work cap on every endpoint,
Stop and cancel (running or queued) ending the worker, the queue position, API parameter
names, and clear messages for a port in use or a bad GRADIO_SERVER_PORT.

Hangs fail through pytest-timeout; nothing here asserts on timings.
"""
import socket
import subprocess
import sys
import threading
import time

import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import demo  # noqa: E402
from app import byol as app_byol  # noqa: E402
from app import covariance as app_cov  # noqa: E402
from app import hltm as app_hltm  # noqa: E402
from app import runs as app_runs  # noqa: E402
from app import serving  # noqa: E402

pytestmark = pytest.mark.timeout(120)
LONG = dict(depth=4, epochs=200, steps_per_epoch=200, batch_size=64,    # ~50 s estimated:
            backend="numpy")               # long enough to be stopped (numba: test_app_crowd)


class _NoProgress:
    def __call__(self, *a, **k):
        pass


def _workers():
    return [t for t in threading.enumerate() if t.name == "minissl-train"]


def _wait(cond, what):
    """Poll ``cond()`` until it holds (pytest-timeout fails the test if it never does)."""
    while not cond():
        time.sleep(0.02)
    return what


RUNS_AT_ONCE = 2


@pytest.fixture(scope="module")
def url():
    """The app served with 2 runs at once, whatever the machine's cores."""
    old = serving.SLOTS.limit
    serving.configure(RUNS_AT_ONCE)
    app = demo.build_demo()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, address, _ = demo.launch(app, prevent_thread_lock=True, server_name="127.0.0.1",
                                server_port=port, quiet=True)
    try:
        yield address
    finally:
        app.close()
        serving.configure(old)


def _client(url):
    return gradio_client.Client(url, verbose=False)


def _started(job):
    _wait(lambda: len(job.outputs()) >= 1 or job.done(), "first picture")
    assert job.outputs(), job.result()                      # an error is raised here
    return job


# ----------------------------------------------------------------------------- caps
def test_tiny_net_with_many_steps_is_capped():
    """200 x 5000 steps of a 1-unit net: the per-step floor of the cost model counts them."""
    with pytest.raises(gr.Error, match=r"epochs=200, samples_per_epoch=10000, batch_size=2 "
                                       r"needs ~.* for training; the limit is 6e\+11 \(~120 s\)"):
        app_hltm.hltm_config({**app_hltm.HLTM_DEFAULTS, "depth": 2, "hid": 1, "batch_size": 2,
                          "epochs": 200, "steps_per_epoch": 5000})


def test_covariance_tab_largest_settings_are_capped():
    big = {k: v[3] for k, v in app_cov.COV_FIELDS.items()}        # every field at its maximum
    big.update(loss="infonce", update="covariance", polarity_lo=0.7)
    with pytest.raises(gr.Error, match=r"needs ~.* the limit is"):
        app_cov.covariance_config(big)
    app_cov.covariance_config({**{k: v[4] for k, v in app_cov.COV_FIELDS.items()}, "loss": "infonce",
                            "update": "gradient"})             # the defaults fit


def test_byol_ablation_lists_are_deduplicated_and_checked():
    outs = list(app_byol.run_byol_ablation("toy", ["none"] * 20, ["omit"] * 5, ["0"] * 10, steps=50))
    status, table, fig_ab, fig_sp = outs[-1]
    assert status.startswith("done: run 1/1")                   # 1 run, not 1000
    assert table.count("| none | omit | 0 |") == 1
    with pytest.raises(gr.Error, match=r"target EMA must be one of \('0', '0\.99'\), got '0\.5'"):
        next(app_byol.run_byol_ablation("toy", ["none"], ["omit"], ["0.5"]))
    with pytest.raises(gr.Error, match=r"predictor: choose at least one"):
        next(app_byol.run_byol_ablation("toy", [], ["omit"], ["0"]))


def test_linear_byol_runs_in_the_bounded_worker():
    line, fig = list(app_byol.run_linear_byol(0.01, 1.0, 5))[-1]
    assert line.startswith("done: ||W(0)||") and "survives" in line
    with pytest.raises(gr.Error, match=r"duration T must be a finite number in \[5, 60\]"):
        next(app_byol.run_linear_byol(0.01, 1.0, 1e9))


def test_api_parameter_names_are_meaningful(url):
    info = _client(url).view_api(return_format="dict", print_info=False)["named_endpoints"]
    names = {ep: [p["parameter_name"] for p in info[ep]["parameters"]] for ep in info}
    assert names["/loss_curves"] == ["vary", "r_pos", "r_neg", "tau", "margin", "negatives",
                                     "losses"]
    assert names["/linear_byol"] == ["weight_decay", "predictor_rate", "duration"]
    assert names["/stop"] == []
    assert {"h", "t", "H", "T"}.isdisjoint(n for ns in names.values() for n in ns), names


# ----------------------------------------------------------------------------- stop and cancel
def test_cancel_from_the_client_ends_the_worker(url):
    client = _client(url)
    job = _started(client.submit(**LONG, api_name="/train_hltm"))
    job.cancel()
    _wait(lambda: not _workers(), "the worker ends")           # else pytest-timeout fails
    _wait(lambda: not app_runs.RUNS, "the run is unregistered")


def test_stop_endpoint_ends_the_running_worker(url):
    client = _client(url)
    job = _started(client.submit(**LONG, api_name="/train_hltm"))
    assert client.predict(api_name="/stop").startswith("stopped by the user at step")
    *_, status, result = job.result()
    assert result["status"] == "stopped" and status.startswith("stopped by the user")
    _wait(lambda: not _workers(), "the worker ends")


def test_queued_users_see_their_position_and_stop_cancels_a_queued_run(url):
    """Two runs at once: a third user waits in the queue, sees its position, and its /stop
    cancels its queued run; the two running ones stop."""
    users = [_client(url) for _ in range(RUNS_AT_ONCE + 1)]
    running = [_started(c.submit(**LONG, seed=10 + i, api_name="/train_hltm"))
               for i, c in enumerate(users[:-1])]
    assert serving.SLOTS.running == RUNS_AT_ONCE
    queued = users[-1].submit(**LONG, seed=99, api_name="/train_hltm")
    _wait(lambda: queued.status().rank is not None, "a queue position")
    st = queued.status()
    assert st.rank == 0 and st.queue_size >= 1
    assert users[-1].predict(api_name="/stop") == "1 queued run(s) cancelled"
    for c in users[:-1]:
        assert c.predict(api_name="/stop").startswith("stopped by the user at step")
    for job in running:
        job.result()
    with pytest.raises(Exception, match="stopped by the user before it started"):
        queued.result()
    _wait(lambda: not _workers() and not app_runs.RUNS, "everything ends")
    assert users[0].predict(api_name="/stop") == "no training run is active or queued"


# ----------------------------------------------------------------------------- serving
def _busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_port_in_use_is_a_clear_message(capsys):
    with _busy_port() as s:
        port = s.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            demo.main(["--port", str(port)])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port} (is the port in use?" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["abc", "0", "70000", "7860.5"])
def test_bad_gradio_server_port_is_a_clear_message(monkeypatch, capsys, value):
    monkeypatch.setenv("GRADIO_SERVER_PORT", value)
    monkeypatch.setattr(demo, "launch", lambda *a, **k: pytest.fail("must not launch"))
    with pytest.raises(SystemExit) as info:
        demo.main([])
    assert info.value.code == 2
    assert f"GRADIO_SERVER_PORT must be a port number in [1, 65535], got {value!r}" in \
        capsys.readouterr().err


def test_command_line_port_in_use_has_no_traceback():
    with _busy_port() as s:
        r = subprocess.run([sys.executable, "demo.py", "--port", str(s.getsockname()[1])],
                           capture_output=True, text=True, timeout=90,
                           cwd=demo.__file__.rsplit("/", 1)[0])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "is the port in use?" in r.stderr
