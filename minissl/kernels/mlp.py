"""Numba kernels for small and masked bias-free ReLU networks (backend="numba").

The NumPy functions ``nets.forward_pass`` / ``nets.backward_pass`` and
``train.loss_and_grads`` stay the reference; the functions here keep their signatures (plus
one optional ``structure`` argument) and return the same arrays to rounding.

Layout. Inside the kernels activations are *feature-major*: ``fT`` is (n_l, N), so the
innermost loop runs over the batch, contiguous in memory, and vectorises:

    gT[i, :] = sum_{j in cols_i} W[i, j] * fT[j, :]          # masked layer, (n_l, N)

A masked layer is stored as its row structure ``(cols, cnt)``: unit i reads the ``cnt[i]``
inputs ``cols[i, :cnt[i]]`` (``row_structure``). The HLTM tree network is such a layer
stack: a group of ``hid`` units reads only its children's ``num_children * hid`` inputs, so
the kernels never multiply the zeros of the mask. Dense layers go to BLAS (``np.dot``),
which no hand-written loop beats for large widths.

Backward of ``sum(delta_L * g_L)`` (DESIGN.md §1), feature-major:

    dW[i, j]        = deltaT[i, :] . fT[j, :]        for j in cols_i (zero elsewhere)
    deltaT_prev[j]  = sum_{i: j in cols_i} W[i, j] deltaT[i, :],  then * (g_prev > 0)

The fused training step (``fused_loss_and_grads``, given negatives) is one compiled call:
the forward of all views of a batch, the distances ``r_pos``, ``r_neg``, the loss weights
``dL/dr`` (compiled twins of ``losses.py``, tested against it), their chain to the embeddings
and the whole backward. Forward and backward can be split over anchors into one chunk per
Numba thread (``prange``): every anchor's views are in its chunk, so chunks are independent
and only the weight gradients are summed at the end.

Every kernel is ``@njit(cache=True)``: the first call in a fresh environment compiles (a few
seconds) and writes the machine code to ``__pycache__``; later processes load it.
With ``NUMBA_DISABLE_JIT=1`` the same functions run as plain Python (tests use this for
coverage).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

MIN_CHUNK = 16          # anchors per thread below which the fused step stays serial
FUSED_MAX_WEIGHTS = 1 << 18   # larger nets: the fused loops lose to BLAS, take the general path
THREADS = 1             # default chunks of the fused step (see docs/performance.md)
SERIAL_CHUNK = 128      # anchors per chunk of the serial fused step


# ----------------------------------------------------------------------------- structure
def row_structure(mask):
    """Row structure of a 0/1 mask (n_out, n_in): ``(cols, cnt)``.

    ``cnt[i]`` (int64) is the number of inputs unit i reads and ``cols[i, :cnt[i]]`` (int64,
    (n_out, max(cnt)) padded with 0) their indices in increasing order.
    """
    m = np.asarray(mask) != 0
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (n_out, n_in), got shape {m.shape}")
    cnt = m.sum(axis=1).astype(np.int64)
    kmax = max(int(cnt.max()) if cnt.size else 0, 1)
    cols = np.zeros((m.shape[0], kmax), np.int64)
    for i in range(m.shape[0]):
        idx = np.flatnonzero(m[i])
        cols[i, :idx.size] = idx
    return cols, cnt


def dense_structure(n_out, n_in):
    """Row structure of a dense layer: every unit reads every input."""
    return (np.broadcast_to(np.arange(n_in, dtype=np.int64), (n_out, n_in)).copy(),
            np.full(n_out, n_in, np.int64))


def net_structure(net):
    """Per layer ``(cols, cnt)`` for masked layers and None for dense ones (cached on the net)."""
    cached = getattr(net, "_numba_structure", None)
    if cached is not None and cached[0] is net.masks:
        return cached[1]
    from ..backend import to_numpy
    L = len(net.weights)
    st = [None] * L if net.masks is None else [
        None if m is None else row_structure(to_numpy(m)) for m in net.masks]
    net._numba_structure = (net.masks, st)
    return st


# ----------------------------------------------------------------------------- layer kernels
@njit(cache=True, inline="always")
def _w(W, i, j, trans):
    """``W[i, j]``, or ``W[j, i]`` when ``trans``."""
    return W[j, i] if trans else W[i, j]


@njit(cache=True, fastmath=True)
def _gather_axpy(W, cols, cnt, src, dst, relu=False, trans=False):
    """``dst[i, :] = sum_k w_ik src[cols[i, k], :]`` with ``w_ik = W[i, cols[i, k]]``, or
    ``W[cols[i, k], i]`` when ``trans`` (the transposed product), then ``max(., 0)`` if ``relu``.

    The sum over k is unrolled (the first four inputs write the row, then eight, four, two or
    one at a time accumulate) so that each ``dst`` row is read and written once per several
    inputs; the loop over the batch (contiguous) vectorises.
    """
    N = dst.shape[1]
    zero = np.zeros(1, dst.dtype)[0]
    for i in range(dst.shape[0]):
        c = cnt[i]
        if c == 0:
            for n in range(N):
                dst[i, n] = zero
            continue
        m = min(c, 4)
        j0 = cols[i, 0]
        j1 = cols[i, 1] if m > 1 else j0
        j2 = cols[i, 2] if m > 2 else j0
        j3 = cols[i, 3] if m > 3 else j0
        w0 = _w(W, i, cols[i, 0], trans)
        w1 = _w(W, i, cols[i, 1], trans) if m > 1 else zero
        w2 = _w(W, i, cols[i, 2], trans) if m > 2 else zero
        w3 = _w(W, i, cols[i, 3], trans) if m > 3 else zero
        last = relu and c == m
        for n in range(N):
            v = (w0 * src[j0, n] + w1 * src[j1, n]) + (w2 * src[j2, n] + w3 * src[j3, n])
            dst[i, n] = max(v, zero) if last else v
        k = m
        while k + 8 <= c:
            j0, j1, j2, j3 = cols[i, k], cols[i, k + 1], cols[i, k + 2], cols[i, k + 3]
            j4, j5, j6, j7 = cols[i, k + 4], cols[i, k + 5], cols[i, k + 6], cols[i, k + 7]
            w0, w1, w2, w3 = _w(W, i, cols[i, k], trans), _w(W, i, cols[i, k + 1], trans), _w(W, i, cols[i, k + 2], trans), _w(W, i, cols[i, k + 3], trans)
            w4, w5, w6, w7 = _w(W, i, cols[i, k + 4], trans), _w(W, i, cols[i, k + 5], trans), _w(W, i, cols[i, k + 6], trans), _w(W, i, cols[i, k + 7], trans)
            for n in range(N):
                dst[i, n] += ((w0 * src[j0, n] + w1 * src[j1, n])
                              + (w2 * src[j2, n] + w3 * src[j3, n])) \
                    + ((w4 * src[j4, n] + w5 * src[j5, n]) + (w6 * src[j6, n] + w7 * src[j7, n]))
            k += 8
        while k + 4 <= c:
            j0, j1, j2, j3 = cols[i, k], cols[i, k + 1], cols[i, k + 2], cols[i, k + 3]
            w0, w1, w2, w3 = _w(W, i, cols[i, k], trans), _w(W, i, cols[i, k + 1], trans), _w(W, i, cols[i, k + 2], trans), _w(W, i, cols[i, k + 3], trans)
            for n in range(N):
                dst[i, n] += (w0 * src[j0, n] + w1 * src[j1, n]) + \
                    (w2 * src[j2, n] + w3 * src[j3, n])
            k += 4
        while k + 2 <= c:
            j0, j1 = cols[i, k], cols[i, k + 1]
            w0, w1 = _w(W, i, cols[i, k], trans), _w(W, i, cols[i, k + 1], trans)
            for n in range(N):
                dst[i, n] += w0 * src[j0, n] + w1 * src[j1, n]
            k += 2
        if k < c:
            j0 = cols[i, k]
            w0 = _w(W, i, cols[i, k], trans)
            for n in range(N):
                dst[i, n] += w0 * src[j0, n]
        if relu and c > 4:
            for n in range(N):
                dst[i, n] = max(dst[i, n], zero)


@njit(cache=True)
def masked_matmul_fm(W, cols, cnt, fT, gT):
    """``gT[i, :] = sum_k W[i, cols[i,k]] fT[cols[i,k], :]``: W (n_out, n_in), fT (n_in, N),
    gT (n_out, N) written in place (feature-major forward of a masked layer)."""
    _gather_axpy(W, cols, cnt, fT, gT)


@njit(cache=True, fastmath=True)
def masked_grad_fm(dT, fT, cols, cnt, dW):
    """``dW[i, j] = dT[i, :] . fT[j, :]`` for ``j in cols_i``; zero elsewhere.

    dT (n_out, N), fT (n_in, N), dW (n_out, n_in) written in place (a masked ``delta.T @ f``).
    """
    dW[:, :] = 0.0
    _grad_compact(dT, fT, cols, cnt, dW, True)


@njit(cache=True, fastmath=True)
def _grad_compact(dT, fT, cols, cnt, out, dense_out):
    """Dot products ``dT[i, :] . fT[cols[i,k], :]``: into ``out[i, cols[i,k]]`` when
    ``dense_out`` else added to ``out[i, k]``. Four dot products share each load of dT[i]."""
    N = dT.shape[1]
    zero = np.zeros(1, out.dtype)[0]                         # accumulate in the array dtype
    for i in range(dT.shape[0]):
        c = cnt[i]
        k = 0
        while k < c:
            m = min(4, c - k)
            if m == 2:                                       # a pair (binary-tree leaves)
                j0, j1 = cols[i, k], cols[i, k + 1]
                s0 = zero
                s1 = zero
                for n in range(N):
                    d = dT[i, n]
                    s0 += d * fT[j0, n]
                    s1 += d * fT[j1, n]
                if dense_out:
                    out[i, j0] = s0
                    out[i, j1] = s1
                else:
                    out[i, k] += s0
                    out[i, k + 1] += s1
                k += 2
                continue
            j0 = cols[i, k]
            j1 = cols[i, k + 1] if m > 1 else j0
            j2 = cols[i, k + 2] if m > 2 else j0
            j3 = cols[i, k + 3] if m > 3 else j0
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            for n in range(N):
                d = dT[i, n]
                s0 += d * fT[j0, n]
                s1 += d * fT[j1, n]
                s2 += d * fT[j2, n]
                s3 += d * fT[j3, n]
            if dense_out:
                out[i, j0] = s0
                if m > 1:
                    out[i, j1] = s1
                if m > 2:
                    out[i, j2] = s2
                if m > 3:
                    out[i, j3] = s3
            else:
                out[i, k] += s0
                if m > 1:
                    out[i, k + 1] += s1
                if m > 2:
                    out[i, k + 2] += s2
                if m > 3:
                    out[i, k + 3] += s3
            k += m


@njit(cache=True)
def masked_backprop_fm(W, cols, cnt, dT, outT):
    """``outT[j, :] = sum_{i: j in cols_i} W[i, j] dT[i, :]`` (a masked ``W.T @ dT``).

    W (n_out, n_in), dT (n_out, N), outT (n_in, N) written in place.
    """
    N = dT.shape[1]
    outT[:, :] = 0.0
    for i in range(W.shape[0]):
        for k in range(cnt[i]):
            j = cols[i, k]
            w = W[i, j]
            for n in range(N):
                outT[j, n] += w * dT[i, n]


@njit(cache=True)
def masked_backprop_t_fm(W, colsT, cntT, dT, outT):
    """Same product as ``masked_backprop_fm`` from the transposed structure
    (``colsT[j, :cntT[j]]``: the units reading input j): each ``outT`` row is written once."""
    _gather_axpy(W, colsT, cntT, dT, outT, False, True)


@njit(cache=True)
def relu_fm(gT, fT):
    """``fT = max(gT, 0)`` elementwise (same shapes)."""
    a, b = gT.shape
    zero = np.zeros(1, fT.dtype)[0]
    for i in range(a):
        for n in range(b):
            fT[i, n] = max(gT[i, n], zero)


@njit(cache=True)
def gate_fm(dT, gT):
    """``dT *= (gT > 0)`` in place: the ReLU gate ``D_l`` of the backward pass."""
    a, b = dT.shape
    zero = np.zeros(1, dT.dtype)[0]
    for i in range(a):
        for n in range(b):
            dT[i, n] = dT[i, n] if gT[i, n] > 0 else zero


# ----------------------------------------------------------------------------- net passes
def forward_pass(weights, biases, x, xp=np, structure=None):
    """Twin of ``nets.forward_pass``: returns ``(gs, fs)`` with ``gs[l]`` (N, n_{l+1}) and
    ``fs[l]`` (N, n_l), ``fs[0] = x``. ``structure[l]`` is ``(cols, cnt)`` for a masked layer
    (its zero weights are skipped) or None (dense: BLAS). The arrays returned are transposed
    views of feature-major buffers (F-ordered); their values equal the NumPy twin's."""
    L = len(weights)
    structure = structure or [None] * L
    fT = np.ascontiguousarray(x.T)                           # (n_0, N)
    fs, gs = [x], []
    for l, W in enumerate(weights):
        st = structure[l]
        if st is None:
            gT = np.dot(W, fT)                               # (n_l, N)
        else:
            gT = np.empty((W.shape[0], fT.shape[1]), dtype=W.dtype)
            masked_matmul_fm(W, st[0], st[1], fT, gT)
        if biases is not None and biases[l] is not None:
            gT += biases[l][:, None]
        gs.append(gT.T)
        if l < L - 1:
            fT = np.empty_like(gT)
            relu_fm(gT, fT)
            fs.append(fT.T)
    return gs, fs


