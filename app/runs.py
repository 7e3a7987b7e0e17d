"""Runs in a bounded worker: streaming records and pictures, Stop, cancel, the queue.

Every training event of the app goes through ``streamed``: the runner (a function of
``minissl.experiments``) runs in a worker thread with its ``callback`` and ``stop`` flag;
Stop (the page's button or the ``/stop`` endpoint) sets the flag, and a cancelled event
ends the worker within a step (``cancellable``)."""
import contextvars
import functools
import math
import queue
import threading
import time

import gradio as gr

import minissl
from minissl.backend import blas_threads


RENDER_INTERVAL = 0.5        # seconds of training between two streamed pictures (at least)

# ----------------------------------------------------------------------------- runs and Stop
RUNS: dict = {}                # session hash -> {"stop": Event, "state": dict}
RUNS_LOCK = threading.Lock()


def stream_run(run, stop: threading.Event, state: dict, render):
    """Run ``run(emit, stop)`` in a worker thread and yield ``(kind, records, figures,
    payload)``: ``kind`` "update" while training, then "done" (payload: ``run``'s return
    value), "stopped", "diverged" or "error" (payload: the message).

    ``run`` passes ``emit`` as its runner's callback (every new record) and ``stop`` as its
    stop flag (checked every step). ``figures`` is ``render(records)``, drawn in the worker
    after a record when at least ``RENDER_INTERVAL`` seconds (and three times the last
    drawing's cost) have passed, always for the first record and at the end: drawing never
    competes with training for the GIL and takes at most about a quarter of the run.
    """
    q: queue.Queue = queue.Queue()
    records: list = []
    state.update(t0=time.perf_counter(), drawn=-math.inf, cost=0.0)

    def draw(kind, payload=None):
        snap = list(records)
        t = time.perf_counter()
        q.put((kind, snap, render(snap) if snap else None, payload))
        state["drawn"] = time.perf_counter()
        state["cost"] = state["drawn"] - t

    def emit(rec):
        records.append(rec)
        state["step"] = rec.get("step", 0)
        if time.perf_counter() - state["drawn"] >= max(RENDER_INTERVAL, 3.0 * state["cost"]):
            draw("update")

    def work():
        try:
            with blas_threads(1):
                out = run(emit, stop)
            draw("stopped" if stop.is_set() else "done", out)
        except minissl.TrainingDiverged as exc:
            draw("diverged", str(exc))
        except ValueError as exc:      # a setting the runner refused (its cost included)
            draw("error", str(exc))
        except Exception as exc:       # reported to the user, never kills the server
            draw("error", f"{type(exc).__name__}: {exc}")

    worker = threading.Thread(target=work, name="minissl-train", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            yield item
            if item[0] != "update":
                return
    finally:
        stop.set()
        worker.join(timeout=30)


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
    """Stop this session's training run (the worker ends within one step) and cancel its runs
    still waiting in the queue (each ends as soon as it starts)."""
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
    line = ("" if run is None else f"stopped by the user at step {run['state'].get('step', 0)} "
            "(the pictures show the last update)")
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
    ``gen`` once the thread advancing it lets go (its ``finally`` joins the worker and frees
    the run's memory); in a daemon thread."""
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


def streamed(request, run, render, status):
    """Drive ``stream_run`` for a tab: yields ``(*figures, status line, records, kind)``;
    ``status(records, seconds)`` formats the line. Raises ``gr.Error`` on failure, and when
    Stop cancelled the run while it waited in the queue."""
    key, reg = registered(request)
    try:
        if reg["state"].get("cancelled"):
            raise gr.Error("stopped by the user before it started (Stop was pressed while "
                           "this run waited in the queue)")
        for kind, records, figs, payload in stream_run(run, reg["stop"], reg["state"], render):
            if not records:            # stopped or failed before the first picture
                if kind in ("diverged", "error"):
                    raise gr.Error(payload)
                return
            line = status(records, time.perf_counter() - reg["state"]["t0"])
            yield (*figs, finish_line(kind, payload, line), records, kind)
            if kind in ("diverged", "error"):
                raise gr.Error(payload)
    finally:
        unregister(key, reg)


def training_event(button, fn, inputs, outputs, api_name, stop, status, stop_api=None):
    """Wire ``button`` to run the tab's generator ``fn`` as a training event (queued, one at a
    time in ``concurrency_id "training"``, cancellable: see ``cancellable``) with its
    progress on ``status``, and ``stop`` to end it (``stop_training``; named ``stop_api`` in
    the API, else undocumented). Returns the event."""
    event = button.click(cancellable(fn), inputs, outputs, api_name=api_name,
                         concurrency_limit=1, concurrency_id="training", show_progress="full",
                         show_progress_on=[status])
    named = {"api_name": stop_api} if stop_api else {"api_visibility": "undocumented"}
    stop.click(stop_training, None, status, cancels=[event], queue=False, **named)
    return event
