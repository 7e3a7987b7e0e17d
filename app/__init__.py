"""The Gradio app (``python demo.py``), one module per tab; wiring only: every number comes
from ``minissl.experiments``, every picture from ``minissl.plots`` (docs/demo.md)."""
