"""Real data sets, loaded locally: nothing here downloads.

    digits             scikit-learn's ``load_digits``: 1,797 8x8 grey digits (0-16), ships
                       with scikit-learn; a train/test split fixed by ``split_seed``
    mnist1d            MNIST-1D (the ``mnist1d`` package): 5,000 40-sample 1-D digit signals,
                       generated here by ``mnist1d.data.make_dataset(get_dataset_args())``
                       (never its download path), its own 4,000 / 1,000 split
    cifar10(path)      CIFAR-10's standard Python batches (``data_batch_1..5``, ``test_batch``)
                       in the folder ``path``, read by a restricted unpickler (below)
    image_folder(path) ``path/<class>/*.png|jpg|jpeg``: grey, resized to ``size`` x ``size``
                       (Pillow), a split fixed by ``split_seed``

Each returns a ``Dataset``: raw float64 samples (N, D) (one flattened sample per row), integer
labels, the sample ``shape`` and the class names. Optional packages (scikit-learn, mnist1d,
Pillow) are the ``data`` extra; a missing one raises ``MissingExtra`` whose message is one
line naming it.

Safety of the CIFAR-10 batches. They are pickles, and unpickling can run arbitrary code, so
``read_cifar_batch`` reads a file only if it is a regular file of at most
``MAX_BATCH_BYTES`` (checked before reading; FIFOs, devices and folders are refused), with a
``pickle.Unpickler`` whose ``find_class`` allows only what rebuilds an ndarray
(``SAFE_GLOBALS``: numpy's ``_reconstruct``, ``ndarray``, ``dtype``; and ``_codecs.encode``
restricted to latin-1, how protocol 2 stores bytes) and refuses anything else with
``UnsafeFileError``; the result must be a dict of a uint8 (n, 3072) ``data`` array
and n labels in 0..9.
"""
from __future__ import annotations

import functools
import io
import os
import pickle
import random
import stat
from typing import NamedTuple

import numpy as np

from .. import backend as B

MiB = 1 << 20
MAX_BATCH_BYTES = 64 * MiB       # one CIFAR-10 batch is ~30 MiB
MAX_IMAGE_BYTES = 16 * MiB       # one image file of an image folder
MAX_IMAGES = 60_000              # the most images an image folder may hold
MAX_IMAGE_SIZE = 128             # largest side of the resized images
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")
SAFE_GLOBALS = frozenset({("numpy.core.multiarray", "_reconstruct"),
                          ("numpy._core.multiarray", "_reconstruct"),
                          ("numpy", "ndarray"), ("numpy", "dtype")})
MissingExtra = B.MissingExtra             # one shared error for every missing extra


class UnsafeFileError(ValueError):
    """A data file refused before or while reading it: not a regular file, too large, or a
    pickle asking for something else than an ndarray."""


class Dataset(NamedTuple):
    """A labelled data set with a fixed train/test split; samples are raw float64 rows."""
    name: str
    x_train: np.ndarray         # (N_train, D)
    y_train: np.ndarray         # (N_train,) int64
    x_test: np.ndarray          # (N_test, D)
    y_test: np.ndarray          # (N_test,) int64
    shape: tuple                # one sample's shape, prod = D: (L,), (H, W) or (C, H, W)
    classes: tuple              # class names, label k is classes[k]


def need(module, package=None):
    """``import module``, or ``MissingExtra`` naming the ``data`` extra (``backend.require``)."""
    return B.require(module, "data")


def split(x, y, test_fraction, seed):
    """A random split of ``(x, y)`` fixed by ``seed``: ``(x_train, y_train, x_test, y_test)``."""
    f = B.check_real("test_fraction", test_fraction, 0, 1, lo_open=True)
    n_test = max(1, int(round(f * len(y))))
    if n_test >= len(y):
        raise ValueError(f"test_fraction={f:g} leaves no training sample of {len(y)}")
    perm = np.random.default_rng(B.check_int("split_seed", seed, 0)).permutation(len(y))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def _frozen(d):
    for a in (d.x_train, d.y_train, d.x_test, d.y_test):
        a.flags.writeable = False
    return d


@functools.lru_cache(maxsize=4)
def digits(split_seed=0, test_fraction=0.2):
    """scikit-learn's 8x8 digits (values 0..16), 20 % held out for testing by default."""
    datasets = need("sklearn.datasets", "scikit-learn")
    d = datasets.load_digits()
    x, y = np.asarray(d.data, np.float64), np.asarray(d.target, np.int64)
    return _frozen(Dataset("digits", *split(x, y, test_fraction, split_seed), (8, 8),
                           tuple(str(k) for k in range(10))))


@functools.lru_cache(maxsize=1)
def mnist1d():
    """MNIST-1D generated locally with the package's default arguments (seed 42: the
    published data set): 4,000 training and 1,000 test signals of length 40. The package
    seeds NumPy's and Python's global generators; their states are restored afterwards."""
    data = need("mnist1d.data", "mnist1d")
    state, pystate = np.random.get_state(), random.getstate()
    try:
        d = data.make_dataset(data.get_dataset_args())
    finally:
        np.random.set_state(state)
        random.setstate(pystate)
    return _frozen(Dataset("mnist1d", np.asarray(d["x"], np.float64),
                           np.asarray(d["y"], np.int64), np.asarray(d["x_test"], np.float64),
                           np.asarray(d["y_test"], np.int64), (40,),
                           tuple(str(k) for k in range(10))))