def backward_pass(weights, gs, fs, delta, masks=None, want_bias=False, want_input=False,
                  structure=None):
    """Twin of ``nets.backward_pass``: gradients of ``sum(delta * g_L)``.

    Returns ``(dWs, dbs, dx)`` exactly as the NumPy twin (masked entries of ``dWs`` are zero).
    With ``structure`` given, masked layers use the sparse kernels; ``masks`` then only
    matters for layers whose structure is None.
    """
    L = len(weights)
    structure = structure or [None] * L
    dWs, dbs = [None] * L, [None] * L
    dT = np.ascontiguousarray(delta.T)                       # (n_L, N)
    for l in range(L - 1, -1, -1):
        W, st = weights[l], structure[l]
        fT = np.ascontiguousarray(fs[l].T)                   # (n_l, N); a view if fs came from forward_pass
        if st is None:
            dW = np.dot(dT, fT.T)                            # (n_{l+1}, n_l)
            if masks is not None and masks[l] is not None:
                dW *= masks[l]
        else:
            dW = np.empty(W.shape, dtype=W.dtype)
            masked_grad_fm(dT, fT, st[0], st[1], dW)
        dWs[l] = dW
        if want_bias:
            dbs[l] = dT.sum(axis=1)
        if l > 0 or want_input:
            if st is None:
                nT = np.dot(W.T, dT)                         # (n_l, N)
            else:
                nT = np.empty((W.shape[1], dT.shape[1]), dtype=dT.dtype)
                masked_backprop_fm(W, st[0], st[1], dT, nT)
            if l > 0:
                gate_fm(nT, np.ascontiguousarray(gs[l - 1].T))
            dT = nT
    return dWs, (dbs if want_bias else None), (dT.T if want_input else None)


