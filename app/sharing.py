"""Identical requests share one run: a bounded table of streams (``RunCache``).

A *stream* is what one computation yields, in order: items ``(kind, records, figures,
payload, seconds)``, "update" while it trains, then one final "done", "stopped", "diverged"
or "error" (``app/runs.py`` makes them). Its key is the request's validated setting (e.g.
``("hltm", repr(cfg))``, ``runs.key_of``), so every request with that key gets that stream:

- a request whose key is computing *joins* it: it replays the items so far, then follows live;
- a request whose key has finished ("done" or "diverged": what a rerun would repeat) replays
  the kept stream and computes nothing;
- a computation whose last watcher leaves (Stop, a cancelled event, a closed page) is stopped
  at once and forgotten; a "stopped" or "error" stream is never kept.

Bounded: at most ``max_entries`` streams and ``max_bytes`` of their items (PNG data URLs,
records: ``approx_bytes``), running ones included; past a cap the least recently used
finished streams go, and a stream larger than ``max_bytes`` on its own is not kept.
"""
import sys
import threading
from collections import OrderedDict

import numpy as np

MAX_ENTRIES = 32             # streams kept (running ones count)
MAX_BYTES = 32 * 2 ** 20     # bytes of their items (about 1 MB per default HLTM run)
KEPT = ("done", "diverged")  # final kinds worth replaying


def approx_bytes(obj) -> int:
    """A rough size of ``obj``: arrays' ``nbytes``, strings' length, containers' contents,
    an object's ``__dict__`` (a gradio ``PlotData``: its data URL); else ``sys.getsizeof``."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (str, bytes)):
        return len(obj)
    if isinstance(obj, dict):
        return 64 + sum(approx_bytes(k) + approx_bytes(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return 56 + sum(8 + approx_bytes(v) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return approx_bytes(vars(obj))
    return sys.getsizeof(obj)


class Stream:
    """One computation's items and the requests watching it. ``stop``: the computation's
    stop flag; ``step``: its last step (the Stop message says it); ``final_wanted``: the
    last watcher left by Stop and still reads the final item (so it is drawn)."""

    def __init__(self, key):
        self.key, self.items, self.nbytes, self.counted = key, [], 0, 0
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.watchers, self.step = 0, 0
        self.final_wanted = self.forgotten = False

    @property
    def done(self) -> bool:
        return bool(self.items) and self.items[-1][0] != "update"

    def put(self, item):
        """Append ``item``; its size counts its figures, payload and the records added since
        the previous item (snapshots share the older ones)."""
        records = item[1]
        size = approx_bytes(item[2]) + approx_bytes(item[3]) + approx_bytes(
            records[self.counted:])
        with self.cond:
            self.items.append(item)
            self.nbytes += size
            self.counted = len(records)
            self.cond.notify_all()

    def get(self, i, timeout):
        """Item ``i``, waiting up to ``timeout`` seconds for it; None if it is not there yet."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.items) > i, timeout)
            return self.items[i] if len(self.items) > i else None


class RunCache:
    """Streams by key (module docstring). ``computations`` counts the streams started."""

    def __init__(self, max_entries=MAX_ENTRIES, max_bytes=MAX_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.lock = threading.Lock()
        self.streams: OrderedDict = OrderedDict()     # key -> Stream, least recent first
        self.computations = 0

    def join(self, key, start):
        """The stream of ``key`` with the caller as one more watcher: the running or kept
        one, else a new one that ``start(stream)`` begins computing (key None: always new,
        never kept)."""
        with self.lock:
            stream = self.streams.get(key) if key is not None else None
            if stream is not None:
                self.streams.move_to_end(key)
                stream.watchers += 1
                return stream
            stream = Stream(key)
            stream.watchers = 1
            self.computations += 1
            if key is not None:
                self.streams[key] = stream
                self._evict()
        start(stream)
        return stream

    def leave(self, stream, final=False) -> bool:
        """A watcher goes. The last watcher of a stream still computing stops it (``final``:
        it will still read the final item) and the stream is forgotten: True then."""
        with self.lock:
            stream.watchers -= 1
            if stream.watchers > 0 or stream.done:
                return False
            stream.final_wanted = final
            self._forget(stream)
        stream.stop.set()
        return True

    def finish(self, stream):
        """After the stream's final item: keep it ("done"/"diverged", not forgotten, within
        ``max_bytes``) or forget it; then evict past the caps."""
        with self.lock:
            if stream.items[-1][0] not in KEPT or stream.nbytes > self.max_bytes:
                self._forget(stream)
            self._evict()

    def _forget(self, stream):
        stream.forgotten = True
        if self.streams.get(stream.key) is stream:
            del self.streams[stream.key]

    def _evict(self):
        total = sum(s.nbytes for s in self.streams.values())
        for s in [s for s in self.streams.values() if s.done]:       # least recent first
            if len(self.streams) <= self.max_entries and total <= self.max_bytes:
                return
            total -= s.nbytes
            self._forget(s)

    def stats(self) -> dict:
        """``{"entries", "bytes", "running", "computations"}``."""
        with self.lock:
            streams = list(self.streams.values())
            return {"entries": len(streams), "bytes": sum(s.nbytes for s in streams),
                    "running": sum(not s.done for s in streams),
                    "computations": self.computations}

    def clear(self):
        """Forget every finished stream (running ones go on)."""
        with self.lock:
            for s in [s for s in self.streams.values() if s.done]:
                self._forget(s)
