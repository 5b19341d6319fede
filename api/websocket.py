"""`WS /ws/stream`: live matching of a frame stream against a reference frame.

Protocol. The client sends frames as binary messages (JPEG or WebP) and control
messages as JSON text: `{"type": "set_reference"}`, `clear_reference`, `pause`,
`resume`, and `{"type": "settings", "threshold": 0.2, "max_matches": 500, "size": 640,
"lines": true, "points": true, "outline": true}` (`size`: the longest side, in pixels, that
frames are shrunk to before matching; `lines`, `points`, `outline`: what the overlay draws).
The server answers each processed frame with a JSON `result` message as soon as the
matcher and a homography fit are done (`num_inliers`; `homography`, reference -> frame,
null when the reference is lost: fewer than `MIN_INLIERS` inliers), then with one binary
message, the JPEG overlay (reference | frame, matches, the reference's border warped onto
the frame, FPS). The overlay of frame N always comes after N's result and before
the next result; replies to control messages may come in between. Problems come back as
`{"type": "error", "code": ..., "detail": ...}` and the connection stays open, whatever
failed (a frame that does not decode, an overlay that cannot be encoded, a malformed or
too deeply nested control message, a server bug: `internal_error` and the request id).

Origins: a browser page may open the stream only from the service's own origin (the
`Origin` header's host equal to `Host`) or from one of `--allowed-origins`; any other is
refused before the handshake (HTTP 403). Clients that send no Origin (not browsers) pass.
Frames are JPEG or WebP; another format answers `unsupported_image`.

Latest frame wins: one frame is matched at a time per connection, and a frame that
arrives while another waits replaces it (counted in `frames_dropped`). Until a
reference is set, the connection's first frame is the reference.

Pipelining: drawing and encoding frame N's overlay runs while frame N+1 is decoded and
matched, so a client that sends its next frame when a `result` arrives (as the page
does) keeps the matcher busy and the stream runs at nearly the bare matcher's rate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError
from starlette.datastructures import Headers

from coarse_loftr.inference import GeometryResult, draw_matches, estimate_homography
from coarse_loftr.inference.drawing import MAX_LINES
from coarse_loftr.inference.errors import CoarseLoftrError
from coarse_loftr.inference.preprocess import to_bgr8

from .errors import ApiError
from .logs import REQUEST_ID
from .service import Service

router = APIRouter()
log = logging.getLogger("coarse_loftr.api")

#: Formats a frame may come in (Pillow's names; MPO is a JPEG with extra pictures).
FRAME_FORMATS = frozenset({"JPEG", "MPO", "WEBP"})
#: Longest control message: a JSON object of a few fields.
MAX_CONTROL_CHARS = 4096


class _Control(BaseModel):
    # strict: `"max_matches": true` or `"threshold": "0.5"` is refused, not coerced.
    model_config = ConfigDict(extra="forbid", strict=True)


class SetReference(_Control):
    type: Literal["set_reference"]


class ClearReference(_Control):
    type: Literal["clear_reference"]


class Pause(_Control):
    type: Literal["pause"]


class Resume(_Control):
    type: Literal["resume"]


class Settings(_Control):
    type: Literal["settings"]
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    max_matches: int | None = Field(None, ge=1, le=100_000)
    size: int | None = Field(None, ge=64, le=4096)
    lines: StrictBool | None = None
    points: StrictBool | None = None
    outline: StrictBool | None = None


Control = Annotated[SetReference | ClearReference | Pause | Resume | Settings, Field(discriminator="type")]
_CONTROL: TypeAdapter[Any] = TypeAdapter(Control)
_KINDS = ("set_reference", "clear_reference", "pause", "resume", "settings")


class FpsMeter:
    """Frames per second over the last `window` seconds."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self.rate = 0.0  # the value of the last tick

    def tick(self) -> float:
        now = time.perf_counter()
        self._times.append(now)
        while now - self._times[0] > self.window:
            self._times.popleft()
        if len(self._times) < 2:
            self.rate = 0.0
        else:
            self.rate = (len(self._times) - 1) / (self._times[-1] - self._times[0])
        return self.rate


def fit_frame(image: np.ndarray, max_side: int) -> np.ndarray:
    """Decoded frame -> (H, W, 3) uint8 BGR with its longest side at most `max_side`."""
    image = to_bgr8(image)
    scale = max_side / max(image.shape[:2])
    if scale < 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


#: With fewer homography inliers than this the reference counts as lost (no outline).
MIN_INLIERS = 12


@dataclass(frozen=True)
class View:
    """What a stream's overlay draws (the page's toggles)."""

    lines: bool = True
    points: bool = True
    outline: bool = True


def track(result: Any) -> GeometryResult:
    """The homography reference -> frame of a match result, its matrix None when lost."""
    geometry = estimate_homography(result)
    if geometry.matrix is not None and geometry.num_inliers < MIN_INLIERS:
        geometry = replace(geometry, matrix=None)
    return geometry


