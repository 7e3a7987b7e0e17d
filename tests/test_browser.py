"""The app in a real browser: headless Chromium (Debian's /usr/bin/chromium, never a
downloaded one) driven by Playwright. Open the page, set a short run, press Train, wait for
the streamed pictures, save a screenshot, and check the three plot images are there and not
blank.

The README screenshot is this test with the default setting, written to a path you choose:

    MINISSL_SCREENSHOT=docs/img/demo.png python -m pytest tests/test_browser.py -q
"""
import base64
import io
import os

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-dev-shm-usage"]          # containers often have a tiny /dev/shm
SCREENSHOT = os.environ.get("MINISSL_SCREENSHOT")      # set: default setting, saved there

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def url(demo_url):
    return demo_url


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield pg
        finally:
            browser.close()


def _decode(src):
    head, data = src.split(",", 1)
    assert head.startswith("data:image/")
    from matplotlib.image import imread
    return imread(io.BytesIO(base64.b64decode(data)), format="png")


def _blank(img):
    rgb = img[..., :3]
    background = np.median(rgb.reshape(-1, 3), axis=0)
    return (np.abs(rgb - background).sum(-1) > 0.1).mean() < 0.02


def _set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def test_train_in_the_browser(page, url, tmp_path):
    page.goto(url)
    page.locator("#hltm-train").wait_for(state="visible", timeout=30_000)
    if not SCREENSHOT:                                   # a short run: 4 epochs of 50 steps
        _set_number(page, "hltm-epochs", 4)
        _set_number(page, "hltm-steps_per_epoch", 50)
    page.locator("#hltm-train").click()
    status = page.locator("#hltm-status textarea")
    # streamed: a first picture arrives while training still runs
    page.locator("#hltm-tree img").wait_for(state="visible", timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('#hltm-status textarea').value.startsWith('done:')",
        timeout=120_000)
    assert status.input_value().startswith("done: step")
    if not SCREENSHOT:
        assert "step 200/200" in status.input_value()
    for elem in ("hltm-tree", "hltm-corr", "hltm-loss"):
        img = page.locator(f"#{elem} img")
        img.wait_for(state="visible", timeout=30_000)
        assert img.evaluate("el => el.complete && el.naturalWidth") > 300
        assert not _blank(_decode(img.get_attribute("src"))), elem
    path = SCREENSHOT or str(tmp_path / "demo.png")
    page.wait_for_timeout(300)                           # let the last picture settle
    page.screenshot(path=path, full_page=True)
    from matplotlib.image import imread
    shot = imread(path)
    assert shot.shape[1] >= 1400 and not _blank(shot)
