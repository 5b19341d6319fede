"""Overlays of extreme aspect ratios against a real uvicorn process: the canvas is capped,
the answers are right, and the server's peak memory barely moves (it rose by 575 MB for a
1000x10 + 10x1000 pair, and by 764 MB on the stream, when the shorter image was scaled to
the taller one's height). The probe is `python -m coarse_loftr.api.canvas_probe`."""

from __future__ import annotations

import pytest

from coarse_loftr.api import canvas_probe, loadtest
from coarse_loftr.inference.drawing import MAX_CANVAS_SIDE, side_by_side_layout

#: Peak-RSS rise allowed per case, MB: far below what the unbounded canvases took, above
#: the few MB that an ordinary request's allocations can add.
MAX_RISE_MB = 150


@pytest.fixture(scope="module")
def server():
    from coarse_loftr.inference.weights import shipped_weights_dir

    port = loadtest.free_port()
    url = f"http://127.0.0.1:{port}"
    process = loadtest.start_server(str(shipped_weights_dir()), port, threads=1, queue_size=4)
    try:
        loadtest.wait_healthy(url, process)
        canvas_probe.warm_up(url)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


def expected_shape(size0: tuple[int, int], size1: tuple[int, int]) -> list[int]:
    width, height = side_by_side_layout(size0, size1).size
    assert max(width, height) <= MAX_CANVAS_SIDE
    return [height, width, 3]


@pytest.mark.parametrize("case,sizes", [("http_1000", 1000), ("http_10000", 10000)])
def test_match_png_of_a_wide_and_a_tall_image(server, case, sizes):
    url, pid = server
    report = canvas_probe.run_case(url, pid, case, timeout=60)
    assert report["status"] == 200, report
    assert report["overlay_shape"] == expected_shape((sizes, 10), (10, sizes))
    assert report["peak_rss_rise_mb"] < MAX_RISE_MB, report


def test_stream_of_a_wide_reference_and_a_tall_frame(server):
    url, pid = server
    report = canvas_probe.run_case(url, pid, "ws_640x2", timeout=60)
    assert report["messages"].count("result") == 2 and "error" not in report["messages"], report
    assert report["overlay_shape"] == expected_shape((640, 2), (2, 640))
    assert report["peak_rss_rise_mb"] < MAX_RISE_MB, report
