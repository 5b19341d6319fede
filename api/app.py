"""The application factory: `create_app(settings)` -> FastAPI app.

The matcher loads once, in the lifespan, and its worker thread stops with the app.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from inference import Matcher

from . import routes, websocket
from .errors import error_response, install_error_handlers
from .service import Service
from .settings import ServiceSettings
from .worker import InferenceWorker

ROOT = Path(__file__).resolve().parents[1]


def _version() -> str:
    try:
        return version("coarse-loftr")
    except PackageNotFoundError:
        return "0+unknown"


class BodyLimit:
    """Refuse an upload whose Content-Length already exceeds two images' byte limit,
    before the multipart parser spools it (ASGI middleware)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                response = error_response(413, "request_too_large",
                                          f"the request has {int(length)} bytes; the limit is "
                                          f"{self.max_bytes}")
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(settings: ServiceSettings | None = None, matcher: Matcher | None = None) -> FastAPI:
    """settings: limits and model options (default: from COARSE_LOFTR_* variables);
    matcher: an already loaded matcher to serve instead of loading one."""
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loaded = matcher or Matcher(weights=settings.weights, backend=settings.backend,
                                    size=settings.size, num_threads=settings.num_threads)
        worker = InferenceWorker(settings.queue_size)
        app.state.service = Service(settings, loaded, worker)
        try:
            yield
        finally:
            worker.close()

    app = FastAPI(title="coarse-loftr", version=_version(), lifespan=lifespan,
                  description="Detector-free local feature matching (a distilled coarse LoFTR): "
                              "matches, homographies and a live WebSocket stream.")
    app.state.templates = Jinja2Templates(directory=ROOT / "templates")
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(websocket.router)
    # Two images plus the multipart framing.
    app.add_middleware(BodyLimit, max_bytes=2 * settings.max_upload_bytes + 64 * 1024)
    return app
