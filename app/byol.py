"""Tab "Why BYOL does not collapse": the predictor x BN mean x EMA ablation and the exact
linear dynamics; endpoints ``/byol_ablation``, ``/linear_byol``."""

import gradio as gr

from minissl import experiments as E
from minissl.figures import plots
from minissl.backend import check_choice, check_real
from minissl.byol import PREDICTORS, BYOLConfig
from minissl.layers import BN_MODES

from app.text import BYOL_TEXT
from app.widgets import (LIMITS, checked, course_link, fields_of, settings, show)
from app.runs import (key_of, streamed, training_event)


# ----------------------------------------------------------------------------- BYOL tab
EMA_CHOICES = ("0", "0.99")
BYOL_FIELDS = fields_of(BYOLConfig(), dict(steps=(50, 1000), weight_decay=(0.0, 0.1),
                                           seed=(0, 2**31 - 1)))


def byol_status(records, secs):
    last = records[-1]
    return f"run {last['run']}/{last['runs']} · {secs:.1f} s"


def byol_render(cfg, data):
    """``render(rows)`` of the ablation of ``cfg`` on ``data``: the Markdown table and its two
    figures."""
    def render(rows):
        spectra = {f"{r['predictor']}/{r['bn_mean']}/ema {r['ema']:g}": r["spectrum"]
                   for r in rows[:: max(1, len(rows) // 4)] if not r["diverged"]}
        md = "\n".join([f"BYOL on **{data}**: lr {cfg.lr:g}, weight decay "
                        f"{cfg.weight_decay:g}, {cfg.steps} steps, batch {cfg.batch_size}, BN "
                        f"var {cfg.bn_var}, {'L2-normalised' if cfg.normalize else 'raw'} "
                        f"loss, seed {cfg.seed}.", ""] + E.ablation_table(rows))
        return (md, show(plots.byol_ablation_figure(rows)),
                show(plots.byol_spectrum_figure(spectra)))
    return render


def run_byol_ablation(data="toy", predictors=("none", "linear"),
                      bn_means=("normal", "detach", "omit"), emas=EMA_CHOICES,
                      steps=BYOL_FIELDS["steps"].default,
                      weight_decay=BYOL_FIELDS["weight_decay"].default,
                      seed=BYOL_FIELDS["seed"].default, request: gr.Request = None):
    """The BYOL ablation (``experiments.byol_ablation``), streamed after every run: status,
    Markdown table, two figures. Every list is de-duplicated and checked against its choices
    (at most 3 x 3 x 2 runs), the estimated cost against the app's limits."""
    data = checked(check_choice, "data", data, E.DATASETS)
    v = settings(BYOL_FIELDS, dict(steps=steps, weight_decay=weight_decay, seed=seed))
    steps, wd, seed = v["steps"], v["weight_decay"], v["seed"]
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

    cfg = checked(E.ablation_config, data, steps, None, wd, seed)
    key = key_of("byol_ablation", data, lists, emas, cfg)
    for *figs, line, _, _ in streamed(request, run, byol_render(cfg, data), byol_status,
                                      key=key):
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

    for fig, line, _, _ in streamed(request, run, render, status,
                                    key=key_of("linear_byol", eta, alpha_p, T)):
        yield line, fig


def byol_tab():
    """Tab "Why BYOL does not collapse": predictor x BN mean x EMA ablation (toy or HLTM,
    collapse diagnostics, latent recovery on HLTM) and the exact linear dynamics."""
    with gr.Tab("Why BYOL does not collapse", id="byol"):
        gr.Markdown(BYOL_TEXT)
        gr.Markdown(course_link(4))
        with gr.Row():
            data = gr.Radio(list(E.DATASETS), value="toy", label="data")
            preds = gr.CheckboxGroup(list(PREDICTORS), value=["none", "linear"],
                                     label="predictor")
            means = gr.CheckboxGroup(list(BN_MODES), value=list(BN_MODES), label="BN mean part")
            emas = gr.CheckboxGroup(list(EMA_CHOICES), value=list(EMA_CHOICES),
                                    label="target EMA (0 = SimSiam)")
        with gr.Row():
            steps, wd, seed = (BYOL_FIELDS[k] for k in ("steps", "weight_decay", "seed"))
            steps = gr.Slider(steps.lo, steps.hi, value=steps.default, step=50,
                              label=steps.label, info=steps.hint)
            wd = gr.Slider(wd.lo, wd.hi, value=wd.default, step=0.005, label=wd.label,
                           info=wd.hint)
            seed = gr.Number(seed.default, precision=0, label=seed.label)
            run = gr.Button("Run ablation", variant="primary", elem_id="byol-run")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="byol-stop")
        status = gr.Textbox(label="status", interactive=False, elem_classes=["status-line"])
        table = gr.Markdown()
        with gr.Row():
            fig_ab = gr.Plot(label="collapse diagnostics", format="png")
            fig_sp = gr.Plot(label="embedding spectrum", format="png")
        training_event(run, run_byol_ablation, [data, preds, means, emas, steps, wd, seed],
                       [status, table, fig_ab, fig_sp], "byol_ablation", stop_btn, status)
        gr.Markdown("### Linear BYOL: gradient-flow ODE (lines) vs BYOL's SGD (dots)")
        with gr.Row():
            eta = gr.Slider(0.0, 0.5, value=0.01, step=0.01, label="weight decay η")
            alpha = gr.Slider(0.1, 10.0, value=1.0, step=0.1, label="predictor rate α_p")
            T = gr.Slider(5, 60, value=20, step=5, label="duration T")
            run_lin = gr.Button("Integrate", elem_id="linear-run")
            stop_lin = gr.Button("Stop", variant="stop", elem_id="linear-stop")
        lin_md = gr.Markdown()
        lin_fig = gr.Plot(format="png")
        training_event(run_lin, run_linear_byol, [eta, alpha, T], [lin_md, lin_fig],
                       "linear_byol", stop_lin, lin_md)
