"""Matplotlib ``Figure`` builders shared by the demo and the CLI (never pyplot state).

Every builder returns a ``matplotlib.figure.Figure``; callers that are done with one close it
with ``close(fig)`` so a server does not leak memory.
"""
from __future__ import annotations

import io

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from .losses import LOSSES, check_loss

LOSS_LABELS = {"simple": "simple  $r_+ - r_-$",
               "soft_triplet": "soft triplet",
               "infonce": "InfoNCE"}
LOSS_COLORS = {"simple": "tab:gray", "soft_triplet": "tab:orange", "infonce": "tab:blue"}


def close(fig: Figure) -> None:
    """Release a figure's canvas and artists."""
    fig.clf()


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes (Agg canvas, no pyplot)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _figure(w=6.0, h=3.6):
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
                mx, my = 0.5 * (px[parent[i]] + x), 0.5 * (py + y)
                ax.text(mx, my, f"{rho[i]:+.2f}", fontsize=6.5, ha="center", va="center",
                        color=colors[-len(xs) + i],
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
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


def corr_depth_figure(steps, corr_by_depth, *, untrained=None, ceiling=None, title=None):
    """Normalized correlation per depth against training step.

    ``steps`` (T,); ``corr_by_depth`` (T, D): column ``d`` is tree depth ``d + 1`` (the
    latents just above the leaves are depth 1, the root is depth D). ``untrained`` (D,):
    the value at initialisation, drawn dashed; ``ceiling`` (D,): the best any function of the
    leaves can reach (exact posterior-mean correlation), drawn dotted.
    """
    steps = np.asarray(steps, float)
    C = np.asarray(corr_by_depth, float).reshape(len(steps), -1)     # (T, D)
    D = C.shape[1]
    fig = _figure()
    ax = fig.add_subplot()
    cmap = __import__("matplotlib").colormaps["plasma"]
    for d in range(D):
        col = cmap(0.85 * d / max(1, D - 1))
        ax.plot(steps, C[:, d], color=col, lw=1.8, marker="o" if len(steps) < 3 else None,
                ms=3, label=f"depth {d + 1}")
        if untrained is not None:
            ax.axhline(untrained[d], color=col, ls="--", lw=0.9)
        if ceiling is not None:
            ax.axhline(ceiling[d], color=col, ls=":", lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("normalized correlation")
    ax.set_ylim(0, 1.02)
    if len(steps) and steps.max() > steps.min():
        ax.set_xlim(steps.min(), steps.max())
    ax.legend(fontsize=7, ncol=2 if D > 4 else 1, loc="lower right")
    note = "dashed: untrained" + (", dotted: ceiling" if ceiling is not None else "")
    ax.set_title(title or f"correlation per depth ({note})", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def collapsed_loss(loss="infonce", tau=1.0, H=1, margin=0.0):
    """The loss of a collapsed embedding (every input mapped to one point: ``r_+ = r_k = 0``):
    simple 0, soft triplet ``τ log(1 + e^{r_0/τ})``, InfoNCE ``τ log(1 + H)``."""
    fn = check_loss(loss, tau, H)
    z = np.zeros(1)
    return float(fn(z, np.zeros((1, int(H))), float(tau), float(margin))[0][0])


def loss_figure(steps, loss, *, collapsed=None, name="loss", title=None):
    """Training loss against step, with the collapsed-embedding value as a horizontal line."""
    fig = _figure()
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
def spectrum_figure(eigvals, *, layer=None, title=None):
    """The top eigenvalues of ``OP_l`` (descending), as a stem plot on a linear scale."""
    ev = np.sort(np.asarray(eigvals, float))[::-1]
    fig = _figure(5.2, 3.4)
    ax = fig.add_subplot()
    idx = np.arange(1, len(ev) + 1)
    ax.vlines(idx, 0, ev, color="tab:blue", lw=1.5)
    ax.plot(idx, ev, "o", color="tab:blue", ms=4)
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
    ax.set_ylim(-1.02, 1.02)
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
    ax.set_xlabel("input unit j (layer l-1)")
    ax.set_ylabel("unit i (layer l)")
    lam = f", λ = {eigval:.3g}" if eigval is not None else ""
    lay = f" of layer {layer}" if layer is not None else ""
    ax.set_title(title or f"top eigenvector{lay} as a weight pattern{lam}", fontsize=9)
    return fig


# ----------------------------------------------------------------------------- the losses
LOSS_VARIABLES = ("r_pos", "r_neg", "tau")


def loss_curves(vary="r_pos", *, r_pos=1.0, r_neg=1.0, tau=1.0, margin=0.0, H=1, lo=None,
                hi=None, n=201, losses=tuple(LOSSES)):
    """Each loss, ``dL/dr_+`` and the pair weight ``ξ = -dL/dr_k`` as one of ``r_+``, ``r_-``
    (all H negatives at the same distance) or ``τ`` varies, the others held fixed.

    Returns ``(t, {loss: (L, dL/dr_pos, xi)})`` with every array (n,). ``simple`` and
    ``soft_triplet`` always take H = 1 (their definition); InfoNCE takes ``H``.
    """
    if vary not in LOSS_VARIABLES:
        raise ValueError(f"vary must be one of {LOSS_VARIABLES}, got {vary!r}")
    if vary == "tau":
        lo, hi = (0.05 if lo is None else lo), (5.0 if hi is None else hi)
        if not 0 < lo < hi:
            raise ValueError(f"tau range must satisfy 0 < lo < hi, got lo={lo}, hi={hi}")
    else:
        lo, hi = (0.0 if lo is None else lo), (4.0 if hi is None else hi)
        if not 0 <= lo < hi:
            raise ValueError(f"{vary} range must satisfy 0 <= lo < hi, got lo={lo}, hi={hi}")
    t = np.linspace(lo, hi, int(n))                                   # (n,)
    out = {}
    for name in losses:
        h = int(H) if name == "infonce" else 1
        fn = check_loss(name, 1.0 if vary == "tau" else tau, h)
        rp = t if vary == "r_pos" else np.full_like(t, r_pos)
        rn = np.repeat((t if vary == "r_neg" else np.full_like(t, r_neg))[:, None], h, 1)
        if vary == "tau":
            vals = [fn(rp[i:i + 1], rn[i:i + 1], float(t[i]), margin) for i in range(len(t))]
            L = np.array([v[0][0] for v in vals])
            dp = np.array([v[1][0] for v in vals])
            xi = np.array([-v[2][0, 0] for v in vals])
        else:
            L, dp, dn = fn(rp, rn, float(tau), float(margin))
            xi = -dn[:, 0]
        out[name] = (L, dp, xi)
    return t, out


def losses_figure(vary="r_pos", *, r_pos=1.0, r_neg=1.0, tau=1.0, margin=0.0, H=1,
                  losses=tuple(LOSSES)):
    """Two panels: the losses, and their pair weights ``ξ = -dL/dr_k`` (solid) with
    ``dL/dr_+`` (dotted; equals ``Σ_k ξ_k``), against the varied quantity."""
    t, curves = loss_curves(vary, r_pos=r_pos, r_neg=r_neg, tau=tau, margin=margin, H=H,
                            losses=losses)
    xlabel = {"r_pos": r"$r_+ = \frac{1}{2}\|f(x) - f(x_+)\|^2$",
              "r_neg": r"$r_- = \frac{1}{2}\|f(x) - f(x_-)\|^2$ (every negative)",
              "tau": r"temperature $\tau$"}[vary]
    fixed = {"r_pos": f"$r_-$={r_neg:g}, τ={tau:g}", "r_neg": f"$r_+$={r_pos:g}, τ={tau:g}",
             "tau": f"$r_+$={r_pos:g}, $r_-$={r_neg:g}"}[vary]
    fig = _figure(9.0, 3.5)
    a1, a2 = fig.subplots(1, 2)
    for name, (L, dp, xi) in curves.items():
        col = LOSS_COLORS[name]
        lab = LOSS_LABELS[name] + (f" (H={int(H)})" if name == "infonce" else "")
        a1.plot(t, L, color=col, lw=1.8, label=lab)
        a2.plot(t, xi, color=col, lw=1.8, label=f"ξ  {name}")
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
