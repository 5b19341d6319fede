"""The hostile probe of issue 10, case by case, against a real `coarse-loftr serve` process
on 127.0.0.1 (random-initialised student). Each test is bounded in time (its own
deadlines below the pytest timeout) and memory (small limits, set for the server here);
the memory cases read the server's resident memory from /proc."""

from __future__ import annotations

import asyncio
import json
import select
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest
import websockets
from api_helpers import jpeg, pair_bytes, png

from coarse_loftr.api import loadtest
from coarse_loftr.api.probe import RssWatch

MAX_UPLOAD = 2_000_000  # per image; a request may carry 2 * this + 64 KiB
MAX_IMAGE = 40_000_000  # decoded bytes per image
BUDGET = 200_000_000  # decoded bytes at once, every request and stream together
TIMEOUT_S = 2.0  # headers and body pieces
SETTINGS = {
    "COARSE_LOFTR_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
    "COARSE_LOFTR_MAX_IMAGE_BYTES": str(MAX_IMAGE),
    "COARSE_LOFTR_MEMORY_BUDGET_BYTES": str(BUDGET),
    "COARSE_LOFTR_HEADER_TIMEOUT_S": str(TIMEOUT_S),
    "COARSE_LOFTR_BODY_TIMEOUT_S": str(TIMEOUT_S),
}
ROOT_PATH = "/matcher"


@pytest.fixture(scope="module")
def server(random_student_onnx):
    with loadtest.running_server(
        random_student_onnx, "--root-path", ROOT_PATH, queue_size=8, env=SETTINGS
    ) as (url, process):
        yield url, process


@pytest.fixture(scope="module")
def pair():
    return pair_bytes("0001")


def match_files(a: bytes, b: bytes, kind: str = "png") -> dict:
    return {"a": (f"a.{kind}", a, f"image/{kind}"), "b": (f"b.{kind}", b, f"image/{kind}")}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


# -- case 2: decoding is admitted against a budget of decoded bytes --------------------


def test_sixteen_bit_rgba_counts_eight_bytes_a_pixel(server):
    """A 2400x2400 16-bit RGBA PNG is 5.8 MP, well under any pixel limit, but 46 MB
    decoded: over the 40 MB per-image limit, refused from its header."""
    url, _ = server
    image = png(np.zeros((2400, 2400, 4), np.uint16))
    assert len(image) < MAX_UPLOAD
    response = httpx.post(f"{url}/match", files=match_files(image, image), timeout=30)
    body = assert_error(response, 413, "image_too_large")
    assert "2400x2400 pixels of 8 bytes" in body["detail"] and "'a'" in body["detail"]


def test_parallel_large_decodes_stay_within_the_budget(server):
    """Twelve requests at once, each two 2200x2200 16-bit RGBA PNGs (39 MB decoded each,
    68 MB with preprocessing: one request fits the 200 MB budget at a time). The others
    are refused with 503 + Retry-After before decoding, and the server's peak memory grows
    by less than the budget and a margin for the allocator (before admission every request
    held its two images while it waited for the matcher: several times the budget)."""
    url, process = server
    image = png(np.zeros((2200, 2200, 4), np.uint16))
    httpx.post(f"{url}/match", files=match_files(*pair_bytes("0001"), kind="jpeg"), timeout=60)  # warm
    before = loadtest.rss_mb(process.pid)
    busy_before = _busy_total(url)

    def one(_: int) -> httpx.Response:
        return httpx.post(
            f"{url}/match", files=match_files(image, image), params={"threshold": 0}, timeout=120
        )

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(one, range(12)))
    peak = loadtest.rss_mb(process.pid, "VmHWM")
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 503}, [a.text for a in answers]
    assert 200 in statuses
    for answer in answers:
        if answer.status_code == 503:
            assert_error(answer, 503, "busy")
            assert int(answer.headers["retry-after"]) >= 1
    assert _busy_total(url) - busy_before == statuses.count(503)
    growth = peak - before
    print(f"peak RSS {peak:.0f} MB, {growth:+.0f} MB over {before:.0f} MB; answers {statuses}")
    assert growth < BUDGET / 1e6 + 150, f"peak RSS grew {growth:.0f} MB"
    assert httpx.get(f"{url}/health").status_code == 200


