"""The course notebooks (docs/course/): each one matches its source in docs/course/src/, carries
its outputs, has at least two exercises with collapsed answers, uses only minissl's public API,
and runs top to bottom in a fresh kernel (marked slow; a failing cell fails the test).

Refresh the committed outputs with ``python docs/course/refresh.py`` (docs/course/README.md).
"""
import ast
import importlib.util
import pathlib
import re
import time

import pytest

import minissl

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat "
                               "(pip install -e '.[test]')")

ROOT = pathlib.Path(__file__).resolve().parents[1]
COURSE = ROOT / "docs" / "course"
MAX_BYTES = 1_000_000          # a notebook with its PNG figures stays readable on the web


def _load_refresh():
    spec = importlib.util.spec_from_file_location("course_refresh", COURSE / "refresh.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


refresh = _load_refresh()
SOURCES = refresh.sources()
NAMES = [s.stem for s in SOURCES]


def _committed(name):
    return nbformat.read(COURSE / f"{name}.ipynb", as_version=4)


def _code_of(nb):
    """Every piece of Python a reader runs: code cells, and the ```python blocks of Markdown
    cells (the answers' snippets)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield cell.source
        else:
            yield from re.findall(r"```python\n(.*?)```", cell.source, flags=re.S)


def _answer_cells(nb):
    return [c for c in nb.cells if c.cell_type == "markdown"
            and c.metadata.get("jupyter", {}).get("source_hidden") is True
            and re.search(r"<details>.*<summary>.*</summary>.*</details>", c.source, re.S)]


def test_course_has_its_notebooks():
    assert len(SOURCES) >= 3, SOURCES
    assert NAMES == sorted(NAMES) and all(re.fullmatch(r"\d\d_[a-z0-9_]+", n) for n in NAMES)
    committed = sorted(p.stem for p in COURSE.glob("*.ipynb"))
    assert committed == NAMES, "every source in docs/course/src/ has one committed notebook"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_matches_its_source(name):
    """The committed cells are what ``refresh.py`` builds from the source (run it if not)."""
    assert refresh.same_cells(_committed(name), refresh.build(refresh.SRC / f"{name}.py")), \
        f"{name}.ipynb is stale: run python docs/course/refresh.py {name[:2]}"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_carries_its_outputs(name):
    path = COURSE / f"{name}.ipynb"
    assert path.stat().st_size < MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes"
    nb = _committed(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "every code cell was executed"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "figures as PNG outputs"


@pytest.mark.parametrize("name", NAMES)
def test_exercises_have_collapsed_answers(name):
    nb = _committed(name)
    exercises = [c for c in nb.cells if c.cell_type == "markdown"
                 for _ in re.findall(r"\*\*Exercise \d", c.source)]
    answers = _answer_cells(nb)
    assert len(exercises) >= 2 and len(answers) >= len(exercises), (len(exercises), len(answers))
    for cell in answers:               # the questions stay visible, only answers are hidden
        assert "**Exercise" not in cell.source


def _private_uses(source):
    """Private names of minissl a piece of code imports or uses, and minissl names outside
    the public API (``minissl.__all__`` and submodules)."""
    public = set(minissl.__all__)
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minissl"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    bad.append(f"from {node.module} import {alias.name}")
                elif node.module == "minissl" and alias.name not in public and \
                        importlib.util.find_spec(f"minissl.{alias.name}") is None:
                    bad.append(f"from minissl import {alias.name} (not in minissl.__all__)")
        elif isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names
                    if a.name.startswith("minissl") and "._" in a.name]
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                bad.append(f".{node.attr} (line {node.lineno})")
            elif isinstance(node.value, ast.Name) and node.value.id == "minissl" and \
                    node.attr not in public and not node.attr.startswith("__") and \
                    importlib.util.find_spec(f"minissl.{node.attr}") is None:
                bad.append(f"minissl.{node.attr} (not in minissl.__all__)")
    return bad


def test_private_name_check_catches_private_names():
    """Negative control for the check below."""
    assert _private_uses("from minissl.covariance import _check_xi")
    assert _private_uses("import minissl\nminissl.covariance._laplacian_weights(1, 2, 3)")
    assert _private_uses("import minissl\nminissl.check_loss('simple')")
    assert not _private_uses("import minissl\nfrom minissl import linear_byol\n"
                             "minissl.train\nlinear_byol.integrate\nx.__class__")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_uses_only_public_names(name):
    bad = [b for code in _code_of(_committed(name)) for b in _private_uses(code)]
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name):
    """The committed notebook, outputs cleared, runs in a fresh kernel (cwd: the repository
    root) against this checkout's minissl; a failing cell raises CellExecutionError."""
    pytest.importorskip("nbclient", reason="pip install -e '.[test]'")
    pytest.importorskip("ipykernel", reason="pip install -e '.[test]'")
    nb = _committed(name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    check = nbformat.v4.new_code_cell(
        "import pathlib, minissl\n"
        f"assert pathlib.Path(minissl.__file__).resolve().parent == "
        f"pathlib.Path({str(ROOT / 'minissl')!r}), minissl.__file__")
    nb.cells.insert(0, check)
    t0 = time.perf_counter()
    refresh.execute(nb)
    print(f"{name}: {time.perf_counter() - t0:.1f} s")
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "error"]


@pytest.mark.slow
def test_a_failing_cell_fails_the_run():
    """Negative control for ``test_notebook_runs``: an exception in a cell is raised."""
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]'")
    pytest.importorskip("ipykernel", reason="pip install -e '.[test]'")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("assert x == 2, 'boom'")])
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="boom"):
        refresh.execute(nb)
