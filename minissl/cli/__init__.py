"""The command line, ``python -m minissl``: argparse over ``minissl.experiments`` (``commands``)."""
from .commands import main

__all__ = ["main"]
