"""minissl demo: watch self-supervised training shape a network, live, in the browser.

    python demo.py                 # http://127.0.0.1:7860  (--port, GRADIO_SERVER_PORT)
    python demo.py --share         # also a public gradio.live link (opt-in)

Gradio wiring only: every number comes from a runner of ``minissl.experiments`` (the same
code as ``python -m minissl hltm|covariance|byol``), every picture from ``minissl.plots``
(rendered to PNG and closed at once). One builder function per tab, listed in ``TABS``;
``build_demo()`` returns the queued ``gr.Blocks``; ``main()`` parses flags. The training
events are API endpoints (``/train_hltm``, ``/train_covariance``, ...; docs/demo.md). The
long Markdown texts live in ``app_text.py``.
"""
import argparse
import base64
import contextvars
import functools
import math
import os
import queue
import threading
import time
from dataclasses import dataclass

import gradio as gr
from gradio.components.plot import PlotData

import minissl
from minissl import experiments as E
from minissl import plots
from minissl.backend import blas_threads, check_choice, check_int, check_real
from minissl.byol import PREDICTORS
from minissl.covariance import PAIR_WEIGHT_LOSSES
from minissl.decoupling import AUGMENTATIONS
from minissl.experiments.decoupling import NEURONS
from minissl.layers import BN_MODES
from minissl.limits import PUBLIC_APP
from minissl.losses import LOSS_VARIABLES, THREE_LOSSES
from minissl.train import UPDATES

from app_text import (ACCEL_TEXT, BYOL_TEXT, COV_TEXT, DECOUPLING_TEXT, DESCRIPTION, HLTM_TEXT,
                      LOSSES_TEXT, LUCK_TEXT)

CSS = ".status-line textarea {font-family: ui-monospace, monospace; font-size: 0.85em;}"
LATEX = [{"left": "$$", "right": "$$", "display": True},
         {"left": "$", "right": "$", "display": False}]
EVAL_SAMPLES = 4000          # fixed evaluation set of the streamed correlations
PROBE_SAMPLES = 1000         # probe training and test sets (the root, untrained and trained)
LIMITS = PUBLIC_APP          # every request's memory and estimated work (docs/demo.md)
RENDER_INTERVAL = 0.5        # seconds of training between two streamed pictures (at least)


# ----------------------------------------------------------------------------- helpers
def show(fig) -> PlotData:
    """Render a Figure to a PNG data URL for ``gr.Plot`` and close it (no figure outlives
    the call, so a long-running server does not accumulate them)."""
    try:
        url = "data:image/png;base64," + base64.b64encode(plots.to_png(fig)).decode()
    finally:
        plots.close(fig)
    return PlotData(type="matplotlib", plot=url)


def checked(fn, *args, **kw):
    """``fn(*args, **kw)`` with a library ``ValueError`` turned into a ``gr.Error``."""
    try:
        return fn(*args, **kw)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None


def settings(fields, values):
    """Validate a tab's numbers against its field table ``{key: (label, kind, lo, hi, default,
    hint)}`` (``gr.Error`` naming the label and the bounds)."""
    out = {}
    for key, (label, kind, lo, hi, _, _) in fields.items():
        v = values.get(key)
        if kind is int:
            out[key] = checked(check_int, label, v, lo, hi)
        else:
            out[key] = checked(check_real, label, v, lo, hi, lo_open=key in OPEN_LOW)
    if out.get("polarity_lo", 0) > out.get("polarity_hi", 1):
        raise gr.Error(f"polarity low ({out['polarity_lo']:g}) must be <= polarity high "
                       f"({out['polarity_hi']:g})")
    return out


def choice(choices, value, label, info):
    """A dropdown whose value is checked by the callback (``check_choice``), so that a bad
    value sent to the API gets an error naming the field (gradio's own check does not)."""
    return gr.Dropdown(list(choices), value=value, label=label, info=info,
                       allow_custom_value=True)


def number_box(c, fields, prefix):
    """A function ``num(key)`` that adds ``c[key] = gr.Number`` from ``fields[key]``, with
    ``elem_id`` ``{prefix}-{key}``."""
    def num(key):
        label, kind, lo, hi, default, hint = fields[key]
        c[key] = gr.Number(default, label=label, info=hint, elem_id=f"{prefix}-{key}")
    return num


# ----------------------------------------------------------------------------- runs and Stop
RUNS: dict = {}                # session hash -> {"stop": Event, "state": dict}
RUNS_LOCK = threading.Lock()


