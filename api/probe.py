"""The memory and body-limit probes of issue 10 against a real server, with numbers:
`python -m coarse_loftr.api.probe --weights MODEL.onnx`.

Starts `coarse-loftr serve` on 127.0.0.1 with its default limits (or uses `--url`; with
`--server-python`, the server of another checkout's environment, to measure it before a
change), then runs, one after the other:

- `rgba16`: 8 parallel `/match` requests, each two 6324x6324 16-bit RGBA PNGs (311 KB
  each, 320 MB decoded each);
- `png6000`: 16 parallel requests, each two 6000x6000 8-bit PNGs of about 19.5 MB;
- `chunked`: a 100 MB chunked body (no Content-Length) sent at 10 MB/s: seconds and MB
  sent until the 413 arrives;
- `metrics`: a 20-frame WebSocket stream, then the lines of `GET /metrics` (when the
  server has it).

For each memory case it prints the answers' status codes, the server's resident memory
before, its highest value polled every 10 ms, and its peak (VmHWM) after. Numbers are
printed, not asserted; a case is bounded by `--seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import cv2
import httpx
import numpy as np

from .loadtest import Stats, rss_mb, running_server, ws_stream


def rgba16_png(side: int = 6324) -> bytes:
    """A black 16-bit RGBA PNG: tiny on the wire, 8 bytes a pixel decoded."""
    return cv2.imencode(".png", np.zeros((side, side, 4), np.uint16))[1].tobytes()


def big_png(side: int = 6000, seed: int = 0) -> bytes:
    """A 6000x6000 8-bit BGR PNG of about 19.5 MB (under the default 20 MB upload limit):
    a gradient with one sample in nine raised by 1, which deflate cannot squeeze away."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, side, dtype=np.float32).astype(np.uint8)
    image = np.broadcast_to(ramp[None, :, None], (side, side, 3)) + (rng.random((side, side, 3)) < 0.11)
    return cv2.imencode(".png", image.astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()


def texture_frames(count: int = 8) -> list[bytes]:
    """640x480 JPEG frames of a random texture moving 4 pixels a frame (a camera panning)."""
    texture = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (480, 700), np.uint8), (5, 5), 0)
    return [
        cv2.imencode(".jpg", cv2.cvtColor(texture[:, 4 * i : 4 * i + 640], cv2.COLOR_GRAY2BGR))[1].tobytes()
        for i in range(count)
    ]


class RssWatch:
    """Polls a process's VmRSS every `interval` s in a thread; `.peak_mb` is the highest."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid, self.interval, self.peak_mb = pid, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(self.interval)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def parallel_matches(url: str, a: bytes, b: bytes, count: int, pid: int | None, seconds: float) -> dict:
    def one(_: int) -> tuple[int, float]:
        start = time.perf_counter()
        try:
            response = httpx.post(
                f"{url}/match", files={"a": ("a.png", a), "b": ("b.png", b)}, timeout=seconds
            )
            status = response.status_code
        except httpx.HTTPError:
            status = -1  # no answer (connection dropped or timed out)
        return status, time.perf_counter() - start

    report: dict = {"upload_mb_each": round(len(a) / 1e6, 2)}
    if pid is not None:
        report["rss_mb_before"] = round(rss_mb(pid), 1)
    start = time.perf_counter()
    watch = RssWatch(pid) if pid is not None else None
    with watch or nullcontext(), ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(one, range(count)))
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["statuses"] = sorted(status for status, _ in answers)
    first_503 = [s for status, s in answers if status == 503]
    report["first_503_after_s"] = round(min(first_503), 2) if first_503 else None
    if pid is not None and watch is not None:
        report["rss_mb_peak_polled"] = round(watch.peak_mb, 1)
        report["rss_mb_hwm"] = round(rss_mb(pid, "VmHWM"), 1)
    return report


def chunked_upload(url: str, total: int = 100_000_000, rate: float = 10e6, seconds: float = 60.0) -> dict:
    """Seconds and bytes sent from the first body byte until the answer's status line."""
    host, port = url.removeprefix("http://").split(":")
    piece = b"\x00" * 65536
    # A small, valid part b first, then a part a that never ends.
    small = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    head = (
        b'--B\r\nContent-Disposition: form-data; name="b"; filename="b.png"\r\n\r\n' + small + b"\r\n"
        b'--B\r\nContent-Disposition: form-data; name="a"; filename="a.png"\r\n\r\n'
    )
    sent, answer = 0, b""
    with socket.create_connection((host, int(port)), timeout=seconds) as sock:
        sock.sendall(
            b"POST /match HTTP/1.1\r\nHost: probe\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=B\r\n\r\n"
        )
        start = time.perf_counter()
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        try:
            while sent < total and time.perf_counter() - start < seconds:
                if select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                time.sleep(max(0.0, sent / rate - (time.perf_counter() - start)))
            if sent >= total:
                tail = b"\r\n--B--\r\n"
                sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
        elapsed = time.perf_counter() - start
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    return {"status_line": status, "seconds_to_answer": round(elapsed, 2), "mb_sent": round(sent / 1e6, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m coarse_loftr.api.probe", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", required=True, help="model for the server (.onnx)")
    parser.add_argument("--url", help="an already running server (no memory figures then)")
    parser.add_argument("--server-python", default=sys.executable, help="interpreter that runs the server")
    parser.add_argument("--threads", type=int, default=2, help="runtime threads of the server")
    parser.add_argument("--cases", default="rgba16,png6000,chunked,metrics", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=180.0, help="bound of each request")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def run_cases(url: str, pid: int | None, cases: list[str], seconds: float) -> dict:
    report: dict = {}
    if "rgba16" in cases:
        image = rgba16_png()
        report["rgba16"] = parallel_matches(url, image, image, 8, pid, seconds)
    if "png6000" in cases:
        report["png6000"] = parallel_matches(url, big_png(seed=0), big_png(seed=1), 16, pid, seconds)
    if "chunked" in cases:
        report["chunked"] = chunked_upload(url, seconds=seconds)
    if "metrics" in cases:
        stats = Stats()  # a short stream first, so that its metrics have values
        asyncio.run(ws_stream(url, texture_frames(), time.perf_counter() + seconds, 20, stats))
        report["stream"] = {"results": len(stats.latencies_ms), "overlays": stats.overlays}
        response = httpx.get(f"{url}/metrics", timeout=10)
        report["metrics"] = response.text.splitlines() if response.status_code == 200 else None
    report["health_after"] = httpx.get(f"{url}/health", timeout=10).status_code
    return report


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    if args.url:
        report = run_cases(args.url, None, cases, args.seconds)
    else:
        with running_server(args.weights, threads=args.threads, python=args.server_python) as (url, process):
            report = run_cases(url, process.pid, cases, args.seconds)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
