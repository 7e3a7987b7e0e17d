"""BYOL experiments: the predictor x BN mean x EMA ablation, the implicit contrastive term,
the predictor's eigen-alignment, linear regimes, and the figures of docs/byol.md.

Data: ``make_source("toy")`` (8 Gaussian clusters in 16 dimensions seen through noise) or
``make_source("hltm")`` (an HLTM; the encoder is then the masked tree network, ``byol_for``).
Every runner reports through the record/callback convention of ``optim``.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import replace

import numpy as np

from .. import backend as B
from .. import linear_byol as LB
from ..figures import plots as P
from ..byol import PREDICTORS, BYOLConfig, byol_for, train_byol
from ..data import GaussianClusters
from ..hltm import HLTM
from ..layers import BN_MODES
from ..budget import STEP_OVERHEAD, Cost, correlation_cost
from ..metrics import eigen_alignment, normalized_correlation
from ..optim import notify, stopped
from ..train import TrainingDiverged

def make_source(data="toy", seed=0, depth=4, num_children=2, polarity=(0.7, 1.0), noise=1.0):
    """The data source of an experiment: ``"toy"`` = ``GaussianClusters(8 clusters, dim 16,
    noise)``, ``"hltm"`` = ``HLTM(depth, num_children, polarity, seed)`` (two views share the
    root and resample everything below)."""
    B.check_choice("data", data, DATASETS)
    if data == "toy":
        return GaussianClusters(n_clusters=8, dim=16, noise=noise, seed=seed)
    return HLTM(depth, num_children, polarity, seed)


ABLATION_PREDICTORS = ("none", "linear")
HLTM_BYOL = dict(lr=0.1, out_dim=10)     # BYOL on HLTM (docs/byol.md; the app's ablation)
LATENT_STREAM = 10                        # seed stream of the latent correlation's samples
DATASETS = ("toy", "hltm")     # the sources of the BYOL experiments (make_source)
ABLATION_BN_MEANS = BN_MODES
ABLATION_EMAS = (0.0, 0.99)


def _ablation_run(data, cfg, hid, source_kw, stop=None):
    src = make_source(data, **source_kw)
    model = byol_for(src, cfg, hid)
    t0 = time.perf_counter()
    try:
        model, hist = train_byol(src, cfg, model=model, stop=stop)
        rec = hist.records[-1]
        row = {k: rec[k] for k in ("loss", "eval_loss", "effective_rank", "std", "collapsed_loss",
                                   "spectrum")}
        row["diverged"] = False
    except TrainingDiverged:
        row = {"loss": math.nan, "eval_loss": math.nan, "effective_rank": math.nan,
               "std": math.nan, "collapsed_loss": math.nan, "spectrum": None, "diverged": True}
    row.update(predictor=cfg.predictor, bn_mean=cfg.bn_mean, ema=cfg.ema,
               seconds=time.perf_counter() - t0)
    if data == "hltm" and not row["diverged"]:
        corr = normalized_correlation(src, model.online, n=4000,
                                      rng=B.derive_seed(cfg.seed, LATENT_STREAM))
        row["corr_by_depth"] = corr.by_depth
        row["corr_mean"] = float(corr.per_latent.mean())
    return row


def ablation_cost(data, grid, hid, source_kw):
    """The ``limits.Cost`` of an ablation's runs, one after the other: the largest run's
    memory, the sum of their work (``BYOLConfig.cost``, plus the latent correlation of each
    run on HLTM)."""
    src = make_source(data, **source_kw)
    hltm = hasattr(src, "network_sizes")
    costs = []
    for c in grid:
        sizes = src.network_sizes(hid) if hltm else [src.dim, *c.hidden, c.out_dim]
        cost = c.cost(sizes, getattr(src, "n_nodes", None), hltm)
        costs.append(cost + correlation_cost(src.n_nodes, sizes, 4000) if hltm else cost)
    if not costs:
        return Cost()
    memory = max(costs, key=lambda c: c.bytes).memory
    return Cost(memory, ((sum(c.madds for c in costs), f"{len(costs)} BYOL runs",
                          f"runs={len(costs)}, steps={grid[0].steps}"),))


def check_grid(values, name, check):
    """``values`` as a tuple without repeats (first occurrence kept), each checked by
    ``check(name, value)``; at least one."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a list of values, got {B.shown(values)}")
    out = tuple(dict.fromkeys(check(name, v) for v in values))
    if not out:
        raise ValueError(f"{name}: choose at least one value")
    return out


