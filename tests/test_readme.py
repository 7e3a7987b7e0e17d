"""README examples print what README says they print: every ```python block that is followed
by a ```text block is run, and its output must equal that text."""
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_spec = importlib.util.spec_from_file_location("readme_examples", ROOT / ".ci" / "readme_examples.py")
readme_examples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_examples)
examples = readme_examples.examples


def test_readme_has_examples_and_quick_start():
    text = README.read_text(encoding="utf-8")
    assert len(examples()) >= 1
    quick = text[text.index("## Quick start"):]
    cmds = re.findall(r"```bash\n(.*?)```", quick, re.S)[0].strip().splitlines()
    assert "python demo.py" in cmds[0] and "pytest" in cmds[1] and len(cmds) == 2


def test_ci_runs_readmes_test_command_verbatim_in_a_fresh_venv():
    """.ci/run holds README's quick-start test command as one line of its own, after making and
    activating a fresh virtual environment (so a missing extra fails CI)."""
    text = README.read_text(encoding="utf-8")
    quick = text[text.index("## Quick start"):]
    command = re.findall(r"```bash\n(.*?)```", quick, re.S)[0].strip().splitlines()[1]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci
    at = ci.index(command)
    assert any(line.startswith("python3 -m venv") for line in ci[:at])
    assert any(line.startswith(". ") and "bin/activate" in line for line in ci[:at])
    assert "set -euo pipefail" in ci                      # pytest's exit status 5 fails too


@pytest.mark.parametrize("code,expected", examples(), ids=lambda s: s.splitlines()[0][:40])
def test_readme_example_prints_what_it_says(code, expected):
    assert readme_examples.run(code).strip() == expected.strip()


def test_the_module_table_is_current():
    """README's table of minissl/ is what docs/tools/module_table.py prints, and it names every
    top-level module and every subpackage."""
    spec = importlib.util.spec_from_file_location("module_table",
                                                  ROOT / "docs" / "tools" / "module_table.py")
    mt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mt)
    assert mt.table() in README.read_text(encoding="utf-8")
    listed = {f for files, _ in mt.CORE for f in files} | {p for p, _ in mt.EDGE}
    present = {p.name for p in mt.PKG.glob("*.py")} | {
        p.name for p in mt.PKG.iterdir() if (p / "__init__.py").exists()}
    assert listed == present, listed ^ present
