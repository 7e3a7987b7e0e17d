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

The fused training step (``fused_loss_and_grads``, given negatives) is two compiled calls:
the forward of all views of a batch with their distances ``r_pos``, ``r_neg``; then, after the
loss of ``losses.py`` has turned those into ``dL/dr`` (NumPy, N numbers: every loss stays
written once), the chain to the embeddings and the whole backward. Both are split over
anchors into one chunk per Numba thread (``prange``): every anchor's views are in its chunk,
so chunks are independent and only the weight gradients are summed at the end.

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
@njit(cache=True)
def masked_matmul_fm(W, cols, cnt, fT, gT):
    """``gT[i, :] = sum_k W[i, cols[i,k]] fT[cols[i,k], :]``: W (n_out, n_in), fT (n_in, N),
    gT (n_out, N) written in place (feature-major forward of a masked layer)."""
    n_out, N = gT.shape
    for i in range(n_out):
        for n in range(N):
            gT[i, n] = 0.0
        for k in range(cnt[i]):
            j = cols[i, k]
            w = W[i, j]
            for n in range(N):
                gT[i, n] += w * fT[j, n]


@njit(cache=True, fastmath=True)
def masked_grad_fm(dT, fT, cols, cnt, dW):
    """``dW[i, j] = dT[i, :] . fT[j, :]`` for ``j in cols_i``; zero elsewhere.

    dT (n_out, N), fT (n_in, N), dW (n_out, n_in) written in place (a masked ``delta.T @ f``).
    """
    n_out = dW.shape[0]
    N = dT.shape[1]
    dW[:, :] = 0.0
    zero = np.zeros(1, dW.dtype)
    for i in range(n_out):
        for k in range(cnt[i]):
            j = cols[i, k]
            s = zero[0]                                      # accumulate in the array dtype
            for n in range(N):
                s += dT[i, n] * fT[j, n]
            dW[i, j] = s


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
def relu_fm(gT, fT):
    """``fT = max(gT, 0)`` elementwise (same shapes)."""
    a, b = gT.shape
    for i in range(a):
        for n in range(b):
            v = gT[i, n]
            fT[i, n] = v if v > 0 else 0.0


@njit(cache=True)
def gate_fm(dT, gT):
    """``dT *= (gT > 0)`` in place: the ReLU gate ``D_l`` of the backward pass."""
    a, b = dT.shape
    for i in range(a):
        for n in range(b):
            if not gT[i, n] > 0:
                dT[i, n] = 0.0


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
    for a in range(nb):
        for j in range(n0):
            f[j, a] = x[a0 + a, j]
            f[j, nb + a] = x_pos[a0 + a, j]
        for k in range(H):
            for j in range(n0):
                f[j, 2 * nb + a * H + k] = x_neg[a0 + a, k, j]
    for l in range(L):
        W = Ws[l]
        g = _layer_view(buf, aoffs, ncmax, l + 1, W.shape[0], nc)   # (n_l, nc)
        masked_matmul_fm(W, cols[l], cnts[l], f, g)
        if l < L - 1:
            relu_fm(g, g)                                    # f_l = relu(g_l); its gate is f_l > 0
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


@njit(cache=True, fastmath=True)
def _backward_chunk(Ws, cols, cnts, a0, a1, H, buf, aoffs, ncmax, c_pos, c_neg, part, goffs):
    """Chain ``c_pos = dL/dr_pos / N``, ``c_neg = dL/dr_neg / N`` to the chunk's outputs
    (``losses.chain_triples``), backward through the layers and add the compact weight
    gradients ``dW[i, cols[i,k]]`` into ``part[goffs[l] + i*kmax + k]``."""
    L = len(Ws)
    nb = a1 - a0
    nc = nb * (2 + H)
    Z = _layer_view(buf, aoffs, ncmax, L, Ws[L - 1].shape[0], nc)      # (n_L, nc)
    d = Z.shape[0]
    dT = np.zeros((d, nc), Z.dtype)
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
    zero = np.zeros(1, Z.dtype)
    for l in range(L - 1, -1, -1):
        W = Ws[l]
        cl = cols[l]
        cn_ = cnts[l]
        fT = _layer_view(buf, aoffs, ncmax, l, W.shape[1], nc)        # f_l (n_l, nc)
        kmax = cl.shape[1]
        base = goffs[l]
        for i in range(W.shape[0]):
            for k in range(cn_[i]):
                j = cl[i, k]
                s = zero[0]
                for n in range(nc):
                    s += dT[i, n] * fT[j, n]
                part[base + i * kmax + k] += s
        if l > 0:
            nT = np.empty((W.shape[1], nc), Z.dtype)
            masked_backprop_fm(W, cl, cn_, dT, nT)
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
                s = 0.0
                for c in range(nchunks):
                    s += part[c, goffs[l] + i * kmax + k]
                dW[i, cl[i, k]] = s


@njit(cache=True)
def _forward_serial(Ws, cols, cnts, x, x_pos, x_neg, acts, aoffs, ncmax, r_pos, r_neg):
    N = x.shape[0]
    return _forward_chunk(Ws, cols, cnts, x, x_pos, x_neg, 0, N, acts[0], aoffs, ncmax,
                          r_pos, r_neg)


