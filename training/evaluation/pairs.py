"""Evaluation pairs: a manifest of image pairs with ground-truth homographies.

Manifest format (see shared/data/eval-dev/manifest.json): a JSON object whose "pairs"
list holds `{"id", "a", "b", "H_a_to_b", "kind", "difficulty", "group", ...}`; `a` and
`b` are paths relative to the manifest's folder and `H_a_to_b` maps pixel (x, y, 1) of
a to b, with pixel centres at integer coordinates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from coarse_loftr.inference.errors import InvalidInput

#: manifest fields that split the results into breakdowns
BREAKDOWN_KEYS: tuple[str, ...] = ("difficulty", "kind", "group")


class ManifestError(InvalidInput):
    """The manifest or one of its images cannot be used; the message names the pair."""


@dataclass(frozen=True)
class EvalPair:
    """One pair: image paths, the true homography a -> b (3x3 float64) and its labels
    (`difficulty`, `kind`, `group`; "unknown" where the manifest has none)."""

    id: str
    path_a: Path
    path_b: Path
    homography: np.ndarray = field(repr=False)
    labels: dict[str, str] = field(default_factory=dict)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Both images as (H, W, 3) uint8 BGR arrays."""
        return _read_image(self.path_a, self.id), _read_image(self.path_b, self.id)


def _read_image(path: Path, pair_id: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ManifestError(f"pair {pair_id}: cannot read image {path}")
    return image


def _parse_pair(entry: object, root: Path, index: int) -> EvalPair:
    if not isinstance(entry, dict):
        raise ManifestError(f"pair #{index}: expected an object, got {type(entry).__name__}")
    pair_id = str(entry.get("id", index))
    missing = [key for key in ("a", "b", "H_a_to_b") if key not in entry]
    if missing:
        raise ManifestError(f"pair {pair_id}: missing field(s) {', '.join(missing)}")
    try:
        homography = np.asarray(entry["H_a_to_b"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ManifestError(f"pair {pair_id}: H_a_to_b is not a numeric 3x3 matrix") from None
    if homography.shape != (3, 3) or not np.isfinite(homography).all():
        raise ManifestError(f"pair {pair_id}: H_a_to_b must be a finite 3x3 matrix")
    if abs(np.linalg.det(homography)) < 1e-12:
        raise ManifestError(f"pair {pair_id}: H_a_to_b is singular")
    labels = {key: str(entry.get(key, "unknown")) for key in BREAKDOWN_KEYS}
    return EvalPair(pair_id, root / str(entry["a"]), root / str(entry["b"]), homography, labels)


def load_manifest(path: str | Path, limit: int | None = None) -> list[EvalPair]:
    """Read the pairs of a manifest (the first `limit` of them when given).
    Image files are checked to exist here and decoded only when a pair is evaluated."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"manifest {path} is not valid JSON: {error}") from None
    entries = data.get("pairs") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"manifest {path} has no 'pairs' list")
    if limit is not None:
        if limit < 1:
            raise ManifestError(f"--limit must be at least 1, got {limit}")
        entries = entries[:limit]
    pairs = [_parse_pair(entry, path.parent, index) for index, entry in enumerate(entries)]
    for pair in pairs:
        for image_path in (pair.path_a, pair.path_b):
            if not image_path.is_file():
                raise ManifestError(f"pair {pair.id}: image not found: {image_path}")
    return pairs


def iter_loaded(pairs: list[EvalPair]) -> Iterator[tuple[EvalPair, np.ndarray, np.ndarray]]:
    """Yield each pair with its two decoded images."""
    for pair in pairs:
        image_a, image_b = pair.load()
        yield pair, image_a, image_b