# ----------------------------------------------------------------------------- fused step
# Per chunk c of anchors [a0, a1) (nb = a1 - a0, H negatives) the columns of every
# feature-major buffer are [anchors | positives | negatives (anchor-major)], nc = nb (2 + H).
# ``acts[c]`` holds f_0 .. f_{L-1} and g_L of the chunk: layer l's (n_l, nc) block starts at
# ``aoffs[l] * ncmax`` (a C-contiguous reshape of a 1-D slice).
LOSS_CODES = {"simple": 0, "soft_triplet": 1, "infonce": 2, "ref_nce": 3}


@njit(cache=True)
def _chunk_bounds(N, nchunks, c):
    return (N * c) // nchunks, (N * (c + 1)) // nchunks


@njit(cache=True)
def _layer_view(buf, aoffs, ncmax, l, n, nc):
    start = aoffs[l] * ncmax
    return buf[start:start + n * nc].reshape((n, nc))


@njit(cache=True)
def _forward_chunk(Ws, cols, cnts, x, x_pos, x_neg, a0, a1, buf, aoffs, ncmax, r_pos, r_neg):
    """Forward of one chunk's views and their distances ``r_pos[a]``, ``r_neg[a, k]``.
    Returns False when the output is not finite."""
    L = len(Ws)
    nb = a1 - a0
    H = x_neg.shape[1]
    nc = nb * (2 + H)
    n0 = x.shape[1]
    f = _layer_view(buf, aoffs, ncmax, 0, n0, nc)           # (n_0, nc)
    for j in range(n0):                                      # transpose in, rows written in order
        for a in range(nb):
            f[j, a] = x[a0 + a, j]
        for a in range(nb):
            f[j, nb + a] = x_pos[a0 + a, j]
        for a in range(nb):
            for k in range(H):
                f[j, 2 * nb + a * H + k] = x_neg[a0 + a, k, j]
    for l in range(L):
        g = _layer_view(buf, aoffs, ncmax, l + 1, Ws[l].shape[0], nc)    # (n_l, nc)
        _gather_axpy(Ws[l], cols[l], cnts[l], f, g, l < L - 1)    # f_l = relu(g_l), gate f_l > 0
        f = g
    d = f.shape[0]
    for i in range(d):
        for n in range(nc):
            if not np.isfinite(f[i, n]):
                return False
    for a in range(nb):
        s = 0.0
        for i in range(d):
            u = f[i, a] - f[i, nb + a]
            s += u * u
        r_pos[a0 + a] = 0.5 * s
        for k in range(H):
            ck = 2 * nb + a * H + k
            s = 0.0
            for i in range(d):
                u = f[i, a] - f[i, ck]
                s += u * u
            r_neg[a0 + a, k] = 0.5 * s
    return True


