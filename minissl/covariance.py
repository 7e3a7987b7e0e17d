"""The covariance operator: per-layer connection K_l, Kbar_l, OP_l, matrix-free update and spectrum.

Conventions (docs/design.md; derivations in docs/theory.md). ``layer`` indexes ``net.weights``
(0-based, so ``layer = l - 1`` for the paper's ``W_l``); ``views`` is ``(N, M, n_0)``: N samples,
M augmented views of each; ``P = n_l * n_{l-1}``; ``vec`` is row-major (numpy's ``ravel``).

    K_l(x)[i*n_{l-1} + j, k] = J_l(x)[k, i] * f_{l-1}(x)[j]        # (P, n_L)
    f_L(x) = K_l(x)^T vec(W_l)                  (bias-free net, no output normalisation)
    Kbar_l(x_n) = mean over the M views of K_l   # (P, n_L)
    OP_l = 2 V[Kbar_l] = (2/N) Σ_n (Kbar_n - μ)(Kbar_n - μ)^T,   μ = (1/N) Σ_n Kbar_n
    OP_l^ξ = (1/N²) Σ_{n,n'} ξ[n,n'] (Kbar_n - Kbar_n')(Kbar_n - Kbar_n')^T     (ξ ≡ 1 -> 2V)

(the products ``A A^T`` of two ``(P, n_L)`` matrices contract the output index k).

Theorem (exact on a finite population; tests/test_covariance.py): for the simple loss with every
(anchor view, positive view, negative sample, negative view) enumerated, the mean gradient is
``-OP_l vec(W_l)`` at every layer, so gradient descent moves ``W_l`` by ``lr * OP_l vec(W_l)``.

Matrix-free. With ``u_n = Kbar_n^T vec(V) = mean_m J_l(x_nm) V f_{l-1}(x_nm)`` (forward-like,
(N, n_L)) and the Laplacian ``Lap(ξ) = diag(ξ 1) - ξ`` (ξ symmetric):

    OP^ξ vec(V) = Σ_n Kbar_n c_n,   c = (2/N²) Lap(ξ) u           # c: (N, n_L)
    Σ_n Kbar_n c_n = vec( Σ_{n,m} (1/M) (J_l(x_nm)^T c_n) ⊗ f_{l-1}(x_nm) )   (backward-like)

For ξ ≡ 1, ``c_n = (2/N)(u_n - mean_n u)``. Neither K (N, P, n_L) nor OP (P, P) is formed.
``covariance_updates`` gives every layer's ΔW_l (and ξ) from one forward and one Jacobian pass.

Masked layers (the HLTM tree network): masked weights are zero and get zero gradient, so the
operator acts on the allowed weights only: ``OP_l <- D OP_l D`` with ``D = diag(vec(mask_l))``.

The identities need a bias-free network without output normalisation; ``connection`` (the
derivative ``d f_L / d vec(W_l)`` before normalisation) is defined for any ``ReLUNet``.
"""
from __future__ import annotations

import numpy as np

from . import backend as B
from .kernels import twin
from .budget import Cost, check_dense, pass_cost, spectrum_cost
from .losses import check_loss, pair_weights
from .nets import jacobians

PAIR_WEIGHT_LOSSES = ("simple", "soft_triplet", "infonce")
SPECTRUM_METHODS = ("auto", "lanczos", "dense")
DENSE_MAX_P = 1024        # "auto" uses the explicit operator up to this many parameters
DENSE_MAX_KBAR = 1 << 24  # ... and while Kbar (N * P * n_L numbers) stays below this


# ----------------------------------------------------------------------------- validation
def _check_no_bn(net):
    if net.batchnorm is not None:
        raise ValueError("the covariance operator needs a ReLU net without BatchNorm "
                         "(batchnorm=None): f_L = K_l^T vec(W_l) does not hold through BN")


def _check_layer(net, layer):
    """``layer`` as an index into ``net.weights`` (0-based), on a net without BN."""
    _check_no_bn(net)
    return B.check_int("layer", layer, 0, net.depth - 1)


