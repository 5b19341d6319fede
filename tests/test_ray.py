"""A real local Ray (head on 127.0.0.1, 2 CPUs): `coarse-loftr serve --ray --replicas 2`
answers concurrent /match from both replicas, serves the same routes, page, OpenAPI and
WebSocket as the plain app, survives a replica killed mid-load (the lost requests are
counted: 503 replica_lost, those the replica held); `match-pairs --ray local` writes
matches.h5 and a COLMAP database that pycolmap reads back.

Each test starts its own Ray through the command and stops it; the module takes about a
minute on 2 cores."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("ray.serve")
pycolmap = pytest.importorskip("pycolmap")
httpx = pytest.importorskip("httpx")

from api_helpers import pair_bytes  # noqa: E402
from fixture_data import PAIRS  # noqa: E402

pytestmark = pytest.mark.slow
STARTUP_S = 150  # the bound is two minutes on this machine; leave a margin for CI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    """`coarse-loftr serve --ray --replicas 2` in its own process group; yields its URL and
    the address of the Ray it started."""
    port = free_port()
    log = tmp_path_factory.mktemp("ray") / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "coarse_loftr", "serve", "--ray", "--replicas", "2"),
                *("--host", "127.0.0.1", "--port", str(port), "--threads", "1"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    start = time.monotonic()
    try:
        while "on Ray Serve at" not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - start < STARTUP_S, "not up in time:\n" + log.read_text()[-3000:]
            time.sleep(1)
        print(f"serve --ray up in {time.monotonic() - start:.1f} s")
        ray_address = re.search(r"Ray at (\S+);", log.read_text()).group(1)
        yield f"http://127.0.0.1:{port}", ray_address
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert process.returncode == 0, log.read_text()[-3000:]


def post_match(url: str, a: bytes, b: bytes) -> httpx.Response:
    return httpx.post(f"{url}/match", files={"a": ("a.jpg", a), "b": ("b.jpg", b)}, timeout=120)


def test_concurrent_requests_are_spread_over_both_replicas(ray_server):
    ray_server, _ = ray_server
    a, b = pair_bytes("0001")
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: post_match(ray_server, a, b), range(12)))
    assert [r.status_code for r in responses] == [200] * 12, [r.text for r in responses]
    seen = collections.Counter(r.headers["x-replica"] for r in responses)
    print("answers per replica:", dict(seen))
    assert len(seen) == 2
    counts = {r.json()["num_matches"] for r in responses}
    assert len(counts) == 1 and counts.pop() > 100  # the same model on both
    info = httpx.get(f"{ray_server}/info").json()
    assert sorted(info["replicas"]) == sorted(seen)
    assert info["backend"].startswith("onnxruntime") and "1 threads" in info["backend"]


def test_same_routes_page_errors_and_stream_as_the_plain_app(ray_server):
    ray_server, _ = ray_server
    from coarse_loftr.api import ServiceSettings, create_app

    served = httpx.get(f"{ray_server}/openapi.json").json()
    local = create_app(ServiceSettings()).openapi()
    assert served["paths"].keys() == local["paths"].keys()
    assert served["components"]["schemas"].keys() == local["components"]["schemas"].keys()
    page = httpx.get(f"{ray_server}/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert httpx.get(f"{ray_server}/health").json()["status"] == "ok"

    a, _ = pair_bytes("0001")
    bad = post_match(ray_server, a, b"not an image")
    assert bad.status_code == 415 and bad.json()["error"] == "unsupported_image"
    assert "x-replica" not in bad.headers  # refused before any replica matched it

    websockets = pytest.importorskip("websockets.sync.client")
    host = ray_server.removeprefix("http://")
    with websockets.connect(f"ws://{host}/ws/stream", origin=ray_server, max_size=2**24) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        results = []
        for frame in pair_bytes("0001"):
            ws.send(frame)
            while True:
                message = ws.recv(timeout=60)
                if isinstance(message, bytes):  # the overlay ends a frame's answers
                    break
                if json.loads(message)["type"] == "result":
                    results.append(json.loads(message))
        assert len(results) == 2 and results[1]["num_matches"] > 50


def test_a_replica_killed_mid_load_is_replaced(ray_server):
    import ray

    ray_server, ray_address = ray_server
    from coarse_loftr.api.ray_serve import replica_actor, replica_names
    from coarse_loftr.inference.batch.ray_pool import connect

    assert ray_address.startswith("127.0.0.1:")  # a local Ray listens on loopback only
    connect(ray_address)  # join the server's Ray as a second driver
    try:
        before = replica_names()
        assert len(before) == 2
        victim = before[0]
        a, b = pair_bytes("0001")
        started = threading.Event()

        def one(index: int) -> httpx.Response:
            if index == 8:
                started.set()
            return post_match(ray_server, a, b)

        def kill() -> None:
            started.wait(120)
            ray.kill(replica_actor(victim), no_restart=True)

        killer = threading.Thread(target=kill)
        killer.start()
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(one, range(40)))
        killer.join()
        outcome = collections.Counter(
            (r.status_code, r.json()["error"] if r.status_code != 200 else "ok") for r in responses
        )
        lost = outcome[503, "replica_lost"]
        print(f"replica {victim} killed under 4 concurrent clients: {dict(outcome)}; lost {lost}")
        assert outcome[200, "ok"] + lost == 40  # nothing but the victim's requests fails
        assert lost <= 2  # a replica holds at most MAX_ONGOING requests
        for lost_one in (r for r in responses if r.status_code == 503):
            assert int(lost_one.headers["retry-after"]) >= 1

        deadline = time.monotonic() + 90
        while True:
            now = replica_names()
            if len(now) == 2 and victim not in now:
                break
            assert time.monotonic() < deadline, f"no replacement replica: {now}"
            time.sleep(1)
        with ThreadPoolExecutor(4) as pool:
            after = list(pool.map(lambda _: post_match(ray_server, a, b), range(8)))
        assert [r.status_code for r in after] == [200] * 8
        assert {r.headers["x-replica"] for r in after} <= set(now)
    finally:
        ray.shutdown()


def test_match_pairs_on_ray_actors_writes_h5_and_colmap(tmp_path):
    from coarse_loftr.inference.batch.store import read_outcomes

    images = tmp_path / "images"
    images.mkdir()
    names = sorted(path.name for path in PAIRS.glob("*_a.jpg"))
    for path in PAIRS.glob("*.jpg"):
        shutil.copy(path, images / path.name)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{name} {name.replace('_a', '_b')}\n" for name in names))
    out = tmp_path / "out"
    process = subprocess.run(
        [
            *(sys.executable, "-m", "coarse_loftr", "match-pairs", images, "--pairs", pairs, "--out", out),
            *("--ray", "local", "--colmap", out / "database.db", "--no-progress", "--threads", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    print("match-pairs --ray local:", report)
    assert report["where"] == "2 Ray actors"
    assert (report["pairs"], report["matched"], report["failed"]) == (len(names), len(names), 0)

    outcomes = list(read_outcomes(out / "matches.h5"))
    assert len(outcomes) == len(names) and all(o.error is None for o in outcomes)
    verified = sum(o.num_inliers >= 15 for o in outcomes)
    db = pycolmap.Database.open(out / "database.db")
    try:
        assert db.num_images() == 2 * len(names) == db.num_cameras()
        assert db.num_matched_image_pairs() == len(names)
        assert db.num_verified_image_pairs() == verified == report["colmap"]["verified_pairs"]
        assert verified >= len(names) - 1  # the hard pair may fall short of 15 inliers
    finally:
        db.close()
