"""Tab "Covariance operator": OP's spectrum, gradient-vs-OP cosine, top eigenvector, and the
top-layer acceleration section; endpoints ``/train_covariance``, ``/acceleration``."""

import gradio as gr

from minissl import experiments as E
from minissl.figures import plots
from minissl.backend import check_choice
from minissl.covariance import PAIR_WEIGHT_LOSSES
from minissl.train import UPDATES

from app.text import (ACCEL_TEXT, COV_TEXT)
from app.widgets import (LATEX, LIMITS, checked, choice, course_link, number_box, settings, show)
from app.runs import (streamed, training_event)


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
    "layer": ("layer (0 = bottom)", int, 0, 4, 1,
              "index into net.weights: 0 = leaves -> depth-1 units, at most depth − 1; "
              "index l − 1 is the paper's W_l"),
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
    if v["layer"] > v["depth"] - 1:
        raise gr.Error(f"layer (0 = bottom) must be an integer in [0, depth − 1 = "
                       f"{v['depth'] - 1}], got {v['layer']}")
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
                                     title=f"top {cfg.k} eigenvalues of OP, layer {cfg.layer} "
                                           f"(W_{cfg.layer + 1}, step {last['step']})")
    cos = {str(l): [r["cos"][l] for r in records] for l in range(cfg.depth)}   # 0 = bottom
    fig_cos = plots.cosine_figure([r["step"] for r in records], cos)
    fig_vec = plots.eigvec_figure(last["eigvec"], last["shape"], eigval=last["eigvals"][0],
                                  layer=cfg.layer)
    return show(fig_spec), show(fig_cos), show(fig_vec)


def train_covariance(depth=4, num_children=2, polarity_lo=0.7, polarity_hi=1.0, hid=10,
                     loss="infonce", tau=0.1, lr=0.1, batch_size=128, steps=600, snapshots=12,
                     layer=1, k=8, n_samples=256, n_views=4, update="gradient", seed=1,
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
        return (f"step {last['step']}/{cfg.steps} · λ_max(OP of layer {cfg.layer}) = "
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
        gr.Markdown(course_link(2))
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
        training_event(go, train_covariance, [c[k] for k in COV_ORDER], [spec, cos, vec, status],
                       "train_covariance", stop_btn, status)
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
    stop = gr.Button("Stop", variant="stop", elem_id="acc-stop")
    training_event(go, run_acceleration, [loss, update] + [c[k] for k in ACC_FIELDS],
                   [fig, summary], "acceleration", stop, summary)