@njit(cache=True)
def _backward_chunk(Ws, cols, cnts, colsT, cntsT, a0, a1, H, buf, aoffs, ncmax, c_pos, c_neg,
                    part, goffs, scratch):
    """Chain ``c_pos = dL/dr_pos / N``, ``c_neg = dL/dr_neg / N`` to the chunk's outputs
    (``losses.chain_triples``), backward through the layers and add the compact weight
    gradients ``dW[i, cols[i,k]]`` into ``part[goffs[l] + i*kmax + k]``.
    ``scratch`` (2, max n_l * ncmax) holds the two deltas (preallocated: no page faults per
    step)."""
    L = len(Ws)
    nb = a1 - a0
    nc = nb * (2 + H)
    d = cols[L - 1].shape[0]
    Z = _layer_view(buf, aoffs, ncmax, L, d, nc)             # (n_L, nc)
    dT = scratch[0, :d * nc].reshape((d, nc))
    dT[:, :] = 0.0
    side = 0
    for a in range(nb):
        cp = c_pos[a0 + a]
        for i in range(d):
            u = cp * (Z[i, a] - Z[i, nb + a])
            dT[i, a] += u
            dT[i, nb + a] -= u
        for k in range(H):
            ck = 2 * nb + a * H + k
            cn = c_neg[a0 + a, k]
            for i in range(d):
                u = cn * (Z[i, a] - Z[i, ck])
                dT[i, a] += u
                dT[i, ck] -= u
    for l in range(L - 1, -1, -1):
        n_out, kmax = cols[l].shape
        n_in = cntsT[l].shape[0]
        fT = _layer_view(buf, aoffs, ncmax, l, n_in, nc)    # f_l (n_in, nc)
        g = part[goffs[l]:goffs[l] + n_out * kmax].reshape((n_out, kmax))
        _grad_compact(dT, fT, cols[l], cnts[l], g, False)
        if l > 0:
            side = 1 - side
            nT = scratch[side, :n_in * nc].reshape((n_in, nc))
            _gather_axpy(Ws[l], colsT[l], cntsT[l], dT, nT, False, True)
            gate_fm(nT, fT)                                  # fT = relu(g_l): the same gate
            dT = nT


