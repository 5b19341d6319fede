"""`/docs` (Swagger UI) and `/redoc` served from the installed package, not a CDN, and an
OpenAPI schema that client generators read.

The Swagger UI and ReDoc bundles come from the `fastapi-offline` wheel (MIT; it vendors
swagger-ui-dist, Apache-2.0, and redoc, MIT), mounted at `/docs-assets`. The pages use
relative URLs only (they work under any `--root-path` or proxy prefix) and no inline
script, so the service's Content-Security-Policy holds for them too; their policy only
adds inline styles and blob: workers, which both bundles use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from .middleware import CONTENT_SECURITY_POLICY

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"

DOCS_POLICY = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")

_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - Swagger UI</title>
<link rel="stylesheet" href="docs-assets/swagger-ui.css">
<link rel="icon" href="docs-assets/favicon.png"></head>
<body><div id="swagger-ui"></div>
<script src="docs-assets/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script></body></html>
"""

# Relative to the page (/docs), so a path prefix is kept.
_SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  deepLinking: true,
});
"""

_REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - ReDoc</title>
<link rel="icon" href="docs-assets/favicon.png"></head>
<body><redoc spec-url="openapi.json"></redoc>
<script src="docs-assets/redoc.standalone.js"></script></body></html>
"""


def install_docs(app: FastAPI) -> None:
    """Mount the assets and add /docs, /docs/init.js and /redoc (FastAPI's CDN pages must
    be off: `FastAPI(docs_url=None, redoc_url=None)`)."""
    app.mount("/docs-assets", StaticFiles(directory=ASSETS), name="docs-assets")
    headers = {"Content-Security-Policy": DOCS_POLICY}

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return HTMLResponse(_SWAGGER.format(title=app.title), headers=headers)

    @app.get("/docs/init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(_SWAGGER_INIT, media_type="text/javascript")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(_REDOC.format(title=app.title), headers=headers)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with `format: binary` beside every `contentMediaType` of a file
    field: OpenAPI 3.1 says a file with `contentMediaType` alone, but generators
    (openapi-python-client, openapi-generator) recognise files by `format: binary`, and
    without it send the images as text."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            servers=app.servers,
        )
        for component in schema.get("components", {}).get("schemas", {}).values():
            for prop in component.get("properties", {}).values():
                if prop.get("type") == "string" and "contentMediaType" in prop:
                    prop["format"] = "binary"
        app.openapi_schema = schema
    return app.openapi_schema
