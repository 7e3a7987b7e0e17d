"""The flags of a subcommand made from its config dataclass: one ``--flag`` per setting
(``dataclass_flags``, from each field's ``backend.setting`` metadata), the config back from
the parsed flags (``config_of``), and a config's ``ValueError`` as a usage error naming its
flag (``flag_error``)."""
from __future__ import annotations

import argparse

from .. import experiments as E
from ..budget import ResourceLimitError
from ..checks import setting_type


def dataclass_flags(p, cls, names=None, multi=(), unset=None):
    """One ``--flag`` per leaf setting of the config dataclass ``cls`` (``experiments.
    leaf_fields(cls())``; only ``names``, in that order, where given), made from the field's
    ``backend.setting`` metadata: its help and default (``unset``: the words shown for a None
    default), its ``choices``; a bool is ``--flag/--no-flag``, a tuple that many numbers
    (integers where its default's are); the ``multi`` ones take several values. Every flag
    defaults to None (the field's own default, or the preset's)."""
    leaves = E.leaf_fields(cls())
    for name in names or leaves:
        f, d = leaves[name]
        m, kind = f.metadata, setting_type(f, d)
        shown = (f" ({unset})" if unset else "") if d is None else \
            f" (default {':'.join(map(str, d)) if kind is tuple else d})"
        kw = dict(default=None, help=(m.get("help", "") + shown).strip().replace("%", "%%"))
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif kind is tuple:
            ints = all(isinstance(v, int) for v in d)
            kw.update(type=int if ints else float, nargs=len(d),
                      metavar=("LO", "HI") if len(d) == 2 and not ints else None)
        else:
            kw.update(type=kind, choices=m.get("choices"))
        if name in multi:
            kw["nargs"] = "+"
        p.add_argument("--" + name.replace("_", "-"), **kw)


def config_of(cls, args, **override):
    """A ``cls`` config from the parsed flags named like its leaf settings (None = default).
    ``snapshots``, when not given, is at most ``--steps`` (its default fits any run)."""
    kw = {}
    leaves = E.leaf_fields(cls())
    for name in leaves:
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = tuple(v) if isinstance(v, list) else v
    cfg = E.with_settings(cls(), **{**kw, **override})
    if "snapshots" in leaves and "snapshots" not in kw and "steps" in leaves:
        steps = E.leaf_fields(cfg)["steps"][1]
        if isinstance(steps, int) and 1 <= steps < cfg.snapshots:
            cfg = E.with_settings(cfg, snapshots=steps)
    return cfg


def flag_error(parser, exc, cls, args=None, rename=None):
    """Report a config ValueError as a usage error naming the flag (exit status 2). A flag
    that was not given (its default does not fit the flags that were) is said to be one, with
    the flags given; ``rename`` maps a setting to the command's own flag for it."""
    msg = str(exc)
    if isinstance(exc, ResourceLimitError):            # names its settings itself
        parser.error(msg)
    head = msg.split(" ", 1)[0].split("[", 1)[0].split("=", 1)[0]
    names = set(E.leaf_fields(cls()))
    dest = (rename or {}).get(head, head if head in names else ("hid" if head == "sizes"
                                                                else None))
    if dest is None:
        parser.error(msg)
    flag = "--" + dest.replace("_", "-")
    if args is not None and getattr(args, dest, None) is None:
        given = " ".join(a for a in getattr(args, "_argv", []) if a.startswith("--"))
        parser.error(f"{flag} (not given: its default does not fit "
                     f"{given or 'the other defaults'}): {msg}")
    parser.error(f"{flag}: {msg}")
