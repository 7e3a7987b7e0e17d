"""The ops, each forward and backward side by side, and the layers built from them.

Batch-major throughout: a batch is ``(N, n)``; ``W`` is ``(n_out, n_in)``. Every backward
returns the gradient of ``sum(dy * y)`` (``dy`` the gradient w.r.t. the op's output).

    linear       g = x W^T (+ b)            dW = dg^T x (* mask),  db = Σ_n dg,  dx = dg W
    relu         f = max(g, 0)              dg = df * (g > 0)
    l2_normalize y = z / (||z|| + eps)      dz = (dy - y (y.dy) s/||z||) / s,  s = ||z|| + eps
    batchnorm    y = gamma (x - mu) r + beta,  r = (var + eps)^(-1/2)   (see ``bn_forward``)
    weight_norm  W = V / ||V|| (rows)      dV = (dW - W (W.dW)) / ||V||
    sym_threshold h = sign(s) max(|s| - b, 0)   ds = dh 1[|s| > b],  db = -Σ_n ds sign(s)

Layers (``Linear``, ``ReLU``, ``L2Normalize``, ``BatchNorm``, ``WeightNormLinear``,
``SymmetricThreshold``) hold parameters and the cache of
their last ``forward``; ``backward(dy)`` returns ``dx`` and fills ``layer.grads`` (aligned with
``layer.parameters()``). ``Sequential`` chains them; ``ReLUNet`` (nets.py) and every BYOL
network (byol.py) are Sequentials of these layers.

BatchNorm's mean and variance parts are switchable (``normal``: with gradient, ``detach``:
stop-gradient, ``omit``: left out), and its statistics are taken over the whole batch or over
``groups`` equal blocks of it (the two views of BYOL separately):

    mu   = mean_i x_i                (mean normal | detach);   mu = 0 (omit)
    c    = x - mu
    var  = mean_i c_i^2              (var normal | detach);    var = 1 - eps (omit)
         with mean="omit" the variance is the second moment mean_i x_i^2 ("moment"), or, as in
         the paper authors' code, the centred variance of x, unbiased ("centred")
    dx   = r dxhat                                   direct path
         - r mean_i dxhat_i                          mean path (mean normal): BYOL's implicit
                                                     contrastive term
         - r^3 mean_i(dxhat_i c_i) c                 variance path (var normal)
"""
from __future__ import annotations

import numpy as np

from . import backend as B
from .kernels import twin

BN_MODES = ("normal", "detach", "omit")
BN_OMIT_VAR = ("moment", "centred")


# ----------------------------------------------------------------------------- linear
def linear(x, W, b=None):
    """``g = x W^T (+ b)``: (N, n_in), (n_out, n_in) -> (N, n_out)."""
    g = x @ W.T
    return g if b is None else g + b


def linear_backward(dg, x, W, mask=None, want_bias=False, want_input=True):
    """``(dW, db, dx)``: ``dW = dg^T x`` (zero where ``mask`` is 0), ``db = Σ_n dg`` (or None),
    ``dx = dg W`` (or None). dg: (N, n_out), x: (N, n_in)."""
    dW = dg.T @ x                                          # (n_out, n_in)
    if mask is not None:
        dW *= mask
    return dW, (dg.sum(axis=0) if want_bias else None), (dg @ W if want_input else None)


