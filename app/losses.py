"""Tab "Losses": the losses and their pair weights against r+, r- or τ."""

import gradio as gr

import minissl
from minissl import experiments as E
from minissl.figures import plots
from minissl.backend import check_choice
from minissl.experiments.losses import LOSS_VARIABLES, THREE_LOSSES

from app.text import LOSSES_TEXT
from app.widgets import (LATEX, Field, checked, course_link, figure, settings, show)


# ----------------------------------------------------------------------------- Losses tab
LOSS_FIELDS = {"r_pos": Field("r+", float, 0.0, 50.0, 1.0, ""),
               "r_neg": Field("r-", float, 0.0, 50.0, 1.0, ""),
               "tau": Field("τ", float, 0.0, 100.0, 1.0, "", lo_open=True),
               "margin": Field("margin r0", float, -50.0, 50.0, 0.0, ""),
               "negatives": Field("negatives H", int, 1, 64, 1, "")}


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
    t, curves = E.loss_curves(vary, **v, losses=tuple(losses))
    return show(plots.losses_figure(t, curves, vary, **v))


def losses_tab():
    """Tab "Losses": the losses and their pair weights against r+, r- or τ."""
    with gr.Tab("Losses", id="losses"):
        gr.Markdown(LOSSES_TEXT, latex_delimiters=LATEX)
        gr.Markdown(course_link(1))
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
                fig = figure("losses and pair weights", "losses-plot", loss_curves_plot())
        controls = [vary, r_pos, r_neg, tau, margin, negatives, which]
        gr.on([ctl.change for ctl in controls], loss_curves_plot, controls, fig,
              trigger_mode="always_last", show_progress="hidden", api_name="loss_curves")
