"""How the app uses the machine: runs at once, one thread each, memory given back, a warm start.

- ``SLOTS``: at most ``SLOTS.limit`` computations at once, one per CPU core this process may
  use (``os.sched_getaffinity``), or ``$MINISSL_APP_RUNS``, or ``python demo.py --runs N``
  (``configure``). Gradio's queue runs that many training events at once
  (``concurrency_limit``) and shows the others their position; ``SLOTS`` holds every
  computation to the limit as well (a run that Stop ends early frees its slot at once).
- ``one_thread()``: a computation runs with every BLAS/OpenMP pool at one thread
  (threadpoolctl); ``demo.py`` also sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
  ``MKL_NUM_THREADS`` and ``NUMBA_NUM_THREADS`` to 1 (unless set) before they load. N runs
  then use N cores; the compiled kernels release the GIL, so they do run side by side.
- ``release_memory()``: ``gc.collect()`` and, on glibc, ``malloc_trim(0)`` (hands the freed
  heap back to the system), after every computation when no other runs, and every
  ``JANITOR_SECONDS`` while the server is idle (``start_janitor``): after a burst the resident
  memory returns near its starting value.
- ``BodyLimit``: requests are settings, a few kB; a body over ``MAX_BODY_BYTES`` (1 MiB) is
  refused with 413 before gradio parses it (gradio keeps every input value of a session for
  its deep links: a 3,000,000-entry list would stay in memory for the session's life), and
  gradio keeps the ``SESSIONS`` (256) most recent sessions, not 10,000 (``launch_kwargs``).
- ``warm_up(run)``: the startup run (``app.hltm.warm_up``: the default setting's compiled
  path), timed and logged to stderr, before the first user.
"""
import contextlib
import ctypes
import functools
import gc
import os
import sys
import threading
import time

ENV_RUNS = "MINISSL_APP_RUNS"
MAX_BODY_BYTES = 2 ** 20     # the largest request body (settings; file uploads excepted)
SESSIONS = 256               # gradio's sessions kept in memory (its default: 10,000)
JANITOR_SECONDS = 20.0
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where
    there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def runs_from_env() -> int:
    """``$MINISSL_APP_RUNS`` (an integer >= 1) or the number of cores."""
    text = os.environ.get(ENV_RUNS, "").strip()
    if not text:
        return cores()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{ENV_RUNS} must be an integer >= 1, got {text!r}")
    return int(text)


class Slots:
    """At most ``limit`` computations at once; ``peak``: the most seen together."""

    def __init__(self, limit):
        self.limit, self.running, self.peak = limit, 0, 0
        self.cond = threading.Condition()

    def acquire(self, stop) -> bool:
        """Wait for a free slot; False (no slot taken) if ``stop`` is set meanwhile."""
        with self.cond:
            while self.running >= self.limit and not stop.is_set():
                self.cond.wait(0.1)
            if stop.is_set():
                return False
            self.running += 1
            self.peak = max(self.peak, self.running)
            return True

    def release(self):
        with self.cond:
            self.running -= 1
            self.cond.notify()


SLOTS = Slots(cores())


def configure(runs=None):
    """Set the number of runs at once: ``runs`` (``--runs``), else ``$MINISSL_APP_RUNS``, else
    the cores (``ValueError`` for a bad value); returns it. Before ``demo.build_demo``."""
    runs = runs_from_env() if runs is None else runs
    if int(runs) < 1:
        raise ValueError(f"runs must be an integer >= 1, got {runs}")
    with SLOTS.cond:
        SLOTS.limit = int(runs)
        SLOTS.cond.notify_all()
    return SLOTS.limit


try:
    configure()                      # the environment's choice; demo.main reports a bad one
except ValueError:
    pass


def one_thread():
    """A context: every BLAS/OpenMP pool of this thread at one thread (threadpoolctl)."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1)


# ----------------------------------------------------------------------------- memory
@functools.lru_cache(maxsize=None)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None


RELEASED = {"count": 0, "at": 0.0}


def release_memory(force=True) -> bool:
    """``gc.collect()`` and ``malloc_trim(0)`` (glibc); without ``force`` only when no
    computation runs. Returns whether it ran."""
    if not force and SLOTS.running:
        return False
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    RELEASED["count"] += 1
    RELEASED["at"] = time.monotonic()
    return True


def start_janitor(interval=JANITOR_SECONDS):
    """A daemon thread that calls ``release_memory`` every ``interval`` seconds while no
    computation runs and none was released meanwhile (once per process)."""
    if getattr(start_janitor, "thread", None) is not None:
        return start_janitor.thread

    def loop():
        while True:
            time.sleep(interval)
            if time.monotonic() - RELEASED["at"] >= interval:
                release_memory(force=False)
    start_janitor.thread = threading.Thread(target=loop, name="minissl-janitor", daemon=True)
    start_janitor.thread.start()
    return start_janitor.thread


# ----------------------------------------------------------------------------- warm start
WARM_UP: dict = {}           # what the startup run did: {"what", "seconds"}


def warm_up(run, what):
    """Run ``run()`` (the startup run) with one thread, then ``release_memory``; log one line
    to stderr with ``what`` and the seconds it took; kept in ``WARM_UP``. Once per process
    (kernels and fonts stay loaded): later calls return ``WARM_UP``."""
    if WARM_UP:
        return WARM_UP
    t = time.perf_counter()
    with one_thread():
        run()
    release_memory()
    WARM_UP.update(what=what, seconds=time.perf_counter() - t)
    print(f"minissl app: warm-up run of {what} done in {WARM_UP['seconds']:.1f} s (Numba "
          f"kernels compiled or loaded from the cache); {SLOTS.limit} run(s) at once",
          file=sys.stderr, flush=True)
    return WARM_UP


@contextlib.contextmanager
def slot(stop):
    """A context holding a slot of ``SLOTS`` (yields False, holding none, if ``stop`` was set
    while it waited)."""
    got = SLOTS.acquire(stop)
    try:
        yield got
    finally:
        if got:
            SLOTS.release()


# ----------------------------------------------------------------------------- request size
class BodyLimit:
    """ASGI middleware: a POST whose body is over ``max_bytes`` gets 413 (by its
    Content-Length, before it is read; a body sent without one fails once it passes the limit).
    Gradio's file uploads (``.../upload``, bounded by gradio's ``max_file_size``) pass."""

    def __init__(self, app, max_bytes=MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path", "").rstrip("/").endswith("/upload")):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await self.refuse(send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise ValueError(f"request body over {self.max_bytes} bytes")
            return message
        return await self.app(scope, limited, send)

    async def refuse(self, send):
        body = (f'{{"error": "request body over {self.max_bytes} bytes: the app takes '
                f'settings, not data"}}').encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def launch_kwargs():
    """The arguments ``demo.launch`` adds: the ``BodyLimit`` middleware, and gradio's sessions
    bounded to the ``SESSIONS`` most recent (gradio keeps each session's last inputs and
    outputs, the pictures included, and its ``gr.State``: about 0.5 MB per session after an
    HLTM run)."""
    from starlette.middleware import Middleware
    return {"app_kwargs": {"middleware": [Middleware(BodyLimit)]},
            "state_session_capacity": SESSIONS}
