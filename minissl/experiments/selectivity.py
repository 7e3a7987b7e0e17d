"""Luck matters: does training amplify the selectivity units start with (``python -m minissl
selectivity``)?

One run trains the HLTM tree network exactly as ``python -m minissl hltm --seed s`` does (theory
preset; same tree, init, data and evaluation set for the same seed) for ``steps`` SGD steps and
records, at ``snapshots`` points (step 0 = untrained), every unit's selectivity
``|corr(z_mu, g_u)|`` on the fixed evaluation set, every unit's weight-row norm and the weights.
At initialisation it also takes, per layer, the top-``k`` eigenvectors of the covariance
operator ``OP_l`` (``covariance_spectrum`` on N x M views from stream 6 of the seed, pair
weights of the run's loss) and a random k-dim subspace of the live weights (stream 7) as the
control. ``selectivity_summary`` turns the first and last records into the statistics of
``minissl.selectivity`` per tree depth (layer l = tree depth l).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .. import backend as B
from ..backend import setting
from ..covariance import PAIR_WEIGHT_LOSSES, covariance_pair_weights, covariance_spectrum
from ..budget import Cost, mlp_weights
from ..metrics import normalized_correlation
from ..optim import notify, stopped
from ..analysis.selectivity import (amplification, mean_interval, projection, random_basis,
                                    share, unit_norms, wilson_interval, winner_ranks)
from ..train import train
from .covariance import spectrum_cost
from .hltm import HLTMRun, eval_set
from .settings import with_settings


@dataclass(frozen=True)
class SelectivityConfig:
    """One amplification run (the ``selectivity`` command's flags are its settings): the HLTM
    ``run`` (tree, network, loss, SGD, seed: init, data, evaluation, OP views, control) and
    what is measured."""
    run: HLTMRun = HLTMRun(steps=3000)
    snapshots: int = setting(30, "selectivity records during the run (plus step 0)", lo=1)
    eval_samples: int = setting(10000, "fixed evaluation set (stream 3), as `hltm`", lo=2)
    k: int = setting(20, "top eigenvectors of OP_l at init, per layer", lo=1)
    n_samples: int = setting(256, "N samples x for OP_l at init (stream 6)", lo=2)
    n_views: int = setting(4, "M views of each sample for OP_l", lo=1)

    @cached_property
    def hltm(self):
        """The ``HLTMConfig`` of the same run (theory preset, one epoch of ``steps`` steps),
        made and validated once."""
        return self.run.hltm_config(self.eval_samples)

    def validate(self):
        """Check every field (``ValueError`` naming it); returns self."""
        B.check_choice("loss", self.run.loss, PAIR_WEIGHT_LOSSES)
        hc = B.check_settings(self).hltm
        B.check_int("snapshots", self.snapshots, 1, self.run.steps)
        masks = hc.tree.network_masks(self.run.hid)
        live = min(int(m.sum()) for m in masks)               # the smallest layer's weights
        B.check_int("k", self.k, 1, live - 2)                 # Lanczos needs k < P_live - 1
        return self


def selectivity_cost(cfg):
    """The ``limits.Cost`` of ``selectivity_experiment``: the HLTM run's (``HLTMConfig.cost``),
    the top-k spectrum of every layer's OP at init (``experiments.covariance.spectrum_cost``)
    and the kept snapshots (every weight, ``snapshots + 2`` times) and bases (2 k per weight)."""
    hc = cfg.hltm
    sizes = hc.tree.network_sizes(cfg.run.hid)
    spectra = [spectrum_cost(sizes, cfg.n_samples, cfg.n_views, l, cfg.k)
               for l in range(len(sizes) - 1)]
    W = mlp_weights(sizes)
    keep = 8 * W * (cfg.snapshots + 2 + 2 * cfg.k)
    param = f"snapshots={cfg.snapshots}, k={cfg.k}, n_samples={cfg.n_samples}"
    return hc.cost() + Cost(
        ((max(c.bytes for c in spectra) + keep, "the OP bases and the kept snapshots", param),),
        ((sum(c.madds for c in spectra), "the OP bases", param),))


def op_bases(cfg, tree, net):
    """Per layer ``(U, Q)``: the top-``k`` eigenvectors of ``OP_l`` at the net's current
    weights (P, k) and an orthonormal basis of a random k-dim subspace of the live weights."""
    run = cfg.run
    views = tree.views(cfg.n_samples, cfg.n_views, B.derive_seed(run.seed, 6))
    xi = None if run.loss == "simple" else covariance_pair_weights(net, views, run.loss,
                                                                    run.tau)
    out, control = [], B.derive_seed(run.seed, 7)
    for l, W in enumerate(net.weights):
        _, U = covariance_spectrum(net, views, l, cfg.k, xi, tol=1e-8)
        Q = random_basis(W.shape, cfg.k, B.derive_seed(control, l), mask=net.masks[l])
        out.append((B.to_numpy(U), Q))
    return out


def selectivity_experiment(cfg, callback=None, stop=None, limits=None):
    """Run ``cfg`` (a ``SelectivityConfig``); returns ``(records, summary)``.

    ``records[i]``: ``{"step", "per_unit" (n_latents, hid), "norms" (n_latents, hid),
    "weights" [W_l]}`` at step 0 and every ``steps // snapshots`` steps (and the last);
    ``summary``: ``selectivity_summary`` of the first and last record. ``callback(record)``
    after each (False ends the run); ``stop.is_set()`` checked every step.
    ``selectivity_cost`` is checked against ``limits`` first.
    """
    cfg = cfg.validate()
    selectivity_cost(cfg).check(limits)
    hc, hid, steps = cfg.hltm, cfg.run.hid, cfg.run.steps
    tree, net = hc.build(limits)
    x, z = eval_set(tree, hc)
    bases = op_bases(cfg, tree, net)
    records = []

    def snap(step):
        corr = normalized_correlation(tree, net, x=x, z=z)
        rec = {"step": step, "per_unit": corr.per_unit,
               "norms": unit_norms(tree, net.weights, hid),
               "weights": [B.to_numpy(W).copy() for W in net.weights]}
        records.append(rec)
        return notify(callback, rec)

    if not (snap(0) or stopped(stop)):
        tc = replace(hc.train_config(steps), log_every=max(1, steps // cfg.snapshots))
        train(net, tree, tc, callback=lambda rec: not snap(rec["step"]), stop=stop)
    return records, selectivity_summary(tree, hid, records, bases)


def _groups(v, hid):
    return np.asarray(v, dtype=np.float64).reshape(-1, hid)        # (groups, hid)


def op_statistics(U, Q, W0, W1, winners, hid):
    """The OP-direction statistics of one layer (module docstring of ``minissl.selectivity``):
    ``amplification`` of the projections ``||U_i^T w_i||`` at init and at the end, the initial
    projection rank of each latent's selectivity winner (``winners`` (groups,)), and the share
    of ``ΔW`` in span(U) against the random span(Q): per winner, per other unit, the layer."""
    p0, p1 = _groups(projection(U, W0), hid), _groups(projection(U, W1), hid)
    amp = amplification(p0, p1)
    G = len(winners)
    rank = (p0 > p0[np.arange(G), winners][:, None]).sum(axis=1)
    win = np.zeros((G, hid), dtype=bool)
    win[np.arange(G), winners] = True
    out = {"spearman": amp["spearman"], "rank": amp["rank"],
           "rank_of_selectivity_winner": float(rank.mean())}
    for name, basis in (("top", U), ("random", Q)):
        rows, layer = share(basis, np.asarray(W1) - np.asarray(W0))
        rows = _groups(rows, hid)
        out[f"share_{name}_winner"] = float(np.nanmean(rows[win]))
        out[f"share_{name}_rest"] = float(np.nanmean(rows[~win])) if hid > 1 else math.nan
        out[f"share_{name}_layer"] = layer
    return out


def selectivity_summary(tree, hid, records, bases):
    """``{depth: {"selectivity": amplification(...), "op": op_statistics(...)}}`` from the
    first and last record of a run (depth L first)."""
    first, last = records[0], records[-1]
    out = {}
    for d in range(tree.depth, 0, -1):
        m = tree.latent_depths == d
        sel = amplification(first["per_unit"][m], last["per_unit"][m], first["norms"][m],
                            last["norms"][m])
        U, Q = bases[d - 1]
        winners = last["per_unit"][m].argmax(axis=1)
        op = op_statistics(U, Q, first["weights"][d - 1], last["weights"][d - 1], winners, hid)
        out[d] = {"selectivity": sel, "op": op}
    return out


# ----------------------------------------------------------------------------- several seeds
def selectivity_one(cfg, threads=1):
    """``selectivity_experiment(cfg)``'s summary only (what a parallel worker returns)."""
    with B.blas_threads(threads):
        return selectivity_experiment(cfg)[1]


def run_selectivity_seeds(cfg, seeds, n_jobs=1, threads=1, callback=None):
    """The summaries of ``cfg`` for each seed, in parallel processes (joblib);
    ``callback(summary)`` as each arrives."""
    B.require("joblib", "parallel")
    from joblib import Parallel, delayed
    cfgs = [with_settings(cfg, seed=s).validate() for s in seeds]
    out = []
    for r in Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(selectivity_one)(c, threads) for c in cfgs):
        out.append(r)
        notify(callback, r)
    return out


