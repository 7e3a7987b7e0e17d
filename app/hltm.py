"""Tab "Latent recovery (HLTM)": settings, Train/Stop, streamed pictures, the per-unit
view (luck) and the probe against its Bayes ceiling; endpoint ``/train_hltm``."""
from dataclasses import dataclass

import gradio as gr

import minissl
from minissl import experiments as E
from minissl.figures import plots
from minissl.backend import check_choice, check_int, numba_available
from minissl.train import UPDATES

from app.text import (HLTM_TEXT, LUCK_TEXT)
from app.widgets import (LATEX, LIMITS, Field, checked, choice_of, course_link, figure, fields_of,
                         number_box, settings, show, status_line, train_stop)
from app.runs import (key_of, streamed, training_event)

EVAL_SAMPLES = 4000          # fixed evaluation set of the streamed correlations
PROBE_SAMPLES = 1000         # probe training and test sets (the root, untrained and trained)

# ----------------------------------------------------------------------------- HLTM tab
BACKEND = "numba" if numba_available() else "numpy"      # the app's default backend
HLTM_CONFIG = E.HLTMConfig(backend=BACKEND).apply_preset()   # the defaults (theory preset)
HLTM_FIELDS = fields_of(                           # the app's bounds on HLTMConfig's settings
    HLTM_CONFIG, dict(depth=(2, 7), num_children=(2, 3), polarity=(0.0, 1.0), hid=(1, 50),
                      tau=(0.0, 100.0), lr=(0.0, 10.0), batch_size=(2, 1024), epochs=(1, 200),
                      seed=(0, 2**31 - 1)),
    steps_per_epoch=Field("steps per epoch", int, 1, 5000, 150,
                          "SGD steps between pictures, 1-5000"))
HLTM_ORDER = ("preset", "depth", "num_children", "polarity_lo", "polarity_hi", "hid", "loss",
              "tau", "lr", "batch_size", "epochs", "steps_per_epoch", "seed", "update",
              "backend")
HLTM_DEFAULTS = {k: v.default for k, v in HLTM_FIELDS.items()}
HLTM_DEFAULTS.update({k: getattr(HLTM_CONFIG, k) for k in ("preset", "loss", "update",
                                                            "backend")})
_D = HLTM_DEFAULTS


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


SAMPLER = {"numba": "compiled", "numpy": "numpy", "cupy": "numpy"}   # batches, by backend


def hltm_config(values: dict) -> E.HLTMConfig:
    """The ``experiments.HLTMConfig`` the tab's settings describe (preset filled, validated,
    within the app's caps); ``gr.Error`` naming the field and the bound otherwise. Backend
    numba draws the batches with the compiled sampler (``SAMPLER``: whole epochs in one
    compiled call; the same law as NumPy's sampler, other random numbers)."""
    v = settings(HLTM_FIELDS, values)
    backend = checked(check_choice, "backend", values.get("backend"), minissl.BACKENDS)
    cfg = E.HLTMConfig(
        preset=checked(check_choice, "preset", values.get("preset"), E.PRESETS),
        depth=v["depth"], num_children=v["num_children"],
        polarity=(v["polarity_lo"], v["polarity_hi"]), hid=v["hid"],
        loss=checked(check_choice, "loss", values.get("loss"), tuple(minissl.LOSSES)),
        tau=v["tau"], lr=v["lr"], batch_size=v["batch_size"], epochs=v["epochs"],
        samples_per_epoch=v["steps_per_epoch"] * v["batch_size"], seed=v["seed"],
        update=checked(check_choice, "update rule", values.get("update"), UPDATES),
        backend=backend, sampler=SAMPLER[backend],
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
                "batch_size", "epochs", "steps_per_epoch", "seed", "update", "backend",
                "sampler")}}


