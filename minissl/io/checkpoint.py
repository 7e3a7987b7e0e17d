"""Atomic, pickle-free saving and bounded, checked loading of states (nested dicts/lists of
arrays and plain values).

File format, version 2: a NumPy ``.npz`` (a zip of ``.npy`` members) with one C-ordered array
``a<i>.npy`` per array leaf and ``__meta__.npy``, a uint8 array of UTF-8 JSON::

    {"format": "minissl", "version": 2, "kind": ..., "layout": ...,
     "arrays": {"a0": {"dtype": "<f8", "shape": [4, 5], "sha256": sha256(bytes)}, ...},
     "sha256": sha256(canonical JSON of all the other fields)}

``layout`` rebuilds the nesting (an array leaf is ``{"__array__": "a0"}``; tuples come back as
lists). Canonical JSON is ``json.dumps(..., sort_keys=True, separators=(",", ":"))``. The header
checksum covers kind, version, layout and every array's dtype, shape and bytes digest, so an
edited header is refused before any array is read, and edited bytes when their array is read.

Loading reads only a regular file (a FIFO, a device such as ``/dev/zero``, a socket or a folder
is refused by ``os.stat`` before it is opened, and again by ``fstat`` on what was opened), no
larger than the memory limit plus ``FILE_SLACK`` (``ResourceLimitError``), and never reads past
the size it had when it was checked. It is bounded before any array data is read: the JSON
(``MAX_META_BYTES``), the number of
arrays (``MAX_ARRAYS``), the layout's nesting (``MAX_DEPTH``) and the declared array bytes
(``limits.check_memory``). Each member's ``.npy`` header must match its declaration (a plain
bool/int/float/complex dtype, C order) and the zip's declared size must be exactly header +
data; no more than that is ever decompressed. Nothing is unpickled. Version-1 files (whose
checksum did not cover the layout) are refused.

Saving writes a temporary file beside the target (mode ``0o666 & ~umask``), fsyncs it and renames
it over the target (``os.replace``): a failed save leaves the old file intact, and its
``OSError`` names the target (a missing or read-only folder), not the temporary file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
import zipfile
import zlib

import numpy as np

from ..budget import ResourceLimitError, check_memory
from ..checks import shown

FORMAT, VERSION = "minissl", 2
MAX_META_BYTES = 1 << 20   # the JSON header
MAX_ARRAYS = 4096
MAX_DEPTH = 32             # nesting of dicts/lists in the layout
_KINDS = "biufc"           # bool, signed, unsigned, float, complex
_CHUNK = 1 << 20           # bytes decompressed per read
MAX_SHOWN_PATH = 128       # a path longer than twice this is cut in messages
FILE_SLACK = 16 << 20      # file bytes allowed past the memory limit: zip and JSON headers


class CheckpointError(ValueError):
    """The file is not a readable minissl checkpoint of the expected kind."""


def _place(prefix, key):
    """Where a value sits in the state: ``weights[1]``, ``opt.m``."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def _digest(meta):
    """sha256 of the canonical JSON of ``meta`` without its own ``sha256`` field."""
    rest = {k: v for k, v in meta.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


# ----------------------------------------------------------------------------- saving
def _flatten(obj, arrays, place, depth):
    """Replace arrays by ``{"__array__": key}`` (C-ordered copies in ``arrays``); the layout."""
    where = place or "the state"
    if depth > MAX_DEPTH:
        raise ValueError(f"cannot save {where}: nested deeper than {MAX_DEPTH}")
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _KINDS:
            raise TypeError(f"cannot save {where}: dtype {obj.dtype} is not a plain numeric or "
                            "bool dtype (object arrays would need pickling)")
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(obj, order="C")
        return {"__array__": key}
    if isinstance(obj, dict):
        if "__array__" in obj:
            raise ValueError(f"cannot save {where}: the key '__array__' is reserved")
        return {str(k): _flatten(v, arrays, _place(place, str(k)), depth + 1)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, arrays, _place(place, i), depth + 1) for i, v in enumerate(obj)]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save {where} of type {type(obj).__name__}")


