"""Side-by-side match drawing, cheap enough to run on every frame of a live stream."""

from __future__ import annotations

import cv2
import numpy as np

from .preprocess import to_bgr8


def _fit_height(image: np.ndarray, height: int) -> tuple[np.ndarray, float]:
    if image.shape[0] == height:
        return image, 1.0
    scale = height / image.shape[0]
    width = max(1, round(image.shape[1] * scale))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), scale


def _put_text(canvas: np.ndarray, text: str) -> None:
    scale = max(0.5, canvas.shape[0] / 600)
    thickness = max(1, round(scale * 1.5))
    line_height = round(28 * scale)
    for row, line in enumerate(text.splitlines()):
        origin = (10, round(10 + line_height * (row + 0.8)))
        # A dark outline keeps the text readable over any image.
        cv2.putText(
            canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA
        )
        cv2.putText(
            canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA
        )


def draw_matches(
    image0: np.ndarray,
    image1: np.ndarray,
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    confidence: np.ndarray,
    inliers: np.ndarray | None = None,
    text: str | None = None,
    max_lines: int = 500,
) -> np.ndarray:
    """image0 | image1 side by side with a line per match.

    keypoints0 / keypoints1: (N, 2) x, y in pixels of image0 / image1; confidence:
    (N,) in [0, 1], colours the lines (turbo colormap, 16 levels); inliers: (N,) bool, outliers
    drawn dimmed beneath the inliers. The shorter image is scaled to the taller one's
    height. At most `max_lines` lines (the most confident, matches being sorted so).
    Returns (H, W0' + W1', 3) uint8 BGR.
    """
    bgr0, bgr1 = to_bgr8(image0), to_bgr8(image1)
    height = max(bgr0.shape[0], bgr1.shape[0])
    bgr0, scale0 = _fit_height(bgr0, height)
    bgr1, scale1 = _fit_height(bgr1, height)
    canvas = np.concatenate([bgr0, bgr1], axis=1)

    kpts0 = np.asarray(keypoints0, dtype=np.float64).reshape(-1, 2)
    kpts1 = np.asarray(keypoints1, dtype=np.float64).reshape(-1, 2)
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if not len(kpts0) == len(kpts1) == len(conf):
        raise ValueError(f"{len(kpts0)}, {len(kpts1)} keypoints and {len(conf)} confidences")
    inlier = (
        np.ones(len(conf), dtype=bool) if inliers is None else np.asarray(inliers, dtype=bool).reshape(-1)
    )
    if len(inlier) != len(conf):
        raise ValueError(f"{len(inlier)} inlier flags for {len(conf)} matches")

    count = min(len(conf), max_lines)
    # Keypoints are pixel centres; the canvas pixel of x is (x + 0.5) * scale - 0.5.
    start = np.rint((kpts0[:count] + 0.5) * scale0 - 0.5).astype(np.int32)
    end = np.rint((kpts1[:count] + 0.5) * scale1 - 0.5).astype(np.int32)
    end[:, 0] += bgr0.shape[1]
    # Lines are grouped by colour (confidence quantised to 16 levels): one cv2.polylines
    # call per group instead of a Python-level call per line, and aliased lines (LINE_AA
    # costs ~6x more) keep this about 1 ms per 640x480 frame pair.
    levels = np.clip(conf[:count] * 16, 0, 15).astype(np.int32)
    palette = (
        cv2.applyColorMap(((np.arange(16) + 0.5) * 16).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_TURBO)
        .reshape(-1, 3)
        .astype(np.int32)
    )
    segments = np.stack([start, end], axis=1)  # (count, 2, 2)
    # Outliers first (dimmed), so that inliers stay on top.
    for is_inlier, dim in ((False, 3), (True, 1)):
        for level in np.unique(levels[inlier[:count] == is_inlier]).tolist():
            chosen = (inlier[:count] == is_inlier) & (levels == level)
            colour = (palette[level] // dim).tolist()
            cv2.polylines(canvas, list(segments[chosen]), False, colour, 1, cv2.LINE_8)
    if text:
        _put_text(canvas, text)
    return canvas
