"""Run the app on uvicorn as a production service: `serve(app, settings, host, port)`.

What uvicorn alone does not do:
- **Header timeout.** uvicorn waits forever for a request's headers (its keep-alive
  timeout only covers idle time between requests), so a client dribbling a byte a second
  holds a connection as long as it likes. `HeaderTimeoutProtocol` closes a connection whose
  headers are not complete `header_timeout_s` after it opened (or after its previous
  answer), with a 408. Bodies have their own read timeout (`api.middleware.BodyLimit`).
- **Exit status 0 after SIGTERM.** uvicorn drains the requests in flight, then re-raises
  the signal, so the process dies with 143, which supervisors read as a crash. Here a
  SIGTERM that was drained gracefully exits 0 (SIGINT keeps its usual meaning).
- **A path prefix** (`root_path`) for a reverse proxy that strips it.
- **Logs** as JSON lines (or plain text) with the request id (`api.logs`).
"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .logs import log_config
from .settings import ServiceSettings

_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b'content-length: 71\r\n\r\n{"error":"request_timeout","detail":"the request headers came too slowly"}'
)


def header_timeout_protocol(timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline for each request's headers."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            if not self.transport.is_closing():
                self.transport.write(_TIMEOUT_ANSWER)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers (keep-alive)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


class _Server(uvicorn.Server):
    """Forgets a SIGTERM once it has started the graceful shutdown, so that uvicorn does
    not re-raise it after the drain and the process exits 0."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and signal.SIGTERM in self._captured_signals:
            self._captured_signals.remove(signal.SIGTERM)


def serve(app: FastAPI, settings: ServiceSettings, host: str, port: int, log_level: str = "info") -> int:
    """Serve until SIGTERM / SIGINT; 0 after a graceful drain."""
    # uvicorn closes a connection on a message over ws_max_size; leave room above the
    # service's own limit so that an oversized frame gets a clear error message instead.
    # The stream carries JPEG both ways, which deflate cannot shrink: compressing it
    # only took CPU time from the model on both ends (docs/service.md, load test).
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config(settings.log_format, log_level),
        access_log=False,  # the service logs one `request` line per answer, with its id
        # The proxy strips the prefix; uvicorn puts it back in front of each path and in
        # root_path, so routes match and the OpenAPI `servers` name the public prefix.
        root_path=settings.root_path,
        http=header_timeout_protocol(settings.header_timeout_s),
        ws_max_size=4 * settings.ws_max_frame_bytes,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=30,
    )
    server = _Server(config)
    server.run()
    return 0 if server.started else 1
