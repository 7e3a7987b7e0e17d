"""Runs in bounded workers, shared between identical requests: streaming records and
pictures, Stop, cancel, the queue.

Every training event of the app goes through ``streamed``: the runner (a function of
``minissl.experiments``) runs in a worker thread (``produce``) with its ``callback`` and
``stop`` flag, once per validated setting: requests with the same ``key`` share its stream
(``app/sharing.py``: join a run in progress, replay a finished one). At most
``serving.SLOTS.limit`` computations run at once, one thread each (``app/serving.py``). Stop
(the page's button or the ``/stop`` endpoint) ends the request's stream, and the computation
when nobody else watches it; a cancelled event does the same within a step
(``cancellable``)."""
import contextvars
import functools
import math
import threading
import time

import gradio as gr

import minissl

from app import serving
from app.sharing import RunCache

RENDER_INTERVAL = 0.5        # seconds of training between two streamed pictures (at least)
WAIT = 0.05                  # seconds a request waits for the next item before checking Stop
CACHE = RunCache()           # the streams by key (identical requests share one computation)

# ----------------------------------------------------------------------------- runs and Stop
RUNS: dict = {}                # session hash -> {"stop": Event, "state": dict}
RUNS_LOCK = threading.Lock()


def key_of(name, *setting):
    """The cache key of a validated setting: the endpoint's name and the ``repr`` of its
    values (configs are dataclasses: their repr lists every field)."""
    return (name,) + tuple(repr(v) for v in setting)


def produce(stream, run, render):
    """The worker of one computation: wait for a slot (``serving.slot``), run ``run(emit,
    stop)`` with one thread and put ``(kind, records, figures, payload, seconds)`` items on
    ``stream``: "update" while training, then "done", "stopped", "diverged" or "error"
    (payload: the message; None otherwise).

    ``run`` passes ``emit`` as its runner's callback (every new record) and ``stop`` as its
    stop flag (checked every step). ``figures`` is ``render(records)``, drawn here after a
    record when at least ``RENDER_INTERVAL`` seconds (and three times the last drawing's cost)
    have passed, always for the first record and at the end: drawing takes at most about a
    quarter of the run. Nothing is drawn for a stream that nobody watches any more. Then the
    cache keeps or forgets the stream and the memory is released (``serving.release_memory``).
    """
    records: list = []
    state = {"t0": time.perf_counter(), "drawn": -math.inf, "cost": 0.0}

    def draw(kind, payload=None):
        snap, t = list(records), time.perf_counter()
        wanted = not stream.stop.is_set() or stream.final_wanted
        figs = render(snap) if snap and wanted else None
        state["drawn"] = time.perf_counter()
        state["cost"] = state["drawn"] - t
        stream.put((kind, snap, figs, payload, t - state["t0"]))

    def emit(rec):
        records.append(rec)
        stream.step = rec.get("step", 0)
        if time.perf_counter() - state["drawn"] >= max(RENDER_INTERVAL, 3.0 * state["cost"]):
            draw("update")

    try:
        with serving.slot(stream.stop) as got:
            if not got:                # stopped while it waited for a slot
                return stream.put(("stopped", [], None, None, 0.0))
            state["t0"] = time.perf_counter()
            try:
                with serving.one_thread():
                    out = run(emit, stream.stop)
                del out                # the records are in the items already
                draw("stopped" if stream.stop.is_set() else "done")
            except minissl.TrainingDiverged as exc:
                draw("diverged", str(exc))
            except ValueError as exc:  # a setting the runner refused (its cost included)
                draw("error", str(exc))
            except Exception as exc:   # reported to the user, never kills the server
                draw("error", f"{type(exc).__name__}: {exc}")
    finally:
        if not stream.done:            # a failure while drawing the final item
            stream.put(("error", list(records), None, "the run ended without a result", 0.0))
        CACHE.finish(stream)
        serving.release_memory(force=False)


def start(run, render):
    """``start(stream)`` for ``CACHE.join``: ``produce`` in a daemon thread."""
    def begin(stream):
        threading.Thread(target=produce, args=(stream, run, render), name="minissl-train",
                         daemon=True).start()
    return begin


CANCELLED: dict = {}           # session hash -> how many of its queued runs Stop cancelled


def session_of(request):
    return getattr(request, "session_hash", None) or f"anon-{threading.get_ident()}"


def registered(request):
    """A fresh stop flag and state for this session's run (the Stop button finds it). A run
    that Stop cancelled while it waited in the queue starts with its flag set."""
    key = session_of(request)
    run = {"stop": threading.Event(), "state": {}}
    holder = CURRENT_RUN.get()
    if holder is not None:
        holder["run"] = run
    with RUNS_LOCK:
        RUNS[key] = run
        if CANCELLED.get(key, 0) > 0:
            CANCELLED[key] -= 1
            run["stop"].set()
            run["state"]["cancelled"] = True
    return key, run


def unregister(key, run):
    run["stop"].set()
    with RUNS_LOCK:
        if RUNS.get(key) is run:
            del RUNS[key]


def queued_runs(request):
    """How many of this session's training events wait in gradio's queue, not yet started
    (read from gradio's queue object, ``Blocks._queue``; 0 where it cannot be read)."""
    try:
        waiting = request.request.app.get_blocks()._queue.event_queue_per_concurrency_id[
            "training"].queue
        return sum(e.session_hash == request.session_hash for e in list(waiting))
    except (AttributeError, KeyError, TypeError):
        return 0


