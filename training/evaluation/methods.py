"""Matching methods under evaluation, behind one small protocol.

A method turns two images into putative correspondences; the robust fit and the
metrics are shared (see `runner`), so classic peers and our matcher are compared on
exactly the same pairs, RANSAC and error measure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

#: The one list of evaluable method names (`coarse-loftr eval --methods`, `bench --peers`):
#: our matcher, OpenCV's classic peers, learned peers from the optional `peers` extra
#: (`peers.py`) and the seed's published student (`seed.py`).
OURS = "ours"
OPENCV_METHODS: tuple[str, ...] = ("sift", "orb")
LEARNED_PEERS: tuple[str, ...] = ("xfeat", "xfeat-lg", "aliked-lg")
SEED = "seed"
METHOD_NAMES: tuple[str, ...] = (OURS, *OPENCV_METHODS, *LEARNED_PEERS, SEED)
#: every method but ours: what `bench --peers` accepts
PEER_NAMES: tuple[str, ...] = METHOD_NAMES[1:]


@runtime_checkable
class MatchMethod(Protocol):
    """Something that matches two images.

    `match(image0, image1)` takes (H, W, 3) uint8 BGR images and returns
    (keypoints0 (N, 2) float32 in image0 pixels, keypoints1 (N, 2) float32 in image1
    pixels, seconds spent matching, wall clock).
    """

    name: str

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]: ...


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


@dataclass
class OpenCVFeatures:
    """Detect-describe-match peer: SIFT or ORB keypoints, brute-force 2-NN matching and
    Lowe's ratio test (`ratio`: largest accepted best / second-best distance)."""

    detector: str = "sift"
    num_features: int = 4000
    ratio: float = 0.8

    def __post_init__(self) -> None:
        self._extractor: cv2.Feature2D
        if self.detector == "sift":
            self._extractor = cv2.SIFT.create(nfeatures=self.num_features)
            self._matcher = cv2.BFMatcher(cv2.NORM_L2)
        elif self.detector == "orb":
            self._extractor = cv2.ORB.create(nfeatures=self.num_features)
            self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        else:
            raise ValueError(f"unknown OpenCV detector {self.detector!r}; expected 'sift' or 'orb'")
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")

    @property
    def name(self) -> str:
        return self.detector

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        start = time.perf_counter()
        points0, descriptors0 = self._extractor.detectAndCompute(_gray(image0), None)
        points1, descriptors1 = self._extractor.detectAndCompute(_gray(image1), None)
        kept: list[cv2.DMatch] = []
        if descriptors0 is not None and descriptors1 is not None and len(descriptors1) >= 2:
            for pair in self._matcher.knnMatch(descriptors0, descriptors1, k=2):
                if len(pair) == 2 and pair[0].distance < self.ratio * pair[1].distance:
                    kept.append(pair[0])
        keypoints0 = np.array([points0[m.queryIdx].pt for m in kept], np.float32).reshape(-1, 2)
        keypoints1 = np.array([points1[m.trainIdx].pt for m in kept], np.float32).reshape(-1, 2)
        return keypoints0, keypoints1, time.perf_counter() - start


@dataclass
class MatcherMethod:
    """Our matcher (`inference.Matcher`, any backend) as an evaluation method.

    `options` go to every `Matcher.match` call (threshold, max_matches, refine).
    """

    name: str
    matcher: Any
    options: dict[str, Any]

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        start = time.perf_counter()
        result = self.matcher.match(image0, image1, **self.options)
        seconds = time.perf_counter() - start
        return (
            np.asarray(result.keypoints0, np.float32).reshape(-1, 2),
            np.asarray(result.keypoints1, np.float32).reshape(-1, 2),
            seconds,
        )
