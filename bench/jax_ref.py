"""JAX implementation of the HLTM training step (a second reference for bench/run.py).

The maths is minissl's (DESIGN.md §1): bias-free ReLU tree network, top layer linear,

    r_pos = ½||z - z_pos||²,  r_k = ½||z - z_neg_k||²,
    InfoNCE  L = mean_n [ r_pos + τ logsumexp(-r_pos/τ, -r_1/τ, ..., -r_H/τ) ],
    plain SGD  W <- W - lr dL/dW,

so a step here and a minissl step from the same weights and batch give the same loss and the
same new weights (tests/test_jax_ref.py checks it in float64 to ~1e-12).

Layers. The tree network is a block-diagonal masked MLP (``HLTM.network_masks``): at layer l
each of the ``G_l = c**(L-l)`` groups of ``hid`` units reads only its ``c`` children's groups,
``k_l = c * hid_in`` inputs (``hid_in`` = 1 at the leaves). The weights are stored compactly as
``(G_l, hid, k_l)`` (``dense_to_compact`` / ``compact_to_dense`` convert from / to minissl's
dense masked ``W_l`` (n_l, n_{l-1})), and a layer is one grouped ``einsum``. Activations are
kept batch-innermost, ``(groups, features, batch)`` (layout "gfb", the default and the fastest
here); the children of group j of the next layer are the groups ``j*c .. j*c+c-1``, contiguous,
so going up a layer is a free reshape ``(G_l, hid, B) -> (G_{l+1}, c*hid, B)``:

    g_l[j, o, b] = sum_k W_l[j, o, k] f_{l-1}[j, k, b]        ("gok,gkb->gob")

Layout "bgf" keeps the batch outermost (``(B, groups, features)``, "gok,bgk->bgo"); "dense"
multiplies full ``W_l * mask_l`` (n_l, n_{l-1}) matrices, feature-major, for comparison.

Steps. ``make_step`` gives one jitted function per step (forward of anchors, positives and
negatives, loss, ``jax.grad`` backward, SGD update; weights donated); ``make_epoch`` runs
``steps`` of them in one ``lax.scan`` over pre-sampled batches (sampled by minissl's
``tree.triples`` on the CPU, outside any timed region: an in-JAX sampler would need the tree's
polarities, which are not part of minissl's stable interface).

The strong reference ("expert", ``make_expert_epoch``; the one bench/run.py's ratios are
taken against) is written as an expert would for this network: live weights (G_l, k_l, hid),
one ``einsum('gkb,gkh->ghb')`` per layer on feature-major activations (batch innermost), the
epoch's batches laid out feature-major beforehand (no concatenation or transpose in the
step), the whole step jitted with its parameters donated, 500 steps in one ``lax.scan``.

Float64 needs ``enable_x64()`` (``jax_enable_x64``) before arrays are made. Thread count:
XLA's CPU thread pool is sized once per process from the CPUs the process may run on, so
bench/run.py runs this module as a worker subprocess per thread setting (``--worker``), with
its CPU affinity set before ``import jax``.

Needs ``jax`` (the ``bench`` extra).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

LAYOUTS = ("gfb", "bgf", "dense")
DEFAULT_LAYOUT = "gfb"


# ----------------------------------------------------------------------------- minissl adapters
# The only places minissl is used (its package is being restructured): update these if the
# public names move.
def _minissl():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import minissl
    return minissl


def make_tree(depth=5, num_children=2, polarity=(0.7, 1.0), seed=0):
    return _minissl().HLTM(depth=depth, num_children=num_children, polarity=polarity, seed=seed)


def tree_sizes_masks(tree, hid):
    """``(sizes, masks)`` of the tree network: masks are 0/1, W_l of shape (n_l, n_{l-1})."""
    return list(tree.network_sizes(hid)), [np.asarray(m) for m in tree.network_masks(hid)]


def sample_triples(tree, n, rng):
    """``(x (n, n0), x_pos (n, n0), x_neg (n, H, n0))``, float64 NumPy."""
    return tuple(np.asarray(a) for a in tree.triples(n, rng))


def init_weights(tree, hid, seed=0, dtype="float64"):
    """minissl's initial dense masked weights of the tree network (NumPy)."""
    sizes, masks = tree_sizes_masks(tree, hid)
    net = _minissl().ReLUNet(sizes, masks=masks, seed=seed, dtype=dtype, backend="numpy")
    return [np.array(W) for W in net.weights]


