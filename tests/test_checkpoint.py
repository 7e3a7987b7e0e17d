"""minissl.io: roundtrip, and refusal of truncated, foreign, pickled, forged, oversized,
bomb-like and non-finite files with bounded memory; atomic saves with umask permissions."""
import hashlib
import io
import json
import os
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from minissl.io import CheckpointError, load_state, save_state
from minissl.io.checkpoint import MAX_ARRAYS
from minissl.budget import Limits, ResourceLimitError

pytestmark = pytest.mark.timeout(30)

UNPICKLED = []


class Trap:
    """Records that it was unpickled: a loader that unpickles would run this."""
    def __reduce__(self):
        return UNPICKLED.append, ("unpickled",)


def state():
    rng = np.random.default_rng(0)
    return {"sizes": [3, 4, 2], "bias": True, "eps": 0.0, "name": "net", "nothing": None,
            "weights": [rng.normal(size=(4, 3)), rng.normal(size=(2, 4)).astype(np.float32)],
            "extra": {"ints": np.arange(6, dtype=np.int32).reshape(2, 3),
                      "flags": np.array([True, False]), "scalar": np.float64(2.5),
                      "pair": (1, [None, False]), "empty": np.zeros((0, 3))}}


# -- helpers that write files by hand, following the documented format
def npy(a=None, header=None, data=b""):
    """``.npy`` bytes of ``a`` (pickles allowed), or of a hand-written ``header`` + ``data``."""
    buf = io.BytesIO()
    if a is not None:
        np.save(buf, a, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(data)
    return buf.getvalue()


def digest(meta):
    rest = {k: v for k, v in meta.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def meta_npy(meta):
    return npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))


def forge(path, layout, arrays, members, kind="T", compression=zipfile.ZIP_STORED):
    """A version-2 file with a correct header checksum over ``layout`` and ``arrays``."""
    meta = {"format": "minissl", "version": 2, "kind": kind, "layout": layout, "arrays": arrays}
    meta["sha256"] = digest(meta)
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("__meta__.npy", meta_npy(meta))
        for name, buf in members.items():
            z.writestr(name, buf)


def declare(dtype, shape, data=b""):
    return {"dtype": np.dtype(dtype).str, "shape": list(shape),
            "sha256": hashlib.sha256(data).hexdigest()}


def central_record(raw, name):
    """Offset of ``name``'s record in a zip's central directory."""
    i = raw.find(b"PK\x01\x02")
    while raw[i + 46:i + 46 + struct.unpack_from("<H", raw, i + 28)[0]] != name.encode():
        i = raw.find(b"PK\x01\x02", i + 4)
    return i


def peak_bytes(fn, *args, **kwargs):
    """Peak traced allocation while ``fn`` runs (it is expected to raise)."""
    tracemalloc.start()
    try:
        with pytest.raises(Exception) as e:
            fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1], e.value
    finally:
        tracemalloc.stop()


# -- tests
def test_roundtrip(tmp_path):
    st = state()
    st["extra"]["be"] = np.arange(3, dtype=">f8")
    st["extra"]["z"] = np.array([1 + 2j])
    st["extra"]["zero_d"] = np.array(7, np.uint16)
    st["extra"]["fortran"] = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    save_state(tmp_path / "s.npz", st, kind="T")
    back = load_state(tmp_path / "s.npz", "T")
    assert back["sizes"] == [3, 4, 2] and back["bias"] is True and back["nothing"] is None
    assert back["name"] == "net" and back["extra"]["scalar"] == 2.5
    assert back["extra"]["pair"] == [1, [None, False]]              # tuples come back as lists
    pairs = [(back["weights"][i], st["weights"][i]) for i in (0, 1)]
    pairs += [(back["extra"][k], st["extra"][k])
              for k in ("ints", "flags", "empty", "be", "z", "zero_d", "fortran")]
    for got, want in pairs:
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert got.flags.writeable
    with pytest.raises(CheckpointError, match="holds a 'T', expected a 'U'"):
        load_state(tmp_path / "s.npz", "U")


def test_truncated_foreign_and_non_zip_files(tmp_path):
    save_state(tmp_path / "s.npz", state(), kind="T")
    data = (tmp_path / "s.npz").read_bytes()
    for cut in (0, 10, len(data) // 3, len(data) // 2, len(data) - 1):
        (tmp_path / "t.npz").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"{tmp_path / 't.npz'}.* not a readable"):
            load_state(tmp_path / "t.npz", "T")
    np.savez(tmp_path / "foreign.npz", W=np.zeros(3))
    with pytest.raises(CheckpointError, match="no __meta__"):
        load_state(tmp_path / "foreign.npz", "T")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_state(tmp_path / "text.npz", "T")
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "missing.npz", "T")


