"""Around Numba's compilation of the kernels: where the machine code is cached, and a notice.

Cache. Every kernel is ``@njit(cache=True, nogil=True)``. Numba writes the machine code next to the
module (``minissl/kernels/__pycache__``) when that directory is writable, else into the
user-wide cache (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``), or wherever
``NUMBA_CACHE_DIR`` points (then always there). A later process loads it (about 0.3 s instead
of seconds of compiling). When none of these is writable (a read-only install and a read-only
home), Numba refuses to define cached functions at all; ``ensure_cache`` then points Numba at
``<temp dir>/minissl-numba-cache`` and warns once, so the kernels still work (and are cached
there for the machine's lifetime of the temp dir).

Notice. The first time a minissl kernel is compiled in a process (a cold cache: nothing to
load), one line goes to stderr, ``minissl: compiling Numba kernels, once (~N s) ...``.
Loading from the cache compiles nothing, so a warm start prints nothing. It is a listener on
Numba's ``"numba:compile"`` event, which Numba broadcasts only when it compiles.

Sharing a cold compile. On a cold cache the compiled epoch needs a dozen kernels and its entry
point compiled, one after another: Numba compiles on one core. ``Sharing(jobs)`` splits that
work with one helper process (a second Python running ``helper``); ``finish(here)`` runs
``here()`` in this process (what only this process can compile: the entry point, typed from its
own arguments) while the helper starts, then both take the ``jobs`` (kernels with declared
signatures) one at a time, each claiming a job before compiling it (a file created with
``O_EXCL`` in a temporary directory: no job is compiled twice); the helper writes its machine
code to the cache and this process loads it from there once the helper has exited
(``take(dispatcher)``, before a first call from Python, waits for a kernel the helper holds).
Nothing changes in the machine code, only who compiles it. The helper starts only where it can
help: more than one core in this process's CPU affinity, Numba's caching on, two or more jobs
not in the cache, ``MINISSL_COMPILE_HELPER`` not ``0``. If it fails or takes longer than
``HELPER_TIMEOUT``, what it did not finish is compiled here when first needed, as without it.

Imported by every kernel module before it defines its kernels; NumPy-only users never import
it (nor Numba).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numba
from numba import njit
from numba.core import event

from .calls import signature

# rough compile seconds on a 2-core machine (docs/performance.md), by the function whose
# compilation starts first (the compiled epoch: its address table, ``tree.kernel_table``,
# compiles ``sample_bits`` first; the per-step path and a tree layer's products: ``combine``);
# others: DEFAULT_SECONDS
SECONDS = {"sample_bits": 6, "combine": 4, "run_steps": 4, "masked_matmul_fm": 3,
           "masked_grad_fm": 2, "_fused_serial": 8, "_fused_parallel": 9}
DEFAULT_SECONDS = 3
PREFIX = "minissl.kernels"


def _probe():
    return 0


def ensure_cache():
    """Make sure Numba has somewhere to cache this package's kernels (see the module
    docstring); returns the directory it falls back to, or None when it needs none."""
    try:
        njit(cache=True)(_probe)             # Numba looks for a cache location right here
        return None
    except RuntimeError:
        path = os.path.join(tempfile.gettempdir(), "minissl-numba-cache")
        numba.config.CACHE_DIR = path
        warnings.warn(f"minissl: neither the package directory nor the user's cache directory "
                      f"is writable; caching compiled kernels in {path} (set NUMBA_CACHE_DIR "
                      f"to choose)", RuntimeWarning, stacklevel=2)
        return path


class CompileNotice(event.Listener):
    """Prints the notice (to ``stream``, default stderr) when Numba starts compiling a
    function of a module under ``prefix``; once per listener."""

    def __init__(self, prefix=PREFIX, stream=None):
        self.prefix, self.stream, self.done = prefix, stream, False

    def message(self, dispatcher):
        name = dispatcher.py_func.__name__
        where = dispatcher.stats.cache_path or "nowhere (caching off)"
        return (f"minissl: compiling Numba kernels, once (~{SECONDS.get(name, DEFAULT_SECONDS)}"
                f" s); later runs load them from the cache ({where})")

    def on_start(self, ev):
        dispatcher = (ev.data or {}).get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if self.done or not module.startswith(self.prefix):
            return
        self.done = True
        print(self.message(dispatcher), file=self.stream or sys.stderr, flush=True)

    def on_end(self, ev):
        pass


_NOTICE = None


def announce_compiles():
    """Register the process-wide ``CompileNotice`` (idempotent) and ``ensure_cache``."""
    global _NOTICE
    if _NOTICE is None:
        ensure_cache()
        _NOTICE = CompileNotice()
        event.register("numba:compile", _NOTICE)
    return _NOTICE


# ----------------------------------------------------------------------------- sharing
HELPER = os.environ.get("MINISSL_COMPILE_HELPER", "1") != "0"     # see the module docstring
# seconds this process waits for the helper before stopping it and compiling what is left
# itself (the helper's whole share is ~3 s of CPU: this is for a helper that hangs)
HELPER_TIMEOUT = 60.0
# where the ``minissl`` package lives, for the helper's ``sys.path``
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_ACTIVE = []                    # this process's Sharings whose helper may be running
_LOCK = threading.Lock()


def cores():
    """The CPUs this process may run on (its affinity where the OS tells it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


def cached(dispatcher, args):
    """Whether ``dispatcher``'s overload for the argument types ``args`` is compiled in this
    process or in Numba's cache (read from the cache's index, the machine code not loaded).
    True when it cannot tell (caching off: nothing to share)."""
    try:
        if tuple(args) in dispatcher.overloads:
            return True
        cache = dispatcher._cache
        key = cache._index_key(tuple(args), dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:           # caching off (NullCache), no JIT, or another cache layout
        return True


def _claim(claims, i):
    """Take job ``i`` (True) unless the other process took it first (False)."""
    if claims is None:
        return True
    try:
        os.close(os.open(os.path.join(claims, str(i)), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _args(job):
    """The argument types of a job ``(dispatcher, template, dtype, literals)``."""
    return signature(*job[1:]).args


def _compile(job):
    """Compile (or load) one job."""
    job[0].compile(_args(job))


def _spec(job):
    dispatcher, template, dtype, literals = job
    return [dispatcher.py_func.__module__, dispatcher.py_func.__name__, template,
            str(dtype), list(literals)]


def _start_helper(jobs, claims):
    env = dict(os.environ, MINISSL_COMPILE_HELPER="0",
               PYTHONPATH=os.pathsep.join([_ROOT] + [p for p in [os.environ.get("PYTHONPATH")]
                                                     if p]))
    if numba.config.CACHE_DIR:                  # set here (``ensure_cache``) or by the env
        env["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR
    code = "import sys; from minissl.kernels.compiling import helper; helper(sys.argv[1:])"
    try:
        return subprocess.Popen([sys.executable, "-c", code, claims,
                                 json.dumps([_spec(j) for j in jobs])], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except OSError:
        return None


class Sharing:
    """A cold compile of ``jobs`` (``(dispatcher, template, dtype, literals)``, see
    ``calls.signature``), shared with a helper process when that can help (see the module
    docstring). Created, the helper starts on the jobs not yet compiled; ``finish(here)``
    runs ``here()`` in this process, then takes the jobs the helper has not taken, then waits
    for the helper: afterwards every job is in this process or the cache. ``close()`` stops
    an unfinished helper (a run that ends before it needs the jobs)."""

    def __init__(self, jobs):
        self.todo = [j for j in jobs if not cached(j[0], _args(j))]
        self.helper = self.claims = None
        self.mine, self.closed = set(), False            # jobs this process claimed
        if HELPER and len(self.todo) >= 2 and not numba.config.DISABLE_JIT and cores() > 1:
            self.claims = tempfile.mkdtemp(prefix="minissl-claims-")
            self.helper = _start_helper(self.todo, self.claims)
            with _LOCK:
                _ACTIVE.append(self)

    def finish(self, here=None):
        try:
            if here is not None:
                here()
            for i, job in enumerate(self.todo):
                if self.helper is None or i in self.mine or _claim(self.claims, i):
                    _compile(job)                # (a no-op when this process has it)
            if self.helper is not None:
                try:
                    self.helper.wait(HELPER_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self.close()

    def take(self, dispatcher):
        """Before this process first calls ``dispatcher``: claim its jobs (this process then
        compiles them on the call) or, where the helper has claimed one, wait until the
        helper has written it to the cache (or has exited)."""
        for i, job in enumerate(self.todo):
            if job[0] is not dispatcher or i in self.mine:
                continue
            if _claim(self.claims, i):
                self.mine.add(i)
                continue
            args, deadline = _args(job), time.monotonic() + HELPER_TIMEOUT
            while (not cached(dispatcher, args) and self.helper is not None
                   and self.helper.poll() is None and time.monotonic() < deadline):
                time.sleep(0.005)

    def close(self):
        with _LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
        if self.helper is not None and self.helper.poll() is None:
            self.helper.kill()
            self.helper.wait()
        if self.claims is not None:
            shutil.rmtree(self.claims, ignore_errors=True)
        self.helper, self.claims, self.closed = None, None, True


def take(dispatcher):
    """``Sharing.take(dispatcher)`` for every sharing of this process with a helper running
    (none: returns at once): call before a kernel that a helper may be compiling."""
    if _ACTIVE:
        for sharing in list(_ACTIVE):
            sharing.take(dispatcher)


def helper(argv):
    """The helper process of a ``Sharing``: ``argv`` = [claims directory, JSON list of job specs
    (module, function, template, dtype, literals)]; compiles the jobs it claims into the
    cache, in order."""
    claims, specs = argv[0], json.loads(argv[1])
    for i, (module, name, template, dtype, literals) in enumerate(specs):
        job = (getattr(importlib.import_module(module), name), template, dtype,
               tuple(literals))
        if _claim(claims, i) and not cached(job[0], _args(job)):
            _compile(job)
