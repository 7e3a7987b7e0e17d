"""minissl demo: watch self-supervised training shape a network, live, in the browser.

    python demo.py                 # http://127.0.0.1:7860  (--port, GRADIO_SERVER_PORT)
    python demo.py --share         # also a public gradio.live link (opt-in)
    python demo.py --runs 4        # runs at once (default: the cores; MINISSL_APP_RUNS)

Gradio wiring only: every number comes from a runner of ``minissl.experiments`` (the same
code as ``python -m minissl hltm|covariance|byol|decoupling``), every picture from
``minissl.figures.plots`` (rendered to PNG and closed at once). Each tab is one module of ``app/``
(its builder is listed in ``TABS``); ``app/runs.py`` runs every training event in a bounded
worker with Stop; ``app/text.py`` holds the long Markdown texts. ``build_demo()`` returns the
queued ``gr.Blocks``; ``main()`` parses flags. The training events are API endpoints
(``/train_hltm``, ``/train_covariance``, ...; docs/demo.md). ``app/serving.py``: runs at once,
one thread each (the thread variables below are set before NumPy and Numba load), the
startup warm-up and memory release; ``app/sharing.py``: identical requests share one run.
"""
import argparse
import os
import sys

from app.serving import THREAD_VARS   # (standard library only: before NumPy and Numba load)

for _var in THREAD_VARS:              # one thread per run (app/serving.py); not Numba's once it
    if not (_var == "NUMBA_NUM_THREADS" and "numba" in sys.modules):   # is loaded: a change
        os.environ.setdefault(_var, "1")                               # fails its next compile

from minissl.backend import MissingExtra, check_int, require

try:                                   # the app's packages are the "app" extra
    for _module in ("gradio", "matplotlib", "sklearn", "joblib"):
        require(_module, "app")
except MissingExtra as exc:
    sys.exit(f"python demo.py: {exc}")

import gradio as gr  # noqa: E402

from app import serving
from app.byol import byol_tab
from app.covariance import covariance_tab
from app.decoupling import decoupling_tab
from app.hltm import BACKEND, hltm_tab, warm_up
from app.losses import losses_tab
from app.realdata import realdata_tab
from app.text import DESCRIPTION
from app.widgets import COURSE

CSS = ".status-line textarea {font-family: ui-monospace, monospace; font-size: 0.85em;}"
TABS = [hltm_tab, covariance_tab, losses_tab, byol_tab, decoupling_tab, realdata_tab]


def build_demo(warm=True) -> gr.Blocks:
    """The whole app, queued: training events run ``serving.SLOTS.limit`` at a time
    (``concurrency_id "training"``), other users wait in the queue and see their position.
    ``warm``: first the startup run (``app.hltm.warm_up``, logged) and the memory janitor."""
    if warm:
        serving.warm_up(warm_up, f"the default HLTM setting (backend {BACKEND})")
        serving.start_janitor()
    gr.set_static_paths([COURSE])                   # the course notebooks each tab links
    with gr.Blocks(title="minissl: SSL with dual deep networks") as demo:
        gr.Markdown(DESCRIPTION)
        with gr.Tabs():
            for tab in TABS:
                tab()
    demo.queue(max_size=64, default_concurrency_limit=2)
    return demo


def launch(demo, **kwargs):
    """``demo.launch`` with the app's css (Gradio 6: theme/css go to launch), its request size
    limit and bounded sessions (``serving.launch_kwargs``)."""
    return demo.launch(css=CSS, theme=gr.themes.Soft(), **serving.launch_kwargs(), **kwargs)


def env_port(p):
    """``GRADIO_SERVER_PORT`` as a port number (default 7860); a usage error names it."""
    text = os.environ.get("GRADIO_SERVER_PORT", "").strip() or "7860"
    try:
        return check_int("GRADIO_SERVER_PORT", int(text), 1, 65535)
    except ValueError:
        p.error(f"GRADIO_SERVER_PORT must be a port number in [1, 65535], got {text!r}")


def main(argv=None):
    p = argparse.ArgumentParser(description="minissl demo: a Gradio app (see docs/demo.md)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--share", action="store_true",
                   help="also create a public gradio.live link (off by default)")
    p.add_argument("--runs", type=int, default=None,
                   help="training runs at once, one thread each (default $MINISSL_APP_RUNS "
                        "or the number of cores)")
    args = p.parse_args(argv)
    try:
        serving.configure(args.runs)
    except ValueError as exc:
        p.error(str(exc).replace("runs must", "--runs must", 1))
    port = env_port(p) if args.port is None else args.port
    if not 1 <= port <= 65535:
        p.error(f"--port must be in [1, 65535], got {port}")
    try:
        launch(build_demo(), server_name=args.host, server_port=port, share=args.share)
    except OSError as exc:             # the port is taken, or the host cannot be bound
        why = str(exc).split(". ")[0].rstrip(".")
        p.exit(1, f"demo.py: error: cannot serve on {args.host}:{port} (is the port in use? "
                  f"{why}); choose another with --port N or GRADIO_SERVER_PORT=N\n")


if __name__ == "__main__":
    main()