def render_overlay(
    reference: np.ndarray,
    frame: np.ndarray,
    result: Any,
    fps: float,
    quality: int,
    geometry: GeometryResult | None = None,
    view: View = View(),
) -> bytes:
    """Reference | frame with the matches (inliers apart while the reference is tracked:
    the inliers of a lost fit mean nothing), the reference's border warped onto the frame
    and the server FPS drawn, as JPEG bytes."""
    tracked = geometry is not None and geometry.matrix is not None
    canvas = draw_matches(
        reference,
        frame,
        result.keypoints0,
        result.keypoints1,
        result.confidence,
        inliers=geometry.inliers if geometry is not None and tracked else None,
        text=f"{fps:.1f} FPS",
        max_lines=MAX_LINES if view.lines or view.points else 0,
        style="both" if view.lines and view.points else "lines" if view.lines else "points",
        homography=None if geometry is None else geometry.matrix,
        outline=view.outline and geometry is not None,
    )
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("could not encode the overlay")
    return encoded.tobytes()


class StreamSession:
    """The state of one connection; everything is freed when it ends."""

    def __init__(self, websocket: WebSocket, service: Service) -> None:
        self.ws, self.service = websocket, service
        self.threshold: float | None = None  # None: the matcher's default
        self.max_matches: int | None = None
        self.view = View()
        self.max_side = service.settings.ws_max_side
        self.reference: np.ndarray | None = None
        self.reference_id: int | None = None
        self.last_frame: tuple[int, np.ndarray] | None = None
        self.paused = False
        self.received = self.dropped = 0
        self.pending: tuple[int, bytes] | None = None
        self.wake = asyncio.Event()
        self.fps = FpsMeter()
        self.send_lock = asyncio.Lock()
        self.overlay_task: asyncio.Task | None = None

    async def run(self) -> None:
        await self.ws.accept()
        self.service.metrics.sessions.inc()
        self.service.streams.add(self.fps)
        width, height = self.service.live_matcher.input_size
        await self.send(
            {
                "type": "ready",
                "model": self.service.live_matcher.info.name,
                "input_size": [width, height],
                "backend": self.service.backend_name,
                **self.settings(),
            }
        )
        processor = asyncio.create_task(self.process_frames())
        disconnected = False
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    disconnected = True
                    break
                if message.get("bytes") is not None:
                    await self.on_frame(message["bytes"])
                elif message.get("text") is not None:
                    await self.on_control(message["text"])
                if processor.done():  # the socket failed while sending
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.service.metrics.sessions.dec()
            self.service.streams.discard(self.fps)
            processor.cancel()
            try:
                await asyncio.gather(processor, return_exceptions=True)
            except asyncio.CancelledError:
                # A server that closes the connection right after the client's disconnect
                # (Starlette's test client does) cancels this wait: the session is over
                # either way, so it ends normally; any other cancellation goes on.
                if not disconnected:
                    raise

    def settings(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "max_matches": self.max_matches,
            "size": self.max_side,
            **asdict(self.view),
        }

    async def send(self, payload: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(payload))

    async def error(self, code: str, detail: str, **extra: Any) -> None:
        await self.send({"type": "error", "code": code, "detail": detail, **extra})

    async def on_frame(self, data: bytes) -> None:
        self.received += 1
        frame_id = self.received
        limit = self.service.settings.ws_max_frame_bytes
        if len(data) > limit:
            await self.error(
                "frame_too_large", f"frame has {len(data)} bytes; the limit is {limit}", frame_id=frame_id
            )
        elif self.paused:
            await self.send({"type": "skipped", "frame_id": frame_id, "reason": "paused"})
        else:
            if self.pending is not None:
                self.dropped += 1
                self.service.metrics.frames.labels("dropped").inc()
            self.pending = (frame_id, data)
            self.wake.set()

    async def on_control(self, text: str) -> None:
        if len(text) > MAX_CONTROL_CHARS:
            return await self.error(
                "invalid_message", f"control messages are at most {MAX_CONTROL_CHARS} characters"
            )
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
            return await self.error("invalid_json", "control messages must be JSON objects")
        if not isinstance(data, dict) or data.get("type") not in _KINDS:
            kind = data.get("type") if isinstance(data, dict) else None
            return await self.error(
                "unknown_message", f"unknown message type {kind!r}; expected one of {', '.join(_KINDS)}"
            )
        try:
            control = _CONTROL.validate_python(data)
        except ValidationError as error:
            detail = "; ".join(
                f"{'.'.join(map(str, e['loc'][1:])) or 'message'}: {e['msg']}" for e in error.errors()
            )
            return await self.error("invalid_message", detail)
        if isinstance(control, SetReference):
            if self.last_frame is None:
                self.reference = None  # the next frame becomes the reference
            else:
                self.reference_id, self.reference = self.last_frame
            await self.send(
                {
                    "type": "reference_set",
                    "frame_id": self.reference_id if self.reference is not None else None,
                }
            )
        elif isinstance(control, ClearReference):
            self.reference = self.reference_id = None
            await self.send({"type": "reference_cleared"})
        elif isinstance(control, (Pause, Resume)):
            self.paused = isinstance(control, Pause)
            if self.paused:
                self.pending = None
            await self.send({"type": "paused" if self.paused else "resumed"})
        else:
            for name in ("threshold", "max_matches"):
                if name in control.model_fields_set:
                    setattr(self, name, getattr(control, name))
            if control.size is not None:
                self.max_side = control.size
            toggles = {name: getattr(control, name) for name in asdict(self.view)}
            self.view = replace(self.view, **{k: v for k, v in toggles.items() if v is not None})
            await self.send({"type": "settings", **self.settings()})

    async def process_frames(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if self.pending is None:
                    continue
                (frame_id, data), self.pending = self.pending, None
                try:
                    await self.process(frame_id, data)
                except (ApiError, CoarseLoftrError) as error:
                    code = error.code
                    if code == "busy":
                        self.dropped += 1
                    self.service.metrics.frames.labels("dropped" if code == "busy" else "error").inc()
                    detail = error.detail if isinstance(error, ApiError) else str(error)
                    await self.error(code, detail, frame_id=frame_id)
                except Exception:  # a bug: the stream goes on, the details go to the log
                    log.exception("stream frame failed", extra={"frame_id": frame_id})
                    self.service.metrics.frames.labels("error").inc()
                    await self.internal_error(frame_id)
        finally:
            if self.overlay_task is not None:
                self.overlay_task.cancel()
                await asyncio.gather(self.overlay_task, return_exceptions=True)

    async def process(self, frame_id: int, data: bytes) -> None:
        start = time.perf_counter()
        with self.service.budget.reservation() as held:
            # The frame is shrunk to max_side anyway: a large JPEG decodes reduced.
            needed = (self.max_side, self.max_side)
            (decoded,) = await self.service.decode(held, [("frame", data)], needed, FRAME_FORMATS, live=True)
            frame = await asyncio.to_thread(fit_frame, decoded.image, self.max_side)
            del decoded
        self.last_frame = (frame_id, frame)
        if self.reference is None:
            self.reference_id, self.reference = frame_id, frame
            await self.send({"type": "reference_set", "frame_id": frame_id})
        options: dict[str, Any] = {"max_matches": self.max_matches}
        if self.threshold is not None:
            options["threshold"] = self.threshold
        result, inference_ms = await self.service.match(self.reference, frame, live=True, **options)
        fps = self.fps.tick()
        geometry = await asyncio.to_thread(track, result)
        self.service.metrics.frames.labels("processed").inc()
        await self.overlay_sent()
        await self.send(
            {
                "type": "result",
                "frame_id": frame_id,
                "reference_id": self.reference_id,
                "num_matches": len(result.confidence),
                "num_inliers": geometry.num_inliers,
                "homography": None if geometry.matrix is None else geometry.matrix.tolist(),
                "inference_ms": round(inference_ms, 2),
                "processing_ms": round((time.perf_counter() - start) * 1000.0, 2),
                "server_fps": round(fps, 2),
                "frames_dropped": self.dropped,
                "frames_received": self.received,
            }
        )
        self.overlay_task = asyncio.create_task(
            self.send_overlay(self.reference, frame, result, fps, geometry)
        )

    async def overlay_sent(self) -> None:
        """Wait for the previous frame's overlay, so overlays and results alternate."""
        if self.overlay_task is not None:
            task, self.overlay_task = self.overlay_task, None
            await task

    async def send_overlay(
        self, reference: np.ndarray, frame: np.ndarray, result: Any, fps: float, geometry: GeometryResult
    ) -> None:
        """Draw and send the overlay; when drawing fails the client gets an error in its
        place (it waits for one or the other), and the stream goes on."""
        start = time.perf_counter()
        try:
            overlay = await asyncio.to_thread(
                render_overlay,
                reference,
                frame,
                result,
                fps,
                self.service.settings.overlay_quality,
                geometry,
                self.view,
            )
        except Exception:
            log.exception("stream overlay failed")
            return await self.internal_error(None, code="overlay_failed")
        self.service.metrics.observe("draw", True, time.perf_counter() - start)
        async with self.send_lock:
            await self.ws.send_bytes(overlay)

    async def internal_error(self, frame_id: int | None, code: str = "internal_error") -> None:
        await self.error(
            code,
            "the server could not finish this frame; quote the request id when you report it",
            frame_id=frame_id,
            request_id=REQUEST_ID.get(),
        )


def origin_allowed(headers: Headers, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), the service's own origin (its host[:port] is the Host
    header), or one of `allowed` ('*': any)."""
    origin = headers.get("origin")
    if origin is None or "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    host = origin.split("://", 1)[-1].rstrip("/")
    return host == headers.get("host", "")


@router.websocket("/ws/stream")
async def stream(websocket: WebSocket) -> None:
    service: Service = websocket.app.state.service
    if not origin_allowed(websocket.headers, service.settings.allowed_origins):
        log.warning("websocket refused", extra={"origin": websocket.headers.get("origin", "")[:200]})
        await websocket.close(code=1008)  # before accept: the handshake answers 403
        return
    await StreamSession(websocket, service).run()
