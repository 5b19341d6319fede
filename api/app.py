"""The application factory: `create_app(settings)` -> FastAPI app.

The matchers load once, in the lifespan, and their worker thread stops with the app;
or the app talks to matchers elsewhere through an `Engine` (`engine_factory`: Ray Serve
replicas, `api/ray_serve.py`), with the same routes, limits and errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from coarse_loftr.inference import Matcher
from coarse_loftr.inference.paths import STATIC_DIR, TEMPLATES_DIR
from coarse_loftr.inference.weights import resolve_weights

from . import routes, websocket
from .engine import Engine, LocalEngine, ReplicaHeader
from .errors import error_response, install_error_handlers
from .service import Service
from .settings import ServiceSettings


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
                response = error_response(
                    413,
                    "request_too_large",
                    f"the request has {int(length)} bytes; the limit is {self.max_bytes}",
                )
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def load_matchers(settings: ServiceSettings) -> tuple[Matcher, Matcher]:
    """(uploads matcher, live-stream matcher); one object when both resolve to one model."""
    options = {"weights": settings.weights, "backend": settings.backend, "num_threads": settings.num_threads}
    uploads = Matcher(size=settings.size, **options)
    live_files = resolve_weights(settings.weights, settings.live_size, role="live")
    if live_files.onnx == uploads.files.onnx:
        return uploads, uploads
    return uploads, Matcher(size=settings.live_size, role="live", **options)


def create_app(
    settings: ServiceSettings | None = None,
    matcher: Matcher | None = None,
    live_matcher: Matcher | None = None,
    engine_factory: Callable[[], Awaitable[Engine]] | None = None,
) -> FastAPI:
    """settings: limits and model options (default: from COARSE_LOFTR_* variables);
    matcher / live_matcher: already loaded matchers to serve (uploads / stream) instead of
    loading them; the stream uses `matcher` when only that one is given; engine_factory:
    builds, in the lifespan, the engine to match with instead of matchers in this process."""
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if engine_factory is not None:
            engine = await engine_factory()
        else:
            if matcher is None:
                uploads, live = load_matchers(settings)
            else:
                uploads, live = matcher, live_matcher or matcher
            engine = LocalEngine(uploads, live, settings.queue_size)
        app.state.service = Service(settings, engine)
        try:
            yield
        finally:
            await engine.close()

    app = FastAPI(
        title="coarse-loftr",
        version=_version(),
        lifespan=lifespan,
        description="Detector-free local feature matching (a distilled coarse LoFTR): "
        "matches, homographies and a live WebSocket stream.",
    )
    app.state.templates = Jinja2Templates(directory=TEMPLATES_DIR)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(websocket.router)
    # Two images plus the multipart framing.
    app.add_middleware(BodyLimit, max_bytes=2 * settings.max_upload_bytes + 64 * 1024)
    app.add_middleware(ReplicaHeader)
    return app
