"""Real data for the library's methods: loaders, augmentations and the data source.

The edge of the library (docs/design.md): nothing here is the papers' mathematics.

- ``loaders``: scikit-learn's digits, MNIST-1D (generated locally), CIFAR-10's Python batches
  and image folders from a local path (nothing downloads; pickles read by a restricted
  unpickler), each a ``Dataset`` with a fixed train/test split;
- ``augment``: translations, random masks, Gaussian noise, amplitude scaling, complementary
  masks: functions on (N, D) batches with a NumPy generator passed in, ``compose``-able;
- ``sources``: ``RealData``, a ``Dataset`` as a data source (``views``, ``triples``,
  ``labelled``; standardisation from the training split) that ``train.train`` and
  ``byol.train_byol`` accept.

The optional packages (scikit-learn, mnist1d, Pillow) are the ``data`` extra; without one, the
loader that needs it raises ``MissingExtra`` with a one-line message naming it.
"""
from .augment import (amplitude_scale, complementary_masks, compose, gaussian_noise,
                      random_mask, translate)
from .loaders import (MAX_BATCH_BYTES, MAX_IMAGE_BYTES, MAX_IMAGES, Dataset, MissingExtra,
                      UnsafeFileError, cifar10, digits, image_folder, mnist1d,
                      read_cifar_batch)
from .sources import MASKS, RealData

DATA = ("digits", "mnist1d", "cifar10", "folder")


def load(name, path=None, **options):
    """The ``Dataset`` called ``name`` (one of ``DATA``); "cifar10" and "folder" read the local
    folder ``path`` (``ValueError`` when it is missing). ``options`` go to the loader."""
    if name not in DATA:
        raise ValueError(f"data must be one of {DATA}, got {name!r}")
    if name in ("cifar10", "folder"):
        if not path:
            raise ValueError(f"data={name!r} needs a local path (--path): nothing downloads")
        return cifar10(path, **options) if name == "cifar10" else image_folder(path, **options)
    if path:
        raise ValueError(f"data={name!r} is made locally and takes no path, got {path!r}")
    return digits(**options) if name == "digits" else mnist1d(**options)


__all__ = ["DATA", "MASKS", "MAX_BATCH_BYTES", "MAX_IMAGE_BYTES", "MAX_IMAGES", "Dataset",
           "MissingExtra", "RealData", "UnsafeFileError", "amplitude_scale", "cifar10",
           "complementary_masks", "compose", "digits", "gaussian_noise", "image_folder", "load",
           "mnist1d", "random_mask", "read_cifar_batch", "translate"]
