"""minissl demo: watch self-supervised training shape a network, live, in the browser.

    python demo.py                 # http://127.0.0.1:7860  (--port, GRADIO_SERVER_PORT)
    python demo.py --share         # also a public gradio.live link (opt-in)

Gradio wiring only: every number comes from a runner of ``minissl.experiments`` (the same
code as ``python -m minissl hltm|covariance|byol``), every picture from ``minissl.plots``
(rendered to PNG and closed at once). One builder function per tab, listed in ``TABS``;
``build_demo()`` returns the queued ``gr.Blocks``; ``main()`` parses flags. The training
events are API endpoints (``/train_hltm``, ``/train_covariance``, ...; docs/demo.md).
"""
import argparse
import base64
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
from minissl.losses import LOSS_VARIABLES, THREE_LOSSES
from minissl.train import UPDATES

DESCRIPTION = """
# minissl: self-supervised learning with dual deep networks, live

A small bias-free ReLU network is trained with a contrastive loss on data from a
**hierarchical latent tree model** (HLTM): binary latents in a tree, only the leaves are seen.
It is never told the latents, yet its hidden units come to correlate with them, from the
leaves upwards. The theory (Tian, Yu, Chen & Ganguli 2020, *Understanding Self-supervised
Learning with Dual Deep Networks*) explains why: each layer's weight update is a
**covariance operator** applied to the weights. The tabs let you train and watch
(*Latent recovery*), look at that operator (*Covariance operator*) and at the losses that
weight it (*Losses*), see why BYOL does not collapse, and which features an augmentation lets
a network learn (*Feature decoupling*).
"""
CSS = ".status-line textarea {font-family: ui-monospace, monospace; font-size: 0.85em;}"
LATEX = [{"left": "$$", "right": "$$", "display": True},
         {"left": "$", "right": "$", "display": False}]
EVAL_SAMPLES = 4000          # fixed evaluation set of the streamed correlations
MAX_WEIGHTS = 4_000_000      # dense (masked) weight entries of the tree network
MAX_WORK = 2e11              # steps x batch_size x weights: about 4 minutes on 2 CPU cores
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


def registered(request):
    """A fresh stop flag and state for this session's run (the Stop button finds it)."""
    key = getattr(request, "session_hash", None) or f"anon-{threading.get_ident()}"
    run = {"stop": threading.Event(), "state": {}}
    with RUNS_LOCK:
        RUNS[key] = run
    return key, run


def unregister(key, run):
    run["stop"].set()
    with RUNS_LOCK:
        if RUNS.get(key) is run:
            del RUNS[key]


def stop_training(request: gr.Request = None):
    """Stop this browser session's training run (the worker ends within one step)."""
    with RUNS_LOCK:
        run = RUNS.get(getattr(request, "session_hash", None))
    if run is None:
        return "no training run is active"
    run["stop"].set()
    return (f"stopped by the user at step {run['state'].get('step', 0)} "
            "(the pictures show the last update)")


def finish_line(kind, payload, line):
    line = {"done": "done: ", "stopped": "stopped by the user: "}.get(kind, "") + line
    return f"{payload}\n(last good picture: {line})" if kind in ("diverged", "error") else line


def streamed(request, run, render, status):
    """Drive ``stream_run`` for a tab: yields ``(*figures, status line, records, kind)``;
    ``status(records, seconds)`` formats the line. Raises ``gr.Error`` on failure."""
    key, reg = registered(request)
    try:
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
    Example("Covariance-operator update rule", {"update": "covariance"},
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
        eval_samples=EVAL_SAMPLES)
    weights, work = cfg.cost()
    if weights > MAX_WEIGHTS:
        raise gr.Error(f"depth={v['depth']}, children={v['num_children']}, hid={v['hid']} make "
                       f"a tree network with {weights:,} weights; the limit is {MAX_WEIGHTS:,}: "
                       "lower hid, depth or children")
    if work > MAX_WORK:
        raise gr.Error(f"epochs x steps per epoch x batch size x weights = {work:.2g} exceeds "
                       f"the limit {MAX_WORK:.0e} (minutes of CPU): lower epochs, steps per "
                       "epoch, batch size or hid")
    return checked(cfg.apply_preset)


