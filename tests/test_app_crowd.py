"""The app under a crowd: identical requests share one computation (a finished run is replayed,
a running one joined with its whole stream), the shared cache evicts past its caps, at most
``serving.SLOTS.limit`` computations run at once, Stop and cancel with several watchers, the
default backend numba and the startup warm-up.

Fake runners (gated by events) make the order of things certain; waits are polls that
pytest-timeout bounds; nothing here asserts on a duration.
"""
import itertools
import threading
import time

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from app import hltm as app_hltm  # noqa: E402
from app import runs as app_runs  # noqa: E402
from app import serving  # noqa: E402
from app.sharing import RunCache  # noqa: E402
from minissl.backend import numba_available  # noqa: E402

pytestmark = pytest.mark.timeout(180)
SMALL = dict(depth=4, epochs=3, steps_per_epoch=50, batch_size=64)
FRESH = itertools.count()               # a key no other test uses


class _Req:
    def __init__(self, session_hash):
        self.session_hash = session_hash


def _wait(cond):
    while not cond():
        time.sleep(0.02)


def _status(records, seconds):
    return f"step {records[-1]['step']}"


def _render(records):
    return (len(records),)               # a "figure": how many records it shows


def _gated_run(gate, n_before=2, n_after=2, calls=None):
    """A runner that emits ``n_before`` records, waits for ``gate`` (or its stop flag), then
    emits ``n_after`` more; counts its calls in ``calls``."""
    def run(emit, stop):
        if calls is not None:
            calls.append(1)
        for s in range(n_before):
            time.sleep(0.01)                 # the pictures' pacing: one per record
            emit({"step": s})
        while not gate.wait(0.01):
            if stop.is_set():
                return None
        for s in range(n_before, n_before + n_after):
            time.sleep(0.01)
            emit({"step": s})
    return run


@pytest.fixture
def every_record_drawn(monkeypatch):
    monkeypatch.setattr(app_runs, "RENDER_INTERVAL", 0.0)


def _consume(gen, out):
    def go():
        try:
            for item in gen:
                out.append(item)
        except gr.Error as exc:
            out.append(exc)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


# ----------------------------------------------------------------------------- sharing
def test_identical_requests_share_one_computation(demo_url):
    """Two users asking for the same setting at once get one computation and the same result;
    a third, later, replays it (the whole stream) and computes nothing; another seed does."""
    setting = dict(SMALL, seed=1000 + next(FRESH))
    before = app_runs.CACHE.computations
    a, b = (gradio_client.Client(demo_url, verbose=False) for _ in range(2))
    ja, jb = (c.submit(**setting, api_name="/train_hltm") for c in (a, b))
    ra, rb = ja.result(), jb.result()
    assert ra[-1]["status"] == rb[-1]["status"] == "done"
    assert ra[-1]["corr_by_depth"] == rb[-1]["corr_by_depth"]
    assert app_runs.CACHE.computations == before + 1
    jc = a.submit(**setting, api_name="/train_hltm")
    rc = jc.result()
    assert rc[-1] == ra[-1] and rc[3] == ra[3]                 # JSON and status line
    assert len(jc.outputs()) == len(ja.outputs())              # every streamed update
    assert app_runs.CACHE.computations == before + 1
    a.predict(**{**setting, "seed": setting["seed"] + 1}, api_name="/train_hltm")
    assert app_runs.CACHE.computations == before + 2          # control: a new setting runs


def test_joining_a_run_in_progress_gets_the_full_stream(every_record_drawn):
    gate, calls, key = threading.Event(), [], ("test-join", next(FRESH))
    first = app_runs.streamed(_Req("join-a"), _gated_run(gate, calls=calls), _render,
                              _status, key=key)
    seen_a = [next(first), next(first)]                        # the two records before the gate
    second = app_runs.streamed(_Req("join-b"), _gated_run(gate, calls=calls), _render,
                               _status, key=key)
    seen_b = [next(second), next(second)]                      # replayed
    assert seen_b == seen_a
    gate.set()
    seen_a += list(first)
    seen_b += list(second)
    assert seen_a == seen_b and len(calls) == 1
    assert [s[1] for s in seen_a][-1] == "done: step 3"
    assert [s[0] for s in seen_a] == [1, 2, 3, 4, 4]           # all records, then "done"


