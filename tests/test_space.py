"""Hosted like a Gradio app is: README.md opens with the Hugging Face Spaces header, the app it
names exists, its SDK version is the installed gradio, requirements.txt carries the runtime
dependencies, and demo.py serves on GRADIO_SERVER_NAME=0.0.0.0 as a Space runs it."""
import os
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEYS = ["title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "pinned",
        "license"]
COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def header():
    """The YAML front matter of README.md as {key: value} (flat ``key: value`` lines)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must open with the Spaces header"
    block = text[4:text.index("\n---\n", 4)]
    out = {}
    for line in block.splitlines():
        m = re.fullmatch(r"([A-Za-z_]+): (.+)", line)
        assert m, f"not a 'key: value' line: {line!r}"
        out[m.group(1)] = m.group(2)
    return out


def test_spaces_header():
    h = header()
    assert list(h) == KEYS
    assert h["sdk"] == "gradio" and h["pinned"] == "false" and h["license"] == "mit"
    assert h["colorFrom"] in COLORS and h["colorTo"] in COLORS and h["title"] and h["emoji"]
    assert (ROOT / h["app_file"]).is_file() and h["app_file"] == "demo.py"


def test_sdk_version_is_the_installed_gradio():
    gradio = pytest.importorskip("gradio")
    assert header()["sdk_version"] == gradio.__version__


def test_requirements_are_the_runtime_dependencies():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["data"]   # the app's tab
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines == deps


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listens_on_all_interfaces(port):
    """True when /proc/net/tcp has a LISTEN socket on 0.0.0.0:port (Linux)."""
    rows = pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(r.split()[1] == f"00000000:{port:04X}" and r.split()[3] == "0A" for r in rows)


@pytest.mark.timeout(120)
def test_demo_serves_on_all_interfaces_like_a_space():
    pytest.importorskip("gradio")
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "demo.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page = None
        while page is None and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    page = r.read().decode("utf-8", "replace")
            except OSError:
                time.sleep(0.2)
        assert page is not None, proc.stderr.read()
        assert "minissl" in page
        if pathlib.Path("/proc/net/tcp").exists():
            assert _listens_on_all_interfaces(port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
