"""The real page in headless Chromium (Debian's), driven by Playwright, against a real
uvicorn server; the camera is Chromium's fake device fed from a .y4m clip.

Screenshots go to $COARSE_LOFTR_SCREENSHOTS when set (docs/screenshots/ holds the
committed ones), else to a temporary folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from api_helpers import PAIRS, VIDEO

from coarse_loftr.api import loadtest

CHROMIUM = Path("/usr/bin/chromium")
CLIP = VIDEO / "visp_cube_poster_384x288.y4m"

pytestmark = [
    pytest.mark.browser,
    # CI installs Chromium (.ci/run): there a missing browser is a failure, not a skip.
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CI") != "true",
        reason="Debian's chromium is not installed (apt-get install -y chromium)",
    ),
]


@pytest.fixture(scope="module")
def server():
    # The shipped weights as `coarse-loftr serve` uses them (live and uploads models), so
    # that the page shows real matches of a real pair (and the screenshots are worth keeping).
    from coarse_loftr.inference.weights import shipped_weights_dir

    url = f"http://127.0.0.1:{loadtest.free_port()}"
    process = loadtest.start_server(
        str(shipped_weights_dir()), int(url.rsplit(":", 1)[1]), threads=1, queue_size=4
    )
    try:
        loadtest.wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={CLIP}",
                "--no-sandbox",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("COARSE_LOFTR_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1000, "height": 760}, permissions=["camera"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def overlay_count(page) -> int:
    return page.evaluate("window.__overlays || 0")


def test_live_camera_stream(page, screenshots):
    # Count overlay images as they arrive.
    page.evaluate("""() => { window.__overlays = 0;
        new MutationObserver(() => window.__overlays++).observe(
            document.getElementById('overlay'), {attributes: true, attributeFilter: ['src']}); }""")
    page.click("#start-camera")
    page.wait_for_function("window.__overlays >= 1", timeout=30_000)
    assert page.locator("#error").is_hidden()
    page.wait_for_function("window.__overlays >= 3", timeout=30_000)
    page.keyboard.press("s")  # set reference, as the seed demo's key
    page.wait_for_function(
        "document.getElementById('live-status').textContent.startsWith('reference: frame')", timeout=10_000
    )
    seen = overlay_count(page)
    page.wait_for_function(f"window.__overlays >= {seen + 3}", timeout=30_000)
    server_fps = float(page.text_content("#server-fps"))
    rtt_fps = float(page.text_content("#rtt-fps"))
    assert server_fps > 0 and rtt_fps > 0
    assert int(page.text_content("#num-matches")) >= 0
    assert float(page.text_content("#inference-ms")) > 0
    size = page.evaluate(
        "[document.getElementById('overlay').naturalWidth, document.getElementById('overlay').naturalHeight]"
    )
    assert size == [768, 288]  # reference | frame of the 384x288 clip
    page.screenshot(path=str(screenshots / "live.png"))

    page.keyboard.press("p")  # pause: no more overlays
    page.wait_for_function("document.getElementById('live-status').textContent === 'paused'")
    page.wait_for_timeout(300)
    paused_at = overlay_count(page)
    page.wait_for_timeout(700)
    assert overlay_count(page) == paused_at
    page.keyboard.press("p")
    page.wait_for_function(f"window.__overlays > {paused_at}", timeout=30_000)


def test_upload_tab(page, screenshots):
    page.click("#tab-upload")
    page.set_input_files("#image-a", str(PAIRS / "0041_a.jpg"))
    page.set_input_files("#image-b", str(PAIRS / "0041_b.jpg"))
    page.click("#match-button")
    page.wait_for_function(
        "document.getElementById('warp-overlay').naturalWidth > 0 || "
        "!document.getElementById('error').hidden",
        timeout=60_000,
    )
    assert page.locator("#error").is_hidden(), page.text_content("#error-text")
    summary = page.text_content("#upload-summary")
    assert re.match(r"\d+ matches, \d+ inliers", summary), summary
    assert int(summary.split()[0]) > 0
    assert page.evaluate("document.getElementById('match-overlay').naturalWidth") == 1280
    assert page.is_visible("#homography") and page.is_visible("#download-json")
    assert page.locator("#error").is_hidden()
    page.screenshot(path=str(screenshots / "upload.png"), full_page=True)


def test_upload_rejected_image_shows_plain_error(page, tmp_path):
    bogus = tmp_path / "notes.png"
    bogus.write_text("not really a picture")
    page.click("#tab-upload")
    page.set_input_files("#image-a", str(bogus))
    page.set_input_files("#image-b", str(PAIRS / "0001_b.jpg"))
    page.click("#match-button")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert page.text_content("#error-text").startswith("Image rejected")
