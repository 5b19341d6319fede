"""Load test of a real server: `python -m coarse_loftr.api.loadtest --weights MODEL.onnx`.

Starts `coarse-loftr serve` on 127.0.0.1 (or uses `--url`), then runs N concurrent
`/match` clients and M WebSocket streams side by side for a bounded time and count,
and prints throughput, p50 / p99 latency, dropped frames, 503 answers and the server's
resident memory before and after. `--baseline` times the bare `Matcher.match` on the
same images in this process, before the server starts and after it stopped, and prints
the service's latency and frame rate as fractions of it (`vs_bare`).
Numbers are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import cv2
import httpx
import numpy as np
import websockets

from coarse_loftr.inference.paths import SHARED_DATA

SHARED = SHARED_DATA


def default_pair() -> tuple[Path, Path]:
    return _beside_checkout(
        SHARED / "eval-dev/pairs/0001_a.jpg", "--pair A B"
    ), SHARED / "eval-dev/pairs/0001_b.jpg"


def default_video() -> Path:
    return _beside_checkout(SHARED / "video/visp_mbt_cube_640x480.mp4", "--video CLIP")


def _beside_checkout(path: Path, option: str) -> Path:
    if not path.is_file():
        raise SystemExit(f"{path} not found (the team's data beside the checkout): pass {option}")
    return path


def video_frames(path: Path, count: int, quality: int = 85) -> list[bytes]:
    """Up to `count` frames of a video as JPEG bytes (what the page sends)."""
    capture = cv2.VideoCapture(str(path))
    frames: list[bytes] = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    capture.release()
    if not frames:
        raise SystemExit(f"no frames could be read from {path}")
    return frames


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident memory of a process (Linux), MB; key="VmHWM": its peak so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    busy: int = 0
    errors: int = 0
    dropped: int = 0
    frames: int = 0
    overlays: int = 0

    def summary(self, seconds: float) -> dict:
        return {
            "completed": len(self.latencies_ms),
            "per_s": round(len(self.latencies_ms) / seconds, 2) if seconds else 0.0,
            "p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "p99_ms": round(percentile(self.latencies_ms, 99), 2),
            "busy_503": self.busy,
            "errors": self.errors,
        }


async def http_client(url: str, a: bytes, b: bytes, deadline: float, budget: list[int], stats: Stats) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            start = time.perf_counter()
            response = await client.post("/match", files={"a": ("a.jpg", a), "b": ("b.jpg", b)})
            if response.status_code == 200:
                stats.latencies_ms.append((time.perf_counter() - start) * 1000.0)
            elif response.status_code == 503:
                stats.busy += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")) / 10)
            else:
                stats.errors += 1


async def ws_stream(url: str, frames: list[bytes], deadline: float, max_frames: int, stats: Stats) -> None:
    """Like the page: send a frame, send the next one when its result arrives. Overlays
    trail their result (the server draws one while it matches the next frame) and are
    counted as they come; latency is from sending a frame to its result."""
    async with websockets.connect(url.replace("http", "ws", 1) + "/ws/stream", max_size=2**24) as ws:
        json.loads(await ws.recv())  # ready
        waiting, start = False, 0.0
        while True:
            if not waiting:
                if time.perf_counter() >= deadline or stats.frames >= max_frames:
                    break
                start = time.perf_counter()
                await ws.send(frames[stats.frames % len(frames)])
                stats.frames += 1
                waiting = True
            message = await ws.recv()
            if isinstance(message, bytes):
                stats.overlays += 1
                continue
            data = json.loads(message)
            if data["type"] == "result":
                stats.latencies_ms.append((time.perf_counter() - start) * 1000.0)
                stats.dropped = data["frames_dropped"]
                waiting = False
            elif data["type"] == "error":
                stats.busy += data["code"] == "busy"
                stats.errors += data["code"] != "busy"
                waiting = False
        while stats.overlays < len(stats.latencies_ms):  # the last result's overlay
            if isinstance(await asyncio.wait_for(ws.recv(), 10.0), bytes):
                stats.overlays += 1


def bare_matcher(
    weights: str, a: Path, b: Path, frames: list[bytes], repeats: int, threads: int | None
) -> dict:
    """Median `Matcher.match` on the /match pair, and frames per second of match +
    nothing else on consecutive video frames against the first (the stream's work), each
    with the matcher the server builds for it (`load_matchers`: the stream's keeps its
    reference's half of the model)."""
    from coarse_loftr.inference.io import decode_image, read_image

    from .app import load_matchers
    from .settings import ServiceSettings

    matcher, live = load_matchers(ServiceSettings(weights=Path(weights), num_threads=threads))
    image0, image1 = read_image(a), read_image(b)
    for _ in range(3):
        matcher.match(image0, image1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matcher.match(image0, image1)
        times.append((time.perf_counter() - start) * 1000.0)
    decoded = [decode_image(f) for f in frames]
    start = time.perf_counter()
    for i in range(repeats):
        live.match(decoded[0], decoded[i % len(decoded)])
    fps = repeats / (time.perf_counter() - start)
    return {"match_p50_ms": round(percentile(times, 50), 2), "video_fps": round(fps, 2)}


def compare_with_bare(report: dict, before: dict, after: dict) -> dict:
    """The bare matcher timed before and after the load (a shared CPU drifts; the mean of
    the two is the baseline), and the service's figures as fractions of it."""
    bare = {key: round((before[key] + after[key]) / 2, 2) for key in before}
    ratios = {}
    if "match" in report:
        ratios["match_p50_vs_bare"] = round(report["match"]["p50_ms"] / bare["match_p50_ms"], 3)
    for name, stream in report.items():
        if name.startswith("stream"):
            ratios[f"{name}_fps_vs_bare"] = round(stream["fps"] / bare["video_fps"], 3)
    return {"bare_matcher": {**bare, "before": before, "after": after}, "vs_bare": ratios}


def start_server(
    weights: str,
    port: int,
    threads: int | None,
    queue_size: int,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    stderr: IO[bytes] | None = None,
) -> subprocess.Popen:
    """`coarse-loftr serve` on 127.0.0.1:`port` in a child process; extra: more `serve`
    options; env: variables added to this process's environment (COARSE_LOFTR_*);
    python: the interpreter (another checkout's environment, to measure it); stderr: where
    the server's log goes (default: this process's stderr)."""
    command = [
        python,
        "-m",
        "coarse_loftr",
        "serve",
        "--weights",
        weights,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--queue-size",
        str(queue_size),
    ]
    if threads:
        command += ["--threads", str(threads)]
    return subprocess.Popen([*command, *extra], env={**os.environ, **(env or {})}, stderr=stderr)


@contextmanager
def running_server(
    weights: str | Path,
    *extra: str,
    threads: int | None = 1,
    queue_size: int = 8,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    stderr: IO[bytes] | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A healthy real server for the duration of a `with`: (its URL, its process). It is
    stopped (SIGTERM) at the end unless it already exited."""
    url = f"http://127.0.0.1:{free_port()}"
    process = start_server(
        str(weights), int(url.rsplit(":", 1)[1]), threads, queue_size, extra, env, python, stderr
    )
    try:
        wait_healthy(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def wait_healthy(url: str, process: subprocess.Popen | None, timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server at {url} did not become healthy in {timeout:.0f} s")


async def run_load(
    url: str,
    a: bytes,
    b: bytes,
    frames: list[bytes],
    clients: int,
    streams: int,
    seconds: float,
    requests: int,
    stream_frames: int,
) -> dict:
    http, ws = Stats(), [Stats() for _ in range(streams)]
    budget = [requests]
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *[http_client(url, a, b, deadline, budget, http) for _ in range(clients)],
        *[ws_stream(url, frames, deadline, stream_frames, s) for s in ws],
    )
    elapsed = time.perf_counter() - start
    report: dict = {"seconds": round(elapsed, 2)}
    if clients:
        report["match"] = http.summary(elapsed)
    for i, stats in enumerate(ws):
        report[f"stream{i}"] = {
            **stats.summary(elapsed),
            "fps": round(stats.overlays / elapsed, 2),
            "frames_sent": stats.frames,
            "overlays": stats.overlays,
            "dropped": stats.dropped,
        }
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m coarse_loftr.api.loadtest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", required=True, help="model for the server (.onnx)")
    parser.add_argument("--url", help="an already running server (default: start one)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent /match clients")
    parser.add_argument("--streams", type=int, default=1, help="concurrent WebSocket streams")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound")
    parser.add_argument("--requests", type=int, default=1000, help="bound on /match requests")
    parser.add_argument("--stream-frames", type=int, default=1000, help="bound per stream")
    parser.add_argument("--threads", type=int, help="runtime threads (server and baseline)")
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument(
        "--baseline", action="store_true", help="time the bare Matcher before and after the load, and compare"
    )
    parser.add_argument("--repeats", type=int, default=100, help="bare Matcher calls per timing")
    parser.add_argument("--pair", nargs=2, type=Path, help="images for /match (default: eval-dev 0001)")
    parser.add_argument("--video", type=Path, default=None, help="clip for the streams")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    a_path, b_path = args.pair or default_pair()
    frames = video_frames(args.video or default_video(), 72)
    report: dict = {}
    if args.baseline:
        bare_before = bare_matcher(args.weights, a_path, b_path, frames, args.repeats, args.threads)
    process = None
    url = args.url
    if url is None:
        url = f"http://127.0.0.1:{free_port()}"
        process = start_server(args.weights, int(url.rsplit(":", 1)[1]), args.threads, args.queue_size)
    try:
        wait_healthy(url, process)
        a, b = a_path.read_bytes(), b_path.read_bytes()
        # Warm up (first calls allocate the runtime's buffers), then measure memory.
        asyncio.run(run_load(url, a, b, frames, 1, 1, 10.0, 5, 5))
        if process is not None:
            report["server_rss_mb_before"] = round(rss_mb(process.pid), 1)
        report.update(
            asyncio.run(
                run_load(
                    url,
                    a,
                    b,
                    frames,
                    args.clients,
                    args.streams,
                    args.seconds,
                    args.requests,
                    args.stream_frames,
                )
            )
        )
        if process is not None:
            report["server_rss_mb_after"] = round(rss_mb(process.pid), 1)
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
    if args.baseline:
        bare_after = bare_matcher(args.weights, a_path, b_path, frames, args.repeats, args.threads)
        report.update(compare_with_bare(report, bare_before, bare_after))
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