def stream_run(run, stop: threading.Event, state: dict, render):
    """Run ``run(emit, stop)`` in a worker thread and yield ``(kind, records, figures,
    payload)``: ``kind`` "update" while training, then "done" (payload: ``run``'s return
    value), "stopped", "diverged" or "error" (payload: the message).

    ``run`` passes ``emit`` as its runner's callback (every new record) and ``stop`` as its
    stop flag (checked every step). ``figures`` is ``render(records)``, drawn in the worker
    after a record when at least ``RENDER_INTERVAL`` seconds (and three times the last
    drawing's cost) have passed, always for the first record and at the end: drawing never
    competes with training for the GIL and takes at most about a quarter of the run.
    """
    q: queue.Queue = queue.Queue()
    records: list = []
    state.update(t0=time.perf_counter(), drawn=-math.inf, cost=0.0)

    def draw(kind, payload=None):
        snap = list(records)
        t = time.perf_counter()
        q.put((kind, snap, render(snap) if snap else None, payload))
        state["drawn"] = time.perf_counter()
        state["cost"] = state["drawn"] - t

    def emit(rec):
        records.append(rec)
        state["step"] = rec.get("step", 0)
        if time.perf_counter() - state["drawn"] >= max(RENDER_INTERVAL, 3.0 * state["cost"]):
            draw("update")

    def work():
        try:
            with blas_threads(1):
                out = run(emit, stop)
            draw("stopped" if stop.is_set() else "done", out)
        except minissl.TrainingDiverged as exc:
            draw("diverged", str(exc))
        except ValueError as exc:      # a setting the runner refused (its cost included)
            draw("error", str(exc))
        except Exception as exc:       # reported to the user, never kills the server
            draw("error", f"{type(exc).__name__}: {exc}")

    worker = threading.Thread(target=work, name="minissl-train", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            yield item
            if item[0] != "update":
                return
    finally:
        stop.set()
        worker.join(timeout=30)


CANCELLED: dict = {}           # session hash -> how many of its queued runs Stop cancelled


def session_of(request):
    return getattr(request, "session_hash", None) or f"anon-{threading.get_ident()}"


def registered(request):
    """A fresh stop flag and state for this session's run (the Stop button finds it). A run
    that Stop cancelled while it waited in the queue starts with its flag set."""
    key = session_of(request)
    run = {"stop": threading.Event(), "state": {}}
    holder = CURRENT_RUN.get()
    if holder is not None:
        holder["run"] = run
    with RUNS_LOCK:
        RUNS[key] = run
        if CANCELLED.get(key, 0) > 0:
            CANCELLED[key] -= 1
            run["stop"].set()
            run["state"]["cancelled"] = True
    return key, run


def unregister(key, run):
    run["stop"].set()
    with RUNS_LOCK:
        if RUNS.get(key) is run:
            del RUNS[key]


def queued_runs(request):
    """How many of this session's training events wait in gradio's queue, not yet started
    (read from gradio's queue object, ``Blocks._queue``; 0 where it cannot be read)."""
    try:
        waiting = request.request.app.get_blocks()._queue.event_queue_per_concurrency_id[
            "training"].queue
        return sum(e.session_hash == request.session_hash for e in list(waiting))
    except (AttributeError, KeyError, TypeError):
        return 0


def stop_training(request: gr.Request = None):
    """Stop this session's training run (the worker ends within one step) and cancel its runs
    still waiting in the queue (each ends as soon as it starts)."""
    key = getattr(request, "session_hash", None)
    queued = queued_runs(request) if key else 0
    with RUNS_LOCK:
        run = RUNS.get(key)
        if queued:
            CANCELLED[key] = queued
    if run is not None:
        run["stop"].set()
    if run is None and not queued:
        return "no training run is active or queued"
    line = ("" if run is None else f"stopped by the user at step {run['state'].get('step', 0)} "
            "(the pictures show the last update)")
    return "; ".join(filter(None, [line, f"{queued} queued run(s) cancelled" * bool(queued)]))


# the run a cancellable event started: {"run": its RUNS entry}, filled by ``registered``
CURRENT_RUN: contextvars.ContextVar = contextvars.ContextVar("minissl_run", default=None)


def stop_current(holder):
    """Set the stop flag of the run recorded in ``holder`` (by ``registered``), if any."""
    run = holder.get("run")
    if run is not None:
        run["stop"].set()


def close_later(gen, holder):
    """Stop the run ``holder`` records as soon as it is registered, and close the generator
    ``gen`` once the thread advancing it lets go (its ``finally`` joins the worker and frees
    the run's memory); in a daemon thread."""
    def close():
        for _ in range(1200):
            stop_current(holder)
            try:
                gen.close()
                return
            except ValueError:             # "generator already executing"
                time.sleep(0.05)
    threading.Thread(target=close, name="minissl-close", daemon=True).start()


def _advance(gen):
    try:
        return True, next(gen)
    except StopIteration:
        return False, None


def cancellable(fn):
    """The generator function ``fn`` of a tab as gradio runs it: an async generator that
    advances ``fn``'s generator in a thread and, when the event is cancelled (Stop on the page,
    ``job.cancel()`` from a client, a closed page), sets the session's stop flag at once, so
    that the worker ends within one step instead of running on to its next picture."""
    import anyio

    @functools.wraps(fn)
    async def run(*args, **kwargs):
        holder = {}
        CURRENT_RUN.set(holder)            # copied into the threads that advance ``gen``
        gen, done = fn(*args, **kwargs), False
        try:
            while True:
                more, item = await anyio.to_thread.run_sync(_advance, gen,
                                                            abandon_on_cancel=True)
                if not more:
                    done = True
                    return
                yield item
        finally:
            if not done:
                stop_current(holder)
                close_later(gen, holder)
    return run


def finish_line(kind, payload, line):
    line = {"done": "done: ", "stopped": "stopped by the user: "}.get(kind, "") + line
    return f"{payload}\n(last good picture: {line})" if kind in ("diverged", "error") else line


def streamed(request, run, render, status):
    """Drive ``stream_run`` for a tab: yields ``(*figures, status line, records, kind)``;
    ``status(records, seconds)`` formats the line. Raises ``gr.Error`` on failure, and when
    Stop cancelled the run while it waited in the queue."""
    key, reg = registered(request)
    try:
        if reg["state"].get("cancelled"):
            raise gr.Error("stopped by the user before it started (Stop was pressed while "
                           "this run waited in the queue)")
        for kind, records, figs, payload in stream_run(run, reg["stop"], reg["state"], render):
            if not records:            # stopped or failed before the first picture
                if kind in ("diverged", "error"):
                    raise gr.Error(payload)
                return
            line = status(records, time.perf_counter() - reg["state"]["t0"])
            yield (*figs, finish_line(kind, payload, line), records, kind)
            if kind in ("diverged", "error"):
                raise gr.Error(payload)
    finally:
        unregister(key, reg)


# ----------------------------------------------------------------------------- HLTM tab
# field: (label, kind, lo, hi, default, hint)
HLTM_FIELDS = {
    "depth": ("depth", int, 2, 7, 5, "tree depth L, 2-7 (root at L, leaves at 0)"),
    "num_children": ("children", int, 2, 3, 2, "children per latent, 2-3"),
    "polarity_lo": ("polarity low", float, 0.0, 1.0, 0.7,
                    "|ρ| ~ U[low, high], 0 ≤ low ≤ high ≤ 1"),
    "polarity_hi": ("polarity high", float, 0.0, 1.0, 1.0, "P(child = parent) = (1+ρ)/2"),
    "hid": ("hid", int, 1, 50, 10, "hidden units per latent, 1-50"),
    "tau": ("τ", float, 0.0, 100.0, 0.1, "temperature, 0 < τ ≤ 100"),
    "lr": ("learning rate", float, 0.0, 10.0, 0.1, "SGD step, 0 < lr ≤ 10"),
    "batch_size": ("batch size", int, 2, 1024, 128, "anchors per step, 2-1024"),
    "epochs": ("epochs", int, 1, 200, 20, "one picture per epoch, 1-200"),
    "steps_per_epoch": ("steps per epoch", int, 1, 5000, 150, "SGD steps between pictures"),
    "seed": ("seed", int, 0, 2**31 - 1, 1, "tree polarities, init, data, evaluation"),
}
OPEN_LOW = ("tau", "lr")
HLTM_ORDER = ("preset", "depth", "num_children", "polarity_lo", "polarity_hi", "hid", "loss",
              "tau", "lr", "batch_size", "epochs", "steps_per_epoch", "seed", "update",
              "backend")
HLTM_DEFAULTS = {k: v[4] for k, v in HLTM_FIELDS.items()}
HLTM_DEFAULTS.update(preset="theory", loss="infonce", update="gradient", backend="numpy")


@dataclass
class Example:
    """A named setting: the changed fields over ``HLTM_DEFAULTS`` and what to look for."""
    name: str
    changes: dict
    note: str


EXAMPLES = [
    Example("Default: binary tree, strong polarity", {},
            "Depth 5, |ρ| in [0.7, 1]: the deep latents' correlation climbs well above the "
            "untrained value (dashed) towards the ceiling (dotted)."),
    Example("Weak polarity (0.3-0.6): the top stays hidden",
            {"polarity_lo": 0.3, "polarity_hi": 0.6},
            "Each edge scrambles its parent more; the ceiling itself is low near the root."),
    Example("One unit per latent (hid = 1)", {"hid": 1},
            "Too few units: less chance that some unit starts aligned with the latent."),
    Example("Ternary tree, depth 4", {"num_children": 3, "depth": 4, "epochs": 15},
            "81 leaves; every latent sees three children."),
    Example("Covariance-operator update rule", {"update": "covariance", "epochs": 8},
            "W += lr * OP vec(W) instead of the gradient step."),
    Example("Reference code setting (biases, normalised output, ref_nce)",
            {"preset": "reference", "loss": "ref_nce", "tau": 0.05},
            "luckmatters ssl/hltm: biases, output x/(|x|+1e-4), loss ref_nce with T=0.01."),
    Example("Diverging run (simple loss, lr 1)", {"loss": "simple", "lr": 1.0, "epochs": 5},
            "The simple loss r+ - r- is unbounded below: training blows up and says so."),
]
EXAMPLE_BY_NAME = {e.name: e for e in EXAMPLES}


def hltm_config(values: dict) -> E.HLTMConfig:
    """The ``experiments.HLTMConfig`` the tab's settings describe (preset filled, validated,
    within the app's caps); ``gr.Error`` naming the field and the bound otherwise."""
    v = settings(HLTM_FIELDS, values)
    cfg = E.HLTMConfig(
        preset=checked(check_choice, "preset", values.get("preset"), E.PRESETS),
        depth=v["depth"], num_children=v["num_children"],
        polarity=(v["polarity_lo"], v["polarity_hi"]), hid=v["hid"],
        loss=checked(check_choice, "loss", values.get("loss"), tuple(minissl.LOSSES)),
        tau=v["tau"], lr=v["lr"], batch_size=v["batch_size"], epochs=v["epochs"],
        samples_per_epoch=v["steps_per_epoch"] * v["batch_size"], seed=v["seed"],
        update=checked(check_choice, "update rule", values.get("update"), UPDATES),
        backend=checked(check_choice, "backend", values.get("backend"), minissl.BACKENDS),
        eval_samples=EVAL_SAMPLES, probe="root", probe_samples=PROBE_SAMPLES)
    cfg = checked(cfg.apply_preset)
    checked(cfg.check_cost, LIMITS)
    return cfg


def hltm_figures(cfg, tree, records):
    """The three pictures of the HLTM tab for the records so far."""
    last, depths = records[-1], range(1, cfg.depth + 1)
    fig_tree = plots.tree_figure(cfg.num_children, cfg.depth, tree.by_level(last["corr"]),
                                 tree.polarity_by_level,
                                 title=f"epoch {last['epoch']}: latents coloured by best |corr| "
                                       "(edges: polarity, blue +, red -)")
    ceiling = records[0]["ceiling_by_depth"]
    fig_corr = plots.corr_panels_figure(
        [r["step"] for r in records], [[r["corr_by_depth"][d] for d in depths] for r in records],
        untrained=[records[0]["corr_by_depth"][d] for d in depths],
        ceiling=[ceiling[d] for d in depths])
    collapsed = minissl.collapsed_loss(cfg.loss, cfg.tau, cfg.negatives, cfg.margin)
    fig_loss = plots.loss_figure([r["step"] for r in records], [r["loss"] for r in records],
                                 collapsed=collapsed,
                                 name=f"{cfg.loss} (epoch mean; epoch 0: untrained)")
    return show(fig_tree), show(fig_corr), show(fig_loss)


def _round_depths(d):
    return {str(k): round(float(v), 6) for k, v in d.items()}


def hltm_result(cfg, records, status, seconds):
    """The JSON the endpoint returns: ``corr_by_depth`` as ``python -m minissl hltm --json``
    prints it (``{"depth": value}``, root first), plus context."""
    return {"corr_by_depth": _round_depths(records[-1]["corr_by_depth"]),
            "untrained_corr_by_depth": _round_depths(records[0]["corr_by_depth"]),
            "ceiling_by_depth": _round_depths(records[0]["ceiling_by_depth"]),
            "epochs_done": records[-1]["epoch"], "steps_done": records[-1]["step"],
            "loss": float(records[-1]["loss"]),
            "collapsed_loss": minissl.collapsed_loss(cfg.loss, cfg.tau, cfg.negatives,
                                                     cfg.margin),
            "status": status, "seconds": round(seconds, 3),
            "config": {k: getattr(cfg, k) for k in (
                "preset", "depth", "num_children", "polarity", "hid", "loss", "tau", "lr",
                "batch_size", "epochs", "steps_per_epoch", "seed", "update", "backend")}}


def train_hltm(preset="theory", depth=5, num_children=2, polarity_lo=0.7, polarity_hi=1.0,
               hid=10, loss="infonce", tau=0.1, lr=0.1, batch_size=128, epochs=20,
               steps_per_epoch=150, seed=1, update="gradient", backend="numpy",
               request: gr.Request = None, progress=gr.Progress()):
    """Train the tree network on an HLTM, streaming (tree, corr-per-depth, loss, status, JSON,
    run) after every epoch. The final JSON holds ``corr_by_depth`` (see ``hltm_result``); the
    run ``{"cfg", "records"}`` goes to a ``gr.State`` (not part of the API's outputs) for the
    per-unit and probe views (``luck_figures``)."""
    cfg = hltm_config(dict(zip(HLTM_ORDER, (
        preset, depth, num_children, polarity_lo, polarity_hi, hid, loss, tau, lr, batch_size,
        epochs, steps_per_epoch, seed, update, backend))))
    tree, total = cfg.tree(), cfg.epochs * cfg.steps_per_epoch
    progress(0, desc="starting", total=total, unit="steps")

    def status(records, secs):
        last, first, ceil = records[-1], records[0], records[0]["ceiling_by_depth"]
        progress(min(last["step"], total) / total, desc=f"epoch {last['epoch']}/{cfg.epochs}")
        return (f"step {last['step']}/{total} · epoch {last['epoch']}/{cfg.epochs} · "
                f"{last['step'] / secs if secs > 0 else 0:,.0f} steps/s · loss "
                f"{last['loss']:.4g} · root corr {last['corr_by_depth'][cfg.depth]:.3f} "
                f"(untrained {first['corr_by_depth'][cfg.depth]:.3f}, ceiling "
                f"{ceil[cfg.depth]:.3f}) · {secs:.1f} s")

    t0 = time.perf_counter()
    for *figs, line, records, kind in streamed(
            request, lambda emit, stop: E.hltm_experiment(cfg, emit, stop, LIMITS),
            lambda r: hltm_figures(cfg, tree, r), status):
        yield (*figs, line, hltm_result(cfg, records, "running" if kind == "update" else kind,
                                        time.perf_counter() - t0), {"cfg": cfg, "records": records})


def apply_example(name):
    """The control values of a named example (unchanged fields reset to the defaults)."""
    ex = EXAMPLE_BY_NAME.get(name)
    if ex is None:
        raise gr.Error(f"unknown example {name!r}")
    vals = {**HLTM_DEFAULTS, **ex.changes}
    return [vals[k] for k in HLTM_ORDER] + [f"*{ex.note}*"]


def hltm_tab():
    """Tab "Latent recovery (HLTM)": settings, Train/Stop, streamed pictures, API endpoint."""
    with gr.Tab("Latent recovery (HLTM)", id="hltm"):
        gr.Markdown(HLTM_TEXT)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                example = gr.Dropdown([e.name for e in EXAMPLES], value=EXAMPLES[0].name,
                                      label="examples", info="sets all the controls below")
                note = gr.Markdown(f"*{EXAMPLES[0].note}*")
                c = {"preset": choice(E.PRESETS, "theory", "network setting",
                                      "theory: bias-free (the paper's analysis); "
                                      "reference: biases + normalised output")}
                num = number_box(c, HLTM_FIELDS, "hltm")
                with gr.Row():
                    num("depth"), num("num_children")
                with gr.Row():
                    num("polarity_lo"), num("polarity_hi")
                with gr.Row():
                    num("hid")
                    c["loss"] = choice(minissl.LOSSES, "infonce", "loss", "see the Losses tab")
                with gr.Row():
                    num("tau"), num("lr")
                with gr.Row():
                    num("batch_size"), num("seed")
                with gr.Row():
                    num("epochs"), num("steps_per_epoch")
                with gr.Row():
                    c["update"] = choice(UPDATES, "gradient", "update rule",
                                         "covariance: W += lr·OP vec(W)")
                    c["backend"] = choice(minissl.BACKENDS, "numpy", "backend",
                                          "cupy needs a GPU")
                with gr.Row():
                    train_btn = gr.Button("Train", variant="primary", elem_id="hltm-train")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="hltm-stop")
            with gr.Column(scale=2):
                status = gr.Textbox(label="status", lines=2, interactive=False,
                                    elem_classes=["status-line"], elem_id="hltm-status")
                tree_plot = gr.Plot(show_label=False, label="latent tree", elem_id="hltm-tree",
                                    format="png")
                with gr.Row():
                    corr_plot = gr.Plot(show_label=False, label="correlation per depth",
                                        elem_id="hltm-corr", format="png")
                    loss_plot = gr.Plot(show_label=False, label="loss", elem_id="hltm-loss",
                                        format="png")
                with gr.Accordion("result (JSON, as returned by the /train_hltm endpoint)",
                                  open=False):
                    result = gr.JSON(label="result")
        run_state = gr.State()
        latent, luck_plots = luck_section()
        inputs = [c[k] for k in HLTM_ORDER]
        run = train_btn.click(cancellable(train_hltm), inputs, [tree_plot, corr_plot, loss_plot,
                                                                status, result, run_state],
                              api_name="train_hltm", concurrency_limit=1,
                              concurrency_id="training", show_progress="full",
                              show_progress_on=[status])
        for event in (run.then, latent.change):
            event(luck_figures, [run_state, latent], luck_plots, api_visibility="undocumented")
        stop_btn.click(stop_training, None, status, cancels=[run], queue=False,
                       api_name="stop")
        example.change(apply_example, example, inputs + [note], queue=False,
                       api_visibility="undocumented")