COLUMNS = [  # (header, section, key, format)
    ("rho s0,sT", "selectivity", "spearman", "{:+.2f}"),
    ("rank0 win", "selectivity", "rank", "{:.1f}"),
    ("win>med", "selectivity", "above_median", "{:.2f}"),
    ("gain win", "selectivity", "gain_winner", "{:+.3f}"),
    ("gain rest", "selectivity", "gain_rest", "{:+.3f}"),
    ("|w| win", "selectivity", "growth_winner", "{:.2f}"),
    ("|w| rest", "selectivity", "growth_rest", "{:.2f}"),
    ("rho p0,pT", "op", "spearman", "{:+.2f}"),
    ("p-rank win", "op", "rank_of_selectivity_winner", "{:.1f}"),
    ("dW in OP", "op", "share_top_layer", "{:.3f}"),
    ("dW in rand", "op", "share_random_layer", "{:.3f}"),
    ("win in OP", "op", "share_top_winner", "{:.3f}"),
    ("rest in OP", "op", "share_top_rest", "{:.3f}"),
]


def selectivity_table(summaries):
    """Rows (lists of strings, header first) of mean ± std over runs per tree depth."""
    rows = [["depth"] + [c[0] for c in COLUMNS]]
    for d in summaries[0]:
        row = [str(d)]
        for _, sec, key, fmt in COLUMNS:
            v = np.array([s[d][sec][key] for s in summaries], dtype=float)
            cell = fmt.format(np.nanmean(v)) if np.isfinite(v).any() else "nan"
            row.append(cell + (f"±{np.nanstd(v):.2f}" if len(v) > 1 else ""))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- intervals
