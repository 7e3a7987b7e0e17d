"""The compiled HLTM epoch: sampling and SGD steps of a tree network in one call.

Twin of ``train.train``'s steps for a tree network (``nets.tree_network``: plain, or with
biases and output normalisation as in the reference preset) on an HLTM source with given
negatives, with batches from the compiled sampler (``kernels.hltm.sample_bits``): one call
runs k steps, each

    sample a batch (bit-sliced; seeded by four raw words of the run's generator per step)
    forward of the N (2 + H) views, distances, loss weights (``mlp.loss_weights``), chain
    backward through the layers, SGD update (momentum, weight decay) in place

with no Python between steps. It equals, to rounding, the per-step path with the same
batches: ``kernels.hltm.triples`` + ``train.loss_and_grads`` + ``optim.SGD`` (tested).

Layout. A tree network is a stack of *grouped* layers: layer l has ``G_l`` groups of ``h``
units and group j reads only the ``K_l`` inputs ``j K_l .. (j+1) K_l - 1`` of the layer below
(contiguous, breadth-first numbering: ``K_1 = c``, ``K_l = c h`` above). Its live weights are
the diagonal blocks of the dense masked ``W_l`` (n_l, n_{l-1}), read and updated in place:

    g_l[j h + o, :] = b_l[j h + o] + sum_k W_l[j h + o, j K_l + k] f_{l-1}[j K_l + k, :]

Activations are feature-major, ``(n_l, V)`` with V = N (2 + H) columns [anchors | positives |
negatives, anchor-major]: the innermost loops run over the views, contiguous, and vectorise.
The backward writes each layer's delta over that layer's activations (a group's input rows
are read by that group only, so once its weight gradient is taken they are free):

    dW_l[j h + o, k] = sum_n delta_l[j h + o, n] f_{l-1}[j K_l + k, n]       (compact (n_l, K_l))
    db_l[r]          = sum_n delta_l[r, n]
    delta_{l-1}[j K_l + k, n] = [f_{l-1} > 0] sum_o W_l[j h + o, j K_l + k] delta_l[j h + o, n]

The last is the forward's grouped product (``combine``) with the transposed live weights
``WT[j K + k, o] = W[j h + o, j K + k]`` (``transposed``) and the gate in place of the ReLU.
The same kernels run a tree layer's products outside training (``GroupedPlan``, the
``layers.Linear`` twin), so a tree network compiles one set of them.

Every kernel is ``@njit(cache=True, nogil=True)``; with ``NUMBA_DISABLE_JIT=1`` they run as Python.
Kernels only called from compiled code (by address from ``run_steps``, or from other kernels)
compile no Python entry (``no_cpython_wrapper``), none compiles a C one (``no_cfunc_wrapper``):
less to compile on a cold start.
"""
from __future__ import annotations

import functools
import math
import threading
from collections import namedtuple

import numpy as np
from numba import njit

from .calls import addresses, via
from .compiling import Sharing, announce_compiles, take
from .hltm import CORRELATION, Sampler, is_tree, sample_bits, unpack_bits
from .mlp import FUSED_MAX_WEIGHTS, LOSS_CODES, FusedStep, LinearPlan, loss_weights

announce_compiles()             # cache location, and a notice when compiling (cold cache)

# LLVM may reassociate and contract (vectorised sums, FMAs) but keeps NaN and inf semantics,
# so a diverging run is still seen as one.
FAST = {"reassoc", "contract", "arcp", "nsz"}

# What the compiled functions take, grouped (numba passes named tuples by value, typed once):
Net = namedtuple("Net", "Ws bs Ks pat")      # dense weights, biases, K_l, layers 1-2 may collapse
Loss = namedtuple("Loss", "code tau margin normalize eps big")   # big: the dtype's max
# the buffers kept across calls, then scratch (see ``work_buffers``)
Work = namedtuple("Work", "acts ind dWs dbs wt zb Y dY tmp r_pos r_neg c_pos c_neg pre S A2 T "
                          "b2 tf")


# ----------------------------------------------------------------------------- layers
@njit(cache=True, nogil=True, no_cfunc_wrapper=True, fastmath=FAST)
def combine(W, b, K, wstride, src, dst, mode, tmp):
    """The grouped product ``a[r, :] = b[r] + sum_k w[r, k] src[j K + k, :]`` for unit
    r = j h + o of group j (``w[r, k] = W[r, j wstride + k]``: ``wstride = K`` for the dense
    masked (n_out, n_in) matrix, 0 for compact (n_out, K) weights), then per ``mode``:
    0 ``dst = a``, 1 ``dst = max(a, 0)``, 2 ``dst = a`` where ``dst > 0``, else 0 (the
    ReLU gate of a delta written over the activations it flows into). ``src`` (n_in, V),
    ``dst`` (n_out, V), ``tmp`` (4, V) scratch.

    Blocks of four units by four inputs: each pass over the views reads four input rows
    once for four output rows (a last partial block of units writes its spare rows to
    ``tmp``, a last partial block of inputs repeats an input with weight 0); mode 2 sums in
    ``tmp`` and gates at the end."""
    n_out, V = dst.shape
    G = src.shape[0] // K
    h = n_out // G
    zero = dst.dtype.type(0)
    for j in range(G):
        base = j * K
        wo = j * wstride
        for u0 in range(0, h, 4):
            r0 = j * h + u0
            m = min(4, h - u0)                               # live units of the block
            ra, rb, rc, rd = r0, r0 + min(1, m - 1), r0 + min(2, m - 1), r0 + min(3, m - 1)
            if mode == 2:
                da, db, dc, dd = tmp[0], tmp[1], tmp[2], tmp[3]
            else:
                da = dst[ra]
                db = dst[rb] if m > 1 else tmp[1]
                dc = dst[rc] if m > 2 else tmp[2]
                dd = dst[rd] if m > 3 else tmp[3]
            for k in range(0, K, 4):
                k1, k2, k3 = min(k + 1, K - 1), min(k + 2, K - 1), min(k + 3, K - 1)
                s0, s1, s2, s3 = src[base + k], src[base + k1], src[base + k2], src[base + k3]
                q0, q1, q2, q3 = wo + k, wo + k1, wo + k2, wo + k3   # weight columns
                a0, a1, a2, a3 = W[ra, q0], W[ra, q1], W[ra, q2], W[ra, q3]
                b0, b1, b2, b3 = W[rb, q0], W[rb, q1], W[rb, q2], W[rb, q3]
                c0, c1, c2, c3 = W[rc, q0], W[rc, q1], W[rc, q2], W[rc, q3]
                e0, e1, e2, e3 = W[rd, q0], W[rd, q1], W[rd, q2], W[rd, q3]
                if k + 3 >= K:                               # repeated inputs weigh 0
                    a3 = b3 = c3 = e3 = zero
                    if k + 2 >= K:
                        a2 = b2 = c2 = e2 = zero
                        if k + 1 >= K:
                            a1 = b1 = c1 = e1 = zero
                if k == 0:
                    ba, bb, bc, bd = b[ra], b[rb], b[rc], b[rd]
                    for n in range(V):
                        x0, x1, x2, x3 = s0[n], s1[n], s2[n], s3[n]
                        da[n] = ba + ((a0 * x0 + a1 * x1) + (a2 * x2 + a3 * x3))
                        db[n] = bb + ((b0 * x0 + b1 * x1) + (b2 * x2 + b3 * x3))
                        dc[n] = bc + ((c0 * x0 + c1 * x1) + (c2 * x2 + c3 * x3))
                        dd[n] = bd + ((e0 * x0 + e1 * x1) + (e2 * x2 + e3 * x3))
                else:
                    for n in range(V):
                        x0, x1, x2, x3 = s0[n], s1[n], s2[n], s3[n]
                        da[n] += (a0 * x0 + a1 * x1) + (a2 * x2 + a3 * x3)
                        db[n] += (b0 * x0 + b1 * x1) + (b2 * x2 + b3 * x3)
                        dc[n] += (c0 * x0 + c1 * x1) + (c2 * x2 + c3 * x3)
                        dd[n] += (e0 * x0 + e1 * x1) + (e2 * x2 + e3 * x3)
            for s in range(m if mode else 0):
                d, t = dst[r0 + s], tmp[s]
                if mode == 1:
                    for n in range(V):
                        d[n] = max(d[n], zero)
                else:
                    for n in range(V):
                        d[n] = t[n] if d[n] > 0 else zero