def train_hltm(preset=_D["preset"], depth=_D["depth"], num_children=_D["num_children"],
               polarity_lo=_D["polarity_lo"], polarity_hi=_D["polarity_hi"], hid=_D["hid"],
               loss=_D["loss"], tau=_D["tau"], lr=_D["lr"], batch_size=_D["batch_size"],
               epochs=_D["epochs"], steps_per_epoch=_D["steps_per_epoch"], seed=_D["seed"],
               update=_D["update"], backend=_D["backend"], request: gr.Request = None,
               progress=gr.Progress()):
    """Train the tree network on an HLTM, streaming (tree, corr-per-depth, loss, status, JSON,
    run) after every epoch. The final JSON holds ``corr_by_depth`` (see ``hltm_result``); the
    run ``{"cfg", "records"}`` goes to a ``gr.State`` (not part of the API's outputs) for the
    per-unit and probe views (``luck_figures``)."""
    cfg = hltm_config(dict(zip(HLTM_ORDER, (
        preset, depth, num_children, polarity_lo, polarity_hi, hid, loss, tau, lr, batch_size,
        epochs, steps_per_epoch, seed, update, backend))))
    tree, total = cfg.tree, cfg.epochs * cfg.steps_per_epoch
    progress(0, desc="starting", total=total, unit="steps")

    def status(records, secs):
        last, first, ceil = records[-1], records[0], records[0]["ceiling_by_depth"]
        progress(min(last["step"], total) / total, desc=f"epoch {last['epoch']}/{cfg.epochs}")
        return (f"step {last['step']}/{total} · epoch {last['epoch']}/{cfg.epochs} · "
                f"{last['step'] / secs if secs > 0 else 0:,.0f} steps/s · loss "
                f"{last['loss']:.4g} · root corr {last['corr_by_depth'][cfg.depth]:.3f} "
                f"(untrained {first['corr_by_depth'][cfg.depth]:.3f}, ceiling "
                f"{ceil[cfg.depth]:.3f}) · {secs:.1f} s")

    for *figs, line, records, kind in streamed(
            request, lambda emit, stop: E.hltm_experiment(cfg, emit, stop, LIMITS),
            lambda r: hltm_figures(cfg, tree, r), status, key=key_of("hltm", cfg)):
        yield (*figs, line, hltm_result(cfg, records, "running" if kind == "update" else kind,
                                        records[-1]["seconds"]), {"cfg": cfg, "records": records})


def warm_up():
    """A short run of the default setting (1 epoch of 2 steps; the same compiled kernels:
    backend numba's epoch, correlation and sampler; probes) and its pictures, so that the
    kernels are compiled or loaded from the cache, and matplotlib's fonts loaded, before the
    first user (``serving.warm_up`` at startup)."""
    cfg = hltm_config({**HLTM_DEFAULTS, "epochs": 1, "steps_per_epoch": 2})
    records, _ = E.hltm_experiment(cfg, limits=LIMITS)
    hltm_figures(cfg, cfg.tree, records)
    luck_figures({"cfg": cfg, "records": records}, 0)
    return cfg


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
        gr.Markdown(course_link(3))
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                example = gr.Dropdown([e.name for e in EXAMPLES], value=EXAMPLES[0].name,
                                      label="examples", info="sets all the controls below")
                note = gr.Markdown(f"*{EXAMPLES[0].note}*")
                c = {"preset": choice_of(HLTM_CONFIG, "preset")}
                num = number_box(c, HLTM_FIELDS, "hltm")
                with gr.Row():
                    num("depth"), num("num_children")
                with gr.Row():
                    num("polarity_lo"), num("polarity_hi")
                with gr.Row():
                    num("hid")
                    c["loss"] = choice_of(HLTM_CONFIG, "loss", minissl.LOSSES,
                                          "see the Losses tab")
                with gr.Row():
                    num("tau"), num("lr")
                with gr.Row():
                    num("batch_size"), num("seed")
                with gr.Row():
                    num("epochs"), num("steps_per_epoch")
                with gr.Row():
                    c["update"] = choice_of(HLTM_CONFIG, "update")
                    c["backend"] = choice_of(HLTM_CONFIG, "backend")
                train_btn, stop_btn = train_stop("hltm")
            with gr.Column(scale=2):
                status = status_line("hltm")
                tree_plot = figure("latent tree", "hltm-tree")
                with gr.Row():
                    corr_plot = figure("correlation per depth", "hltm-corr")
                    loss_plot = figure("loss", "hltm-loss")
                with gr.Accordion("result (JSON, as returned by the /train_hltm endpoint)",
                                  open=False):
                    result = gr.JSON(label="result")
        run_state = gr.State()
        latent, luck_plots = luck_section()
        inputs = [c[k] for k in HLTM_ORDER]
        run = training_event(train_btn, train_hltm, inputs, [tree_plot, corr_plot, loss_plot,
                                                             status, result, run_state],
                             "train_hltm", stop_btn, status, stop_api="stop")
        for event in (run.then, latent.change):
            event(luck_figures, [run_state, latent], luck_plots, api_visibility="undocumented")
        example.change(apply_example, example, inputs + [note], queue=False,
                       api_visibility="undocumented")


def luck_figures(run=None, latent=0):
    """The per-unit view (``experiments.unit_view``) and the probe figure
    (``experiments.probe_view``; the root's, unless that latent was probed) of the last run
    ``{"cfg", "records"}`` for the BFS ``latent``; (None, None) before a run."""
    if not run or not run.get("records"):
        return None, None
    tree, records = run["cfg"].tree, run["records"]
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
    units = figure("per-unit selectivity", "hltm-units")
    probe = figure("probes", "hltm-probe")
    return latent, [units, probe]