def luck_figures(run=None, latent=0):
    """The per-unit view (``experiments.unit_view``) and the probe figure
    (``experiments.probe_view``; the root's, unless that latent was probed) of the last run
    ``{"cfg", "records"}`` for the BFS ``latent``; (None, None) before a run."""
    if not run or not run.get("records"):
        return None, None
    tree, records = run["cfg"].tree(), run["records"]
    latent = checked(check_int, "latent", latent, 0, tree.n_latents - 1)
    units = show(plots.unit_view_figure(checked(E.unit_view, tree, records, latent)))
    probe = (show(plots.probe_figure(E.probe_view(tree, records, latent)))
             if "probe" in records[0] else None)
    return units, probe


def luck_section():
    """The HLTM tab's "luck" part: a latent chooser, the per-unit view and the probe figure."""
    gr.Markdown(LUCK_TEXT, latex_delimiters=LATEX)
    latent = gr.Number(0, precision=0, minimum=0, label="latent (BFS index)",
                       info="0 = the root, 1..c its children, then the next level",
                       elem_id="hltm-latent")
    units = gr.Plot(show_label=False, label="per-unit selectivity", elem_id="hltm-units",
                    format="png")
    probe = gr.Plot(show_label=False, label="probes", elem_id="hltm-probe", format="png")
    return latent, [units, probe]


