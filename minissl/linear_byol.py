"""Linear BYOL exactly: the gradient-flow ODE, its integration, and the matching simulations.

Linear online net ``W`` (d, n), linear predictor ``W_p`` (d, d), linear target ``W_a`` (d, n).
Two views ``x1, x2`` of a sample ``x``; ``xbar = E[x' | x]`` (the augmentation mean) and

    X  = E_x[ xbar xbar^T ]                       (n, n)  data statistics
    X' = E_x[ V_{x'|x}[x'] ]                      (n, n)  augmentation covariance

so ``E[x1 x1^T] = X + X'`` and ``E[x1 x2^T] = X`` (the views are independent given x). The
loss ``L = ½ E|| W_p W x1 - sg(W_a x2) ||²`` has

    dL/dW_p = (W_p W (X + X') - W_a X) W^T
    dL/dW   = W_p^T (W_p W (X + X') - W_a X)

and gradient flow with predictor rate ``alpha_p``, weight decay ``eta`` and EMA rate ``beta``
(Tian, Chen & Ganguli 2021, eqs. 1-3) is

    dW_p/dt = -alpha_p dL/dW_p - eta W_p
    dW/dt   = -dL/dW - eta W
    dW_a/dt =  beta (W - W_a)

Discretised with step ``lr`` it is exactly BYOL's SGD on the expected loss (``euler``); with
sampled batches it is BYOL's SGD (``simulate_sgd``, running ``byol.BYOL`` with linear nets,
``ema = 1 - lr * beta``, ``predictor_lr = alpha_p``); time is ``t = lr * steps``.
"""
from __future__ import annotations

import numpy as np

from . import backend as B
from .byol import BYOL, BYOLConfig
from .data import GaussianViews, check_psd
from .budget import STEP_OVERHEAD
from .budget import check_steps as check_work_steps
from .optim import stopped


def check_steps(T, dt, name="dt", per_step=STEP_OVERHEAD):
    """``round(T / dt)`` for finite ``T > 0`` and ``dt > 0``, its work (``per_step``
    multiply-adds each) checked against the limits."""
    T = B.check_real("T", T, 0, lo_open=True)
    dt = B.check_real(name, dt, 0, lo_open=True)
    steps = int(round(T / dt))
    check_work_steps(steps, f"{steps:,} steps", f"T={T:g}, {name}={dt:g}", per_step=per_step)
    return steps


def expected_grads(W, Wp, Wa, X, Xp):
    """``(dL/dW, dL/dW_p)`` of ``L = ½ E||W_p W x1 - W_a x2||²`` (shapes of W, W_p)."""
    R = Wp @ W @ (X + Xp) - Wa @ X                        # (d, n)
    return Wp.T @ R, R @ W.T


def expected_loss(W, Wp, Wa, X, Xp):
    """``½ E||W_p W x1 - W_a x2||²``
    ``= ½ tr(A (X+X') A^T) - tr(A X W_a^T) + ½ tr(W_a (X+X') W_a^T)`` with ``A = W_p W``."""
    A = Wp @ W
    S = X + Xp
    return float(0.5 * np.trace(A @ S @ A.T) - np.trace(A @ X @ Wa.T)
                 + 0.5 * np.trace(Wa @ S @ Wa.T))


def rhs(W, Wp, Wa, X, Xp, alpha_p=1.0, beta=1.0, eta=0.0):
    """The right-hand side ``(dW/dt, dW_p/dt, dW_a/dt)`` of the gradient flow (module docstring)."""
    gW, gWp = expected_grads(W, Wp, Wa, X, Xp)
    return -gW - eta * W, -alpha_p * gWp - eta * Wp, beta * (W - Wa)


def _check(X, Xp, alpha_p, beta, eta):
    X, Xp = check_psd("X", X), check_psd("Xp", Xp)
    if X.shape != Xp.shape:
        raise ValueError(f"X and Xp must have the same shape, got {X.shape} and {Xp.shape}")
    B.check_real("alpha_p", alpha_p, 0, lo_open=True)
    B.check_real("beta", beta, 0)
    B.check_real("eta", eta, 0)
    return X, Xp