def hltm_figures(cfg, tree, records):
    """The three pictures of the HLTM tab for the records so far."""
    last, depths = records[-1], range(1, cfg.depth + 1)
    fig_tree = plots.tree_figure(cfg.num_children, cfg.depth, tree.by_level(last["corr"]),
                                 tree.polarity_by_level,
                                 title=f"epoch {last['epoch']}: latents coloured by best |corr| "
                                       "(edges: polarity, blue +, red -)")
    ceiling = records[0]["ceiling_by_depth"]
    fig_corr = plots.corr_depth_figure(
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
    """Train the tree network on an HLTM, streaming (tree, corr-per-depth, loss, status, JSON)
    after every epoch. The final JSON holds ``corr_by_depth`` (see ``hltm_result``)."""
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
            request, lambda emit, stop: E.hltm_experiment(cfg, emit, stop),
            lambda r: hltm_figures(cfg, tree, r), status):
        yield (*figs, line, hltm_result(cfg, records, "running" if kind == "update" else kind,
                                        time.perf_counter() - t0))


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
        gr.Markdown(
            "Binary latents in a tree; the network sees only the leaves and is trained to "
            "pull two views sharing the root together and push independent samples apart. "
            "Each latent is coloured by the best |correlation| between it and the "
            "pre-activations of *its* units. Dashed: the untrained network; dotted: the "
            "ceiling (exact posterior mean, the best any function of the leaves can do).")
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
        inputs = [c[k] for k in HLTM_ORDER]
        run = train_btn.click(train_hltm, inputs, [tree_plot, corr_plot, loss_plot, status,
                                                   result],
                              api_name="train_hltm", concurrency_limit=1,
                              concurrency_id="training", show_progress="full",
                              show_progress_on=[status])
        stop_btn.click(stop_training, None, status, cancels=[run], queue=False,
                       api_visibility="undocumented")
        example.change(apply_example, example, inputs + [note], queue=False,
                       api_visibility="undocumented")


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
    return checked(cfg.validate)


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
            request, lambda emit, stop: E.covariance_experiment(cfg, emit, stop),
            lambda r: covariance_figures(cfg, r), status):
        yield (*figs, line)


COV_TEXT = r"""
For a bias-free ReLU network, layer $l$'s output is linear in its weights:
$f_L(x) = K_l(x)^\top \mathrm{vec}(W_l)$. With $\bar K_l(x)$ its average over augmented views,
the paper shows that gradient descent on the contrastive loss moves each layer by the
**covariance operator**: $\mathrm{vec}(\Delta W_l) = \mathrm{OP}_l\,\mathrm{vec}(W_l)$,
$\mathrm{OP}_l = \mathbb{V}^\xi[\bar K_l(x)]$ (pair weights $\xi$ from the loss; $2\mathbb{V}$
for the simple loss, exact for a large batch). The weights grow along OP's top
eigenvectors. Top left: OP's top spectrum now (dots) and at initialisation (crosses). Top
right: the cosine between the actual gradient step and $\mathrm{OP}_l\,\mathrm{vec}(W_l)$ per
layer (1 = the theory holds exactly on this batch). Bottom: the top eigenvector reshaped as
$W_l$ (rows: units of layer $l$, columns: its inputs; the tree mask shows as blocks).
"""


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
        run = go.click(train_covariance, [c[k] for k in COV_ORDER], [spec, cos, vec, status],
                       api_name="train_covariance", concurrency_limit=1,
                       concurrency_id="training", show_progress="full",
                       show_progress_on=[status])
        stop_btn.click(stop_training, None, status, cancels=[run], queue=False,
                       api_visibility="undocumented")