def test_stop_with_two_watchers_leaves_the_run_to_the_other(every_record_drawn):
    gate, key = threading.Event(), ("test-two-watchers", next(FRESH))
    ra, rb = _Req("watch-a"), _Req("watch-b")
    a = app_runs.streamed(ra, _gated_run(gate), _render, _status, key=key)
    next(a)
    b = app_runs.streamed(rb, _gated_run(gate), _render, _status, key=key)
    next(b)
    assert app_runs.stop_training(ra).startswith("stopped by the user at step")
    rest = list(a)
    assert rest[-1][-1] == "stopped" and rest[-1][1].startswith("stopped by the user: ")
    gate.set()
    assert list(b)[-1][-1] == "done"                           # the other watcher's run went on


def test_the_last_watcher_leaving_stops_the_computation(every_record_drawn):
    gate, key = threading.Event(), ("test-leave", next(FRESH))
    ran = []
    a = app_runs.streamed(_Req("leave-a"), _gated_run(gate, calls=ran), _render, _status,
                          key=key)
    next(a)
    b = app_runs.streamed(_Req("leave-b"), _gated_run(gate), _render, _status, key=key)
    next(b)
    stream = app_runs.CACHE.streams[key]
    a.close()                                                  # a cancelled event
    assert not stream.stop.is_set()
    b.close()
    _wait(stream.stop.is_set)
    _wait(lambda: stream.done)                                 # the worker ended, gate shut
    assert stream.items[-1][0] == "stopped" and stream.items[-1][2] is None   # nobody: no picture
    assert key not in app_runs.CACHE.streams and len(ran) == 1


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_stop_ends_a_numba_run_within_a_chunk():
    """The compiled epoch checks Stop between chunks of steps: the worker ends, stopped."""
    req = _Req("numba-stop")
    gen = app_hltm.train_hltm(depth=4, epochs=200, steps_per_epoch=300, batch_size=64,
                              seed=next(FRESH), request=req, progress=lambda *a, **k: None)
    assert next(gen)[4]["config"]["backend"] == "numba"
    assert app_runs.stop_training(req).startswith("stopped by the user at step")
    *_, status, result, _ = list(gen)[-1]
    assert result["status"] == "stopped" and result["epochs_done"] < 200
    _wait(lambda: not [t for t in threading.enumerate() if t.name == "minissl-train"])


# ----------------------------------------------------------------------------- caps
def _finished(cache, key, kind="done", size=100):
    def start(stream):
        stream.put((kind, [{"x": np.zeros(2)}], ("p" * size,), None, 0.0))
        cache.finish(stream)
    stream = cache.join(key, start)
    cache.leave(stream)
    return stream


def test_the_cache_evicts_past_its_caps():
    cache = RunCache(max_entries=2, max_bytes=1000)
    for k in "abc":
        _finished(cache, k)
    assert list(cache.streams) == ["b", "c"]                   # the least recently used went
    _finished(cache, "b")                                      # a hit: b is the most recent
    assert cache.computations == 3 and list(cache.streams) == ["c", "b"]
    _finished(cache, "d", size=600)
    _finished(cache, "e", size=600)
    assert list(cache.streams) == ["e"]                        # bytes: 2 x 600 > 1000
    assert cache.stats()["bytes"] <= 1000
    _finished(cache, "huge", size=5000)                        # larger than the cap: not kept
    _finished(cache, "stopped", kind="stopped")                # a stopped run: not kept
    assert "huge" not in cache.streams and "stopped" not in cache.streams
    assert cache.stats()["entries"] <= 2


def test_a_cached_stream_is_counted_once():
    """Snapshots share their records: a stream's size counts each record once."""
    cache = RunCache()
    records = [{"x": np.zeros(1000)} for _ in range(3)]

    def start(stream):
        for i in range(1, 4):
            stream.put(("update" if i < 3 else "done", records[:i], ("",), None, 0.0))
        cache.finish(stream)
    stream = cache.join("k", start)
    assert 3 * 8000 <= stream.nbytes < 2 * 3 * 8000


