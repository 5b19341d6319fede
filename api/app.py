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

from . import metrics as metrics_routes
from . import routes, websocket
from .docs import install_docs
from .engine import Engine, LocalEngine, ReplicaHeader
from .errors import install_error_handlers
from .metrics import Metrics
from .middleware import BodyLimit, RequestContext
from .service import Service
from .settings import ServiceSettings


def _version() -> str:
    try:
        return version("coarse-loftr")
    except PackageNotFoundError:
        return "0+unknown"


def load_matchers(settings: ServiceSettings) -> tuple[Matcher, Matcher]:
    """(uploads matcher, live-stream matcher); one object when both resolve to one model.
    The live one keeps `stream_references` image0s (see `Matcher`)."""
    # The service decodes, fits and draws on the cores the runtime computes on, and holds
    # several sessions: threads spinning for work between a run's steps take those cores.
    options = {
        "weights": settings.weights,
        "backend": settings.backend,
        "num_threads": settings.num_threads,
        "spin_wait": False,
    }
    cache = settings.stream_references
    live_files = resolve_weights(settings.weights, settings.live_size, role="live")
    if live_files.onnx == resolve_weights(settings.weights, settings.size).onnx:
        shared = Matcher(size=settings.size, image0_cache=cache, **options)
        return shared, shared
    uploads = Matcher(size=settings.size, **options)
    return uploads, Matcher(size=settings.live_size, role="live", image0_cache=cache, **options)


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
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if engine_factory is not None:
            engine = await engine_factory()
        else:
            if matcher is None:
                uploads, live = load_matchers(settings)
            else:
                uploads, live = matcher, live_matcher or matcher
            engine = LocalEngine(uploads, live, settings.queue_size, owns_matchers=matcher is None)
        app.state.service = Service(settings, engine, metrics)
        try:
            yield
        finally:
            await engine.close()

    app = FastAPI(
        title="coarse-loftr",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # served from the package by install_docs, not from a CDN
        redoc_url=None,
        description="Detector-free local feature matching (a distilled coarse LoFTR): "
        "matches, homographies and a live WebSocket stream.",
    )
    app.state.templates = Jinja2Templates(directory=TEMPLATES_DIR)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # A redirect to the slash-less path would be built from the Host header.
    app.router.redirect_slashes = False
    install_error_handlers(app)
    install_docs(app)
    app.include_router(routes.router)
    app.include_router(websocket.router)
    app.include_router(metrics_routes.router)
    # Two images plus the multipart framing.
    app.add_middleware(
        BodyLimit, max_bytes=2 * settings.max_upload_bytes + 64 * 1024, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(ReplicaHeader)
    app.add_middleware(RequestContext, metrics=metrics)  # outermost: every answer has its headers
    return app