def _check_ema(name, e):
    return B.check_real(name, e, 0, 1, hi_open=True)


def ablation_grid(cfg, predictors, bn_means, emas):
    """The configs of an ablation, ``cfg`` with each (predictor, bn_mean, ema); repeated values
    count once, each is checked (``ValueError`` naming the list)."""
    cfg = (cfg or BYOLConfig()).validate()
    predictors = check_grid(predictors, "predictors",
                            lambda n, p: B.check_choice(n, p, PREDICTORS))
    bn_means = check_grid(bn_means, "bn_means", lambda n, m: B.check_choice(n, m, BN_MODES))
    emas = check_grid(emas, "emas", _check_ema)
    return [replace(cfg, predictor=p, bn_mean=m, ema=e,
                    directpred=cfg.directpred and p == "linear").validate()
            for p in predictors for m in bn_means for e in emas]


def run_ablation(data="toy", cfg=None, predictors=ABLATION_PREDICTORS,
                 bn_means=ABLATION_BN_MEANS, emas=ABLATION_EMAS, hid=10, n_jobs=1,
                 source_kw=None, callback=None, stop=None, limits=None):
    """Train one BYOL per (predictor, bn_mean, ema) and return one dict per run: the final
    ``loss, eval_loss, effective_rank, std, collapsed_loss`` (and on HLTM the latent recovery
    ``corr_by_depth, corr_mean``). Other settings come from ``cfg``; repeated values run
    once. ``n_jobs > 1`` runs in parallel processes (joblib); serially, ``callback(row)``
    after each run (``row["run"]``, ``row["runs"]``: its index and the total) and ``stop`` is
    checked every step. ``ablation_cost`` is checked against ``limits`` first."""
    grid = ablation_grid(cfg, predictors, bn_means, emas)
    kw = dict(source_kw or {})
    ablation_cost(data, grid, hid, kw).check(limits)
    if n_jobs != 1:
        B.require("joblib", "parallel")
        from joblib import Parallel, delayed
        return Parallel(n_jobs=n_jobs)(delayed(_ablation_run)(data, c, hid, kw) for c in grid)
    rows = []
    for i, c in enumerate(grid):
        if stopped(stop):
            break
        rows.append({**_ablation_run(data, c, hid, kw, stop), "run": i + 1,
                     "runs": len(grid)})
        if notify(callback, rows[-1]) or stopped(stop):
            break
    return rows