@njit(cache=True, nogil=True, no_cfunc_wrapper=True, fastmath=FAST)
def weight_grads(K, f, delta, dW, db):
    """The gradients of a grouped layer from its input ``f`` (n_in, V) and its delta
    ``delta`` (n_out, V): ``dW[r, k] = sum_n delta[r, n] f[j K + k, n]`` (compact
    (n_out, K)) and ``db[r] = sum_n delta[r, n]``. Eight dot products at a time (two delta
    rows by four inputs share their loads; an odd last row and the inputs past K repeat
    one, writing the same sums twice)."""
    n_out, V = delta.shape
    G = f.shape[0] // K
    h = n_out // G
    zero = dW.dtype.type(0)
    for r in range(n_out):
        d = delta[r]
        sb = zero
        for n in range(V):
            sb += d[n]
        db[r] = sb
    for j in range(G):
        base = j * K
        for r in range(j * h, (j + 1) * h, 2):
            rc = min(r + 1, (j + 1) * h - 1)
            da, dc = delta[r], delta[rc]
            for k in range(0, K, 4):
                k1, k2, k3 = min(k + 1, K - 1), min(k + 2, K - 1), min(k + 3, K - 1)
                f0, f1, f2, f3 = f[base + k], f[base + k1], f[base + k2], f[base + k3]
                a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = zero
                for n in range(V):
                    x0, x1, x2, x3 = f0[n], f1[n], f2[n], f3[n]
                    y, z = da[n], dc[n]
                    a0 += y * x0
                    a1 += y * x1
                    a2 += y * x2
                    a3 += y * x3
                    c0 += z * x0
                    c1 += z * x1
                    c2 += z * x2
                    c3 += z * x3
                dW[r, k], dW[r, k1], dW[r, k2], dW[r, k3] = a0, a1, a2, a3
                dW[rc, k], dW[rc, k1], dW[rc, k2], dW[rc, k3] = c0, c1, c2, c3


@njit(cache=True, nogil=True, no_cfunc_wrapper=True)
def transposed(W, wstride, K, WT):
    """``WT[j K + k, o] = w[j h + o, k]`` (``w`` as in ``combine``): the weights of the
    input gradient, ``delta_in = combine(WT, 0, h, 0, delta_out, f_in, 2)``."""
    G, h = WT.shape[0] // K, WT.shape[1]
    for j in range(G):
        for o in range(h):
            for k in range(K):
                WT[j * K + k, o] = W[j * h + o, j * wstride + k]


