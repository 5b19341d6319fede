"""The real page in headless Chromium (Debian's), driven by Playwright, against a real
uvicorn server with the shipped models; the camera is Chromium's fake device fed from a
.y4m made of the fixture clip (a camera moving over a poster).

What is checked is what a user sees: one click on Match makes one model request and shows
the overlay, the warp and the numbers; the overlay of a real pair has several colours and a
few hundred lines at most; the live tab draws the reference's border, warped by each
frame's homography, on the stream; drag-and-drop, paste and the example button; a 375 px
wide layout with a label on every control; relative URLs (the page under a path prefix).

Screenshots go to $COARSE_LOFTR_SCREENSHOTS when set (docs/screenshots/ holds the
committed ones: `COARSE_LOFTR_SCREENSHOTS=docs/screenshots python -m pytest
tests/test_api_browser.py`), else to a temporary folder.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from api_helpers import PAIRS, decode, fake_camera_y4m
from PIL import Image

from coarse_loftr.api import loadtest
from coarse_loftr.inference.drawing import OUTLINE_BGR, side_by_side_layout

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CLIP_SIZE = (384, 288)  # the fixture clip: frames are sent at this size (under the 640 limit)
MAX_SCREENSHOT_BYTES = 1_000_000

pytestmark = pytest.mark.browser  # tests/conftest.py: skipped without Chromium, a failure under CI


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
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    clip = fake_camera_y4m(tmp_path_factory.mktemp("camera") / "camera.y4m")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                *FLAGS,
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("COARSE_LOFTR_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page, path: Path) -> None:
    """A PNG of the page, palette-quantised so that it stays under 1 MB."""
    image = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    assert path.stat().st_size < MAX_SCREENSHOT_BYTES


def csp_violation(message) -> bool:
    return message.type == "error" and "Content Security Policy" in message.text


@pytest.fixture
def open_page(browser, server):
    """open_page(width, path="/") -> a page at that viewport width; JavaScript errors and
    Content-Security-Policy violations (console errors) fail the test."""
    contexts, problems = [], []

    def open_(width: int = 1280, path: str = "/"):
        context = browser.new_context(viewport={"width": width, "height": 900}, permissions=["camera"])
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on(
            "console",
            lambda message: (
                message.type == "error" and "Refused to" in message.text and problems.append(message.text)
            ),
        )
        page.goto(server + path)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not problems, f"JavaScript or console errors: {problems}"


class StreamLog:
    """Every `result` of the page's WebSocket with the overlay that follows it."""

    def __init__(self, page) -> None:
        self.results: list[dict] = []
        self.pairs: list[tuple[dict, bytes]] = []
        page.on("websocket", lambda ws: ws.on("framereceived", self.on_frame))

    def on_frame(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            message = json.loads(payload)
            if message["type"] == "result":
                self.results.append(message)
        elif self.results:
            self.pairs.append((self.results[-1], payload))


def outline_hits(overlay: np.ndarray, homography: list[list[float]]) -> float | None:
    """Fraction of points along the reference's border, mapped by `homography` onto the
    frame's panel, that have the outline's colour within a pixel; None when most of the
    border falls outside the frame."""
    width, height = CLIP_SIZE
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    mapped = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), np.array(homography)).reshape(-1, 2)
    layout = side_by_side_layout(CLIP_SIZE, CLIP_SIZE)
    edges = [
        mapped[i] + t * (mapped[(i + 1) % 4] - mapped[i])
        for i in range(4)
        for t in np.linspace(0.05, 0.95, 40)
    ]
    points = np.rint(layout.to_canvas(1, np.array(edges))).astype(int)
    left = layout.panels[1][0]
    inside = (points[:, 0] >= left + 2) & (points[:, 0] < overlay.shape[1] - 2)
    inside &= (points[:, 1] >= 2) & (points[:, 1] < overlay.shape[0] - 2)
    if inside.sum() < 40:
        return None
    # JPEG blurs the 2-pixel magenta line: red and blue high, green low.
    magenta = (overlay[:, :, 0] > 150) & (overlay[:, :, 2] > 150) & (overlay[:, :, 1] < 110)
    hits = [magenta[y - 1 : y + 2, x - 1 : x + 2].any() for x, y in points[inside]]
    assert OUTLINE_BGR == (255, 0, 255)  # what `magenta` above looks for
    return float(np.mean(hits))


