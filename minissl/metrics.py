"""What the state of a run says: latent recovery on an HLTM, and collapse of embeddings.

Latent recovery (``normalized_correlation``): for latent mu, ``max_u |corr(z_mu, g_u)|`` over
the pre-activations ``g_u`` of mu's ``hid`` units (tree networks: ``nets.tree_network``); its
ceiling (``correlation_ceiling``) is ``|corr(z_mu, E[z_mu | leaves under mu])|``, the largest
|correlation| any function of what mu's units can see can reach (Cauchy-Schwarz), with the
exact posterior of ``HLTM.posterior_mean``.

Collapse (``collapse_diagnostics``): effective rank of the embeddings, std of the
L2-normalised embeddings times sqrt(d), the spectrum, and the loss a collapsed online branch
would reach; ``eigen_alignment`` measures how a predictor's eigenvectors align with those of
the correlation of its input (DirectPred).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import backend as B
from .kernels import twin
from .budget import check_correlation


class Correlation(NamedTuple):
    """Per-latent values (breadth-first, root first), their mean per tree depth, and (from
    ``normalized_correlation``) every unit's value: ``per_latent == per_unit.max(1)``."""
    per_latent: np.ndarray      # (n_latents,) float64
    by_depth: dict              # {tree depth: mean over that depth's latents}, depth L first
    per_unit: np.ndarray | None = None   # (n_latents, hid) float64 |corr(z_mu, g_u)|; None
                                         # for the ceiling (one value per latent)


