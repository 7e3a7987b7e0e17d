"""Hierarchical Latent Tree Model (HLTM): data, tree network, latent recovery.

The model (docs/design.md, as in the paper's reference code ``luckmatters/ssl/hltm``)::

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

Tree network (``network_sizes``, ``network_masks``; built by ``nets.tree_network``): ``hid``
units per latent, one layer per tree level; the group of latent mu (layer = mu's tree depth)
sees only the groups of mu's children (the leaves themselves at layer 1). The root group's
pre-activation is the output: ``sizes = [c**L, hid*c**(L-1), ..., hid*c, hid]``.

Exact posterior (``posterior_mean``): ``E[z_mu | leaves under mu]`` by an upward sum-product
pass; ``metrics.correlation_ceiling`` turns it into the best correlation any unit can reach.
"""
from __future__ import annotations

import numpy as np

from . import backend as B
from .budget import SAMPLE_BYTES, check_memory

MAX_LEAVES = 1 << 16     # c**depth limit: the input width of the tree network
MAX_CHILDREN = 64
MAX_DEPTH = 64           # one network layer per tree level (nets.MAX_LAYERS)
MAX_HID = 4096           # units per latent of the tree network
MAX_NEGATIVES = 1 << 16  # H, negatives per anchor


def check_polarity(polarity):
    """Validate a polarity range ``(lo, hi)`` with ``0 <= lo <= hi <= 1``; return floats."""
    try:
        lo, hi = (B.check_real("polarity", p, 0, 1) for p in polarity)
    except (TypeError, ValueError):
        raise ValueError(f"polarity must be a pair (lo, hi) with 0 <= lo <= hi <= 1, "
                         f"got {B.shown(polarity)}") from None
    if not lo <= hi:
        raise ValueError(f"polarity must be a pair (lo, hi) with 0 <= lo <= hi <= 1, "
                         f"got {B.shown(polarity)}")
    return lo, hi


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
    label_latent : the latent (BFS index, 0 = the root) whose value ``labelled`` returns as
        the label; its tree depth must be >= keep_depth, so both views share it.
    Every draw checks the memory of its samples (n x nodes) against the environment's
    limits first (``budget.check_memory``, ``ResourceLimitError``).

    Data-source protocol (``minissl.data``): ``triples(n, rng)``, ``views(n, m, rng)``, ``dim``,
    and ``labelled(n, rng)`` for SupCon.
    """

    def __init__(self, depth=5, num_children=2, polarity=(0.7, 1.0), seed=0, *,
                 keep_depth=None, negatives=1, label_latent=0):
        self.depth = B.check_int("depth", depth, 1, MAX_DEPTH)
        self.num_children = B.check_int("num_children", num_children, 1, MAX_CHILDREN)
        c, L = self.num_children, self.depth
        if c ** L > MAX_LEAVES:
            raise ValueError(f"num_children**depth (the number of leaves) must be <= "
                             f"{MAX_LEAVES}, got {c}**{L} = {c ** L}")
        self.polarity = check_polarity(polarity)
        self.keep_depth = self._check_keep(keep_depth)
        self.negatives = B.check_int("negatives", negatives, 1, MAX_NEGATIVES)
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
        self.label_latent = self.check_label_latent(label_latent)

    def check_label_latent(self, label_latent):
        """A latent index whose tree depth is >= keep_depth (the views share it)."""
        j = B.check_int("label_latent", label_latent, 0, self.n_latents - 1)
        if self.latent_depths[j] < self.keep_depth:
            raise ValueError(f"label_latent must be a latent of tree depth >= keep_depth="
                             f"{self.keep_depth} (so that both views share it), got {j} at "
                             f"depth {self.latent_depths[j]}; lower keep_depth")
        return j

    # -- layout helpers
    def _check_keep(self, keep_depth):
        if keep_depth is None:
            return self.depth
        return B.check_int("keep_depth", keep_depth, 1, self.depth)

    def level_rho(self, k):
        """Polarities of the edges into level k's nodes, (c**k,)."""
        s = self.level_starts
        return self.rho[s[k]:s[k + 1]]

    def by_level(self, per_latent):
        """A per-latent array (n_latents, ...) (BFS) split into levels k = 0..L-1 (root first),
        level k of length c**k."""
        s = self.level_starts
        return [per_latent[s[k]:s[k + 1]] for k in range(self.depth)]

    @property
    def polarity_by_level(self):
        """The edge polarities into levels k = 1..L: a list of (c**k,) arrays."""
        return [self.level_rho(k) for k in range(1, self.depth + 1)]

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

    def check_n(self, n, name="n", rows=1):
        """``n`` as an int >= 1 (a sample count); the memory of ``n * rows`` samples (every
        node, ``SAMPLE_BYTES`` each) is checked against the limits."""
        n = B.check_int(name, n, 1)
        check_memory(n * rows * self.n_nodes * SAMPLE_BYTES, f"{n * rows:,} samples of "
                     f"{self.n_nodes:,} nodes", f"{name}={n}" + (f" (x {rows})" if rows > 1
                                                                  else ""))
        return n

    def sample(self, n, rng=None):
        """``(x, z)``: leaves ``x`` (n, n_leaves) and latents ``z`` (n, n_latents, BFS, root
        first), both float64 with values in {0, 1}."""
        n = self.check_n(n)
        return self._split(self._sample_levels(n, B.rng(rng)))

    def pairs(self, n, rng=None, keep_depth=None, return_all_latents=False):
        """``(x, x_pos, x_neg, z)``, each x (n, n_leaves), ``z`` the anchor's latents
        (n, n_latents); with ``return_all_latents`` also ``z_pos, z_neg`` (what the
        augmentation kept and what it resampled).

        The positive shares the anchor's latents of tree depth >= ``keep_depth`` (default:
        the tree's ``keep_depth``, normally only the root) and resamples all below; the
        negative is an independent sample.
        """
        n = self.check_n(n, rows=3)
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
        m = B.check_int("m", m, 1)
        n = self.check_n(n, rows=m)
        rng = B.rng(rng)
        top = self._sample_levels(n, rng)[:self.depth - self.keep_depth + 1]
        top = [np.repeat(t, m, axis=0) for t in top]                   # (n*m, c**k)
        leaves = self._grow(top, rng)[-1]
        return leaves.astype(np.float64).reshape(n, m, self.n_leaves)

    def triples(self, n, rng=None):
        """``(x, x_pos, x_neg)``: (n, n_0), (n, n_0), (n, H, n_0) with H = ``negatives``."""
        n = self.check_n(n, rows=2 + self.negatives)
        rng = B.rng(rng)
        v = self.views(n, 2, rng)                                      # (n, 2, n_0)
        neg = self._sample_levels(n * self.negatives, rng)[-1]
        neg = neg.astype(np.float64).reshape(n, self.negatives, self.n_leaves)
        return v[:, 0], v[:, 1], neg

    def labelled(self, n, rng=None):
        """``(x, x_pos, labels)``: two views of n samples (shared latents of depth >=
        keep_depth, as ``views``) and each sample's value of latent ``label_latent`` (n,) int,
        the label SupCon's positives share."""
        n = self.check_n(n, rows=2)
        rng = B.rng(rng)
        levels = self._sample_levels(n, rng)
        x_pos, _ = self._split(self._grow(list(levels[:self.depth - self.keep_depth + 1]), rng))
        x, z = self._split(levels)
        return x, x_pos, z[:, self.label_latent].astype(np.int64)

    # -- exact posterior (upward sum-product)
    def posterior_mean(self, x):
        """``E[z_mu | leaves under mu]`` for every latent, (n, n_latents), BFS order.

        Upward pass on spins ``s = 2z - 1``. With ``u_nu = E[s_nu | leaves under nu]`` (a leaf:
        ``u = 2x - 1``), the message of child nu to its parent is ``(1 + rho_nu s u_nu)/2`` up
        to a constant, so ``P(s_mu = ±1 | leaves under mu) ∝ prod_nu (1 ± rho_nu u_nu)``
        (every latent's prior is uniform) and ``u_mu = (A - B)/(A + B)`` with
        ``A = prod (1 + rho u)``, ``B = prod (1 - rho u)``. Returns ``(1 + u)/2``.
        """
        x = self.check_leaves(x)
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

    def check_leaves(self, x, name="x"):
        """``x`` as a float64 (n, n_leaves) array of 0s and 1s (leaf values), else ValueError."""
        x = np.asarray(B.to_numpy(x))
        if x.ndim != 2 or x.shape[1] != self.n_leaves:
            raise ValueError(f"{name} must have shape (n, {self.n_leaves}), got {x.shape}")
        if x.dtype.kind not in "biuf" or not np.isin(x, (0, 1)).all():
            raise ValueError(f"{name} must hold binary values (0 or 1: the HLTM's leaves are "
                             f"binary latents)")
        return x.astype(np.float64)

    # -- the tree network
    def network_sizes(self, hid):
        """``[c**L, hid*c**(L-1), ..., hid]``: one layer per tree level."""
        hid = B.check_int("hid", hid, 1, MAX_HID)
        c, L = self.num_children, self.depth
        return [self.n_leaves] + [hid * c ** (L - l) for l in range(1, L + 1)]

    def network_masks(self, hid):
        """0/1 masks, layer l of shape (hid*c**(L-l), n_{l-1}): block-diagonal,
        ``kron(I_groups ⊗ 1_(1×c), 1_(hid×hid_in))`` with hid_in = 1 at layer 1 (the leaves)."""
        hid = B.check_int("hid", hid, 1, MAX_HID)
        c, L = self.num_children, self.depth
        sizes = self.network_sizes(hid)
        check_memory(2 * 8 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])),
                     "the tree network's masks", f"depth={L}, num_children={c}, hid={hid}")
        masks = []
        for l in range(1, L + 1):
            groups = c ** (L - l)
            hid_in = 1 if l == 1 else hid
            block = np.kron(np.eye(groups), np.ones((1, c)))          # (groups, groups*c)
            masks.append(np.kron(block, np.ones((hid, hid_in))))      # (groups*hid, groups*c*hid_in)
        return masks

    def __repr__(self):
        return (f"HLTM(depth={self.depth}, num_children={self.num_children}, "
                f"polarity={self.polarity}, seed={self.seed!r}, keep_depth={self.keep_depth}, "
                f"negatives={self.negatives})")
