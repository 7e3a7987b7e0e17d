"""The app's small building blocks: rendering a Figure, turning a library ``ValueError``
into a ``gr.Error``, a tab's number fields made from its config's settings (``fields_of``:
label, help, bounds from ``backend.setting`` metadata) and validated, dropdowns and number
boxes."""
import base64
import pathlib
from typing import NamedTuple

import gradio as gr
from gradio.components.plot import PlotData

from minissl.figures import plots
from minissl.backend import check_int, check_real
from minissl.checks import setting_type
from minissl.experiments.settings import leaf_fields
from minissl.budget import PUBLIC_APP


LATEX = [{"left": "$$", "right": "$$", "display": True},
         {"left": "$", "right": "$", "display": False}]
LIMITS = PUBLIC_APP          # every request's memory and estimated work (docs/demo.md)

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


class Field(NamedTuple):
    """A number a tab asks for: its label, int or float, the app's bounds (``(lo, hi]`` with
    ``lo_open``), the default and the info line under it."""
    label: str
    kind: type
    lo: float
    hi: float
    default: float
    hint: str
    lo_open: bool = False


def _bounds(label, kind, lo, hi, lo_open):
    if kind is int:
        return f"{lo}-{hi}" if hi < 2 ** 31 - 1 else f"≥ {lo}"
    return f"{lo:g} {'<' if lo_open else '≤'} {label} ≤ {hi:g}"


def fields_of(cfg, bounds, **extra):
    """A tab's number fields ``{key: Field}`` for the settings ``bounds`` (``{key: (lo, hi)}``,
    the app's caps) of the config instance ``cfg`` (nested configs by leaf name): label, help
    and open lower end (where the cap is the setting's own lower bound) from each setting's
    ``backend.setting`` metadata, the default from ``cfg``; a pair (polarity) gives the fields
    ``key_lo`` and ``key_hi``. ``extra``: more ``Field``s, added as they are."""
    leaves, out = leaf_fields(cfg), {}
    for key, (lo, hi) in bounds.items():
        f, value = leaves[key]
        meta = f.metadata
        label = meta.get("label", key.replace("_", " "))
        lo_open = meta.get("lo_open", False) and lo == meta.get("lo")     # the same open end
        if isinstance(value, tuple):
            for end, word, v in zip(("lo", "hi"), ("low", "high"), value):
                out[f"{key}_{end}"] = Field(f"{label} {word}", float, lo, hi, v,
                                            meta.get("help", ""))
            continue
        kind = int if setting_type(f) is int else float
        out[key] = Field(label, kind, lo, hi, value, f"{meta.get('help', '')}, "
                         f"{_bounds(label, kind, lo, hi, lo_open)}", lo_open)
    return {**out, **extra}


def settings(fields, values):
    """Validate a tab's numbers against its fields ``{key: Field}`` (``gr.Error`` naming the
    label and the bounds)."""
    out = {}
    for key, f in fields.items():
        v = values.get(key)
        if f.kind is int:
            out[key] = checked(check_int, f.label, v, f.lo, f.hi)
        else:
            out[key] = checked(check_real, f.label, v, f.lo, f.hi, lo_open=f.lo_open)
    if out.get("polarity_lo", 0) > out.get("polarity_hi", 1):
        raise gr.Error(f"polarity low ({out['polarity_lo']:g}) must be <= polarity high "
                       f"({out['polarity_hi']:g})")
    return out


def choice(choices, value, label, info):
    """A dropdown whose value is checked by the callback (``check_choice``), so that a bad
    value sent to the API gets an error naming the field (gradio's own check does not)."""
    return gr.Dropdown(list(choices), value=value, label=label, info=info,
                       allow_custom_value=True)


def choice_of(cfg, key, choices=None, info=None):
    """``choice`` for the setting ``key`` of the config instance ``cfg``: its value, label,
    help and ``choices`` from the setting's metadata (``choices``, ``info``: where given)."""
    f, value = leaf_fields(cfg)[key]
    meta = f.metadata
    return choice(choices or meta["choices"], value, meta.get("label", key),
                  info or meta.get("help", ""))


def number_box(c, fields, prefix):
    """A function ``num(key)`` that adds ``c[key] = gr.Number`` from ``fields[key]``, with
    ``elem_id`` ``{prefix}-{key}``."""
    def num(key):
        f = fields[key]
        c[key] = gr.Number(f.default, label=f.label, info=f.hint, elem_id=f"{prefix}-{key}")
    return num


COURSE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "course"   # served statically


def train_stop(prefix):
    """A tab's Train and Stop buttons in one row (``PREFIX-train``, ``PREFIX-stop``)."""
    with gr.Row():
        return (gr.Button("Train", variant="primary", elem_id=f"{prefix}-train"),
                gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop"))


def status_line(prefix):
    """A tab's status box (``PREFIX-status``): the run's progress, then its last word."""
    return gr.Textbox(label="status", lines=2, interactive=False, elem_classes=["status-line"],
                      elem_id=f"{prefix}-status")


def figure(label, elem_id, value=None):
    """A picture slot (``gr.Plot``, PNG, no label shown; ``label`` names it for screen
    readers and the API)."""
    return gr.Plot(value, show_label=False, label=label, elem_id=elem_id, format="png")


def course_link(number):
    """A Markdown line linking course notebook ``number`` (``docs/course/NN_*.ipynb``, served by
    the app: ``demo.build_demo`` registers ``COURSE`` with ``gr.set_static_paths``), or "" when
    the notebook is not there."""
    found = sorted(COURSE.glob(f"{number:02d}_*.ipynb"))
    if not found:
        return ""
    nb = found[0]
    title = nb.stem[3:].replace("_", " ")
    return (f"*Learn it step by step: [notebook {number}, {title}](/gradio_api/file={nb}) of "
            f"the course (`docs/course/{nb.name}`; open it in Jupyter).*")