# ----------------------------------------------------------------------------- Losses tab
LOSSES_TEXT = r"""
**Conventions.** Distances are *half* squared distances of embeddings:
$r_+ = \tfrac12\|f(x)-f(x_+)\|^2$ to the positive, $r_k = \tfrac12\|f(x)-f(x_k^-)\|^2$ to
negative $k$. Per anchor:
simple $L = r_+ - r_1$;
soft triplet $L = \tau\log(1+e^{(r_+ - r_1 + r_0)/\tau})$;
InfoNCE $L = -\tau\log\frac{e^{-r_+/\tau}}{e^{-r_+/\tau}+\sum_k e^{-r_k/\tau}}$.
**Signs.** Every loss increases with $r_+$ and decreases with each $r_k$:
the **pair weight** $\xi_k = -\partial L/\partial r_k \ge 0$ and
$\partial L/\partial r_+ = \sum_k \xi_k$ (dotted). The same $\xi$ weights the pairs in the
covariance operator $\mathrm{OP}^\xi_l$, so a loss matters to the dynamics only through $\xi$:
the simple loss weights every pair equally ($\xi \equiv 1$); soft triplet and InfoNCE give
little weight to negatives that are already far away, and τ sets how far is far.
With one negative and $r_0 = 0$, InfoNCE *is* the soft triplet loss (dashed over solid).
"""
LOSS_FIELDS = {"r_pos": ("r+", float, 0.0, 50.0, 1.0, ""), "r_neg": ("r-", float, 0.0, 50.0, 1.0, ""),
               "tau": ("τ", float, 0.0, 100.0, 1.0, ""),
               "margin": ("margin r0", float, -50.0, 50.0, 0.0, ""),
               "H": ("negatives H", int, 1, 64, 1, "")}


def loss_curves_plot(vary="r_pos", r_pos=1.0, r_neg=1.0, tau=1.0, margin=0.0, H=1,
                     losses=THREE_LOSSES):
    """The two-panel loss / pair-weight figure for the controls (``losses.loss_curves``)."""
    v = settings(LOSS_FIELDS, dict(r_pos=r_pos, r_neg=r_neg, tau=tau, margin=margin, H=H))
    vary = checked(check_choice, "vary", vary, LOSS_VARIABLES)
    losses = [checked(check_choice, "losses", name, tuple(minissl.LOSSES))
              for name in (losses or [])]
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
                H = gr.Slider(1, 16, 1, step=1, label="InfoNCE negatives H")
                which = gr.CheckboxGroup(list(minissl.LOSSES), value=list(THREE_LOSSES),
                                         label="losses")
            with gr.Column(scale=3):
                fig = gr.Plot(loss_curves_plot(), show_label=False,
                              label="losses and pair weights", elem_id="losses-plot",
                              format="png")
        controls = [vary, r_pos, r_neg, tau, margin, H, which]
        gr.on([ctl.change for ctl in controls], loss_curves_plot, controls, fig,
              trigger_mode="always_last", show_progress="hidden", api_name="loss_curves")


# ----------------------------------------------------------------------------- BYOL tab
def run_byol_ablation(data="toy", predictors=("none", "linear"),
                      bn_means=("normal", "detach", "omit"), emas=("0", "0.99"), steps=300,
                      weight_decay=0.02, seed=0):
    """The BYOL ablation (``experiments.byol_ablation``): a Markdown table and two figures."""
    data = checked(check_choice, "data", data, E.DATASETS)
    steps = checked(check_int, "steps", steps, 50, 1000)
    wd = checked(check_real, "weight decay", weight_decay, 0.0, 0.1)
    seed = checked(check_int, "seed", seed, 0, 2**31 - 1)
    rows, spectra, cfg = checked(E.byol_ablation, data, list(predictors), list(bn_means),
                                 [checked(check_real, "emas", float(e), 0, 0.99) for e in emas],
                                 steps, None, wd, seed)
    md = "\n".join([f"BYOL on **{data}**: lr {cfg.lr:g}, weight decay {wd:g}, {steps} steps, "
                    f"batch 64, BN var normal, L2-normalised loss, seed {seed}.", ""]
                   + E.ablation_table(rows))
    return md, show(plots.byol_ablation_figure(rows)), show(plots.byol_spectrum_figure(spectra))


def run_linear_byol(eta=0.01, alpha_p=1.0, T=20.0):
    """Linear BYOL: the ODE against BYOL's SGD (``experiments.linear_regime``)."""
    r = checked(E.linear_regime, checked(check_real, "η", eta, 0, 0.5),
                checked(check_real, "α_p", alpha_p, 0.1, 10), checked(check_real, "T", T, 5, 60))
    md = (f"||W(0)|| = {r['norm0']:.3f} → ||W({T:g})|| = {r['normT']:.3e} ({r['verdict']}); "
          f"α_p = {alpha_p:g}, η = {eta:g}, β = 1.")
    return md, show(plots.linear_byol_figure(r["t"], r["Ws"], r["t_sgd"], r["Ws_sgd"],
                                             title=f"α_p={alpha_p:g}, η={eta:g}"))


