"""Optimisers, the EMA target update, and the one record/callback convention of every run.

    SGD:  v <- momentum v + (g + weight_decay W);   W <- W - lr v        (in place)
    EMA:  theta_t <- rate theta_t + (1 - rate) theta                      (in place)

Every training loop and experiment runner reports progress the same way: it appends plain
dict records (``"step"`` or ``"epoch"`` first) to a ``History`` and calls
``callback(record)`` for each; a callback that returns ``False`` ends the run cleanly
(``notify``). A ``stop`` object with ``is_set()`` (a ``threading.Event``) is checked after
every step, so another thread (the app's Stop button) can end a run within one step.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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