@njit(cache=True)
def _scatter(cols, cnts, part, goffs, dWs):
    """``dWs[l][i, cols[i,k]] = sum_c part[c, goffs[l] + i*kmax + k]``, zeros elsewhere."""
    nchunks = part.shape[0]
    for l in range(len(dWs)):
        dW = dWs[l]
        dW[:, :] = 0.0
        cl = cols[l]
        kmax = cl.shape[1]
        for i in range(dW.shape[0]):
            for k in range(cnts[l][i]):
                s = part[0, goffs[l] + i * kmax + k]
                for c in range(1, nchunks):
                    s += part[c, goffs[l] + i * kmax + k]
                dW[i, cl[i, k]] = s


@njit(cache=True)
def _loss_weights(r_pos, r_neg, code, tau, margin, c_pos, c_neg, a0, a1):
    """Twin of ``losses.simple/soft_triplet/infonce/ref_nce`` for anchors ``a0 <= a < a1`` of
    a batch of N = len(r_pos): writes ``c_pos = dL/dr_pos / N`` and ``c_neg = dL/dr_neg / N``;
    returns the sums of L, r_pos and r_neg over the range. ``ref_nce`` (batch means) needs
    the whole batch: ``a0 = 0, a1 = N``."""
    N, H = r_neg.shape
    sL = 0.0
    sp = 0.0
    sn = 0.0
    for a in range(a0, a1):
        sp += r_pos[a]
        for k in range(H):
            sn += r_neg[a, k]
    if code == 3:                                            # ref_nce, on batch means
        u = (sn / N - sp / N) / tau
        e = math.exp(-abs(u))
        s = 1.0 / (1.0 + e) if u >= 0 else e / (1.0 + e)
        w = s * (1.0 - s) / tau
        for a in range(N):
            c_pos[a] = w / N
            c_neg[a, 0] = -w / N
        return -s * N, sp, sn
    for a in range(a0, a1):
        rp = float(r_pos[a])
        if code == 0:                                        # simple
            Lv = rp - r_neg[a, 0]
            dpos = 1.0
            c_neg[a, 0] = -1.0 / N
        elif code == 1:                                      # soft triplet
            u = (rp - r_neg[a, 0] + margin) / tau
            e = math.exp(-abs(u))
            s = 1.0 / (1.0 + e) if u >= 0 else e / (1.0 + e)
            Lv = tau * (max(u, 0.0) + math.log1p(e))
            dpos = s
            c_neg[a, 0] = -s / N
        else:                                                # InfoNCE, log-sum-exp
            amax = -rp / tau
            for k in range(H):
                amax = max(amax, -r_neg[a, k] / tau)
            se = math.exp(-rp / tau - amax)
            for k in range(H):
                se += math.exp(-r_neg[a, k] / tau - amax)
            dpos = 0.0
            for k in range(H):
                p = math.exp(-r_neg[a, k] / tau - amax) / se
                c_neg[a, k] = -p / N
                dpos += p
            Lv = rp + tau * (amax + math.log(se))
        c_pos[a] = dpos / N
        sL += Lv
    return sL, sp, sn


