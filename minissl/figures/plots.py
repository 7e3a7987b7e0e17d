"""Matplotlib ``Figure`` builders shared by the app, the CLI and the docs (never pyplot state).

Figures only: every builder takes the numbers to draw (computed by ``experiments``,
``losses`` or ``metrics``) and returns a ``matplotlib.figure.Figure``; callers that are done
with one close it with ``close(fig)`` so a server does not leak memory. Matplotlib is imported
when the first figure is built (a command that draws nothing does not pay for it).
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from .. import backend as B

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOSS_LABELS = {"simple": "simple  $r_+ - r_-$",
               "soft_triplet": "soft triplet",
               "infonce": "InfoNCE",
               "ref_nce": "ref. NCE (batch-mean)"}
LOSS_COLORS = {"simple": "tab:gray", "soft_triplet": "tab:orange", "infonce": "tab:blue",
               "ref_nce": "tab:green"}


def close(fig: Figure) -> None:
    """Release a figure's canvas and artists."""
    fig.clf()


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes (Agg canvas, no pyplot)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_png(fig: Figure, path, dpi: int = 100) -> None:
    """Write ``fig`` to the PNG file ``path`` and close it; prints ``# wrote PATH``."""
    try:
        with open(path, "wb") as fh:
            fh.write(to_png(fig, dpi))
    finally:
        close(fig)
    print(f"# wrote {path}")


def _figure(w=6.0, h=3.6):
    B.require("matplotlib", "figures")
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), layout="constrained")


# ----------------------------------------------------------------------------- HLTM
def tree_layout(num_children: int, depth: int):
    """Node positions of a full ``num_children``-ary tree with ``depth`` levels below the root.

    Level ``j = 0..depth`` from the root (tree depth ``depth - j``; level ``depth`` = the
    leaves, the visible input) has ``num_children**j`` nodes; node ``i`` of level ``j`` has
    parent ``i // num_children``. Leaves sit evenly on ``[0, 1]``, each parent at the mean of
    its children. Returns a list of ``(xs, y)`` with ``xs`` (k**j,) and ``y = depth - j``.
    """
    k, L = int(num_children), int(depth)
    xs = (np.arange(k ** L) + 0.5) / k ** L
    out = [(xs, 0)]
    for j in range(L - 1, -1, -1):
        xs = xs.reshape(-1, k).mean(axis=1)                 # (k**j,)
        out.append((xs, L - j))
    return out[::-1]


def tree_figure(num_children, depth, corr, polarity, *, title=None, label_limit=8):
    """The HLTM tree: each latent coloured by its best |correlation| with its units, edges by
    polarity (sign: colour, |ρ|: width; labelled where a level has <= ``label_limit`` edges).

    ``corr``: list over levels ``j = 0..depth-1`` from the root, ``corr[j]`` (k**j,) in [0, 1]
    (NaN draws grey). ``polarity``: list over levels ``j = 1..depth``, ``polarity[j-1]`` (k**j,)
    the ρ of the edge from node ``i // k`` of level ``j-1`` to node ``i`` of level ``j``.
    """
    k, L = int(num_children), int(depth)
    if len(corr) != L or len(polarity) != L:
        raise ValueError(f"corr and polarity must each have depth={L} levels, "
                         f"got {len(corr)} and {len(polarity)}")
    pos = tree_layout(k, L)
    fig = _figure(6.4, 3.9)
    ax = fig.add_subplot()
    segs, colors, widths = [], [], []
    for j in range(1, L + 1):
        xs, y = pos[j]
        px, py = pos[j - 1]
        rho = np.asarray(polarity[j - 1], float)
        parent = np.arange(len(xs)) // k
        for i, x in enumerate(xs):
            segs.append([(px[parent[i]], py), (x, y)])
            colors.append("tab:blue" if rho[i] >= 0 else "tab:red")
            widths.append(0.4 + 2.2 * abs(rho[i]))
        if len(xs) <= label_limit:
            for i, x in enumerate(xs):
                # 70% of the way down the edge: siblings' labels spread apart
                mx, my = 0.3 * px[parent[i]] + 0.7 * x, 0.3 * py + 0.7 * y
                ax.text(mx, my, f"{rho[i]:+.2f}", fontsize=6.5, ha="center", va="center",
                        color=colors[-len(xs) + i],
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
    from matplotlib.collections import LineCollection
    ax.add_collection(LineCollection(segs, colors=colors, linewidths=widths, zorder=1))
    cmap = "viridis"
    sc = None
    for j in range(L):
        xs, y = pos[j]
        c = np.asarray(corr[j], float)
        size = max(18.0, 260.0 / max(1.0, len(xs) ** 0.5))
        sc = ax.scatter(xs, np.full_like(xs, y), c=c, cmap=cmap, vmin=0.0, vmax=1.0,
                        s=size, edgecolors="k", linewidths=0.6, zorder=2,
                        plotnonfinite=True)
    lx, _ = pos[L]
    ax.scatter(lx, np.zeros_like(lx), marker="s", s=max(4.0, 60.0 / max(1.0, len(lx) ** 0.5)),
               c="lightgray", edgecolors="gray", linewidths=0.4, zorder=2)
    fig.colorbar(sc, ax=ax, label="best |corr| of the latent's units", shrink=0.85)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.5, L + 0.5)
    ax.set_yticks(range(L + 1))
    ax.set_yticklabels([f"{d}" + (" (leaves)" if d == 0 else " (root)" if d == L else "")
                        for d in range(L + 1)], fontsize=8)
    ax.set_ylabel("tree depth")
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or "latent recovery (edge colour: polarity sign, blue +, red -)",
                 fontsize=9)
    return fig


