"""Settings declared once: a config dataclass field carries its help, label and bounds
(``setting``), the CLI's flags and the app's fields read them, and ``check_settings`` checks a
config against them."""
from __future__ import annotations

import dataclasses

from .values import check_bool, check_choice, check_int, check_real


def setting(default, help, *, label=None, lo=None, hi=None, lo_open=False, hi_open=False,
            choices=None):
    """A config dataclass field declared once: ``help`` (the CLI's help, the app's info),
    ``label`` (the app's name), bounds ``lo``/``hi`` (open ends with ``lo_open``/``hi_open``) or
    ``choices``, kept in the field's metadata (only those given)."""
    meta = dict(help=help, label=label, lo=lo, hi=hi, lo_open=lo_open or None,
                hi_open=hi_open or None, choices=choices)
    return dataclasses.field(default=default,
                             metadata={k: v for k, v in meta.items() if v is not None})


_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "tuple": tuple}


def setting_type(f, default=None):
    """The Python type a config field is declared with: its annotation, a string under
    ``from __future__ import annotations`` (``"int | None"`` -> int), else ``type(default)``."""
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return _TYPES.get(t.split("|")[0].strip(), type(default))


def check_settings(cfg):
    """Check each field of the dataclass ``cfg`` against its ``setting`` metadata (``choices``:
    ``check_choice``; bounds: ``check_int`` for an int field (``int | None`` is one), else
    ``check_real``; a field annotated ``bool``: ``check_bool``, None allowed for ``bool | None``);
    the first bad field raises ``ValueError`` naming it. Returns ``cfg``."""
    for f in dataclasses.fields(cfg):
        m, v = f.metadata, getattr(cfg, f.name)
        kind, optional = setting_type(f), "None" in str(f.type)
        if "choices" in m:
            check_choice(f.name, v, m["choices"])
        elif kind is bool:
            if not (v is None and optional):
                check_bool(f.name, v)
        elif kind is int and ("lo" in m or "hi" in m):
            check_int(f.name, v, m.get("lo"), m.get("hi"))
        elif "lo" in m or "hi" in m:
            check_real(f.name, v, m.get("lo"), m.get("hi"), lo_open=m.get("lo_open", False),
                       hi_open=m.get("hi_open", False))
    return cfg