def byol_tab():
    """Tab "Why BYOL does not collapse": predictor x BN mean x EMA ablation (toy or HLTM,
    collapse diagnostics, latent recovery on HLTM) and the exact linear dynamics."""
    with gr.Tab("Why BYOL does not collapse", id="byol"):
        gr.Markdown("BYOL has no negative pairs. Train it with and without a predictor, with "
                    "BatchNorm's mean part normal / detached / omitted, with and without an EMA "
                    "target, and watch the embeddings collapse (effective rank → 1, std → 0) or "
                    "not. See docs/byol.md.")
        with gr.Row():
            data = gr.Radio(list(E.DATASETS), value="toy", label="data")
            preds = gr.CheckboxGroup(list(PREDICTORS), value=["none", "linear"],
                                     label="predictor")
            means = gr.CheckboxGroup(list(BN_MODES), value=list(BN_MODES), label="BN mean part")
            emas = gr.CheckboxGroup(["0", "0.99"], value=["0", "0.99"],
                                    label="target EMA (0 = SimSiam)")
        with gr.Row():
            steps = gr.Slider(50, 1000, value=300, step=50, label="steps")
            wd = gr.Slider(0.0, 0.1, value=0.02, step=0.005, label="weight decay")
            seed = gr.Number(0, precision=0, label="seed")
            run = gr.Button("Run ablation", variant="primary")
        table = gr.Markdown()
        with gr.Row():
            fig_ab = gr.Plot(label="collapse diagnostics", format="png")
            fig_sp = gr.Plot(label="embedding spectrum", format="png")
        run.click(run_byol_ablation, [data, preds, means, emas, steps, wd, seed],
                  [table, fig_ab, fig_sp], concurrency_limit=1, concurrency_id="training",
                  api_name="byol_ablation")
        gr.Markdown("### Linear BYOL: gradient-flow ODE (lines) vs BYOL's SGD (dots)")
        with gr.Row():
            eta = gr.Slider(0.0, 0.5, value=0.01, step=0.01, label="weight decay η")
            alpha = gr.Slider(0.1, 10.0, value=1.0, step=0.1, label="predictor rate α_p")
            T = gr.Slider(5, 60, value=20, step=5, label="time T")
            run_lin = gr.Button("Integrate")
        lin_md = gr.Markdown()
        lin_fig = gr.Plot(format="png")
        run_lin.click(run_linear_byol, [eta, alpha, T], [lin_md, lin_fig],
                      concurrency_limit=1, concurrency_id="training", api_name="linear_byol")


# ----------------------------------------------------------------------------- Decoupling tab
DECOUPLING_TEXT = r"""
Data $x = Mz + \xi$: sparse features $z \in \{-1, 0, 1\}^d$ along delocalised directions
$M$ (to learn) plus dense features $\xi$ spread over $r$ other directions (to avoid). A
one-layer network (unit-norm weights, symmetric thresholded ReLU with a learned threshold,
or ReLU) is trained with InfoNCE. **Feature decoupling** (Wen & Li 2021): the neurons learn
the sparse features when the augmentation keeps the two views' sparse parts correlated
($\rho_{sparse}$) but decorrelates their dense parts ($\rho_{dense}$); both are closed forms,
shown in the status line. Complementary masks do this when the dense part has high rank;
with low rank (try 6) or without augmentation the neurons sit in the dense directions.
Left: each neuron's best alignment with a sparse feature against its share in the dense
subspace; middle: how well each sparse feature is covered; right: the means over training.
Settings: d = 16 features, d1 = 64 inputs, k = 2 active, batch 128, Adam 3e-3, τ 0.2.
"""
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
    return checked(cfg.validate)


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
            request, lambda emit, stop: E.decoupling_experiment(cfg, emit, stop),
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
        run = go.click(train_decoupling, [c[k] for k in DECOUPLING_ORDER],
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


def main(argv=None):
    p = argparse.ArgumentParser(description="minissl demo: a Gradio app (see docs/demo.md)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int,
                   default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                   help="port (default $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--share", action="store_true",
                   help="also create a public gradio.live link (off by default)")
    args = p.parse_args(argv)
    if not 1 <= args.port <= 65535:
        p.error(f"--port must be in [1, 65535], got {args.port}")
    launch(build_demo(), server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
