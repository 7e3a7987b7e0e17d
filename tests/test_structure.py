"""The package's structure: one direction of imports (import-linter's layers contract in
pyproject.toml), no private names across modules, function-level imports only for optional or
slow third-party packages, and the size limits of docs/design.md."""
import ast
import pathlib
import subprocess
import sys

import pytest

import minissl

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "minissl"
MODULES = sorted(PKG.rglob("*.py"))
# imported inside functions on purpose: optional (cupy, gradio, torch) or only needed on some
# paths and slow to import (the cold start of `python -m minissl`, docs/performance.md)
LAZY_OK = {"cupy", "cupyx", "torch", "gradio", "joblib", "tqdm", "threadpoolctl",
           "scipy", "importlib", "contextlib", "dask", "distributed", "sklearn", "numba",
           "matplotlib", "mnist1d", "PIL"}
MAX_FUNCTION_LINES = 60


def _trees():
    for path in MODULES:
        yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def test_import_linter_contract_is_kept():
    pytest.importorskip("importlinter")
    exe = pathlib.Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1 kept, 0 broken" in r.stdout, r.stdout + r.stderr


def test_no_private_names_across_modules():
    bad = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or
                                                     (node.module or "").startswith("minissl")):
                bad += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                    not node.attr.startswith("__") and isinstance(node.value, ast.Name) and \
                    node.value.id in {"B", "E", "P", "LB", "mlp", "C", "backend", "nets"}:
                bad.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not bad, bad


def test_function_level_imports_only_for_optional_or_slow_packages():
    bad = []
    for path, tree in _trees():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = ["." if node.level else node.module]
                else:
                    continue
                bad += [f"{path.name}:{node.lineno}: {n}" for n in names
                        if n.split(".")[0] not in LAZY_OK]
    assert not bad, bad


def test_functions_stay_short_outside_kernels():
    long = []
    for path, tree in _trees():
        if "kernels" in path.parts:
            continue
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = fn.end_lineno - fn.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{fn.name} {n} lines")
    assert not long, long


def test_public_names_are_exported():
    for name in minissl.__all__:
        assert hasattr(minissl, name), name
    assert "ReLUNet" in minissl.__all__ and "tree_network" in minissl.__all__


def test_the_app_is_wiring():
    """demo.py and app/ import from minissl only public names (experiments, plots, constants and
    validators), never kernels or private names: every number comes from a runner."""
    bad = []
    for path in [ROOT / "demo.py", *sorted((ROOT / "app").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minissl"):
                if "kernels" in node.module:
                    bad.append(f"{path.name}: from {node.module}")
                bad += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_")]
    assert not bad, bad


CORE = sorted(PKG.glob("*.py"))                   # the top-level modules: the mathematics
CORE_MAX_LINES = 4000
LIMITS_MAX_SIGNATURES = 6


def test_the_core_is_small():
    """docs/design.md "Read this first": the core a learner reads is under 4,000 lines; budgets,
    I/O, figures, the CLI, probes and experiments live in subpackages."""
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in CORE)
    assert lines <= CORE_MAX_LINES, f"the core holds {lines} lines"
    names = {p.stem for p in CORE}
    assert not names & {"limits", "checkpoint", "plots", "cli", "probes", "selectivity"}


def test_few_core_signatures_take_limits():
    """Budgets are checked at the edge; only the calls that allocate from a size a user typed
    take ``limits=`` (design.md, Conventions)."""
    found = []
    for path in CORE:
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = fn.args.args + fn.args.kwonlyargs
                if any(a.arg == "limits" for a in args):
                    found.append(f"{path.stem}.{fn.name}")
    assert len(found) <= LIMITS_MAX_SIGNATURES, found


def test_the_base_install_is_lean():
    """pyproject's dependencies are what the core needs; the app, figures, probes and parallel
    runs are extras, and importing minissl loads none of them."""
    import tomllib
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {d.split(">")[0].split("=")[0].split("[")[0] for d in meta["dependencies"]}
    assert base <= {"numpy", "scipy", "numba", "threadpoolctl"}, base
    extras = meta["optional-dependencies"]
    assert {"app", "figures", "probe", "parallel", "test"} <= set(extras)
    code = ("import sys, minissl; bad = [m for m in ('gradio', 'matplotlib', 'sklearn', "
            "'joblib', 'tqdm', 'fastapi') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_missing_extra_is_one_line(monkeypatch, capsys):
    """An optional package that is not installed is named with its extra, never a traceback."""
    from minissl.backend import MissingExtra, require
    from minissl.cli import commands
    monkeypatch.setitem(sys.modules, "sklearn", None)          # import sklearn -> ImportError
    with pytest.raises(MissingExtra, match=r'^this needs sklearn, which is not installed: '
                                            r'pip install "minissl\[probe\]"$'):
        require("sklearn", "probe")
    with pytest.raises(SystemExit) as info:                    # a usage error, before the run
        commands.main(["hltm", "--depth", "2", "--hid", "2", "--epochs", "1",
                       "--samples-per-epoch", "256", "--probe", "root", "--no-progress"])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and "Traceback" not in err and out == ""
    assert err.strip().splitlines()[-1].endswith('pip install "minissl[probe]"'), err