def stop_training(request: gr.Request = None):
    """Stop this session's training run (its stream ends; the worker within one step unless
    another request watches the same run) and cancel its runs still waiting in the queue (each
    ends as soon as it starts)."""
    key = getattr(request, "session_hash", None)
    queued = queued_runs(request) if key else 0
    with RUNS_LOCK:
        run = RUNS.get(key)
        if queued:
            CANCELLED[key] = queued
    if run is not None:
        run["stop"].set()
    if run is None and not queued:
        return "no training run is active or queued"
    stream = run["state"].get("stream") if run is not None else None
    line = ("" if run is None else f"stopped by the user at step "
            f"{stream.step if stream else 0} (the pictures show the last update)")
    return "; ".join(filter(None, [line, f"{queued} queued run(s) cancelled" * bool(queued)]))


# the run a cancellable event started: {"run": its RUNS entry}, filled by ``registered``
CURRENT_RUN: contextvars.ContextVar = contextvars.ContextVar("minissl_run", default=None)


def stop_current(holder):
    """Set the stop flag of the run recorded in ``holder`` (by ``registered``), if any."""
    run = holder.get("run")
    if run is not None:
        run["stop"].set()


def close_later(gen, holder):
    """Stop the run ``holder`` records as soon as it is registered, and close the generator
    ``gen`` once the thread advancing it lets go (its ``finally`` leaves the stream: the last
    watcher's leaving stops the computation); in a daemon thread."""
    def close():
        for _ in range(1200):
            stop_current(holder)
            try:
                gen.close()
                return
            except ValueError:             # "generator already executing"
                time.sleep(0.05)
    threading.Thread(target=close, name="minissl-close", daemon=True).start()


def _advance(gen):
    try:
        return True, next(gen)
    except StopIteration:
        return False, None


def cancellable(fn):
    """The generator function ``fn`` of a tab as gradio runs it: an async generator that
    advances ``fn``'s generator in a thread and, when the event is cancelled (Stop on the page,
    ``job.cancel()`` from a client, a closed page), sets the session's stop flag at once, so
    that the worker ends within one step instead of running on to its next picture."""
    import anyio

    @functools.wraps(fn)
    async def run(*args, **kwargs):
        holder = {}
        CURRENT_RUN.set(holder)            # copied into the threads that advance ``gen``
        gen, done = fn(*args, **kwargs), False
        try:
            while True:
                more, item = await anyio.to_thread.run_sync(_advance, gen,
                                                            abandon_on_cancel=True)
                if not more:
                    done = True
                    return
                yield item
        finally:
            if not done:
                stop_current(holder)
                close_later(gen, holder)
    return run


def finish_line(kind, payload, line):
    line = {"done": "done: ", "stopped": "stopped by the user: "}.get(kind, "") + line
    return f"{payload}\n(last good picture: {line})" if kind in ("diverged", "error") else line


def follow(stream, stop, status):
    """Yield ``(*figures, status line, records, kind)`` for every item of ``stream`` (the ones
    so far, then live), ``status(records, seconds)`` formatting the line; raise ``gr.Error``
    after a "diverged" or "error" item. When ``stop`` is set this request leaves: if others
    still watch, it ends at once on its last picture ("stopped by the user"), else the
    computation stops and it ends on the final picture."""
    i, last, watching = 0, None, True
    try:
        while True:
            if watching and stop.is_set():
                watching = False
                if not CACHE.leave(stream, final=True):      # others watch: end here
                    if last is not None:
                        yield _shown(("stopped",) + last[1:], status)
                    return
            item = stream.get(i, WAIT)
            if item is None:
                continue
            i += 1
            kind, records, figs, payload, _ = item
            if not records or figs is None:    # stopped or failed before a picture
                if kind in ("diverged", "error"):
                    raise gr.Error(payload)
                if kind == "update":
                    continue
                return
            last = item
            yield _shown(item, status)
            if kind in ("diverged", "error"):
                raise gr.Error(payload)
            if kind != "update":
                return
    finally:
        if watching:
            CACHE.leave(stream)


def _shown(item, status):
    kind, records, figs, payload, seconds = item
    return (*figs, finish_line(kind, payload, status(records, seconds)), records, kind)


def streamed(request, run, render, status, key=None):
    """A tab's training run: yields ``(*figures, status line, records, kind)`` (``follow``)
    of the stream of ``key`` (``key_of``: the validated setting; None: a run of its own),
    computing ``run(emit, stop)`` with ``render`` (``produce``) unless a request with the same
    key is computing it or has (``CACHE``). Raises ``gr.Error`` on failure, and when Stop
    cancelled the run while it waited in the queue."""
    session, reg = registered(request)
    try:
        if reg["state"].get("cancelled"):
            raise gr.Error("stopped by the user before it started (Stop was pressed while "
                           "this run waited in the queue)")
        reg["state"]["stream"] = stream = CACHE.join(key, start(run, render))
        yield from follow(stream, reg["stop"], status)
    finally:
        unregister(session, reg)


def training_event(button, fn, inputs, outputs, api_name, stop, status, stop_api=None):
    """Wire ``button`` to run the tab's generator ``fn`` as a training event (queued, at most
    ``serving.SLOTS.limit`` at once in ``concurrency_id "training"``: the others see their
    queue position; cancellable: see ``cancellable``) with its progress on ``status``, and
    ``stop`` to end it (``stop_training``; named ``stop_api`` in the API, else undocumented).
    Returns the event."""
    event = button.click(cancellable(fn), inputs, outputs, api_name=api_name,
                         concurrency_limit=serving.SLOTS.limit, concurrency_id="training",
                         show_progress="full",
                         show_progress_on=[status])
    named = {"api_name": stop_api} if stop_api else {"api_visibility": "undocumented"}
    stop.click(stop_training, None, status, cancels=[event], queue=False, **named)
    return event
