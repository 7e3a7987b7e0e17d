"""Numba kernels for masked ReLU layers and a fused training step (backend="numba").

The NumPy ops of ``layers.py`` (``linear``, ``linear_backward``) and ``train.loss_and_grads``
stay the reference; the objects here compute the same arrays to rounding.

Layout. Inside the kernels activations are *feature-major*: ``fT`` is (n_l, N), so the
innermost loop runs over the batch, contiguous in memory, and vectorises:

    gT[i, :] = sum_{j in cols_i} W[i, j] * fT[j, :]          # masked layer, (n_l, N)

A masked layer is stored as its row structure ``(cols, cnt)``: unit i reads the ``cnt[i]``
inputs ``cols[i, :cnt[i]]`` (``row_structure``). The HLTM tree network is such a layer
stack: a group of ``hid`` units reads only its children's ``num_children * hid`` inputs, so
the kernels never multiply the zeros of the mask. Dense layers go to BLAS, which no
hand-written loop beats for large widths.

Backward of ``sum(delta * g)`` (layers.linear_backward), feature-major:

    dW[i, j]        = deltaT[i, :] . fT[j, :]        for j in cols_i (zero elsewhere)
    deltaT_prev[j]  = sum_{i: j in cols_i} W[i, j] deltaT[i, :]

``LinearPlan`` holds one masked layer's structure (``layers.Linear`` builds it once); its
outputs are transposed views of feature-major buffers, so the next layer reads them without a
copy. ``FusedStep`` is one compiled call per training step: the forward of all views of a
batch, the distances ``r_pos``, ``r_neg``, the loss weights ``dL/dr`` (compiled twins of
``losses.py``, tested against it), their chain to the embeddings and the whole backward. It
can split the anchors into one chunk per Numba thread (``prange``): every anchor's views are
in its chunk, so chunks are independent and only the weight gradients are summed at the end.

Every kernel is ``@njit(cache=True, nogil=True)``: the first call in a fresh environment
compiles (a few seconds) and writes the machine code to ``__pycache__``; later processes load
it; a call releases the GIL, so runs in several threads compute at once (the app's). With
``NUMBA_DISABLE_JIT=1`` the same functions run as plain Python (tests use this for coverage).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .compiling import announce_compiles

announce_compiles()             # cache location, and a notice when compiling (cold cache)

MIN_CHUNK = 16          # anchors per thread below which the fused step stays serial
FUSED_MAX_WEIGHTS = 1 << 18   # larger nets: the fused loops lose to BLAS, take the general path
# more weights in dense (unmasked) layers than this: BLAS's reference step is the faster
# (bench/fused_threshold.py: float64 fused 1.2-1.6x faster at 768-1,024, 0.6-0.9x from 2,048;
# float32 1.0-2.3x up to 3,072, 0.5-0.8x from 4,096)
DENSE_FUSED_MAX = {"float32": 3072, "float64": 1536}
THREADS = 1             # default chunks of the fused step (see docs/performance.md)
SERIAL_CHUNK = 128      # anchors per chunk of the serial fused step
LOSS_CODES = {"simple": 0, "soft_triplet": 1, "infonce": 2, "ref_nce": 3}


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


# ----------------------------------------------------------------------------- layer kernels
@njit(cache=True, nogil=True)
def compact_rows(W, cols, cnt, out, trans):
    """``out[i, k] = W[i, cols[i, k]]`` for ``k < cnt[i]`` (a masked layer's live weights,
    row by row), or ``W[cols[i, k], i]`` when ``trans`` (those of the transposed product, from
    the transposed structure)."""
    for i in range(out.shape[0]):
        for k in range(cnt[i]):
            out[i, k] = W[cols[i, k], i] if trans else W[i, cols[i, k]]


@njit(cache=True, nogil=True, fastmath=True)
def _gather_axpy(w, cols, cnt, src, dst, relu):
    """``dst[i, :] = sum_k w[i, k] src[cols[i, k], :]`` (``w`` the compact live weights,
    ``compact_rows``), then ``max(., 0)`` if ``relu``.

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
        w0 = w[i, 0]
        w1 = w[i, 1] if m > 1 else zero
        w2 = w[i, 2] if m > 2 else zero
        w3 = w[i, 3] if m > 3 else zero
        last = relu and c == m
        for n in range(N):
            v = (w0 * src[j0, n] + w1 * src[j1, n]) + (w2 * src[j2, n] + w3 * src[j3, n])
            dst[i, n] = max(v, zero) if last else v
        k = m
        while k + 8 <= c:
            j0, j1, j2, j3 = cols[i, k], cols[i, k + 1], cols[i, k + 2], cols[i, k + 3]
            j4, j5, j6, j7 = cols[i, k + 4], cols[i, k + 5], cols[i, k + 6], cols[i, k + 7]
            w0, w1, w2, w3 = w[i, k], w[i, k + 1], w[i, k + 2], w[i, k + 3]
            w4, w5, w6, w7 = w[i, k + 4], w[i, k + 5], w[i, k + 6], w[i, k + 7]
            for n in range(N):
                dst[i, n] += ((w0 * src[j0, n] + w1 * src[j1, n])
                              + (w2 * src[j2, n] + w3 * src[j3, n])) \
                    + ((w4 * src[j4, n] + w5 * src[j5, n]) + (w6 * src[j6, n] + w7 * src[j7, n]))
            k += 8
        while k + 4 <= c:
            j0, j1, j2, j3 = cols[i, k], cols[i, k + 1], cols[i, k + 2], cols[i, k + 3]
            w0, w1, w2, w3 = w[i, k], w[i, k + 1], w[i, k + 2], w[i, k + 3]
            for n in range(N):
                dst[i, n] += (w0 * src[j0, n] + w1 * src[j1, n]) + \
                    (w2 * src[j2, n] + w3 * src[j3, n])
            k += 4
        while k + 2 <= c:
            j0, j1 = cols[i, k], cols[i, k + 1]
            w0, w1 = w[i, k], w[i, k + 1]
            for n in range(N):
                dst[i, n] += w0 * src[j0, n] + w1 * src[j1, n]
            k += 2
        if k < c:
            j0 = cols[i, k]
            w0 = w[i, k]
            for n in range(N):
                dst[i, n] += w0 * src[j0, n]
        if relu and c > 4:
            for n in range(N):
                dst[i, n] = max(dst[i, n], zero)


