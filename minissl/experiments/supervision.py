"""Supervision on one latent against self-supervision (``python -m minissl supervision``).

The same HLTM tree network is trained (``hltm_experiment``) with the positives of
- ``"given"``: InfoNCE on (anchor, positive sharing the root, H given negatives), the theory
  preset's SSL;
- ``"in_batch"``: InfoNCE in the SimCLR arrangement (the partner view is the one positive,
  the other 2N - 2 views the negatives), SSL with the negatives SupCon sees;
- ``"supervised"``: SupCon with the label of latent ``label_latent`` (0 = the root): every
  view of the batch whose sample has the same value of that latent is a positive.

Each run reports the normalized correlation per tree depth (``metrics``) after training;
``supervision_table`` groups them by (pairing, label latent) as mean ± std over seeds.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .hltm import run_sweep

PAIRINGS = ("given", "in_batch", "supervised")


def supervision_configs(base, pairings=PAIRINGS, label_latents=(0,), seeds=(1, 2, 3)):
    """The ``HLTMConfig`` list: every pairing (the supervised one for each label latent) x
    seed, other fields from ``base`` (validated; ValueError names the field)."""
    out = []
    for pairing in pairings:
        for latent in (label_latents if pairing == "supervised" else (0,)):
            for seed in seeds:
                out.append(replace(base, pairing=pairing, label_latent=latent,
                                   seed=seed).apply_preset())
    return out


def run_supervision(cfgs, n_jobs=1, threads=1, callback=None, on_epoch=None):
    """``hltm.sweep_one`` over ``cfgs`` (in parallel processes with ``n_jobs``); each result
    also holds ``pairing`` and ``label_latent``. ``callback(result)`` as each arrives,
    ``on_epoch(i, record)`` within run i with ``n_jobs=1`` (``hltm.run_sweep``)."""
    results = run_sweep(cfgs, n_jobs, threads, callback, on_epoch=on_epoch)
    for res, cfg in zip(results, cfgs):
        res.update(pairing=cfg.pairing, label_latent=cfg.label_latent)
    return results


def supervision_table(results, depth):
    """Rows of strings (header first): per (pairing, label latent), the trained correlation
    per depth (root first) as mean ± std over seeds, the untrained one and the ceiling."""
    groups = {}
    for r in results:
        key = (r["pairing"], r["label_latent"] if r["pairing"] == "supervised" else "-")
        groups.setdefault(key, []).append(r)
    depths = list(range(depth, 0, -1))
    rows = [["pairing", "label", "seeds"] + [f"d{d}" for d in depths]]
    for (pairing, latent), g in groups.items():
        cells = []
        for d in depths:
            v = np.array([r[f"trained_d{d}"] for r in g], float)
            cells.append(f"div {int(np.isnan(v).sum())}/{len(v)}" if np.isnan(v).any()
                         else f"{v.mean():.3f}±{v.std():.3f}")
        rows.append([pairing, str(latent), str(len(g))] + cells)
    seeds = str(len({r["seed"] for r in results}))      # each seed's runs share init and tree
    for name in ("untrained", "ceiling"):
        rows.append([name, "-", seeds] + [
            f"{np.mean([r[f'{name}_d{d}'] for r in results]):.3f}" for d in depths])
    return rows