def _pack(W, Wp, Wa):
    return np.concatenate([W.ravel(), Wp.ravel(), Wa.ravel()])


def _unpack(y, d, n):
    a, b = d * n, d * n + d * d
    return y[:a].reshape(d, n), y[a:b].reshape(d, d), y[b:].reshape(d, n)


def integrate(W0, Wp0, Wa0, X, Xp, T, alpha_p=1.0, beta=1.0, eta=0.0, t_eval=None,
              rtol=1e-10, atol=1e-12):
    """Integrate the gradient flow from ``(W0, Wp0, Wa0)`` over ``[0, T]`` (SciPy DOP853).

    Returns ``(t, Ws, Wps, Was)``: times (K,) and the states at them, (K, d, n), (K, d, d),
    (K, d, n). ``t_eval`` defaults to 101 points.
    """
    X, Xp = _check(X, Xp, alpha_p, beta, eta)
    W0, Wp0, Wa0 = (np.asarray(a, float) for a in (W0, Wp0, Wa0))
    d, n = W0.shape
    if Wp0.shape != (d, d) or Wa0.shape != (d, n) or X.shape != (n, n):
        raise ValueError(f"shapes must be W0 (d, n), Wp0 (d, d), Wa0 (d, n), X (n, n); got "
                         f"{W0.shape}, {Wp0.shape}, {Wa0.shape}, {X.shape}")
    T = B.check_real("T", T, 0, lo_open=True)
    t_eval = np.linspace(0, T, 101) if t_eval is None else np.asarray(t_eval, float)

    def f(_, y):
        return _pack(*rhs(*_unpack(y, d, n), X, Xp, alpha_p, beta, eta))

    from scipy.integrate import solve_ivp       # slow to import (0.3 s); only this needs it
    sol = solve_ivp(f, (0.0, float(T)), _pack(W0, Wp0, Wa0), method="DOP853", t_eval=t_eval,
                    rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"ODE integration failed: {sol.message}")
    Y = sol.y.T                                            # (K, size)
    a, b = d * n, d * n + d * d
    K = Y.shape[0]
    return sol.t, Y[:, :a].reshape(K, d, n), Y[:, a:b].reshape(K, d, d), Y[:, b:].reshape(K, d, n)


