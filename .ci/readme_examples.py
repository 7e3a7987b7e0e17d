"""Run README's Python examples: every ```python block followed by a ```text block must print
exactly that text. Standard library and minissl only, so that it runs in the base install
(`.ci/run` makes a fresh virtual environment with `pip install -e .` alone and runs this);
tests/test_readme.py runs the same examples under pytest.

    python .ci/readme_examples.py        # exit status 1 and a diff if one differs
"""
import contextlib
import difflib
import io
import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
PAIR = re.compile(r"```python\n(.*?)```\s*\n```text\n(.*?)```", re.S)


def examples():
    """``[(code, expected output), ...]`` of README, in order."""
    return PAIR.findall(README.read_text(encoding="utf-8"))


def run(code):
    """What ``code`` prints."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    return buf.getvalue()


def main():
    failed = 0
    for i, (code, expected) in enumerate(examples(), 1):
        got = run(code)
        ok = got.strip() == expected.strip()
        failed += not ok
        print(f"README example {i}: {'ok' if ok else 'DIFFERS'}")
        if not ok:
            sys.stdout.writelines(difflib.unified_diff(
                expected.strip().splitlines(True), got.strip().splitlines(True),
                "README", "printed"))
    print(f"{len(examples()) - failed} passed, {failed} failed")
    return 1 if failed or not examples() else 0


if __name__ == "__main__":
    sys.exit(main())
