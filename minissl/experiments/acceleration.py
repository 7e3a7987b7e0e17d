"""Top-layer acceleration (``python -m minissl acceleration``): does training the top layer
speed up the learning of the bottom layer?

The paper: "in a two-layer setting, a top-level covariance operator helps accelerate the
learning of low-level features". In the linear two-layer case (docs/theory.md §9) the flow is
``dW_1/dt = 2 W_2^T W_2 W_1 Σ``: the bottom layer's rate is set by ``W_2^T W_2``, which a
trained top layer makes grow.

``acceleration_experiment``: the HLTM tree network (default depth 2, so the bottom layer reads
the leaves and the top layer is the output) trained three times from the same initialisation
and data, the top layer ``W_L``

    "frozen"   kept at its initial value (``TrainConfig.frozen = (L - 1,)``),
    "trained"  trained like the others,
    "scaled"   multiplied by ``top_scale`` at initialisation, then trained,

recording the bottom layer's learning over time: the mean selectivity ``|corr(z_mu, g_u)|``
over all units of the depth-1 latents (and the best unit's, averaged over latents), and the
relative change ``||W_1(t) - W_1(0)|| / ||W_1(0)||``. An arm whose loss diverges (the simple
loss is unbounded below) stops there with ``"diverged": True`` in its last record.

``linear_acceleration``: the same three arms for the exact linear flow
(``covariance.linear_covariance_update``, Euler steps) on Gaussian views whose view-averaged
covariance has one strong direction ``e_1``: ``||W_1(t)|| / ||W_1(0)||`` and the share of
``||W_1||²`` along ``e_1``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .. import backend as B
from ..backend import setting
from ..covariance import linear_covariance_update
from ..data import GaussianViews
from ..budget import Cost
from ..metrics import normalized_correlation
from ..optim import notify, stopped
from ..train import TrainingDiverged, train
from .hltm import HLTMRun, eval_set

ARMS = ("frozen", "trained", "scaled")


@dataclass(frozen=True)
class AccelerationConfig:
    """One acceleration experiment (the ``acceleration`` command's flags are its settings): the
    HLTM ``run`` of each arm (depth L: layer 1 = bottom, layer L = top; 8 leaves under each
    depth-1 latent; the simple loss, ξ ≡ 1, whose gradient is OP vec W; seed: tree, init 1,
    data 2, evaluation 3) and the arms."""
    run: HLTMRun = HLTMRun(depth=2, num_children=8, polarity=(0.4, 1.0), hid=4, loss="simple",
                           lr=0.01, steps=200)
    snapshots: int = setting(20, "records per arm (plus step 0)", lo=1)
    top_scale: float = setting(2.0, "the scaled arm's factor on W_L at initialisation",
                               label="top scale", lo=0, lo_open=True)
    eval_samples: int = setting(4000, "fixed evaluation set (stream 3)", lo=2)

    @cached_property
    def hltm(self):
        """The ``HLTMConfig`` of one arm (theory preset, one epoch of ``steps`` steps), made and
        validated once."""
        return self.run.hltm_config(self.eval_samples)

    def cost(self):
        """The ``limits.Cost`` of the three arms: one arm's ``HLTMConfig.cost`` memory, three
        times its work."""
        c = self.hltm.cost()
        return Cost(c.memory, c.scaled(len(ARMS), "arms=3").work)

    def validate(self):
        B.check_int("depth", self.run.depth, 2)
        B.check_settings(self).hltm                           # noqa: B018  (validates the run)
        B.check_int("snapshots", self.snapshots, 1, self.run.steps)
        return self


def _arm(cfg, arm, tree, x, z, emit, stop):
    """Train one arm from the seed's initialisation, ``emit(record)`` at each snapshot.
    Returns "end" (the callback or ``stop`` ended the run), "diverged" or "done"."""
    hc, steps = cfg.hltm, cfg.run.steps
    _, net = hc.build()
    if arm == "scaled":
        net.weights[-1][...] *= cfg.top_scale
    W0 = B.to_numpy(net.weights[0]).copy()
    depth1 = tree.latent_depths == 1

    def snap(step):
        corr = normalized_correlation(tree, net, x=x, z=z)
        W1 = B.to_numpy(net.weights[0])
        return emit({"step": step, "arm": arm,
                     "unit_corr": float(corr.per_unit[depth1].mean()),
                     "best_corr": corr.by_depth[1],
                     "dW1": float(np.linalg.norm(W1 - W0) / np.linalg.norm(W0)),
                     "diverged": False})

    if snap(0) or stopped(stop):
        return "end"
    tc = replace(hc.train_config(steps), log_every=max(1, steps // cfg.snapshots),
                 frozen=(net.depth - 1,) if arm == "frozen" else ())
    state = {"end": False}

    def on_step(rec):
        state["end"] = snap(rec["step"])
        return not state["end"]

    try:
        train(net, tree, tc, callback=on_step, stop=stop)
    except TrainingDiverged:
        return "diverged"
    return "end" if state["end"] or stopped(stop) else "done"


def acceleration_experiment(cfg, callback=None, stop=None, limits=None):
    """Run the three arms of ``cfg`` (an ``AccelerationConfig``); returns the records
    ``{"step", "arm", "unit_corr", "best_corr", "dW1", "diverged"}``, arm by arm (module
    docstring; a diverged arm's last record is marked after its callback). ``callback(record)``
    after each (False ends the run); ``stop.is_set()`` checked every step. ``cfg.cost()`` is
    checked against ``limits`` first."""
    cfg = cfg.validate()
    cfg.cost().check(limits)
    hc = cfg.hltm
    x, z = eval_set(hc.tree, hc)
    records = []

    def emit(rec):
        records.append(rec)
        return notify(callback, rec)

    for arm in ARMS:
        how = _arm(cfg, arm, hc.tree, x, z, emit, stop)
        if how == "diverged":
            records[-1]["diverged"] = True
        if how == "end":
            break
    return records


def linear_acceleration(top_scale=2.0, t_end=0.3, dt=1e-3, seed=0, every=20):
    """The three arms for the linear two-layer flow ``f = W_2 W_1 x`` (8 -> 6 -> 4), Euler
    steps ``dt`` up to ``t_end`` of ``ΔW_l = linear_covariance_update(...)`` (ΔW_2 = 0 for
    "frozen"), on 64 x 4 Gaussian views (``GaussianViews``: ``X = diag(4, 1, ..., 1) / 4``,
    ``X' = 0.1 I``) from ``seed``. Records ``{"step", "t", "arm", "W1" (||W_1(t)|| / ||W_1(0)||),
    "align" (||W_1 e_1||² / ||W_1||²), "diverged"}`` every ``every`` steps; the flow of the
    simple loss blows up in finite time, and an arm stops (marked) once ``||W_1||`` is not
    finite or above 100 times its start."""
    t_end = B.check_real("t_end", t_end, 0, lo_open=True)
    dt = B.check_real("dt", dt, 0, t_end, lo_open=True)
    top_scale = B.check_real("top_scale", top_scale, 0, lo_open=True)
    g = B.rng(seed)
    X = np.diag([4.0] + [1.0] * 7) / 4.0
    views = GaussianViews(X, 0.1 * np.eye(8)).views(64, 4, g)          # (64, 4, 8)
    W1_0, W2_0 = 0.3 * g.standard_normal((6, 8)), 0.3 * g.standard_normal((4, 6))
    n0, out = np.linalg.norm(W1_0), []
    for arm in ARMS:
        W1, W2 = W1_0.copy(), W2_0 * (top_scale if arm == "scaled" else 1.0)
        for i in range(int(round(t_end / dt)) + 1):
            grow = float(np.linalg.norm(W1) / n0)
            if not grow < 100.0:                               # NaN, inf or blown up
                out[-1]["diverged"] = True
                break
            if i % every == 0:
                out.append({"step": i, "t": round(i * dt, 12), "arm": arm, "W1": grow,
                            "diverged": False,
                            "align": float((W1[:, 0] ** 2).sum() / (W1 ** 2).sum())})
            with np.errstate(over="ignore", invalid="ignore"):
                d1, d2 = linear_covariance_update([W1, W2], views)
            W1 = W1 + dt * d1
            W2 = W2 + (0.0 if arm == "frozen" else dt) * d2
    return out


def acceleration_rows(records, key="unit_corr", time="step"):
    """Table rows (header first): one per recorded time, one column per arm."""
    times = sorted({r[time] for r in records})
    rows = [[time] + list(ARMS)]
    for t in times:
        cells = []
        for arm in ARMS:
            r = [q for q in records if q["arm"] == arm and q[time] == t]
            cells.append(f"{r[0][key]:.4f}" + ("*" if r[0].get("diverged") else "") if r
                         else "div" if any(q["arm"] == arm for q in records) else "")
        rows.append([f"{t:g}"] + cells)
    return rows
