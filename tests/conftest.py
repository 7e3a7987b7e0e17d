"""Shared fixtures."""
import socket

import pytest


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url():
    """The app served on a free localhost port (``prevent_thread_lock``), closed afterwards."""
    import demo
    app = demo.build_demo()
    _, url, _ = demo.launch(app, prevent_thread_lock=True, server_name="127.0.0.1",
                            server_port=_free_port(), quiet=True)
    try:
        yield url
    finally:
        app.close()
