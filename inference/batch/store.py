"""matches.h5: one group per pair (key: `Pair.key`), written as each pair finishes.

A matched pair's group holds `keypoints0`, `keypoints1` ((N, 2) float32, x, y in pixels of
each image as decoded, EXIF orientation applied, pixel centres at integers; most
confident first), `confidence` ((N,) float32), `inliers` ((N,) bool, of the fitted
geometry) and, when one was found, `geometry` ((3, 3) float64 image0 -> image1: a
homography x1 ~ H x0 or a fundamental matrix x1^T F x0 = 0, named by its `kind`
attribute). Attributes: `name0`, `name1`, `image_size0`, `image_size1` ((width, height)),
`num_matches`, `num_inliers`, `ransac`, and `complete` (written last: a group without it
was cut short and is redone). A failed pair's group has `name0`, `name1` and `error`
(the reason, in words) only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .pairs import Pair


@dataclass(frozen=True)
class PairOutcome:
    """One pair's result, or its failure (`error` set, arrays empty)."""

    pair: Pair
    keypoints0: np.ndarray  # (N, 2) float32
    keypoints1: np.ndarray  # (N, 2) float32
    confidence: np.ndarray  # (N,) float32
    inliers: np.ndarray  # (N,) bool
    geometry: np.ndarray | None  # (3, 3) float64 image0 -> image1
    ransac: str  # "homography" | "fundamental"
    image_size0: tuple[int, int] = (0, 0)
    image_size1: tuple[int, int] = (0, 0)
    error: str | None = None

    @classmethod
    def failed(cls, pair: Pair, ransac: str, error: str) -> PairOutcome:
        empty = np.zeros((0, 2), np.float32)
        return cls(pair, empty, empty, np.zeros(0, np.float32), np.zeros(0, bool), None, ransac, error=error)

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


class MatchStore:
    """matches.h5 opened for appending pairs (`resume`: keep what is there; otherwise
    start a new file)."""

    def __init__(self, path: Path, resume: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.path, "a" if resume else "w")

    def __enter__(self) -> MatchStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def done(self) -> set[str]:
        """Keys of the pairs matched completely (failed pairs are not: resume retries them)."""
        return {key for key, group in _pair_groups(self.file) if group.attrs.get("complete", False)}

    def write(self, outcome: PairOutcome) -> None:
        """Replace the pair's group by this outcome and flush, so that a crash loses at
        most the pair being written."""
        key = outcome.pair.key
        if key in self.file:
            del self.file[key]
        group = self.file.create_group(key)
        group.attrs["name0"], group.attrs["name1"] = outcome.pair.name0, outcome.pair.name1
        if outcome.error is not None:
            group.attrs["error"] = outcome.error
        else:
            group.create_dataset("keypoints0", data=outcome.keypoints0.astype(np.float32))
            group.create_dataset("keypoints1", data=outcome.keypoints1.astype(np.float32))
            group.create_dataset("confidence", data=outcome.confidence.astype(np.float32))
            group.create_dataset("inliers", data=outcome.inliers.astype(bool))
            if outcome.geometry is not None:
                geometry = group.create_dataset("geometry", data=outcome.geometry.astype(np.float64))
                geometry.attrs["kind"] = outcome.ransac
            group.attrs["image_size0"], group.attrs["image_size1"] = outcome.image_size0, outcome.image_size1
            group.attrs["num_matches"] = len(outcome.confidence)
            group.attrs["num_inliers"] = outcome.num_inliers
            group.attrs["ransac"] = outcome.ransac
            group.attrs["complete"] = True
        self.file.flush()


def read_outcomes(path: Path) -> Iterator[PairOutcome]:
    """Every pair of a matches.h5 (failed ones too), in key order."""
    with h5py.File(path, "r") as file:
        for _, group in _pair_groups(file):
            attrs = group.attrs
            pair = Pair(str(attrs["name0"]), str(attrs["name1"]))
            if "error" in attrs:
                yield PairOutcome.failed(pair, "", str(attrs["error"]))
            elif attrs.get("complete", False):
                yield PairOutcome(
                    pair,
                    group["keypoints0"][()],
                    group["keypoints1"][()],
                    group["confidence"][()],
                    group["inliers"][()],
                    group["geometry"][()] if "geometry" in group else None,
                    str(attrs["ransac"]),
                    _size(attrs["image_size0"]),
                    _size(attrs["image_size1"]),
                )


def _size(value) -> tuple[int, int]:
    width, height = (int(v) for v in value)
    return width, height


def _pair_groups(file: h5py.File) -> Iterator[tuple[str, h5py.Group]]:
    """(key, group) of every pair group: the groups that carry `name0`."""
    found: list[tuple[str, h5py.Group]] = []

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Group) and "name0" in item.attrs:
            found.append((name, item))

    file.visititems(visit)
    yield from found
