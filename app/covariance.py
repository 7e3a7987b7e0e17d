"""Tab "Covariance operator": OP's spectrum, gradient-vs-OP cosine, top eigenvector, and the
top-layer acceleration section; endpoints ``/train_covariance``, ``/acceleration``."""

import gradio as gr

from minissl import experiments as E
from minissl.figures import plots
from minissl.backend import check_choice
from minissl.covariance import PAIR_WEIGHT_LOSSES
from minissl.train import UPDATES

from app.text import (ACCEL_TEXT, COV_TEXT)
from app.widgets import (LATEX, LIMITS, checked, choice_of, course_link, figure, fields_of,
                         number_box, settings, show, status_line, train_stop)
from app.runs import (key_of, streamed, training_event)


# ----------------------------------------------------------------------------- Covariance tab
COV_CONFIG = E.CovarianceConfig()                 # the defaults
COV_FIELDS = fields_of(COV_CONFIG, dict(          # the app's bounds on its settings
    depth=(2, 5), num_children=(2, 3), polarity=(0.0, 1.0), hid=(1, 20), tau=(0.0, 100.0),
    lr=(0.0, 10.0), batch_size=(2, 512), steps=(1, 5000), snapshots=(1, 50), layer=(0, 4),
    k=(1, 16), n_samples=(8, 512), n_views=(1, 8), seed=(0, 2**31 - 1)))
COV_ORDER = ("depth", "num_children", "polarity_lo", "polarity_hi", "hid", "loss", "tau", "lr",
             "batch_size", "steps", "snapshots", "layer", "k", "n_samples", "n_views", "update",
             "seed")
_C = {k: v.default for k, v in COV_FIELDS.items()} | {
    k: getattr(COV_CONFIG.run, k) for k in ("loss", "update")}


