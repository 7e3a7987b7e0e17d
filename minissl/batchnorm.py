"""Batch normalisation with a hand-written backward whose mean and variance parts are switchable.

Per feature (column) of a batch ``x`` (N, n), with the statistics taken over the batch:

    mu     = mean_i x_i                     (mean="normal" | "detach");   mu = 0     (mean="omit")
    c      = x - mu                                                                   # (N, n)
    var    = mean_i c_i^2                   (var="normal"  | "detach");   var = 1-eps (var="omit")
    r      = (var + eps)^(-1/2)                                                       # (n,)
    xhat   = c * r
    y      = gamma * xhat + beta            (affine=True)   else   y = xhat

``detach`` computes the statistic but lets no gradient flow through it (stop-gradient);
``omit`` drops it (``mean="omit"`` means no centring, and then ``var`` is the second moment
``mean_i x_i^2``; ``var="omit"`` means no scaling). ``mean="omit", var="omit", affine=False`` is
the identity.

Backward of ``sum(dy * y)`` (``dxhat = gamma * dy``), split into the three paths it takes:

    dx_direct = r * dxhat                                   (through c's own x_i)
    dx_mean   = -r * mean_i dxhat_i                         (through mu;  only mean="normal")
    dx_var    = -r^3 * mean_i(dxhat_i * c_i) * c            (through var; only var="normal")
    dx        = dx_direct + dx_mean + dx_var
    dgamma    = sum_i dy_i * xhat_i,   dbeta = sum_i dy_i

(``d var / d x_i = 2 c_i / N``: the term through mu vanishes because ``sum_i c_i = 0`` whenever
mu is the batch mean, and mu carries no gradient otherwise.) ``bn_backward_parts`` returns the
three paths separately: the mean path is the "implicit contrastive term" of BYOL
(``weight_grad_parts`` carries it to the weight of the linear layer in front).
"""
from __future__ import annotations

import numpy as np

from .backend import array_module

MODES = ("normal", "detach", "omit")


def check_mode(name, mode):
    if mode not in MODES:
        raise ValueError(f"{name} must be one of {MODES}, got {mode!r}")
    return mode


# ----------------------------------------------------------------------------- pure maths
def bn_forward(x, mean="normal", var="normal", gamma=None, beta=None, eps=1e-5,
               fixed_mean=None, fixed_var=None):
    """Return ``(y, cache)`` for ``x`` (N, n).

    ``gamma``/``beta``: (n,) or None (no affine). ``fixed_mean``/``fixed_var`` (n,) replace the
    batch statistics by given values (used to check ``detach`` by finite differences: a
    detached statistic is a constant at the point where the gradient is taken).
    """
    check_mode("mean", mean)
    check_mode("var", var)
    xp = array_module(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, n), got {tuple(x.shape)}")
    N, n = x.shape
    if mean == "omit":
        mu = xp.zeros(n, dtype=x.dtype)
    else:
        mu = x.mean(axis=0) if fixed_mean is None else xp.asarray(fixed_mean, dtype=x.dtype)
    c = x - mu                                                    # (N, n)
    if var == "omit":
        v = xp.full(n, 1.0 - eps, dtype=x.dtype)
    else:
        v = (c * c).mean(axis=0) if fixed_var is None else xp.asarray(fixed_var, dtype=x.dtype)
    r = 1.0 / xp.sqrt(v + eps)                                    # (n,)
    xhat = c * r
    y = xhat if gamma is None else gamma * xhat + beta
    cache = {"mean": mean, "var": var, "c": c, "r": r, "xhat": xhat, "gamma": gamma,
             "mu": mu, "v": v}
    return y, cache


def bn_backward_parts(dy, cache):
    """The three paths of ``dx`` (each (N, n)): ``(dx_direct, dx_mean, dx_var)``.

    A path that is ``detach``-ed or ``omit``-ted is returned as zeros.
    """
    xp = array_module(dy)
    c, r, gamma = cache["c"], cache["r"], cache["gamma"]
    dxhat = dy if gamma is None else dy * gamma                   # (N, n)
    direct = dxhat * r
    zeros = xp.zeros_like(direct)
    mean_part = zeros
    if cache["mean"] == "normal":
        mean_part = -r * dxhat.mean(axis=0) + zeros               # broadcast to (N, n)
    var_part = zeros
    if cache["var"] == "normal":
        var_part = -(r ** 3) * (dxhat * c).mean(axis=0) * c
    return direct, mean_part, var_part


def bn_backward(dy, cache):
    """Gradients of ``sum(dy * y)``: ``(dx, dgamma, dbeta)`` (the last two None without affine)."""
    direct, mean_part, var_part = bn_backward_parts(dy, cache)
    dx = direct + mean_part + var_part
    if cache["gamma"] is None:
        return dx, None, None
    return dx, (dy * cache["xhat"]).sum(axis=0), dy.sum(axis=0)