def _check_views(net, views):
    views = net.asarray(views)
    if views.ndim != 3 or views.shape[2] != net.sizes[0] or min(views.shape[:2]) < 1:
        raise ValueError(f"views must have shape (N, M, {net.sizes[0]}) with N, M >= 1, "
                         f"got {tuple(views.shape)}")
    if not bool(net.xp.isfinite(views).all()):
        raise ValueError("views contains NaN or infinite values")
    return views


def _check_xi(net, xi, N):
    """``None`` or a finite symmetric (N, N) array on the net's device."""
    if xi is None:
        return None
    xp = net.xp
    xi = net.asarray(xi)
    if xi.shape != (N, N):
        raise ValueError(f"xi must have shape (N, N) = ({N}, {N}) (one weight per sample pair), "
                         f"got {tuple(xi.shape)}")
    if not bool(xp.isfinite(xi).all()):
        raise ValueError("xi contains NaN or infinite values")
    scale = float(xp.abs(xi).max()) if N else 0.0
    if float(xp.abs(xi - xi.T).max()) > 1e-10 * max(scale, 1e-300):
        raise ValueError("xi must be symmetric (xi[n, n'] == xi[n', n]); only its symmetric part "
                         "enters OP, pass (xi + xi.T) / 2")
    return xi


# ----------------------------------------------------------------------------- the connection K
def _passes(net, views):
    """``(gs, fs)`` of all N*M views, flattened n-major."""
    N, M, n0 = views.shape
    return net.passes(views.reshape(N * M, n0))


def connection(net, x, layer):
    """``K_l(x)`` for each row of ``x``:
    ``K[n, i*n_{l-1} + j, k] = J_l(x_n)[k, i] f_{l-1}(x_n)[j]``.

    ``x``: (N, n_0) -> ``K``: (N, P, n_L), ``P = n_l n_{l-1}``. For a bias-free net without
    output normalisation ``f_L(x_n) = K[n].T @ net.weights[layer].ravel()`` (reversibility).
    K is the derivative ``d f_L / d vec(W_l)`` (transposed) for any net; it costs N*P*n_L memory
    (checked against the limits first, ``budget.check_dense``).
    """
    layer = _check_layer(net, layer)
    x = net.check_input(x)
    check_dense(net.sizes, net.dtype, x.shape[0], 1, layer, operator=False)
    gs, fs = net.passes(x)
    J = jacobians(net.weights, gs, net.xp)[layer]              # (N, n_L, n_l)
    f = fs[layer]                                              # (N, n_{l-1})
    N, nL, nl = J.shape
    K = J.transpose(0, 2, 1)[:, :, None, :] * f[:, None, :, None]   # (N, n_l, n_{l-1}, n_L)
    return K.reshape(N, nl * f.shape[1], nL)                   # (N, P, n_L)


def kbar(net, views, layer):
    """``Kbar_l`` per sample: the mean of ``K_l`` over the M views. (N, M, n_0) -> (N, P, n_L).
    Its memory is checked against the limits first (``budget.check_dense``)."""
    layer = _check_layer(net, layer)
    views = _check_views(net, views)
    N, M, _ = views.shape
    check_dense(net.sizes, net.dtype, N, M, layer, operator=False)
    gs, fs = _passes(net, views)
    J, f = jacobians(net.weights, gs, net.xp)[layer], fs[layer]   # (NM, n_L, n_l), (NM, n_{l-1})
    nL, nl, n_prev = J.shape[1], J.shape[2], f.shape[1]
    # Kbar[n, i, j, k] = (1/M) Σ_m J[nm, k, i] f[nm, j]; never the (N*M, P, n_L) K of all views
    Kb = net.xp.einsum("nmki,nmj->nijk", J.reshape(N, M, nL, nl), f.reshape(N, M, n_prev),
                       optimize=True) / M
    return Kb.reshape(N, nl * n_prev, nL)                      # (N, P, n_L)