# ----------------------------------------------------------------------------- correlation
def unit_correlations(z, g, dtype_eps=np.finfo(np.float64).eps):
    """``|corr(z_j, g_{j,u})|`` for every unit u of every group j: each unit's selectivity.

    ``z``: (n, G) latent values, ``g``: (n, G, hid) the pre-activations of each latent's group.
    Float64, two passes (centre, then multiply), so a nearly constant unit is not read as
    correlated by cancellation. A unit (or latent) whose spread is at rounding level of its
    values (``std <= 4 * dtype_eps * max|g|``, exactly constant included) counts as 0.
    Returns (G, hid) float64 in [0, 1].
    """
    z = np.asarray(z, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if z.ndim != 2 or g.ndim != 3 or g.shape[:2] != z.shape:
        raise ValueError(f"z must be (n, G) and g (n, G, hid) with the same n, G; got "
                         f"{z.shape} and {g.shape}")
    zc = z - z.mean(axis=0)                                   # (n, G)
    gc = g - g.mean(axis=0)                                   # (n, G, hid)
    cov = np.einsum("ng,ngh->gh", zc, gc) / z.shape[0]        # (G, hid)
    var_z = (zc * zc).mean(axis=0)                            # (G,)
    var_g = (gc * gc).mean(axis=0)                            # (G, hid)
    tol_z = 4 * np.finfo(np.float64).eps * np.abs(z).max(axis=0)
    tol_g = 4 * dtype_eps * np.abs(g).max(axis=0)
    live = (np.sqrt(var_g) > tol_g) & (np.sqrt(var_z) > tol_z)[:, None]
    denom = np.sqrt(np.where(live, var_z[:, None] * var_g, 1.0))
    corr = np.where(live, np.abs(cov) / denom, 0.0)
    return np.minimum(corr, 1.0)


def best_unit_correlation(z, g, dtype_eps=np.finfo(np.float64).eps):
    """``max_u |corr(z_j, g_{j,u})|`` per group j: the normalized correlation of each latent,
    ``unit_correlations(z, g, dtype_eps).max(axis=1)``, (G,) float64 in [0, 1]."""
    return unit_correlations(z, g, dtype_eps).max(axis=1)


def hid_of(tree, net):
    """The ``hid`` of a tree network built for ``tree`` (checks the sizes)."""
    sizes = list(net.sizes)
    hid = sizes[-1]
    if sizes != tree.network_sizes(hid):
        raise ValueError(f"net does not mirror this tree: sizes {sizes}, expected "
                         f"{tree.network_sizes(hid)} (nets.tree_network(tree, hid={hid}))")
    return hid


def group_preactivations(tree, net, x):
    """Pre-activations split by latent: a list over levels k = 0..L-1 of arrays
    (n, c**k, hid) (the groups of level k's latents, BFS order), float64 NumPy. NaN or inf
    pre-activations (a net with non-finite weights) are a ``ValueError``, never a correlation."""
    hid = hid_of(tree, net)
    gs = net.preactivations(x)                                     # g_1..g_L
    out = []
    for k in range(tree.depth):
        g = B.to_numpy(gs[tree.depth - k - 1])                     # layer l = L - k
        if not np.isfinite(g).all():
            raise ValueError(f"net gives NaN or infinite pre-activations at layer "
                             f"{tree.depth - k} (its weights or inputs are not finite, or too "
                             "large); the correlation is not defined")
        out.append(np.asarray(g, dtype=np.float64).reshape(len(g), tree.level_sizes[k], hid))
    return out


def _by_depth(tree, per_latent):
    return {int(d): float(per_latent[tree.latent_depths == d].mean())
            for d in range(tree.depth, 0, -1)}


def _eval_set(tree, n, rng, x, z, check):
    """``(x, z)`` checked, drawn (n samples) if not given; ``check(n)`` (the cost of n
    samples, ``budget.check_correlation``; returns n) runs before anything is drawn."""
    if (x is None) != (z is None):
        raise ValueError("give both x and z (an evaluation set from tree.sample) or neither")
    if x is None:
        x, z = tree.sample(check(B.check_int("n", n, 2)), rng)
    x, z = np.asarray(B.to_numpy(x)), np.asarray(B.to_numpy(z))
    if x.ndim != 2 or x.shape[1] != tree.n_leaves or z.shape != (len(x), tree.n_latents):
        raise ValueError(f"x must be (n, {tree.n_leaves}) and z (n, {tree.n_latents}); "
                         f"got {x.shape} and {z.shape}")
    if len(x) < 2:
        raise ValueError(f"x and z must have n >= 2 samples (a correlation), got n={len(x)}")
    x = tree.check_leaves(x)
    if z.dtype.kind not in "biuf" or not np.isin(z, (0, 1)).all():
        raise ValueError("z must hold binary values (0 or 1: the HLTM's latents are binary)")
    return x[:check(len(x))], z.astype(np.float64)


def normalized_correlation(tree, net, n=10000, rng=0, *, x=None, z=None, limits=None):
    """For each latent mu: ``max_u |Pearson(z_mu, g_u)|`` over the pre-activations of mu's
    ``hid`` units, on ``n`` samples from ``tree`` (or on the given evaluation set ``x, z``).

    Float64, two passes (``unit_correlations``, or its compiled twin for a "numba" net).
    Returns ``Correlation(per_latent (n_latents,) BFS, by_depth {depth: mean}, per_unit
    (n_latents, hid))``, every unit's |Pearson| with its latent, ``per_latent`` its row max.
    ``budget.correlation_cost`` is checked against ``limits`` before anything is drawn.
    """
    x, z = _eval_set(tree, n, rng, x, z, lambda m: check_correlation(
        tree.n_nodes, net.sizes, m, net.dtype, limits))
    corr = twin("unit_correlations", net.backend) or unit_correlations
    eps = np.finfo(net.dtype).eps
    s = tree.level_starts
    units = np.concatenate([corr(z[:, s[k]:s[k + 1]], g, eps)
                            for k, g in enumerate(group_preactivations(tree, net, x))])
    per = units.max(axis=1)                                        # (n_latents,)
    return Correlation(per, _by_depth(tree, per), units)


def correlation_ceiling(tree, n=10000, rng=0, *, x=None, z=None, limits=None):
    """The best normalized correlation any unit of mu's group could reach:
    ``|Pearson(z_mu, E[z_mu | leaves under mu])|`` (Cauchy-Schwarz: no function of the
    subtree's leaves correlates more), with the exact posterior of ``HLTM.posterior_mean``,
    estimated on ``n`` samples (or the given ``x, z``). Returns a ``Correlation``.
    """
    x, z = _eval_set(tree, n, rng, x, z, lambda m: check_correlation(
        tree.n_nodes, [tree.n_leaves, tree.n_latents], m, "float64", limits))
    post = tree.posterior_mean(x)                                      # (n, n_latents)
    per = best_unit_correlation(z, post[:, :, None])
    return Correlation(per, _by_depth(tree, per))


# ----------------------------------------------------------------------------- collapse
def effective_rank(Z):
    """Roy & Vetterli's effective rank of the embeddings ``Z`` (N, d), uncentred:

    ``exp(H(s / sum s))`` with ``s`` the singular values of ``Z`` and H the Shannon entropy.
    1 when every embedding lies on one line (e.g. all equal), d when the spectrum is flat.
    """
    s = np.linalg.svd(B.to_numpy(Z), compute_uv=False)
    if s.sum() <= 0:
        return 1.0
    q = s / s.sum()
    q = q[q > 0]
    return float(np.exp(-(q * np.log(q)).sum()))


def collapse_diagnostics(Z, Zt=None, normalize=True):
    """Collapse measures for online embeddings ``Z`` (N, d) (``Zt`` target embeddings, optional).

    - ``effective_rank``: ``effective_rank(Z)`` (1 = collapsed onto a line).
    - ``std``: mean over dimensions of the std over samples of ``Z_i/||Z_i||``, times sqrt(d):
      about 1 for directions spread over the sphere, 0 for a collapsed (constant) direction.
    - ``spectrum``: singular values of the centred ``Z`` over sqrt(N), descending.
    - ``collapsed_loss``: the per-pair loss a collapsed online branch would reach against the
      targets ``Zt`` (default ``Z``): the best constant prediction's loss, ``1 - ||mean_i
      n(Zt_i)||`` with normalisation, ``½ mean_i ||Zt_i - mean Zt||²`` without. (A network whose
      online and target branches both collapse reaches 0.)
    """
    Z = B.to_numpy(Z)
    Zt = Z if Zt is None else B.to_numpy(Zt)
    N, d = Z.shape
    U = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-300)
    Ut = Zt / np.maximum(np.linalg.norm(Zt, axis=1, keepdims=True), 1e-300)
    spec = np.linalg.svd(Z - Z.mean(0), compute_uv=False) / math.sqrt(N)
    if normalize:
        collapsed = 1.0 - float(np.linalg.norm(Ut.mean(0)))
    else:
        collapsed = 0.5 * float(((Zt - Zt.mean(0)) ** 2).sum(1).mean())
    return {"effective_rank": effective_rank(Z), "std": float(U.std(0).mean() * math.sqrt(d)),
            "spectrum": spec, "collapsed_loss": collapsed}


