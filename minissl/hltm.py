"""Hierarchical Latent Tree Model (HLTM): data, tree network, latent recovery.

The model (DESIGN.md §1, as in the paper's reference code ``luckmatters/ssl/hltm``)::

    a full ``c``-ary tree (c = num_children) of binary latents z in {0, 1};
    the root has tree depth L (= ``depth``), the leaves depth 0, the leaves are the input x;
    z_root ~ U{0, 1};  every edge mu -> nu has a polarity rho_nu, |rho_nu| ~ U[lo, hi] with a
    random sign, drawn once per tree;  P(z_nu = z_mu) = (1 + rho_nu) / 2.

Nodes are numbered breadth-first, root first; level k (k = 0 is the root) holds ``c**k``
nodes at tree depth ``L - k``, and the children of the j-th node of a level are the nodes
``j*c .. j*c + c - 1`` of the next level. "Latents" are the non-leaf nodes (levels 0..L-1,
``(c**L - 1)/(c - 1)`` of them); the ``c**L`` leaves are the visible input.

Augmentation: a positive pair shares the root (or, weaker, all latents of tree depth >=
``keep_depth``) and resamples everything below; a negative is an independent sample.

Tree network (``HLTM.network``): ``hid`` units per latent, one layer per tree level; the group
of latent mu (layer = mu's tree depth) sees only the groups of mu's children (the leaves
themselves at layer 1). The root group's pre-activation is the output. It is a masked
``ReLUNet`` with ``sizes = [c**L, hid*c**(L-1), ..., hid*c, hid]``.

Normalized correlation (``normalized_correlation``): for latent mu, ``max_u |corr(z_mu, g_u)|``
over the pre-activations ``g_u`` of mu's units; its ceiling (``correlation_ceiling``) is
``corr(z_mu, E[z_mu | leaves under mu])``, the largest |correlation| any function of what mu's
units can see can reach (Cauchy-Schwarz), computed exactly by an upward sum-product pass.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import backend as B

MAX_LEAVES = 1 << 16     # c**depth limit: the input width of the tree network
MAX_CHILDREN = 64


class Correlation(NamedTuple):
    """Per-latent values (breadth-first, root first) and their mean per tree depth."""
    per_latent: np.ndarray      # (n_latents,) float64
    by_depth: dict              # {tree depth: mean over that depth's latents}, depth L first


def _check_int(name, v, lo, hi=None):
    ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo
    if ok and hi is not None:
        ok = v <= hi
    if not ok:
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}, got {v!r}")
    return int(v)


def check_polarity(polarity):
    """Validate a polarity range ``(lo, hi)`` with ``0 <= lo <= hi <= 1``; return floats."""
    try:
        lo, hi = (float(p) for p in polarity)
    except (TypeError, ValueError):
        raise ValueError(f"polarity must be a pair (lo, hi) with 0 <= lo <= hi <= 1, "
                         f"got {polarity!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"polarity must be a pair (lo, hi) with 0 <= lo <= hi <= 1, "
                         f"got {polarity!r}")
    return lo, hi


# ----------------------------------------------------------------------------- correlation maths
def best_unit_correlation(z, g, dtype_eps=np.finfo(np.float64).eps):
    """``max_u |corr(z_j, g_{j,u})|`` per group j: the normalized correlation of each latent.

    ``z``: (n, G) latent values, ``g``: (n, G, hid) the pre-activations of each latent's group.
    Float64, two passes (centre, then multiply), so a nearly constant unit is not read as
    correlated by cancellation. A unit (or latent) whose spread is at rounding level of its
    values (``std <= 4 * dtype_eps * max|g|``, exactly constant included) counts as 0.
    Returns (G,) float64 in [0, 1].
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
    return np.minimum(corr, 1.0).max(axis=1)