def test_pickled_object_arrays_are_never_unpickled(tmp_path):
    obj = np.array([Trap()], dtype=object)
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    with pytest.raises(CheckpointError):
        load_state(tmp_path / "obj.npy", "T")
    # a checkpoint whose header declares a float array but whose member holds a pickle
    forge(tmp_path / "p.npz", {"x": {"__array__": "a0"}}, {"a0": declare("f8", (1,))},
          {"a0.npy": npy(obj)})
    with pytest.raises(CheckpointError, match="a0.npy holds an array of dtype object"):
        load_state(tmp_path / "p.npz", "T")
    # ... or declares the object dtype itself
    forge(tmp_path / "q.npz", {"x": {"__array__": "a0"}}, {"a0": declare(object, (1,))},
          {"a0.npy": npy(obj)})
    with pytest.raises(CheckpointError, match="not a plain"):
        load_state(tmp_path / "q.npz", "T")
    assert UNPICKLED == []


def test_edited_layout_is_refused_by_its_checksum(tmp_path):
    save_state(tmp_path / "s.npz", state(), kind="T")
    with zipfile.ZipFile(tmp_path / "s.npz") as zin, \
            zipfile.ZipFile(tmp_path / "forged.npz", "w") as zout:
        for item in zin.infolist():
            buf = zin.read(item.filename)
            if item.filename == "__meta__.npy":
                meta = json.loads(np.load(io.BytesIO(buf)).tobytes())
                meta["layout"]["sizes"] = [12000, 12000]           # the old sha is kept
                buf = meta_npy(meta)
            zout.writestr(item, buf)
    with pytest.raises(CheckpointError, match="forged.npz is corrupt: .*checksum"):
        load_state(tmp_path / "forged.npz", "T")


def test_edited_array_bytes_are_refused_by_their_checksum(tmp_path):
    save_state(tmp_path / "s.npz", state(), kind="T")
    with zipfile.ZipFile(tmp_path / "s.npz") as zin, \
            zipfile.ZipFile(tmp_path / "tamper.npz", "w") as zout:
        for item in zin.infolist():
            buf = zin.read(item.filename)
            if item.filename == "a1.npy":
                buf = buf[:-4] + np.float32(123.0).tobytes()
            zout.writestr(item, buf)
    with pytest.raises(CheckpointError, match=r"corrupt: weights\[1\] \(a1\) .*checksum"):
        load_state(tmp_path / "tamper.npz", "T")


def test_version_1_files_are_refused(tmp_path):
    meta = {"format": "minissl", "version": 1, "kind": "T", "layout": {}, "sha256": "x"}
    with zipfile.ZipFile(tmp_path / "v1.npz", "w") as z:
        z.writestr("__meta__.npy", meta_npy(meta))
    with pytest.raises(CheckpointError, match="version-1 .* save the object again"):
        load_state(tmp_path / "v1.npz", "T")


HUGE = {"descr": "<f8", "fortran_order": False, "shape": (100_000, 100_000)}   # 74.5 GiB


def test_huge_declared_array_is_refused_by_the_memory_limit(tmp_path):
    forge(tmp_path / "big.npz", {"w": {"__array__": "a0"}},
          {"a0": declare("f8", HUGE["shape"])}, {"a0.npy": npy(header=HUGE, data=bytes(16))})
    peak, err = peak_bytes(load_state, tmp_path / "big.npz", "T")
    assert isinstance(err, ResourceLimitError)
    assert "path=" in str(err) and "74.5 GiB" in str(err) and "the limit is 2.0 GiB" in str(err)
    assert peak < 4 << 20
    save_state(tmp_path / "s.npz", state(), kind="T")
    with pytest.raises(ResourceLimitError, match="the limit is 64 B"):
        load_state(tmp_path / "s.npz", "T", limits=Limits(64, 1.0))


def test_huge_npy_header_behind_a_small_declaration_is_refused(tmp_path):
    forge(tmp_path / "big.npz", {"w": {"__array__": "a0"}}, {"a0": declare("f8", (2,))},
          {"a0.npy": npy(header=HUGE, data=bytes(16))})
    peak, err = peak_bytes(load_state, tmp_path / "big.npz", "T")
    assert isinstance(err, CheckpointError) and "a0.npy" in str(err)
    assert peak < 4 << 20


