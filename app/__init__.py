"""The Gradio app (``python demo.py``), one module per tab; wiring only: every number comes
from ``minissl.experiments``, every picture from ``minissl.figures.plots`` (docs/demo.md)."""