def test_live_view_draws_the_warped_reference_outline(open_page, screenshots):
    page = open_page(1280)
    log = StreamLog(page)
    assert "set the reference" in page.text_content(".keys")  # the keys are listed
    page.click("#start-camera")
    page.wait_for_function("() => document.getElementById('overlay').naturalWidth > 0", timeout=30_000)
    assert page.locator("#error").is_hidden()
    page.keyboard.press("s")  # the current frame becomes the reference
    page.wait_for_function(
        "() => document.getElementById('live-status').textContent.startsWith('reference: frame')",
        timeout=10_000,
    )
    seen = len(log.pairs)
    page.wait_for_function(
        "() => document.getElementById('tracking').textContent === 'tracking'", timeout=30_000
    )
    page.wait_for_timeout(2500)  # a few seconds of stream: the clip moves, the sparkline fills
    tracked = [(r, o) for r, o in log.pairs[seen:] if r["homography"] is not None]
    assert len(tracked) >= 3, [r["num_inliers"] for r, _ in log.pairs]
    scores = [outline_hits(decode(overlay), result["homography"]) for result, overlay in tracked]
    scores = [s for s in scores if s is not None]
    assert scores and np.median(scores) > 0.8, scores  # the outline is drawn where H puts it
    for result, overlay in tracked:
        assert decode(overlay).shape == (288, 768, 3)  # reference | frame
        assert 12 <= result["num_inliers"] <= result["num_matches"]
    assert int(page.text_content("#num-matches")) > 100  # the shipped live model on a textured poster
    assert int(page.text_content("#num-inliers")) > 50
    assert float(page.text_content("#server-fps")) > 0 and float(page.text_content("#rtt-fps")) > 0
    assert float(page.text_content("#inference-ms")) > 0
    drawn = page.evaluate(
        """() => { const c = document.getElementById('sparkline');
        const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return pixels.filter((v, i) => i % 4 === 3 && v).length; }"""
    )
    assert drawn > 100  # the FPS / latency sparkline has lines
    screenshot(page, screenshots / "live.png")

    # Toggle the outline off (key o): later overlays have none.
    page.keyboard.press("o")
    assert not page.is_checked("#show-outline")
    count = len(log.pairs)
    page.wait_for_timeout(1500)
    later = [(r, o) for r, o in log.pairs[count + 2 :] if r["homography"] is not None]
    assert later, "no overlay after the outline was turned off"
    off = [outline_hits(decode(o), r["homography"]) for r, o in later]
    assert all(s is None or s < 0.1 for s in off), off

    page.keyboard.press("p")  # pause: no more overlays
    page.wait_for_function("() => document.getElementById('live-status').textContent === 'paused'")
    page.wait_for_timeout(300)
    paused_at = len(log.pairs)
    page.wait_for_timeout(700)
    assert len(log.pairs) == paused_at
    page.keyboard.press("p")
    page.wait_for_timeout(1000)
    assert len(log.pairs) > paused_at


def model_requests(requests: list) -> list:
    return [r for r in requests if r.method == "POST" and ("/match" in r.url or "/register" in r.url)]