# ----------------------------------------------------------------------------- safe files
def open_bounded(path, max_bytes):
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; else
    ``UnsafeFileError`` (checked before reading, and the read is bounded too)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise FileNotFoundError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(f"{path} is not a regular file (a FIFO, device or folder is "
                              f"never read)")
    if st.st_size > max_bytes:
        raise UnsafeFileError(f"{path} has {st.st_size:,} bytes, more than the limit of "
                              f"{max_bytes:,}")
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(f"{path} grew past the limit of {max_bytes:,} bytes while read")
    return data


def latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as pickles of bytes at protocol 2 use it, latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafeFileError(f"refused to unpickle _codecs.encode with {encoding!r}")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds ndarrays and plain containers only (``SAFE_GLOBALS``, and
    ``_codecs.encode`` as ``latin1_encode``: how protocol 2 writes bytes)."""

    def find_class(self, module, name):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return latin1_encode
        raise UnsafeFileError(f"refused to unpickle {module}.{name}: a CIFAR-10 batch holds "
                              f"only arrays, lists and strings")


def _field(d, key):
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise ValueError(f"a CIFAR-10 batch must have the key {key!r}")


def read_cifar_batch(path, max_bytes=MAX_BATCH_BYTES):
    """``(data (n, 3072) uint8, labels (n,) int64)`` of one CIFAR-10 Python batch (the module
    docstring says what is refused)."""
    raw = open_bounded(path, max_bytes)
    try:
        d = SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except UnsafeFileError:
        raise
    except Exception as exc:                       # truncated or not a pickle
        raise UnsafeFileError(f"{path} is not a CIFAR-10 batch: {exc}") from None
    if not isinstance(d, dict):
        raise UnsafeFileError(f"{path} must hold a dict, got {type(d).__name__}")
    data, labels = _field(d, "data"), _field(d, "labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or \
            data.shape[1] != 3072:
        raise UnsafeFileError(f"{path}: data must be a uint8 (n, 3072) array")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or \
            (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise UnsafeFileError(f"{path}: labels must be {len(data)} integers in 0..9")
    return data, labels.astype(np.int64)


def _cifar_images(data, grey):
    x = data.reshape(-1, 3, 32, 32).astype(np.float64) / 255.0           # (n, C, H, W)
    if grey:                                                             # ITU-R 601 luma
        x = np.tensordot(x, np.array([0.299, 0.587, 0.114]), axes=([1], [0]))
    return x.reshape(len(data), -1)


def cifar10(path, grey=True, max_train=50_000):
    """CIFAR-10 from the folder ``path`` holding ``data_batch_1`` .. ``data_batch_5`` (those
    present, at least one) and ``test_batch``, values in [0, 1]: grey (32, 32) by default,
    else colour (3, 32, 32). ``max_train`` bounds the training samples kept."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is not a folder of CIFAR-10 Python batches")
    files = [f for f in CIFAR_TRAIN if os.path.exists(os.path.join(path, f))]
    if not files or not os.path.exists(os.path.join(path, CIFAR_TEST)):
        raise FileNotFoundError(f"{path} must hold data_batch_1 (.. _5) and test_batch")
    max_train = B.check_int("max_train", max_train, 1)
    xs, ys, n = [], [], 0
    for f in files:
        if n >= max_train:
            break
        data, y = read_cifar_batch(os.path.join(path, f))
        xs.append(data[:max_train - n])
        ys.append(y[:max_train - n])
        n += len(xs[-1])
    te, yte = read_cifar_batch(os.path.join(path, CIFAR_TEST))
    shape = (32, 32) if grey else (3, 32, 32)
    return Dataset("cifar10", _cifar_images(np.concatenate(xs), grey), np.concatenate(ys),
                   _cifar_images(te, grey), yte, shape, CIFAR_CLASSES)


def _image_files(path, max_images):
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir() and not
                     e.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"{path} must hold at least two class folders of images")
    files = []
    for k, c in enumerate(classes):
        for e in sorted(os.scandir(os.path.join(path, c)), key=lambda e: e.name):
            if e.name.lower().endswith(IMAGE_SUFFIXES):
                files.append((e.path, k))
                if len(files) > max_images:
                    raise ValueError(f"{path} holds more than max_images={max_images:,} "
                                     f"images")
    return classes, files


def read_image(path, size):
    """One image file as grey values in [0, 1], resized to (size, size): (size * size,)."""
    Image = need("PIL.Image", "Pillow")
    raw = open_bounded(path, MAX_IMAGE_BYTES)
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.width * im.height > 64 * MiB:
                raise UnsafeFileError(f"{path}: {im.width}x{im.height} pixels is too large")
            im = im.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, np.float64).reshape(-1) / 255.0
    except UnsafeFileError:
        raise
    except Exception as exc:                       # not an image Pillow can read
        raise UnsafeFileError(f"{path} is not a readable image: {exc}") from None


def image_folder(path, size=28, max_images=10_000, split_seed=0, test_fraction=0.2):
    """Images in class folders (``path/<class>/*.png|jpg|jpeg``; label = the folder's rank in
    sorted order), grey and resized to ``size`` x ``size``, values in [0, 1]; at most
    ``max_images`` (more is refused), split by ``split_seed``."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is not a folder of class folders")
    size = B.check_int("size", size, 2, MAX_IMAGE_SIZE)
    max_images = B.check_int("max_images", max_images, 2, MAX_IMAGES)
    classes, files = _image_files(path, max_images)
    if len(files) < 2:
        raise ValueError(f"{path} holds fewer than two images")
    x = np.stack([read_image(f, size) for f, _ in files])
    y = np.array([k for _, k in files], np.int64)
    return Dataset(os.path.basename(os.path.normpath(path)) or "images",
                   *split(x, y, test_fraction, split_seed), (size, size), tuple(classes))
