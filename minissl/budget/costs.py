"""What the core's requests cost, in plain numbers: nothing here imports the core.

Each estimator takes the sizes a user typed (widths, batch sizes, steps; a config object is
read by attribute only) and returns a ``limits.Cost`` or a byte count; the core calls one of
them, in one line, where such a size enters (a network or sampler constructor, the explicit
operator, the correlations, a training run), and the experiments add theirs up.

- ``net_bytes`` / ``check_net_size``: a ``ReLUNet``'s weights, gradients and masks.
- ``train_cost``: a run of ``train.train``.  ``byol_cost``: a run of ``byol.train_byol``.
- ``correlation_cost``: ``metrics.normalized_correlation`` / ``correlation_ceiling``.
- ``pass_cost`` / ``dense_cost`` / ``check_dense``: the covariance operator's passes, and its
  explicit Kbar and OP; ``spectrum_cost``: a top-k spectrum (the dense ``eigh`` or the Lanczos
  workspace of ``eigsh``).
- ``check_steps``: a fixed-step integration (linear BYOL).
- ``sparse_views_cost``: views of the sparse-coding data model (``decoupling.SparseCoding``).
"""
from __future__ import annotations

import numpy as np

from ..checks import check_int
from .limits import (DRAW_COST, STEP_OVERHEAD, Cost, ResourceLimitError, check_memory,
                     check_work, mlp_activation_bytes, mlp_weights, training_work)

SAMPLE_BYTES = 18        # HLTM: per node and sample, the bool level, its float64 copy, a flip draw
MATRIX_FREE = ("covariance_update and covariance_spectrum(method='lanczos') are matrix-free: "
               "they never form Kbar or OP")


# ----------------------------------------------------------------------------- networks
def net_bytes(sizes, masks=None, dtype="float64"):
    """Bytes a ``ReLUNet`` of these widths holds at its peak: every weight three times (the
    weight and its gradient in ``dtype``, the float64 draw of the init) and every mask that is
    not None (in ``dtype``)."""
    item = np.dtype(dtype).itemsize
    dense = mlp_weights(sizes)
    return dense * (2 * item + 8) + (mlp_weights(sizes, masks) - dense) * item


def check_net_size(sizes, masks=None, dtype="float64", limits=None, param=None):
    """``ResourceLimitError`` if ``net_bytes`` exceeds the memory limit; ``param`` names what
    set the widths (default ``sizes=[...]``)."""
    check_memory(net_bytes(sizes, masks, dtype), "the network's weights, gradients and masks",
                 param or f"sizes={list(sizes)}", limits)


# ----------------------------------------------------------------------------- training
def train_cost(sizes, cfg, negatives=1, draws_per_sample=None, dtype="float64", steps_param=None):
    """The ``Cost`` of ``train`` with ``cfg`` (a ``TrainConfig``) on a net of widths ``sizes``.
    A batch is ``(2 + H) * batch_size`` samples (``negatives`` = H; ``draws_per_sample``
    random numbers each, default ``sizes[0]``; an HLTM draws every node).

    Memory: the batch (float64 samples, their copy in ``dtype``), the forward caches and as
    much again for the backward pass, the SimCLR or SupCon Gram matrices (in-batch or
    supervised negatives), and with ``update="covariance"`` the Jacobians of the batch's views.
    Work: ``training_work`` of the rows the net sees per step, drawing the batch, the Gram
    products, and per layer the covariance-operator step (``2N (n_L + 3) weights``).
    ``steps_param`` names the settings behind ``cfg.steps`` in messages.
    """
    rows = cfg.batch_size * (2 + negatives)
    seen = 2 * cfg.batch_size if cfg.negatives != "given" else rows
    draws = rows * (sizes[0] if draws_per_sample is None else draws_per_sample)
    item, weights = np.dtype(dtype).itemsize, mlp_weights(sizes)
    batch = (draws * 8 + rows * sizes[0] * item + 2 * mlp_activation_bytes(sizes, seen, dtype)
             + (5 * seen * seen * 8 if cfg.negatives != "given" else 0))
    work = training_work(sizes, seen, cfg.steps) + cfg.steps * DRAW_COST * draws
    if cfg.negatives != "given":                       # SimCLR, SupCon: B x B matrices
        work += cfg.steps * 2 * seen * seen * sizes[-1]
    param = f"batch_size={cfg.batch_size}" + (f", negatives={negatives}" if negatives > 1 else "")
    memory = [(batch, "a training batch", param)]
    if cfg.update == "covariance":
        N2, L = 2 * cfg.batch_size, len(sizes) - 1
        memory.append((N2 * sizes[-1] * sum(sizes[1:]) * item + N2 * N2 * sizes[-1] * 8,
                       "the covariance-operator step (Jacobians of the views)", param))
        work += cfg.steps * (L * N2 * (sizes[-1] + 3) * weights + N2 * N2 * sizes[-1])
    steps_param = steps_param or f"steps={cfg.steps}"
    return Cost(tuple(memory), ((work, "training", f"{steps_param}, {param}"),))