#: (header, section, key) of the per-depth means with a t interval over seeds
INTERVAL_COLUMNS = [("rho s0,sT", "selectivity", "spearman"),
                    ("|w| win", "selectivity", "growth_winner"),
                    ("|w| rest", "selectivity", "growth_rest"),
                    ("dW in OP", "op", "share_top_layer"),
                    ("dW in rand", "op", "share_random_layer")]


def depth_groups(depths):
    """``[(label, depths)]``: each depth (root first), then the depths above 1 together
    (``"5-2"``) and all of them (``"all"``) where those differ from a single depth."""
    depths = sorted(depths, reverse=True)
    groups = [(str(d), [d]) for d in depths]
    if len(depths) > 2:
        groups.append((f"{depths[0]}-{depths[-2]}", depths[:-1]))
    if len(depths) > 1:
        groups.append(("all", depths))
    return groups


def selectivity_intervals(summaries, confidence=0.95):
    """Per depth group (``depth_groups``) of the per-seed ``summaries``: ``best`` latents
    whose final winner was already their best unit at initialisation (initial rank 0) of
    ``latents``, with the pooled proportion's Wilson interval ``best_ci`` (latents treated as
    independent) and the per-seed share's t interval ``best_seed`` (seeds independent; a
    seed's latents share a network); ``rank`` the t interval of the per-seed mean initial rank
    of the winners, and, for single depths, the t interval of each ``INTERVAL_COLUMNS`` value
    over seeds. Intervals are ``(mean, lo, hi)``."""
    out = {}
    for label, depths in depth_groups(list(summaries[0])):
        ranks = [np.concatenate([s[d]["selectivity"]["ranks"] for d in depths])
                 for s in summaries]                                   # per seed (latents,)
        k, n = sum(int((r == 0).sum()) for r in ranks), sum(r.size for r in ranks)
        row = {"latents": n, "best": k, "best_ci": (k / n, *wilson_interval(k, n, confidence)),
               "best_seed": mean_interval([(r == 0).mean() for r in ranks], confidence),
               "rank": mean_interval([r.mean() for r in ranks], confidence)}
        if len(depths) == 1:
            for _, sec, key in INTERVAL_COLUMNS:
                row[key] = mean_interval([s[depths[0]][sec][key] for s in summaries],
                                         confidence)
        out[label] = row
    return out