def _busy_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("coarse_loftr_busy_total")
    )


def test_stream_decodes_a_huge_jpeg_frame_reduced(server):
    """The stream shrinks frames to 640 px anyway: an 8000x6000 JPEG frame (144 MB decoded,
    over the 40 MB per-image limit at full size) decodes at 1/8 in the DCT and is matched."""
    url, process = server
    gradient = np.linspace(0, 255, 8000, dtype=np.float32)[None, :] + np.zeros((6000, 1), np.float32)
    frame = jpeg(cv2.merge([gradient.astype(np.uint8)] * 3), 80)
    assert len(frame) < 4_000_000  # under the stream's frame limit
    before = loadtest.rss_mb(process.pid)

    async def session() -> dict:
        async with websockets.connect(_ws_url(url), max_size=2**24, open_timeout=10) as ws:
            await ws.recv()  # ready
            await ws.send(frame)
            while True:
                message = await asyncio.wait_for(ws.recv(), 60)
                if isinstance(message, str) and json.loads(message)["type"] in ("result", "error"):
                    return json.loads(message)

    with RssWatch(process.pid) as watch:  # VmHWM may hold an earlier test's peak: poll
        reply = asyncio.run(session())
    assert reply["type"] == "result", reply
    assert watch.peak_mb - before < 100  # no 144 MB full decode


# -- case 3: the byte limit holds for a chunked body, while it streams in --------------


def test_chunked_body_is_refused_as_soon_as_it_crosses_the_limit(server):
    """No Content-Length: the server counts the pieces and answers 413 once they pass
    the limit (4 MB here), without reading the rest of a 64 MB body."""
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    total, piece = 64 * 2**20, b"\x00" * 2**16
    head = (
        b'--B\r\nContent-Disposition: form-data; name="a"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    sent, answer = 0, b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /match HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=B\r\n\r\n"
        )
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        try:
            while sent < total:
                if select.select([sock], [], [], 0)[0]:
                    break  # the answer came
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after answering
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # to the end: the server closes the connection
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request_too_large" in answer
    print(f"413 after {sent / 2**20:.1f} MB of a {total / 2**20:.0f} MB chunked body")
    assert sent < total / 2


# -- case 4: only the service's own origin (and --allowed-origins) opens the stream ----


def _ws_url(url: str) -> str:
    return url.replace("http", "ws", 1) + "/ws/stream"


def test_foreign_origin_cannot_open_the_stream(server):
    url, _ = server

    async def probe(origin: str | None) -> str:
        try:
            async with websockets.connect(_ws_url(url), origin=origin, open_timeout=10) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
        except websockets.InvalidStatus as refused:
            return str(refused.response.status_code)

    assert asyncio.run(probe("http://evil.example")) == "403"
    assert asyncio.run(probe(url)) == "ready"  # the page's own origin
    assert asyncio.run(probe(None)) == "ready"  # not a browser: no Origin header


def test_allowed_origins_option(random_student_onnx):
    with loadtest.running_server(random_student_onnx, "--allowed-origins", "https://app.example") as (url, _):

        async def probe(origin: str) -> bool:
            try:
                async with websockets.connect(_ws_url(url), origin=origin, open_timeout=10):
                    return True
            except websockets.InvalidStatus:
                return False

        assert asyncio.run(probe("https://app.example"))
        assert not asyncio.run(probe("https://other.example"))


# -- case 5: a stream answers every problem with an error and goes on -----------------