@njit(cache=True)
def _chunk_step(Ws, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin, acts, aoffs,
                ncmax, goffs, part, scratch, r_pos, r_neg, c_pos, c_neg, stats, c):
    """Forward, per-anchor loss weights and backward of chunk c (losses other than
    ``ref_nce``): writes ``stats[c] = (sum L, sum r_pos, sum r_neg, finite)``."""
    N = x.shape[0]
    a0, a1 = _chunk_bounds(N, acts.shape[0], c)
    if not _forward_chunk(Ws, cols, cnts, x, x_pos, x_neg, a0, a1, acts[c], aoffs, ncmax,
                          r_pos, r_neg):
        stats[c, 3] = 0.0
        return
    sL, sp, sn = _loss_weights(r_pos, r_neg, code, tau, margin, c_pos, c_neg, a0, a1)
    stats[c, 0] = sL
    stats[c, 1] = sp
    stats[c, 2] = sn
    stats[c, 3] = 1.0
    part[c, :] = 0.0
    _backward_chunk(Ws, cols, cnts, colsT, cntsT, a0, a1, x_neg.shape[1], acts[c], aoffs, ncmax,
                    c_pos, c_neg, part[c], goffs, scratch[c])


@njit(cache=True)
def _fused_serial(Ws, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin, acts,
                  aoffs, ncmax, goffs, part, scratch, dWs):
    """The whole step: forward, distances, loss weights, backward, gradients, over the
    ``acts.shape[0]`` chunks of anchors one after the other.
    Returns ``(mean L, mean r_pos, mean r_neg, finite)``."""
    N = x.shape[0]
    H = x_neg.shape[1]
    nchunks = acts.shape[0]
    dt = Ws[0].dtype
    r_pos = np.empty(N, dt)
    r_neg = np.empty((N, H), dt)
    c_pos = np.empty(N, dt)
    c_neg = np.empty((N, H), dt)
    stats = np.zeros((nchunks, 4))
    if code == 3:                                            # batch-level loss: two phases
        for c in range(nchunks):
            a0, a1 = _chunk_bounds(N, nchunks, c)
            if not _forward_chunk(Ws, cols, cnts, x, x_pos, x_neg, a0, a1, acts[c], aoffs,
                                  ncmax, r_pos, r_neg):
                return np.nan, np.nan, np.nan, False
        sL, sp, sn = _loss_weights(r_pos, r_neg, code, tau, margin, c_pos, c_neg, 0, N)
        part[:, :] = 0.0
        for c in range(nchunks):
            a0, a1 = _chunk_bounds(N, nchunks, c)
            _backward_chunk(Ws, cols, cnts, colsT, cntsT, a0, a1, H, acts[c], aoffs, ncmax,
                            c_pos, c_neg, part[c], goffs, scratch[c])
    else:
        for c in range(nchunks):
            _chunk_step(Ws, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin, acts,
                        aoffs, ncmax, goffs, part, scratch, r_pos, r_neg, c_pos, c_neg, stats, c)
            if stats[c, 3] == 0:
                return np.nan, np.nan, np.nan, False
        sL, sp, sn = stats[:, 0].sum(), stats[:, 1].sum(), stats[:, 2].sum()
    _scatter(cols, cnts, part, goffs, dWs)
    return sL / N, sp / N, sn / (N * H), True