# ----------------------------------------------------------------------------- setup
def enable_x64():
    """Allow float64 arrays (call before making any)."""
    jax.config.update("jax_enable_x64", True)


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        raise RuntimeError("float64 needs jax_ref.enable_x64() (jax_enable_x64) first")
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


# ----------------------------------------------------------------------------- layout conversion
def dense_to_compact(weights, hid, check=True):
    """minissl's dense masked tree weights ``W_l`` (n_l, n_{l-1}) -> compact ``(G_l, hid, k_l)``
    with ``G_l = n_l / hid``, ``k_l = n_{l-1} / G_l``: the diagonal blocks. With ``check``,
    entries outside the blocks must be zero (else ValueError: not a tree network's weights)."""
    out = []
    for l, W in enumerate(weights):
        W = np.asarray(W)
        n_out, n_in = W.shape
        if n_out % hid or n_in % (n_out // hid):
            raise ValueError(f"layer {l}: shape {W.shape} is not (groups*{hid}, groups*k)")
        G = n_out // hid
        k = n_in // G
        W4 = W.reshape(G, hid, G, k)
        C = W4[np.arange(G), :, np.arange(G), :]                     # (G, hid, k)
        if check and np.count_nonzero(W) != np.count_nonzero(C):
            raise ValueError(f"layer {l}: nonzero weights outside the tree's diagonal blocks")
        out.append(np.ascontiguousarray(C))
    return out


def compact_to_dense(compact):
    """Compact ``(G_l, hid, k_l)`` -> dense block-diagonal ``W_l`` (G_l*hid, G_l*k_l)."""
    out = []
    for C in compact:
        C = np.asarray(C)
        G, hid, k = C.shape
        D = np.zeros((G, hid, G, k), C.dtype)
        D[np.arange(G), :, np.arange(G), :] = C
        out.append(D.reshape(G * hid, G * k))
    return out


def to_params(weights, hid, layout=DEFAULT_LAYOUT, dtype=None):
    """Device parameters for ``layout`` from minissl's dense masked weights: a tuple of compact
    ``(G, hid, k)`` arrays ("gfb", "bgf") or of dense ``W_l`` ("dense"); ``dtype`` (default:
    the weights' own) float32 or float64."""
    dt = _check_dtype(np.asarray(weights[0]).dtype if dtype is None else dtype)
    ws = weights if layout == "dense" else dense_to_compact(weights, hid)
    return tuple(jnp.asarray(np.asarray(w, dt)) for w in ws)


def from_params(params, layout=DEFAULT_LAYOUT):
    """minissl's dense masked ``W_l`` (NumPy) from device parameters of ``layout``."""
    ws = [np.asarray(p) for p in params]
    return ws if layout == "dense" else compact_to_dense(ws)


# ----------------------------------------------------------------------------- forward
def _forward_gfb(params, X):
    """``X`` (B, n0) -> output (hid, B); activations (groups, features, batch)."""
    G, _, k = params[0].shape
    f = X.T.reshape(G, k, X.shape[0])
    L = len(params)
    for l, W in enumerate(params):
        g = jnp.einsum("gok,gkb->gob", W, f)
        if l < L - 1:
            Gn, _, kn = params[l + 1].shape
            f = jnp.maximum(g, 0).reshape(Gn, kn, X.shape[0])
    return g.reshape(-1, X.shape[0])


def _forward_bgf(params, X):
    """``X`` (B, n0) -> output (hid, B); activations (batch, groups, features)."""
    B = X.shape[0]
    G, _, k = params[0].shape
    f = X.reshape(B, G, k)
    L = len(params)
    for l, W in enumerate(params):
        g = jnp.einsum("gok,bgk->bgo", W, f)
        if l < L - 1:
            Gn, _, kn = params[l + 1].shape
            f = jnp.maximum(g, 0).reshape(B, Gn, kn)
    return g.reshape(B, -1).T


def _forward_dense(params, X, masks):
    """Full ``W_l * mask_l`` products, feature-major ``(n_l, B)``."""
    f = X.T
    L = len(params)
    for l, (W, M) in enumerate(zip(params, masks)):
        g = (W * M) @ f
        f = jnp.maximum(g, 0) if l < L - 1 else g
    return f


def infonce_from_outputs(Z, N, H, tau):
    """``Z`` (d, N(2+H)): columns anchors, positives, negatives (anchor-major). Returns
    ``(mean loss, (mean r_pos, mean r_neg))``."""
    z, zp = Z[:, :N], Z[:, N:2 * N]
    zn = Z[:, 2 * N:].reshape(Z.shape[0], N, H)
    dp = z - zp
    dn = z[:, :, None] - zn
    r_pos = 0.5 * jnp.sum(dp * dp, axis=0)                              # (N,)
    r_neg = 0.5 * jnp.sum(dn * dn, axis=0)                              # (N, H)
    a = -jnp.concatenate([r_pos[:, None], r_neg], axis=1) / tau
    L = r_pos + tau * jax.nn.logsumexp(a, axis=1)
    return jnp.mean(L), (jnp.mean(r_pos), jnp.mean(r_neg))


def make_loss(tau, layout=DEFAULT_LAYOUT, masks=None):
    """``loss(params, x, x_pos, x_neg) -> (mean loss, (r_pos mean, r_neg mean))``."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "dense":
        if masks is None:
            raise ValueError("layout 'dense' needs the masks")
        ms = [np.asarray(m) for m in masks]
        fwd = lambda p, X: _forward_dense(p, X, [m.astype(p[0].dtype) for m in ms])  # noqa: E731
    else:
        fwd = _forward_gfb if layout == "gfb" else _forward_bgf
    tau = float(tau)

    def loss(params, x, x_pos, x_neg):
        N, H, n0 = x_neg.shape
        X = jnp.concatenate([x, x_pos, x_neg.reshape(N * H, n0)])
        return infonce_from_outputs(fwd(params, X), N, H, tau)

    return loss


def _sgd_step(loss, lr):
    lr = float(lr)

    def step(params, x, x_pos, x_neg):
        (value, (rp, rn)), grads = jax.value_and_grad(loss, has_aux=True)(params, x, x_pos, x_neg)
        new = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
        return new, (value, rp, rn)

    return step


def make_value_and_grad(tau=0.1, layout=DEFAULT_LAYOUT, masks=None):
    """Jitted ``(params, x, x_pos, x_neg) -> ((loss, (r_pos, r_neg)), grads)``: the loss and
    ``jax.grad`` of a step, without the update (grads in the layout of ``params``)."""
    return jax.jit(jax.value_and_grad(make_loss(tau, layout, masks), has_aux=True))


def pack(params):
    """Parameters as one flat vector (the per-step variant's state: one buffer to pass per
    call instead of one per layer) and their shapes."""
    return jnp.concatenate([p.ravel() for p in params]), tuple(p.shape for p in params)


def unpack(flat, shapes):
    """Inverse of ``pack``: the tuple of arrays of ``shapes`` (static slices of ``flat``)."""
    out, o = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(flat[o:o + n].reshape(s))
        o += n
    return tuple(out)


def make_step(tau=0.1, lr=0.1, layout=DEFAULT_LAYOUT, masks=None, shapes=None):
    """One jitted SGD step ``step(params, x, x_pos, x_neg) -> (params, (loss, r_pos, r_neg))``;
    ``params`` is donated (updated in place). With ``shapes``, ``params`` is ``pack``'s flat
    vector of arrays of those shapes (fewer buffers per call: ~15 us less per step here)."""
    loss = make_loss(tau, layout, masks)
    if shapes is not None:
        shapes, inner = tuple(tuple(s) for s in shapes), loss
        loss = lambda flat, *b: inner(unpack(flat, shapes), *b)  # noqa: E731
    return jax.jit(_sgd_step(loss, lr), donate_argnums=0)


def make_epoch(tau=0.1, lr=0.1, layout=DEFAULT_LAYOUT, masks=None, unroll=1):
    """``epoch(params, X, XP, XN) -> (params, (losses, r_pos, r_neg))``: one ``lax.scan`` over
    the leading (step) axis of ``X`` (S, N, n0), ``XP`` (S, N, n0), ``XN`` (S, N, H, n0);
    ``params`` donated."""
    step = _sgd_step(make_loss(tau, layout, masks), lr)

    def epoch(params, X, XP, XN):
        return lax.scan(lambda p, b: step(p, *b), params, (X, XP, XN), unroll=unroll)

    return jax.jit(epoch, donate_argnums=0)


# ----------------------------------------------------------------------------- the strong reference
# What an expert would write for this network in JAX ("expert", the reference of the bench's
# ratios): live weights only, per layer (G_l, k_l, hid) ("gkh": the group's k_l = c hid_in
# inputs by its hid outputs), activations feature-major with the batch innermost
# (G_l, k_l, V), V = N (2 + H) views [anchors | positives | negatives, anchor-major], one
# einsum per layer
#
#     g_l[j, o, n] = sum_k f_{l-1}[j, k, n] W_l[j, k, o]          ("gkb,gkh->ghb")
#
# going up a layer a free reshape (G_l, hid, V) -> (G_{l+1}, c hid, V); the batches are laid
# out that way beforehand (``expert_batches``: (S, n_0, V), no concatenation or transpose in
# the step); the whole SGD step jitted, its parameters donated, the S steps one ``lax.scan``.
def to_expert(weights, hid, dtype=None):
    """Device parameters ``(G_l, k_l, hid)`` from minissl's dense masked weights."""
    dt = _check_dtype(np.asarray(weights[0]).dtype if dtype is None else dtype)
    return tuple(jnp.asarray(np.ascontiguousarray(np.swapaxes(C, 1, 2)).astype(dt))
                 for C in dense_to_compact(weights, hid))


def from_expert(params):
    """minissl's dense masked ``W_l`` from ``to_expert``'s parameters."""
    return compact_to_dense([np.swapaxes(np.asarray(p), 1, 2) for p in params])


def expert_batches(x, x_pos, x_neg, steps, dtype=None):
    """An epoch of triples -> one device array (S, n_0, V): per step the views feature-major,
    columns [anchors | positives | negatives (anchor-major)]."""
    dt = _check_dtype(np.asarray(x).dtype if dtype is None else dtype)
    N, (H, n0) = x.shape[0] // steps, x_neg.shape[1:]
    cut = lambda a, k: np.asarray(a)[:steps * N].reshape(steps, N * k, n0)  # noqa: E731
    X = np.concatenate([cut(x, 1), cut(x_pos, 1), cut(x_neg, H)], axis=1)   # (S, V, n0)
    return jnp.asarray(np.ascontiguousarray(np.swapaxes(X, 1, 2)).astype(dt))


def _forward_expert(params, X):
    """``X`` (n_0, V) -> output (hid, V)."""
    V = X.shape[1]
    G, k, _ = params[0].shape
    f = X.reshape(G, k, V)
    for l, W in enumerate(params):
        g = jnp.einsum("gkb,gkh->ghb", f, W)
        if l < len(params) - 1:
            Gn, kn, _ = params[l + 1].shape
            f = jnp.maximum(g, 0).reshape(Gn, kn, V)
    return g.reshape(-1, V)


def make_expert_epoch(N, H, tau=0.1, lr=0.1, unroll=1):
    """``epoch(params, XS) -> (params, (losses, r_pos, r_neg))``: ``lax.scan`` of the jitted
    SGD step over ``XS`` (S, n_0, V) (``expert_batches``); ``params`` (``to_expert``) donated."""
    tau, lr = float(tau), float(lr)

    def loss(params, X):
        return infonce_from_outputs(_forward_expert(params, X), N, H, tau)

    def step(params, X):
        (value, (rp, rn)), grads = jax.value_and_grad(loss, has_aux=True)(params, X)
        return tuple(p - lr * g for p, g in zip(params, grads)), (value, rp, rn)

    def epoch(params, XS):
        return lax.scan(step, params, XS, unroll=unroll)

    return jax.jit(epoch, donate_argnums=0)


def batches_to_device(x, x_pos, x_neg, steps, dtype=None):
    """An epoch of triples (steps*N rows) -> device arrays (S, N, n0), (S, N, n0), (S, N, H, n0)
    of ``dtype`` (default: ``x``'s)."""
    dt = _check_dtype(np.asarray(x).dtype if dtype is None else dtype)
    N = x.shape[0] // steps
    shape = lambda a: a[:steps * N].reshape((steps, N) + a.shape[1:])  # noqa: E731
    return tuple(jnp.asarray(np.asarray(shape(a), dt)) for a in (x, x_pos, x_neg))


def split_steps(X, XP, XN):
    """Per-step device batches (a list of triples) from the stacked epoch arrays."""
    return [(X[s], XP[s], XN[s]) for s in range(X.shape[0])]


def run_steps(step, params, batches):
    """The per-step variant: one jitted call per batch; returns ``(params, last loss)``."""
    out = None
    for b in batches:
        params, out = step(params, *b)
    jax.block_until_ready(params)
    return params, out


# ----------------------------------------------------------------------------- timing
def weight_movement(weights, initial):
    """``sqrt(sum_l ||W_l - W0_l||²)`` (float64): how far an epoch moved the weights, a
    sensitive check that two implementations trained alike (the loss barely moves here)."""
    return float(np.sqrt(sum(np.sum((np.asarray(W, np.float64) - np.asarray(W0, np.float64)) ** 2)
                             for W, W0 in zip(weights, initial))))


def compile_times(fn, *args):
    """``(trace + lower seconds, compile seconds, compiled)`` of a jitted ``fn`` on ``args``."""
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    return t1 - t0, time.perf_counter() - t1, compiled


class Bench:
    """The JAX side of bench/run.py's HLTM comparison in one process (one thread setting):
    every variant compiled once, then each ``time(variant)`` trains one epoch from the same
    initial weights and returns its seconds (weights copied to the device outside the timing).

    Variants: "expert" (the strong reference above: (G, k, hid) live weights, feature-major
    batches laid out beforehand, one ``lax.scan``), "scan" (grouped einsum (G, hid, k), the
    batches concatenated and transposed in the step, one ``lax.scan``), "step" (grouped
    einsum, one jitted call per step, weights packed in one vector), "dense" (``W * mask``,
    one ``lax.scan``)."""

    VARIANTS = ("expert", "scan", "step", "dense")

    def __init__(self, weights, masks, hid, x, x_pos, x_neg, steps, tau, lr, dtype, unroll=1):
        self.dtype = _check_dtype(dtype)
        self.hid, self.weights = hid, [np.asarray(W, self.dtype) for W in weights]
        self.data = batches_to_device(x, x_pos, x_neg, steps, self.dtype)
        self.batches = split_steps(*self.data)
        self.xs = expert_batches(x, x_pos, x_neg, steps, self.dtype)
        self.NH = (x.shape[0] // steps, x_neg.shape[1])
        jax.block_until_ready((self.data, self.batches, self.xs))
        self.fns, self.compile = {}, {}
        for name in self.VARIANTS:
            layout = "dense" if name == "dense" else DEFAULT_LAYOUT
            p = self._params(name)
            if name == "step":
                self.shapes = [q.shape for q in to_params(self.weights, hid, layout, self.dtype)]
                fn = make_step(tau, lr, layout, masks, self.shapes)
                tl, tc, _ = compile_times(fn, p, *self.batches[0])
            elif name == "expert":
                fn = make_expert_epoch(*self.NH, tau, lr, unroll)
                tl, tc, _ = compile_times(fn, p, self.xs)
            else:
                fn = make_epoch(tau, lr, layout, masks, unroll)
                tl, tc, _ = compile_times(fn, p, *self.data)
            self.fns[name] = fn
            self.compile[name] = (tl, tc)
            self.run(name)                                        # warm-up (first dispatch)

    def _params(self, name):
        if name == "expert":
            return to_expert(self.weights, self.hid, self.dtype)
        p = to_params(self.weights, self.hid, "dense" if name == "dense" else DEFAULT_LAYOUT,
                      self.dtype)
        return pack(p)[0] if name == "step" else p

    def run(self, name):
        """One epoch of ``name`` from the initial weights: ``(seconds, final loss, moved)``,
        ``moved`` = ||W_final - W_0|| over all layers (computed after the timing)."""
        p = self._params(name)
        jax.block_until_ready(p)
        t = time.perf_counter()
        if name == "step":
            p, out = run_steps(self.fns[name], p, self.batches)
            loss = float(out[0])
        elif name == "expert":
            p, out = self.fns[name](p, self.xs)
            jax.block_until_ready(p)
            loss = float(out[0][-1])
        else:
            p, out = self.fns[name](p, *self.data)
            jax.block_until_ready(p)
            loss = float(out[0][-1])
        t = time.perf_counter() - t
        if name == "step":
            p = unpack(p, self.shapes)
        ws = (from_expert(p) if name == "expert" else
              from_params(p, "dense" if name == "dense" else DEFAULT_LAYOUT))
        return t, loss, weight_movement(ws, self.weights)


def worker(path):
    """bench/run.py's worker: reads the epoch from ``path`` (.npz), compiles, prints one JSON
    line ``{"ready": ..., "compile": ...}``, then answers each stdin line (a variant name) with
    ``{"seconds": ..., "loss": ..., "moved": ...}`` (``Bench.run``); stops at EOF or "quit". Affinity and XLA_FLAGS are
    the caller's (set before this process started)."""
    d = np.load(path)
    dtype = str(d["dtype"])
    if dtype == "float64":
        enable_x64()
    L = int(d["L"])
    weights = [d[f"W{l}"] for l in range(L)]
    masks = [d[f"M{l}"] for l in range(L)]
    b = Bench(weights, masks, int(d["hid"]), d["x"], d["x_pos"], d["x_neg"], int(d["steps"]),
              float(d["tau"]), float(d["lr"]), dtype, int(d["unroll"]))
    out = sys.stdout
    print(json.dumps({"ready": True, "cpus": sorted(os.sched_getaffinity(0)),
                      "compile": b.compile, "jax": jax.__version__,
                      "xla_flags": os.environ.get("XLA_FLAGS", "")}), file=out, flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name or name == "quit":
            break
        t, loss, moved = b.run(name)
        print(json.dumps({"seconds": t, "loss": loss, "moved": moved}), file=out, flush=True)


# ----------------------------------------------------------------------------- standalone
def main(argv=None):
    """``python bench/jax_ref.py [--dtype float64] [--layouts gfb,bgf,dense]``: compile times and
    per-step times of the scanned epoch and the per-step calls of each layout, this process's
    threads (for the bench table, run bench/run.py)."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--unroll", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.dtype == "float64":
        enable_x64()
    hid, N, tau, lr = 10, 128, 0.1, 0.1
    tree = make_tree(5, 2, (0.7, 1.0), 0)
    _, masks = tree_sizes_masks(tree, hid)
    weights = init_weights(tree, hid, seed=0)
    x, xp, xn = sample_triples(tree, args.steps * N, np.random.default_rng(1))
    data = batches_to_device(x, xp, xn, args.steps, args.dtype)
    batches = split_steps(*data)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, cpus "
          f"{sorted(os.sched_getaffinity(0))}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"{args.dtype}, {args.steps} steps of batch {N}, median of {args.repeats}")
    ex, xs = make_expert_epoch(N, xn.shape[1], tau, lr, args.unroll), expert_batches(
        x, xp, xn, args.steps, args.dtype)
    tl, tc, _ = compile_times(ex, to_expert(weights, hid, args.dtype), xs)
    te = []
    for r in range(args.repeats + 1):
        p = to_expert(weights, hid, args.dtype)
        t = time.perf_counter()
        p, out = ex(p, xs)
        jax.block_until_ready(p)
        te.append(time.perf_counter() - t)
    print(f"expert: scan {np.median(te[1:]) / args.steps * 1e6:7.1f} us/step (compile: "
          f"trace+lower {tl:.2f} s, XLA {tc:.2f} s); final loss {float(out[0][-1]):.6f}")
    for layout in args.layouts.split(","):
        params = lambda: to_params(weights, hid, layout, args.dtype)  # noqa: E731
        ep = make_epoch(tau, lr, layout, masks, args.unroll)
        tl, tc, _ = compile_times(ep, params(), *data)
        shapes = [q.shape for q in params()]
        st = make_step(tau, lr, layout, masks, shapes)
        sl, sc, _ = compile_times(st, pack(params())[0], *batches[0])
        ts, tp = [], []
        for r in range(args.repeats + 1):
            p = params()
            t = time.perf_counter()
            p, out = ep(p, *data)
            jax.block_until_ready(p)
            ts.append(time.perf_counter() - t)
            p = pack(params())[0]
            t = time.perf_counter()
            run_steps(st, p, batches)
            tp.append(time.perf_counter() - t)
        ts, tp = np.median(ts[1:]) / args.steps, np.median(tp[1:]) / args.steps
        print(f"{layout:>6}: scan {ts * 1e6:7.1f} us/step (compile: trace+lower {tl:.2f} s, "
              f"XLA {tc:.2f} s)  per-step {tp * 1e6:7.1f} us/step (compile {sl + sc:.2f} s); "
              f"final loss {float(out[0][-1]):.6f}")


if __name__ == "__main__":
    main()