def eigen_alignment(F, Wp):
    """How well the eigenvectors of ``F`` (d, d) are eigenvectors of the predictor ``Wp`` (d, d).

    With ``F = U diag(s) U^T`` (descending s) and ``Ws = (Wp + Wp^T)/2``:
    - ``cosines[j] = |u_j . Wp u_j| / ||Wp u_j||`` (1 when u_j is an eigenvector of Wp),
    - ``offdiag = ||offdiag(U^T Ws U)||_F / ||Ws||_F`` (0 when Ws is diagonal in F's basis),
    - ``asym = ||Wp - Wp^T||_F / ||Wp||_F``,
    - ``s`` (F's eigenvalues) and ``p = diag(U^T Ws U)`` (the predictor's eigenvalues in that
      basis), ``p_directpred = sqrt(s/max s)`` for comparison.
    """
    F, Wp = B.to_numpy(F), B.to_numpy(Wp)
    s, U = np.linalg.eigh(0.5 * (F + F.T))
    s, U = s[::-1], U[:, ::-1]
    Ws = 0.5 * (Wp + Wp.T)
    M = U.T @ Ws @ U
    WU = Wp @ U
    cos = np.abs((U * WU).sum(0)) / np.maximum(np.linalg.norm(WU, axis=0), 1e-300)
    off = M - np.diag(np.diag(M))
    return {"cosines": cos, "offdiag": float(np.linalg.norm(off) / np.linalg.norm(Ws)),
            "asym": float(np.linalg.norm(Wp - Wp.T) / np.linalg.norm(Wp)),
            "s": s, "p": np.diag(M).copy(),
            "p_directpred": np.sqrt(np.maximum(s, 0) / max(s.max(), 1e-300))}