# ----------------------------------------------------------------------------- the model
class HLTM:
    """A full tree of binary latents with per-edge polarities (see the module docstring).

    Parameters
    ----------
    depth : tree depth L >= 1 (root at depth L, leaves at depth 0).
    num_children : children per latent, c >= 1 (``c**depth <= 65536``).
    polarity : ``(lo, hi)``, ``0 <= lo <= hi <= 1``: the range of |rho|.
    seed : seeds the polarities (the only random part of the tree itself).
    keep_depth : the augmentation; positives share all latents of tree depth >= keep_depth
        (default ``depth``: only the root). ``1 <= keep_depth <= depth``.
    negatives : H, negatives per anchor in ``triples``.

    Data-source protocol (``minissl.data``): ``triples(n, rng)``, ``views(n, m, rng)``, ``dim``.
    """

    def __init__(self, depth=5, num_children=2, polarity=(0.7, 1.0), seed=0, *,
                 keep_depth=None, negatives=1):
        self.depth = _check_int("depth", depth, 1)
        self.num_children = _check_int("num_children", num_children, 1, MAX_CHILDREN)
        c, L = self.num_children, self.depth
        if c ** L > MAX_LEAVES:
            raise ValueError(f"num_children**depth (the number of leaves) must be <= "
                             f"{MAX_LEAVES}, got {c}**{L} = {c ** L}")
        self.polarity = check_polarity(polarity)
        self.keep_depth = self._check_keep(keep_depth)
        self.negatives = _check_int("negatives", negatives, 1)
        self.seed = seed
        self.level_sizes = [c ** k for k in range(L + 1)]           # level k: c**k nodes
        self.level_starts = np.concatenate([[0], np.cumsum(self.level_sizes)]).astype(int)
        self.n_nodes = int(self.level_starts[-1])
        self.n_leaves = self.level_sizes[-1]
        self.n_latents = self.n_nodes - self.n_leaves
        # tree depth of every latent, breadth-first (root first)
        self.latent_depths = np.repeat(np.arange(L, 0, -1), self.level_sizes[:-1])
        # per-edge polarity rho[i] of the edge into node i (rho[0] = nan: the root has none)
        g = B.rng(seed)
        lo, hi = self.polarity
        mag = g.uniform(lo, hi, self.n_nodes - 1)
        sign = np.where(g.integers(0, 2, self.n_nodes - 1) == 0, 1.0, -1.0)
        self.rho = np.concatenate([[np.nan], mag * sign])
        # per level k >= 1: flip probability (1 - rho)/2 of each node's edge
        self._flip = [None] + [(1.0 - self.level_rho(k)) / 2 for k in range(1, L + 1)]

    # -- layout helpers
    def _check_keep(self, keep_depth):
        if keep_depth is None:
            return self.depth
        return _check_int("keep_depth", keep_depth, 1, self.depth)

    def level_rho(self, k):
        """Polarities of the edges into level k's nodes, (c**k,)."""
        s = self.level_starts
        return self.rho[s[k]:s[k + 1]]

    def level_of_depth(self, d):
        """Level index k (0 = root) of tree depth d."""
        return self.depth - d

    @property
    def dim(self):
        """Input width n_0: the number of leaves."""
        return self.n_leaves

    def parents(self):
        """BFS index of each node's parent, (n_nodes,); -1 for the root."""
        i = np.arange(self.n_nodes)
        c = self.num_children
        if c == 1:
            return i - 1
        return np.where(i == 0, -1, (i - 1) // c)

    # -- sampling (vectorised over samples; one loop over levels)
    def _grow(self, levels, rng):
        """Complete a list of top levels (bool arrays (n, c**k)) down to the leaves."""
        c = self.num_children
        n = levels[0].shape[0]
        for k in range(len(levels), self.depth + 1):
            parent = np.repeat(levels[-1], c, axis=1)                 # (n, c**k)
            flip = rng.random((n, self.level_sizes[k])) < self._flip[k]
            levels.append(parent ^ flip)
        return levels

    def _sample_levels(self, n, rng):
        root = rng.integers(0, 2, (n, 1)).astype(bool)
        return self._grow([root], rng)

    @staticmethod
    def _split(levels):
        x = levels[-1].astype(np.float64)                             # (n, n_leaves)
        z = np.concatenate(levels[:-1], axis=1).astype(np.float64)    # (n, n_latents)
        return x, z

    def _check_n(self, n, name="n"):
        return _check_int(name, n, 1)

    def sample(self, n, rng=None):
        """``(x, z)``: leaves ``x`` (n, n_leaves) and latents ``z`` (n, n_latents, BFS, root
        first), both float64 with values in {0, 1}."""
        n = self._check_n(n)
        return self._split(self._sample_levels(n, B.rng(rng)))

    def pairs(self, n, rng=None, keep_depth=None, return_all_latents=False):
        """``(x, x_pos, x_neg, z)``, each x (n, n_leaves), ``z`` the anchor's latents
        (n, n_latents); with ``return_all_latents`` also ``z_pos, z_neg`` (what the
        augmentation kept and what it resampled).

        The positive shares the anchor's latents of tree depth >= ``keep_depth`` (default:
        the tree's ``keep_depth``, normally only the root) and resamples all below; the
        negative is an independent sample.
        """
        n = self._check_n(n)
        keep = self.keep_depth if keep_depth is None else self._check_keep(keep_depth)
        rng = B.rng(rng)
        levels = self._sample_levels(n, rng)
        shared = levels[:self.depth - keep + 1]                       # levels 0..L-keep
        x_pos, z_pos = self._split(self._grow(list(shared), rng))
        x_neg, z_neg = self._split(self._sample_levels(n, rng))
        x, z = self._split(levels)
        if return_all_latents:
            return x, x_pos, x_neg, z, z_pos, z_neg
        return x, x_pos, x_neg, z

    def views(self, n, m, rng=None):
        """(n, m, n_leaves): m augmented views (shared latents of depth >= keep_depth, all
        below resampled) of each of n samples."""
        n, m = self._check_n(n), self._check_n(m, "m")
        rng = B.rng(rng)
        top = self._sample_levels(n, rng)[:self.depth - self.keep_depth + 1]
        top = [np.repeat(t, m, axis=0) for t in top]                   # (n*m, c**k)
        leaves = self._grow(top, rng)[-1]
        return leaves.astype(np.float64).reshape(n, m, self.n_leaves)

    def triples(self, n, rng=None):
        """``(x, x_pos, x_neg)``: (n, n_0), (n, n_0), (n, H, n_0) with H = ``negatives``."""
        n = self._check_n(n)
        rng = B.rng(rng)
        v = self.views(n, 2, rng)                                      # (n, 2, n_0)
        neg = self._sample_levels(n * self.negatives, rng)[-1]
        neg = neg.astype(np.float64).reshape(n, self.negatives, self.n_leaves)
        return v[:, 0], v[:, 1], neg

    # -- exact posterior (upward sum-product)
    def posterior_mean(self, x):
        """``E[z_mu | leaves under mu]`` for every latent, (n, n_latents), BFS order.

        Upward pass on spins ``s = 2z - 1``. With ``u_nu = E[s_nu | leaves under nu]`` (a leaf:
        ``u = 2x - 1``), the message of child nu to its parent is ``(1 + rho_nu s u_nu)/2`` up
        to a constant, so ``P(s_mu = ±1 | leaves under mu) ∝ prod_nu (1 ± rho_nu u_nu)``
        (every latent's prior is uniform) and ``u_mu = (A - B)/(A + B)`` with
        ``A = prod (1 + rho u)``, ``B = prod (1 - rho u)``. Returns ``(1 + u)/2``.
        """
        x = np.asarray(B.to_numpy(x), dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_leaves:
            raise ValueError(f"x must have shape (n, {self.n_leaves}), got {x.shape}")
        c = self.num_children
        u = 2.0 * x - 1.0                                              # (n, c**L)
        out = [None] * self.depth
        for k in range(self.depth - 1, -1, -1):
            t = (self.level_rho(k + 1) * u).reshape(len(x), self.level_sizes[k], c)
            A = np.prod(1.0 + t, axis=2)                               # (n, c**k)
            Bm = np.prod(1.0 - t, axis=2)
            s = A + Bm
            u = np.where(s > 0, (A - Bm) / np.where(s > 0, s, 1.0), 0.0)
            out[k] = u
        return (1.0 + np.concatenate(out, axis=1)) / 2.0

    # -- the tree network
    def network_sizes(self, hid):
        """``[c**L, hid*c**(L-1), ..., hid]``: one layer per tree level."""
        c, L = self.num_children, self.depth
        return [self.n_leaves] + [hid * c ** (L - l) for l in range(1, L + 1)]

    def network_masks(self, hid):
        """0/1 masks, layer l of shape (hid*c**(L-l), n_{l-1}): block-diagonal,
        ``kron(I_groups ⊗ 1_(1×c), 1_(hid×hid_in))`` with hid_in = 1 at layer 1 (the leaves)."""
        c, L = self.num_children, self.depth
        masks = []
        for l in range(1, L + 1):
            groups = c ** (L - l)
            hid_in = 1 if l == 1 else hid
            block = np.kron(np.eye(groups), np.ones((1, c)))          # (groups, groups*c)
            masks.append(np.kron(block, np.ones((hid, hid_in))))      # (groups*hid, groups*c*hid_in)
        return masks

    def network(self, hid=10, **net_options):
        """A masked ``ReLUNet`` mirroring the tree: ``hid`` units per latent, each group
        connected only to its children's groups; output = the root group's pre-activation.

        ``net_options`` go to ``ReLUNet`` (bias, normalize, norm_eps, backend, dtype, seed,
        init_scale).
        """
        from .nets import ReLUNet
        hid = _check_int("hid", hid, 1, 4096)
        return ReLUNet(self.network_sizes(hid), masks=self.network_masks(hid), **net_options)

    def hid_of(self, net):
        """The ``hid`` of a tree network built for this tree (checks the sizes)."""
        sizes = list(net.sizes)
        hid = sizes[-1]
        if sizes != self.network_sizes(hid):
            raise ValueError(f"net does not mirror this tree: sizes {sizes}, expected "
                             f"{self.network_sizes(hid)} (HLTM.network(hid={hid}))")
        return hid

    def group_preactivations(self, net, x):
        """Pre-activations split by latent: a list over levels k = 0..L-1 of arrays
        (n, c**k, hid) (the groups of level k's latents, BFS order), float64 NumPy."""
        hid = self.hid_of(net)
        gs = net.preactivations(x)                                     # g_1..g_L
        out = []
        for k in range(self.depth):
            g = B.to_numpy(gs[self.depth - k - 1])                     # layer l = L - k
            out.append(np.asarray(g, dtype=np.float64).reshape(len(g), self.level_sizes[k], hid))
        return out

    def __repr__(self):
        return (f"HLTM(depth={self.depth}, num_children={self.num_children}, "
                f"polarity={self.polarity}, seed={self.seed!r}, keep_depth={self.keep_depth}, "
                f"negatives={self.negatives})")


# ----------------------------------------------------------------------------- metrics
def _by_depth(tree, per_latent):
    return {int(d): float(per_latent[tree.latent_depths == d].mean())
            for d in range(tree.depth, 0, -1)}


def _eval_set(tree, n, rng, x, z):
    if (x is None) != (z is None):
        raise ValueError("give both x and z (an evaluation set from tree.sample) or neither")
    if x is None:
        x, z = tree.sample(_check_int("n", n, 2), rng)
    x = np.asarray(B.to_numpy(x), dtype=np.float64)
    z = np.asarray(B.to_numpy(z), dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != tree.n_leaves or z.shape != (len(x), tree.n_latents):
        raise ValueError(f"x must be (n, {tree.n_leaves}) and z (n, {tree.n_latents}); "
                         f"got {x.shape} and {z.shape}")
    return x, z


def normalized_correlation(tree, net, n=10000, rng=0, *, x=None, z=None):
    """For each latent mu: ``max_u |Pearson(z_mu, g_u)|`` over the pre-activations of mu's
    ``hid`` units, on ``n`` samples from ``tree`` (or on the given evaluation set ``x, z``).

    Float64, two passes (``best_unit_correlation``). Returns ``Correlation(per_latent
    (n_latents,) BFS, by_depth {depth: mean})``.
    """
    x, z = _eval_set(tree, n, rng, x, z)
    per = []
    corr = best_unit_correlation
    if getattr(net, "backend", "numpy") == "numba":       # compiled twin (kernels/hltm.py)
        from .kernels.hltm import best_unit_correlation as corr
    for k, g in enumerate(tree.group_preactivations(net, x)):
        s = tree.level_starts
        eps = np.finfo(net.dtype).eps
        per.append(corr(z[:, s[k]:s[k + 1]], g, eps))
    per = np.concatenate(per)
    return Correlation(per, _by_depth(tree, per))


def correlation_ceiling(tree, n=10000, rng=0, *, x=None, z=None):
    """The best normalized correlation any unit of mu's group could reach:
    ``|Pearson(z_mu, E[z_mu | leaves under mu])|`` (Cauchy-Schwarz: no function of the
    subtree's leaves correlates more), with the exact posterior of ``HLTM.posterior_mean``,
    estimated on ``n`` samples (or the given ``x, z``). Returns a ``Correlation``.
    """
    x, z = _eval_set(tree, n, rng, x, z)
    post = tree.posterior_mean(x)                                      # (n, n_latents)
    per = best_unit_correlation(z, post[:, :, None])
    return Correlation(per, _by_depth(tree, per))
