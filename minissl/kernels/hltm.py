"""Numba twins of the HLTM correlation statistics (``metrics.unit_correlations`` and its row
max ``metrics.best_unit_correlation``) and of the HLTM sampler (``HLTM.triples``, same law,
other random numbers: bit-sliced, see below).

For every latent group j (G of them) with ``hid`` units, over n samples (float64, two passes
like the twin: centre first, then multiply, so a nearly constant unit is not read as
correlated by cancellation):

    cov_{j,u}  = mean_n (z_nj - zbar_j)(g_nju - gbar_ju)
    corr_ju    = |cov_{j,u}| / sqrt(var z_j  var g_ju)              in [0, 1]  (per unit)
    corr_j     = max_u corr_ju                                       (per latent)

with a unit (or latent) whose standard deviation is at rounding level of its values
(``std <= 4 eps max|.|``) counted as 0, exactly as the NumPy twin. Two compiled sweeps over the samples in memory order, no
(n, G, hid) temporaries.

The first call compiles (``cache=True`` keeps the machine code for later processes).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .compiling import announce_compiles, take

announce_compiles()             # cache location, and a notice when compiling (cold cache)

_EPS64 = float(np.finfo(np.float64).eps)


@njit(cache=True, nogil=True)
def _unit_correlations(z, g, eps_g, eps_z, zs, gs, out):
    """``out`` (G, hid) from zeroed sums ``zs`` (3, G) and ``gs`` (4, G, hid) (allocated by
    the caller: nothing to compile for them here)."""
    n, G = z.shape
    hid = g.shape[2]
    zbar, zmax, var_z = zs[0], zs[1], zs[2]
    gbar, gmax, cov, var_g = gs[0], gs[1], gs[2], gs[3]
    for s in range(n):                                       # pass 1: means and max |.|
        for j in range(G):
            v = z[s, j]
            zbar[j] += v
            zmax[j] = max(zmax[j], abs(v))
            for u in range(hid):
                w = g[s, j, u]
                gbar[j, u] += w
                gmax[j, u] = max(gmax[j, u], abs(w))
    for j in range(G):                                       # explicit loops: no array
        zbar[j] /= n                                         # expressions to compile
        for u in range(hid):
            gbar[j, u] /= n
    for s in range(n):                                       # pass 2: centred products
        for j in range(G):
            zc = z[s, j] - zbar[j]
            var_z[j] += zc * zc
            for u in range(hid):
                gc = g[s, j, u] - gbar[j, u]
                cov[j, u] += zc * gc
                var_g[j, u] += gc * gc
    for j in range(G):
        vz = var_z[j] / n
        if not math.sqrt(vz) > 4 * eps_z * zmax[j]:
            continue
        for u in range(hid):
            vg = var_g[j, u] / n
            if math.sqrt(vg) > 4 * eps_g * gmax[j, u]:
                out[j, u] = min(abs(cov[j, u] / n) / math.sqrt(vz * vg), 1.0)
    return out


# ``_unit_correlations`` as a job of ``compiling.Sharing`` (compiled ahead of a run's evaluation)
CORRELATION = (_unit_correlations, "A2 A3 f f A2 A3 A2 -> A2", "float64", ())


def unit_correlations(z, g, dtype_eps=_EPS64):
    """Twin of ``metrics.unit_correlations``: ``|corr(z_j, g_{j,u})|`` per unit u of group j.

    ``z``: (n, G), ``g``: (n, G, hid); computed in float64. Returns (G, hid) float64 in [0, 1].
    """
    z = np.ascontiguousarray(z, dtype=np.float64)
    g = np.ascontiguousarray(g, dtype=np.float64)
    if z.ndim != 2 or g.ndim != 3 or g.shape[:2] != z.shape:
        raise ValueError(f"z must be (n, G) and g (n, G, hid) with the same n, G; got "
                         f"{z.shape} and {g.shape}")
    (n, G), hid = z.shape, g.shape[2]
    out = np.zeros((G, hid))
    take(_unit_correlations)                # compiled ahead by a helper process? (CORRELATION)
    _unit_correlations(z, g, float(dtype_eps), _EPS64, np.zeros((3, G)), np.zeros((4, G, hid)),
                       out)
    return out


def best_unit_correlation(z, g, dtype_eps=_EPS64):
    """Twin of ``metrics.best_unit_correlation``: ``max_u |corr(z_j, g_{j,u})|`` per group j,
    the row max of ``unit_correlations``. Returns (G,) float64 in [0, 1]."""
    return unit_correlations(z, g, dtype_eps).max(axis=1)


# ----------------------------------------------------------------------------- the sampler
# Twin of ``HLTM.triples`` with the same law and other random numbers. Bit-sliced: one uint64
# word holds one node of 64 samples (bit b of word w is sample 64 w + b), so a tree level is a
# few word operations for 64 samples at once. An edge flips a lane with probability
# ``thr / 2**32``, ``thr = round((1 - rho)/2 * 2**32)`` (the flip probability to within 2**-32):
# the lane's 32-bit uniform U is compared with ``thr`` bit by bit from the top, one random word
# per bit for all 64 lanes, until every lane is decided (about 7 words per 64 flips instead of
# 32). The random words come from xoshiro256** (Blackman & Vigna) seeded by four raw 64-bit
# words of the caller's NumPy generator per call; the root is a uniform random bit. Nodes are
# breadth-first (parents before children), ``tree.parents()``.
@njit(cache=True, nogil=True, no_cfunc_wrapper=True)
def sample_bits(seed, n_top, parent, thr, z, out):
    """One batch of triples, bit-sliced: ``out[v, j, w]`` (2 + H, n_leaves, n_words) uint64
    holds leaf j of view v (0 anchor, 1 positive, 2 + k negative k) of samples 64 w .. 64 w + 63.
    ``seed`` (4,) uint64 seeds the generator (an all-zero seed is replaced by 1);
    ``z`` (n_nodes, n_words) uint64 is scratch. The anchor and the positive share nodes
    ``0 .. n_top-1``; every negative is an independent tree. One function, the generator's
    state in four local words (xoshiro256**: ``next`` below, written out twice)."""
    s0, s1, s2, s3 = seed[0], seed[1], seed[2], seed[3]
    if s0 == 0 and s1 == 0 and s2 == 0 and s3 == 0:
        s0 = np.uint64(1)
    n_nodes, nw = z.shape
    first = n_nodes - out.shape[1]
    all1, two32, one = ~np.uint64(0), np.uint64(1 << 32), np.uint64(1)
    r7, r57, r45, r19 = np.uint64(7), np.uint64(57), np.uint64(45), np.uint64(19)
    for v in range(out.shape[0]):
        start = n_top
        if v != 1:                                           # a new tree (the positive keeps
            start = 1                                        # the anchor's top levels)
            for w in range(nw):
                x = s1 * np.uint64(5)
                z[0, w] = ((x << r7) | (x >> r57)) * np.uint64(9)
                t = s1 << np.uint64(17)
                s2 ^= s0
                s3 ^= s1
                s1 ^= s2
                s0 ^= s3
                s2 ^= t
                s3 = (s3 << r45) | (s3 >> r19)
        for i in range(start, n_nodes):
            p = thr[i]
            for w in range(nw):
                res = np.uint64(0)                           # lanes that flip: U < p, U's
                if p >= two32:                               # bits compared from the top
                    res = all1
                elif p > 0:
                    eq = all1                                # lanes with U == p so far
                    for bit in range(31, -1, -1):
                        x = s1 * np.uint64(5)
                        r = ((x << r7) | (x >> r57)) * np.uint64(9)
                        t = s1 << np.uint64(17)
                        s2 ^= s0
                        s3 ^= s1
                        s1 ^= s2
                        s0 ^= s3
                        s2 ^= t
                        s3 = (s3 << r45) | (s3 >> r19)
                        m = np.uint64(0) - ((p >> np.uint64(bit)) & one)    # p's bit, all lanes
                        res |= eq & ~r & m                   # U's bit 0 < p's bit 1
                        eq &= ~(r ^ m)
                        if eq == 0:
                            break
                z[i, w] = z[parent[i], w] ^ res
        for j in range(out.shape[1]):
            for w in range(nw):
                out[v, j, w] = z[first + j, w]


@njit(cache=True, nogil=True, no_cfunc_wrapper=True)
def unpack_bits(bits, n, dst, col0, stride):
    """``dst[j, col0 + a * stride] = bit a of bits[j]`` for samples a < n, as 0.0 / 1.0."""
    for j in range(bits.shape[0]):
        for a in range(n):
            dst[j, col0 + a * stride] = (bits[j, a >> 6] >> np.uint64(a & 63)) & np.uint64(1)


def flip_thresholds(tree):
    """``thr[i] = round((1 - rho_i)/2 * 2**32)`` per node, as uint64 (2**32 when rho = -1:
    always flips); the root's is unused. A uniform 32-bit ``u`` flips the edge iff u < thr."""
    p = (1.0 - np.nan_to_num(tree.rho, nan=1.0)) / 2.0
    return np.minimum(np.round(p * 2.0 ** 32), 2.0 ** 32).astype(np.uint64)