class Linear:
    """``g = x W^T (+ b)`` with an optional 0/1 ``mask`` on ``W`` (masked weights are zero and
    get zero gradient).

    Init (PyTorch's ``nn.Linear`` rule over the live inputs): ``W_ij ~ U(-1, 1) * init_scale /
    sqrt(fan_in_i)`` with ``fan_in_i`` the number of unmasked inputs of unit i, then ``b_i``
    likewise, both drawn from ``rng`` in that order. On backend "numba" a masked layer's
    products run in compiled kernels that skip the mask's zeros (``kernels.mlp.LinearPlan``).
    """

    def __init__(self, n_in, n_out, *, mask=None, bias=False, rng=None, init_scale=1.0,
                 dtype="float64", backend="numpy"):
        self.xp, self.dtype = B.get_xp(backend), B.check_dtype(dtype)
        g = B.rng(rng)
        m = None if mask is None else np.asarray(B.to_numpy(mask), dtype=self.dtype)
        fan_in = np.full((n_out, 1), n_in, float) if m is None else m.sum(1, keepdims=True)
        bound = init_scale / np.sqrt(np.maximum(fan_in, 1))
        W = g.uniform(-1.0, 1.0, (n_out, n_in)) * bound
        if m is not None:
            W *= m
        self.W = self.xp.asarray(W.astype(self.dtype))
        self.b = (self.xp.asarray((g.uniform(-1.0, 1.0, n_out) * bound[:, 0]).astype(self.dtype))
                  if B.check_bool("bias", bias) else None)
        self.mask = None if m is None else self.xp.asarray(m)
        plan = twin("linear", backend) if m is not None else None
        self.plan = None if plan is None else plan(m)      # compiled masked products
        self.need_input_grad = True
        self.cache, self.grads = None, []

    def parameters(self):
        return [self.W] if self.b is None else [self.W, self.b]

    def forward(self, x):
        g = linear(x, self.W) if self.plan is None else self.plan.forward(self.W, x)
        if self.b is not None:
            g = g + self.b
        self.cache = (x, g)
        return g                                           # (N, n_out)

    def backward(self, dg):
        x, _ = self.cache
        want_bias, want_input = self.b is not None, self.need_input_grad
        if self.plan is None:
            dW, db, dx = linear_backward(dg, x, self.W, self.mask, want_bias, want_input)
        else:
            dW, dx = self.plan.backward(self.W, dg, x, want_input)
            db = dg.sum(axis=0) if want_bias else None
        self.grads = [dW] if db is None else [dW, db]
        return dx                                          # (N, n_in) or None

    def copy(self):
        new = object.__new__(Linear)
        new.__dict__.update(self.__dict__, W=self.W.copy(), cache=None, grads=[])
        new.b = None if self.b is None else self.b.copy()
        return new


# ----------------------------------------------------------------------------- relu
def relu(g, xp=np):
    """``f = max(g, 0)``."""
    return xp.maximum(g, 0)


def relu_backward(df, g):
    """``dg = df * (g > 0)``."""
    return df * (g > 0)


class ReLU:
    def __init__(self, xp=np):
        self.xp, self.cache, self.grads = xp, None, []

    def parameters(self):
        return []

    def forward(self, g):
        self.cache = g
        return relu(g, self.xp)

    def backward(self, df):
        return relu_backward(df, self.cache)

    def copy(self):
        return ReLU(self.xp)


# ----------------------------------------------------------------------------- L2 normalise
def _inverse(s, xp):
    """``1/s`` where ``s > 0``, else 0 (a zero row stays zero and passes no gradient)."""
    pos = s > 0
    return xp.where(pos, 1.0 / xp.where(pos, s, 1.0), 0.0)


def l2_normalize(z, eps=0.0, xp=np):
    """``y = z / (||z|| + eps)`` row-wise; returns ``(y, norm)`` with ``norm`` (N, 1)."""
    norm = xp.sqrt((z * z).sum(axis=1, keepdims=True))
    return z * _inverse(norm + eps, xp), norm


def l2_normalize_backward(dy, z, norm, eps=0.0, xp=np):
    """``dz = dy / s - z (z . dy) / (s^2 ||z||) = (dy - y (y . dy) s / ||z||) / s``,
    ``s = ||z|| + eps``."""
    inv = _inverse(norm + eps, xp)
    y = z * inv
    ratio = (norm + eps) * _inverse(norm, xp)
    return (dy - y * (y * dy).sum(axis=1, keepdims=True) * ratio) * inv