def seam_lines(overlay: np.ndarray, base: np.ndarray) -> tuple[int, int]:
    """(lines crossing the seam between a and b, distinct colours among them): every match
    line runs from a's panel to b's, so it crosses the seam column once."""
    seam = base.shape[1] // 2
    rows = slice(0, base.shape[0] - 60)  # above the caption
    drawn = np.abs(overlay[rows, seam].astype(int) - base[rows, seam].astype(int)).sum(axis=1) > 60
    runs = int(np.count_nonzero(drawn[1:] & ~drawn[:-1]) + drawn[0])
    colours = {tuple(int(c) // 32 for c in pixel) for pixel in overlay[rows, seam][drawn]}
    return runs, len(colours)


def test_one_click_on_match_is_one_model_request(open_page, screenshots):
    page = open_page(1280)
    page.click("#tab-upload")
    a, b = PAIRS / "0002_a.jpg", PAIRS / "0002_b.jpg"
    page.set_input_files("#image-a", str(a))
    page.set_input_files("#image-b", str(b))
    requests: list = []
    page.on("request", lambda request: requests.append(request))  # noqa: PLW0108 (a bound builtin is refused)
    with page.expect_response(lambda response: "/match" in response.url) as answer:
        page.click("#match-button")
    body = answer.value.json()
    page.wait_for_function("() => document.getElementById('warp-overlay').naturalWidth > 0", timeout=60_000)
    page.wait_for_timeout(500)  # room for any further request to show up
    assert page.locator("#error").is_hidden(), page.text_content("#error-text")
    assert len(model_requests(requests)) == 1 and len(requests) == 1, [r.url for r in requests]
    assert "include=overlay%2Cwarp" in requests[0].url
    # The numbers, the overlay and the warp from that one answer.
    assert int(page.text_content("#upload-matches")) == body["num_matches"] > 100
    assert int(page.text_content("#upload-inliers")) == body["num_inliers"] > 50
    assert page.text_content("#upload-summary").startswith(f"{body['num_matches']} matches, ")
    assert page.evaluate("document.getElementById('match-overlay').naturalWidth") == 1280
    assert page.evaluate("document.getElementById('warp-overlay').naturalWidth") == 640
    assert page.is_visible("#homography") and page.is_visible("#download-json")
    # The overlay reads: a few hundred lines at most, in several colours.
    overlay = decode(base64.b64decode(body["overlay_png"]))
    base = np.concatenate([cv2.imread(str(a)), cv2.imread(str(b))], axis=1)
    lines, colours = seam_lines(overlay, base)
    assert 20 <= lines <= 300 and colours >= 5, (lines, colours)
    screenshot(page, screenshots / "upload.png")


def test_example_button_at_phone_width(open_page, screenshots):
    page = open_page(375)
    page.click("#tab-upload")
    requests: list = []
    page.on("request", lambda request: requests.append(request))  # noqa: PLW0108 (a bound builtin is refused)
    page.click("#example-button")
    page.wait_for_function("() => document.getElementById('warp-overlay').naturalWidth > 0", timeout=60_000)
    page.wait_for_timeout(500)
    assert page.locator("#error").is_hidden(), page.text_content("#error-text")
    assert len(model_requests(requests)) == 1
    assert sorted(r.url.rsplit("/", 1)[-1] for r in requests if r.method == "GET") == [
        "sign_a.jpg",
        "sign_b.jpg",
    ]
    assert int(page.text_content("#upload-matches")) > 100
    # Usable at 375 px: nothing wider than the screen, a label on every control.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button')].filter((e) => {
            const name = (e.labels && e.labels.length ? e.labels[0].textContent : '') ||
                         e.getAttribute('aria-label') || (e.tagName === 'BUTTON' ? e.textContent : '');
            return !name.trim(); }).map((e) => e.id)"""
    )
    assert unlabelled == []
    screenshot(page, screenshots / "upload-375.png")
    page.click("#tab-live")
    page.click("#start-camera")
    page.wait_for_function("() => document.getElementById('overlay').naturalWidth > 0", timeout=30_000)
    page.wait_for_timeout(2500)  # the numbers and the sparkline fill
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, screenshots / "live-375.png")


DROP = """async ([kind, names]) => {
    const transfer = new DataTransfer();
    for (const name of names) {
        const blob = await (await fetch('static/examples/' + name)).blob();
        transfer.items.add(new File([blob], name, {type: 'image/jpeg'}));
    }
    const event = kind === 'drop'
        ? new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true})
        : new ClipboardEvent('paste', {clipboardData: transfer, bubbles: true, cancelable: true});
    (kind === 'drop' ? document.getElementById('drop-zone') : document).dispatchEvent(event);
}"""


def test_drop_and_paste_fill_the_pair(open_page):
    page = open_page(1280)
    page.click("#tab-upload")
    page.evaluate(DROP, ["drop", ["sign_a.jpg", "sign_b.jpg"]])
    assert page.text_content("#chosen") == "a: sign_a.jpg · b: sign_b.jpg"
    # One pasted image replaces a when both are taken; into an empty form it goes to a, then b.
    page.evaluate(DROP, ["paste", ["sign_b.jpg"]])
    assert page.text_content("#chosen") == "a: sign_b.jpg · b: sign_b.jpg"
    page.reload()
    page.click("#tab-upload")
    page.evaluate(DROP, ["paste", ["sign_a.jpg"]])
    page.evaluate(DROP, ["drop", ["sign_b.jpg"]])
    assert page.text_content("#chosen") == "a: sign_a.jpg · b: sign_b.jpg"
    page.click("#match-button")
    page.wait_for_function("() => document.getElementById('match-overlay').naturalWidth > 0", timeout=60_000)
    assert int(page.text_content("#upload-matches")) > 100


def test_page_works_under_a_path_prefix(browser, server):
    """Behind a proxy that serves the app under /prefix/: every asset and request is
    relative, and the stream's URL comes from the page's own location."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["camera"])
    page = context.new_page()
    proxied, sockets = [], []

    def proxy(route):
        proxied.append(route.request.url)
        route.fulfill(response=route.fetch(url=route.request.url.replace("/prefix/", "/", 1)))

    page.route(f"{server}/prefix/**", proxy)
    page.route_web_socket("**/ws/stream", lambda ws: (sockets.append(ws.url), ws.close()))
    page.goto(f"{server}/prefix/")
    assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"  # CSS loaded
    page.click("#tab-upload")
    page.click("#example-button")
    page.wait_for_function("() => document.getElementById('warp-overlay').naturalWidth > 0", timeout=60_000)
    assert {url.split("?")[0].rsplit("/prefix/", 1)[-1] for url in proxied} >= {
        "",
        "static/style.css",
        "static/app.js",
        "static/examples/sign_a.jpg",
        "match",
    }
    page.click("#tab-live")
    page.click("#start-camera")
    page.wait_for_timeout(500)
    assert sockets == [server.replace("http://", "ws://") + "/prefix/ws/stream"]
    context.close()


def test_rejected_image_shows_plain_error(open_page, tmp_path):
    bogus = tmp_path / "notes.png"
    bogus.write_text("not really a picture")
    page = open_page(1280)
    page.click("#tab-upload")
    page.set_input_files("#image-a", str(bogus))
    page.set_input_files("#image-b", str(PAIRS / "0001_b.jpg"))
    page.click("#match-button")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert page.text_content("#error-text").startswith("Image rejected")