TREE_ATTRIBUTES = ("dim", "depth", "keep_depth", "level_starts", "n_leaves", "n_nodes",
                   "negatives", "parents", "rho")


def is_tree(source):
    """Whether ``source`` is an HLTM to the compiled sampler: it has every attribute the
    ``Sampler`` reads (``TREE_ATTRIBUTES``; duck-typed, the kernels import no core module)."""
    return all(hasattr(source, a) for a in TREE_ATTRIBUTES)


class Sampler:
    """The compiled sampler of one tree: its structure (``n_top`` shared nodes, parents,
    thresholds) and scratch, built once. ``seeds(rng, k)`` draws the (k, 4) seeds of k batches
    from a NumPy generator; ``bits(seed, n)`` makes one batch of n triples, bit-sliced (see
    ``sample_bits``)."""

    def __init__(self, tree):
        self.H, self.n_leaves = tree.negatives, tree.n_leaves
        self.n_top = int(tree.level_starts[tree.depth - tree.keep_depth + 1])  # shared nodes
        self.parent = np.maximum(tree.parents(), 0).astype(np.int64)
        self.thr = flip_thresholds(tree)
        self.n_nodes = tree.n_nodes

    @staticmethod
    def seeds(rng, k):
        return rng.bit_generator.random_raw(4 * k).astype(np.uint64).reshape(k, 4)

    def buffers(self, n):
        nw = -(-n // 64)
        return (np.empty((self.n_nodes, nw), np.uint64),
                np.empty((2 + self.H, self.n_leaves, nw), np.uint64))

    def bits(self, seed, n):
        z, out = self.buffers(n)
        sample_bits(seed, self.n_top, self.parent, self.thr, z, out)
        return out


def triples(tree, n, rng):
    """Twin of ``HLTM.triples(n, rng)``: ``(x, x_pos, x_neg)``, (n, n_0), (n, n_0),
    (n, H, n_0) float64 in {0, 1}, with the same law (anchor and positive share the latents
    of depth >= ``keep_depth``, the negatives are independent samples) and other random
    numbers than the NumPy twin: four raw words of ``rng`` (advanced) seed the bit-sliced
    sampler (see above). ``n`` validated by the caller."""
    sam = Sampler(tree)
    with np.errstate(over="ignore"):                         # wrapping uint64 arithmetic
        out = sam.bits(Sampler.seeds(rng, 1)[0], n)
    H, n0 = sam.H, sam.n_leaves
    xT = np.empty((2 + H, n0, n))                            # feature-major, then transposed
    for v in range(2 + H):
        unpack_bits(out[v], n, xT[v], 0, 1)
    x_neg = np.ascontiguousarray(xT[2:].transpose(2, 0, 1))
    return np.ascontiguousarray(xT[0].T), np.ascontiguousarray(xT[1].T), x_neg