@njit(cache=True, parallel=True)
def _fused_parallel(Ws, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin, acts,
                    aoffs, ncmax, goffs, part, scratch, dWs):
    """``_fused_serial`` with the chunks run in parallel (``prange``); per-anchor losses need
    one parallel region, ``ref_nce`` two (its weights need every anchor's distances)."""
    N = x.shape[0]
    H = x_neg.shape[1]
    nchunks = acts.shape[0]
    dt = Ws[0].dtype
    r_pos = np.empty(N, dt)
    r_neg = np.empty((N, H), dt)
    c_pos = np.empty(N, dt)
    c_neg = np.empty((N, H), dt)
    stats = np.zeros((nchunks, 4))
    if code == 3:
        ok = np.zeros(nchunks, np.bool_)
        for c in prange(nchunks):
            a0, a1 = _chunk_bounds(N, nchunks, c)
            ok[c] = _forward_chunk(Ws, cols, cnts, x, x_pos, x_neg, a0, a1, acts[c], aoffs,
                                   ncmax, r_pos, r_neg)
        if not ok.all():
            return np.nan, np.nan, np.nan, False
        sL, sp, sn = _loss_weights(r_pos, r_neg, code, tau, margin, c_pos, c_neg, 0, N)
        part[:, :] = 0.0
        for c in prange(nchunks):
            a0, a1 = _chunk_bounds(N, nchunks, c)
            _backward_chunk(Ws, cols, cnts, colsT, cntsT, a0, a1, H, acts[c], aoffs, ncmax,
                            c_pos, c_neg, part[c], goffs, scratch[c])
    else:
        for c in prange(nchunks):
            _chunk_step(Ws, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin, acts,
                        aoffs, ncmax, goffs, part, scratch, r_pos, r_neg, c_pos, c_neg, stats, c)
        if not (stats[:, 3] > 0).all():
            return np.nan, np.nan, np.nan, False
        sL, sp, sn = stats[:, 0].sum(), stats[:, 1].sum(), stats[:, 2].sum()
    _scatter(cols, cnts, part, goffs, dWs)
    return sL / N, sp / N, sn / (N * H), True