def covariance_config(values: dict) -> E.CovarianceConfig:
    """The ``experiments.CovarianceConfig`` of the tab's settings (``gr.Error`` otherwise)."""
    v = settings(COV_FIELDS, values)
    if v["layer"] > v["depth"] - 1:
        raise gr.Error(f"layer (0 = bottom) must be an integer in [0, depth − 1 = "
                       f"{v['depth'] - 1}], got {v['layer']}")
    cfg = E.with_settings(
        COV_CONFIG, **{k: v[k] for k in v if k not in ("polarity_lo", "polarity_hi")},
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
    cos = {str(l): [r["cos"][l] for r in records] for l in range(cfg.run.depth)}   # 0 = bottom
    fig_cos = plots.cosine_figure([r["step"] for r in records], cos)
    fig_vec = plots.eigvec_figure(last["eigvec"], last["shape"], eigval=last["eigvals"][0],
                                  layer=cfg.layer)
    return show(fig_spec), show(fig_cos), show(fig_vec)


def train_covariance(depth=_C["depth"], num_children=_C["num_children"],
                     polarity_lo=_C["polarity_lo"], polarity_hi=_C["polarity_hi"],
                     hid=_C["hid"], loss=_C["loss"], tau=_C["tau"], lr=_C["lr"],
                     batch_size=_C["batch_size"], steps=_C["steps"], snapshots=_C["snapshots"],
                     layer=_C["layer"], k=_C["k"], n_samples=_C["n_samples"],
                     n_views=_C["n_views"], update=_C["update"], seed=_C["seed"],
                     request: gr.Request = None, progress=gr.Progress()):
    """Train the HLTM tree network and stream ``experiments.covariance_experiment``: the top-k
    spectrum of ``OP_l``, the per-layer cosine between the gradient step and the
    covariance-operator step, and the top eigenvector of ``OP_l`` reshaped as ``W_l``."""
    cfg = covariance_config(dict(zip(COV_ORDER, (
        depth, num_children, polarity_lo, polarity_hi, hid, loss, tau, lr, batch_size, steps,
        snapshots, layer, k, n_samples, n_views, update, seed))))
    steps = cfg.run.steps
    progress(0, desc="starting", total=steps, unit="steps")

    def status(records, secs):
        last = records[-1]
        progress(last["step"] / steps, desc=f"step {last['step']}")
        return (f"step {last['step']}/{steps} · λ_max(OP of layer {cfg.layer}) = "
                f"{last['eigvals'][0]:.4g} · cos per layer "
                f"[{', '.join(f'{c:.2f}' for c in last['cos'])}] · loss on the fixed batch "
                f"{last['loss']:.4g} · {secs:.1f} s")

    for *figs, line, _, _ in streamed(
            request, lambda emit, stop: E.covariance_experiment(cfg, emit, stop, LIMITS),
            lambda r: covariance_figures(cfg, r), status, key=key_of("covariance", cfg)):
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
                    c["loss"] = choice_of(COV_CONFIG, "loss", PAIR_WEIGHT_LOSSES,
                                          "sets the pair weights ξ")
                for pair in (("tau", "lr"), ("batch_size", "steps"), ("layer", "k"),
                             ("n_samples", "n_views"), ("snapshots", "seed")):
                    with gr.Row():
                        num(pair[0]), num(pair[1])
                c["update"] = choice_of(COV_CONFIG, "update")
                go, stop_btn = train_stop("cov")
            with gr.Column(scale=2):
                status = status_line("cov")
                with gr.Row():
                    spec = figure("spectrum of OP", "cov-spectrum")
                    cos = figure("cosine", "cov-cosine")
                vec = figure("top eigenvector", "cov-eigvec")
        training_event(go, train_covariance, [c[k] for k in COV_ORDER], [spec, cos, vec, status],
                       "train_covariance", stop_btn, status)
        acceleration_section()


ACC_CONFIG = E.AccelerationConfig()               # the defaults
ACC_FIELDS = fields_of(ACC_CONFIG, dict(lr=(0.0, 1.0), steps=(10, 1000), top_scale=(1.0, 5.0),
                                        seed=(0, 2**31 - 1)))
_A = {k: v.default for k, v in ACC_FIELDS.items()}


def run_acceleration(loss=ACC_CONFIG.run.loss, update=ACC_CONFIG.run.update, lr=_A["lr"],
                     steps=_A["steps"], top_scale=_A["top_scale"], seed=_A["seed"],
                     request: gr.Request = None):
    """The top-layer-acceleration figure (``experiments.acceleration_experiment`` on a depth-2
    tree, top layer frozen / trained / scaled, and ``linear_acceleration``) and a summary,
    streamed from the bounded worker (Stop and cancel end it); the cost is checked first."""
    v = settings(ACC_FIELDS, dict(lr=lr, steps=steps, top_scale=top_scale, seed=seed))
    cfg = E.with_settings(
        ACC_CONFIG, loss=checked(check_choice, "loss", loss, PAIR_WEIGHT_LOSSES),
        update=checked(check_choice, "update rule", update, UPDATES), **v,
        snapshots=min(ACC_CONFIG.snapshots, v["steps"]))
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
            lambda records: (show(plots.acceleration_figure(records, linear)),), status,
            key=key_of("acceleration", cfg)):
        yield fig, line


def acceleration_section():
    """The Covariance tab's top-layer-acceleration section."""
    gr.Markdown(ACCEL_TEXT, latex_delimiters=LATEX)
    with gr.Row():
        loss = choice_of(ACC_CONFIG, "loss", PAIR_WEIGHT_LOSSES, "simple: ξ ≡ 1")
        update = choice_of(ACC_CONFIG, "update")
        c = {}
        num = number_box(c, ACC_FIELDS, "acc")
        for key in ACC_FIELDS:
            num(key)
        go = gr.Button("Run the three arms", elem_id="acc-run")
    summary = gr.Markdown()
    fig = figure("acceleration", "acc-plot")
    stop = gr.Button("Stop", variant="stop", elem_id="acc-stop")
    training_event(go, run_acceleration, [loss, update] + [c[k] for k in ACC_FIELDS],
                   [fig, summary], "acceleration", stop, summary)
