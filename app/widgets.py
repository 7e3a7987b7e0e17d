"""The app's small building blocks: rendering a Figure, turning a library ``ValueError``
into a ``gr.Error``, validating a tab's numbers, dropdowns and number boxes."""
import base64
import pathlib

import gradio as gr
from gradio.components.plot import PlotData

from minissl.figures import plots
from minissl.backend import check_int, check_real
from minissl.budget import PUBLIC_APP


LATEX = [{"left": "$$", "right": "$$", "display": True},
         {"left": "$", "right": "$", "display": False}]
LIMITS = PUBLIC_APP          # every request's memory and estimated work (docs/demo.md)
OPEN_LOW = ("tau", "lr")     # fields whose lower bound is excluded

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


COURSE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "course"   # served statically


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
