"""Atomic, pickle-free saving and checked loading of states (dicts of arrays and plain values).

File format: a NumPy ``.npz`` with one array per leaf and a ``__meta__`` entry holding UTF-8
JSON: ``{"format": "minissl", "version": 1, "kind": ..., "layout": ..., "sha256": ...}``.
``layout`` rebuilds the nested dict/list structure; ``sha256`` covers every array's dtype,
shape and bytes, so a truncated or edited file is refused. Loading uses
``allow_pickle=False`` always. Saving writes a temporary file beside the target and renames it
over the target (``os.replace``), so a failed save leaves the old file intact.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT, VERSION = "minissl", 1


class CheckpointError(ValueError):
    """The file is not a readable minissl checkpoint of the expected kind."""


def _flatten(obj, arrays, prefix):
    """Replace arrays by {"__array__": key}; returns the JSON-able layout."""
    if isinstance(obj, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        return {str(k): _flatten(v, arrays, f"{prefix}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, arrays, f"{prefix}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save {prefix} of type {type(obj).__name__}")


def _unflatten(layout, arrays):
    if isinstance(layout, dict):
        if set(layout) == {"__array__"}:
            return arrays[layout["__array__"]]
        return {k: _unflatten(v, arrays) for k, v in layout.items()}
    if isinstance(layout, list):
        return [_unflatten(v, arrays) for v in layout]
    return layout


def _digest(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_state(path, state, kind):
    """Write ``state`` to ``path`` atomically (see module docstring)."""
    arrays = {}
    layout = _flatten(state, arrays, "state")
    for key, a in arrays.items():
        if a.dtype == object:
            raise TypeError("object arrays cannot be saved (they would need pickling)")
    meta = {"format": FORMAT, "version": VERSION, "kind": kind, "layout": layout,
            "sha256": _digest(arrays)}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".minissl-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_state(path, kind):
    """Read a state written by ``save_state``; ``CheckpointError`` if corrupt or foreign."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise CheckpointError(f"{path} is not a minissl checkpoint (no __meta__ entry)")
            meta = json.loads(z["__meta__"].tobytes().decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError,
            json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{path} is not a readable minissl checkpoint: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minissl checkpoint (format={meta.get('format')!r})"
                              if isinstance(meta, dict) else f"{path} has a malformed header")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')!r}; "
                              f"this minissl reads version {VERSION}")
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {meta.get('kind')!r}, expected a {kind!r}")
    if meta.get("sha256") != _digest(arrays):
        raise CheckpointError(f"{path} is corrupt: its arrays do not match their checksum")
    try:
        return _unflatten(meta["layout"], arrays)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path} has a malformed layout: {e}") from None