@njit(cache=True, nogil=True)
def masked_matmul_fm(W, cols, cnt, fT, gT):
    """``gT[i, :] = sum_k W[i, cols[i,k]] fT[cols[i,k], :]``: W (n_out, n_in), fT (n_in, N),
    gT (n_out, N) written in place (feature-major forward of a masked layer)."""
    w = np.empty(cols.shape, W.dtype)
    off = cnt.shape[0] < 0                                   # False, not a literal argument
    compact_rows(W, cols, cnt, w, off)
    _gather_axpy(w, cols, cnt, fT, gT, off)


@njit(cache=True, nogil=True, fastmath=True)
def masked_grad_fm(dT, fT, cols, cnt, dW):
    """``dW[i, j] = dT[i, :] . fT[j, :]`` for ``j in cols_i``; zero elsewhere.

    dT (n_out, N), fT (n_in, N), dW (n_out, n_in) written in place (a masked ``delta.T @ f``).
    """
    dW[:, :] = 0.0
    _grad_compact(dT, fT, cols, cnt, dW, cnt.shape[0] >= 0)    # True, not a literal


@njit(cache=True, nogil=True, fastmath=True)
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def gate_fm(dT, gT):
    """``dT *= (gT > 0)`` in place: the ReLU gate ``D_l`` of the backward pass."""
    a, b = dT.shape
    zero = np.zeros(1, dT.dtype)[0]
    for i in range(a):
        for n in range(b):
            dT[i, n] = dT[i, n] if gT[i, n] > 0 else zero


# ----------------------------------------------------------------------------- one layer
class LinearPlan:
    """The compiled products of one masked ``layers.Linear`` (its twin on backend "numba").

    Built once from the layer's 0/1 mask (n_out, n_in). ``forward`` returns ``g`` (N, n_out)
    as the transposed view of a C-contiguous (n_out, N) buffer, so the next layer's ``x.T``
    (and the ReLU between, elementwise) needs no copy.
    """

    def __init__(self, mask):
        self.cols, self.cnt = row_structure(mask)

    def forward(self, W, x):
        """``x W^T`` over the live weights: (N, n_in) -> (N, n_out)."""
        xT = np.ascontiguousarray(x.T)                       # (n_in, N): a view after a plan
        gT = np.empty((W.shape[0], xT.shape[1]), dtype=W.dtype)
        masked_matmul_fm(W, self.cols, self.cnt, xT, gT)
        return gT.T

    def backward(self, W, dg, x, want_input=True):
        """``(dW, dx)``: ``dW = dg^T x`` at the live weights (zero elsewhere), ``dx = dg W``
        (None unless ``want_input``)."""
        dT = np.ascontiguousarray(dg.T)                      # (n_out, N)
        dW = np.empty(W.shape, dtype=W.dtype)
        masked_grad_fm(dT, np.ascontiguousarray(x.T), self.cols, self.cnt, dW)
        if not want_input:
            return dW, None
        return dW, self.down(W, dT).T

    def down(self, W, dT):
        """``W^T dT`` over the live weights for feature-major ``dT`` (n_out, M): (n_in, M)."""
        nT = np.empty((W.shape[1], dT.shape[1]), dtype=dT.dtype)
        masked_backprop_fm(W, self.cols, self.cnt, np.ascontiguousarray(dT), nT)
        return nT