def test_stream_answers_bad_input_and_goes_on(server):
    url, _ = server
    frame = jpeg(cv2.imdecode(np.frombuffer(pair_bytes("0001")[0], np.uint8), cv2.IMREAD_COLOR))

    async def session() -> list[dict]:
        replies = []
        async with websockets.connect(_ws_url(url), max_size=2**24, open_timeout=10) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"

            async def reply() -> dict:
                while True:
                    message = await asyncio.wait_for(ws.recv(), 30)
                    if isinstance(message, str):
                        return json.loads(message)

            for text in (
                "[" * 100_000 + "]" * 100_000,  # nested too deeply for the parser
                '{"type": "settings", "max_matches": true}',
                '{"type": "settings", "threshold": "0.5"}',
                "{" * 5000,
            ):
                await ws.send(text)
                replies.append(await reply())
            await ws.send(png(np.zeros((64, 64, 3), np.uint8)))  # a PNG frame
            replies.append(await reply())
            await ws.send('{"type": "settings", "threshold": 0}')
            replies.append(await reply())
            await ws.send(frame)
            while (message := await reply())["type"] != "result":
                pass
            replies.append(message)
        return replies

    replies = asyncio.run(session())
    kinds = [(r["type"], r.get("code")) for r in replies]
    assert kinds[0] == ("error", "invalid_message")  # over the length limit: not even parsed
    assert kinds[1] == ("error", "invalid_message") and "max_matches" in replies[1]["detail"]
    assert kinds[2] == ("error", "invalid_message") and "threshold" in replies[2]["detail"]
    assert kinds[3] == ("error", "invalid_message")
    assert kinds[4] == ("error", "unsupported_image") and "PNG" in replies[4]["detail"]
    assert kinds[5][0] == "settings" and replies[5]["threshold"] == 0
    assert kinds[6][0] == "result"


def test_deeply_nested_json_under_the_length_limit_is_an_error(server):
    """Nesting deep enough to exhaust the parser in under 4 KB of text."""
    url, _ = server

    async def session() -> tuple[dict, dict]:
        async with websockets.connect(_ws_url(url), open_timeout=10) as ws:
            await ws.recv()
            await ws.send("[" * 4000)
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send('{"type": "pause"}')
            return first, json.loads(await asyncio.wait_for(ws.recv(), 10))

    error, paused = asyncio.run(session())
    assert error["type"] == "error" and error["code"] == "invalid_json"
    assert paused["type"] == "paused"


# -- case 6: errors in the caller's words, with a request id ---------------------------


def test_errors_name_the_request_not_the_internals(server, pair):
    url, _ = server
    response = httpx.post(
        f"{url}/match", data={"a": "not a file"}, files={"b": ("b.jpg", pair[1])}, timeout=30
    )
    body = assert_error(response, 422, "invalid_request")
    assert "UploadFile" not in body["detail"] and "<class" not in body["detail"]
    assert "a: must be a file" in body["detail"]
    given = httpx.get(f"{url}/nowhere", headers={"X-Request-ID": "client-id.42"})
    assert given.headers["x-request-id"] == "client-id.42" and given.json()["request_id"] == "client-id.42"
    forged = httpx.get(f"{url}/health", headers={"X-Request-ID": "x" * 500})
    assert forged.headers["x-request-id"] != "x" * 500  # not a short token: replaced


# -- case 7: no Host reflection, a path prefix works ------------------------------------


def test_host_header_is_not_reflected(server):
    url, _ = server
    for path in ("/", "/match/", "/docs", "/redoc", "/openapi.json", "/health/"):
        response = httpx.get(f"{url}{path}", headers={"Host": "evil.example"})
        assert "evil.example" not in response.text, path
        assert all("evil.example" not in value for value in response.headers.values()), path
        assert response.status_code in (200, 404), path


def test_root_path_serves_under_the_prefix(server):
    """`--root-path /matcher`: the proxy strips the prefix, the schema names it."""
    url, _ = server
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/static/app.js").status_code == 200
    assert httpx.get(f"{url}/docs-assets/swagger-ui.css").status_code == 200
    schema = httpx.get(f"{url}/openapi.json").json()
    assert schema["servers"] == [{"url": ROOT_PATH}]


# -- case 8: security headers everywhere, documentation without a CDN ------------------


