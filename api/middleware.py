"""ASGI middleware of the app, outermost first:

- `RequestContext`: the request id (`X-Request-ID` in and out, in every log line), the
  security headers of every answer, the `request` log line, the latency histogram and
  in-flight gauge, and the catch-all 500 (a fixed sentence and the request id; the
  traceback goes to the log only).
- `BodyLimit`: the byte limit of an upload enforced while the body streams in, chunked or
  not (413 as soon as it is crossed, before the multipart parser spools the rest), and a
  read timeout between the pieces of a body (408), so a slow client cannot hold a
  connection open forever. (Headers have their own timeout: `api.server`.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .logs import REQUEST_ID, REQUEST_ID_HEADER, request_id_from
from .metrics import Metrics

log = logging.getLogger("coarse_loftr.api")

#: The page loads only its own script and stylesheet, draws on canvases from blob: and
#: data: images, plays the webcam (mediastream:) or a local file (blob:), and opens a
#: WebSocket to its own host ('self' covers ws: / wss: of the same host in CSP 3). No
#: inline script or style anywhere; no framing by other sites.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}

INTERNAL_ERROR = "something went wrong on the server; quote the request id when you report it"


def route_of(scope: Scope) -> str:
    """The matched route's template (`/match`, `/static`), or `unmatched`: a bounded label."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        request_id = request_id_from(dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode()))
        token = REQUEST_ID.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status: list[int] = []
        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                    for name, value in SECURITY_HEADERS.items():
                        if name not in headers:  # a route may set a policy of its own (/docs)
                            headers[name] = value
            await send(message)

        http = scope["type"] == "http"
        if http:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            pass  # the client left: nobody to answer
        except Exception:
            log.exception(
                "internal error", extra={"path": scope.get("path", "")[:200], "request_id": request_id}
            )
            if http and not status:
                await error_response(500, "internal_error", INTERNAL_ERROR)(scope, receive, send_with_headers)
        finally:
            if http:
                self.metrics.in_flight.dec()
                seconds = time.perf_counter() - start
                code = status[0] if status else 499  # 499: the client went away first
                route = route_of(scope)
                self.metrics.latency.labels(route, scope["method"], str(code)).observe(seconds)
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": code,
                        "ms": round(seconds * 1000.0, 2),
                        "request_id": request_id,
                    },
                )
            REQUEST_ID.reset(token)


class BodyLimit:
    """413 for a body over `max_bytes` (from Content-Length at once, else as soon as the
    streamed pieces add up past it) and 408 when the next piece takes over `timeout_s`.
    Either answer closes the connection; the app's own answer is then dropped."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(
                scope, send, 413, "request_too_large", f"the request has {int(length)} bytes; {self._limit}"
            )
        state: dict[str, Any] = {"received": 0, "answered": False, "done": False}

        async def limited_receive() -> Message:
            if state["done"] or state["answered"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                await self._refuse(
                    scope, send, 408, "request_timeout", f"no data came for {self.timeout_s:g} s; send faster"
                )
                state["answered"] = True
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                state["done"] = not message.get("more_body", False)
                if state["received"] > self.max_bytes:
                    await self._refuse(
                        scope, send, 413, "request_too_large", f"the request is over its limit; {self._limit}"
                    )
                    state["answered"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not state["answered"]:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["answered"]:
                raise  # a refused body makes the parser fail: that is expected, not an error

    @property
    def _limit(self) -> str:
        return f"the limit is {self.max_bytes} bytes (two images and the multipart framing)"

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, code: str, detail: str) -> None:
        response = error_response(status, code, detail, {"Connection": "close"})
        await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
