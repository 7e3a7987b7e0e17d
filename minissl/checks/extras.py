"""Optional packages: ``require(module, extra)`` imports one, or raises ``MissingExtra`` whose
message is one line naming the extra that installs it."""
from __future__ import annotations

import importlib


class MissingExtra(ImportError):
    """An optional package is not installed; the message is one line naming the extra."""


def require(module, extra):
    """``module`` imported, else ``MissingExtra``: ``pip install "minissl[extra]"``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"this needs {module.split('.')[0]}, which is not installed: "
                           f'pip install "minissl[{extra}]"') from None
