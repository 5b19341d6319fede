"""Side-by-side match drawing for the API, the live stream and the CLI: legible at a glance,
bounded in size, and cheap enough to run on every frame of a stream (about 1 ms for a
640x480 pair; `coarse-loftr bench` prints it).

What a picture shows:
- image0 | image1 side by side on a canvas whose longest side is at most `max_side`; an
  image of extreme aspect ratio is letterboxed in a panel at most `MAX_PANEL_ASPECT` times
  as wide as the canvas is high (never stretched, never the unbounded canvas that scaling
  a 1000x10 image to a 10x1000 one's height would make);
- a spatially even sample of at most `max_lines` matches (the most confident in each cell
  of a grid over image0), not the N most confident, which crowd into the best-textured
  region;
- each match coloured by where its point lies in image0 (hue across the width, a lighter
  tint in the lower half), so a line can be followed from one image to the other; when a
  geometry was fitted, outliers are red and drawn beneath the inliers (the hues of
  inliers never reach red, nor the outline's magenta);
- lines, keypoint dots or both; optionally image0's border warped into image1 by a
  homography (or "lost" when there is none); a caption with the counts.

Pixel convention: keypoints are (x, y) with pixel centres at integer coordinates, in each
image's own pixels; canvas pixel = (x + 0.5) * scale - 0.5 + offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from .preprocess import to_bgr8

#: Default longest side of a drawn canvas, pixels (two 1280x960 images side by side fit).
MAX_CANVAS_SIDE = 2560
#: A panel is at most this many times as wide as it is high (wider images are letterboxed).
MAX_PANEL_ASPECT = 4.0
#: Default number of matches drawn.
MAX_LINES = 200

Style = Literal["lines", "points", "both"]
STYLES: tuple[Style, ...] = ("lines", "points", "both")

OUTLIER_BGR = (40, 40, 230)
OUTLINE_BGR = (255, 0, 255)  # magenta on a dark edge: apart from every match colour
_BACKGROUND = 32
_HUE_BINS, _TINT_BINS = 12, 2
# OpenCV hues are 0-180: 30 (yellow) .. 125 (blue-violet), so no inlier is drawn red
# (outliers) or magenta (the outline).
_HUES = np.linspace(30, 125, _HUE_BINS)


def _palette() -> np.ndarray:
    """(_TINT_BINS * _HUE_BINS, 3) int BGR: index = tint * _HUE_BINS + hue."""
    hsv = np.zeros((_TINT_BINS, _HUE_BINS, 3), np.uint8)
    hsv[:, :, 0] = np.rint(_HUES).astype(np.uint8)
    hsv[:, :, 1] = np.array([255, 150])[:, None]  # upper half saturated, lower half tinted
    hsv[:, :, 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).reshape(-1, 3).astype(np.int32)


_PALETTE = _palette()


@dataclass(frozen=True)
class Layout:
    """Where image0 and image1 sit on the canvas.

    size: canvas (width, height); scales: canvas pixels per image pixel (image0, image1);
    offsets: (x, y) canvas position of each image's top-left corner; panels: (x, width) of
    each image's panel (image0's starts at 0).
    """

    size: tuple[int, int]
    scales: tuple[float, float]
    offsets: tuple[tuple[int, int], tuple[int, int]]
    drawn: tuple[tuple[int, int], tuple[int, int]]  # (width, height) each image is drawn at
    panels: tuple[tuple[int, int], tuple[int, int]]

    def to_canvas(self, which: int, points: np.ndarray) -> np.ndarray:
        """(N, 2) x, y in image `which`'s pixels -> (N, 2) float64 canvas pixels."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (points + 0.5) * self.scales[which] - 0.5 + np.asarray(self.offsets[which], np.float64)