def _ci(mean_lo_hi, fmt="{:.2f}"):
    m, lo, hi = mean_lo_hi
    if not math.isfinite(m):
        return "-"
    return fmt.format(m) + ("" if not math.isfinite(lo) else
                            f" [{fmt.format(lo)}, {fmt.format(hi)}]")


def selectivity_interval_table(intervals, confidence=0.95):
    """Rows (lists of strings, header first) of ``selectivity_intervals``: mean [lo, hi]."""
    pct = f"{100 * confidence:g}%"
    rows = [["depth", "best@init", f"Wilson {pct}", f"per seed, t {pct}",
             f"rank0 win, t {pct}"] + [f"{c[0]}, t {pct}" for c in INTERVAL_COLUMNS]]
    for label, r in intervals.items():
        rows.append([label, f"{r['best']}/{r['latents']}", _ci(r["best_ci"]),
                     _ci(r["best_seed"]), _ci(r["rank"])]
                    + [_ci(r.get(c[2], (math.nan,) * 3)) for c in INTERVAL_COLUMNS])
    return rows


def root_ranks(summaries):
    """The initial rank of the root's final winner in each run (0 = already its best)."""
    return [int(s[max(s)]["selectivity"]["ranks"][0]) for s in summaries]


# ----------------------------------------------------------------------------- the app's view
def latent_label(tree, latent):
    """``"latent 3 (depth 2)"`` (``"latent 0 (the root)"``): the name of a BFS latent index."""
    return (f"latent {latent} (the root)" if latent == 0 else
            f"latent {latent} (depth {int(tree.latent_depths[latent])})")


def unit_view(tree, records, latent=0):
    """The per-unit view of ``hltm_experiment`` records (each with ``"corr_units"``) for the
    BFS ``latent``: ``{"label", "steps" (T,), "traces" (T, hid) its units' selectivity,
    "winner" (its best unit at the last record), "rank" (that unit's rank at the first),
    "initial"/"final" (n_latents*hid,) every unit at the first/last record, "depth" its
    latent's tree depth, "winners" bool (each latent's best unit at the last record),
    "spearman" {depth: Spearman of initial vs final}}``."""
    latent = B.check_int("latent", latent, 0, tree.n_latents - 1)
    if not records or "corr_units" not in records[0]:
        raise ValueError("records must be hltm_experiment records (with 'corr_units')")
    first, last = records[0]["corr_units"], records[-1]["corr_units"]     # (n_latents, hid)
    G, hid = first.shape
    winners = np.zeros((G, hid), dtype=bool)
    winners[np.arange(G), last.argmax(axis=1)] = True
    depth = np.repeat(tree.latent_depths, hid)
    spear = {int(d): amplification(first[tree.latent_depths == d],
                                   last[tree.latent_depths == d])["spearman"]
             for d in range(tree.depth, 0, -1)}
    return {"label": latent_label(tree, latent), "steps": [r["step"] for r in records],
            "traces": np.array([r["corr_units"][latent] for r in records]),
            "winner": int(last[latent].argmax()),
            "rank": int(winner_ranks(first[latent:latent + 1], last[latent:latent + 1])[0]),
            "initial": first.ravel(), "final": last.ravel(), "depth": depth,
            "winners": winners.ravel(), "spearman": spear}