class L2Normalize:
    """Row-wise ``y = z / (||z|| + eps)`` (the output normalisation of a dual network)."""

    def __init__(self, eps=0.0, xp=np):
        self.eps = B.check_real("norm_eps", eps, 0)
        self.xp, self.cache, self.grads = xp, None, []

    def parameters(self):
        return []

    def forward(self, z):
        y, norm = l2_normalize(z, self.eps, self.xp)
        self.cache = (z, norm)
        return y

    def backward(self, dy):
        z, norm = self.cache
        return l2_normalize_backward(dy, z, norm, self.eps, self.xp)

    def copy(self):
        return L2Normalize(self.eps, self.xp)


# ----------------------------------------------------------------------------- batchnorm
def bn_forward(x, mean="normal", var="normal", gamma=None, beta=None, eps=1e-5,
               fixed_mean=None, fixed_var=None, groups=1, omit_var="moment"):
    """Return ``(y, cache)`` for ``x`` (N, n), statistics per block of ``N/groups`` rows.

    ``gamma``/``beta``: (n,) or None (no affine). ``fixed_mean``/``fixed_var`` ((n,) or
    (groups, n)) replace the batch statistics by given values (a detached statistic is a
    constant where the gradient is taken: finite-difference checks freeze it this way).
    ``omit_var``: with ``mean="omit"``, "moment" (``var = mean x^2``) or "centred" (the
    unbiased variance of x, 1/(M-1), still centred though x is not; the authors' choice).
    """
    B.check_choice("mean", mean, BN_MODES)
    B.check_choice("var", var, BN_MODES)
    B.check_choice("omit_var", omit_var, BN_OMIT_VAR)
    xp = B.array_module(x)
    if x.ndim != 2 or x.shape[0] % groups:
        raise ValueError(f"x must have shape (N, n) with N a multiple of groups={groups}, "
                         f"got {tuple(x.shape)}")
    N, n = x.shape
    x3 = x.reshape(groups, N // groups, n)                         # (G, M, n)
    if mean == "omit":
        mu = xp.zeros((groups, 1, n), dtype=x.dtype)
    elif fixed_mean is None:
        mu = x3.mean(axis=1, keepdims=True)
    else:
        mu = xp.broadcast_to(xp.asarray(fixed_mean, dtype=x.dtype).reshape(-1, n)[:, None],
                             (groups, 1, n))
    c = x3 - mu                                                    # (G, M, n)
    centred = mean == "omit" and omit_var == "centred"
    if var == "omit":
        v = xp.full((groups, 1, n), 1.0 - eps, dtype=x.dtype)
    elif fixed_var is not None:
        v = xp.broadcast_to(xp.asarray(fixed_var, dtype=x.dtype).reshape(-1, n)[:, None],
                            (groups, 1, n))
    elif centred:
        v = x3.var(axis=1, keepdims=True, ddof=1)
    else:
        v = (c * c).mean(axis=1, keepdims=True)
    r = 1.0 / xp.sqrt(v + eps)                                     # (G, 1, n)
    xhat = (c * r).reshape(N, n)
    y = xhat if gamma is None else gamma * xhat + beta
    cache = {"mean": mean, "var": var, "centred": centred, "x3": x3, "c": c, "r": r,
             "xhat": xhat, "gamma": gamma, "mu": mu[:, 0], "v": v[:, 0]}
    return y, cache


def bn_backward_parts(dy, cache):
    """The three paths of ``dx`` (each (N, n)): ``(dx_direct, dx_mean, dx_var)``; a path that
    is detached or omitted is zeros. With ``omit_var="centred"`` the variance path is
    ``-r^3 Σ_i(dxhat_i x_i)/(M-1) (x - mean x)``."""
    xp = B.array_module(dy)
    c, r, gamma = cache["c"], cache["r"], cache["gamma"]
    G, M, n = c.shape
    dxhat = (dy if gamma is None else dy * gamma).reshape(G, M, n)
    direct = dxhat * r
    zeros = xp.zeros_like(direct)
    mean_part = zeros
    if cache["mean"] == "normal":
        mean_part = -r * dxhat.mean(axis=1, keepdims=True) + zeros
    var_part = zeros
    if cache["var"] == "normal":
        if cache["centred"]:
            x3 = cache["x3"]
            var_part = -(r ** 3) * (dxhat * c).sum(axis=1, keepdims=True) / (M - 1) * (
                x3 - x3.mean(axis=1, keepdims=True))
        else:
            var_part = -(r ** 3) * (dxhat * c).mean(axis=1, keepdims=True) * c
    return tuple(a.reshape(G * M, n) for a in (direct, mean_part, var_part))


def bn_backward(dy, cache):
    """Gradients of ``sum(dy * y)``: ``(dx, dgamma, dbeta)`` (the last two None without affine)."""
    direct, mean_part, var_part = bn_backward_parts(dy, cache)
    dx = direct + mean_part + var_part
    if cache["gamma"] is None:
        return dx, None, None
    return dx, (dy * cache["xhat"]).sum(axis=0), dy.sum(axis=0)


def bn_weight_grad_parts(f, dy, cache):
    """Split the weight gradient of ``g = f W^T`` followed by BN, ``y = BN(g)``, into its paths.

    ``f`` (N, n_in) the layer input, ``dy`` (N, n_out) the gradient w.r.t. the BN output. With
    ``delta_i = r dxhat_i`` and blocks of M rows (one per group):

        dW_direct = Σ_i delta_i f_i^T
        dW_mean   = -(1/M) Σ_i Σ_{j in i's block} delta_i f_j^T = mean_same + mean_cross
                    (j = i | j != i: another sample, the implicit contrastive part)
        dW_direct + dW_mean = Σ_i delta_i (f_i - fbar_block)^T    ("covariance" form)
        dW_var    = var_part^T f

    Returns a dict of these (n_out, n_in) arrays plus ``"total"``.
    """
    xp = B.array_module(f)
    direct, mean_part, var_part = bn_backward_parts(dy, cache)
    G, M, _ = cache["c"].shape
    out = {"direct": direct.T @ f, "mean": mean_part.T @ f, "var": var_part.T @ f}
    out["total"] = out["direct"] + out["mean"] + out["var"]
    if cache["mean"] == "normal":
        d3, f3 = direct.reshape(G, M, -1), f.reshape(G, M, -1)
        out["mean_same"] = -out["direct"] / M
        out["mean_cross"] = -(xp.einsum("gk,gj->kj", d3.sum(axis=1), f3.sum(axis=1))
                              - out["direct"]) / M
        out["covariance"] = direct.T @ (f3 - f3.mean(axis=1, keepdims=True)).reshape(G * M, -1)
    else:
        out["mean_same"] = out["mean_cross"] = xp.zeros_like(out["mean"])
        out["covariance"] = out["direct"]
    return out


class BatchNorm:
    """BatchNorm over ``n`` features with training-mode statistics (always the batch's).

    ``mean``, ``var``: "normal" | "detach" | "omit"; ``affine``: learn ``gamma`` (init 1) and
    ``beta`` (init 0); ``eps`` > 0 inside the sqrt; ``groups``: statistics per block of
    ``N/groups`` rows (2 = per view when the batch is ``[view 1; view 2]``); ``omit_var`` (see
    ``bn_forward``). ``fixed_stats``: None or ``(mean, var)`` used instead of the batch's (set
    by ``freeze()`` from the last forward; finite-difference checks of detached paths use it).
    """

    def __init__(self, n, mean="normal", var="normal", affine=False, eps=1e-5, *, groups=1,
                 omit_var="moment", dtype="float64", xp=np):
        self.n = B.check_int("n", n, 1)
        self.mean = B.check_choice("mean", mean, BN_MODES)
        self.var = B.check_choice("var", var, BN_MODES)
        self.omit_var = B.check_choice("omit_var", omit_var, BN_OMIT_VAR)
        self.eps = B.check_real("eps", eps, 0, lo_open=True)
        self.groups = B.check_int("groups", groups, 1)
        self.affine, self.xp = B.check_bool("affine", affine), xp
        self.gamma = xp.ones(self.n, dtype=dtype) if self.affine else None
        self.beta = xp.zeros(self.n, dtype=dtype) if self.affine else None
        self.fixed_stats = None
        self.cache, self.last_dy, self.grads = None, None, []

    @property
    def identity(self) -> bool:
        return self.mean == "omit" and self.var == "omit" and not self.affine

    def parameters(self):
        return [self.gamma, self.beta] if self.affine else []

    def forward(self, x):
        fm, fv = self.fixed_stats if self.fixed_stats is not None else (None, None)
        y, self.cache = bn_forward(x, self.mean, self.var, self.gamma, self.beta, self.eps,
                                   fixed_mean=fm, fixed_var=fv, groups=self.groups,
                                   omit_var=self.omit_var)
        return y

    def backward(self, dy):
        """Return ``dx``; sets ``self.grads = [dgamma, dbeta]`` (empty without affine)."""
        self.last_dy = dy
        dx, dg, db = bn_backward(dy, self.cache)
        self.grads = [dg, db] if self.affine else []
        return dx

    def freeze(self):
        """Use the statistics of the last forward from now on."""
        self.fixed_stats = (self.cache["mu"].copy(), self.cache["v"].copy())

    def copy(self):
        dtype = self.gamma.dtype if self.affine else "float64"
        new = BatchNorm(self.n, self.mean, self.var, self.affine, self.eps, groups=self.groups,
                        omit_var=self.omit_var, dtype=dtype, xp=self.xp)
        if self.affine:
            new.gamma[...] = self.gamma
            new.beta[...] = self.beta
        if self.fixed_stats is not None:
            new.fixed_stats = tuple(None if a is None else a.copy() for a in self.fixed_stats)
        return new

    def __repr__(self):
        return (f"BatchNorm({self.n}, mean={self.mean!r}, var={self.var!r}, "
                f"affine={self.affine}, groups={self.groups})")


# ----------------------------------------------------------------------------- sequential
class Sequential:
    """Layers applied in order; ``backward(dy)`` returns ``dx`` and fills ``grads()``."""

    def __init__(self, layers):
        self.layers = list(layers)

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def grads(self):
        return [g for layer in self.layers for g in layer.grads]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def copy(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__, layers=[layer.copy() for layer in self.layers])
        return new

    def linears(self):
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    def batchnorms(self):
        return [layer for layer in self.layers if isinstance(layer, BatchNorm)]

    def __repr__(self):
        return "Sequential(" + ", ".join(type(layer).__name__ for layer in self.layers) + ")"


# ----------------------------------------------------------------------------- weight norm
def weight_norm(V, xp=np):
    """``w_i = v_i / ||v_i||`` row-wise (weight normalisation without a gain): V (m, n) ->
    ``(W (m, n), norm (m, 1))``."""
    norm = xp.sqrt((V * V).sum(axis=1, keepdims=True))
    return V / norm, norm


def weight_norm_backward(dW, W, norm):
    """``dV_i = (dW_i - w_i <w_i, dW_i>) / ||v_i||``: the Jacobian ``(I - w w^T) / ||v||``
    (the radial part of ``dW`` does not move ``w``)."""
    return (dW - W * (W * dW).sum(axis=1, keepdims=True)) / norm


class WeightNormLinear:
    """``g = x W^T`` with unit rows ``W = V / ||V||`` (``weight_norm``), bias-free, no gain.

    The parameter is ``V`` (n_out, n_in); it starts with unit rows uniform on the sphere
    (Gaussian rows normalised, drawn from ``rng``), which sets the angular step size under
    Adam: each coordinate of V moves by about ``lr``, so ``w`` turns by about
    ``lr sqrt(n_in) / ||v||`` radians per step. A gain would cancel under an output
    normalisation and make a following threshold's scale ambiguous, so there is none.
    """

    def __init__(self, n_in, n_out, *, rng=None, dtype="float64", xp=np):
        n_in, n_out = B.check_int("n_in", n_in, 1), B.check_int("n_out", n_out, 1)
        V = B.rng(rng).standard_normal((n_out, n_in))
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        self.xp, self.V = xp, xp.asarray(V.astype(B.check_dtype(dtype)))
        self.need_input_grad = True
        self.cache, self.grads = None, []

    @property
    def W(self):
        """The unit-row weights ``V / ||V||`` (a fresh array)."""
        return weight_norm(self.V, self.xp)[0]

    def parameters(self):
        return [self.V]

    def forward(self, x):
        W, norm = weight_norm(self.V, self.xp)
        self.cache = (x, W, norm)
        return linear(x, W)                                # (N, n_out)

    def backward(self, dg):
        x, W, norm = self.cache
        dW, _, dx = linear_backward(dg, x, W, want_input=self.need_input_grad)
        self.grads = [weight_norm_backward(dW, W, norm)]
        return dx

    def copy(self):
        new = object.__new__(WeightNormLinear)
        new.__dict__.update(self.__dict__, V=self.V.copy(), cache=None, grads=[])
        return new


# ----------------------------------------------------------------------------- symmetric threshold
def sym_threshold(s, b, xp=np):
    """The symmetric thresholded ReLU ``h = ReLU(s - b) - ReLU(-s - b)
    = sign(s) max(|s| - b, 0)`` (soft thresholding; ``b >= 0`` per unit): s (N, m), b (m,)."""
    return xp.maximum(s - b, 0) - xp.maximum(-s - b, 0)


def sym_threshold_backward(dh, s, b):
    """``(ds, db)``: ``∂h/∂s = 1[|s| > b]``, ``∂h/∂b = -sign(s) 1[|s| > b]``, so
    ``ds = dh 1[|s| > b]`` (N, m) and ``db = -Σ_n ds sign(s)`` (m,)."""
    xp = B.array_module(dh)
    ds = dh * (xp.abs(s) > b)
    return ds, -(ds * xp.sign(s)).sum(axis=0)


class SymmetricThreshold:
    """``h = sign(s) max(|s| - b, 0)`` per unit with a learned threshold ``b`` (n,), kept
    ``>= 0`` by ``project()`` (``b <- max(b, 0)``, called after every optimiser step; at
    ``b = 0`` the unit is linear). ``b`` is in the units of ``s``: after a
    ``WeightNormLinear`` layer, of the projection ``<w, x>`` on a unit direction."""

    def __init__(self, n, b_init=0.0, *, dtype="float64", xp=np):
        n = B.check_int("n", n, 1)
        b_init = B.check_real("b_init", b_init, 0)
        self.xp, self.b = xp, xp.full(n, b_init, dtype=B.check_dtype(dtype))
        self.cache, self.grads = None, []

    def parameters(self):
        return [self.b]

    def forward(self, s):
        self.cache = s
        return sym_threshold(s, self.b, self.xp)

    def backward(self, dh):
        ds, db = sym_threshold_backward(dh, self.cache, self.b)
        self.grads = [db]
        return ds

    def project(self):
        """Keep the threshold non-negative, in place."""
        self.xp.maximum(self.b, 0, out=self.b)

    def copy(self):
        new = object.__new__(SymmetricThreshold)
        new.__dict__.update(self.__dict__, b=self.b.copy(), cache=None, grads=[])
        return new
