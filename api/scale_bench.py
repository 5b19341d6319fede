"""The numbers of docs/scale.md: `/match` on the plain server vs Ray Serve with 1 and 2
replicas, and `match-pairs` in this process vs on Ray actors, all on this machine.

    python -m coarse_loftr.api.scale_bench --pairs-dir ../shared/data/eval-dev/pairs --json

Each configuration is a real server process (`coarse-loftr serve`, with `--ray` for Ray
Serve, which starts its own local Ray) or a real `coarse-loftr match-pairs` run; the load
is `api.loadtest`'s clients, bounded in count and time. Per configuration: one client
(latency, so the difference to the plain server is Ray's overhead per request) and
`--clients` concurrent ones (throughput). Needs the `distributed` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .loadtest import default_pair, free_port, percentile, run_load, wait_healthy

# (label, serve options): the plain server and Ray Serve, each using both cores.
SERVERS = (
    ("plain uvicorn, 2 threads", ["--threads", "2"]),
    ("Ray Serve, 1 replica x 2 threads", ["--ray", "--replicas", "1", "--replica-cpus", "2", "--threads=2"]),
    ("Ray Serve, 2 replicas x 1 thread", ["--ray", "--replicas", "2", "--replica-cpus", "1", "--threads=1"]),
)
# (label, match-pairs options).
BATCHES = (
    ("in process, 2 threads", ["--threads", "2"]),
    ("Ray, 1 actor x 2 threads", ["--ray", "local", "--actors", "1", "--actor-cpus", "2", "--threads", "2"]),
    ("Ray, 2 actors x 1 thread", ["--ray", "local", "--actors", "2", "--actor-cpus", "1", "--threads", "1"]),
)


def serve_and_load(
    options: list[str], a: bytes, b: bytes, clients: int, seconds: float, requests: int
) -> dict:
    """Start `coarse-loftr serve OPTIONS`, time its start, load it with 1 then `clients`
    clients, stop it (SIGTERM, which also stops a Ray it started)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "coarse_loftr", "serve", "--port", str(port), "--log-level", "warning"]
    start = time.perf_counter()
    process = subprocess.Popen([*command, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url, process, timeout=180)
        report: dict = {"startup_s": round(time.perf_counter() - start, 1)}
        asyncio.run(run_load(url, a, b, [], 2, 0, 15.0, 6, 0))  # warm-up: both replicas, first calls
        report["one_client"] = one_client(url, a, b, seconds, requests)
        report[f"{clients}_clients"] = asyncio.run(run_load(url, a, b, [], clients, 0, seconds, requests, 0))[
            "match"
        ]
        return report
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def one_client(url: str, a: bytes, b: bytes, seconds: float, requests: int) -> dict:
    """Sequential /match calls: latency, the matcher's own time (`timings_ms.inference`,
    measured where it ran) and their difference, the cost of everything around the model
    (multipart, decode, the hops to a replica and back, JSON)."""
    latencies: list[float] = []
    inference: list[float] = []
    deadline = time.perf_counter() + seconds
    with httpx.Client(base_url=url, timeout=120) as client:
        while time.perf_counter() < deadline and len(latencies) < requests:
            start = time.perf_counter()
            response = client.post("/match", files={"a": ("a.jpg", a), "b": ("b.jpg", b)})
            response.raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000.0)
            inference.append(response.json()["timings_ms"]["inference"])
    around = [total - model for total, model in zip(latencies, inference)]
    return {
        "completed": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "inference_p50_ms": round(percentile(inference, 50), 1),
        "around_model_p50_ms": round(percentile(around, 50), 1),
    }


def match_pairs(options: list[str], image_dir: Path, pairs: Path, out: Path) -> dict:
    """One `coarse-loftr match-pairs` run; its JSON report (matching time apart from startup)."""
    command = [sys.executable, "-m", "coarse_loftr", "match-pairs", str(image_dir), "--pairs", str(pairs)]
    process = subprocess.run(
        [*command, "--out", str(out), "--no-progress", *options],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if process.returncode != 0:
        raise SystemExit(f"match-pairs failed: {process.stderr[-2000:]}")
    report = json.loads(process.stdout.strip().splitlines()[-1])
    return {key: report[key] for key in ("matched", "failed", "startup_s", "seconds", "pairs_per_s")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m coarse_loftr.api.scale_bench", description=__doc__)
    parser.add_argument("--pairs-dir", type=Path, required=True, help="eval-dev's pairs (NNNN_a/b.jpg)")
    parser.add_argument("--num-pairs", type=int, default=24, help="pairs for match-pairs")
    parser.add_argument("--clients", type=int, default=4, help="concurrent /match clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound of each load")
    parser.add_argument("--requests", type=int, default=200, help="bound on requests of each load")
    parser.add_argument("--rounds", type=int, default=1, help="times every configuration runs, in turn")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    a_path, b_path = default_pair()
    a, b = a_path.read_bytes(), b_path.read_bytes()
    # Rounds run every configuration in turn, so that a shared machine's drift shows as
    # differences between rounds rather than between configurations.
    report: dict = {
        "serve": {label: [] for label, _ in SERVERS},
        "match_pairs": {label: [] for label, _ in BATCHES},
    }
    names = sorted(path.name for path in args.pairs_dir.glob("*_a.jpg"))[: args.num_pairs]
    with tempfile.TemporaryDirectory() as folder:
        pairs = Path(folder) / "pairs.txt"
        pairs.write_text("".join(f"{name} {name.replace('_a.', '_b.')}\n" for name in names))
        for round_ in range(args.rounds):
            for label, options in SERVERS:
                result = serve_and_load(options, a, b, args.clients, args.seconds, args.requests)
                report["serve"][label].append(result)
                print(round_, label, result, file=sys.stderr, flush=True)
            for index, (label, options) in enumerate(BATCHES):
                out = Path(folder) / f"out{round_}-{index}"
                report["match_pairs"][label].append(match_pairs(options, args.pairs_dir, pairs, out))
                print(round_, label, report["match_pairs"][label][-1], file=sys.stderr, flush=True)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
