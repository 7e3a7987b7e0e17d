"""Build the course notebooks from their sources and run them, so that the committed
``.ipynb`` files carry fresh outputs.

Each notebook is written as a plain Python file in ``docs/course/src/`` (one cell per
``# %%`` marker, jupytext's "percent" style):

    # %% [markdown]        a Markdown cell; every line starts with "# "
    # %%                   a code cell
    # %% [answer]          an exercise's answer: a Markdown cell shown collapsed, both on
                           GitHub (a <details> block) and in Jupyter (source_hidden)

Usage, from the repository root:

    python docs/course/refresh.py            # rebuild and execute every notebook
    python docs/course/refresh.py 02 04      # only the notebooks whose names start so
    python docs/course/refresh.py --check    # exit 1 if a notebook's cells differ from its source

Notebooks are executed with nbclient in a fresh kernel whose working directory is the
repository root and whose PYTHONPATH starts with it, so the checkout's ``minissl`` is the one
imported, with one BLAS thread (``OMP_NUM_THREADS=1`` etc., unless set). ``tests/test_notebooks.py`` uses the same functions.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

try:
    import resource                  # Unix: the kernel's CPU time, once it has exited
except ImportError:                  # pragma: no cover
    resource = None

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SRC = HERE / "src"
CELL_TIMEOUT = 300          # seconds per cell
ANSWER_META = {"jupyter": {"source_hidden": True}, "tags": ["answer"]}


def sources():
    """The notebook sources, in course order: ``docs/course/src/NN_*.py``."""
    return sorted(SRC.glob("[0-9][0-9]_*.py"))


def notebook_path(src):
    """``docs/course/NN_name.ipynb`` for ``docs/course/src/NN_name.py``."""
    return HERE / (pathlib.Path(src).stem + ".ipynb")


def _cells(text):
    """``[(kind, lines)]`` for the ``# %%`` cells of a source text (kind: code, markdown,
    answer); text before the first marker (a module docstring) is skipped."""
    cells, kind, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("# %%"):
            if kind is not None:
                cells.append((kind, lines))
            tag = line[4:].strip()
            kind = {"": "code", "[markdown]": "markdown", "[answer]": "answer"}.get(tag)
            if kind is None:
                raise ValueError(f"unknown cell marker {line!r}")
            lines = []
        elif kind is not None:
            lines.append(line)
    if kind is not None:
        cells.append((kind, lines))
    return cells


def _markdown(lines):
    out = []
    for line in lines:
        if line.startswith("# "):
            out.append(line[2:])
        elif line.strip() in ("#", ""):
            out.append("")
        else:
            raise ValueError(f"a Markdown line must start with '# ': {line!r}")
    return "\n".join(out).strip("\n")


def build(src):
    """The notebook (no outputs) for the source file ``src``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                  "language": "python"},
                   "language_info": {"name": "python"}}
    for kind, lines in _cells(pathlib.Path(src).read_text(encoding="utf-8")):
        if kind == "code":
            nb.cells.append(nbformat.v4.new_code_cell("\n".join(lines).strip("\n")))
        elif kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(_markdown(lines)))
        else:
            body = _markdown(lines)
            cell = nbformat.v4.new_markdown_cell(
                f"<details>\n<summary>Answer (click to open)</summary>\n\n{body}\n\n</details>",
                metadata=dict(ANSWER_META))
            nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):        # stable ids: a rebuild changes no id
        cell["id"] = f"{pathlib.Path(src).stem[:2]}-{i:03d}"
    return nb


#: one BLAS/OpenMP thread unless the caller set these: the notebooks' matrices are small, and
#: on a busy machine several BLAS threads wait for each other (a notebook can run several
#: times slower; docs/course/README.md, "Run time").
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def kernel_env():
    """The kernel's environment: this checkout first on PYTHONPATH (so its ``minissl`` is
    imported, not another installed copy), matplotlib's inline backend (figures become PNG
    outputs even where MPLBACKEND names another backend) and one BLAS thread (``THREAD_VARS``,
    where not already set)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in
                                         env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    for name in THREAD_VARS:
        env.setdefault(name, "1")
    return env


def execute(nb, timeout=CELL_TIMEOUT):
    """Run every cell of ``nb`` in place (a failing cell raises
    ``nbclient.exceptions.CellExecutionError``); returns ``nb``."""
    from nbclient import NotebookClient
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute(env=kernel_env())
    return nb


def same_cells(a, b):
    """True when the notebooks have the same cells (kind, source, metadata), outputs aside."""
    key = lambda nb: [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]  # noqa: E731
    return key(a) == key(b)


def _child_cpu():
    """CPU seconds (user + system) of the finished child processes: the kernels."""
    if resource is None:
        return float("nan")
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("only", nargs="*", help="name prefixes, e.g. 01 04 (default: all)")
    ap.add_argument("--check", action="store_true",
                    help="only check that every notebook matches its source (no execution)")
    args = ap.parse_args(argv)
    todo = [s for s in sources() if not args.only or any(s.stem.startswith(p) for p in args.only)]
    if not todo:
        ap.error(f"no source in {SRC} matches {args.only}")
    stale = []
    total = 0.0
    for src in todo:
        path, nb = notebook_path(src), build(src)
        if args.check:
            if not path.exists() or not same_cells(nbformat.read(path, 4), nb):
                stale.append(path.name)
            continue
        t0, cpu0 = time.perf_counter(), _child_cpu()
        execute(nb)
        dt, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
        total += dt
        nbformat.write(nb, path)
        print(f"{path.relative_to(ROOT)}: executed in {dt:.1f} s wall, {cpu:.1f} s CPU (kernel), "
              f"{path.stat().st_size / 1024:.0f} KiB")
    if args.check:
        for name in stale:
            print(f"{name} differs from its source: run python docs/course/refresh.py")
        return 1 if stale else 0
    print(f"total {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