@njit(cache=True, parallel=True)
def _forward_parallel(Ws, cols, cnts, x, x_pos, x_neg, acts, aoffs, ncmax, r_pos, r_neg):
    N = x.shape[0]
    nchunks = acts.shape[0]
    ok = np.zeros(nchunks, np.bool_)
    for c in prange(nchunks):
        a0, a1 = _chunk_bounds(N, nchunks, c)
        ok[c] = _forward_chunk(Ws, cols, cnts, x, x_pos, x_neg, a0, a1, acts[c], aoffs,
                               ncmax, r_pos, r_neg)
    return ok.all()


@njit(cache=True)
def _backward_serial(Ws, cols, cnts, H, acts, aoffs, ncmax, c_pos, c_neg, part, goffs, dWs):
    N = c_pos.shape[0]
    part[:, :] = 0.0
    _backward_chunk(Ws, cols, cnts, 0, N, H, acts[0], aoffs, ncmax, c_pos, c_neg, part[0],
                    goffs)
    _scatter(cols, cnts, part, goffs, dWs)


@njit(cache=True, parallel=True)
def _backward_parallel(Ws, cols, cnts, H, acts, aoffs, ncmax, c_pos, c_neg, part, goffs, dWs):
    N = c_pos.shape[0]
    nchunks = acts.shape[0]
    part[:, :] = 0.0
    for c in prange(nchunks):
        a0, a1 = _chunk_bounds(N, nchunks, c)
        _backward_chunk(Ws, cols, cnts, a0, a1, H, acts[c], aoffs, ncmax, c_pos, c_neg,
                        part[c], goffs)
    _scatter(cols, cnts, part, goffs, dWs)


def fused_plan(net):
    """``(cols, cnts, goffs, total)`` for the fused step: every layer as a row structure (a
    dense layer gets the full one) and the offsets of their compact gradients (cached)."""
    cached = getattr(net, "_numba_plan", None)
    if cached is not None and cached[0] is net.masks:
        return cached[1]
    st = net_structure(net)
    cols, cnts, goffs, total = [], [], [], 0
    for l, W in enumerate(net.weights):
        c, n = st[l] if st[l] is not None else dense_structure(*W.shape)
        cols.append(c)
        cnts.append(n)
        goffs.append(total)
        total += c.size
    plan = (tuple(cols), tuple(cnts), np.asarray(goffs, np.int64), total)
    net._numba_plan = (net.masks, plan)
    return plan


def fused_loss_and_grads(net, batch, cfg, threads=None):
    """Twin of ``train.loss_and_grads`` for given negatives: forward of all views, the loss
    and backward in two compiled calls per step.

    Kernel 1 runs the forward of the anchors, positives and negatives and returns the
    distances ``r_pos`` (N,), ``r_neg`` (N, H); the loss itself is the NumPy function of
    ``losses.LOSSES`` (one place for every loss, batch-level ``ref_nce`` included), giving
    ``dL/dr``; kernel 2 chains ``dL/dr / N`` to the embeddings (``chain_triples``) and runs the
    backward. Returns ``(loss, r_pos, r_neg, grads)`` like the twin (``grads`` aligned with
    ``net.parameters()``, dense, zero at masked entries), ``(nan, nan, nan, None)`` when the
    output is not finite, or None when the fused step does not apply (in-batch negatives,
    biases, output normalisation: the caller takes the general path).
    ``threads``: anchors are split into this many chunks run in parallel with ``prange``
    (default ``THREADS`` = 1, serial; at least ``MIN_CHUNK`` anchors per chunk). Nets with
    more than ``FUSED_MAX_WEIGHTS`` live weights return None (BLAS wins there).
    """
    if cfg.negatives != "given" or net.bias or net.normalize:
        return None
    cols, cnts, goffs, total = fused_plan(net)
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
    fn = check_loss(cfg.loss, cfg.tau, H)
    if not np.isfinite(x_neg).all():
        raise ValueError("x_neg contains NaN or infinite values")
    x_neg = np.ascontiguousarray(x_neg)
    Ws = tuple(net.weights)
    dt = net.dtype
    threads = THREADS if threads is None else threads
    nchunks = max(1, min(int(threads), N // MIN_CHUNK))
    ncmax = -(-N // nchunks) * (2 + H)
    aoffs = np.concatenate([[0], np.cumsum(net.sizes)]).astype(np.int64)
    acts = np.empty((nchunks, int(aoffs[-1]) * ncmax), dt)
    r_pos = np.empty(N, dt)
    r_neg = np.empty((N, H), dt)
    fwd, bwd = (_forward_serial, _backward_serial) if nchunks == 1 else \
        (_forward_parallel, _backward_parallel)
    if not fwd(Ws, cols, cnts, x, x_pos, x_neg, acts, aoffs, ncmax, r_pos, r_neg):
        return math.nan, math.nan, math.nan, None
    L, d_pos, d_neg = fn(r_pos, r_neg, float(cfg.tau), float(cfg.margin))
    c_pos = np.ascontiguousarray(d_pos / N, dtype=dt)
    c_neg = np.ascontiguousarray(d_neg / N, dtype=dt)
    part = np.empty((nchunks, total), dt)
    dWs = tuple(np.empty_like(W) for W in Ws)
    bwd(Ws, cols, cnts, H, acts, aoffs, ncmax, c_pos, c_neg, part, goffs, dWs)
    return float(L.mean()), float(r_pos.mean()), float(r_neg.mean()), list(dWs)