# ----------------------------------------------------------------------------- fused step
# Per chunk c of anchors [a0, a1) (nb = a1 - a0, H negatives) the columns of every
# feature-major buffer are [anchors | positives | negatives (anchor-major)], nc = nb (2 + H).
# ``acts[c]`` holds f_0 .. f_{L-1} and g_L of the chunk: layer l's (n_l, nc) block starts at
# ``aoffs[l] * ncmax`` (a C-contiguous reshape of a 1-D slice).


@njit(cache=True, nogil=True)
def _chunk_bounds(N, nchunks, c):
    return (N * c) // nchunks, (N * (c + 1)) // nchunks


@njit(cache=True, nogil=True)
def _layer_view(buf, aoffs, ncmax, l, n, nc):
    start = aoffs[l] * ncmax
    return buf[start:start + n * nc].reshape((n, nc))


@njit(cache=True, nogil=True)
def _forward_chunk(Ws, cols, cnts, x, x_pos, x_neg, a0, a1, buf, aoffs, ncmax, r_pos, r_neg,
                   big):
    """Forward of one chunk's views and their distances ``r_pos[a]``, ``r_neg[a, k]``.
    Returns False when the output is not finite, or its squares sum (in float64) past
    ``big`` (the dtype's largest value) or overflow times 1 + H (``train.finite_output``)."""
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
    sq = 0.0                                                 # train.finite_output: the
    for i in range(d):                                       # squares bound the distances
        for n in range(nc):
            if not np.isfinite(f[i, n]):
                return False
            sq += float(f[i, n]) * float(f[i, n])
    if not (math.isfinite((1 + H) * sq) and sq <= big):
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


@njit(cache=True, nogil=True)
def _backward_chunk(WTs, cols, cnts, colsT, cntsT, a0, a1, H, buf, aoffs, ncmax, c_pos, c_neg,
                    part, goffs, scratch):
    """Chain ``c_pos = dL/dr_pos / N``, ``c_neg = dL/dr_neg / N`` to the chunk's outputs
    (``losses.chain_triples``), backward through the layers (``WTs``: the compact weights of
    the transposed products) and add the compact weight gradients ``dW[i, cols[i,k]]`` into
    ``part[goffs[l] + i*kmax + k]``.
    ``scratch`` (2, max n_l * ncmax) holds the two deltas (preallocated: no page faults per
    step)."""
    L = len(WTs)
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
        _grad_compact(dT, fT, cols[l], cnts[l], g, l < 0)
        if l > 0:
            side = 1 - side
            nT = scratch[side, :n_in * nc].reshape((n_in, nc))
            _gather_axpy(WTs[l], colsT[l], cntsT[l], dT, nT, l < 0)
            gate_fm(nT, fT)                                  # fT = relu(g_l): the same gate
            dT = nT


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def loss_weights(r_pos, r_neg, code, tau, margin, c_pos, c_neg, a0, a1):
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
                e = math.exp(-r_neg[a, k] / tau - amax)
                c_neg[a, k] = e                              # kept for p below
                se += e
            dpos = 0.0
            for k in range(H):
                p = c_neg[a, k] / se
                c_neg[a, k] = -p / N
                dpos += p
            Lv = rp + tau * (amax + math.log(se))
        c_pos[a] = dpos / N
        sL += Lv
    return sL, sp, sn


@njit(cache=True, nogil=True)
def _chunk_step(Wc, WTc, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin, acts,
                aoffs, ncmax, goffs, part, scratch, r_pos, r_neg, c_pos, c_neg, stats, c, big):
    """Forward, per-anchor loss weights and backward of chunk c (losses other than
    ``ref_nce``): writes ``stats[c] = (sum L, sum r_pos, sum r_neg, finite)``."""
    N = x.shape[0]
    a0, a1 = _chunk_bounds(N, acts.shape[0], c)
    if not _forward_chunk(Wc, cols, cnts, x, x_pos, x_neg, a0, a1, acts[c], aoffs, ncmax,
                          r_pos, r_neg, big):
        stats[c, 3] = 0.0
        return
    sL, sp, sn = loss_weights(r_pos, r_neg, code, tau, margin, c_pos, c_neg, a0, a1)
    stats[c, 0] = sL
    stats[c, 1] = sp
    stats[c, 2] = sn
    stats[c, 3] = 1.0
    part[c, :] = 0.0
    _backward_chunk(WTc, cols, cnts, colsT, cntsT, a0, a1, x_neg.shape[1], acts[c], aoffs, ncmax,
                    c_pos, c_neg, part[c], goffs, scratch[c])