def euler(W0, Wp0, Wa0, X, Xp, T, dt, alpha_p=1.0, beta=1.0, eta=0.0, record_every=None):
    """Gradient descent on the expected loss with step ``dt`` (= BYOL's update with lr = dt):

    ``W += dt * dW/dt`` etc. with the right-hand side ``rhs``; ``round(T/dt)`` steps (their
    work checked against the limits). Returns ``(t, Ws, Wps, Was)`` recorded every
    ``record_every`` steps (default: 100 records).
    """
    X, Xp = _check(X, Xp, alpha_p, beta, eta)
    steps = check_steps(T, dt, "dt", STEP_OVERHEAD / 10)
    every = record_every or max(1, steps // 100)
    W, Wp, Wa = (np.array(a, float) for a in (W0, Wp0, Wa0))
    ts, out = [0.0], [(W.copy(), Wp.copy(), Wa.copy())]
    for k in range(1, steps + 1):
        dW, dWp, dWa = rhs(W, Wp, Wa, X, Xp, alpha_p, beta, eta)
        W += dt * dW
        Wp += dt * dWp
        Wa += dt * dWa
        if k % every == 0 or k == steps:
            ts.append(k * dt)
            out.append((W.copy(), Wp.copy(), Wa.copy()))
    return (np.array(ts),) + tuple(np.stack([o[i] for o in out]) for i in range(3))


# ----------------------------------------------------------------------------- SGD
def simulate_sgd(W0, Wp0, Wa0, X, Xp, T, lr, alpha_p=1.0, beta=1.0, eta=0.0, batch_size=256,
                 seed=0, record_every=None, stop=None):
    """BYOL's own SGD (``byol.BYOL`` with a linear encoder and predictor, no BN, no
    normalisation) on ``GaussianViews(X, Xp)``: ``ema = 1 - lr*beta``, ``predictor_lr =
    alpha_p``, ``weight_decay = eta``, batches from stream 2 of ``seed``
    (``backend.derive_seed``). Returns ``(t, Ws, Wps, Was)`` like ``integrate``;
    ``stop.is_set()`` (checked every step) ends it early with the records so far. The
    ``round(T / lr)`` steps' work is checked against the limits first."""
    steps = check_steps(T, lr, "lr", 3 * STEP_OVERHEAD)
    if not 0 < lr * beta <= 1:
        raise ValueError(f"lr * beta must be in (0, 1] (the EMA rate per step), got {lr * beta}")
    W0, Wp0, Wa0 = (np.asarray(a, float) for a in (W0, Wp0, Wa0))
    d, n = W0.shape
    src = GaussianViews(X, Xp)
    cfg = BYOLConfig(hidden=(), out_dim=d, predictor="linear", normalize=False, symmetric=True,
                     ema=1.0 - lr * beta, lr=lr, predictor_lr=alpha_p, weight_decay=eta,
                     batch_size=batch_size, seed=seed)
    model = BYOL(n, cfg)
    model.set_weights(online=[W0], predictor=[Wp0], target=[Wa0])
    rng = B.rng(B.derive_seed(seed, 2))                         # the batches: stream 2
    every = record_every or max(1, steps // 100)
    get = lambda: (model.online.weights[0].copy(), model.Wp.copy(),  # noqa: E731
                   model.target.weights[0].copy())
    ts, out = [0.0], [get()]
    for k in range(1, steps + 1):
        x1, x2, _ = src.triples(batch_size, rng)
        model.step(x1, x2)
        if k % every == 0 or k == steps or stopped(stop):
            ts.append(k * lr)
            out.append(get())
        if stopped(stop):
            break
    return (np.array(ts),) + tuple(np.stack([o[i] for o in out]) for i in range(3))


# ----------------------------------------------------------------------------- regimes
def default_problem(n=6, d=4, aug=0.5, seed=0, init_scale=0.5):
    """A small problem: ``X = Q diag(linspace(2, 0.2, n)) Q^T``, ``X' = aug * I``; initial
    ``W0, Wp0`` random ``N(0, init_scale²/n)`` resp. ``/d``, target ``Wa0 = W0``.
    Returns ``(W0, Wp0, Wa0, X, Xp)``."""
    n, d = B.check_int("n", n, 1, 1024), B.check_int("d", d, 1, 1024)
    g = B.rng(seed)
    Q, _ = np.linalg.qr(g.standard_normal((n, n)))
    X = (Q * np.linspace(2.0, 0.2, n)) @ Q.T
    Xp = aug * np.eye(n)
    W0 = g.standard_normal((d, n)) * init_scale / np.sqrt(n)
    Wp0 = g.standard_normal((d, d)) * init_scale / np.sqrt(d)
    return W0, Wp0, W0.copy(), X, Xp


def regime_grid(etas, alphas, T=200.0, beta=1.0, problem=None, dt=0.05):
    """Final ``||W(T)||_F`` over a grid of weight decay ``eta`` x predictor rate ``alpha_p``
    (Euler steps ``dt`` on the expected loss). Returns an array (len(etas), len(alphas)).
    ``||W(T)|| -> 0`` is collapse."""
    W0, Wp0, Wa0, X, Xp = problem or default_problem()
    out = np.zeros((len(etas), len(alphas)))
    for i, eta in enumerate(etas):
        for j, a in enumerate(alphas):
            _, Ws, _, _ = euler(W0, Wp0, Wa0, X, Xp, T, dt, a, beta, eta, record_every=10 ** 9)
            out[i, j] = np.linalg.norm(Ws[-1])
    return out