def _mask_vec(net, layer):
    if net.masks is None or net.masks[layer] is None:
        return None
    return net.masks[layer].ravel()


def _laplacian_weights(xi, N, xp):
    """``C`` (N, N) with ``OP = Σ_nn' Kbar_n C[n,n'] Kbar_n'^T``: ``C = (2/N²) Lap(ξ)``."""
    if xi is None:
        return (2.0 / N) * (xp.eye(N) - 1.0 / N)               # (2/N²) (N I - 1 1^T)
    return (2.0 / N**2) * (xp.diag(xi.sum(axis=1)) - xi)


def covariance_operator(net, views, layer, xi=None, limits=None):
    """The explicit operator ``OP_l`` (P, P), ``P = n_l n_{l-1}``.

    ``xi=None``: ``OP = 2 V[Kbar] = (2/N) Σ_n (Kbar_n - μ)(Kbar_n - μ)^T`` (population
    covariance over the N samples, contracted over the output index k).
    ``xi`` (N, N) symmetric:
    ``OP = (1/N²) Σ_{n,n'} xi[n,n'] (Kbar_n - Kbar_n')(Kbar_n - Kbar_n')^T``.
    On a masked layer the rows and columns of masked weights are zeroed (``D OP D``).
    Memory: N*P*n_L for Kbar plus P² for OP, checked against ``limits`` before anything is
    computed (``ResourceLimitError`` pointing to ``covariance_update``/``covariance_spectrum``,
    which are matrix-free).
    """
    xp = net.xp
    layer, views = _check_layer(net, layer), _check_views(net, views)
    check_dense(net.sizes, net.dtype, views.shape[0], views.shape[1], layer, limits)
    Kb = kbar(net, views, layer)                               # (N, P, n_L)
    N = Kb.shape[0]
    xi = _check_xi(net, xi, N)
    if xi is None:
        Kc = Kb - Kb.mean(axis=0)                              # (N, P, n_L)
        OP = (2.0 / N) * xp.tensordot(Kc, Kc, axes=([0, 2], [0, 2]))
    else:
        Y = xp.tensordot(_laplacian_weights(xi, N, xp), Kb, axes=(1, 0))   # (N, P, n_L)
        OP = xp.tensordot(Kb, Y, axes=([0, 2], [0, 2]))        # (P, P)
        OP = 0.5 * (OP + OP.T)
    d = _mask_vec(net, layer)
    if d is not None:
        OP = OP * d[:, None] * d[None, :]
    return OP


# ----------------------------------------------------------------------------- matrix-free
class JacobianProducts:
    """``Kbar^T vec(V)`` and ``Σ_n Kbar_n c_n`` of one layer through the Jacobians ``J_l`` of
    every view (the NumPy/CuPy reference; ``kernels.covariance.GateProducts`` is its twin).

    ``JacobianProducts(J, f, N, M)``: the layer's ``J`` (NM, n_L, n_l) and Linear inputs
    ``f`` (NM, n_{l-1}) of the N*M views, n-major. ``every_layer(net, gs, fs, N, M)``: one
    per layer from one Jacobian pass (``nets.jacobians``) over the pre-activations ``gs`` and
    Linear inputs ``fs`` of one forward.
    """

    def __init__(self, J, f, N, M):
        self.xp = B.array_module(f)
        self.J, self.f, self.N, self.M = J, f, N, M                # (NM, n_L, n_l), (NM, n_{l-1})

    @classmethod
    def every_layer(cls, net, gs, fs, N, M):
        Js = jacobians(net.weights, gs, B.array_module(fs[0]))     # all layers, one pass
        return [cls(J, f, N, M) for J, f in zip(Js, fs)]

    def kbar_t(self, V):
        """``u_n = Kbar_n^T vec(V)`` (N, n_L) for ``V`` (n_l, n_{l-1}): forward-like."""
        G = self.f @ V.T                                           # (NM, n_l)
        u = self.xp.einsum("bki,bi->bk", self.J, G)                # (NM, n_L)
        return u.reshape(self.N, self.M, -1).mean(axis=1)          # (N, n_L)

    def kbar_sum(self, c):
        """``Σ_n Kbar_n c_n`` reshaped to (n_l, n_{l-1}) for ``c`` (N, n_L): backward-like."""
        c = self.xp.repeat(c, self.M, axis=0)                      # (NM, n_L)
        D = self.xp.einsum("bk,bki->bi", c, self.J)                # (NM, n_l) = J^T c per view
        return (D.T @ self.f) / self.M                             # (n_l, n_{l-1})


