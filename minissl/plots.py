"""Matplotlib ``Figure`` builders shared by the demo and the CLI (never pyplot state).

Every builder returns a ``matplotlib.figure.Figure``; callers that are done with one close it
with ``close(fig)`` so a server does not leak memory.
"""
from __future__ import annotations

from matplotlib.figure import Figure


def close(fig: Figure) -> None:
    """Release a figure's canvas and artists."""
    fig.clf()