# ----------------------------------------------------------------------------- concurrency
def test_concurrency_limit_is_respected(every_record_drawn, monkeypatch):
    monkeypatch.setattr(serving.SLOTS, "limit", 2)
    monkeypatch.setattr(serving.SLOTS, "peak", 0)
    gates = [threading.Event() for _ in range(3)]
    running, lock, most = [0], threading.Lock(), [0]

    def counted(gate):
        inner = _gated_run(gate)

        def run(emit, stop):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                return inner(emit, stop)
            finally:
                with lock:
                    running[0] -= 1
        return run

    outs = [[] for _ in gates]
    threads = [_consume(app_runs.streamed(_Req(f"limit-{i}"), counted(g), _render, _status,
                                          key=("test-limit", next(FRESH))), out)
               for i, (g, out) in enumerate(zip(gates, outs))]
    _wait(lambda: running[0] == 2)
    time.sleep(0.3)                                            # room for a third to break in
    assert running[0] == 2 and serving.SLOTS.running == 2
    for g in gates:
        g.set()
    for t in threads:
        t.join()
    assert most[0] == 2 and serving.SLOTS.peak == 2           # two at once, never three
    assert all(out[-1][-1] == "done" for out in outs)


def test_runs_at_once_come_from_the_environment(monkeypatch):
    old = serving.SLOTS.limit
    try:
        monkeypatch.setenv(serving.ENV_RUNS, "3")
        assert serving.configure() == 3
        assert serving.configure(5) == 5
        monkeypatch.delenv(serving.ENV_RUNS)
        assert serving.configure() == serving.cores()
        monkeypatch.setenv(serving.ENV_RUNS, "0")
        with pytest.raises(ValueError, match="MINISSL_APP_RUNS must be an integer >= 1"):
            serving.configure()
    finally:
        serving.configure(old)


# ----------------------------------------------------------------------------- backend, warm-up
@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_the_default_backend_is_numba(demo_url):
    assert app_hltm.HLTM_DEFAULTS["backend"] == "numba"
    cfg = app_hltm.hltm_config(app_hltm.HLTM_DEFAULTS)
    assert (cfg.backend, cfg.sampler) == ("numba", "compiled")
    info = gradio_client.Client(demo_url, verbose=False).view_api(return_format="dict",
                                                                   print_info=False)
    params = info["named_endpoints"]["/train_hltm"]["parameters"]
    assert {p["parameter_name"]: p["parameter_default"] for p in params}["backend"] == "numba"
    numpy_cfg = app_hltm.hltm_config({**app_hltm.HLTM_DEFAULTS, "backend": "numpy"})
    assert numpy_cfg.sampler == "numpy"                        # NumPy keeps its sampler


def test_the_startup_warm_up_happens(demo_url, monkeypatch, capsys):
    """Building the app ran the warm-up (the fixture built it); it is logged, once."""
    assert serving.WARM_UP["seconds"] > 0
    assert f"backend {app_hltm.BACKEND}" in serving.WARM_UP["what"]
    monkeypatch.setattr(serving, "WARM_UP", {})
    calls = []
    serving.warm_up(lambda: calls.append(1), "a test run")
    serving.warm_up(lambda: calls.append(1), "a test run")
    assert calls == [1]
    assert "minissl app: warm-up run of a test run done in" in capsys.readouterr().err
    cfg = app_hltm.warm_up()                                   # the default setting, shortened
    default = app_hltm.hltm_config(app_hltm.HLTM_DEFAULTS)
    assert (cfg.backend, cfg.sampler, cfg.depth, cfg.hid) == (
        default.backend, default.sampler, default.depth, default.hid)


def test_memory_is_released_after_a_run():
    before = serving.RELEASED["count"]
    out = list(app_runs.streamed(_Req("release"), lambda emit, stop: emit({"step": 0}),
                                 _render, _status))
    assert out[-1][-1] == "done"
    _wait(lambda: serving.RELEASED["count"] > before)         # after the run, nothing running
    assert serving.release_memory() is True


def test_a_request_body_over_the_limit_is_refused(demo_url):
    """A 3,000,000-entry list never reaches gradio (which keeps every input of a session):
    413 by its Content-Length; a small body passes the limit (gradio answers it)."""
    import httpx

    def post(body):
        return httpx.post(demo_url.rstrip("/") + "/gradio_api/queue/join", content=body,
                          headers={"Content-Type": "application/json"}, timeout=60).status_code

    big = b'{"data": ["toy", [' + b'"none",' * 3_000_000 + b'"none"]], "fn_index": 0}'
    assert len(big) > serving.MAX_BODY_BYTES and post(big) == 413
    assert post(b'{"data": "not a list"}') == 422                # gradio's own validation
