"""Tab "Real data": a method on digits or MNIST-1D, the loss, the probe accuracy and the
first-layer weights as pictures, live; endpoint ``/train_realdata``."""

from dataclasses import replace

import gradio as gr

from minissl import experiments as E
from minissl.backend import check_choice
from minissl.figures import plots

from app.text import REALDATA_TEXT
from app.widgets import (LIMITS, Field, checked, choice, choice_of, course_link, figure, fields_of,
                         number_box, settings, show, status_line, train_stop)
from app.runs import (key_of, streamed, training_event)


# ----------------------------------------------------------------------------- Real data tab
APP_DATA = ("digits", "mnist1d")
APP_METHODS = ("simclr", "supcon", "covariance", "byol", "byol-nopred", "byol-linear",
               "directpred", "supervised", "random")
#: the app's run: 40 epochs of a 128 -> 128 -> 64 encoder, a record every epoch
APP_CONFIG = E.RealDataConfig(epochs=40, hidden=(128, 128), log_every=1)
NO_AUG = dict(shift=0, scale=0.0, noise=0.0, mask="none")
AUGMENTATIONS = {                     # RealDataConfig fields; "default": the data's own
    "default": {},
    "none": NO_AUG,
    "translation": {**NO_AUG, "shift": 1},
    "random masks": {**NO_AUG, "mask": "random", "keep": 0.5},
    "complementary masks": {**NO_AUG, "mask": "complementary"},
    "noise": {**NO_AUG, "noise": 0.3},
}
REALDATA_FIELDS = fields_of(
    APP_CONFIG, dict(epochs=(1, 200), seed=(0, 2**31 - 1)),
    width=Field("hidden width", int, 8, 256, APP_CONFIG.hidden[0],
                "two hidden layers of this width, 8-256"))
REALDATA_ORDER = ("data", "augmentation", "method", "epochs", "width", "seed")
SIZES = {"digits": (64, 1438, 359), "mnist1d": (40, 4000, 1000)}   # n_0, n_train, n_test


def realdata_config(values: dict) -> E.RealDataConfig:
    """The app's ``RealDataConfig`` (``gr.Error`` naming a bad field; cost within LIMITS)."""
    v = settings(REALDATA_FIELDS, values)
    data = checked(check_choice, "data", values.get("data"), APP_DATA)
    aug = checked(check_choice, "augmentation", values.get("augmentation"), tuple(AUGMENTATIONS))
    method = checked(check_choice, "method", values.get("method"), APP_METHODS)
    cfg = replace(APP_CONFIG, data=data, method=method, epochs=v["epochs"], seed=v["seed"],
                  hidden=(v["width"], v["width"]), out_dim=min(64, v["width"]),
                  probe_every=max(1, v["epochs"] // 5), **AUGMENTATIONS[aug])
    c = checked(cfg.validate)
    checked(c.cost(*SIZES[data]).check, LIMITS)
    return cfg


def realdata_figures(shape):
    def render(records):
        train = [r for r in records if "loss" in r]
        probed = [r for r in train if "linear_probe" in r]
        last = records[-1]
        curves = plots.realdata_curves_figure(
            [r["epoch"] for r in train], [r["loss"] for r in train],
            [r["epoch"] for r in probed], [r["linear_probe"] for r in probed])
        weights = (plots.first_layer_figure([last["weights"]], shape, n=16,
                                            title="first-layer weights (16 largest units)")
                   if "weights" in last else plots.realdata_curves_figure([], []))
        return show(curves), show(weights)
    return render


def train_realdata(data=APP_CONFIG.data, augmentation="default", method=APP_CONFIG.method,
                   epochs=APP_CONFIG.epochs, width=APP_CONFIG.hidden[0], seed=APP_CONFIG.seed,
                   request: gr.Request = None, progress=gr.Progress()):
    """Train a method on real data and stream ``experiments.realdata_run``: the loss and the
    probe over epochs, the first-layer weights, and a status line (the probes at the end)."""
    cfg = realdata_config(dict(zip(REALDATA_ORDER, (data, augmentation, method, epochs,
                                                    width, seed))))
    shape = (8, 8) if cfg.data == "digits" else (40,)
    progress(0, desc="starting", total=cfg.epochs, unit="epochs")

    def status(records, secs):
        last = records[-1]
        if "linear_probe_hidden" in last:
            return (f"{cfg.data} · {cfg.method} · test linear probe: output "
                    f"{last['linear_probe']:.3f}, hidden {last['linear_probe_hidden']:.3f} · "
                    f"k-NN {last['knn']:.3f} · effective rank {last['effective_rank']:.1f} · "
                    f"{secs:.1f} s")
        progress(last["epoch"] / cfg.epochs, desc=f"epoch {last['epoch']:.0f}")
        probe = f" · probe {last['linear_probe']:.3f}" if "linear_probe" in last else ""
        return (f"epoch {last['epoch']:.0f}/{cfg.epochs} · loss {last['loss']:.4f}{probe} · "
                f"{secs:.1f} s")

    for *figs, line, _, _ in streamed(
            request, lambda emit, stop: E.realdata_run(cfg, emit, stop, LIMITS),
            realdata_figures(shape), status, key=key_of("realdata", cfg)):
        yield (*figs, line)


def realdata_tab():
    """Tab "Real data": data, augmentation, method, epochs, width, seed; Train/Stop."""
    with gr.Tab("Real data", id="realdata"):
        gr.Markdown(REALDATA_TEXT)
        gr.Markdown(course_link(6))
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                c = {"data": choice_of(APP_CONFIG, "data", APP_DATA,
                                       "digits: 8x8 images; mnist1d: 40-sample signals"),
                     "augmentation": choice(tuple(AUGMENTATIONS), "default", "augmentation",
                                            "how the two views are made"),
                     "method": choice_of(APP_CONFIG, "method", APP_METHODS,
                                         "the same encoder, trained by each method")}
                num = number_box(c, REALDATA_FIELDS, "real")
                with gr.Row():
                    num("epochs"), num("width")
                num("seed")
                go, stop_btn = train_stop("real")
            with gr.Column(scale=2):
                status = status_line("real")
                curves = figure("loss and probe", "real-curves")
                weights = figure("first-layer weights", "real-weights")
        training_event(go, train_realdata, [c[k] for k in REALDATA_ORDER],
                       [curves, weights, status], "train_realdata", stop_btn, status)