def connection_pass(net, views):
    """One forward of the N*M views (N, M, n_0) (validated by the caller) and one Jacobian
    pass: ``(products, fbar)``, per layer the connection products (``JacobianProducts``, or
    for backend "numba" its twin ``kernels.twin("connection")``) and the augmentation-averaged
    outputs ``fbar`` (N, n_L) of that forward (what the pair weights read)."""
    N, M = views.shape[:2]
    gs, fs = _passes(net, views)
    products = twin("connection", net.backend) or JacobianProducts
    return products.every_layer(net, gs, fs, N, M), gs[-1].reshape(N, M, -1).mean(axis=1)


class Factors:
    """What the matrix-free products need for one layer: ``apply(V) = OP vec(V)``.

    ``Factors(net, views, layer, xi)``: ``views`` (N, M, n_0), ``xi`` None or (N, N)
    symmetric. The connection products come from ``JacobianProducts`` or, for backend "numba",
    its compiled twin (``kernels.twin("connection")``), which never forms J. ``products``:
    those of every layer from one ``connection_pass`` of these views, shared between layers
    (``covariance_updates``); None runs the pass here.
    """

    def __init__(self, net, views, layer, xi=None, products=None):
        self.xp = xp = net.xp
        self.layer = _check_layer(net, layer)
        views = _check_views(net, views)
        self.N, self.M = views.shape[:2]
        self.xi = _check_xi(net, xi, self.N)
        if products is None:
            pass_cost(net.sizes, net.dtype, self.N, self.M).check()
            products, _ = connection_pass(net, views)
        self.products = products[self.layer]
        self.shape = tuple(net.weights[self.layer].shape)          # (n_l, n_{l-1})
        self.dtype = net.dtype
        self.mask = None if net.masks is None else net.masks[self.layer]
        if self.xi is not None:
            self.lap = xp.diag(self.xi.sum(axis=1)) - self.xi      # (N, N)

    def apply(self, V):
        """``OP vec(V)`` reshaped to (n_l, n_{l-1})."""
        if self.mask is not None:
            V = V * self.mask
        u = self.products.kbar_t(V)                                # (N, n_L)
        N = self.N
        if self.xi is None:
            c = (2.0 / N) * (u - u.mean(axis=0))
        else:
            c = (2.0 / N**2) * (self.lap @ u)
        out = self.products.kbar_sum(c)
        if self.mask is not None:
            out = out * self.mask
        return out


def covariance_update(net, views, layer, xi=None):
    """``ΔW_l`` with ``vec(ΔW_l) = OP_l vec(W_l)``, shape of ``net.weights[layer]``, matrix-free.

    Cost: one forward of the N*M views plus two products with ``J_l`` (NM, n_L, n_l); memory
    O(NM n_L n_l), never (N, P, n_L) or (P, P). Gradient descent on the simple loss moves
    ``W_l`` by ``lr * ΔW_l`` (see the module docstring for ``xi``). For every layer at once
    use ``covariance_updates`` (one forward, not one per layer).
    """
    F = Factors(net, views, layer, xi)
    return F.apply(net.weights[F.layer])


