"""README examples print what README says they print: every ```python block that is followed
by a ```text block is run, and its output must equal that text."""
import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
PAIR = re.compile(r"```python\n(.*?)```\s*\n```text\n(.*?)```", re.S)


def examples():
    return PAIR.findall(README.read_text(encoding="utf-8"))


def test_readme_has_examples_and_quick_start():
    text = README.read_text(encoding="utf-8")
    assert len(examples()) >= 1
    quick = text[text.index("## Quick start"):]
    cmds = re.findall(r"```bash\n(.*?)```", quick, re.S)[0].strip().splitlines()
    assert "python demo.py" in cmds[0] and "pytest" in cmds[1] and len(cmds) == 2


@pytest.mark.parametrize("code,expected", examples(), ids=lambda s: s.splitlines()[0][:40])
def test_readme_example_prints_what_it_says(code, expected):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert buf.getvalue().strip() == expected.strip()
