"""Memory of a real server drawing overlays of extreme aspect ratios:
`python -m coarse_loftr.api.canvas_probe --weights MODEL`.

Scaling a 1000x10 image to a 10x1000 one's height once made a 1000x100010 canvas. This
starts `coarse-loftr serve` on 127.0.0.1 (as the load test does) and, after a warm-up
request, sends each case once:

- `http_1000`: a 1000x10 and a 10x1000 PNG to `/match?format=png`;
- `http_10000`: a 10000x10 and a 10x10000 PNG to `/match?format=png`;
- `ws_640x2`: over `WS /ws/stream`, a 640x2 JPEG (the reference), then a 2x640 one.

It prints, per case, the answer (HTTP status or stream messages, the overlay's size), the
seconds it took and how far the server's peak resident memory (VmHWM) rose above its peak
before the cases. Numbers are printed, not asserted (tests/test_overlay_canvas.py asserts
a bound).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from websockets.sync.client import connect

from coarse_loftr.api import loadtest

CASES = ("http_1000", "http_10000", "ws_640x2")


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 random pixels."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encoded(image: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok, f"cannot encode a {image.shape} image as {ext}"
    return data.tobytes()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (Linux VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _shape(data: bytes) -> list[int] | None:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else list(image.shape)


def http_case(url: str, long_side: int, timeout: float) -> dict:
    """A long_side x 10 and a 10 x long_side PNG to /match?format=png."""
    a, b = encoded(noise(long_side, 10), ".png"), encoded(noise(10, long_side, 1), ".png")
    response = httpx.post(
        f"{url}/match",
        params={"format": "png"},
        files={"a": ("wide.png", a), "b": ("tall.png", b)},
        timeout=timeout,
    )
    answer: dict[str, Any] = {"status": response.status_code, "bytes": len(response.content)}
    if response.headers.get("content-type") == "image/png":
        answer["overlay_shape"] = _shape(response.content)
    else:
        answer["body"] = response.text[:200]
    return answer


def ws_case(url: str, timeout: float) -> dict:
    """A 640x2 reference and a 2x640 frame: the messages until the frame's overlay (or
    an error, or `timeout` seconds of silence)."""
    reference, frame = encoded(noise(640, 2), ".jpg"), encoded(noise(2, 640, 1), ".jpg")
    answer: dict[str, Any] = {"messages": []}
    with connect(url.replace("http", "ws", 1) + "/ws/stream", max_size=2**26, open_timeout=timeout) as ws:
        json.loads(ws.recv(timeout))  # ready
        ws.send(json.dumps({"type": "settings", "threshold": 0.0}))
        ws.send(reference)
        ws.send(json.dumps({"type": "set_reference"}))
        results = 0
        try:
            while True:
                message = ws.recv(timeout)
                if isinstance(message, bytes):
                    answer["overlay_shape"] = _shape(message)
                    if results >= 2:
                        break
                    ws.send(frame)
                    continue
                kind = json.loads(message)["type"]
                answer["messages"].append(kind)
                results += kind == "result"
                if kind == "error":
                    break
        except TimeoutError:
            answer["messages"].append(f"nothing for {timeout:.0f} s")
    return answer


def run_case(url: str, pid: int, case: str, timeout: float) -> dict:
    before = peak_rss_mb(pid)
    start = time.perf_counter()
    if case == "ws_640x2":
        answer = ws_case(url, timeout)
    else:
        answer = http_case(url, int(case.split("_")[1]), timeout)
    return {
        **answer,
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mb_before": round(before, 1),
        "peak_rss_rise_mb": round(peak_rss_mb(pid) - before, 1),
    }


def warm_up(url: str, rounds: int = 3) -> None:
    """A few ordinary requests of each kind: the runtime's buffers and the thread pool
    are allocated before the peak is read (one request is not enough: the second still
    raised the peak by about 80 MB)."""
    image = encoded(noise(640, 480), ".jpg")
    files = {"a": ("a.jpg", image), "b": ("b.jpg", image)}
    for _ in range(rounds):
        httpx.post(f"{url}/match", params={"format": "png"}, files=files, timeout=60)
    with connect(url.replace("http", "ws", 1) + "/ws/stream", max_size=2**24) as ws:
        ws.recv(60)
        for _ in range(rounds):
            ws.send(image)
            while not isinstance(ws.recv(60), bytes):
                pass


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m coarse_loftr.api.canvas_probe", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", required=True, help="model for the server (.onnx or a weights folder)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each answer")
    parser.add_argument("--fresh", action="store_true", help="a new server for each case (peaks apart)")
    args = parser.parse_args(argv)
    cases = [case for case in args.cases.split(",") if case]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case {unknown[0]}; choose from {', '.join(CASES)}")
    report: dict = {}
    for group in [[case] for case in cases] if args.fresh else [cases]:
        port = loadtest.free_port()
        url = f"http://127.0.0.1:{port}"
        process = loadtest.start_server(args.weights, port, args.threads, queue_size=4)
        try:
            loadtest.wait_healthy(url, process)
            warm_up(url)
            for case in group:
                report[case] = run_case(url, process.pid, case, args.timeout)
                print(case, json.dumps(report[case]), flush=True)
        finally:
            process.terminate()
            process.wait(30)
    return report


if __name__ == "__main__":
    main()