def weight_grad_parts(f, dy, cache):
    """Split the weight gradient of a linear layer followed by BN, ``g = f W^T``, ``y = BN(g)``.

    ``f``: the layer input (N, n_in); ``dy``: gradient w.r.t. the BN output (N, n_out).
    With ``delta_i = r * dxhat_i`` (N, n_out) and ``fbar = mean_i f_i``:

        dW_direct = sum_i delta_i f_i^T
        dW_mean   = -(1/N) sum_i sum_j delta_i f_j^T  =  -N mean(delta) fbar^T
                  = dW_mean_same + dW_mean_cross     (j = i  |  j != i: different samples)
        dW_direct + dW_mean = sum_i delta_i (f_i - fbar)^T    (a batch covariance, times N)
        dW_var    = var_part^T f

    Returns a dict of these (n_out, n_in) arrays plus ``"total"`` (= direct + mean + var, the
    layer's full gradient) and ``"covariance"`` (= direct + mean, computed in covariance form).
    """
    direct, mean_part, var_part = bn_backward_parts(dy, cache)
    N = f.shape[0]
    dW_direct = direct.T @ f
    dW_mean = mean_part.T @ f
    out = {"direct": dW_direct, "mean": dW_mean, "var": var_part.T @ f}
    out["total"] = out["direct"] + out["mean"] + out["var"]
    if cache["mean"] == "normal":
        # same-sample (i = j) and cross-sample (i != j) pieces of the mean path
        out["mean_same"] = -direct.T @ f / N
        out["mean_cross"] = -(direct.sum(0)[:, None] * f.sum(0)[None, :] - direct.T @ f) / N
        out["covariance"] = direct.T @ (f - f.mean(axis=0))
    else:
        xp = array_module(f)
        out["mean_same"] = xp.zeros_like(dW_mean)
        out["mean_cross"] = xp.zeros_like(dW_mean)
        out["covariance"] = dW_direct
    return out


# ----------------------------------------------------------------------------- the layer
class BatchNorm:
    """A BatchNorm layer over ``n`` features (training-mode statistics: always the batch's).

    ``mean``, ``var``: "normal" | "detach" | "omit" (see the module docstring).
    ``affine``: learn ``gamma`` (init 1) and ``beta`` (init 0). ``eps`` > 0 inside the sqrt.
    ``fixed_stats``: None, or a ``(mean, var)`` pair to use instead of the batch statistics
    (set it with ``freeze()`` to check detached gradients by finite differences).
    """

    def __init__(self, n, mean="normal", var="normal", affine=False, eps=1e-5,
                 dtype="float64", xp=np):
        if int(n) != n or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        self.n = int(n)
        self.mean, self.var = check_mode("mean", mean), check_mode("var", var)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.eps, self.affine, self.xp = float(eps), bool(affine), xp
        self.gamma = xp.ones(self.n, dtype=dtype) if self.affine else None
        self.beta = xp.zeros(self.n, dtype=dtype) if self.affine else None
        self.fixed_stats = None
        self.cache = None
        self.last_dy = None
        self.grads = []

    @property
    def identity(self) -> bool:
        return self.mean == "omit" and self.var == "omit" and not self.affine

    def parameters(self):
        return [self.gamma, self.beta] if self.affine else []

    def forward(self, x):
        fm, fv = self.fixed_stats if self.fixed_stats is not None else (None, None)
        y, self.cache = bn_forward(x, self.mean, self.var, self.gamma, self.beta, self.eps,
                                   fixed_mean=fm, fixed_var=fv)
        return y

    def backward(self, dy):
        """Return ``dx``; sets ``self.grads = [dgamma, dbeta]`` (empty without affine)."""
        self.last_dy = dy
        dx, dg, db = bn_backward(dy, self.cache)
        self.grads = [dg, db] if self.affine else []
        return dx

    def freeze(self):
        """Use the statistics of the last forward from now on (until ``unfreeze``)."""
        self.fixed_stats = (self.cache["mu"].copy(), self.cache["v"].copy())

    def unfreeze(self):
        self.fixed_stats = None

    def copy(self):
        dtype = self.gamma.dtype if self.affine else "float64"
        new = BatchNorm(self.n, self.mean, self.var, self.affine, self.eps, dtype=dtype,
                        xp=self.xp)
        if self.affine:
            new.gamma[...] = self.gamma
            new.beta[...] = self.beta
        return new

    def __repr__(self):
        return (f"BatchNorm({self.n}, mean={self.mean!r}, var={self.var!r}, "
                f"affine={self.affine})")
