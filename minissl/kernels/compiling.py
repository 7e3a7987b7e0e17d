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

Imported by every kernel module before it defines its kernels; NumPy-only users never import
it (nor Numba).
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings

import numba
from numba import njit
from numba.core import event

# rough compile seconds on a 2-core machine (docs/performance.md), by the function whose
# compilation starts first (the compiled epoch: its address table, ``tree.kernel_table``,
# compiles ``sample_bits`` first; the per-step path and a tree layer's products: ``combine``);
# others: DEFAULT_SECONDS
SECONDS = {"sample_bits": 6, "combine": 4, "run_steps": 2, "masked_matmul_fm": 3,
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