def ablation_table(rows):
    """The ablation as text lines (a Markdown table)."""
    has_corr = any("corr_mean" in r for r in rows)
    head = ["predictor", "BN mean", "EMA", "eff. rank", "std·√d", "loss", "collapsed loss"]
    if has_corr:
        head += ["latent corr (mean)", "root corr"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["predictor"], r["bn_mean"], f"{r['ema']:g}"]
        if r["diverged"]:
            cells += ["diverged"] * 4
        else:
            cells += [f"{r['effective_rank']:.2f}", f"{r['std']:.3f}", f"{r['eval_loss']:.4f}",
                      f"{r['collapsed_loss']:.4f}"]
        if has_corr:
            if "corr_mean" in r:
                top = max(r["corr_by_depth"])
                cells += [f"{r['corr_mean']:.3f}", f"{r['corr_by_depth'][top]:.3f}"]
            else:
                cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def trace_implicit_contrastive(source, cfg=None, layer=0, **overrides):
    """Train BYOL and, every ``log_every`` steps, split the encoder layer's gradient on a fixed
    evaluation batch into its BN paths. Returns ``(steps, norms, parts, model, history)``:
    ``norms[key]`` lists ``||dW_key||_F`` for key in direct, mean, var, mean_cross;
    ``parts`` is the last ``layers.bn_weight_grad_parts`` dict."""
    cfg = replace(cfg or BYOLConfig(), **overrides).validate()
    ev1, ev2, _ = source.triples(min(cfg.eval_size, 256), B.derive_seed(cfg.seed, 5))
    steps, norms, last = [], {k: [] for k in ("direct", "mean", "var", "mean_cross")}, {}
    model = byol_for(source, cfg)

    def cb(rec):
        parts = model.implicit_contrastive(ev1, ev2, layer)
        steps.append(rec["step"])
        for k in norms:
            norms[k].append(float(np.linalg.norm(parts[k])))
        last["parts"] = parts

    model, hist = train_byol(source, cfg, callback=cb, model=model)
    return steps, norms, last["parts"], model, hist


def predictor_alignment(source, cfg=None, **overrides):
    """Train BYOL with a gradient-trained linear predictor and return ``(eigen_alignment(F, W_p),
    model, history)``; ``F`` is the running correlation of the predictor's input."""
    cfg = replace(cfg or BYOLConfig(), **overrides, predictor="linear", directpred=False)
    model, hist = train_byol(source, cfg)
    return eigen_alignment(model.F, model.Wp), model, hist


def _save(fig, outdir, name):
    P.save_png(fig, os.path.join(outdir, name), dpi=90)


def byol_doc_figures(outdir="docs/img", seed=0, progress=None):
    """Run the experiments of docs/byol.md, write its PNG figures to ``outdir`` and print the
    numbers the doc quotes (``python -m minissl byol-figures --outdir docs/img``).
    ``progress()`` after each of the four experiments."""
    B.check_int("seed", seed, 0)
    os.makedirs(outdir, exist_ok=True)
    src = make_source("toy", seed=seed)
    base = BYOLConfig(ema=0.0, seed=seed, log_every=10)
    for part in (lambda: _collapse_figures(src, base, outdir),
                 lambda: _implicit_contrastive_figure(src, base, outdir),
                 lambda: _linear_figures(outdir, seed),
                 lambda: _directpred_figure(src, base, outdir)):
        part()
        if progress is not None:
            progress()


def _collapse_figures(src, base, outdir):
    """Collapse diagnostics over training: no BN/no predictor vs BN + predictor."""
    runs = {"no BN, no predictor": dict(predictor="none", bn_mean="omit", bn_var="omit"),
            "BN (mean normal) + linear predictor": dict(predictor="linear")}
    hists, spectra = {}, {}
    for label, kw in runs.items():
        _, h = train_byol(src, base, **kw)
        hists[label], spectra[label] = h, h.records[-1]["spectrum"]
        r = h.records[-1]
        print(f"{label}: effective rank {r['effective_rank']:.2f}, std {r['std']:.3f}, "
              f"loss {r['eval_loss']:.4f}, collapsed loss {r['collapsed_loss']:.4f}")
    _save(P.byol_history_figure(hists), outdir, "byol_collapse.png")
    _save(P.byol_spectrum_figure(spectra), outdir, "byol_spectrum.png")


def _implicit_contrastive_figure(src, base, outdir):
    steps, norms, parts, _, _ = trace_implicit_contrastive(src, base, log_every=30)
    frac = norms["mean_cross"][-1] / norms["mean"][-1]
    rel = np.linalg.norm(parts["direct"] + parts["mean"] - parts["covariance"]) / \
        np.linalg.norm(parts["covariance"])
    print(f"implicit contrastive: ||dW_mean||/||dW_total|| at the end "
          f"{norms['mean'][-1] / np.linalg.norm(parts['total']):.3f}; cross-sample share "
          f"||mean_cross||/||mean|| {frac:.4f}; covariance-form error {rel:.1e}")
    _save(P.implicit_contrastive_figure(steps, norms, parts), outdir,
          "byol_implicit_contrastive.png")


