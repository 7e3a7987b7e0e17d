"""Every ``module.name`` the docs cite exists: each backticked dotted name in docs/**/*.md and
README.md whose first part is ``minissl`` or one of its top-level modules or subpackages
(``nets.ReLUNet``, ``budget.Cost``, ``kernels.twin``, ``minissl.train``) resolves by importing
``minissl.<module>`` and ``getattr`` along the rest; the names of modules that moved into a
subpackage (``limits.X``, ``plots.X``, ``probes.X``, ...) are stale. Other dotted names
(``tree.pairs`` on an HLTM object, ``np.cov``, file names like ``nets.py``) are not taken."""
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "minissl"
DOCS = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
MODULES = ({p.stem for p in PKG.glob("*.py")} | {p.name for p in PKG.iterdir()
                                                  if (p / "__init__.py").exists()}) - {
    "__init__", "__main__"}
# modules that left the top level (where they are now): a doc citing the old place is stale
MOVED = {"limits": "budget", "checkpoint": "io", "plots": "figures.plots",
         "probes": "analysis.probes", "selectivity": "analysis.selectivity"}
FILE_ENDINGS = {"py", "md", "png", "ipynb", "npz", "json", "toml", "txt", "csv", "html", "svg"}
CODE_SPAN = re.compile(r"```.*?```|`[^`\n]+`", re.S)         # fenced blocks and inline spans
DOTTED = re.compile(r"(?<![\w./-])([a-z_][a-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\*?)")


def cited_names(text):
    """The dotted names in ``text``'s code spans that name something in minissl."""
    names = []
    for span in CODE_SPAN.findall(text):
        for name in DOTTED.findall(span):
            parts = name.split(".")
            if parts[-1] in FILE_ENDINGS:
                continue
            if parts[0] == "minissl" or parts[0] in MODULES or parts[0] in MOVED:
                names.append(name)
    return names


def is_submodule(parts):
    """``minissl/<parts>`` is a package or a module file."""
    path = PKG.joinpath(*parts)
    return (path / "__init__.py").is_file() or path.with_suffix(".py").is_file()


def where(obj):
    return getattr(obj, "__name__", type(obj).__name__)


def resolve(name):
    """The object ``name`` cites, else raise (ImportError or AttributeError). A name ending in
    ``*`` (``backend.check_*``) needs some attribute with that prefix."""
    parts = name.rstrip("*").split(".")
    if parts[0] == "minissl":
        parts = parts[1:]
    if parts[0] in MOVED and parts[0] not in MODULES:
        raise ImportError(f"minissl.{parts[0]} moved to minissl.{MOVED[parts[0]]}")
    start = 1 if parts[0] in MODULES else 0
    obj = importlib.import_module("minissl" + "".join(f".{p}" for p in parts[:start]))
    for i, part in enumerate(parts[start:], start):
        if name.endswith("*") and i == len(parts) - 1:
            if not any(a.startswith(part) for a in dir(obj)):
                raise AttributeError(f"{where(obj)} has no attribute starting with {part!r}")
        elif hasattr(obj, part):
            obj = getattr(obj, part)
        elif is_submodule(parts[:i + 1]):
            obj = importlib.import_module("minissl." + ".".join(parts[:i + 1]))
        else:
            raise AttributeError(f"{where(obj)} has no attribute {part!r}")
    return obj


def broken(names):
    out = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as e:
            out.append(f"{name}: {e}")
    return out


def test_the_scanner_finds_and_rejects_what_it_should():
    """Negative controls: the scanner picks module names out of code spans only, and stale or
    misspelt names fail to resolve."""
    text = ("see `nets.ReLUNet(sizes)`, `minissl.train`, `budget.Cost` and `tree.pairs`, "
            "`np.cov`, `nets.py`, `minissl/nets.py`, nets.forward_pass outside a span\n"
            "```python\nexperiments.hltm_experiment(cfg)\n```")
    assert cited_names(text) == ["nets.ReLUNet", "minissl.train", "budget.Cost",
                                 "experiments.hltm_experiment"]
    assert broken(cited_names(text)) == []
    bad = broken(["nets.forward_pass", "limits.Cost", "plots.probe_figure", "minissl.nope",
                  "kernels.twin.nope"])
    assert len(bad) == 5 and "moved to minissl.budget" in bad[1]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_minissl_name_exists(doc):
    names = cited_names(doc.read_text(encoding="utf-8"))
    bad = broken(dict.fromkeys(names))
    assert not bad, f"{doc.relative_to(ROOT)} cites names that do not exist:\n" + "\n".join(bad)


def test_the_docs_cite_names_at_all():
    """The scan sees the docs' citations (a scanner that found nothing would pass)."""
    names = {n for doc in DOCS for n in cited_names(doc.read_text(encoding="utf-8"))}
    assert len(names) > 50 and "nets.ReLUNet" in names
