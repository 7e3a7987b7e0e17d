"""Compiled twins of lower-level functions, and the one table that chooses them.

A twin keeps its reference's contract (arguments, returned arrays) and is tested against it
(tests/test_kernels.py). ``twin(name, backend)`` is the only place where NumPy or Numba is
chosen: it returns the registered twin for backend "numba" and None otherwise (the caller then
uses its NumPy reference). Kernel modules import only NumPy and Numba, never the rest of
minissl; they are imported on first use, so NumPy-only users never load Numba. A twin that
runs only some configurations says which itself (``applies``: the training step and epoch),
reading the net, source and config duck-typed.

| name                    | twin                                  | reference                       |
|-------------------------|---------------------------------------|---------------------------------|
| linear                  | kernels.tree.linear_plan(mask): a     | layers.linear / linear_backward |
|                         | GroupedPlan (tree layer), else        |                                 |
|                         | mlp.LinearPlan                        |                                 |
| train_step              | kernels.tree.TrainStep: build(net) a  | train.loss_and_grads            |
|                         | tree net's TreeStep, else FusedStep   |                                 |
| train_epoch             | kernels.tree.TreeEpoch.for_run(...)   | train.train's per-step loop     |
|                         |                                       | with the compiled sampler       |
| triples                 | kernels.hltm.triples (same law, other | hltm.HLTM.triples               |
|                         | random numbers)                       |                                 |
| simclr_weights          | kernels.losses.simclr_weights         | losses.simclr_weights           |
| connection              | kernels.covariance.GateProducts       | covariance.JacobianProducts     |
|                         | .every_layer(net, gs, fs, N, M)       | .every_layer(...)               |
| best_unit_correlation   | kernels.hltm.best_unit_correlation    | metrics.best_unit_correlation   |
| unit_correlations       | kernels.hltm.unit_correlations        | metrics.unit_correlations       |
"""
from __future__ import annotations

import importlib

TWINS = {
    "linear": ("tree", "linear_plan"),
    "train_step": ("tree", "TrainStep"),
    "train_epoch": ("tree", "TreeEpoch"),
    "triples": ("hltm", "triples"),
    "simclr_weights": ("losses", "simclr_weights"),
    "connection": ("covariance", "GateProducts"),
    "best_unit_correlation": ("hltm", "best_unit_correlation"),
    "unit_correlations": ("hltm", "unit_correlations"),
}


def twin(name, backend):
    """The compiled twin registered as ``name`` when ``backend == "numba"``, else None."""
    if name not in TWINS:
        raise KeyError(f"no kernel twin named {name!r}; known: {tuple(TWINS)}")
    if backend != "numba":
        return None
    module, attr = TWINS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
