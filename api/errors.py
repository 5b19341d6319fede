"""One error shape for every failure: `{"error": code, "detail": plain words, "request_id"}`.

Every `CoarseLoftrError` (inference/errors.py) becomes an answer here, in one place, from
its own `http_status` and `code` (a `ResourceBusy` with `Retry-After`); `ApiError` is for
failures the routes themselves detect. Details of unexpected errors go to the log only
(`api.middleware.RequestContext` answers them with a fixed sentence).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from coarse_loftr.inference.errors import CoarseLoftrError, ResourceBusy

from .logs import REQUEST_ID
from .schemas import ErrorResponse

log = logging.getLogger("coarse_loftr.api")


class ApiError(Exception):
    """An expected failure with its HTTP status; raised anywhere below a route."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=code, detail=detail, request_id=REQUEST_ID.get())
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _describe_validation(error: RequestValidationError) -> str:
    """pydantic's findings in the caller's words: which field, what is wrong with it (never
    a Python type name: a text field sent for a file reads "must be a file")."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query")) or "request"
        message = str(item.get("msg", "invalid"))
        if item.get("type") == "missing":
            message = "is required"
        elif "UploadFile" in message or "<class" in message:
            message = "must be a file (a multipart part with a filename)"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.detail, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe_validation(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            error.status_code, "http_error"
        )
        return error_response(error.status_code, code, str(error.detail), error.headers)

    @app.exception_handler(CoarseLoftrError)
    async def _expected(request: Request, error: CoarseLoftrError) -> JSONResponse:
        headers = None
        if isinstance(error, ResourceBusy):
            headers = {"Retry-After": str(request.app.state.service.settings.retry_after_s)}
        if error.http_status >= 500 and not isinstance(error, ResourceBusy):
            log.error("expected error answered %d: %s", error.http_status, error)
        return error_response(error.http_status, error.code, str(error), headers)


def responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI documentation of the error answers a route can give."""
    words = {
        400: "A malformed multipart body",
        408: "The body came too slowly",
        404: "Not found",
        413: "An image is larger than the byte or pixel limit",
        415: "A part is not a decodable image",
        422: "A missing part, an empty or corrupt image, or an out-of-range option",
        503: "The inference queue or the memory budget is full; retry after Retry-After seconds",
    }
    return {status: {"model": ErrorResponse, "description": words[status]} for status in statuses}
