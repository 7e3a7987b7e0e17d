"""Tab "Feature decoupling": train on sparse and dense features under an augmentation and
watch what the neurons learn; endpoint ``/train_decoupling``."""

from dataclasses import replace

import gradio as gr

from minissl import experiments as E
from minissl.figures import plots
from minissl.backend import check_choice
from minissl.decoupling import AUGMENTATIONS
from minissl.experiments.decoupling import NEURONS

from app.text import DECOUPLING_TEXT
from app.widgets import (LATEX, LIMITS, Field, checked, choice_of, course_link, figure, fields_of,
                         number_box, settings, show, status_line, train_stop)
from app.runs import (key_of, streamed, training_event)


# ----------------------------------------------------------------------------- Decoupling tab
DEC_CONFIG = E.DecouplingConfig(d=16, d1=64, k=2, dense_rank=40, width=32, batch_size=128,
                                steps=600)       # the app's small data model and its defaults
DECOUPLING_FIELDS = fields_of(
    DEC_CONFIG, dict(dense_rank=(0, 48), dense_energy=(0.0, 10.0), width=(1, 128),
                     steps=(10, 5000), seed=(0, 2**31 - 1)),
    strength=Field("strength", float, 0.0, 10.0, DEC_CONFIG.p,
                   "mask: keep probability p in (0, 1]; noise: scale s; else unused"))
DECOUPLING_ORDER = ("augmentation", "strength", "dense_rank", "dense_energy", "neuron", "width",
                    "steps", "seed")
_DD = {k: f.default for k, f in DECOUPLING_FIELDS.items()} | {
    k: getattr(DEC_CONFIG, k) for k in ("augmentation", "neuron")}


def decoupling_config(values: dict) -> E.DecouplingConfig:
    """The app's small ``DecouplingConfig`` (``gr.Error`` naming a bad field)."""
    v = settings(DECOUPLING_FIELDS, values)
    aug = checked(check_choice, "augmentation", values.get("augmentation"), AUGMENTATIONS)
    if aug == "mask" and not 0 < v["strength"] <= 1:
        raise gr.Error(f"strength (the mask's keep probability p) must be in (0, 1], got "
                       f"{v['strength']:g}")
    strength = {"mask": {"p": v["strength"]}, "noise": {"s": v["strength"]}}.get(aug, {})
    cfg = replace(DEC_CONFIG, augmentation=aug, **strength, dense_rank=v["dense_rank"],
                  dense_energy=v["dense_energy"], width=v["width"], steps=v["steps"],
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


def train_decoupling(augmentation=_DD["augmentation"], strength=_DD["strength"],
                     dense_rank=_DD["dense_rank"], dense_energy=_DD["dense_energy"],
                     neuron=_DD["neuron"], width=_DD["width"], steps=_DD["steps"],
                     seed=_DD["seed"], request: gr.Request = None, progress=gr.Progress()):
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
            decoupling_figures, status, key=key_of("decoupling", cfg)):
        yield (*figs, line)


def decoupling_tab():
    """Tab "Feature decoupling": augmentation, strength, dense rank, neuron; Train/Stop."""
    with gr.Tab("Feature decoupling", id="decoupling"):
        gr.Markdown(DECOUPLING_TEXT, latex_delimiters=LATEX)
        gr.Markdown(course_link(5))
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                c = {"augmentation": choice_of(DEC_CONFIG, "augmentation", AUGMENTATIONS)}
                num = number_box(c, DECOUPLING_FIELDS, "dec")
                num("strength")
                with gr.Row():
                    num("dense_rank"), num("dense_energy")
                c["neuron"] = choice_of(DEC_CONFIG, "neuron")
                with gr.Row():
                    num("width"), num("steps")
                num("seed")
                go, stop_btn = train_stop("dec")
            with gr.Column(scale=2):
                status = status_line("dec")
                neurons = figure("neurons", "dec-neurons")
                curves = figure("over training", "dec-curves")
        training_event(go, train_decoupling, [c[k] for k in DECOUPLING_ORDER],
                       [neurons, curves, status], "train_decoupling", stop_btn, status)
