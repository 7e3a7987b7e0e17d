"""Tab "Feature decoupling": train on sparse and dense features under an augmentation and
watch what the neurons learn; endpoint ``/train_decoupling``."""

import gradio as gr

from minissl import experiments as E
from minissl.figures import plots
from minissl.backend import check_choice
from minissl.decoupling import AUGMENTATIONS
from minissl.experiments.decoupling import NEURONS

from app.text import DECOUPLING_TEXT
from app.widgets import (LATEX, LIMITS, checked, choice, course_link, number_box, settings, show)
from app.runs import (streamed, training_event)


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
        gr.Markdown(course_link(5))
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
        training_event(go, train_decoupling, [c[k] for k in DECOUPLING_ORDER],
                       [neurons, curves, status], "train_decoupling", stop_btn, status)