def covariance_updates(net, views, xi=None, loss=None, tau=1.0, margin=0.0):
    """``[ΔW_l for every layer]``, each ``covariance_update(net, views, l, xi)``, from ONE
    forward of the N*M views and ONE Jacobian pass (``connection_pass``), not one per layer.

    ``loss`` (instead of ``xi``; one of ``PAIR_WEIGHT_LOSSES``, with ``tau``, ``margin``):
    ``ξ = covariance_pair_weights(net, views, loss, tau, margin)``, read from the outputs of
    that same forward. The pass (and the pair distances) are checked against the limits first.
    """
    _check_no_bn(net)
    views = _check_views(net, views)
    N, M = views.shape[:2]
    if loss is None:
        pass_cost(net.sizes, net.dtype, N, M).check()
    elif xi is not None:
        raise ValueError("pass xi (the pair weights) or loss (to compute them), not both")
    else:
        _check_pairs(net, loss, tau, margin, N, M)
    products, fbar = connection_pass(net, views)
    if loss is not None:
        xi = pair_weights_of(fbar, loss, tau, margin)
    return [Factors(net, views, l, xi, products=products).apply(net.weights[l])
            for l in range(net.depth)]


def covariance_matvec(net, views, layer, xi=None):
    """A function ``v -> OP_l v`` on flat vectors (P,), matrix-free (the factors are cached)."""
    F = Factors(net, views, layer, xi)
    return lambda v: F.apply(v.reshape(F.shape)).ravel()


def covariance_spectrum(net, views, layer, k=4, xi=None, method="auto", tol=0.0, seed=0,
                        blas_threads=1):
    """Top-``k`` eigenpairs of ``OP_l``: ``(values (k,), vectors (P, k))``, values descending.

    ``method``: "lanczos" (``eigsh`` over a ``LinearOperator`` whose matvec is the matrix-free
    product; ``cupyx.scipy.sparse.linalg`` for CuPy arrays), "dense" (explicit OP and
    ``eigh``; P² + N P n_L memory), "auto" (dense when k >= P - 1, or when P <= DENSE_MAX_P
    and N P n_L <= DENSE_MAX_KBAR; else lanczos).
    ``tol`` is eigsh's relative accuracy (0: machine precision); ``seed`` fixes its start
    vector. Each eigenvector's sign is fixed so that its largest-magnitude entry is positive.
    Arrays are returned on the net's device.
    ``blas_threads`` (NumPy path, "lanczos"): CPU BLAS threads during the solve (None: leave
    as set). Lanczos spends its time in vector operations of length P and small products,
    where threads do not pay: on a loaded 2-core machine 1 thread was ~20x faster than 2
    (docs/performance.md). The memory and work of the chosen method (``budget.spectrum_cost``:
    with eigh's or eigsh's workspace) are checked against the environment's limits first.
    """
    layer = _check_layer(net, layer)
    B.check_choice("method", method, SPECTRUM_METHODS)
    P = int(np.prod(net.weights[layer].shape))
    k = B.check_int("k", k, 1, P)                                   # P = n_l n_(l-1)
    tol = B.check_real("tol", tol, 0)
    if blas_threads is not None:
        B.check_int("blas_threads (None or an integer)", blas_threads, 1)
    if method == "lanczos" and k >= P - 1:
        raise ValueError(f"method='lanczos' needs k < P - 1 = {P - 1}, got k={k}; "
                         "use method='dense'")
    xp = net.xp
    views = _check_views(net, views)
    N = views.shape[0]
    small = P <= DENSE_MAX_P and N * P * net.sizes[-1] <= DENSE_MAX_KBAR
    dense = method == "dense" or (method == "auto" and (small or k >= P - 1))
    spectrum_cost(net.sizes, net.dtype, N, views.shape[1], layer, k, dense).check()
    if dense:
        OP = covariance_operator(net, views, layer, xi)
        w, U = xp.linalg.eigh(OP)
        vals, vecs = w[::-1][:k], U[:, ::-1][:, :k]
    else:
        vals, vecs = _lanczos(Factors(net, views, layer, xi), k, tol, seed, blas_threads)
    idx = xp.argmax(xp.abs(vecs), axis=0)
    signs = xp.sign(vecs[idx, xp.arange(k)])
    signs = xp.where(signs == 0, 1.0, signs)
    return xp.ascontiguousarray(vals), xp.ascontiguousarray(vecs * signs)