def _linear_figures(outdir, seed):
    """Linear BYOL: ODE vs Euler vs SGD in two regimes, and the regime grid."""
    W0, Wp0, Wa0, X, Xp = LB.default_problem(seed=seed)
    for name, (alpha_p, eta, T) in {"survives": (1.0, 0.01, 20.0),
                                    "collapses": (0.3, 0.2, 60.0)}.items():
        t, Ws, Wps, _ = LB.integrate(W0, Wp0, Wa0, X, Xp, T, alpha_p, 1.0, eta,
                                     t_eval=np.linspace(0, T, 201))    # every T/200
        k = int(round(T / 200 / 0.01))                                  # steps per T/200
        te, We, _, _ = LB.euler(W0, Wp0, Wa0, X, Xp, T, 0.01, alpha_p, 1.0, eta,
                                record_every=10 * k)
        ts, Wss, _, _ = LB.simulate_sgd(W0, Wp0, Wa0, X, Xp, T, 0.01, alpha_p, 1.0, eta,
                                        batch_size=512, seed=seed, record_every=5 * k)
        ode_at = np.linalg.norm(Ws[::10], axis=(1, 2))
        e_eu = np.abs(We - Ws[::10]).max() / np.abs(Ws).max()
        e_sgd = np.max(np.abs(np.linalg.norm(Wss[::2], axis=(1, 2)) - ode_at) / ode_at.max())
        print(f"linear BYOL ({name}: alpha_p {alpha_p}, eta {eta}): ||W(0)|| "
              f"{ode_at[0]:.3f} -> ||W({T:g})|| {ode_at[-1]:.3e}; Euler dt=0.01 max rel. error "
              f"{e_eu:.2e}; SGD (lr 0.01, batch 512) max |Δ||W|||/max||W|| {e_sgd:.3f}")
        _save(P.linear_byol_figure(t, Ws, ts, Wss, title=f"linear BYOL, α_p={alpha_p}, "
                                   f"η={eta}: ODE (lines) vs SGD (dots)"),
              outdir, f"linear_byol_{name}.png")
    etas, alphas = [0.0, 0.02, 0.05, 0.1, 0.2, 0.5], [0.1, 0.3, 1.0, 3.0, 10.0]
    G = LB.regime_grid(etas, alphas, T=100.0, dt=0.05)
    print("regime grid ||W(100)||_F (rows eta", etas, ", columns alpha_p", alphas, "):")
    print(np.array2string(G, precision=3, suppress_small=True))
    _save(P.byol_regimes_figure(etas, alphas, G), outdir, "linear_byol_regimes.png")


def _directpred_figure(src, base, outdir):
    """DirectPred against a trained linear predictor (no BN)."""
    al, _, h = predictor_alignment(src, base, steps=1000, lr=0.1, bn_mean="omit",
                                   bn_var="omit", predictor_lr=10.0, log_every=1000)
    print(f"trained linear predictor (no BN, wd 0.02, alpha_p 10, 1000 steps): offdiag "
          f"{al['offdiag']:.3f}, asym {al['asym']:.3f}, cosines {np.round(al['cosines'], 2)}, "
          f"p/p1 {np.round(al['p'] / al['p'][0], 2)}, sqrt(s/s1) "
          f"{np.round(al['p_directpred'], 2)}, effective rank "
          f"{h.records[-1]['effective_rank']:.2f}")
    _save(P.directpred_figure(al), outdir, "byol_directpred.png")
    _, h = train_byol(src, base, steps=1000, lr=0.1, bn_mean="omit", bn_var="omit",
                      directpred=True, log_every=1000)
    r = h.records[-1]
    print(f"DirectPred (no BN, same settings): effective rank {r['effective_rank']:.2f}, "
          f"std {r['std']:.3f}")