@njit(cache=True, nogil=True)
def _fused_serial(Ws, Wc, WTc, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin,
                  acts, aoffs, ncmax, goffs, part, scratch, dWs, big):
    """The whole step: forward, distances, loss weights, backward, gradients, over the
    ``acts.shape[0]`` chunks of anchors one after the other.
    Returns ``(mean L, mean r_pos, mean r_neg, finite)``."""
    N = x.shape[0]
    for l in range(len(Ws)):                                 # the live weights, compact
        compact_rows(Ws[l], cols[l], cnts[l], Wc[l], N < 0)
        compact_rows(Ws[l], colsT[l], cntsT[l], WTc[l], N >= 0)
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
            if not _forward_chunk(Wc, cols, cnts, x, x_pos, x_neg, a0, a1, acts[c], aoffs,
                              ncmax, r_pos, r_neg, big):
                return np.nan, np.nan, np.nan, False
        sL, sp, sn = loss_weights(r_pos, r_neg, code, tau, margin, c_pos, c_neg, N - N, N)
        part[:, :] = 0.0
        for c in range(nchunks):
            a0, a1 = _chunk_bounds(N, nchunks, c)
            _backward_chunk(WTc, cols, cnts, colsT, cntsT, a0, a1, H, acts[c], aoffs, ncmax,
                            c_pos, c_neg, part[c], goffs, scratch[c])
    else:
        for c in range(nchunks):
            _chunk_step(Wc, WTc, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin,
                        acts,
                        aoffs, ncmax, goffs, part, scratch, r_pos, r_neg, c_pos, c_neg, stats, c,
                        big)
            if stats[c, 3] == 0:
                return np.nan, np.nan, np.nan, False
        sL, sp, sn = stats[:, 0].sum(), stats[:, 1].sum(), stats[:, 2].sum()
    _scatter(cols, cnts, part, goffs, dWs)
    return sL / N, sp / N, sn / (N * H), True


@njit(cache=True, nogil=True, parallel=True)
def _fused_parallel(Ws, Wc, WTc, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin,
                    acts, aoffs, ncmax, goffs, part, scratch, dWs, big):
    """``_fused_serial`` with the chunks run in parallel (``prange``); per-anchor losses need
    one parallel region, ``ref_nce`` two (its weights need every anchor's distances)."""
    N = x.shape[0]
    for l in range(len(Ws)):                                 # the live weights, compact
        compact_rows(Ws[l], cols[l], cnts[l], Wc[l], N < 0)
        compact_rows(Ws[l], colsT[l], cntsT[l], WTc[l], N >= 0)
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
            ok[c] = _forward_chunk(Wc, cols, cnts, x, x_pos, x_neg, a0, a1, acts[c], aoffs,
                              ncmax, r_pos, r_neg, big)
        if not ok.all():
            return np.nan, np.nan, np.nan, False
        sL, sp, sn = loss_weights(r_pos, r_neg, code, tau, margin, c_pos, c_neg, N - N, N)
        part[:, :] = 0.0
        for c in prange(nchunks):
            a0, a1 = _chunk_bounds(N, nchunks, c)
            _backward_chunk(WTc, cols, cnts, colsT, cntsT, a0, a1, H, acts[c], aoffs, ncmax,
                            c_pos, c_neg, part[c], goffs, scratch[c])
    else:
        for c in prange(nchunks):
            _chunk_step(Wc, WTc, cols, cnts, colsT, cntsT, x, x_pos, x_neg, code, tau, margin,
                        acts,
                        aoffs, ncmax, goffs, part, scratch, r_pos, r_neg, c_pos, c_neg, stats, c,
                        big)
        if not (stats[:, 3] > 0).all():
            return np.nan, np.nan, np.nan, False
        sL, sp, sn = stats[:, 0].sum(), stats[:, 1].sum(), stats[:, 2].sum()
    _scatter(cols, cnts, part, goffs, dWs)
    return sL / N, sp / N, sn / (N * H), True