# ----------------------------------------------------------------------------- Covariance tab
COV_FIELDS = {
    "depth": ("depth", int, 2, 5, 4, "tree depth, 2-5"),
    "num_children": ("children", int, 2, 3, 2, "children per latent, 2-3"),
    "polarity_lo": ("polarity low", float, 0.0, 1.0, 0.7, "|ρ| ~ U[low, high]"),
    "polarity_hi": ("polarity high", float, 0.0, 1.0, 1.0, "0 ≤ low ≤ high ≤ 1"),
    "hid": ("hid", int, 1, 20, 10, "units per latent, 1-20"),
    "tau": ("τ", float, 0.0, 100.0, 0.1, "temperature, 0 < τ ≤ 100"),
    "lr": ("learning rate", float, 0.0, 10.0, 0.1, "0 < lr ≤ 10"),
    "batch_size": ("batch size", int, 2, 512, 128, "anchors per step, 2-512"),
    "steps": ("steps", int, 1, 5000, 600, "training steps, 1-5000"),
    "snapshots": ("pictures", int, 1, 50, 12, "spectra computed during the run, 1-50"),
    "layer": ("layer l", int, 1, 5, 2, "1 = leaves -> depth-1 units; at most depth"),
    "k": ("top k", int, 1, 16, 8, "eigenvalues shown, 1-16"),
    "n_samples": ("samples N", int, 8, 512, 256, "samples x for OP = V^ξ[Kbar], 8-512"),
    "n_views": ("views M", int, 1, 8, 4, "augmented views averaged in Kbar, 1-8"),
    "seed": ("seed", int, 0, 2**31 - 1, 1, "tree, init, data"),
}
COV_ORDER = ("depth", "num_children", "polarity_lo", "polarity_hi", "hid", "loss", "tau", "lr",
             "batch_size", "steps", "snapshots", "layer", "k", "n_samples", "n_views", "update",
             "seed")