def ablation_config(data="toy", steps=None, lr=None, weight_decay=None, seed=0,
                    preset="minissl"):
    """The ``BYOLConfig`` of the app's ablation: ``BYOLConfig``'s defaults (``steps``, ``lr``,
    ``weight_decay`` where given), on HLTM those of ``HLTM_BYOL``; one record at the end."""
    B.check_choice("data", data, DATASETS)
    given = {k: v for k, v in dict(steps=steps, lr=lr, weight_decay=weight_decay).items()
             if v is not None}
    cfg = BYOLConfig.from_preset(preset, **{**(HLTM_BYOL if data == "hltm" else {}), **given},
                                 seed=seed)
    return replace(cfg, log_every=cfg.steps)


def byol_ablation(data="toy", predictors=ABLATION_PREDICTORS, bn_means=ABLATION_BN_MEANS,
                  emas=ABLATION_EMAS, steps=None, lr=None, weight_decay=None, seed=0,
                  preset="minissl", callback=None, stop=None, limits=None):
    """The ablation the app's BYOL tab runs (``ablation_config``; on HLTM depth 4, hid 10).
    Returns ``(rows, spectra, cfg)``: ``run_ablation``'s rows (each with its final embedding
    ``spectrum``), the spectra of up to four of them by label, and the config."""
    if not len(predictors) or not len(bn_means) or not len(emas):
        raise ValueError("choose at least one predictor, one BN mean mode and one EMA value")
    cfg = ablation_config(data, steps, lr, weight_decay, seed, preset)
    kw = {"seed": cfg.seed} if data == "toy" else {"seed": cfg.seed, "depth": 4}
    rows = run_ablation(data, cfg, predictors, bn_means, emas, hid=10, source_kw=kw,
                        callback=callback, stop=stop, limits=limits)
    spectra = {f"{r['predictor']}/{r['bn_mean']}/ema {r['ema']:g}": r["spectrum"]
               for r in rows[:: max(1, len(rows) // 4)] if not r["diverged"]}
    return rows, spectra, cfg


def linear_regime(eta=0.01, alpha_p=1.0, T=20.0, seed=0, stop=None, limits=None):
    """Linear BYOL from ``default_problem(seed)``: the ODE on [0, T] (201 points) and BYOL's SGD
    (lr 0.01, batch 512, ~40 records). Returns a dict ``t, Ws, t_sgd, Ws_sgd, norm0, normT,
    verdict`` ("collapses" below 1% of ||W(0)||, "shrinking" below 30%, else "survives").
    The SGD's ``T / 0.01`` steps (each ``3 STEP_OVERHEAD``) are checked against ``limits``
    first; ``stop`` ends the SGD early (the returned records end there)."""
    W0, Wp0, Wa0, X, Xp = LB.default_problem(seed=seed)
    T = B.check_real("T", T, 0, lo_open=True)
    steps = int(round(T / 0.01))
    Cost(work=((steps * (3 * STEP_OVERHEAD + 1024 * 200), "the linear BYOL SGD",
                f"T={T:g}"),)).check(limits)
    t, Ws, _, _ = LB.integrate(W0, Wp0, Wa0, X, Xp, T, alpha_p, 1.0, eta,
                               t_eval=np.linspace(0, T, 201))
    ts, Wss, _, _ = LB.simulate_sgd(W0, Wp0, Wa0, X, Xp, T, 0.01, alpha_p, 1.0, eta,
                                    batch_size=512, seed=seed,
                                    record_every=max(1, int(round(T / 0.01 / 40))), stop=stop)
    n0, nT = float(np.linalg.norm(Ws[0])), float(np.linalg.norm(Ws[-1]))
    verdict = "collapses" if nT < 1e-2 * n0 else ("shrinking" if nT < 0.3 * n0 else "survives")
    return {"t": t, "Ws": Ws, "t_sgd": ts, "Ws_sgd": Wss, "norm0": n0, "normT": nT,
            "verdict": verdict}
