"""HTTP routes: /match, /register, /health, /info and the page."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import APIRouter, Depends, File, Header, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from coarse_loftr.inference import draw_matches, estimate_fundamental, estimate_homography, warp_blend
from coarse_loftr.inference.config import MatchConfig, RegistrationConfig
from coarse_loftr.inference.drawing import Style

from .budget import Reservation
from .errors import ApiError, responses
from .schemas import (
    HealthResponse,
    ImageSize,
    Include,
    InfoResponse,
    MatchResponse,
    OutputFormat,
    RansacMethod,
    RegisterResponse,
    Timings,
)
from .service import Service

router = APIRouter()

_PNG = {"content": {"image/png": {}}, "description": "the overlay image (format=png or Accept: image/png)"}


def get_service(request: Request) -> Service:
    return request.app.state.service


async def reservation(service: Annotated[Service, Depends(get_service)]) -> AsyncIterator[Reservation]:
    """The request's share of the memory budget, released when the request is done (an
    async dependency: the budget is only touched on the event loop)."""
    with service.budget.reservation() as held:
        yield held


@dataclass(frozen=True)
class MatchOptions:
    threshold: float
    max_matches: int | None
    refine: bool
    rotations: bool
    ransac: RansacMethod
    ransac_threshold: float
    png: bool
    include: frozenset[Include]
    draw: Style


def match_options(
    threshold: Annotated[
        float, Query(ge=0.0, le=1.0, description="minimum confidence")
    ] = MatchConfig.threshold,
    max_matches: Annotated[int | None, Query(ge=1, le=100_000, description="keep the most confident")] = None,
    refine: Annotated[bool, Query(description="sub-cell refinement of b's points")] = MatchConfig.refine,
    rotations: Annotated[
        bool,
        Query(description="also try b turned by 90, 180 and 270 degrees, keep the best turn (4x the work)"),
    ] = MatchConfig.rotations,
    ransac: Annotated[RansacMethod, Query(description="robust geometry to fit")] = RansacMethod.none,
    ransac_threshold: Annotated[
        float, Query(gt=0.0, le=100.0, description="inlier threshold, pixels of b")
    ] = RegistrationConfig.threshold_px,
    format: Annotated[OutputFormat | None, Query(description="json (default) or png")] = None,
    include: Annotated[
        str | None,
        Query(
            description="comma-separated images to add to the JSON as base64 PNG, from the same model "
            "run: overlay (a | b, matches drawn), warp (a warped onto b, blended); e.g. overlay,warp"
        ),
    ] = None,
    draw: Annotated[Style, Query(description="overlay: lines, points or both")] = "both",
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> MatchOptions:
    png = format == OutputFormat.png or (format is None and _prefers_png(accept))
    return MatchOptions(
        threshold, max_matches, refine, rotations, ransac, ransac_threshold, png, _includes(include), draw
    )


def _includes(text: str | None) -> frozenset[Include]:
    names = {part.strip() for part in (text or "").split(",") if part.strip()}
    known = {item.value for item in Include}
    unknown = sorted(names - known)
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"include: unknown {', '.join(unknown)}; choose from {', '.join(sorted(known))}",
        )
    return frozenset(Include(name) for name in names)


def _prefers_png(accept: str | None) -> bool:
    if not accept:
        return False
    kinds = [part.split(";")[0].strip() for part in accept.split(",")]
    return "image/png" in kinds and "application/json" not in kinds


UploadA = Annotated[UploadFile, File(description="the first image (PNG, JPEG, WebP, TIFF, BMP)")]
UploadB = Annotated[UploadFile, File(description="the second image")]


@dataclass
class _Run:
    """A decoded and matched pair, with the clock readings of its steps."""

    image0: np.ndarray
    image1: np.ndarray
    result: Any  # inference.MatchResult
    inference_ms: float
    start: float
    decoded: float
    matched: float

    def timings(self) -> Timings:
        return Timings(
            decode=round((self.decoded - self.start) * 1000.0, 3),
            inference=round(self.inference_ms, 3),
            postprocess=_ms(self.matched),
            total=_ms(self.start),
        )


async def _decode_and_match(
    service: Service, a: UploadFile, b: UploadFile, options: MatchOptions, held: Reservation, reduce: bool
) -> _Run:
    """reduce: only points are answered, so a large JPEG may decode at reduced scale
    (the points are mapped back to its full-resolution pixels); pictures need it whole."""
    start = time.perf_counter()
    for name, upload in (("a", a), ("b", b)):
        if upload.size is not None:
            service.check_size(name, upload.size)
    # The parser spooled the parts to disk; reading them into memory is admitted too.
    service.admit(held, (a.size or 0) + (b.size or 0))
    data_a, data_b = await a.read(), await b.read()
    needed = service.matcher.input_size if reduce else None
    decoded0, decoded1 = await service.decode(held, [("a", data_a), ("b", data_b)], needed)
    decoded = time.perf_counter()
    result, inference_ms = await service.match(
        decoded0.image,
        decoded1.image,
        threshold=options.threshold,
        max_matches=options.max_matches,
        refine=options.refine,
        rotations=options.rotations,
    )
    result = service.full_resolution(result, decoded0, decoded1)
    return _Run(decoded0.image, decoded1.image, result, inference_ms, start, decoded, time.perf_counter())


def _size(size: tuple[int, int]) -> ImageSize:
    return ImageSize(width=size[0], height=size[1])


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ApiError(500, "encode_failed", "could not encode the overlay image")
    return encoded.tobytes()


def _base64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _matrix(geometry) -> list[list[float]] | None:
    return (
        None
        if geometry is None or geometry.matrix is None
        else np.asarray(geometry.matrix, dtype=float).tolist()
    )


@router.post(
    "/match",
    response_model=MatchResponse,
    tags=["matching"],
    responses={200: _PNG, **responses(400, 413, 415, 422, 503)},
)
async def match(
    a: UploadA,
    b: UploadB,
    options: Annotated[MatchOptions, Depends(match_options)],
    service: Annotated[Service, Depends(get_service)],
    held: Annotated[Reservation, Depends(reservation)],
):
    """Match two images. JSON by default, with `include=overlay,warp` the pictures too (one
    model run for everything); `format=png` answers the side-by-side overlay alone."""
    run = await _decode_and_match(service, a, b, options, held, reduce=not (options.png or options.include))
    image0, image1, result = run.image0, run.image1, run.result

    def postprocess():
        geometry = None
        if options.ransac == RansacMethod.homography:
            geometry = estimate_homography(result, threshold_px=options.ransac_threshold)
        elif options.ransac == RansacMethod.fundamental:
            geometry = estimate_fundamental(result, threshold_px=options.ransac_threshold)
        homography = None
        if options.ransac == RansacMethod.homography:
            homography = geometry.matrix
        elif Include.warp in options.include:  # the picture needs a homography of its own
            homography = estimate_homography(result, threshold_px=options.ransac_threshold).matrix
        overlay = warp = None
        if options.png or Include.overlay in options.include:
            overlay = _png(
                draw_matches(
                    image0,
                    image1,
                    result.keypoints0,
                    result.keypoints1,
                    result.confidence,
                    inliers=None if geometry is None else geometry.inliers,
                    style=options.draw,
                    homography=homography,
                    outline=options.ransac == RansacMethod.homography,
                )
            )
        if Include.warp in options.include and homography is not None:
            warp = _png(warp_blend(image0, image1, homography))
        return geometry, overlay, warp

    geometry, overlay, warp = await asyncio.to_thread(postprocess)
    if options.png:
        return Response(overlay, media_type="image/png")
    return MatchResponse(
        num_matches=len(result.confidence),
        keypoints0=result.keypoints0.tolist(),
        keypoints1=result.keypoints1.tolist(),
        confidence=result.confidence.tolist(),
        image_size0=_size(result.image_size0),
        image_size1=_size(result.image_size1),
        homography=_matrix(geometry),
        inliers=None if geometry is None else np.asarray(geometry.inliers, bool).tolist(),
        num_inliers=None if geometry is None else int(geometry.num_inliers),
        overlay_png=_base64(overlay),
        warp_png=_base64(warp),
        rotation_b=result.rotation1,
        timings_ms=run.timings(),
        model=result.model,
        backend=result.backend,
    )


@router.post(
    "/register",
    response_model=RegisterResponse,
    tags=["matching"],
    responses={200: _PNG, **responses(400, 413, 415, 422, 503)},
)
async def register(
    a: UploadA,
    b: UploadB,
    options: Annotated[MatchOptions, Depends(match_options)],
    service: Annotated[Service, Depends(get_service)],
    held: Annotated[Reservation, Depends(reservation)],
):
    """Fit a homography from a to b and blend a, warped, over b. The `ransac` option is
    ignored (always a homography); `format=png` answers the blended image itself."""
    run = await _decode_and_match(service, a, b, options, held, reduce=False)
    image0, image1, result = run.image0, run.image1, run.result

    def postprocess():
        geometry = estimate_homography(result, threshold_px=options.ransac_threshold)
        if geometry.matrix is None:
            return geometry, None
        return geometry, _png(warp_blend(image0, image1, geometry.matrix))

    geometry, overlay = await asyncio.to_thread(postprocess)
    if options.png:
        if overlay is None:
            raise ApiError(
                422,
                "no_homography",
                f"no homography found from {len(result.confidence)} matches; try a lower threshold",
            )
        return Response(overlay, media_type="image/png")
    return RegisterResponse(
        homography=_matrix(geometry),
        num_matches=len(result.confidence),
        num_inliers=int(geometry.num_inliers),
        image_size0=_size(result.image_size0),
        image_size1=_size(result.image_size1),
        overlay_png=_base64(overlay),
        timings_ms=run.timings(),
        model=result.model,
        backend=result.backend,
    )


@router.get("/health", response_model=HealthResponse, tags=["service"])
async def health(service: Annotated[Service, Depends(get_service)]) -> HealthResponse:
    """Liveness: the model is loaded and the server answers."""
    return HealthResponse(status="ok", backend=service.backend_name)


@router.get("/info", response_model=InfoResponse, tags=["service"])
async def info(request: Request, service: Annotated[Service, Depends(get_service)]) -> InfoResponse:
    """The loaded model, its input sizes (uploads, live stream), the backend and the limits."""
    width, height = service.matcher.input_size
    live_width, live_height = service.live_matcher.input_size
    return InfoResponse(
        model=service.matcher.info.name,
        input_size=ImageSize(width=width, height=height),
        live_input_size=ImageSize(width=live_width, height=live_height),
        backend=service.backend_name,
        version=request.app.version,
        max_upload_bytes=service.settings.max_upload_bytes,
        max_image_bytes=service.settings.max_image_bytes,
        replicas=await service.engine.replicas(),
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request, service: Annotated[Service, Depends(get_service)]):
    return request.app.state.templates.TemplateResponse(
        request,
        "index.html",
        {
            "model": service.matcher.info.name,
            "backend": service.backend_name,
            "upload_size": "x".join(map(str, service.matcher.input_size)),
            "live_size": "x".join(map(str, service.live_matcher.input_size)),
            "version": request.app.version,
            "max_side": service.settings.ws_max_side,
            # The page's defaults are the library's, not numbers of its own.
            "threshold": MatchConfig.threshold,
            "ransac_threshold": RegistrationConfig.threshold_px,
        },
    )