def covariance_config(values: dict) -> E.CovarianceConfig:
    """The ``experiments.CovarianceConfig`` of the tab's settings (``gr.Error`` otherwise)."""
    v = settings(COV_FIELDS, values)
    if v["layer"] > v["depth"]:
        raise gr.Error(f"layer l must be an integer in [1, depth = {v['depth']}], "
                       f"got {v['layer']}")
    cfg = E.CovarianceConfig(
        **{k: v[k] for k in v if k not in ("polarity_lo", "polarity_hi")},
        polarity=(v["polarity_lo"], v["polarity_hi"]),
        loss=checked(check_choice, "loss", values.get("loss"), PAIR_WEIGHT_LOSSES),
        update=checked(check_choice, "update rule", values.get("update"), UPDATES))
    checked(cfg.validate)
    checked(cfg.cost().check, LIMITS)
    return cfg


def covariance_figures(cfg, records):
    last = records[-1]
    fig_spec = plots.spectrum_figure(last["eigvals"], initial=records[0]["eigvals"],
                                     layer=cfg.layer,
                                     title=f"top {cfg.k} eigenvalues of OP, layer {cfg.layer}"
                                           f" (step {last['step']})")
    cos = {str(l + 1): [r["cos"][l] for r in records] for l in range(cfg.depth)}
    fig_cos = plots.cosine_figure([r["step"] for r in records], cos)
    fig_vec = plots.eigvec_figure(last["eigvec"], last["shape"], eigval=last["eigvals"][0],
                                  layer=cfg.layer)
    return show(fig_spec), show(fig_cos), show(fig_vec)


def train_covariance(depth=4, num_children=2, polarity_lo=0.7, polarity_hi=1.0, hid=10,
                     loss="infonce", tau=0.1, lr=0.1, batch_size=128, steps=600, snapshots=12,
                     layer=2, k=8, n_samples=256, n_views=4, update="gradient", seed=1,
                     request: gr.Request = None, progress=gr.Progress()):
    """Train the HLTM tree network and stream ``experiments.covariance_experiment``: the top-k
    spectrum of ``OP_l``, the per-layer cosine between the gradient step and the
    covariance-operator step, and the top eigenvector of ``OP_l`` reshaped as ``W_l``."""
    cfg = covariance_config(dict(zip(COV_ORDER, (
        depth, num_children, polarity_lo, polarity_hi, hid, loss, tau, lr, batch_size, steps,
        snapshots, layer, k, n_samples, n_views, update, seed))))
    progress(0, desc="starting", total=cfg.steps, unit="steps")

    def status(records, secs):
        last = records[-1]
        progress(last["step"] / cfg.steps, desc=f"step {last['step']}")
        return (f"step {last['step']}/{cfg.steps} · λ_max(OP_{cfg.layer}) = "
                f"{last['eigvals'][0]:.4g} · cos per layer "
                f"[{', '.join(f'{c:.2f}' for c in last['cos'])}] · loss on the fixed batch "
                f"{last['loss']:.4g} · {secs:.1f} s")

    for *figs, line, _, _ in streamed(
            request, lambda emit, stop: E.covariance_experiment(cfg, emit, stop, LIMITS),
            lambda r: covariance_figures(cfg, r), status):
        yield (*figs, line)




def covariance_tab():
    """Tab "Covariance operator": OP's spectrum, gradient-vs-OP cosine, top eigenvector."""
    with gr.Tab("Covariance operator", id="covariance"):
        gr.Markdown(COV_TEXT, latex_delimiters=LATEX)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                c = {}
                num = number_box(c, COV_FIELDS, "cov")
                for pair in (("depth", "num_children"), ("polarity_lo", "polarity_hi")):
                    with gr.Row():
                        num(pair[0]), num(pair[1])
                with gr.Row():
                    num("hid")
                    c["loss"] = choice(PAIR_WEIGHT_LOSSES, "infonce", "loss",
                                       "sets the pair weights ξ")
                for pair in (("tau", "lr"), ("batch_size", "steps"), ("layer", "k"),
                             ("n_samples", "n_views"), ("snapshots", "seed")):
                    with gr.Row():
                        num(pair[0]), num(pair[1])
                c["update"] = choice(UPDATES, "gradient", "update rule",
                                     "covariance: W += lr·OP vec(W)")
                with gr.Row():
                    go = gr.Button("Train", variant="primary", elem_id="cov-train")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="cov-stop")
            with gr.Column(scale=2):
                status = gr.Textbox(label="status", lines=2, interactive=False,
                                    elem_classes=["status-line"], elem_id="cov-status")
                with gr.Row():
                    spec = gr.Plot(show_label=False, label="spectrum of OP",
                                   elem_id="cov-spectrum", format="png")
                    cos = gr.Plot(show_label=False, label="cosine", elem_id="cov-cosine",
                                  format="png")
                vec = gr.Plot(show_label=False, label="top eigenvector", elem_id="cov-eigvec",
                              format="png")
        run = go.click(cancellable(train_covariance), [c[k] for k in COV_ORDER],
                       [spec, cos, vec, status],
                       api_name="train_covariance", concurrency_limit=1,
                       concurrency_id="training", show_progress="full",
                       show_progress_on=[status])
        stop_btn.click(stop_training, None, status, cancels=[run], queue=False,
                       api_visibility="undocumented")
        acceleration_section()


# field: (label, kind, lo, hi, default, hint)
ACC_FIELDS = {
    "lr": ("learning rate", float, 0.0, 1.0, 0.01, "0 < lr ≤ 1"),
    "steps": ("steps", int, 10, 1000, 200, "per arm, 10-1000"),
    "top_scale": ("top scale", float, 1.0, 5.0, 2.0, "the scaled arm's W_L factor, 1-5"),
    "seed": ("seed", int, 0, 2**31 - 1, 1, "tree, init, data"),
}


