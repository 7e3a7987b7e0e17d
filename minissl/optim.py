"""Optimisers, the EMA target update, and the one record/callback convention of every run.

    SGD:  v <- momentum v + (g + weight_decay W);   W <- W - lr v        (in place)
    Adam: m <- b1 m + (1-b1) g;  u <- b2 u + (1-b2) g^2;
          W <- W - lr (m / (1-b1^t)) / (sqrt(u / (1-b2^t)) + eps)           (in place)
    EMA:  theta_t <- rate theta_t + (1 - rate) theta                      (in place)

Every training loop and experiment runner reports progress the same way: it appends plain
dict records (``"step"`` or ``"epoch"`` first) to a ``History`` and calls
``callback(record)`` for each; a callback that returns ``False`` ends the run cleanly
(``notify``). A ``stop`` object with ``is_set()`` (a ``threading.Event``) is checked after
every step, so another thread (the app's Stop button) can end a run within one step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import backend as B


class SGD:
    """SGD with momentum and weight decay, in place: ``v = μ v + (g + λ W)``, ``W -= lr v``."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params, self.lr, self.momentum, self.wd = params, lr, momentum, weight_decay
        self.velocity = [None] * len(params)

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.wd:
                g = g + self.wd * p
            if self.momentum:
                v = g if self.velocity[i] is None else self.momentum * self.velocity[i] + g
                self.velocity[i] = v
                g = v
            p -= self.lr * g


class Adam:
    """Adam (Kingma & Ba 2015) with SGD's interface: ``Adam(params, lr)``, then
    ``step(grads)`` updates ``params`` in place. ``m``, ``u``: the moment estimates, one per
    parameter, zeros at first; ``t``: the steps taken (the bias corrections ``1 - β^t``)."""

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params, self.lr = params, B.check_real("lr", lr, 0, lo_open=True)
        self.beta1 = B.check_real("beta1", beta1, 0, 1, hi_open=True)
        self.beta2 = B.check_real("beta2", beta2, 0, 1, hi_open=True)
        self.eps = B.check_real("eps", eps, 0, lo_open=True)
        self.t = 0
        self.m = [None] * len(params)
        self.u = [None] * len(params)

    def step(self, grads):
        self.t += 1
        c1, c2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.m[i] is None:
                self.m[i], self.u[i] = g * 0, g * 0
            m, u = self.m[i], self.u[i]
            m *= self.beta1
            m += (1 - self.beta1) * g
            u *= self.beta2
            u += (1 - self.beta2) * (g * g)
            p -= self.lr * (m / c1) / ((u / c2) ** 0.5 + self.eps)


def ema_update(target, online, rate):
    """``t <- rate t + (1 - rate) o`` for each pair of arrays, in place (``rate`` = 0: copy)."""
    for t, o in zip(target, online):
        t *= rate
        t += (1 - rate) * o


@dataclass
class History:
    """The records of a run: ``history["loss"]`` is the list of the records' losses, etc."""
    records: list = field(default_factory=list)

    def append(self, **rec):
        self.records.append(rec)

    def __getitem__(self, key):
        return [r[key] for r in self.records if key in r]

    def __len__(self):
        return len(self.records)


def notify(callback, record):
    """Call ``callback(record)``; True when the run should end (the callback returned False)."""
    return callback is not None and callback(record) is False


def stopped(stop):
    """True when the cancellation flag ``stop`` (None or an object with ``is_set()``) is set."""
    return stop is not None and stop.is_set()