def _lanczos(F, k, tol, seed, blas_threads):
    """Top-``k`` eigenpairs of ``OP`` given its ``Factors``, descending: ``eigsh`` over a
    ``LinearOperator`` (``cupyx.scipy.sparse.linalg`` for CuPy arrays)."""
    xp, P = F.xp, int(np.prod(F.shape))
    if xp is np:
        from scipy.sparse.linalg import LinearOperator, eigsh
    else:  # CuPy arrays: the cupyx Lanczos solver, same interface
        from cupyx.scipy.sparse.linalg import LinearOperator, eigsh
    dtype = F.dtype
    A = LinearOperator((P, P), matvec=lambda v: F.apply(v.reshape(F.shape)).reshape(v.shape),
                       dtype=dtype)
    if xp is np:
        v0 = B.rng(seed).standard_normal(P).astype(dtype)
        if F.mask is not None:
            v0 = v0 * F.mask.ravel()
        with B.blas_threads(blas_threads):   # after importing scipy, so its BLAS is seen
            w, U = eigsh(A, k=k, which="LA", v0=v0, tol=tol)
    else:
        w, U = eigsh(A, k=k, which="LA", tol=tol)
    order = xp.argsort(w)[::-1]
    return w[order], U[:, order]


# ----------------------------------------------------------------------------- pair weights
def covariance_pair_weights(net, views, loss="infonce", tau=1.0, margin=0.0):
    """Pair weights ``ξ`` (N, N), symmetric, for ``covariance_operator(..., xi=ξ)``.

    The paper's large-batch approximation: distances from the augmentation-averaged outputs
    ``f̄_n = mean_m f_L(x_nm)``, ``r_+ ≈ 0``, ``r^-_{nn'} ≈ ½||f̄_n - f̄_n'||²``, the negatives of
    anchor n being the whole population n' = 1..N (n itself included, as in E_x E_x'), and
    ``ξ = -dL/dr^-`` from ``losses.pair_weights`` (so the τ prefactor convention is the loss's):

    - "simple":       ``ξ ≡ 1``  (OP = 2V exactly)
    - "soft_triplet": ``ξ[n,n'] = σ((r_0 - r^-_{nn'})/τ)`` (already symmetric)
    - "infonce":      ``p[n,n'] = e^{-r^-_{nn'}/τ} / (1 + Σ_n'' e^{-r^-_{nn''}/τ})`` and
                      ``ξ = N (p + p^T)/2`` (N: the H = N negatives per anchor against the
                      operator's 1/N² normalisation; only the symmetric part enters OP).

    What the approximation leaves out (docs/theory.md): ξ's dependence on the views (the true
    weights are per view combination, so Kbar's mean over views does not factor out of ξ);
    the positive distance r_+ (nonzero for non-identical views); and, for InfoNCE, the term
    ``(1/N²) Σ_n (rowsum_n(ξ) - colsum_n(ξ)) Cov_views(K_n)`` that an asymmetric ξ adds.
    ``N·p`` keeps a finite large-batch limit ``e^{-r/τ} / E_x'' e^{-r/τ}``.
    """
    views = _check_views(net, views)
    N, M = views.shape[:2]
    _check_pairs(net, loss, tau, margin, N, M)
    if loss == "simple":
        return net.xp.ones((N, N), dtype=net.dtype)
    gs, _ = _passes(net, views)
    return pair_weights_of(gs[-1].reshape(N, M, -1).mean(axis=1), loss, tau, margin)