class FusedStep:
    """Twin of ``train.loss_and_grads`` for a plain (masked) ReLU net with given negatives:
    one compiled call per step. Built once per training run (``FusedStep.build``) from the
    net's sizes and masks; it holds the compiled structure and the work buffers it reuses
    across steps.

    ``step(weights, x, x_pos, x_neg, loss, tau, margin)`` -> ``(loss, r_pos, r_neg, grads)``
    like the twin (means; ``grads`` dense, zero at masked entries), or ``(nan, nan, nan, None)``
    when the output is not finite. Inputs are validated by the caller. ``threads``: anchors
    are split into this many chunks run in parallel with ``prange`` (default ``THREADS`` = 1,
    serial; at least ``MIN_CHUNK`` anchors per chunk).
    """

    def __init__(self, sizes, masks, dtype, threads=None):
        cols, cnts, colsT, cntsT, goffs, total = [], [], [], [], [], 0
        for l in range(len(sizes) - 1):
            m = masks[l] if masks is not None and masks[l] is not None else \
                np.ones((sizes[l + 1], sizes[l]))
            for st, out_c, out_n in ((m, cols, cnts), (m.T, colsT, cntsT)):
                c, n = row_structure(st)
                out_c.append(c)
                out_n.append(n)
            goffs.append(total)
            total += cols[-1].size
        self.cols, self.cnts = tuple(cols), tuple(cnts)
        self.colsT, self.cntsT = tuple(colsT), tuple(cntsT)
        self.goffs, self.total = np.asarray(goffs, np.int64), total
        self.aoffs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.dtype, self.width = np.dtype(dtype), max(sizes)
        self.Wc = tuple(np.empty(c.shape, self.dtype) for c in self.cols)     # compact live
        self.WTc = tuple(np.empty(c.shape, self.dtype) for c in self.colsT)   # weights
        self.threads = THREADS if threads is None else int(threads)
        self.buffers = None

    @staticmethod
    def slots(sizes, masks):
        """The compact weights a step of this net holds (its ``total``), without building it:
        per layer ``n_l`` rows of the most inputs a unit reads (at least 1)."""
        total = 0
        for l in range(len(sizes) - 1):
            m = None if masks is None else masks[l]
            widest = sizes[l] if m is None else int((np.asarray(m) != 0).sum(axis=1).max())
            total += sizes[l + 1] * max(widest, 1)
        return total

    @classmethod
    def pays(cls, sizes, masks, dtype):
        """Whether the fused step beats the general path: at most ``FUSED_MAX_WEIGHTS`` live
        weights (``slots``) and at most ``DENSE_FUSED_MAX[dtype]`` in dense layers (beyond,
        BLAS wins)."""
        dense = sum(a * b for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
                    if masks is None or masks[l] is None)
        return (cls.slots(sizes, masks) <= FUSED_MAX_WEIGHTS
                and dense <= DENSE_FUSED_MAX[np.dtype(dtype).name])

    @classmethod
    def build(cls, sizes, masks, dtype, threads=None):
        """A ``FusedStep``, or None where it does not pay (``pays``; the general path with
        BLAS is faster there)."""
        if not cls.pays(sizes, masks, dtype):
            return None
        return cls(sizes, masks, dtype, threads)

    def _buffers(self, N, H):
        nchunks = max(1, min(self.threads, N // MIN_CHUNK))
        parallel = nchunks > 1
        if not parallel:                                     # cache-sized serial chunks
            nchunks = max(1, min(-(-N // SERIAL_CHUNK), N))
        ncmax = -(-N // nchunks) * (2 + H)
        key = (nchunks, ncmax)
        if self.buffers is None or self.buffers[0] != key:  # reused across steps
            dt = self.dtype
            self.buffers = (key, np.empty((nchunks, int(self.aoffs[-1]) * ncmax), dt),
                            np.empty((nchunks, self.total), dt),
                            np.empty((nchunks, 2, self.width * ncmax), dt))
        return parallel, ncmax, self.buffers[1:]

    def __call__(self, weights, x, x_pos, x_neg, loss, tau, margin):
        N, H = x_neg.shape[:2]
        parallel, ncmax, (acts, part, scratch) = self._buffers(N, H)
        Ws = tuple(weights)
        dWs = tuple(np.empty_like(W) for W in Ws)
        fn = _fused_parallel if parallel else _fused_serial
        Lm, rp, rn, ok = fn(Ws, self.Wc, self.WTc, self.cols, self.cnts, self.colsT, self.cntsT,
                            x, x_pos, np.ascontiguousarray(x_neg), LOSS_CODES[loss], float(tau),
                            float(margin), acts, self.aoffs, ncmax, self.goffs, part, scratch,
                            dWs, float(np.finfo(self.dtype).max))
        if not ok:
            return math.nan, math.nan, math.nan, None
        return float(Lm), float(rp), float(rn), list(dWs)