# ----------------------------------------------------------------------------- layers 1-2
# On binary leaves, layer 1 (groups of h units reading c leaves) has only P = 2**c input
# patterns per group, so its outputs are a table: f_1[(j, u), n] = relu(pre[j, u, p_j(n)]),
# p_j(n) the pattern of group j's leaves in view n. Layers 1 and 2 then collapse, exactly,
# into one grouped layer on the pattern indicators I[j, p, n] = [p_j(n) = p], p = 1 .. P-1
# (pattern 0 goes into the bias, as sum_p I[j, p, n] = 1):
#
#     g_2[o, n] = b2[o] + sum_{i < c, 0 < p < P} A2[o, i (P-1) + p-1] I[j' c + i, p, n]
#     A2[o, i (P-1) + p-1] = sum_u W_2[o, j' K_2 + i h + u] (R[j, u, p] - R[j, u, 0])
#     b2[o] = b_2[o] + sum_{i, u} W_2[o, j' K_2 + i h + u] R[j, u, 0],   R = relu(pre)
#
# (c (P-1) inputs per unit instead of c h, and layer 1 is never evaluated per view);
# backward, with the pattern sums T[o, i, p] = sum_n delta_2[o, n] I[j, p, n] (the same dot
# products as a weight gradient, and T[o, i, 0] = db_2[o] - sum_{p>0} T[o, i, p]), every
# gradient of layers 1 and 2 is a small contraction of T:
#
#     dW_2[o, i h + u] = sum_p R[j, u, p] T[o, i, p]
#     S[j, u, p] = sum_{o in group j'} W_2[o, j' K_2 + i h + u] T[o, i, p]
#     dW_1[j h + u, t] = sum_p [pre[j, u, p] > 0] bit_t(p) S[j, u, p],  db_1 = same without bit_t
#
# Used when it does less work (P <= h + c: c <= 3 for h = 10).
@njit(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def pattern_rows(lbits, N, H, c, ind):
    """``ind[j (P-1) + p-1, col] = 1.0`` where the leaves ``j c .. j c + c - 1`` of the view
    in column ``col`` read the bits of ``p`` (leaf ``j c + t`` is bit t), else 0.0, for
    p = 1 .. P-1. ``lbits`` (2 + H, n_leaves, n_words) from ``sample_bits``; columns
    [anchors | positives | negatives, anchor-major]."""
    P = 1 << c
    G1 = lbits.shape[1] // c
    nw = lbits.shape[2]
    zero = np.uint64(0)
    one = np.uint64(1)
    for v in range(lbits.shape[0]):
        col0 = 0 if v == 0 else (N if v == 1 else 2 * N + v - 2)
        stride = 1 if v < 2 else H
        for j in range(G1):
            for p in range(1, P):
                row = ind[j * (P - 1) + p - 1]
                for w in range(nw):
                    word = ~zero
                    for t in range(c):
                        x = lbits[v, j * c + t, w]
                        word &= x if (p >> t) & 1 else ~x
                    a0 = 64 * w
                    nb = min(64, N - a0)
                    if stride == 1:
                        seg = row[col0 + a0:col0 + a0 + nb]
                        for b in range(nb):
                            seg[b] = (word >> np.uint64(b)) & one
                    else:
                        for b in range(nb):
                            row[col0 + (a0 + b) * stride] = (word >> np.uint64(b)) & one


@njit(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, fastmath=FAST)
def leaf_tables(W1, b1, c, W2, b_2, pre, A2, b2, tf):
    """Layer 1's pre-activation per pattern, ``pre[j, u, p] = b_1[j h + u] + sum_t
    W_1[j h + u, t] bit_t(p)``, and the collapsed weights ``A2`` (n_2, c (P-1)) and bias
    ``b2`` (n_2,) of layer 2 (from its bias ``b_2``; see above). ``W1`` (n_1, c) and ``W2``
    (n_2, K_2) are compact; ``tf`` (P,) scratch."""
    G1, h, P = pre.shape[0], pre.shape[1], 1 << c         # c literal: P a constant
    zero = pre.dtype.type(0)
    for j in range(G1):
        for u in range(h):
            r = j * h + u
            for p in range(P):
                s = b1[r]
                for t in range(c):
                    if (p >> t) & 1:
                        s += W1[r, t]
                pre[j, u, p] = s
    n2 = W2.shape[0]
    h2 = n2 // (G1 // c)
    for o in range(n2):
        jp = o // h2
        bo = b_2[o]
        for i in range(c):
            j = jp * c + i
            for p in range(P):                               # sum_u W_2 R, per pattern
                tf[p] = zero
            for u in range(h):
                w = W2[o, i * h + u]
                for p in range(P):
                    tf[p] += w * max(pre[j, u, p], zero)
            bo += tf[0]
            for p in range(1, P):
                A2[o, i * (P - 1) + p - 1] = tf[p] - tf[0]
        b2[o] = bo


@njit(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, fastmath=FAST)
def leaf_grads(W2, c, pre, T, db2, dW2, dW1, db1, S, tf):
    """The gradients of layers 1 and 2 from the pattern sums ``T`` (n_2, c (P-1)) and
    ``db2`` (see above): ``dW2`` (n_2, K_2), ``dW1`` (n_1, c), ``db1`` (n_1,) written;
    ``W2`` compact (n_2, K_2); ``S`` (G_1, h, P), ``tf`` (P,) scratch."""
    G1, h, P = pre.shape[0], pre.shape[1], 1 << c         # c literal: P a constant
    n2 = W2.shape[0]
    h2 = n2 // (G1 // c)
    zero = pre.dtype.type(0)
    for j in range(G1):
        for u in range(h):
            for p in range(P):
                S[j, u, p] = zero
    for o in range(n2):
        jp = o // h2
        for i in range(c):
            j = jp * c + i
            t0 = db2[o]
            for p in range(1, P):
                tf[p] = T[o, i * (P - 1) + p - 1]
                t0 -= tf[p]
            tf[0] = t0
            for u in range(h):
                w = W2[o, i * h + u]
                s = zero
                for p in range(P):
                    s += max(pre[j, u, p], zero) * tf[p]
                    S[j, u, p] += w * tf[p]
                dW2[o, i * h + u] = s
    for j in range(G1):
        for u in range(h):
            r = j * h + u
            sb = zero
            for t in range(c):
                dW1[r, t] = zero
            for p in range(P):
                v = S[j, u, p] if pre[j, u, p] > 0 else zero
                sb += v
                for t in range(c):
                    if (p >> t) & 1:
                        dW1[r, t] += v
            db1[r] = sb


# ----------------------------------------------------------------------------- the output
@njit(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, fastmath=FAST)
def top_forward(Z, Y, normalize, eps, N, H, r_pos, r_neg, nrm, big):
    """The outputs' side of the forward: ``Y = Z / (||Z|| + eps)`` per view (``normalize``;
    ``nrm`` (V,) gets ||Z||), the distances ``r_pos[a] = ½||y_a - y_{N+a}||²`` and
    ``r_neg[a, k] = ½||y_a - y_{2N+aH+k}||²`` (y = Z without normalisation). Returns False
    (and writes nothing) when Z is not finite or its squares, summed in float64, pass ``big``
    (the dtype's largest value) or overflow times 1 + H (``train.finite_output``). Loops run
    over views, innermost."""
    d, V = Z.shape
    bad = False
    sq = 0.0
    for i in range(d):
        for n in range(V):
            bad |= not math.isfinite(Z[i, n])
            sq += float(Z[i, n]) * float(Z[i, n])
    if bad or not (math.isfinite((1 + H) * sq) and sq <= big):
        return False
    Yv = Y if normalize else Z
    if normalize:
        for n in range(V):
            nrm[n] = 0.0
        for i in range(d):
            for n in range(V):
                nrm[n] += Z[i, n] * Z[i, n]
        for n in range(V):
            nrm[n] = math.sqrt(nrm[n])
        for i in range(d):
            for n in range(V):
                s = nrm[n] + eps
                Y[i, n] = Z[i, n] * (1.0 / s if s > 0 else 0.0)
    for a in range(N):
        r_pos[a] = 0.0
        for k in range(H):
            r_neg[a, k] = 0.0
    for i in range(d):
        y = Yv[i]
        for a in range(N):
            u = y[a] - y[N + a]
            r_pos[a] += u * u
        for k in range(H):
            for a in range(N):
                u = y[a] - y[2 * N + a * H + k]
                r_neg[a, k] += u * u
    for a in range(N):
        r_pos[a] *= 0.5
        for k in range(H):
            r_neg[a, k] *= 0.5
    return True


@njit(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, fastmath=FAST)
def top_backward(Z, Y, dY, normalize, eps, N, H, c_pos, c_neg, scratch):
    """The loss weights ``c = dL/dr / N`` chained to the outputs (``losses.chain_triples``)
    and through the normalisation (``layers.l2_normalize_backward``,
    ``dz = (dy - y (y.dy) s/||z||) / s``, ``s = ||z|| + eps``): ``dL/dZ`` is written over
    ``Z``. ``Y``, ``scratch[0]`` = ||Z|| from ``top_forward``; ``dY`` (d, V), ``scratch[1]``
    scratch."""
    d, V = Z.shape
    Yv = Y if normalize else Z
    out = dY if normalize else Z
    nrm, ga = scratch[0], scratch[1]
    for i in range(d):
        y = Yv[i]
        o = out[i]
        for a in range(N):                                   # read y before ``out`` (= y
            ga[a] = c_pos[a] * (y[a] - y[N + a])             # without normalisation) is
        for k in range(H):                                   # overwritten
            for a in range(N):
                ga[a] += c_neg[a, k] * (y[a] - y[2 * N + a * H + k])
        for a in range(N):
            o[N + a] = -c_pos[a] * (y[a] - y[N + a])
        for k in range(H):
            for a in range(N):
                o[2 * N + a * H + k] = -c_neg[a, k] * (y[a] - y[2 * N + a * H + k])
        for a in range(N):
            o[a] = ga[a]
    if not normalize:
        return
    for n in range(V):
        yd = 0.0
        for i in range(d):
            yd += Y[i, n] * dY[i, n]
        sc = nrm[n] + eps
        inv = 1.0 / sc if sc > 0 else 0.0
        ratio = sc / nrm[n] if nrm[n] > 0 else 0.0
        for i in range(d):
            Z[i, n] = (dY[i, n] - Y[i, n] * yd * ratio) * inv


@njit(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, fastmath=FAST)
def sgd_layer(W, dW, V, lr, momentum, wd):
    """``v = momentum v + (g + wd p)``, ``p -= lr v`` (``optim.SGD``) on one array of
    parameters (compact weights (n_out, K), or biases as (1, n))."""
    if momentum == 0 and wd == 0:
        for r in range(W.shape[0]):
            for k in range(W.shape[1]):
                W[r, k] -= lr * dW[r, k]
        return
    for r in range(W.shape[0]):
        for k in range(W.shape[1]):
            g = momentum * V[r, k] + (dW[r, k] + wd * W[r, k])
            V[r, k] = g
            W[r, k] -= lr * g


# ----------------------------------------------------------------------------- steps
# The kernels the entry point calls, through their addresses (``kernels.calls``: compiled
# once each instead of again inside the entry point); slot = position, then the signature.
CALLS = ((sample_bits, "U1 i I1 U1 U2 U3 -> none"),
         (unpack_bits, "U2 i A2 i i -> none"),
         (pattern_rows, "U3 i i L A2 -> none"),
         (leaf_tables, "A2 A1 L A2 A1 A3 A2 A1 A1 -> none"),
         (combine, "A2 A1 i i A2 A2 i A2 -> none"),
         (top_forward, "A2 A2 L f i i A1 A2 A1 f -> bool"),
         (loss_weights, "A1 A2 L f f A1 A2 i i -> f3"),
         (top_backward, "A2 A2 A2 L f i i A1 A2 A2 -> none"),
         (weight_grads, "i A2 A2 A2 A1 -> none"),
         (transposed, "A2 i i A2 -> none"),
         (leaf_grads, "A2 L A3 A2 A1 A2 A2 A1 A3 A1 -> none"),
         (sgd_layer, "A2 A2 A2 f f f -> none"))
# rough relative compile cost (the kernels' seconds in docs/performance.md "Cold start"):
# ``sharing`` hands the costliest out first
COST = {"combine": 9, "top_forward": 5, "weight_grads": 5, "leaf_grads": 4, "top_backward": 4}
(_sample_bits, _unpack_bits, _pattern_rows, _leaf_tables, _combine, _top_forward, _loss_weights,
 _top_backward, _weight_grads, _transposed, _leaf_grads, _sgd_layer) = (
    via(slot, kernel, sig) for slot, (kernel, sig) in enumerate(CALLS))


def kernel_jobs(dtype, c, normalize, code, given=False):
    """The kernels ``epoch_kernel(c, normalize, code, given)`` calls, by slot: ``(dispatcher,
    template, dtype, literals)`` (``compiling.Sharing``'s jobs), None for a slot that variant
    does not call (the sampler and the update when ``given``; the pattern kernels when
    c > 0, else ``unpack_bits``)."""
    skip = {"sample_bits", "unpack_bits", "sgd_layer"} if given else set()
    skip |= {"pattern_rows", "leaf_tables", "leaf_grads"} if c == 0 or given else {"unpack_bits"}
    literals = {"pattern_rows": (c,), "leaf_tables": (c,), "leaf_grads": (c,),
                "top_forward": (normalize,), "top_backward": (normalize,),
                "loss_weights": (code,)}
    return [None if k.__name__ in skip else (k, sig, np.dtype(dtype).name,
                                               literals.get(k.__name__, ()))
            for k, sig in CALLS]


@functools.lru_cache(maxsize=None)
def kernel_table(dtype, c, normalize, code, given=False):
    """The address table of ``epoch_kernel(c, normalize, code, given)`` for float ``dtype``
    (``kernel_jobs``), its kernels compiled or loaded from the cache."""
    return addresses(kernel_jobs(dtype, c, normalize, code, given))


_SHARED, _PENDING, _FIRST = set(), {}, threading.Lock()


def sharing(dtype, variant, also=()):
    """The ``compiling.Sharing`` of the kernels of ``epoch_kernel(*variant)`` for ``dtype``
    (costliest first; ``combine``, ``weight_grads``, ``transposed`` last: a tree layer's
    products outside training, such as an evaluation before the first epoch, compile them in
    this process), and the jobs ``also`` first (kernels of the run's evaluation, say), started
    once per process and variant (again after a ``close``): the one ``compiled`` finishes."""
    if (dtype, variant) not in _PENDING or _PENDING[(dtype, variant)].closed:
        late = ("combine", "weight_grads", "transposed")
        jobs = sorted((j for j in kernel_jobs(dtype, *variant) if j),
                      key=lambda j: (j[0].__name__ in late, -COST.get(j[0].__name__, 1)))
        _PENDING[(dtype, variant)] = Sharing(list(also) + jobs)
    return _PENDING[(dtype, variant)]


def compiled(dtype, variant, first_call):
    """``kernel_table(dtype, *variant)``; the first time a process asks for a variant, its
    kernels and its entry point are compiled (or loaded) through its ``sharing``: the entry
    point here by ``first_call(table)`` (a call of no steps, with a table of zeros) while a
    helper process takes kernels, on a cold cache."""
    if (dtype, variant) not in _SHARED:
        with _FIRST:                    # one thread finishes it; another (the app) waits
            if (dtype, variant) not in _SHARED:
                sharing(dtype, variant).finish(
                    lambda: first_call(np.zeros(len(CALLS), np.int64)))
                _SHARED.add((dtype, variant))
    return kernel_table(dtype, *variant)


@functools.lru_cache(maxsize=None)
def epoch_kernel(c, normalize, code, given=False):
    """The compiled ``run_steps`` for one variant: ``c`` (> 0: layers 1-2 collapsed on the
    patterns of c leaves; 0: not), ``normalize``, the loss ``code`` and ``given`` (one step
    on the batch already in ``w.acts[0]``, no update: the per-step path) are compile-time
    constants of the closure, so a run compiles only its own branches (numba keys the cache
    on them; the callees get them as literals: the pattern kernels' loops over the 2**c
    patterns unroll, ``loss_weights`` keeps only its loss). One entry point for the epoch
    and the step, the step written out in it (numba's inlining of a shared helper costs
    more to compile than its dozen lines). It calls its kernels through the addresses in
    ``table`` (``kernel_table``; ``kernels.calls``), so each is compiled once, on its own,
    not again inside the entry point; its scratch comes from ``w`` (``work_buffers``)."""
    pat = c > 0

    @njit(cache=True, nogil=True, no_cfunc_wrapper=True)
    def run_steps(seeds, n_top, parent, thr, zbits, lbits, net, loss, w, H, wstride, lr,
                  momentum, wd, bias, Vs, vbs, stats, table):
        """``len(seeds)`` SGD steps on batches of the compiled sampler (see the module
        docstring) of the net with weights ``net.Ws``: compact (n_l, K_l) for ``wstride``
        0, dense masked for 1 (see ``combine``); ``stats[s] = (mean L, mean r_pos, mean
        r_neg)``. Each step: forward of layers ``first .. L-1``, distances, loss weights,
        backward down to layer ``first`` (``w.dWs``, ``w.dbs``), the update. Returns the
        number of steps completed: a step whose output is not finite stops the run before
        its update (its ``stats`` NaN; nothing past the output written)."""
        # the named tuples unpacked once (each read of one in the loop counts references of
        # all its arrays)
        Ws, bs, Ks, acts, ind, dWs, dbs = net.Ws, net.bs, net.Ks, w.acts, w.ind, w.dWs, w.dbs
        eps, big, tau, margin = loss.eps, loss.big, loss.tau, loss.margin
        L, V = len(Ws), acts[0].shape[1]
        N = V // (2 + H)
        # scratch (``work_buffers``): outputs and their gradient, the distances and loss
        # weights, the input gradient's weights (views of ``wt``), the pattern tables
        Y, dY, tmp, wt, zb = w.Y, w.dY, w.tmp, w.wt, w.zb
        r_pos, r_neg, c_pos, c_neg = w.r_pos, w.r_neg, w.c_pos, w.c_neg
        pre, S, A2, T, b2, tf = w.pre, w.S, w.A2, w.T, w.b2, w.tf
        for s in range(seeds.shape[0]):
            first = 0
            if given:
                pass
            elif pat:
                _sample_bits(table, seeds[s], n_top, parent, thr, zbits, lbits)
                _pattern_rows(table, lbits, N, H, c, ind)
                _leaf_tables(table, Ws[0], bs[0], c, Ws[1], bs[1], pre, A2, b2, tf)
                _combine(table, A2, b2, A2.shape[1], N - N, ind, acts[2], N - N + (L > 2), tmp)
                first = 2
            else:
                _sample_bits(table, seeds[s], n_top, parent, thr, zbits, lbits)
                for v in range(2 + H):
                    _unpack_bits(table, lbits[v], N, acts[0], N * min(v, 2) + max(v - 2, 0),
                                 1 if v < 2 else H)
            for l in range(first, L):                        # modes: ReLU, the top linear
                _combine(table, Ws[l], bs[l], Ks[l], wstride * Ks[l], acts[l], acts[l + 1],
                         1 if l < L - 1 else 0, tmp)
            if not _top_forward(table, acts[L], Y, normalize, eps, N, H, r_pos, r_neg, tmp[0],
                                big):
                stats[s, :] = np.nan
                return s
            sL, sp, sn = _loss_weights(table, r_pos, r_neg, code, tau, margin, c_pos, c_neg,
                                       N - N, N)
            _top_backward(table, acts[L], Y, dY, normalize, eps, N, H, c_pos, c_neg, tmp)
            for l in range(L - 1, first - 1, -1):
                _weight_grads(table, Ks[l], acts[l], acts[l + 1], dWs[l], dbs[l])
                if l > 0:                                    # the delta below, gated
                    n_in = acts[l].shape[0]
                    WT = wt[:n_in * (Ws[l].shape[0] * Ks[l] // n_in)].reshape((n_in, -1))
                    _transposed(table, Ws[l], wstride * Ks[l], Ks[l], WT)
                    _combine(table, WT, zb, WT.shape[1], N - N, acts[l + 1], acts[l], N - N + 2,
                             tmp)
            if pat:
                _weight_grads(table, A2.shape[1], ind, acts[2], T, dbs[1])
                _leaf_grads(table, Ws[1], c, pre, T, dbs[1], dWs[1], dWs[0], dbs[0], S, tf)
            for l in range(L if not given else 0):
                _sgd_layer(table, Ws[l], dWs[l], Vs[l], lr, momentum, wd)
                if bias:
                    n = bs[l].shape[0]
                    _sgd_layer(table, bs[l].reshape((1, n)), dbs[l].reshape((1, n)),
                               vbs[l].reshape((1, n)), lr, momentum, wd)
            stats[s, 0] = sL / N
            stats[s, 1] = sp / N
            stats[s, 2] = sn / (N * H)
        return seeds.shape[0]

    return run_steps


def tree_groups(sizes, masks):
    """``K_l`` per layer if the masks are those of a tree network (every layer block-diagonal
    with equal, contiguous groups: unit r of group j = r // h reads exactly inputs
    ``j K .. j K + K - 1``) with at most ``mlp.FUSED_MAX_WEIGHTS`` live weights, else None."""
    if masks is None or len(masks) != len(sizes) - 1:
        return None
    if sum(int(np.count_nonzero(m)) for m in masks if m is not None) > FUSED_MAX_WEIGHTS:
        return None
    Ks = [None if m is None else grouped(m) for m in masks]
    return None if None in Ks else Ks


def grouped(mask):
    """``K`` if the 0/1 ``mask`` (n_out, n_in) is a grouped layer's (block-diagonal with
    equal, contiguous groups: unit r of group j = r // h reads exactly inputs
    ``j K .. j K + K - 1``), else None."""
    m = np.asarray(mask) != 0
    (n_out, n_in), cnt = m.shape, m.sum(axis=1)
    K = int(cnt[0]) if cnt.size else 0
    if K == 0 or n_in % K or n_out % (n_in // K):
        return None
    G = n_in // K
    want = np.kron(np.eye(G, dtype=bool), np.ones((n_out // G, K), bool))
    return K if np.array_equal(m, want) else None


def collapses(sizes, Ks):
    """Whether layers 1-2 of a grouped net run collapsed on leaf patterns (binary leaves): at
    least two layers and ``2**c <= h + c`` (c = K_1 leaves per group, h units per group), when
    that does less work than layer 1 and 2 themselves."""
    c = int(Ks[0])
    h1 = sizes[1] // (sizes[0] // c)
    return len(Ks) >= 2 and 2 ** c <= h1 + c


def work_buffers(sizes, Ks, N, H, dtype, c=0):
    """The ``Work`` of a grouped net for batches of N anchors, H negatives, layers 1-2
    collapsed on the patterns of c leaves (c > 0) or not (see ``epoch_kernel``):
    activations (n_l, V), V = N (2 + H), the pattern indicators, the gradients (compact),
    room for the largest transposed weights, a zero bias, then the scratch of a step: the
    outputs Y and their gradient dY (n_L, V), ``tmp`` (4, V), the distances and loss weights
    (N,) and (N, H), the pattern tables ``pre``, ``S`` (G_1, h_1, P), ``A2``, ``T``
    (n_2, c (P-1)), ``b2`` (n_2,), ``tf`` (P,), P = 2**c."""
    dt, V, L = np.dtype(dtype), N * (2 + H), len(sizes) - 1
    P, G1, n2 = 2 ** c, sizes[0] // max(c, 1), sizes[min(1, L - 1) + 1]
    h1 = sizes[1] // G1
    e = lambda *shape: np.empty(shape, dt)  # noqa: E731
    return Work(acts=tuple(e(n, V) for n in sizes),
                ind=e((sizes[0] // int(Ks[0])) * (2 ** int(Ks[0]) - 1), V),
                dWs=tuple(np.zeros((n, K), dt) for n, K in zip(sizes[1:], Ks)),
                dbs=tuple(np.zeros(n, dt) for n in sizes[1:]),
                wt=e(max(n * K for n, K in zip(sizes[1:], Ks))), zb=np.zeros(max(sizes), dt),
                Y=e(sizes[-1], V), dY=e(sizes[-1], V), tmp=e(4, V), r_pos=e(N), r_neg=e(N, H),
                c_pos=e(N), c_neg=e(N, H), pre=e(G1, h1, P), S=e(G1, h1, P),
                A2=e(n2, c * (P - 1)), T=e(n2, c * (P - 1)), b2=e(n2), tf=e(P))


class _Grouped:
    """What a ``TreeStep`` and a ``TreeEpoch`` share: the net (its arrays, used in place),
    the loss, the work buffers (rebuilt when the batch shape changes)."""

    def __init__(self, weights, biases, Ks, normalize, eps):
        Ws = tuple(weights)
        dt = Ws[0].dtype
        self.sizes = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
        self.bias = biases is not None
        bs = tuple(biases) if self.bias else tuple(np.zeros(W.shape[0], dt) for W in Ws)
        self.Ks = np.asarray(Ks, np.int64)
        self.net = Net(Ws, bs, self.Ks, bool(collapses(self.sizes, Ks)))
        self.norm = (bool(normalize), float(eps))
        self.work, self.shape = None, None

    def buffers(self, N, H, c=0):
        if self.shape != (N, H, c):
            self.work = work_buffers(self.sizes, self.Ks, N, H, self.net.Ws[0].dtype, c)
            self.shape = (N, H, c)
            self.lbits = np.empty((2 + H, self.sizes[0], -(-N // 64)), np.uint64)
        return self.work

    def loss(self, loss, tau, margin):
        return Loss(LOSS_CODES[loss], float(tau), float(margin), *self.norm,
                    float(np.finfo(self.net.Ws[0].dtype).max))


class TreeStep(_Grouped):
    """Twin of ``train.loss_and_grads`` for a grouped (tree) network with given negatives,
    plain or with biases and output normalisation: one compiled call per step (the
    ``run_steps`` of ``given`` batches, reading the dense weights in place), the work
    buffers kept across steps. Built by ``build_step``.

    ``step(weights, x, x_pos, x_neg, loss, tau, margin)`` -> ``(loss, r_pos, r_neg, grads)``
    (means; ``grads`` dense like ``net.grads()``: weights, zero at masked entries, then biases)
    or ``(nan, nan, nan, None)`` when the output is not finite. Inputs validated by the
    caller; the biases are the arrays it was built with."""

    def __call__(self, weights, x, x_pos, x_neg, loss, tau, margin):
        N, H = x_neg.shape[:2]
        if any(a is not b for a, b in zip(weights, self.net.Ws)):
            self.net = self.net._replace(Ws=tuple(weights))
        w = self.buffers(N, H)
        f = w.acts[0]                                        # the views, feature-major
        f[:, :N], f[:, N:2 * N] = x.T, x_pos.T
        f[:, 2 * N:] = x_neg.reshape(N * H, -1).T
        stats, none = np.zeros((1, 3)), np.zeros(0, np.uint64)
        variant = (0, self.norm[0], LOSS_CODES[loss], True)
        lossp = self.loss(loss, tau, margin)

        def call(steps, table):                 # ``given``: seeds (steps, 0), the batch in w
            return epoch_kernel(*variant)(
                none.reshape(steps, 0), 0, none.astype(np.int64), none, none.reshape(0, 0),
                none.reshape(0, 0, 0), self.net, lossp, w, H, 1, 0.0, 0.0, 0.0, self.bias,
                w.dWs, w.dbs, stats, table)
        table = compiled(self.net.Ws[0].dtype.name, variant, lambda t: call(0, t))
        with np.errstate(over="ignore"):
            ok = call(1, table)
        if not ok:
            return math.nan, math.nan, math.nan, None
        grads = [np.empty_like(W) for W in self.net.Ws]
        for g, dW, K in zip(grads, w.dWs, self.Ks):
            scatter_dense(dW, K, g)
        if self.bias:
            grads += [db.copy() for db in w.dbs]
        return float(stats[0, 0]), float(stats[0, 1]), float(stats[0, 2]), grads


class TreeEpoch(_Grouped):
    """Runs chunks of SGD steps of a tree network on an HLTM in one compiled call each
    (``run_steps``; twin of ``train.train``'s loop with ``sampler="compiled"``, see the module
    docstring). Built once per run from the net's arrays, its ``Ks`` (``tree_groups``), the
    tree, the loss and the SGD settings; it holds the momentum and work buffers. Inside a
    call the weights are compact (each unit's live weights contiguous); they are read from
    the net's dense weights before and written back after every call, and the biases are
    updated in place, so the network is current after every chunk.

    ``run(rng, k)`` draws k seeds from ``rng`` (``Sampler.seeds``: the stream
    ``kernels.hltm.triples`` draws) and returns ``stats`` (k', 3) of the k' <= k steps run:
    (loss, mean r_pos, mean r_neg) per step; when step k' was not finite its row is NaN and
    its update was not applied."""

    @staticmethod
    def applies(net, source, cfg):
        """Whether the compiled epoch runs this training: the compiled sampler (or "auto") on
        an HLTM (``hltm.is_tree``), given negatives, SGD of every layer (nothing frozen) by the
        gradient, a net the kernels are written for (``compiled_steps``: a ReLUNet) without
        BN, of the source's width, whose masks are a tree network's (``tree_groups``).
        Duck-typed (kernels import no core module): ``cfg`` a ``train.TrainConfig``."""
        return (cfg.sampler != "numpy" and is_tree(source) and cfg.negatives == "given"
                and cfg.optimizer == "sgd" and cfg.update == "gradient" and not cfg.frozen
                and getattr(net, "compiled_steps", False) and net.batchnorm is None
                and net.sizes[0] == source.dim
                and tree_groups(net.sizes, numpy_masks(net)) is not None)

    @classmethod
    def for_run(cls, net, source, cfg):
        """The epoch of a run it ``applies`` to, on the net's arrays (used in place)."""
        return cls(net.weights, net.biases, tree_groups(net.sizes, numpy_masks(net)), source,
                   cfg.batch_size, cfg.loss, cfg.tau, cfg.margin, cfg.lr, cfg.momentum,
                   cfg.weight_decay, net.normalize, net.norm_eps)

    def __init__(self, weights, biases, Ks, tree, batch_size, loss, tau, margin, lr,
                 momentum=0.0, weight_decay=0.0, normalize=False, eps=0.0):
        super().__init__(weights, biases, Ks, normalize, eps)
        self.dense = self.net.Ws
        self.net = self.net._replace(Ws=tuple(compact(W, K) for W, K in
                                              zip(self.dense, self.Ks)))
        self.sampler = Sampler(tree)
        self.N, self.H = int(batch_size), tree.negatives
        self.zbits = np.empty((tree.n_nodes, -(-self.N // 64)), np.uint64)
        self.lossp = self.loss(loss, tau, margin)
        self.sgd = (float(lr), float(momentum), float(weight_decay), self.bias,
                    tuple(np.zeros_like(W) for W in self.net.Ws),
                    tuple(np.zeros_like(b) for b in self.net.bs))

    @property
    def variant(self):
        """``(dtype, (c, normalize, loss code))``: which ``epoch_kernel`` runs this epoch."""
        return (self.net.Ws[0].dtype.name,
                (int(self.Ks[0]) if self.net.pat else 0, self.norm[0], self.lossp.code))

    def start_compiling(self):
        """Start compiling this epoch's kernels, and first the correlation's
        (``hltm.CORRELATION``: a run's evaluation), in a helper process now, on a cold cache
        (see ``sharing``), so that they are ready, or nearly, when the run needs them.
        Returns the ``compiling.Sharing`` (``close()`` it if ``run`` will never come)."""
        return sharing(*self.variant, also=[CORRELATION])

    def run(self, rng, k):
        seeds = Sampler.seeds(rng, k)
        stats = np.zeros((k, 3))
        dtype, variant = self.variant
        w, sam = self.buffers(self.N, self.H, variant[0]), self.sampler
        for D, C, K in zip(self.dense, self.net.Ws, self.Ks):
            C[...] = compact(D, K)

        def call(seeds, table):
            return epoch_kernel(*variant)(seeds, sam.n_top, sam.parent, sam.thr, self.zbits,
                                          self.lbits, self.net, self.lossp, w, self.H, 0,
                                          *self.sgd, stats, table)
        table = compiled(dtype, variant, lambda t: call(seeds[:0], t))
        with np.errstate(over="ignore"):                     # wrapping uint64 arithmetic
            done = call(seeds, table)
        for D, C, K in zip(self.dense, self.net.Ws, self.Ks):
            set_dense(D, K, C)
        return stats[:done + (done < k)]


def _diagonal(W, K):
    """``(W4, idx)``: the (G, h, G, K) view of a grouped layer's dense ``W`` (n_out, n_in)
    and the group index, so that ``W4[idx, :, idx, :]`` are its live (G, h, K) blocks."""
    n_out, n_in = W.shape
    G = n_in // K
    return W.reshape(G, n_out // G, G, K), np.arange(G)


def compact(W, K):
    """The live weights of a grouped layer's dense ``W``: (n_out, K), row r holding
    ``W[r, j K : (j + 1) K]`` of its group j."""
    W4, idx = _diagonal(W, K)
    return W4[idx, :, idx, :].reshape(W.shape[0], K)


def set_dense(W, K, C):
    """Write compact weights ``C`` (n_out, K) into the live blocks of the dense ``W``."""
    W4, idx = _diagonal(W, K)
    W4[idx, :, idx, :] = C.reshape(len(idx), -1, K)


def scatter_dense(dW, K, out):
    """``out`` (n_out, n_in): the compact ``dW`` (n_out, K) of a grouped layer at its live
    entries, zeros elsewhere."""
    out[...] = 0
    set_dense(out, K, dW)


class GroupedPlan:
    """The products of one grouped (tree) ``layers.Linear`` on backend "numba", with the
    kernels of the compiled step (``combine``, ``weight_grads``, ``transposed``; the same
    machine code, so a tree net compiles them once for training, evaluation, the covariance
    products and BYOL). The interface of ``mlp.LinearPlan``: ``forward(W, x)`` (N, n_out),
    ``backward(W, dg, x, want_input)`` -> ``(dW, dx)``, and ``down(W, dT)`` = ``W^T dT``
    feature-major. ``W`` is the dense masked matrix (read at its live blocks)."""

    def __init__(self, mask, K):
        self.K, (n_out, n_in) = int(K), np.shape(mask)
        self.h = n_out // (n_in // self.K)

    def _combine(self, W, src, n, K, wstride):
        """``combine`` of feature-major ``src`` into a new (n, V) array (mode 0: linear)."""
        dst = np.empty((n, src.shape[1]), W.dtype)
        take(combine)                       # a helper compiling it ahead? (``sharing``)
        combine(W, np.zeros(n, W.dtype), K, wstride, src, dst, 0,
                np.empty((4, src.shape[1]), W.dtype))
        return dst

    def forward(self, W, x):
        """``x W^T`` over the live blocks: (N, n_in) -> (N, n_out), a transposed view."""
        return self._combine(W, np.ascontiguousarray(x.T), W.shape[0], self.K, self.K).T

    def down(self, W, dT):
        """``W^T dT`` for feature-major ``dT`` (n_out, M): (n_in, M)."""
        WT = np.empty((W.shape[1], self.h), W.dtype)
        take(transposed)
        transposed(W, self.K, self.K, WT)
        return self._combine(WT, np.ascontiguousarray(dT), W.shape[1], self.h, 0)

    def backward(self, W, dg, x, want_input=True):
        """``(dW, dx)``: ``dW = dg^T x`` at the live blocks (zero elsewhere), ``dx = dg W``
        (None unless ``want_input``)."""
        dT = np.ascontiguousarray(dg.T)                      # (n_out, N)
        dWc, db = np.empty((W.shape[0], self.K), W.dtype), np.empty(W.shape[0], W.dtype)
        take(weight_grads)
        weight_grads(self.K, np.ascontiguousarray(x.T), dT, dWc, db)
        dW = np.empty_like(W)
        scatter_dense(dWc, self.K, dW)
        return dW, (self.down(W, dT).T if want_input else None)


def linear_plan(mask):
    """The twin of a masked ``layers.Linear`` (``kernels.twin("linear")``): a
    ``GroupedPlan`` for a grouped (tree) layer, else ``mlp.LinearPlan``."""
    K = grouped(mask)
    return LinearPlan(mask) if K is None else GroupedPlan(mask, K)


def build_step(sizes, masks, dtype, threads=None, weights=None, biases=None,
               normalize=False, eps=0.0):
    """The compiled step of a net (twin ``train_step``), built once per run: a ``TreeStep``
    on the net's ``weights`` and ``biases`` (arrays used in place) for grouped (tree) masks,
    else ``mlp.FusedStep.build`` for a plain net; None when neither applies (biases or
    normalisation on a net that is not grouped, or too many live weights). Called as
    ``step(weights, x, x_pos, x_neg, loss, tau, margin)``."""
    Ks = None if masks is None or weights is None else tree_groups(sizes, masks)
    if Ks is not None:
        return TreeStep(weights, biases, Ks, normalize, eps)
    if biases is not None or normalize:
        return None
    return FusedStep.build(sizes, masks, dtype, threads)


def numpy_masks(net):
    """The masks of a net (``net.masks``: None, or per layer an array or None) as NumPy."""
    return None if net.masks is None else [None if m is None else np.asarray(m)
                                           for m in net.masks]


class TrainStep:
    """The compiled training step of a run (twin ``train_step``): ``applies(net, cfg)``
    says whether one runs it, ``build(net)`` builds it (``build_step`` on the net's arrays,
    used in place). The net is read duck-typed (kernels import no core module)."""

    @staticmethod
    def applies(net, cfg):
        """A net the kernels are written for (``compiled_steps``: a ReLUNet) without BN,
        trained with given negatives, that is a tree network (``tree_groups``: plain, or
        with biases and output normalisation) or a plain net where the fused step pays
        (``FusedStep.pays``: few dense weights, compact weights that fit)."""
        if not (getattr(net, "compiled_steps", False) and net.batchnorm is None
                and cfg.negatives == "given"):
            return False
        masks = numpy_masks(net)
        if tree_groups(net.sizes, masks) is not None:
            return True
        return (net.biases is None and not net.normalize
                and FusedStep.pays(net.sizes, masks, net.dtype))

    @staticmethod
    def start_compiling(net, cfg):
        """For a tree network, ``TreeEpoch.start_compiling``'s twin for the per-step path (the
        ``TreeStep`` kernels of given batches, and the correlation's); None for another net."""
        if tree_groups(net.sizes, numpy_masks(net)) is None:
            return None
        variant = (0, bool(net.normalize), LOSS_CODES[cfg.loss], True)
        return sharing(np.dtype(net.dtype).name, variant, also=[CORRELATION])

    @staticmethod
    def build(net):
        return build_step(net.sizes, numpy_masks(net), net.dtype, weights=net.weights,
                          biases=net.biases, normalize=net.normalize, eps=net.norm_eps)