def test_deflate_bomb_with_honest_huge_size_is_refused_unread(tmp_path):
    # header says 3 floats; the member decompresses to 64 MiB of zeros (about 64 KiB on disk)
    bomb = npy(header={"descr": "<f8", "fortran_order": False, "shape": (3,)},
               data=bytes(64 << 20))
    forge(tmp_path / "bomb.npz", {"w": {"__array__": "a0"}}, {"a0": declare("f8", (3,))},
          {"a0.npy": bomb}, compression=zipfile.ZIP_DEFLATED)
    del bomb
    assert os.path.getsize(tmp_path / "bomb.npz") < 1 << 20
    peak, err = peak_bytes(load_state, tmp_path / "bomb.npz", "T")
    assert isinstance(err, CheckpointError) and "a0.npy declares" in str(err)
    assert peak < 4 << 20


def test_deflate_bomb_behind_a_small_declared_size_is_cut_off(tmp_path):
    data = bytes(24)
    bomb = npy(header={"descr": "<f8", "fortran_order": False, "shape": (3,)},
               data=bytes(64 << 20))
    forge(tmp_path / "bomb.npz", {"w": {"__array__": "a0"}}, {"a0": declare("f8", (3,), data)},
          {"a0.npy": bomb}, compression=zipfile.ZIP_DEFLATED)
    small = len(bomb) - (64 << 20) + 24
    del bomb
    raw = bytearray((tmp_path / "bomb.npz").read_bytes())
    struct.pack_into("<I", raw, central_record(raw, "a0.npy") + 24, small)   # file_size
    (tmp_path / "bomb.npz").write_bytes(bytes(raw))
    with zipfile.ZipFile(tmp_path / "bomb.npz") as z:
        assert z.getinfo("a0.npy").file_size == small
    peak, err = peak_bytes(load_state, tmp_path / "bomb.npz", "T")
    assert isinstance(err, CheckpointError)
    assert peak < 4 << 20


def test_too_many_arrays(tmp_path):
    n = MAX_ARRAYS + 1
    one = npy(np.zeros(1))
    forge(tmp_path / "many.npz", [{"__array__": f"a{i}"} for i in range(n)],
          {f"a{i}": declare("f8", (1,), bytes(8)) for i in range(n)},
          {f"a{i}.npy": one for i in range(n)})
    with pytest.raises(CheckpointError, match=f"{n + 1} members; .* at most {MAX_ARRAYS} arrays"):
        load_state(tmp_path / "many.npz", "T")
    with pytest.raises(ValueError, match=f"at most {MAX_ARRAYS}"):
        save_state(tmp_path / "s.npz", [np.zeros(1)] * n, kind="T")


def test_deep_layouts_and_large_headers_are_refused(tmp_path):
    deep = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper than 32"):
        save_state(tmp_path / "s.npz", deep, kind="T")
    forge(tmp_path / "deep.npz", deep, {}, {})
    with pytest.raises(CheckpointError, match="malformed header: .*nested deeper than 32"):
        load_state(tmp_path / "deep.npz", "T")
    forge(tmp_path / "long.npz", "x" * (2 << 20), {}, {})
    with pytest.raises(CheckpointError, match="malformed header"):
        load_state(tmp_path / "long.npz", "T")


def test_non_finite_arrays_are_refused_with_their_place(tmp_path):
    st = state()
    st["weights"][1][0, 2] = np.nan
    save_state(tmp_path / "nan.npz", st, kind="T")
    with pytest.raises(CheckpointError, match=r"weights\[1\] contains NaN or infinite values"):
        load_state(tmp_path / "nan.npz", "T")
    back = load_state(tmp_path / "nan.npz", "T", finite=False)
    assert np.isnan(back["weights"][1][0, 2])
    save_state(tmp_path / "inf.npz", {"opt": {"m": np.array([1.0, -np.inf])}}, kind="T")
    with pytest.raises(CheckpointError, match=r"opt\.m contains NaN or infinite values"):
        load_state(tmp_path / "inf.npz", "T")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_saved_file_permissions_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        save_state(tmp_path / "s.npz", state(), kind="T")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "s.npz").st_mode & 0o777 == mode


def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    save_state(path, state(), kind="T")
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"cannot save extra\.bad of type object"):
        save_state(path, {**state(), "extra": {"bad": object()}}, kind="T")
    with pytest.raises(TypeError, match="object arrays would need pickling"):
        save_state(path, {"x": np.array([None])}, kind="T")

    def boom(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save_state(path, {"other": np.ones(3)}, kind="T")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.npz"]