def side_by_side_layout(
    size0: tuple[int, int],
    size1: tuple[int, int],
    max_side: int = MAX_CANVAS_SIDE,
    max_aspect: float = MAX_PANEL_ASPECT,
) -> Layout:
    """The canvas for image0 (size0 = (w, h)) beside image1: both drawn at the taller one's
    height, each in a panel at most `max_aspect` times as wide as high (letterboxed,
    centred), then everything scaled down so that the canvas' longest side is at most
    `max_side` (never up: small images stay small)."""
    if max_side < 16:
        raise ValueError(f"max_side must be at least 16 pixels, got {max_side}")
    height = float(max(size0[1], size1[1]))
    panels, fits = [], []
    for width_i, height_i in (size0, size1):
        fit = height / height_i
        panel = min(width_i * fit, max_aspect * height)
        panels.append(panel)
        fits.append(min(fit, panel / width_i))
    shrink = min(1.0, max_side / max(height, panels[0] + panels[1]))
    canvas_h = max(1, round(height * shrink))
    widths = [max(1, round(panel * shrink)) for panel in panels]
    scales, offsets, drawn = [], [], []
    x = 0
    for (width_i, height_i), fit, panel_w in zip((size0, size1), fits, widths):
        scale = fit * shrink
        w, h = min(panel_w, max(1, round(width_i * scale))), min(canvas_h, max(1, round(height_i * scale)))
        scales.append(scale)
        drawn.append((w, h))
        offsets.append((x + (panel_w - w) // 2, (canvas_h - h) // 2))
        x += panel_w
    return Layout(
        size=(x, canvas_h),
        scales=(scales[0], scales[1]),
        offsets=(offsets[0], offsets[1]),
        drawn=(drawn[0], drawn[1]),
        panels=((0, widths[0]), (widths[0], widths[1])),
    )


def even_sample(
    keypoints: np.ndarray, confidence: np.ndarray, image_size: tuple[int, int], count: int
) -> np.ndarray:
    """Indices of at most `count` matches spread over the image: the most confident match
    in each cell of a grid of about `count` cells (image_size = (w, h) of the image the
    keypoints (N, 2) lie in); when fewer cells are occupied, each cell's second best, and
    so on; within a round the most confident first."""
    total = len(confidence)
    if total <= count:
        return np.arange(total)
    width, height = image_size
    columns = max(1, round(np.sqrt(count * width / height)))
    rows = max(1, round(count / columns))
    cx = np.clip((keypoints[:, 0] + 0.5) * columns / width, 0, columns - 1).astype(np.int64)
    cy = np.clip((keypoints[:, 1] + 0.5) * rows / height, 0, rows - 1).astype(np.int64)
    cell = cy * columns + cx
    order = np.lexsort((-confidence, cell))  # by cell, most confident first within each
    sorted_cells = cell[order]
    _, first, counts = np.unique(sorted_cells, return_index=True, return_counts=True)
    # Rank within the cell: every cell's best match first, then every cell's second, ...
    rank = np.arange(total) - np.repeat(first, counts)
    best = order[np.lexsort((-confidence[order], rank))[:count]]
    return np.sort(best)


def _caption(canvas: np.ndarray, lines: list[str]) -> None:
    """Text in the bottom-left corner on a dark box (readable over any image)."""
    scale = float(np.clip(canvas.shape[0] / 900, 0.4, 1.2))
    thickness = 1 if scale < 0.8 else 2
    line_h = round(22 * scale)
    widths = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for line in lines]
    box_w = min(canvas.shape[1], max(widths) + 12)
    box_h = min(canvas.shape[0], line_h * len(lines) + 8)
    top = canvas.shape[0] - box_h
    region = canvas[top:, :box_w]
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken 60 %
    for row, line in enumerate(lines):
        origin = (6, top + 4 + round(line_h * (row + 0.78)))
        cv2.putText(
            canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA
        )


def _label(canvas: np.ndarray, text: str, x: int, colour: tuple[int, int, int]) -> None:
    scale = float(np.clip(canvas.shape[0] / 500, 0.5, 2.0))
    thickness = max(1, round(scale * 2))
    origin = (x + 8, round(30 * scale))
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 3, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _stamp(canvas: np.ndarray, points: np.ndarray, colours: np.ndarray, radius: float) -> None:
    """Round dots of `radius` pixels at (M, 2) int x, y canvas points, colours (M, 3) BGR,
    later points over earlier ones: one numpy assignment for all of them (thick
    zero-length OpenCV lines cost a call and a polygon fill each)."""
    reach = int(radius)
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    inside = dx**2 + dy**2 <= radius**2
    ys = (points[:, 1, None] + dy[inside][None]).ravel()
    xs = (points[:, 0, None] + dx[inside][None]).ravel()
    keep = (ys >= 0) & (ys < canvas.shape[0]) & (xs >= 0) & (xs < canvas.shape[1])
    canvas[ys[keep], xs[keep]] = np.repeat(colours, inside.sum(), axis=0)[keep]


def _outline(canvas: np.ndarray, layout: Layout, corners1: np.ndarray) -> None:
    """The (4, 2) polygon, in image1's pixels, drawn inside image1 only: a border that maps
    beyond image1 must not cross into image0's panel."""
    (x, y), (w, h) = layout.offsets[1], layout.drawn[1]
    # A corner near the horizon maps far away: clip before the integer cast.
    polygon = np.clip(layout.to_canvas(1, corners1) - [x, y], -1e5, 1e5)
    region = canvas[y : y + h, x : x + w].copy()  # OpenCV draws on contiguous arrays
    thickness = max(2, round(min(canvas.shape[:2]) / 160))
    points = [np.rint(polygon).astype(np.int32)]
    cv2.polylines(region, points, True, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.polylines(region, points, True, OUTLINE_BGR, thickness, cv2.LINE_AA)
    canvas[y : y + h, x : x + w] = region


def _place(canvas: np.ndarray, image: np.ndarray, offset: tuple[int, int], size: tuple[int, int]) -> None:
    # Resize before the display conversion: a 16-bit or 4-channel image is shrunk first.
    if (image.shape[1], image.shape[0]) != size:
        shrinking = size[0] < image.shape[1]
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    x, y = offset
    canvas[y : y + size[1], x : x + size[0]] = to_bgr8(image)


def _colours(kpts0: np.ndarray, size0: tuple[int, int], inlier: np.ndarray | None) -> np.ndarray:
    """(N,) palette index per match from its point in image0; -1 for outliers."""
    width, height = size0
    hue = np.clip((kpts0[:, 0] + 0.5) * _HUE_BINS / width, 0, _HUE_BINS - 1).astype(np.int64)
    tint = np.clip((kpts0[:, 1] + 0.5) * _TINT_BINS / height, 0, _TINT_BINS - 1).astype(np.int64)
    index = tint * _HUE_BINS + hue
    if inlier is not None:
        index[~inlier] = -1
    return index


def draw_matches(
    image0: np.ndarray,
    image1: np.ndarray,
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    confidence: np.ndarray,
    inliers: np.ndarray | None = None,
    text: str | None = None,
    max_lines: int = MAX_LINES,
    style: Style = "both",
    homography: np.ndarray | None = None,
    outline: bool = False,
    caption: bool = True,
    max_side: int = MAX_CANVAS_SIDE,
) -> np.ndarray:
    """image0 | image1 with a sample of the matches drawn (see the module's docstring).

    image0 / image1: any decoded image (uint8 / uint16; gray, BGR or BGRA).
    keypoints0 / keypoints1: (N, 2) x, y in pixels of image0 / image1; confidence: (N,)
    in [0, 1] (picks the sample); inliers: (N,) bool when a geometry was fitted (outliers
    red), else None. text: extra caption lines (e.g. the stream's FPS). max_lines: at most
    this many matches drawn; style: "lines", "points" or "both". outline: draw image0's
    border mapped into image1 by `homography` ((3, 3) image0 -> image1), or "lost" when it
    is None. caption: the counts in the bottom-left corner. max_side: longest canvas side.
    Returns (H, W, 3) uint8 BGR with max(H, W) <= max_side.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    kpts0 = np.asarray(keypoints0, dtype=np.float64).reshape(-1, 2)
    kpts1 = np.asarray(keypoints1, dtype=np.float64).reshape(-1, 2)
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if not len(kpts0) == len(kpts1) == len(conf):
        raise ValueError(f"{len(kpts0)}, {len(kpts1)} keypoints and {len(conf)} confidences")
    inlier = None if inliers is None else np.asarray(inliers, dtype=bool).reshape(-1)
    if inlier is not None and len(inlier) != len(conf):
        raise ValueError(f"{len(inlier)} inlier flags for {len(conf)} matches")

    size0, size1 = (image0.shape[1], image0.shape[0]), (image1.shape[1], image1.shape[0])
    layout = side_by_side_layout(size0, size1, max_side)
    canvas = np.full((layout.size[1], layout.size[0], 3), _BACKGROUND, np.uint8)
    _place(canvas, image0, layout.offsets[0], layout.drawn[0])
    _place(canvas, image1, layout.offsets[1], layout.drawn[1])

    chosen = even_sample(kpts0, conf, size0, max(0, max_lines))
    start = np.rint(layout.to_canvas(0, kpts0[chosen])).astype(np.int32)
    end = np.rint(layout.to_canvas(1, kpts1[chosen])).astype(np.int32)
    colour_index = _colours(kpts0[chosen], size0, None if inlier is None else inlier[chosen])
    if style != "points":
        segments = np.stack([start, end], axis=1)  # (count, 2, 2)
        # One cv2.polylines call per colour (not a Python call per line): outliers first, so
        # that inliers stay on top. Lines are aliased (LINE_AA costs several times more).
        for index in np.unique(colour_index).tolist():
            colour = OUTLIER_BGR if index < 0 else _PALETTE[index].tolist()
            cv2.polylines(canvas, list(segments[colour_index == index]), False, colour, 1, cv2.LINE_8)
    if style != "lines":
        radius = max(1.5, min(canvas.shape[:2]) / 320)
        first = np.argsort(colour_index >= 0, kind="stable")  # outliers first: inliers on top
        colours = np.where(colour_index[:, None] < 0, np.array(OUTLIER_BGR), _PALETTE[colour_index])
        dots = np.concatenate([start[first], end[first]])
        _stamp(canvas, dots, np.concatenate([colours[first]] * 2), radius)

    if outline:
        if homography is None:
            _label(canvas, "lost", layout.panels[1][0], OUTLIER_BGR)
        else:
            w0, h0 = size0
            corners = np.array([[-0.5, -0.5], [w0 - 0.5, -0.5], [w0 - 0.5, h0 - 0.5], [-0.5, h0 - 0.5]])
            warped = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), np.asarray(homography, np.float64))
            _outline(canvas, layout, warped.reshape(-1, 2))
    lines = text.splitlines() if text else []
    if caption:
        counts = f"{len(conf)} matches"
        if inlier is not None:
            counts += f", {int(inlier.sum())} inliers, {int((~inlier).sum())} outliers (red)"
        lines.append(f"{counts}; {len(chosen)} drawn")
    if lines:
        _caption(canvas, lines)
    return canvas