def fused_plan(net):
    """Per layer ``(cols, cnt)`` and the transposed ``(colsT, cntT)`` for the fused step
    (a dense layer gets the full structure), the offsets of the compact gradients and of the
    activations (cached on the net)."""
    cached = getattr(net, "_numba_plan", None)
    if cached is not None and cached[0] is net.masks:
        return cached[1]
    from ..backend import to_numpy
    cols, cnts, colsT, cntsT, goffs, total = [], [], [], [], [], 0
    for l, W in enumerate(net.weights):
        m = None if net.masks is None else net.masks[l]
        m = np.ones(W.shape) if m is None else to_numpy(m)
        c, n = row_structure(m)
        cT, nT = row_structure(m.T)
        cols.append(c)
        cnts.append(n)
        colsT.append(cT)
        cntsT.append(nT)
        goffs.append(total)
        total += c.size
    aoffs = np.concatenate([[0], np.cumsum(net.sizes)]).astype(np.int64)
    plan = (tuple(cols), tuple(cnts), tuple(colsT), tuple(cntsT), np.asarray(goffs, np.int64),
            total, aoffs)
    net._numba_plan = (net.masks, plan)
    return plan


def fused_loss_and_grads(net, batch, cfg, threads=None):
    """Twin of ``train.loss_and_grads`` for given negatives: one compiled call per step.

    Forward of the anchors, positives and negatives, the distances, the loss and its weights
    ``dL/dr`` (twins of ``losses.LOSSES``, batch-level ``ref_nce`` included), their chain to
    the embeddings (``chain_triples``) and the backward. Returns ``(loss, r_pos, r_neg,
    grads)`` like the twin (``grads`` aligned with ``net.parameters()``, dense, zero at masked
    entries), ``(nan, nan, nan, None)`` when the output is not finite, or None when the fused
    step does not apply (in-batch negatives, biases, output normalisation, a loss without a
    twin, more than ``FUSED_MAX_WEIGHTS`` live weights): the caller takes the general path.
    ``threads``: anchors are split into this many chunks run in parallel with ``prange``
    (default ``THREADS`` = 1, serial; at least ``MIN_CHUNK`` anchors per chunk).
    """
    if (cfg.negatives != "given" or net.bias or net.normalize or cfg.loss not in LOSS_CODES):
        return None
    cols, cnts, colsT, cntsT, goffs, total, aoffs = fused_plan(net)
    if total > FUSED_MAX_WEIGHTS:
        return None
    x, x_pos, x_neg = batch
    x = net._check_input(x)
    x_pos = net._check_input(x_pos, "x_pos")
    x_neg = net.asarray(x_neg)
    if x_neg.ndim == 2:
        x_neg = x_neg[:, None, :]
    N, n0 = x.shape
    if x_pos.shape[0] != N or x_neg.ndim != 3 or x_neg.shape[0] != N or x_neg.shape[2] != n0:
        raise ValueError(f"x_neg must have shape (N, H, n_0) = ({N}, H, {n0}), "
                         f"got {tuple(x_neg.shape)}")
    H = x_neg.shape[1]
    from ..losses import check_loss
    check_loss(cfg.loss, cfg.tau, H)
    if not np.isfinite(x_neg).all():
        raise ValueError("x_neg contains NaN or infinite values")
    x_neg = np.ascontiguousarray(x_neg)
    threads = THREADS if threads is None else threads
    nchunks = max(1, min(int(threads), N // MIN_CHUNK))
    parallel = nchunks > 1
    if not parallel:                                         # cache-sized serial chunks
        nchunks = max(1, min(-(-N // SERIAL_CHUNK), N))
    ncmax = -(-N // nchunks) * (2 + H)
    dt = net.dtype
    key = (nchunks, ncmax, dt)
    bufs = getattr(net, "_numba_buffers", None)
    if bufs is None or bufs[0] != key:                       # work buffers, reused across steps
        bufs = (key, np.empty((nchunks, int(aoffs[-1]) * ncmax), dt),
                np.empty((nchunks, total), dt),
                np.empty((nchunks, 2, max(net.sizes) * ncmax), dt))
        net._numba_buffers = bufs
    _, acts, part, scratch = bufs
    Ws = tuple(net.weights)
    dWs = tuple(np.empty_like(W) for W in Ws)
    fn = _fused_parallel if parallel else _fused_serial
    Lm, rp, rn, ok = fn(Ws, cols, cnts, colsT, cntsT, x, x_pos, x_neg, LOSS_CODES[cfg.loss],
                        float(cfg.tau), float(cfg.margin), acts, aoffs, ncmax, goffs, part,
                        scratch, dWs)
    if not ok:
        return math.nan, math.nan, math.nan, None
    return float(Lm), float(rp), float(rn), list(dWs)
