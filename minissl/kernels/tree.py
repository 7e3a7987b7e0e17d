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

Every kernel is ``@njit(cache=True)``; with ``NUMBA_DISABLE_JIT=1`` they run as Python.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .hltm import Sampler, sample_bits, unpack_bits
from .mlp import FUSED_MAX_WEIGHTS, LOSS_CODES, loss_weights

# LLVM may reassociate and contract (vectorised sums, FMAs) but keeps NaN and inf semantics,
# so a diverging run is still seen as one.
FAST = {"reassoc", "contract", "arcp", "nsz"}


# ----------------------------------------------------------------------------- layers
@njit(cache=True, fastmath=FAST)
def forward_layer(W, b, K, dense, src, dst, relu):
    """``dst[r, :] = b[r] + sum_k w[r, k] src[j K + k, :]`` for unit r = j h + o of group j,
    then ``max(., 0)`` if ``relu``; ``w[r, k] = W[r, j K + k]`` (``dense``: the masked
    (n_out, n_in) matrix) or ``W[r, k]`` (compact (n_out, K)). ``src`` (n_in, V), ``dst``
    (n_out, V). The first four inputs write the row, then eight (or four, or one) at a time
    accumulate, so each row is read and written once per several inputs."""
    n_out, V = dst.shape
    G = src.shape[0] // K
    h = n_out // G
    zero = np.zeros(1, dst.dtype)[0]
    for r in range(n_out):
        base = (r // h) * K
        wo = base if dense else 0
        d = dst[r]
        bo = b[r]
        m = min(K, 4)
        w0 = W[r, wo]
        w1 = W[r, wo + 1] if m > 1 else zero
        w2 = W[r, wo + 2] if m > 2 else zero
        w3 = W[r, wo + 3] if m > 3 else zero
        s0 = src[base]
        s1 = src[base + min(1, m - 1)]
        s2 = src[base + min(2, m - 1)]
        s3 = src[base + min(3, m - 1)]
        for n in range(V):
            d[n] = bo + ((w0 * s0[n] + w1 * s1[n]) + (w2 * s2[n] + w3 * s3[n]))
        k = m
        while k + 8 <= K:
            w0, w1, w2, w3 = W[r, wo + k], W[r, wo + k + 1], W[r, wo + k + 2], W[r, wo + k + 3]
            w4, w5, w6, w7 = W[r, wo + k + 4], W[r, wo + k + 5], W[r, wo + k + 6], \
                W[r, wo + k + 7]
            s0, s1, s2, s3 = src[base + k], src[base + k + 1], src[base + k + 2], \
                src[base + k + 3]
            s4, s5, s6, s7 = src[base + k + 4], src[base + k + 5], src[base + k + 6], \
                src[base + k + 7]
            for n in range(V):
                d[n] += ((w0 * s0[n] + w1 * s1[n]) + (w2 * s2[n] + w3 * s3[n])) + \
                    ((w4 * s4[n] + w5 * s5[n]) + (w6 * s6[n] + w7 * s7[n]))
            k += 8
        while k + 4 <= K:
            w0, w1, w2, w3 = W[r, wo + k], W[r, wo + k + 1], W[r, wo + k + 2], W[r, wo + k + 3]
            s0, s1, s2, s3 = src[base + k], src[base + k + 1], src[base + k + 2], \
                src[base + k + 3]
            for n in range(V):
                d[n] += (w0 * s0[n] + w1 * s1[n]) + (w2 * s2[n] + w3 * s3[n])
            k += 4
        while k < K:
            w0 = W[r, wo + k]
            s0 = src[base + k]
            for n in range(V):
                d[n] += w0 * s0[n]
            k += 1
        if relu:
            for n in range(V):
                d[n] = max(d[n], zero)


@njit(cache=True, fastmath=FAST)
def backward_layer(W, K, f, delta, dW, db, want_prev, tmp):
    """Weight and bias gradients of a grouped layer, then (``want_prev``) the delta of the
    layer below written over its activations ``f`` (see the module docstring).

    ``W`` (n_out, n_in) dense (read only with ``want_prev``), ``f`` (n_in, V) the layer's
    input (post-ReLU), ``delta`` (n_out, V); ``dW`` (n_out, K) and ``db`` (n_out,) written;
    ``tmp`` (2, V) scratch. The weight gradient takes eight dot products at a time (two delta
    rows x four inputs share their loads); the input gradient two input rows at a time."""
    n_out, V = delta.shape
    G = f.shape[0] // K
    h = n_out // G
    zero = np.zeros(1, dW.dtype)[0]
    for j in range(G):
        base = j * K
        for r in range(j * h, (j + 1) * h):
            d = delta[r]
            sb = zero
            for n in range(V):
                sb += d[n]
            db[r] = sb
        r = j * h
        while r < (j + 1) * h:
            two = r + 1 < (j + 1) * h
            da = delta[r]
            dc = delta[r + 1] if two else da
            k = 0
            while k < K:
                m = min(4, K - k)
                f0 = f[base + k]
                f1 = f[base + k + min(1, m - 1)]
                f2 = f[base + k + min(2, m - 1)]
                f3 = f[base + k + min(3, m - 1)]
                a0 = zero
                a1 = zero
                a2 = zero
                a3 = zero
                c0 = zero
                c1 = zero
                c2 = zero
                c3 = zero
                for n in range(V):
                    x0 = f0[n]
                    x1 = f1[n]
                    x2 = f2[n]
                    x3 = f3[n]
                    a0 += da[n] * x0
                    a1 += da[n] * x1
                    a2 += da[n] * x2
                    a3 += da[n] * x3
                    c0 += dc[n] * x0
                    c1 += dc[n] * x1
                    c2 += dc[n] * x2
                    c3 += dc[n] * x3
                for q, (a, c) in enumerate(((a0, c0), (a1, c1), (a2, c2), (a3, c3))):
                    if q < m:
                        dW[r, k + q] = a
                        if two:
                            dW[r + 1, k + q] = c
                k += m
            r += 2
        if not want_prev:
            continue
        r0 = j * h
        t0 = tmp[0]
        t1 = tmp[1]
        k = 0
        while k < K:
            kb = k + 1 if k + 1 < K else k                   # a pair of inputs k, kb
            for n in range(V):
                t0[n] = zero
                t1[n] = zero
            o = 0
            while o < h:
                m = min(4, h - o)
                ra = r0 + o
                rb = r0 + o + min(1, m - 1)
                rc = r0 + o + min(2, m - 1)
                rd = r0 + o + min(3, m - 1)
                w0 = W[ra, base + k]
                w1 = W[rb, base + k] if m > 1 else zero
                w2 = W[rc, base + k] if m > 2 else zero
                w3 = W[rd, base + k] if m > 3 else zero
                v0 = W[ra, base + kb]
                v1 = W[rb, base + kb] if m > 1 else zero
                v2 = W[rc, base + kb] if m > 2 else zero
                v3 = W[rd, base + kb] if m > 3 else zero
                d0 = delta[ra]
                d1 = delta[rb]
                d2 = delta[rc]
                d3 = delta[rd]
                for n in range(V):
                    e0 = d0[n]
                    e1 = d1[n]
                    e2 = d2[n]
                    e3 = d3[n]
                    t0[n] += (w0 * e0 + w1 * e1) + (w2 * e2 + w3 * e3)
                    t1[n] += (v0 * e0 + v1 * e1) + (v2 * e2 + v3 * e3)
                o += m
            fa = f[base + k]
            for n in range(V):                               # the gate f > 0 (f = relu(g))
                fa[n] = t0[n] if fa[n] > 0 else zero
            if kb != k:
                fb = f[base + kb]
                for n in range(V):
                    fb[n] = t1[n] if fb[n] > 0 else zero
            k += 2


# ----------------------------------------------------------------------------- layers 1-2
# On binary leaves, layer 1 (groups of h units reading c leaves) has only P = 2**c input
# patterns per group, so its outputs are a table: f_1[(j, u), n] = relu(pre[j, p_j(n), u]),
# p_j(n) the pattern of group j's leaves in view n. Layers 1 and 2 then collapse, exactly,
# into one grouped layer on the pattern indicators I[j P + p, n] = [p_j(n) = p]:
#
#     g_2[o, n] = b_2[o] + sum_{i < c, p < P} A2[o, i P + p] I[(j' c + i) P + p, n]
#     A2[o, i P + p] = sum_u W_2[o, j' K_2 + i h + u] relu(pre[j' c + i, p, u])
#
# (c P inputs per unit instead of c h, and layer 1 is never evaluated per view); backward,
# with T[o, i P + p] = sum_n delta_2[o, n] I[(j' c + i) P + p, n] (the same dot products as a
# weight gradient), every gradient of layers 1 and 2 is a small contraction of T:
#
#     dW_2[o, i h + u] = sum_p relu(pre[j, p, u]) T[o, i P + p]
#     S[j, p, u] = sum_{o in group j'} W_2[o, j' K_2 + i h + u] T[o, i P + p]
#     dW_1[j h + u, t] = sum_p [pre[j, p, u] > 0] bit_t(p) S[j, p, u],   db_1 = same without bit_t
#
# Used when it does less work (P <= h + c: c <= 3 for h = 10).
@njit(cache=True)
def pattern_rows(lbits, N, H, c, ind):
    """``ind[j P + p, col] = 1.0`` where the leaves ``j c .. j c + c - 1`` of the view in
    column ``col`` read the bits of ``p`` (leaf ``j c + t`` is bit t), else 0.0. ``lbits``
    (2 + H, n_leaves, n_words) from ``sample_bits``; columns [anchors | positives |
    negatives, anchor-major]."""
    P = 1 << c
    G1 = lbits.shape[1] // c
    nw = lbits.shape[2]
    zero = np.uint64(0)
    one = np.uint64(1)
    for v in range(lbits.shape[0]):
        col0 = 0 if v == 0 else (N if v == 1 else 2 * N + v - 2)
        stride = 1 if v < 2 else H
        for j in range(G1):
            for p in range(P):
                row = ind[j * P + p]
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


@njit(cache=True, fastmath=FAST)
def leaf_tables(W1, b1, c, W2, K2, pre, A2):
    """Layer 1's pre-activation per pattern, ``pre[j, p, u] = b_1[j h + u] + sum_t
    W_1[j h + u, j c + t] bit_t(p)``, and the collapsed weights ``A2`` (n_2, c P) (see above)."""
    G1, P, h = pre.shape
    zero = np.zeros(1, pre.dtype)[0]
    for j in range(G1):
        for p in range(P):
            for u in range(h):
                r = j * h + u
                s = b1[r]
                for t in range(c):
                    if (p >> t) & 1:
                        s += W1[r, j * c + t]
                pre[j, p, u] = s
    n2 = W2.shape[0]
    h2 = n2 // (G1 // c)
    for o in range(n2):
        jp = o // h2
        for i in range(c):
            j = jp * c + i
            wb = jp * K2 + i * h
            for p in range(P):
                s = zero
                for u in range(h):
                    s += W2[o, wb + u] * max(pre[j, p, u], zero)
                A2[o, i * P + p] = s


@njit(cache=True, fastmath=FAST)
def leaf_grads(W2, K2, c, pre, T, dW2, dW1, db1, S):
    """The gradients of layers 1 and 2 from the pattern sums ``T`` (n_2, c P) (see above):
    ``dW2`` (n_2, K_2), ``dW1`` (n_1, c), ``db1`` (n_1,) written; ``S`` (G_1, P, h) scratch."""
    G1, P, h = pre.shape
    n2 = W2.shape[0]
    h2 = n2 // (G1 // c)
    zero = np.zeros(1, pre.dtype)[0]
    S[:, :, :] = zero
    for o in range(n2):
        jp = o // h2
        for i in range(c):
            j = jp * c + i
            wb = jp * K2 + i * h
            for u in range(h):
                dW2[o, i * h + u] = zero
            for p in range(P):
                t = T[o, i * P + p]
                for u in range(h):
                    dW2[o, i * h + u] += max(pre[j, p, u], zero) * t
                    S[j, p, u] += W2[o, wb + u] * t
    for j in range(G1):
        for u in range(h):
            r = j * h + u
            sb = zero
            for t in range(c):
                dW1[r, t] = zero
            for p in range(P):
                v = S[j, p, u] if pre[j, p, u] > 0 else zero
                sb += v
                for t in range(c):
                    if (p >> t) & 1:
                        dW1[r, t] += v
            db1[r] = sb


# ----------------------------------------------------------------------------- the output
@njit(cache=True, fastmath=FAST)
def top_chain(Z, Y, dY, normalize, eps, N, H, code, tau, margin, r_pos, r_neg, c_pos,
              c_neg, scratch):
    """The output side of a step: ``Y = Z / (||Z|| + eps)`` per view (``normalize``), the
    distances ``r_pos[a] = ½||y_a - y_{N+a}||²``, ``r_neg[a, k] = ½||y_a - y_{2N+aH+k}||²``,
    the loss weights ``c = dL/dr / N`` (``mlp.loss_weights``) and their chain to the outputs
    (``losses.chain_triples``), then through the normalisation
    (``layers.l2_normalize_backward``); ``dL/dZ`` is written over ``Z`` (``Y``, ``dY``
    (d, V), ``scratch`` (2, V)). Loops run over views, innermost. Returns ``(sum L,
    sum r_pos, sum r_neg, finite)``: not finite (and nothing written) when Z is not."""
    d, V = Z.shape
    nrm = scratch[0]
    bad = False
    for i in range(d):
        for n in range(V):
            bad |= not np.isfinite(Z[i, n])
    if bad:
        return np.nan, np.nan, np.nan, False
    Yv = Y if normalize else Z
    if normalize:
        nrm[:] = 0.0
        for i in range(d):
            for n in range(V):
                nrm[n] += Z[i, n] * Z[i, n]
        for n in range(V):
            nrm[n] = math.sqrt(nrm[n])
        for i in range(d):
            for n in range(V):
                s = nrm[n] + eps
                Y[i, n] = Z[i, n] * (1.0 / s if s > 0 else 0.0)
    r_pos[:] = 0.0
    r_neg[:, :] = 0.0
    for i in range(d):
        y = Yv[i]
        for a in range(N):
            u = y[a] - y[N + a]
            r_pos[a] += u * u
        for k in range(H):
            for a in range(N):
                u = y[a] - y[2 * N + a * H + k]
                r_neg[a, k] += u * u
    r_pos *= 0.5
    r_neg *= 0.5
    sL, sp, sn = loss_weights(r_pos, r_neg, code, tau, margin, c_pos, c_neg, 0, N)
    out = dY if normalize else Z
    ga = scratch[1]                                          # the anchors' sums
    for i in range(d):
        y = Yv[i]
        o = out[i]
        for a in range(N):
            ga[a] = c_pos[a] * (y[a] - y[N + a])
        for k in range(H):
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
        return sL, sp, sn, True
    for n in range(V):                                       # dz = (dy - y (y.dy) s/|z|)/s
        yd = 0.0
        for i in range(d):
            yd += Y[i, n] * dY[i, n]
        sc = nrm[n] + eps
        inv = 1.0 / sc if sc > 0 else 0.0
        ratio = sc / nrm[n] if nrm[n] > 0 else 0.0
        for i in range(d):
            Z[i, n] = (dY[i, n] - Y[i, n] * yd * ratio) * inv
    return sL, sp, sn, True


@njit(cache=True, fastmath=FAST)
def sgd_layer(W, K, dW, V, b, db, vb, lr, momentum, wd, bias):
    """``v = momentum v + (g + wd p)``, ``p -= lr v`` (``optim.SGD``) on the live weights
    of a grouped layer (``W`` dense; ``dW``, ``V`` compact (n_out, K)) and, with ``bias``, on
    ``b`` (``db``, ``vb``)."""
    n_out, n_in = W.shape
    h = n_out // (n_in // K)
    for r in range(n_out):
        base = (r // h) * K
        for k in range(K):
            g = dW[r, k]
            if wd != 0:
                g = g + wd * W[r, base + k]
            if momentum != 0:
                g = momentum * V[r, k] + g
                V[r, k] = g
            W[r, base + k] -= lr * g
        if bias:
            g = db[r]
            if wd != 0:
                g = g + wd * b[r]
            if momentum != 0:
                g = momentum * vb[r] + g
                vb[r] = g
            b[r] -= lr * g


# ----------------------------------------------------------------------------- the epoch
@njit(cache=True)
def run_steps(seeds, n_top, parent, thr, zbits, lbits, N, H, Ws, bs, Ks, bias, normalize,
              eps, code, tau, margin, lr, momentum, wd, Vs, vbs, dWs, dbs, acts, Y, pat, pre,
              A2, stats):
    """``len(seeds)`` SGD steps (see the module docstring); ``stats[s] = (mean L, mean r_pos,
    mean r_neg)``. With ``pat`` layers 1 and 2 run collapsed on the pattern indicators
    (``acts[0]`` holds them, ``acts[1]`` is unused; ``pre``, ``A2`` their tables).
    Returns the number of steps completed: a step whose output is not finite stops the run
    before its update (its ``stats`` NaN)."""
    L = len(Ws)
    dt = acts[0].dtype
    V = acts[0].shape[1]
    r_pos = np.empty(N, dt)
    r_neg = np.empty((N, H), dt)
    c_pos = np.empty(N, dt)
    c_neg = np.empty((N, H), dt)
    dY = np.empty_like(Y)
    tmp = np.empty((2, V), dt)
    c = Ks[0]
    first = 2 if pat else 0
    T = np.empty_like(A2)
    S = np.empty_like(pre)
    for s in range(seeds.shape[0]):
        sample_bits(seeds[s], n_top, parent, thr, zbits, lbits)
        if pat:
            pattern_rows(lbits, N, H, c, acts[0])
            leaf_tables(Ws[0], bs[0], c, Ws[1], Ks[1], pre, A2)
            forward_layer(A2, bs[1], A2.shape[1], False, acts[0], acts[2], L > 2)
        else:
            x = acts[0]
            unpack_bits(lbits[0], N, x, 0, 1)
            unpack_bits(lbits[1], N, x, N, 1)
            for k in range(H):
                unpack_bits(lbits[2 + k], N, x, 2 * N + k, H)
        for l in range(first, L):
            forward_layer(Ws[l], bs[l], Ks[l], True, acts[l], acts[l + 1], l < L - 1)
        sL, sp, sn, ok = top_chain(acts[L], Y, dY, normalize, eps, N, H, code, tau, margin,
                                   r_pos, r_neg, c_pos, c_neg, tmp)
        if not ok:
            stats[s, :] = np.nan
            return s
        for l in range(L - 1, first - 1, -1):
            backward_layer(Ws[l], Ks[l], acts[l], acts[l + 1], dWs[l], dbs[l], l > 0, tmp)
        if pat:
            backward_layer(A2, A2.shape[1], acts[0], acts[2], T, dbs[1], False, tmp)
            leaf_grads(Ws[1], Ks[1], c, pre, T, dWs[1], dWs[0], dbs[0], S)
        for l in range(L):
            sgd_layer(Ws[l], Ks[l], dWs[l], Vs[l], bs[l], dbs[l], vbs[l], lr, momentum, wd,
                      bias)
        stats[s, 0] = sL / N
        stats[s, 1] = sp / N
        stats[s, 2] = sn / (N * H)
    return seeds.shape[0]


def tree_groups(sizes, masks):
    """``K_l`` per layer if the masks are those of a tree network (every layer block-diagonal
    with equal, contiguous groups: unit r of group j = r // h reads exactly inputs
    ``j K .. j K + K - 1``) with at most ``mlp.FUSED_MAX_WEIGHTS`` live weights, else None."""
    if masks is None or len(masks) != len(sizes) - 1:
        return None
    if sum(int(np.count_nonzero(m)) for m in masks if m is not None) > FUSED_MAX_WEIGHTS:
        return None
    Ks = []
    for l, m in enumerate(masks):
        if m is None:
            return None
        m = np.asarray(m) != 0
        cnt = m.sum(axis=1)
        K = int(cnt[0]) if cnt.size else 0
        if K == 0 or sizes[l] % K or sizes[l + 1] % (sizes[l] // K):
            return None
        G = sizes[l] // K
        h = sizes[l + 1] // G
        want = np.kron(np.eye(G, dtype=bool), np.ones((h, K), bool))
        if m.shape != want.shape or not np.array_equal(m, want):
            return None
        Ks.append(K)
    return Ks


class TreeEpoch:
    """Runs chunks of SGD steps of a tree network on an HLTM in one compiled call each
    (twin of ``train.train``'s loop with ``sampler="compiled"``; see the module docstring).

    Built once per run from the net's arrays (weights and biases are updated in place, so the
    network is current after every chunk), its ``Ks`` (``tree_groups``), the tree, the loss
    and the SGD settings; it holds the momentum buffers and the work buffers.
    ``run(rng, k)`` draws k seeds from ``rng`` (``Sampler.seeds``: the stream
    ``kernels.hltm.triples`` draws) and returns ``stats`` (k', 3) of the k' <= k steps run:
    (loss, mean r_pos, mean r_neg) per step; k' < k when step k' + 1 was not finite (its
    update not applied)."""

    def __init__(self, weights, biases, Ks, tree, batch_size, loss, tau, margin, lr,
                 momentum=0.0, weight_decay=0.0, normalize=False, eps=0.0, patterns=None):
        self.Ws = tuple(weights)
        dt = self.Ws[0].dtype
        self.bias = biases is not None
        self.bs = tuple(biases) if self.bias else tuple(np.zeros(W.shape[0], dt)
                                                        for W in self.Ws)
        self.Ks = np.asarray(Ks, np.int64)
        self.sampler = Sampler(tree)
        self.N, self.H = int(batch_size), tree.negatives
        self.zbits, self.lbits = self.sampler.buffers(self.N)
        V = self.N * (2 + self.H)
        sizes = [self.Ws[0].shape[1]] + [W.shape[0] for W in self.Ws]
        c, h1 = int(Ks[0]), sizes[1] // (sizes[0] // int(Ks[0]))
        self.pat = len(self.Ws) >= 2 and (2 ** c <= h1 + c if patterns is None else patterns)
        if self.pat:                                         # layers 1-2 collapsed
            P, G1 = 2 ** c, sizes[0] // c
            sizes[0], sizes[1] = G1 * P, 1
            self.pre = np.empty((G1, P, h1), dt)
            self.A2 = np.empty((sizes[2], c * P), dt)
        else:
            self.pre, self.A2 = np.empty((1, 1, 1), dt), np.empty((1, 1), dt)
        self.acts = tuple(np.empty((n, V), dt) for n in sizes)
        self.Y = np.empty((sizes[-1], V), dt)
        self.dWs = tuple(np.zeros((W.shape[0], K), dt) for W, K in zip(self.Ws, Ks))
        self.Vs = tuple(np.zeros_like(d) for d in self.dWs)
        self.dbs = tuple(np.zeros(W.shape[0], dt) for W in self.Ws)
        self.vbs = tuple(np.zeros_like(d) for d in self.dbs)
        self.loss = (LOSS_CODES[loss], float(tau), float(margin))
        self.sgd = (float(lr), float(momentum), float(weight_decay))
        self.norm = (bool(normalize), float(eps))

    groups = staticmethod(tree_groups)

    def run(self, rng, k):
        seeds = Sampler.seeds(rng, k)
        stats = np.zeros((k, 3))
        sam = self.sampler
        with np.errstate(over="ignore"):                     # wrapping uint64 arithmetic
            done = run_steps(seeds, sam.n_top, sam.parent, sam.thr, self.zbits, self.lbits,
                             self.N, self.H, self.Ws, self.bs, self.Ks, self.bias,
                             self.norm[0], self.norm[1], *self.loss, *self.sgd, self.Vs,
                             self.vbs, self.dWs, self.dbs, self.acts, self.Y, self.pat,
                             self.pre, self.A2, stats)
        return stats[:done + (done < k)]
