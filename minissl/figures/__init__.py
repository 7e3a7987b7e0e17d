"""Figures: ``matplotlib.figure.Figure`` builders for the CLI, the app and the docs (``plots``).

The edge of the library; needs the ``app`` extra (Matplotlib), imported when the first
figure is built.
"""