def loss_figure(steps, loss, *, collapsed=None, name="loss", title=None):
    """Training loss against step, with the collapsed-embedding value as a horizontal line."""
    fig = _figure(5.0, 3.4)
    ax = fig.add_subplot()
    ax.plot(np.asarray(steps, float), np.asarray(loss, float), color="tab:blue", lw=1.2,
            label=name)
    if collapsed is not None:
        ax.axhline(collapsed, color="tab:red", ls="--", lw=1.0,
                   label=f"collapsed embedding ({collapsed:.3g})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title or "training loss", fontsize=9)
    return fig


# ----------------------------------------------------------------------------- covariance operator
def spectrum_figure(eigvals, *, initial=None, layer=None, title=None):
    """The top eigenvalues of ``OP_l`` (descending), as a stem plot on a linear scale;
    ``initial`` (optional): the same at initialisation, drawn as grey crosses; ``layer``: the
    0-based ``net.weights`` index, for the title."""
    ev = np.sort(np.asarray(eigvals, float))[::-1]
    fig = _figure(5.2, 3.4)
    ax = fig.add_subplot()
    idx = np.arange(1, len(ev) + 1)
    ax.vlines(idx, 0, ev, color="tab:blue", lw=1.5)
    ax.plot(idx, ev, "o", color="tab:blue", ms=4, label="now")
    if initial is not None:
        ev0 = np.sort(np.asarray(initial, float))[::-1]
        ax.plot(np.arange(1, len(ev0) + 1), ev0, "x", color="gray", ms=5, label="untrained")
        ax.legend(fontsize=8)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue")
    ax.grid(alpha=0.3)
    lay = f" of layer {layer}" if layer is not None else ""
    ax.set_title(title or f"top of the spectrum of OP{lay}", fontsize=9)
    return fig


def cosine_figure(steps, cosines, *, title=None):
    """Cosine between the gradient step and the covariance-operator step, per layer.

    ``cosines``: dict ``{layer: (T,) values}`` (or a (T,) array for a single layer).
    """
    fig = _figure(5.2, 3.4)
    ax = fig.add_subplot()
    steps = np.asarray(steps, float)
    if not isinstance(cosines, dict):
        cosines = {"": cosines}
    for name, c in cosines.items():
        ax.plot(steps, np.asarray(c, float), lw=1.4, marker="o" if len(steps) < 3 else None,
                ms=3, label=f"layer {name}" if name != "" else None)
    lows = [np.nanmin(np.asarray(c, float)) for c in cosines.values() if np.isfinite(c).any()]
    ax.set_ylim(min([0.0] + lows) - 0.05, 1.02)
    ax.axhline(1.0, color="k", ls=":", lw=0.8)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("cos(gradient step, OP vec W)")
    if any(n != "" for n in cosines):
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(title or "gradient step vs covariance-operator step", fontsize=9)
    return fig


def eigvec_figure(v, shape, *, eigval=None, layer=None, title=None):
    """The top eigenvector of ``OP_l`` reshaped (row-major, like ``vec``) to the weight matrix
    shape ``(n_l, n_{l-1})``: a weight pattern, diverging colours around 0."""
    V = np.asarray(v, float).reshape(shape)                           # (n_l, n_{l-1})
    m = float(np.abs(V).max()) or 1.0
    fig = _figure(5.2, 3.4)
    ax = fig.add_subplot()
    im = ax.imshow(V, cmap="RdBu_r", vmin=-m, vmax=m, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.85)
    ax.set_xlabel("input unit j")
    ax.set_ylabel("unit i (the layer's output)")
    lam = f", λ = {eigval:.3g}" if eigval is not None else ""
    lay = f" of layer {layer}" if layer is not None else ""
    ax.set_title(title or f"top eigenvector{lay} as a weight pattern{lam}", fontsize=9)
    return fig


# ----------------------------------------------------------------------------- the losses
def losses_figure(t, curves, vary="r_pos", *, r_pos=1.0, r_neg=1.0, tau=1.0, margin=0.0, H=1):
    """Two panels: the losses, and their pair weights ``ξ = -dL/dr_k`` (solid) with
    ``dL/dr_+`` (dotted; equals ``Σ_k ξ_k``), against the varied quantity. ``t, curves`` as
    returned by ``experiments.loss_curves`` for the other (fixed) arguments."""
    xlabel = {"r_pos": r"$r_+ = \frac{1}{2}\|f(x) - f(x_+)\|^2$",
              "r_neg": r"$r_- = \frac{1}{2}\|f(x) - f(x_-)\|^2$ (every negative)",
              "tau": r"temperature $\tau$"}[vary]
    fixed = {"r_pos": f"$r_-$={r_neg:g}, τ={tau:g}", "r_neg": f"$r_+$={r_pos:g}, τ={tau:g}",
             "tau": f"$r_+$={r_pos:g}, $r_-$={r_neg:g}"}[vary]
    fig = _figure(9.0, 3.5)
    a1, a2 = fig.subplots(1, 2)
    for name, (L, dp, xi) in curves.items():
        col = LOSS_COLORS.get(name)
        lab = LOSS_LABELS.get(name, name) + (f" (H={int(H)})" if name == "infonce" else "")
        ls = "--" if name == "infonce" else "-"        # InfoNCE(H=1) = soft triplet(r_0=0)
        a1.plot(t, L, color=col, lw=1.8, ls=ls, label=lab)
        a2.plot(t, xi, color=col, lw=1.8, ls=ls, label=f"ξ  {name}")
        a2.plot(t, dp, color=col, lw=1.0, ls=":")
    a1.set_xlabel(xlabel)
    a1.set_ylabel("loss L (per anchor)")
    a1.set_title(f"losses ({fixed}, margin $r_0$={margin:g})", fontsize=9)
    a1.legend(fontsize=8)
    a2.set_xlabel(xlabel)
    a2.set_ylabel(r"pair weight $\xi_k = -\partial L/\partial r_k$")
    a2.set_title(r"pair weights (dotted: $\partial L/\partial r_+ = \Sigma_k \xi_k$)",
                 fontsize=9)
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- BYOL (issue 7)
def byol_ablation_figure(rows, *, title=None):
    """Bars of the final effective rank and ``std·√d`` per ablation run
    (``byol.run_ablation`` rows), labelled ``predictor / BN mean / EMA``."""
    labels = [f"{r['predictor']}\n{r['bn_mean']}\nema {r['ema']:g}" for r in rows]
    x = np.arange(len(rows))
    fig = _figure(max(6.0, 0.7 * len(rows) + 1.5), 4.2)
    a1, a2 = fig.subplots(2, 1, sharex=True)
    cols = ["#c44e52" if r["predictor"] == "none" else "#4c72b0" for r in rows]
    a1.bar(x, [r["effective_rank"] for r in rows], color=cols)
    a1.axhline(1.0, color="k", lw=0.8, ls=":")
    a1.set_ylabel("effective rank")
    a2.bar(x, [r["std"] for r in rows], color=cols)
    a2.set_ylabel(r"std of $z/\|z\|$ × $\sqrt{d}$")
    a2.set_xticks(x, labels, fontsize=7)
    a1.set_title(title or "BYOL ablation (red: no predictor; dotted: rank 1 = collapse)",
                 fontsize=9)
    for a in (a1, a2):
        a.grid(alpha=0.3, axis="y")
    return fig


def byol_history_figure(histories, *, title=None):
    """Effective rank and ``std·√d`` over training for several runs: ``{label: History}``."""
    fig = _figure(9.0, 3.3)
    a1, a2 = fig.subplots(1, 2)
    for label, h in histories.items():
        a1.plot(h["step"], h["effective_rank"], lw=1.6, label=label)
        a2.plot(h["step"], h["std"], lw=1.6, label=label)
    a1.set_ylabel("effective rank")
    a2.set_ylabel(r"std of $z/\|z\|$ × $\sqrt{d}$")
    for a in (a1, a2):
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    a1.legend(fontsize=7)
    a1.set_title(title or "collapse diagnostics during training", fontsize=9)
    return fig


def byol_spectrum_figure(spectra, *, title=None):
    """Singular values of the centred embeddings (over √N), log scale: ``{label: array}``."""
    fig = _figure(5.5, 3.3)
    ax = fig.subplots()
    for label, s in spectra.items():
        s = np.asarray(s)
        ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s, 1e-12), "o-", ms=3, label=label)
    ax.set_xlabel("index")
    ax.set_ylabel("singular value of centred embeddings")
    ax.set_title(title or "embedding spectrum", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig


def implicit_contrastive_figure(steps, norms, parts, *, title=None):
    """The BN-mean ("implicit contrastive") part of a layer's weight gradient.

    Left: ``||dW_direct||, ||dW_mean||, ||dW_var||`` over training (``norms``: dict of lists).
    Right: entries of ``dW_mean`` against its cross-sample piece
    ``-(1/N) sum_{i != j} delta_i f_j^T`` (``parts`` from ``batchnorm.weight_grad_parts``).
    """
    fig = _figure(9.0, 3.4)
    a1, a2 = fig.subplots(1, 2)
    for key, col in (("direct", "#4c72b0"), ("mean", "#c44e52"), ("var", "#55a868")):
        if key in norms:
            a1.semilogy(steps, np.maximum(norms[key], 1e-16), color=col, lw=1.6,
                        label=f"‖dW_{key}‖")
    a1.set_xlabel("step")
    a1.set_ylabel("Frobenius norm")
    a1.grid(alpha=0.3, which="both")
    a1.legend(fontsize=8)
    a1.set_title("paths of the first layer's gradient through BN", fontsize=9)
    x, y = np.ravel(parts["mean_cross"]), np.ravel(parts["mean"])
    a2.scatter(x, y, s=6, alpha=0.6, color="#c44e52")
    lim = max(np.abs(x).max(), np.abs(y).max(), 1e-12)
    a2.plot([-lim, lim], [-lim, lim], "k:", lw=0.8)
    a2.set_xlabel(r"cross-sample term $-\frac{1}{N}\sum_{i\neq j}\delta_i f_j^T$")
    a2.set_ylabel(r"mean path $dW_{mean}$")
    a2.set_title(title or "the mean path is a sum over pairs of different samples", fontsize=9)
    a2.grid(alpha=0.3)
    return fig


def linear_byol_figure(t, Ws, t_sim=None, Ws_sim=None, *, title=None, label_sim="SGD"):
    """Singular values of the online weight ``W(t)`` (K, d, n): ODE lines, simulation dots."""
    fig = _figure(6.0, 3.6)
    ax = fig.subplots()
    s = np.linalg.svd(np.asarray(Ws), compute_uv=False)          # (K, d)
    for j in range(s.shape[1]):
        ax.plot(t, s[:, j], lw=1.8, color=f"C{j}", label="ODE" if j == 0 else None)
    if t_sim is not None:
        ss = np.linalg.svd(np.asarray(Ws_sim), compute_uv=False)
        for j in range(ss.shape[1]):
            ax.plot(t_sim, ss[:, j], "o", ms=2.5, color=f"C{j}", alpha=0.7,
                    label=label_sim if j == 0 else None)
    ax.set_xlabel("time t = lr × steps")
    ax.set_ylabel("singular values of W")
    ax.set_title(title or "linear BYOL: gradient flow vs simulation", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def byol_regimes_figure(etas, alphas, norms, *, title=None):
    """Heat map of ``log10 ||W(T)||_F`` over weight decay ``eta`` x predictor rate ``alpha_p``
    (``linear_byol.regime_grid``); dark = collapse."""
    fig = _figure(5.8, 4.0)
    ax = fig.subplots()
    v = np.log10(np.maximum(np.asarray(norms), 1e-8))
    im = ax.imshow(v, origin="lower", aspect="auto", cmap="viridis", vmin=max(v.min(), -8))
    ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_yticks(range(len(etas)), [f"{e:g}" for e in etas])
    ax.set_xlabel(r"predictor rate $\alpha_p$ (relative learning rate)")
    ax.set_ylabel(r"weight decay $\eta$")
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            ax.text(j, i, "C" if norms[i][j] < 1e-2 else "", ha="center", va="center",
                    color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label=r"$\log_{10}\|W(T)\|_F$")
    ax.set_title(title or "linear BYOL regimes (C = collapsed, ||W(T)|| < 1e-2)", fontsize=9)
    return fig


def directpred_figure(alignment, *, eps=0.0, title=None):
    """A trained linear predictor in the eigenbasis of ``F`` (``byol.eigen_alignment``):
    its eigenvalues ``p_j`` against DirectPred's ``sqrt(s_j / max s) + eps``, and the cosines
    between ``u_j`` and ``W_p u_j``."""
    s, p = alignment["s"], alignment["p"]
    dp = alignment["p_directpred"] + eps
    j = np.arange(1, len(s) + 1)
    fig = _figure(9.0, 3.4)
    a1, a2 = fig.subplots(1, 2)
    scale = float(p[0]) if abs(p[0]) > 0 else 1.0
    a1.plot(j, p / scale, "o-", label=r"trained $p_j / p_1$")
    a1.plot(j, dp / dp[0], "s--", label=r"DirectPred $\sqrt{s_j/s_1}$")
    a1.set_xlabel("eigen-index j of F (descending)")
    a1.set_ylabel("relative eigenvalue")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    a1.set_title(title or f"predictor vs F: off-diagonal {alignment['offdiag']:.3f}",
                 fontsize=9)
    a2.bar(j, alignment["cosines"], color="#4c72b0")
    a2.set_ylim(0, 1.05)
    a2.set_xlabel("eigen-index j of F")
    a2.set_ylabel(r"$|u_j \cdot W_p u_j| / \|W_p u_j\|$")
    a2.set_title("eigen-alignment", fontsize=9)
    a2.grid(alpha=0.3, axis="y")
    return fig


# ----------------------------------------------------------------------------- luck: units,
# probes, top-layer acceleration (experiments.selectivity, .probe, .acceleration)
ARM_COLORS = {"frozen": "tab:gray", "trained": "tab:blue", "scaled": "tab:red"}


def depth_color(d, depth):
    """The colour of tree depth ``d`` of ``depth`` (plasma, depth 1 dark, the root light)."""
    cmap = __import__("matplotlib").colormaps["plasma"]
    return cmap(0.85 * (d - 1) / max(1, depth - 1))


def corr_panels_figure(steps, corr_by_depth, *, untrained=None, ceiling=None, title=None):
    """Normalized correlation against step, one small panel per tree depth (root first).

    ``corr_by_depth`` (T, D): column ``d`` is tree depth ``d + 1``. In each panel: the learned
    value (solid), the untrained value (dashed) and, shaded, the band above the ceiling (the
    exact posterior mean's correlation, which no function of the subtree's leaves exceeds)."""
    steps = np.asarray(steps, float)
    C = np.asarray(corr_by_depth, float).reshape(len(steps), -1)     # (T, D)
    D = C.shape[1]
    cols = min(D, 4)
    rows = -(-D // cols)
    fig = _figure(6.4, 1.9 * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
    for i, d in enumerate(range(D, 0, -1)):
        ax, col = axes[i], depth_color(d, D)
        ax.plot(steps, C[:, d - 1], color=col, lw=1.8, marker="o" if len(steps) < 3 else None,
                ms=3)
        vals = list(C[:, d - 1])
        if untrained is not None:
            ax.axhline(untrained[d - 1], color="k", ls="--", lw=0.8)
            vals.append(untrained[d - 1])
        if ceiling is not None:
            ax.axhspan(ceiling[d - 1], 1.05, color="0.85", zorder=0)
            vals.append(ceiling[d - 1])
        lo, hi = np.nanmin(vals), np.nanmax(vals)
        pad = max(0.02, 0.15 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.02, hi + pad))
        ax.set_title(f"depth {d}" + (" (root)" if d == D else ""), fontsize=8, color=col)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[D:]:
        ax.set_visible(False)
    fig.supxlabel("step", fontsize=8)
    fig.suptitle(title or "best |corr| per depth (dashed: untrained; grey: above the ceiling)",
                 fontsize=9)
    return fig


def unit_view_figure(view, *, title=None):
    """Per-unit selectivity (``experiments.selectivity.unit_view``). Left: every unit of the
    chosen latent over training, the final winner thick; right: initial against final
    selectivity of every unit of the tree, coloured by depth, each latent's winner ringed."""
    fig = _figure(9.0, 3.4)
    a1, a2 = fig.subplots(1, 2)
    steps, traces, w = np.asarray(view["steps"], float), np.asarray(view["traces"]), view["winner"]
    for u in range(traces.shape[1]):
        win = u == w
        a1.plot(steps, traces[:, u], color="tab:red" if win else "0.6", lw=2.2 if win else 0.9,
                zorder=3 if win else 2, label=f"winner: unit {u}" if win else None)
    a1.set_xlabel("step")
    a1.set_ylabel("|corr(z, g_u)| of each unit")
    a1.set_title(f"{view['label']}: the winner started #{view['rank']} of {traces.shape[1]} "
                 "(#0 = best)", fontsize=9)
    a1.legend(fontsize=7, loc="lower right")
    a1.grid(alpha=0.3)
    D = int(max(view["depth"]))
    for d in range(D, 0, -1):
        m = view["depth"] == d
        a2.scatter(view["initial"][m], view["final"][m], s=9, color=depth_color(d, D),
                   alpha=0.7, label=f"depth {d}: ρ = {view['spearman'][d]:+.2f}")
    wm = view["winners"]
    a2.scatter(view["initial"][wm], view["final"][wm], s=40, facecolors="none",
               edgecolors="k", linewidths=0.8, label="winners")
    a2.plot([0, 1], [0, 1], "k:", lw=0.8)
    a2.set_xlabel("selectivity at initialisation")
    a2.set_ylabel("selectivity now")
    a2.set_title(title or "every unit: initial vs now (ρ: Spearman)", fontsize=9)
    a2.legend(fontsize=6.5, loc="lower right")
    a2.grid(alpha=0.3)
    return fig


def probe_figure(view, *, title=None):
    """Probe accuracy of one latent from each representation (``experiments.probe.
    probe_view``): linear probe bars (light: untrained, dark: trained), k-NN as dots, and the
    Bayes accuracies given the latent's subtree leaves (dashed) and all leaves (solid)."""
    names = view["names"]
    x = np.arange(len(names))
    fig = _figure(6.0, 3.4)
    ax = fig.add_subplot()
    for j, (when, alpha) in enumerate((("untrained", 0.35), ("trained", 0.9))):
        if when in view:
            ax.bar(x + (j - 0.5) * 0.38, view[when]["linear"], width=0.36, color="tab:blue",
                   alpha=alpha, label=f"linear, {when}")
            ax.plot(x + (j - 0.5) * 0.38, view[when]["knn"], "o", ms=4, color="tab:orange",
                    alpha=max(alpha, 0.5), label=f"k-NN, {when}")
    ax.axhline(view["bayes_all"], color="k", lw=1.2, label="Bayes | all leaves")
    ax.axhline(view["bayes_subtree"], color="k", lw=1.0, ls="--",
               label="Bayes | its subtree's leaves")
    vals = [view["bayes_subtree"]] + [v for w in ("untrained", "trained") if w in view
                                      for k in ("linear", "knn") for v in view[w][k]]
    ax.set_ylim(max(0.0, min(vals) - 0.05), 1.0)
    ax.set_xticks(x, names, fontsize=7)
    ax.set_ylabel("test accuracy")
    fig.legend(fontsize=6.5, loc="outside lower center", ncol=3)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title or f"probing {view['label']}", fontsize=9)
    return fig


def acceleration_figure(records, linear=None, *, title=None):
    """Top-layer acceleration (``experiments.acceleration``): the bottom layer's mean unit
    selectivity and relative weight change against step per arm (frozen / trained / scaled top
    layer); with ``linear`` records, a third panel: ``||W_1(t)|| / ||W_1(0)||`` of the linear
    flow. A diverged arm ends with a cross."""
    panels = [("unit_corr", "step", "mean |corr| of the depth-1 units"),
              ("dW1", "step", r"$\|W_1(t) - W_1(0)\| / \|W_1(0)\|$")]
    if linear is not None:
        panels.append(("W1", "t", r"linear flow: $\|W_1(t)\| / \|W_1(0)\|$"))
    fig = _figure(3.2 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels))
    for ax, (key, time, label) in zip(axes, panels):
        recs = records if time == "step" else linear
        for arm, col in ARM_COLORS.items():
            r = [q for q in recs if q["arm"] == arm]
            if r:
                ax.plot([q[time] for q in r], [q[key] for q in r], color=col, lw=1.6,
                        label=f"top {arm}")
                if r[-1].get("diverged"):
                    ax.plot(r[-1][time], r[-1][key], "x", color=col, ms=7, mew=2)
        ax.set_xlabel("flow time t" if time == "t" else "step")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    if linear is not None:
        axes[-1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(title or "training the top layer speeds up the bottom layer "
                          "(x: the loss diverged)", fontsize=9)
    return fig


# ----------------------------------------------------------------------------- feature decoupling
DECOUPLING_PANELS = (("alignment", "sparse alignment (mean over neurons)"),
                     ("dense_fraction", "dense fraction (mean over neurons)"),
                     ("coverage", "feature coverage (mean over features)"))


def decoupling_figure(rows, *, title=None):
    """The table of ``experiments.decoupling_table`` as three panels against the closed-form
    decoupling gap ``ρ_sparse − ρ_dense`` of the views: mean sparse alignment, dense fraction
    and coverage, ± their std over seeds. Symmetric-threshold neurons as circles, ReLU
    neurons as triangles; each point labelled by its setting."""
    gap = np.array([r["rho_sparse"] - r["rho_dense"] for r in rows], float)
    fig = _figure(12.0, 3.8)
    axes = fig.subplots(1, 3, sharex=True)
    cmap = __import__("matplotlib").colormaps["viridis"]
    for ax, (key, label) in zip(axes, DECOUPLING_PANELS):
        for i, r in enumerate(rows):
            mean, std = r[key]
            ax.errorbar(gap[i], mean, yerr=std, fmt="^" if r["neuron"] == "relu" else "o",
                        color=cmap(i / max(1, len(rows) - 1)), ms=6, capsize=2)
            ax.annotate(r["label"], (gap[i], mean), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel(r"$\rho_{sparse} - \rho_{dense}$ (closed form)")
        ax.set_ylim(0, 1.02)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title or "feature decoupling: what the neurons learn against the views' "
                 "correlations (o symmetric threshold, ^ ReLU)", fontsize=10)
    return fig


def neuron_figure(alignment, dense, coverage, *, b=None, threshold=0.9, title=None):
    """The neurons' make-up: per neuron its sparse alignment against its dense fraction
    (coloured by the threshold ``b`` when given), and per sparse feature its coverage
    (the best neuron's ``|M_j . w|``), sorted, with the ``threshold`` line."""
    fig = _figure(9.0, 3.4)
    a1, a2 = fig.subplots(1, 2)
    sc = a1.scatter(alignment, dense, c=b if b is not None else "tab:blue", cmap="plasma",
                    s=18, vmin=0)
    if b is not None:
        fig.colorbar(sc, ax=a1, label="threshold b")
    a1.axvline(threshold, color="gray", ls=":", lw=1)
    a1.set_xlim(0, 1.02)
    a1.set_ylim(-0.02, 1.02)
    a1.set_xlabel(r"sparse alignment $\max_j |M_j^\top w|$")
    a1.set_ylabel(r"dense fraction $\|P^\top w\|^2$")
    aligned = int((np.asarray(alignment) > threshold).sum())
    a1.set_title(title or f"{len(alignment)} neurons ({aligned} aligned > {threshold:g})",
                 fontsize=9)
    a1.grid(alpha=0.3)
    cov = np.sort(np.asarray(coverage, float))[::-1]
    a2.bar(np.arange(1, len(cov) + 1), cov, color=np.where(cov > threshold, "tab:green",
                                                             "tab:gray"))
    a2.axhline(threshold, color="gray", ls=":", lw=1)
    a2.set_ylim(0, 1.02)
    a2.set_xlabel("sparse feature (sorted)")
    a2.set_ylabel(r"coverage $\max_i |M_j^\top w_i|$")
    a2.set_title(f"{int((cov > threshold).sum())}/{len(cov)} features covered > {threshold:g}",
                 fontsize=9)
    a2.grid(alpha=0.3, axis="y")
    return fig


def decoupling_curves_figure(steps, series, *, rho=None, title=None):
    """Mean sparse alignment, dense fraction and coverage (``series``: name -> values) against
    step; ``rho`` ``{"sparse", "dense"}`` (the closed-form view correlations) in the title."""
    fig = _figure(5.0, 3.4)
    ax = fig.add_subplot()
    for (name, vals), col in zip(series.items(), ("tab:green", "tab:red", "tab:blue")):
        ax.plot(np.asarray(steps, float), np.asarray(vals, float), color=col, lw=1.6,
                marker="o" if len(steps) < 3 else None, ms=3, label=name)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    note = "" if rho is None else (f" (views: ρ_sparse {rho['sparse']:.2f}, "
                                   f"ρ_dense {rho['dense']:.2f})")
    ax.set_title(title or "neurons over training" + note, fontsize=9)
    return fig


# ----------------------------------------------------------------------------- real data
def first_layer_figure(weights, shape, labels=None, *, n=16, title=None):
    """First-layer weights as pictures: one row per weight matrix of ``weights`` (each
    (n_1, n_0)), its ``n`` units of largest norm, each unit's weights reshaped to ``shape``
    ((H, W): an image, symmetric colour scale per unit; (L,): a curve). ``labels`` name the
    rows."""
    weights = [np.asarray(W, dtype=np.float64) for W in weights]
    n = min(n, min(len(W) for W in weights))
    fig = _figure(0.75 * n + 1.2, 0.9 * len(weights) + 0.5)
    axes = np.asarray(fig.subplots(len(weights), n, squeeze=False))
    for r, W in enumerate(weights):
        top = np.argsort(-np.linalg.norm(W, axis=1))[:n]
        for c, u in enumerate(top):
            ax = axes[r, c]
            w = W[u]
            if len(shape) >= 2:
                m = np.abs(w).max() or 1.0
                ax.imshow(w.reshape(shape[-2:]) if w.size == shape[-2] * shape[-1]
                          else w.reshape(shape)[0], cmap="RdBu_r", vmin=-m, vmax=m)
            else:
                ax.plot(w, lw=0.8, color="tab:blue")
                ax.axhline(0, color="0.7", lw=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
        if labels is not None:
            axes[r, 0].set_ylabel(labels[r], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def realdata_curves_figure(epochs, loss, probe_epochs=(), probe=(), *, title=None):
    """The training loss per epoch (left axis) and the output's linear-probe accuracy (right
    axis, where measured)."""
    fig = _figure(6.0, 3.0)
    ax = fig.subplots()
    ax.plot(epochs, loss, color="tab:blue", lw=1.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:blue")
    if len(probe):
        ax2 = ax.twinx()
        ax2.plot(probe_epochs, probe, "o-", color="tab:orange", lw=1.2, ms=3)
        ax2.set_ylabel("linear probe (test)", color="tab:orange")
    ax.set_title(title or "training", fontsize=9)
    return fig