def byol_cost(cfg, sizes, pred, draws_per_sample=None, masked=False, dtype="float64"):
    """The ``Cost`` of ``train_byol`` with ``cfg`` (a ``BYOLConfig``), an encoder of widths
    ``sizes`` and a predictor of widths ``pred`` (None: none). Memory: online, target and
    predictor (``net_bytes``), a batch of 2 x batch_size views through all three (forward
    caches, BN and backward buffers: 4x the activations) and the diagnostics batch of
    2 x eval_size views. Work per step: online forward + backward (3x), target forward (1x),
    predictor (3x), three nets' ``STEP_OVERHEAD`` and the draws (3 x batch_size samples); per
    diagnostics (every ``log_every`` steps and at the end) the same plus two SVDs."""
    rows, ev = 2 * cfg.batch_size, 2 * cfg.eval_size
    draws = 3 * cfg.batch_size * (sizes[0] if draws_per_sample is None else draws_per_sample)
    nets = 2 * net_bytes(sizes, [True] * (len(sizes) - 1) if masked else None, dtype)
    nets += net_bytes(pred, None, dtype) if pred else 0
    acts = 4 * (2 * mlp_activation_bytes(sizes, 1, dtype)
                + (mlp_activation_bytes(pred, 1, dtype) if pred else 0))
    w = 4 * mlp_weights(sizes) + (3 * mlp_weights(pred) if pred else 0)
    step = rows * w + 3 * STEP_OVERHEAD + DRAW_COST * draws
    diag = (cfg.steps // cfg.log_every + 1) * (ev * w + 20 * ev * sizes[-1] ** 2)
    net = f"sizes={list(sizes)}" if masked else f"hidden={cfg.hidden}, out_dim={cfg.out_dim}"
    run = f"steps={cfg.steps}, batch_size={cfg.batch_size}"
    return Cost(((nets, "the online, target and predictor networks", net),
                 (rows * acts + 8 * draws, "a training batch", f"batch_size={cfg.batch_size}"),
                 (ev * acts, "the diagnostics batch", f"eval_size={cfg.eval_size}")),
                ((cfg.steps * step, "training", run),
                 (diag, "the diagnostics", f"eval_size={cfg.eval_size}, "
                                           f"log_every={cfg.log_every}")))


def check_steps(steps, what, param, limits=None, per_step=STEP_OVERHEAD):
    """``ResourceLimitError`` if ``steps`` fixed steps of ``per_step`` multiply-adds exceed
    the work limit."""
    check_work(steps * per_step, what, param, limits)


# ----------------------------------------------------------------------------- evaluation
def correlation_cost(n_nodes, sizes, n, dtype="float64", param=None):
    """The ``Cost`` of ``normalized_correlation`` and ``correlation_ceiling`` on ``n`` samples
    of an HLTM of ``n_nodes`` nodes for a tree network of widths ``sizes``: memory of the
    samples (every node), the forward caches, the float64 group copies and their centred
    copies, and the posterior pass; work of drawing, the forward pass and the statistics."""
    hidden = sum(sizes[1:])
    memory = (n * n_nodes * (SAMPLE_BYTES + 4 * 8) + mlp_activation_bytes(sizes, n, dtype)
              + 3 * n * hidden * 8)
    work = n * (mlp_weights(sizes) + 6 * hidden + (DRAW_COST + 8) * n_nodes)
    param = param or f"n={n}"
    return Cost(((memory, "the evaluation pass", param),),
                ((work, "the evaluation pass", param),))


def check_correlation(n_nodes, sizes, n, dtype="float64", limits=None):
    """``correlation_cost(n_nodes, sizes, n, dtype).check(limits)``; returns ``n`` (so that a
    sampler can be called with it, after the check)."""
    correlation_cost(n_nodes, sizes, n, dtype).check(limits)
    return n


# ----------------------------------------------------------------------------- covariance operator
def pass_cost(sizes, dtype, N, M):
    """Forward caches and the Jacobians of every layer of N*M views through a net of widths
    ``sizes``: what every covariance function needs before its own arrays."""
    NM, nL = N * M, sizes[-1]
    memory = (mlp_activation_bytes(sizes, NM, dtype)
              + NM * nL * sum(sizes[1:]) * np.dtype(dtype).itemsize)
    param = f"views of shape (N, M) = ({N}, {M})"
    return Cost(((memory, "the views' forward pass and Jacobians", param),),
                ((NM * mlp_weights(sizes) * (nL + 1), "the views' Jacobians", param),))


def dense_cost(sizes, dtype, N, M, layer, operator=True):
    """``pass_cost`` plus Kbar (N, P, n_L) of ``layer`` (an index into the weights) and, with
    ``operator``, the explicit OP (P, P) and its product (``N P² n_L``)."""
    nl, n_prev = sizes[layer + 1], sizes[layer]
    P, nL, item = nl * n_prev, sizes[-1], np.dtype(dtype).itemsize
    param = f"layer={layer} (P = {nl} x {n_prev} = {P:,} weights), N={N}"
    memory = 2 * N * P * nL * item + (3 * P * P * item if operator else 0)
    work = N * M * nL * P + (N * P * P * nL if operator else 0)
    what = "the explicit operator OP (P x P) and Kbar" if operator else "Kbar (N x P x n_L)"
    return pass_cost(sizes, dtype, N, M) + Cost(((memory, what, param),), ((work, what, param),))


def check_dense(sizes, dtype, N, M, layer, limits=None, operator=True):
    """``dense_cost(...).check(limits)``; past a limit the message points to the matrix-free
    functions."""
    try:
        dense_cost(sizes, dtype, N, M, layer, operator).check(limits)
    except ResourceLimitError as exc:
        raise ResourceLimitError(f"{exc}. {MATRIX_FREE}") from None


LANCZOS_MATVECS = (10, 40)     # OP products of one spectrum: 10 k + 40 (measured 21-88, k 1-16)


def spectrum_cost(sizes, dtype, N, M, layer, k, dense):
    """The ``Cost`` of ``covariance_spectrum`` of ``layer`` on N x M views, top ``k``: the
    views' pass (``pass_cost``) and, with ``dense``, the explicit OP (``dense_cost``) and
    ``eigh``'s eigenvectors and workspace (3 P² numbers, ~4 P³ multiply-adds); else the
    Lanczos workspace of ``eigsh``: ``ncv = min(P, max(2k + 1, 20))`` basis vectors and as many
    Ritz vectors of length P, the ncv x ncv projected matrix, ``10 k + 40`` operator products
    (each ``4 N M (P + n_L n_l)``) and their reorthogonalisation (``2 P ncv`` each)."""
    n_l, nL, item = sizes[layer + 1], sizes[-1], np.dtype(dtype).itemsize
    P = n_l * sizes[layer]
    param = f"k={k}, layer={layer} (P = {n_l} x {sizes[layer]} = {P:,} weights)"
    cost = pass_cost(sizes, dtype, N, M)
    if dense:
        cost = cost + dense_cost(sizes, dtype, N, M, layer)
        return cost + Cost(((3 * P * P * item, "eigh's eigenvectors and workspace", param),),
                           ((4 * P ** 3, "eigh of the explicit operator", param),))
    ncv = min(P, max(2 * k + 1, 20))
    matvecs = LANCZOS_MATVECS[0] * k + LANCZOS_MATVECS[1]
    work = matvecs * (4 * N * M * (P + nL * n_l) + 2 * P * ncv)
    return cost + Cost(((2 * ncv * P * item + ncv * (ncv + 8) * 8,
                         f"the Lanczos workspace (ncv = {ncv} vectors of length P)", param),),
                       ((work, "the spectrum's operator products", param),))


def sparse_views_cost(src, n, m, copies=1, param=None):
    """The ``Cost`` of ``m`` views of ``n * copies`` samples of a sparse-coding model ``src``
    (read by attribute: ``d``, ``d1``, ``dense_rank``), ``SparseCoding.views`` / ``triples``:
    per sample the latent draws, signs and values (3 d), the dense draws (r) and the clean
    sample with its dense part (2 d1); per view the repeated copy, the augmentation's draws or
    masks and the result (4 d1), all float64. Work: the draws and the products with M and P.
    ``n`` and ``m`` are checked first (integers >= 1)."""
    n, m = check_int("n", n, 1), check_int("m", m, 1)
    d, d1, r = src.d, src.d1, src.dense_rank
    rows = n * copies
    memory = 8 * rows * (3 * d + r + 2 * d1 + 4 * m * d1)
    work = rows * (DRAW_COST * (2 * d + r + m * d1) + (d + r) * d1)
    what = f"{rows:,} samples of dim {d1} with {m} views each"
    param = param or f"n={n}, m={m}"
    return Cost(((memory, what, param),), ((work, what, param),))
