"""Real-scene check: matches on a rectified stereo pair scored against its ground-truth disparity.

The pair is Middlebury 2014's motorcycle (Scharstein et al., GCPR 2014) as scikit-image ships
it (`skimage.data.stereo_motorcycle()`, 741x500, downscaled 4x; in the wheel, no download;
needs the `peers` extra). Disparity is given on the left image: the left pixel (x, y) shows
the same point as the right pixel (x - d(x, y), y); non-finite values have no ground truth.
A match (x0, y0) -> (x1, y1) from left to right is correct within t px when
|(x1, y1) - (x0 - d(x0, y0), y0)| <= t, with d read bilinearly at the left keypoint (pixel
centres at integers) and only where all four neighbouring disparities are known; matches
without ground truth are counted apart and never in the precision.

The left photo is also in the training photos; training leaves it out (`HELD_OUT_PHOTOS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from coarse_loftr.inference.errors import CoarseLoftrError

from .methods import MatchMethod

#: file stems of photos kept out of training because the evaluation uses them
HELD_OUT_PHOTOS: tuple[str, ...] = ("motorcycle_left",)
#: a match is correct within each of these distances (px of the right image)
PRECISION_THRESHOLDS_PX: tuple[float, ...] = (1.0, 2.0, 5.0)
SCENE = "Middlebury 2014 motorcycle (scikit-image), 741x500"


class StereoUnavailable(CoarseLoftrError):
    """scikit-image (or its bundled pair) is missing (exit status 2)."""


@dataclass(frozen=True)
class StereoPair:
    """left, right: (H, W, 3) uint8 BGR; disparity: (H, W) float32 on the left image
    (non-finite = unknown)."""

    name: str
    left: np.ndarray
    right: np.ndarray
    disparity: np.ndarray


@dataclass(frozen=True)
class StereoScore:
    """One method on one stereo pair: matches found, how many have ground truth, and per
    threshold (px) the correct ones and their share of those with ground truth (0 if none);
    match_ms: wall clock of the matching."""

    method: str
    matches: int
    with_truth: int
    correct: dict[float, int]
    precision: dict[float, float]
    match_ms: float

    def to_json(self) -> dict[str, object]:
        return {
            "matches": self.matches,
            "with_ground_truth": self.with_truth,
            "correct": {f"{t:g}": n for t, n in self.correct.items()},
            "precision": {f"{t:g}": round(p, 4) for t, p in self.precision.items()},
            "match_ms": round(self.match_ms, 2),
        }


def load_motorcycle() -> StereoPair:
    """scikit-image's motorcycle pair, read offline from its installed data folder."""
    try:
        from skimage import data
    except ImportError as error:
        raise StereoUnavailable(
            f"the real-scene check needs scikit-image ({error}): pip install 'coarse-loftr[peers]'"
        ) from None
    left, right, disparity = data.stereo_motorcycle()
    return StereoPair(
        SCENE,
        cv2.cvtColor(left, cv2.COLOR_RGB2BGR),
        cv2.cvtColor(right, cv2.COLOR_RGB2BGR),
        np.asarray(disparity, np.float32),
    )


def sample_disparity(disparity: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear disparity at (N, 2) x, y points of the left image -> (N,) float64, NaN
    where a point is off the image or any of its four neighbours is unknown."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    height, width = disparity.shape
    x, y = points[:, 0], points[:, 1]
    inside = (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)
    # The top-left neighbour, clamped so that points on the last row / column still
    # have four neighbours (with weight 0 beyond the point).
    x0 = np.clip(np.floor(np.nan_to_num(x)), 0, width - 2).astype(np.int64)
    y0 = np.clip(np.floor(np.nan_to_num(y)), 0, height - 2).astype(np.int64)
    values = np.full(len(points), np.nan)
    if not inside.any():
        return values
    xi, yi = x0[inside], y0[inside]
    fx, fy = x[inside] - xi, y[inside] - yi
    d = disparity.astype(np.float64)
    corners = np.stack([d[yi, xi], d[yi, xi + 1], d[yi + 1, xi], d[yi + 1, xi + 1]], axis=1)
    weights = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
    known = np.isfinite(corners).all(axis=1)
    with np.errstate(invalid="ignore"):
        blended = (np.where(np.isfinite(corners), corners, 0.0) * weights).sum(axis=1)
    values[np.flatnonzero(inside)] = np.where(known, blended, np.nan)
    return values


def stereo_errors(keypoints0: np.ndarray, keypoints1: np.ndarray, disparity: np.ndarray) -> np.ndarray:
    """(N,) distance in px between each right keypoint and where the ground truth puts its
    left keypoint; NaN where there is no ground truth."""
    keypoints0 = np.asarray(keypoints0, np.float64).reshape(-1, 2)
    keypoints1 = np.asarray(keypoints1, np.float64).reshape(-1, 2)
    d = sample_disparity(disparity, keypoints0)
    return np.hypot(keypoints1[:, 0] - (keypoints0[:, 0] - d), keypoints1[:, 1] - keypoints0[:, 1])


def score_matches(
    method: str,
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    disparity: np.ndarray,
    seconds: float = 0.0,
    thresholds_px: Sequence[float] = PRECISION_THRESHOLDS_PX,
) -> StereoScore:
    """Precision and correct-match counts of one method's left -> right matches."""
    errors = stereo_errors(keypoints0, keypoints1, disparity)
    known = errors[np.isfinite(errors)]
    correct = {float(t): int((known <= t).sum()) for t in thresholds_px}
    precision = {t: (n / len(known) if len(known) else 0.0) for t, n in correct.items()}
    return StereoScore(method, len(errors), len(known), correct, precision, 1000.0 * seconds)


def evaluate_stereo(pair: StereoPair, methods: Sequence[MatchMethod]) -> list[StereoScore]:
    """Match the pair (left as image0) with every method and score it."""
    scores = []
    for method in methods:
        keypoints0, keypoints1, seconds = method.match(pair.left, pair.right)
        scores.append(score_matches(method.name, keypoints0, keypoints1, pair.disparity, seconds))
    return scores


def stereo_lines(pair_name: str, scores: Sequence[StereoScore]) -> list[str]:
    """The real-scene section of the markdown report."""
    thresholds = list(scores[0].correct) if scores else list(PRECISION_THRESHOLDS_PX)
    precision = " | ".join(f"precision @{t:g}px" for t in thresholds)
    correct = " | ".join(f"correct @{t:g}px" for t in thresholds)
    header = f"| method | matches | with ground truth | {precision} | {correct} | match ms |"
    lines = [
        "",
        f"## Real scene: {pair_name}",
        "",
        "Left -> right matches against the ground-truth disparity (x1 = x0 - d(x0), y1 = y0); "
        "precision over the matches that have ground truth.",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for s in scores:
        shares = " | ".join(f"{s.precision[t]:.2f}" for t in thresholds)
        counts = " | ".join(str(s.correct[t]) for t in thresholds)
        lines.append(
            f"| {s.method} | {s.matches} | {s.with_truth} | {shares} | {counts} | {s.match_ms:.1f} |"
        )
    return lines
