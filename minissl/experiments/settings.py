"""Settings of config dataclasses that nest other configs, by leaf name.

A config's fields are declared once with ``backend.setting`` (help, label, bounds); an
experiment's config may nest another (``SelectivityConfig.run`` is an ``HLTMRun``). Its
settings are the leaves: ``leaf_fields(cfg)`` lists them with their metadata (the CLI's flags
and the app's fields are made from it), ``with_settings(cfg, depth=3, k=4)`` replaces them by
name at whatever level they live.
"""
from dataclasses import fields, is_dataclass, replace


def leaf_fields(cfg):
    """``{name: (field, value)}`` for every leaf setting of the dataclass instance ``cfg``: a
    field that holds a dataclass is replaced by that one's leaves (an outer name wins)."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if is_dataclass(v):
            for name, leaf in leaf_fields(v).items():
                out.setdefault(name, leaf)
        else:
            out[f.name] = (f, v)
    return out


def with_settings(cfg, **values):
    """``cfg`` with the leaf settings ``values`` replaced wherever they are nested; a name
    that is none of its settings raises ``TypeError`` (as the constructor does)."""
    own = {f.name for f in fields(cfg)}
    top, nested = {}, {}
    for name, v in values.items():
        inner = [f.name for f in fields(cfg) if is_dataclass(getattr(cfg, f.name))
                 and name in leaf_fields(getattr(cfg, f.name))]
        if name in own:
            top[name] = v
        elif inner:
            nested.setdefault(inner[0], {})[name] = v
        else:
            raise TypeError(f"{type(cfg).__name__} has no setting {name!r}")
    top.update({k: with_settings(getattr(cfg, k), **kw) for k, kw in nested.items()})
    return replace(cfg, **top)
