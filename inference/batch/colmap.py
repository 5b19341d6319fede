"""A COLMAP database from matches.h5 (pycolmap), ready for COLMAP's mapper or
`pycolmap.incremental_mapping`.

A detector-free matcher finds its keypoints per pair, so one image's points differ from
pair to pair. As hloc does for LoFTR, they are merged per image by rounding to a grid of
`grid` pixels: every point in one grid cell becomes one keypoint (at the cell's centre);
a pair's matches are then de-duplicated to one-to-one, the most confident kept (the
matcher sorts them so). Keypoints go to COLMAP's convention (the top-left corner of the
image at 0, 0; ours put the first pixel's centre there: + 0.5).

Cameras: `pycolmap.import_images`, one camera per image (SIMPLE_RADIAL, focal 1.2 x the
longest side, the size read from the file). The two-view geometry of a pair is its fitted
matrix (UNCALIBRATED for a fundamental matrix, PLANAR for a homography) with the inlier
matches, written when it has at least `min_inliers` of them (COLMAP's own default: 15).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from .store import PairOutcome

GRID_PX = 1.0
MIN_INLIERS = 15
# Ours: pixel centres at integers; COLMAP: the image's top-left corner at (0, 0).
_TO_COLMAP = 0.5
_SHIFT = np.array([[1.0, 0.0, _TO_COLMAP], [0.0, 1.0, _TO_COLMAP], [0.0, 0.0, 1.0]])


def to_colmap_matrix(matrix: np.ndarray, kind: str) -> np.ndarray:
    """A geometry fitted in our pixel convention, in COLMAP's (x_c = T x, T a shift of
    + 0.5): a homography becomes T H T^-1, a fundamental matrix T^-T F T^-1."""
    inverse = np.linalg.inv(_SHIFT)
    if kind == "homography":
        return _SHIFT @ matrix @ inverse
    return inverse.T @ matrix @ inverse


class KeypointGrid:
    """One image's merged keypoints: a point's grid cell -> its keypoint index."""

    def __init__(self, grid: float) -> None:
        self.grid = grid
        self.index: dict[tuple[int, int], int] = {}

    def add(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) points -> (N,) keypoint indices (new cells get new indices)."""
        cells = np.round(np.asarray(points, np.float64) / self.grid).astype(np.int64)
        return np.array([self.index.setdefault((x, y), len(self.index)) for x, y in cells.tolist()], np.int64)

    def keypoints(self) -> np.ndarray:
        """(K, 2) float32 keypoints in COLMAP's pixel convention, by index."""
        cells = np.zeros((len(self.index), 2), np.float64)
        for cell, i in self.index.items():
            cells[i] = cell
        return (cells * self.grid + _TO_COLMAP).astype(np.float32)


def one_to_one(ids0: np.ndarray, ids1: np.ndarray) -> np.ndarray:
    """Indices of the matches kept so that every keypoint of either image appears once:
    the first (most confident) match of each, in order."""
    _, first0 = np.unique(ids0, return_index=True)
    keep = np.sort(first0)
    _, first1 = np.unique(ids1[keep], return_index=True)
    return keep[np.sort(first1)]


@dataclass
class DatabaseSummary:
    images: int
    matched_pairs: int  # pairs with at least one match written
    verified_pairs: int  # pairs with a two-view geometry
    keypoints: int


def write_database(
    outcomes: Iterable[PairOutcome],
    image_dir: Path,
    database: Path,
    grid: float = GRID_PX,
    min_inliers: int = MIN_INLIERS,
) -> DatabaseSummary:
    """A new COLMAP database at `database` from the (successful) pair outcomes."""
    matched = [outcome for outcome in outcomes if outcome.error is None]
    names = sorted({name for o in matched for name in (o.pair.name0, o.pair.name1)})
    database = Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    if database.exists():
        database.unlink()
    pycolmap.Database.open(database).close()  # import_images wants the file to exist
    pycolmap.import_images(
        database,
        image_dir,
        camera_mode=pycolmap.CameraMode.PER_IMAGE,
        image_names=names,
        options=pycolmap.ImageReaderOptions(camera_model="SIMPLE_RADIAL"),
    )
    grids = {name: KeypointGrid(grid) for name in names}
    rows = []
    for outcome in matched:
        ids0 = grids[outcome.pair.name0].add(outcome.keypoints0)
        ids1 = grids[outcome.pair.name1].add(outcome.keypoints1)
        keep = one_to_one(ids0, ids1)
        rows.append((outcome, np.stack([ids0[keep], ids1[keep]], axis=1), outcome.inliers[keep]))

    db = pycolmap.Database.open(database)
    try:
        image_ids = {image.name: image.image_id for image in db.read_all_images()}
        for name, merged in grids.items():
            db.write_keypoints(image_ids[name], merged.keypoints())
        verified = written = 0
        for outcome, matches, inliers in rows:
            if not len(matches):
                continue
            id0, id1 = image_ids[outcome.pair.name0], image_ids[outcome.pair.name1]
            db.write_matches(id0, id1, matches.astype(np.uint32))
            written += 1
            if outcome.geometry is None or inliers.sum() < min_inliers:
                continue
            geometry = pycolmap.TwoViewGeometry()
            if outcome.ransac == "homography":
                geometry.config = pycolmap.TwoViewGeometryConfiguration.PLANAR
                geometry.H = to_colmap_matrix(outcome.geometry, "homography")
            else:
                geometry.config = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
                geometry.F = to_colmap_matrix(outcome.geometry, "fundamental")
            geometry.inlier_matches = matches[inliers].astype(np.uint32)
            db.write_two_view_geometry(id0, id1, geometry)
            verified += 1
        keypoints = sum(len(g.index) for g in grids.values())
    finally:
        db.close()
    return DatabaseSummary(len(names), written, verified, keypoints)


def reconstruct(database: Path, image_dir: Path, output: Path) -> list[dict]:
    """COLMAP's incremental mapper on the database; each model is written to
    output/<index>/ (cameras.bin, images.bin, points3D.bin). Returns, per model, its
    registered images and 3-D points."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    models = pycolmap.incremental_mapping(database, image_dir, output)
    return [
        {"model": index, "images": model.num_reg_images(), "points": model.num_points3D()}
        for index, model in sorted(models.items())
    ]