def _check_pairs(net, loss, tau, margin, N, M):
    """``loss`` one of PAIR_WEIGHT_LOSSES with valid ``tau``/``margin``; the pass over the N*M
    views and the pair distances within the limits."""
    if loss not in PAIR_WEIGHT_LOSSES:
        raise ValueError(f"loss must be one of {PAIR_WEIGHT_LOSSES}, got {loss!r}")
    check_loss(loss, tau, margin=margin)
    (pass_cost(net.sizes, net.dtype, N, M)
     + Cost(((3 * N * N * net.sizes[-1] * 8, "the pair distances", f"N={N}"),))).check()


def pair_weights_of(fbar, loss, tau=1.0, margin=0.0):
    """``covariance_pair_weights`` from the augmentation-averaged outputs ``fbar`` (N, n_L):
    ξ (N, N), symmetric (``loss`` validated by the caller)."""
    xp = B.array_module(fbar)
    N = fbar.shape[0]
    if loss == "simple":
        return xp.ones((N, N), dtype=fbar.dtype)
    diff = fbar[:, None, :] - fbar[None, :, :]                 # (N, N, n_L)
    R = 0.5 * (diff * diff).sum(axis=-1)                       # (N, N) r^-
    if loss == "soft_triplet":
        xi, _ = pair_weights(xp.zeros(N * N, dtype=R.dtype), R.reshape(N * N, 1),
                             loss, tau, margin)
        xi = xi.reshape(N, N)
        return 0.5 * (xi + xi.T)
    p, _ = pair_weights(xp.zeros(N, dtype=R.dtype), R, loss, tau, margin)   # (N, N)
    return N * 0.5 * (p + p.T)


# ----------------------------------------------------------------------------- linear nets
def linear_covariance_update(weights, views):
    """The covariance flow of a deep *linear* net ``f = W_L ... W_1 x`` (no ReLU), explicitly.

    With ``A = W_L ... W_1``, ``A_above = W_L ... W_{l+1}``, ``A_below = W_{l-1} ... W_1`` and
    ``Σ = V[x̄]`` the population covariance of the view-averaged inputs ``x̄_n`` (n_0, n_0):
    ``ΔW_l = 2 A_above^T A Σ A_below^T`` (the simple loss's -mean gradient, i.e. OP_l vec(W_l)
    for a linear net). For two layers: ``ΔW_1 = 2 W_2^T W_2 W_1 Σ``, ``ΔW_2 = 2 W_2 W_1 Σ W_1^T``,
    so ``d/dt (W_1 W_1^T - W_2^T W_2) = 0``. ``weights``: list of (n_l, n_{l-1}) NumPy/CuPy
    arrays; ``views`` (N, M, n_0). Returns the list of ``ΔW_l``.
    """
    xp = B.array_module(*weights)
    views = xp.asarray(views)
    if views.ndim != 3 or views.shape[2] != weights[0].shape[1]:
        raise ValueError(f"views must have shape (N, M, {weights[0].shape[1]}), "
                         f"got {tuple(views.shape)}")
    for l in range(1, len(weights)):
        if weights[l].shape[1] != weights[l - 1].shape[0]:
            raise ValueError(f"weights[{l}] has shape {tuple(weights[l].shape)}, which does not "
                             f"chain with weights[{l - 1}] {tuple(weights[l - 1].shape)}")
    xb = views.mean(axis=1)                                    # (N, n_0)
    xc = xb - xb.mean(axis=0)
    Sigma = xc.T @ xc / xb.shape[0]                            # (n_0, n_0)
    A = weights[0]
    for W in weights[1:]:
        A = W @ A                                              # (n_L, n_0)
    G = 2.0 * A @ Sigma                                        # -dL/dA, (n_L, n_0)
    out = []
    for l in range(len(weights)):
        above = xp.eye(weights[-1].shape[0], dtype=A.dtype)
        for W in reversed(weights[l + 1:]):
            above = above @ W                                  # W_L ... W_{l+1}
        below = xp.eye(weights[0].shape[1], dtype=A.dtype)
        for W in weights[:l]:
            below = W @ below                                  # W_{l-1} ... W_1
        out.append(above.T @ G @ below.T)
    return out