def run_acceleration(loss="simple", update="gradient", lr=0.01, steps=200, top_scale=2.0,
                     seed=1, request: gr.Request = None):
    """The top-layer-acceleration figure (``experiments.acceleration_experiment`` on a depth-2
    tree, top layer frozen / trained / scaled, and ``linear_acceleration``) and a summary,
    streamed from the bounded worker (Stop and cancel end it); the cost is checked first."""
    v = settings(ACC_FIELDS, dict(lr=lr, steps=steps, top_scale=top_scale, seed=seed))
    cfg = E.AccelerationConfig(
        loss=checked(check_choice, "loss", loss, PAIR_WEIGHT_LOSSES),
        update=checked(check_choice, "update rule", update, UPDATES), **v,
        snapshots=min(20, v["steps"]))
    checked(cfg.validate)
    checked(cfg.cost().check, LIMITS)
    linear = E.linear_acceleration(cfg.top_scale)

    def status(records, secs):
        ends = {a: [r for r in records if r["arm"] == a][-1] for a in E.ARMS
                if any(r["arm"] == a for r in records)}
        return " · ".join(f"top {a}: mean |corr| {r['unit_corr']:.3f}, ‖ΔW₁‖/‖W₁‖ "
                          f"{r['dW1']:.3f} at step {r['step']}"
                          + (" (then diverged)" if r["diverged"] else "")
                          for a, r in ends.items())

    for fig, line, _, _ in streamed(
            request, lambda emit, stop: E.acceleration_experiment(cfg, emit, stop, LIMITS),
            lambda records: (show(plots.acceleration_figure(records, linear)),), status):
        yield fig, line


def acceleration_section():
    """The Covariance tab's top-layer-acceleration section."""
    gr.Markdown(ACCEL_TEXT, latex_delimiters=LATEX)
    with gr.Row():
        loss = choice(PAIR_WEIGHT_LOSSES, "simple", "loss", "simple: ξ ≡ 1")
        update = choice(UPDATES, "gradient", "update rule", "covariance: W += lr·OP vec(W)")
        c = {}
        num = number_box(c, ACC_FIELDS, "acc")
        for key in ACC_FIELDS:
            num(key)
        go = gr.Button("Run the three arms", elem_id="acc-run")
    summary = gr.Markdown()
    fig = gr.Plot(show_label=False, label="acceleration", elem_id="acc-plot", format="png")
    ev = go.click(cancellable(run_acceleration), [loss, update] + [c[k] for k in ACC_FIELDS],
                  [fig, summary], api_name="acceleration", concurrency_limit=1,
                  concurrency_id="training", show_progress="full")
    stop = gr.Button("Stop", variant="stop", elem_id="acc-stop")
    stop.click(stop_training, None, summary, cancels=[ev], queue=False,
               api_visibility="undocumented")


# ----------------------------------------------------------------------------- Losses tab
LOSS_FIELDS = {"r_pos": ("r+", float, 0.0, 50.0, 1.0, ""), "r_neg": ("r-", float, 0.0, 50.0, 1.0, ""),
               "tau": ("τ", float, 0.0, 100.0, 1.0, ""),
               "margin": ("margin r0", float, -50.0, 50.0, 0.0, ""),
               "negatives": ("negatives H", int, 1, 64, 1, "")}


def loss_curves_plot(vary="r_pos", r_pos=1.0, r_neg=1.0, tau=1.0, margin=0.0, negatives=1,
                     losses=THREE_LOSSES):
    """The two-panel loss / pair-weight figure for the controls (``losses.loss_curves``).
    Bounded by its fields: at most the four losses (repeats count once) x 201 points x 64
    negatives."""
    v = settings(LOSS_FIELDS, dict(r_pos=r_pos, r_neg=r_neg, tau=tau, margin=margin,
                                   negatives=negatives))
    v["H"] = v.pop("negatives")
    vary = checked(check_choice, "vary", vary, LOSS_VARIABLES)
    if isinstance(losses, str):
        losses = [losses]
    losses = list(dict.fromkeys(checked(check_choice, "losses", name, tuple(minissl.LOSSES))
                                for name in (losses or [])))
    if not losses:
        raise gr.Error("losses: choose at least one loss")
    t, curves = minissl.loss_curves(vary, **v, losses=tuple(losses))
    return show(plots.losses_figure(t, curves, vary, **v))


def losses_tab():
    """Tab "Losses": the losses and their pair weights against r+, r- or τ."""
    with gr.Tab("Losses", id="losses"):
        gr.Markdown(LOSSES_TEXT, latex_delimiters=LATEX)
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                vary = gr.Radio([("r+", "r_pos"), ("r-", "r_neg"), ("τ", "tau")],
                                value="r_pos", label="horizontal axis")
                r_pos = gr.Slider(0, 5, 1.0, step=0.05, label="r+ (when fixed)")
                r_neg = gr.Slider(0, 5, 1.0, step=0.05, label="r- (when fixed, every negative)")
                tau = gr.Slider(0.05, 5, 1.0, step=0.05, label="τ (when fixed)")
                margin = gr.Slider(-2, 2, 0.0, step=0.1, label="soft-triplet margin r0")
                negatives = gr.Slider(1, 16, 1, step=1, label="InfoNCE negatives H")
                which = gr.CheckboxGroup(list(minissl.LOSSES), value=list(THREE_LOSSES),
                                         label="losses")
            with gr.Column(scale=3):
                fig = gr.Plot(loss_curves_plot(), show_label=False,
                              label="losses and pair weights", elem_id="losses-plot",
                              format="png")
        controls = [vary, r_pos, r_neg, tau, margin, negatives, which]
        gr.on([ctl.change for ctl in controls], loss_curves_plot, controls, fig,
              trigger_mode="always_last", show_progress="hidden", api_name="loss_curves")


# ----------------------------------------------------------------------------- BYOL tab
EMA_CHOICES = ("0", "0.99")


def byol_status(records, secs):
    last = records[-1]
    return f"run {last['run']}/{last['runs']} · {secs:.1f} s"