def save_state(path, state, kind):
    """Write ``state`` to ``path`` atomically (see module docstring)."""
    arrays = {}
    layout = _flatten(state, arrays, "", 0)
    if len(arrays) > MAX_ARRAYS:
        raise ValueError(f"cannot save {len(arrays)} arrays; a checkpoint holds at most "
                         f"{MAX_ARRAYS}")
    meta = {"format": FORMAT, "version": VERSION, "kind": kind, "layout": layout,
            "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape),
                           "sha256": hashlib.sha256(a.reshape(-1).view(np.uint8)).hexdigest()}
                       for k, a in arrays.items()}}
    meta["sha256"] = _digest(meta)
    header = json.dumps(meta).encode()
    if len(header) > MAX_META_BYTES:
        raise ValueError(f"cannot save a layout of {len(header)} bytes of JSON; at most "
                         f"{MAX_META_BYTES}")
    path = os.fspath(path)
    umask = os.umask(0)
    os.umask(umask)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".minissl-", suffix=".npz",
                                   dir=os.path.dirname(os.path.abspath(path)))
    except OSError as e:                     # a missing or read-only folder: name the target
        raise _naming(e, path, f" (cannot write in {os.path.dirname(os.path.abspath(path))!r})"
                      ) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.chmod(tmp, 0o666 & ~umask)
            np.savez(fh, __meta__=np.frombuffer(header, np.uint8), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _naming(e, path, " (saving it)") from None
        raise


def _naming(e, path, note):
    """``e`` (an ``OSError`` about the temporary file) as the same error about ``path``."""
    if e.errno is None:
        return e
    return type(e)(e.errno, f"{e.strerror}{note}", path)


# ----------------------------------------------------------------------------- loading
def _npy_header(fh, info, path):
    """``(dtype, shape)`` from a member's ``.npy`` header, its data not read.

    Refuses non-plain dtypes, Fortran order, and a zip size other than header + data bytes.
    """
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise CheckpointError(f"{path}: {info.filename} has .npy version {version}")
    if dtype.kind not in _KINDS or fortran:
        raise CheckpointError(f"{path}: {info.filename} holds an array of dtype {dtype}"
                              f"{' in Fortran order' if fortran else ''}; only C-ordered "
                              "bool/int/float/complex arrays are read")
    size = fh.tell() + math.prod(shape) * dtype.itemsize
    if info.file_size != size:
        raise CheckpointError(f"{path} is corrupt: {info.filename} declares {info.file_size} "
                              f"bytes, its .npy header describes {size}")
    return dtype, shape


def _read_data(fh, dtype, shape):
    """The array after the header, read chunk by chunk, and the sha256 of its bytes."""
    a = np.empty(shape, dtype)
    flat = a.reshape(-1).view(np.uint8)
    h = hashlib.sha256()
    pos = 0
    while pos < flat.size:
        chunk = fh.read(min(_CHUNK, flat.size - pos))
        if not chunk:
            raise EOFError("an array ends early")
        flat[pos:pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
        h.update(chunk)
        pos += len(chunk)
    return a, h.hexdigest()


def _places(layout, out, place="", depth=0):
    """Fill ``out`` with {array key: place in the layout}; refuses deep or malformed nesting."""
    if depth > MAX_DEPTH:
        raise ValueError(f"the layout is nested deeper than {MAX_DEPTH}")
    if isinstance(layout, dict) and "__array__" in layout:
        key = layout["__array__"]
        if len(layout) != 1 or not isinstance(key, str) or key in out:
            raise ValueError(f"bad array reference at {place or 'the top'}")
        out[key] = place
    elif isinstance(layout, dict):
        for k, v in layout.items():
            _places(v, out, _place(place, k), depth + 1)
    elif isinstance(layout, list):
        for i, v in enumerate(layout):
            _places(v, out, _place(place, i), depth + 1)
    return out


def _declared(d):
    """``(dtype, shape, sha256)`` of one array's declaration; ValueError if malformed."""
    dtype, shape, sha = np.dtype(d["dtype"]), d["shape"], d["sha256"]
    if dtype.str != d["dtype"] or dtype.kind not in _KINDS:
        raise ValueError(f"dtype {shown(d['dtype'])} is not a plain bool/int/float/complex dtype")
    if not (isinstance(shape, list) and len(shape) <= 64
            and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError(f"bad shape {shown(shape)}")
    if not isinstance(sha, str):
        raise ValueError(f"bad checksum {shown(sha)}")
    return dtype, tuple(shape), sha


def _check_meta(meta, path, kind):
    """Validate the header; return ``{key: (dtype, shape, sha256, place)}`` for its arrays."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minissl checkpoint (format="
                              f"{shown(meta.get('format') if isinstance(meta, dict) else None)})")
    if meta.get("version") == 1:
        raise CheckpointError(f"{path} is a version-1 minissl checkpoint, which is no longer "
                              "read (its checksum does not cover its layout); save the object "
                              "again")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {shown(meta.get('version'))}; "
                              f"this minissl reads version {VERSION}")
    if meta.get("sha256") != _digest(meta):
        raise CheckpointError(f"{path} is corrupt: its header does not match its checksum")
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {shown(meta.get('kind'))}, expected a {kind!r}")
    try:
        places = _places(meta["layout"], {})
        if set(places) != set(meta["arrays"]):
            raise ValueError("its arrays do not match its layout")
        return {k: (*_declared(meta["arrays"][k]), place) for k, place in places.items()}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a malformed header: {e}") from None


def _unflatten(layout, arrays):
    if isinstance(layout, dict):
        if "__array__" in layout:
            return arrays[layout["__array__"]]
        return {k: _unflatten(v, arrays) for k, v in layout.items()}
    if isinstance(layout, list):
        return [_unflatten(v, arrays) for v in layout]
    return layout


def _load(zf, path, kind, finite, limits):
    infos = zf.infolist()
    if len(infos) > MAX_ARRAYS + 1:
        raise CheckpointError(f"{path} has {len(infos)} members; a checkpoint holds at most "
                              f"{MAX_ARRAYS} arrays")
    members = {info.filename: info for info in infos}
    if len(members) != len(infos):
        raise CheckpointError(f"{path} is corrupt: a member name occurs twice")
    if "__meta__.npy" not in members:
        raise CheckpointError(f"{path} is not a minissl checkpoint (no __meta__ entry)")
    for info in infos:
        if info.flag_bits & 1 or info.compress_type not in (zipfile.ZIP_STORED,
                                                            zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{path}: {info.filename} is encrypted or compressed with an "
                                  "unsupported method")
    with zf.open(members["__meta__.npy"]) as fh:
        dtype, shape = _npy_header(fh, members["__meta__.npy"], path)
        if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_META_BYTES:
            raise CheckpointError(f"{path} has a malformed header (not at most "
                                  f"{MAX_META_BYTES} bytes of JSON)")
        text = _read_data(fh, dtype, shape)[0].tobytes()
    meta = json.loads(text.decode())
    declared = _check_meta(meta, path, kind)
    if set(members) != {"__meta__.npy"} | {k + ".npy" for k in declared}:
        raise CheckpointError(f"{path} is corrupt: its members do not match its layout")
    check_memory(sum(math.prod(d[1]) * d[0].itemsize for d in declared.values()),
                 "the checkpoint's arrays", f"path={path!r}", limits)
    arrays = {}
    for key, (dtype, shape, want_sha, place) in declared.items():
        with zf.open(members[key + ".npy"]) as fh:
            got_dtype, got_shape = _npy_header(fh, members[key + ".npy"], path)
            if got_dtype.str != dtype.str or got_shape != shape:
                raise CheckpointError(f"{path} is corrupt: {place} ({key}) does not match its "
                                      "declared dtype and shape")
            a, sha = _read_data(fh, dtype, shape)
        if sha != want_sha:
            raise CheckpointError(f"{path} is corrupt: {place} ({key}) does not match its "
                                  "checksum")
        if finite and a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise CheckpointError(f"{path}: {place} contains NaN or infinite values")
        arrays[key] = a
    return _unflatten(meta["layout"], arrays)


class _Bounded:
    """A binary file read as its first ``size`` bytes (its size when it was checked): a file
    that grows while it is read is read as it was. What ``zipfile`` calls: read, seek, tell."""

    def __init__(self, fh, size):
        self.fh, self.size = fh, size

    def read(self, n=-1):
        left = max(0, self.size - self.fh.tell())
        return self.fh.read(left if n is None or n < 0 else min(n, left))

    def seek(self, offset, whence=0):
        return self.fh.seek(self.size + offset if whence == 2 else offset,
                            0 if whence == 2 else whence)

    def tell(self):
        return self.fh.tell()

    def seekable(self):
        return True


def _regular(st, path):
    """``CheckpointError`` unless ``st`` (an ``os.stat`` result) is a regular file's."""
    if not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"),
                     (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                     (stat.S_ISSOCK, "a socket")) if test(st.st_mode)), "not a regular file")
        raise CheckpointError(f"{path} is {what}; a checkpoint is read only from a regular file")


def _open_checked(path, label, limits):
    """``(file, size)``: ``path`` opened for reading after ``os.stat`` says it is a regular file
    no larger than the memory limit plus ``FILE_SLACK``, and ``fstat`` says the same of what was
    opened (non-blocking, so a FIFO swapped in meanwhile cannot hang the open)."""
    _regular(os.stat(path), label)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        _regular(st, label)
        check_memory(max(0, st.st_size - FILE_SLACK), f"the checkpoint file ({st.st_size:,} bytes,"
                     f" less {FILE_SLACK >> 20} MiB of headers)", f"path={label!r}", limits)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def load_state(path, kind, *, finite=True, limits=None):
    """Read a state written by ``save_state`` (see module docstring).

    ``CheckpointError`` for a truncated, corrupt, foreign or non-zip file, one that is not a
    regular file (a FIFO, a device, a folder), another ``kind``, or (with ``finite``) NaN/inf in
    a floating array; ``ResourceLimitError`` if the file or its arrays would exceed ``limits``
    (a ``minissl.budget.Limits``; None: ``current_limits()``); ``FileNotFoundError`` if there is
    no file.
    """
    path = os.fspath(path)
    label = path if len(str(path)) <= 2 * MAX_SHOWN_PATH else shown(path, 2 * MAX_SHOWN_PATH)
    try:
        fh, size = _open_checked(path, label, limits)
        with fh, zipfile.ZipFile(_Bounded(fh, size)) as zf:
            return _load(zf, label, kind, finite, limits)
    except (CheckpointError, ResourceLimitError, FileNotFoundError):
        raise
    except (OSError, ValueError, EOFError, RecursionError, NotImplementedError,
            zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(f"{label} is not a readable minissl checkpoint: "
                              f"{shown(str(e), 2 * MAX_SHOWN_PATH)}") from None