def test_every_answer_has_the_security_headers(server):
    url, _ = server
    answers = [
        httpx.get(f"{url}{path}") for path in ("/", "/health", "/static/app.js", "/nowhere", "/metrics")
    ]
    answers.append(httpx.post(f"{url}/match", content=b"x" * (2 * MAX_UPLOAD + 70_000)))  # 413
    for response in answers:
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", response.url
        policy = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy.split("style-src")[0]  # never for scripts
        assert headers["x-request-id"]


def test_docs_and_redoc_come_from_the_package(server):
    url, _ = server
    for path in ("/docs", "/redoc"):
        page = httpx.get(f"{url}{path}")
        assert page.status_code == 200
        assert "http://" not in page.text and "https://" not in page.text, "no CDN"
        assert "<script>" not in page.text, "no inline script"
        for asset in [part.split('"')[0] for part in page.text.split('src="')[1:]]:
            assert not asset.startswith("/"), "relative: works under a path prefix"
            loaded = httpx.get(f"{url}/{asset}")
            assert loaded.status_code == 200 and len(loaded.content) > 100, asset


# -- case 9: slow clients are cut off; SIGTERM drains and exits 0 ----------------------


def test_slow_headers_are_cut_off(server):
    """Four connections dribbling a request line a byte every 0.25 s: each is closed
    once its headers are TIMEOUT_S late, long before the dribble would end (20 s)."""
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"y" * 80 + b"\r\n\r\n"
    sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(4)]
    closed = [False] * 4
    try:
        for byte in request:
            for i, sock in enumerate(sockets):
                if closed[i]:
                    continue
                try:
                    sock.sendall(bytes([byte]))
                    if select.select([sock], [], [], 0)[0]:
                        data = sock.recv(4096)
                        closed[i] = data == b"" or data.startswith(b"HTTP/1.1 408")
                except OSError:
                    closed[i] = True
            if all(closed):
                break
            time.sleep(0.25)
    finally:
        for sock in sockets:
            sock.close()
    assert all(closed)


def test_slow_body_gets_408(server):
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /match HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Content-Type: multipart/form-data; boundary=B\r\n\r\n--B\r\n"
        )
        answer = b""
        while data := sock.recv(65536):  # blocks until the server gives up on the body
            answer += data
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer


def test_sigterm_drains_the_request_in_flight_and_exits_0(random_student_onnx, pair, tmp_path):
    """Also: the server's log is JSON lines, each request's with its id."""
    log = (tmp_path / "server.log").open("wb")
    with loadtest.running_server(random_student_onnx, "--log-level", "info", stderr=log) as (url, process):
        host, port = url.removeprefix("http://").split(":")
        body = b"".join(
            [
                b'--B\r\nContent-Disposition: form-data; name="a"; filename="a.jpg"\r\n\r\n',
                pair[0],
                b'\r\n--B\r\nContent-Disposition: form-data; name="b"; filename="b.jpg"\r\n\r\n',
                pair[1],
                b"\r\n--B--\r\n",
            ]
        )
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                b"POST /match HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                b"X-Request-ID: drained-1\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            sock.sendall(body[:1000])  # the request is in flight...
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)  # ...when the server is told to stop
            time.sleep(0.5)
            sock.sendall(body[1000:])
            answer = b""
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert process.wait(30) == 0
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines()]
    (served,) = [line for line in lines if line.get("request_id") == "drained-1"]
    assert served["message"] == "request" and served["status"] == 200 and served["route"] == "/match"
    assert any(line["message"].startswith("Finished server process") for line in lines)


# -- case 10: the OpenAPI file fields say `format: binary` -----------------------------


def test_openapi_file_fields_are_binary(server):
    url, _ = server
    schema = httpx.get(f"{url}/openapi.json").json()
    for path in ("/match", "/register"):
        ref = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        for name in ("a", "b"):
            assert body["properties"][name]["type"] == "string"
            assert body["properties"][name]["format"] == "binary"