def byol_render(data, steps, wd, seed):
    """``render(rows)`` of the ablation: the Markdown table and its two figures."""
    def render(rows):
        spectra = {f"{r['predictor']}/{r['bn_mean']}/ema {r['ema']:g}": r["spectrum"]
                   for r in rows[:: max(1, len(rows) // 4)] if not r["diverged"]}
        md = "\n".join([f"BYOL on **{data}**: lr {0.5 if data == 'toy' else 0.1:g}, weight "
                        f"decay {wd:g}, {steps} steps, batch 64, BN var normal, "
                        f"L2-normalised loss, seed {seed}.", ""] + E.ablation_table(rows))
        return (md, show(plots.byol_ablation_figure(rows)),
                show(plots.byol_spectrum_figure(spectra)))
    return render


def run_byol_ablation(data="toy", predictors=("none", "linear"),
                      bn_means=("normal", "detach", "omit"), emas=EMA_CHOICES, steps=300,
                      weight_decay=0.02, seed=0, request: gr.Request = None):
    """The BYOL ablation (``experiments.byol_ablation``), streamed after every run: status,
    Markdown table, two figures. Every list is de-duplicated and checked against its choices
    (at most 3 x 3 x 2 runs), the estimated cost against the app's limits."""
    data = checked(check_choice, "data", data, E.DATASETS)
    steps = checked(check_int, "steps", steps, 50, 1000)
    wd = checked(check_real, "weight decay", weight_decay, 0.0, 0.1)
    seed = checked(check_int, "seed", seed, 0, 2**31 - 1)
    lists = {}
    for name, values, allowed in (("predictor", predictors, PREDICTORS),
                                  ("BN mean part", bn_means, BN_MODES),
                                  ("target EMA", emas, EMA_CHOICES)):
        values = [values] if isinstance(values, str) else list(values or [])
        lists[name] = list(dict.fromkeys(checked(check_choice, name, v, allowed)
                                         for v in values))
        if not lists[name]:
            raise gr.Error(f"{name}: choose at least one of {allowed}")
    emas = [float(e) for e in lists["target EMA"]]

    def run(emit, stop):
        return E.byol_ablation(data, lists["predictor"], lists["BN mean part"], emas, steps,
                               None, wd, seed, callback=emit, stop=stop, limits=LIMITS)

    for *figs, line, _, _ in streamed(request, run, byol_render(data, steps, wd, seed),
                                      byol_status):
        yield (line, *figs)


def run_linear_byol(weight_decay=0.01, predictor_rate=1.0, duration=20.0,
                    request: gr.Request = None):
    """Linear BYOL: the ODE against BYOL's SGD (``experiments.linear_regime``), in the bounded
    worker (Stop ends the SGD)."""
    eta = checked(check_real, "weight decay η", weight_decay, 0, 0.5)
    alpha_p = checked(check_real, "predictor rate α_p", predictor_rate, 0.1, 10)
    T = checked(check_real, "duration T", duration, 5, 60)

    def run(emit, stop):
        r = E.linear_regime(eta, alpha_p, T, stop=stop, limits=LIMITS)
        emit(r)
        return r

    def render(records):
        r = records[-1]
        return (show(plots.linear_byol_figure(r["t"], r["Ws"], r["t_sgd"], r["Ws_sgd"],
                                              title=f"α_p={alpha_p:g}, η={eta:g}")),)

    def status(records, secs):
        r = records[-1]
        return (f"||W(0)|| = {r['norm0']:.3f} → ||W({T:g})|| = {r['normT']:.3e} "
                f"({r['verdict']}); α_p = {alpha_p:g}, η = {eta:g}, β = 1 · {secs:.1f} s")

    for fig, line, _, _ in streamed(request, run, render, status):
        yield line, fig


def byol_tab():
    """Tab "Why BYOL does not collapse": predictor x BN mean x EMA ablation (toy or HLTM,
    collapse diagnostics, latent recovery on HLTM) and the exact linear dynamics."""
    with gr.Tab("Why BYOL does not collapse", id="byol"):
        gr.Markdown(BYOL_TEXT)
        with gr.Row():
            data = gr.Radio(list(E.DATASETS), value="toy", label="data")
            preds = gr.CheckboxGroup(list(PREDICTORS), value=["none", "linear"],
                                     label="predictor")
            means = gr.CheckboxGroup(list(BN_MODES), value=list(BN_MODES), label="BN mean part")
            emas = gr.CheckboxGroup(list(EMA_CHOICES), value=list(EMA_CHOICES),
                                    label="target EMA (0 = SimSiam)")
        with gr.Row():
            steps = gr.Slider(50, 1000, value=300, step=50, label="steps")
            wd = gr.Slider(0.0, 0.1, value=0.02, step=0.005, label="weight decay")
            seed = gr.Number(0, precision=0, label="seed")
            run = gr.Button("Run ablation", variant="primary", elem_id="byol-run")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="byol-stop")
        status = gr.Textbox(label="status", interactive=False, elem_classes=["status-line"])
        table = gr.Markdown()
        with gr.Row():
            fig_ab = gr.Plot(label="collapse diagnostics", format="png")
            fig_sp = gr.Plot(label="embedding spectrum", format="png")
        ev = run.click(cancellable(run_byol_ablation), [data, preds, means, emas, steps, wd, seed],
                       [status, table, fig_ab, fig_sp], concurrency_limit=1,
                       concurrency_id="training", api_name="byol_ablation", show_progress="full",
                       show_progress_on=[status])
        stop_btn.click(stop_training, None, status, cancels=[ev], queue=False,
                       api_visibility="undocumented")
        gr.Markdown("### Linear BYOL: gradient-flow ODE (lines) vs BYOL's SGD (dots)")
        with gr.Row():
            eta = gr.Slider(0.0, 0.5, value=0.01, step=0.01, label="weight decay η")
            alpha = gr.Slider(0.1, 10.0, value=1.0, step=0.1, label="predictor rate α_p")
            T = gr.Slider(5, 60, value=20, step=5, label="duration T")
            run_lin = gr.Button("Integrate", elem_id="linear-run")
            stop_lin = gr.Button("Stop", variant="stop", elem_id="linear-stop")
        lin_md = gr.Markdown()
        lin_fig = gr.Plot(format="png")
        ev_lin = run_lin.click(cancellable(run_linear_byol), [eta, alpha, T], [lin_md, lin_fig],
                               concurrency_limit=1, concurrency_id="training",
                               api_name="linear_byol", show_progress="full")
        stop_lin.click(stop_training, None, lin_md, cancels=[ev_lin], queue=False,
                       api_visibility="undocumented")


# ----------------------------------------------------------------------------- Decoupling tab
DECOUPLING_FIELDS = {
    "strength": ("strength", float, 0.0, 10.0, 0.5,
                 "mask: keep probability p in (0, 1]; noise: scale s; else unused"),
    "dense_rank": ("dense rank", int, 0, 48, 40, "dense directions r, 0-48"),
    "dense_energy": ("dense energy", float, 0.0, 10.0, 1.0, "E|ξ|² / E|Mz|², 0-10"),
    "width": ("neurons", int, 1, 128, 32, "neurons, 1-128"),
    "steps": ("steps", int, 10, 5000, 600, "Adam steps, 10-5000"),
    "seed": ("seed", int, 0, 2**31 - 1, 0, "bases, init, data"),
}
DECOUPLING_ORDER = ("augmentation", "strength", "dense_rank", "dense_energy", "neuron", "width",
                    "steps", "seed")


def decoupling_config(values: dict) -> E.DecouplingConfig:
    """The app's small ``DecouplingConfig`` (``gr.Error`` naming a bad field)."""
    v = settings(DECOUPLING_FIELDS, values)
    aug = checked(check_choice, "augmentation", values.get("augmentation"), AUGMENTATIONS)
    if aug == "mask" and not 0 < v["strength"] <= 1:
        raise gr.Error(f"strength (the mask's keep probability p) must be in (0, 1], got "
                       f"{v['strength']:g}")
    strength = {"mask": {"p": v["strength"]}, "noise": {"s": v["strength"]}}.get(aug, {})
    cfg = E.DecouplingConfig(
        d=16, d1=64, k=2, dense_rank=v["dense_rank"], dense_energy=v["dense_energy"],
        augmentation=aug, **strength, width=v["width"], batch_size=128, steps=v["steps"],
        log_every=max(1, v["steps"] // 30), seed=v["seed"],
        neuron=checked(check_choice, "neuron", values.get("neuron"), NEURONS))
    checked(cfg.validate)
    checked(cfg.cost().check, LIMITS)
    return cfg


def decoupling_figures(records):
    last = records[-1]
    curves = {k: [r[k] for r in records] for k in ("alignment", "dense_fraction", "coverage")}
    return (show(plots.neuron_figure(last["alignment_per_neuron"], last["dense_per_neuron"],
                                     last["coverage_per_feature"], b=last["b"])),
            show(plots.decoupling_curves_figure([r["step"] for r in records], curves,
                                                rho=records[0]["rho"])))


def train_decoupling(augmentation="complementary", strength=0.5, dense_rank=40,
                     dense_energy=1.0, neuron="symmetric", width=32, steps=600, seed=0,
                     request: gr.Request = None, progress=gr.Progress()):
    """Train on sparse-coding data and stream ``experiments.decoupling_experiment``: the
    neurons' make-up, the features' coverage, the means over training and a status line."""
    cfg = decoupling_config(dict(zip(DECOUPLING_ORDER, (
        augmentation, strength, dense_rank, dense_energy, neuron, width, steps, seed))))
    progress(0, desc="starting", total=cfg.steps, unit="steps")

    def status(records, secs):
        last, rho = records[-1], records[0]["rho"]
        progress(last["step"] / cfg.steps, desc=f"step {last['step']}")
        return (f"step {last['step']}/{cfg.steps} · sparse alignment {last['alignment']:.2f} "
                f"({last['aligned']}/{cfg.width} neurons > 0.9) · dense fraction "
                f"{last['dense_fraction']:.2f} · coverage {last['coverage']:.2f} "
                f"({last['covered']}/{cfg.d} features > 0.9) · views: ρ_sparse "
                f"{rho['sparse']:.2f}, ρ_dense {rho['dense']:.2f} · {secs:.1f} s")

    for *figs, line, _, _ in streamed(
            request, lambda emit, stop: E.decoupling_experiment(cfg, emit, stop, LIMITS),
            decoupling_figures, status):
        yield (*figs, line)


def decoupling_tab():
    """Tab "Feature decoupling": augmentation, strength, dense rank, neuron; Train/Stop."""
    with gr.Tab("Feature decoupling", id="decoupling"):
        gr.Markdown(DECOUPLING_TEXT, latex_delimiters=LATEX)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                c = {"augmentation": choice(AUGMENTATIONS, "complementary", "augmentation",
                                            "how the two views are made")}
                num = number_box(c, DECOUPLING_FIELDS, "dec")
                num("strength")
                with gr.Row():
                    num("dense_rank"), num("dense_energy")
                c["neuron"] = choice(NEURONS, "symmetric", "neuron",
                                     "symmetric: ReLU(s-b) - ReLU(-s-b), learned b ≥ 0")
                with gr.Row():
                    num("width"), num("steps")
                num("seed")
                with gr.Row():
                    go = gr.Button("Train", variant="primary", elem_id="dec-train")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="dec-stop")
            with gr.Column(scale=2):
                status = gr.Textbox(label="status", lines=2, interactive=False,
                                    elem_classes=["status-line"], elem_id="dec-status")
                neurons = gr.Plot(show_label=False, label="neurons", elem_id="dec-neurons",
                                  format="png")
                curves = gr.Plot(show_label=False, label="over training", elem_id="dec-curves",
                                 format="png")
        run = go.click(cancellable(train_decoupling), [c[k] for k in DECOUPLING_ORDER],
                       [neurons, curves, status], api_name="train_decoupling",
                       concurrency_limit=1, concurrency_id="training", show_progress="full",
                       show_progress_on=[status])
        stop_btn.click(stop_training, None, status, cancels=[run], queue=False,
                       api_visibility="undocumented")


# ----------------------------------------------------------------------------- app
TABS = [hltm_tab, covariance_tab, losses_tab, byol_tab, decoupling_tab]


def build_demo() -> gr.Blocks:
    """The whole app, queued: training events run one at a time (``concurrency_id
    "training"``), other users wait in the queue and see their position."""
    with gr.Blocks(title="minissl: SSL with dual deep networks") as demo:
        gr.Markdown(DESCRIPTION)
        with gr.Tabs():
            for tab in TABS:
                tab()
    demo.queue(max_size=64, default_concurrency_limit=2)
    return demo


def launch(demo, **kwargs):
    """``demo.launch`` with the app's css (Gradio 6: theme/css go to launch)."""
    return demo.launch(css=CSS, theme=gr.themes.Soft(), **kwargs)


def env_port(p):
    """``GRADIO_SERVER_PORT`` as a port number (default 7860); a usage error names it."""
    text = os.environ.get("GRADIO_SERVER_PORT", "").strip() or "7860"
    try:
        return check_int("GRADIO_SERVER_PORT", int(text), 1, 65535)
    except ValueError:
        p.error(f"GRADIO_SERVER_PORT must be a port number in [1, 65535], got {text!r}")


def main(argv=None):
    p = argparse.ArgumentParser(description="minissl demo: a Gradio app (see docs/demo.md)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--share", action="store_true",
                   help="also create a public gradio.live link (off by default)")
    args = p.parse_args(argv)
    port = env_port(p) if args.port is None else args.port
    if not 1 <= port <= 65535:
        p.error(f"--port must be in [1, 65535], got {port}")
    try:
        launch(build_demo(), server_name=args.host, server_port=port, share=args.share)
    except OSError as exc:             # the port is taken, or the host cannot be bound
        why = str(exc).split(". ")[0].rstrip(".")
        p.exit(1, f"demo.py: error: cannot serve on {args.host}:{port} (is the port in use? "
                  f"{why}); choose another with --port N or GRADIO_SERVER_PORT=N\n")


if __name__ == "__main__":
    main()
