"""A validation manifest in the evaluation's format, rendered from the validation photos.

Settings such as the default input size are chosen on these pairs, never on the
held-out eval set. The pairs follow the HPatches-style protocol of the shared eval
set's generator as its manifest documents it (three levels of rotation, scale and
perspective, at least 40 % overlap, 640x480), but come from the training photos'
validation split (`split_images`) through the training pipeline's renderer
(`render_pair`, `photometric`), so none of the eval set's images or code is involved.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .config import AugmentConfig, TrainConfig
from .homography_pairs import (
    compose_homography,
    list_images,
    load_photo,
    photometric,
    render_pair,
    split_images,
)


@dataclass(frozen=True)
class Level:
    """One difficulty: |rotation| in degrees, scale range (log-uniform), largest corner
    displacement as a fraction of the image size, and the least share of image0 that
    must land inside image1."""

    rotation_deg: tuple[float, float]
    scale: tuple[float, float]
    perspective: float
    min_overlap: float


#: The eval set generator's published levels (its manifest's "levels").
LEVELS: dict[str, Level] = {
    "easy": Level((0.0, 10.0), (0.9, 1.1), 0.08, 0.4),
    "medium": Level((5.0, 25.0), (0.75, 1.3), 0.15, 0.4),
    "hard": Level((15.0, 45.0), (0.6, 1.6), 0.25, 0.4),
}
#: Ours, beyond the protocol: quarter-turn-scale rotations with mild scale and perspective,
#: to measure training for rotation robustness. Not in the default set.
EXTRA_LEVELS: dict[str, Level] = {"rotated": Level((45.0, 90.0), (0.8, 1.25), 0.1, 0.4)}
#: every level by name, in the order that seeds each level's draws
ALL_LEVELS: dict[str, Level] = LEVELS | EXTRA_LEVELS
IMAGE_SIZE = (640, 480)
JPEG_QUALITY = 95
#: draws of a homography before a pair is given up for too little overlap
MAX_DRAWS = 100


def overlap_share(homography: np.ndarray, size: tuple[int, int], step: int = 8) -> float:
    """Share of image0's pixels (sampled every `step`) that `homography` maps inside image1."""
    width, height = size
    xs, ys = np.meshgrid(np.arange(0, width, step), np.arange(0, height, step))
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]).astype(np.float64)
    mapped = homography @ points
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = mapped[0] / mapped[2], mapped[1] / mapped[2]
    inside = (mapped[2] > 0) & (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    return float(inside.mean())


def level_homography(rng: np.random.Generator, size: tuple[int, int], level: Level) -> np.ndarray:
    """A homography of `level`, redrawn until it keeps `level.min_overlap` of image0."""
    for _ in range(MAX_DRAWS):
        angle = rng.choice([-1.0, 1.0]) * rng.uniform(*level.rotation_deg)
        scale = math.exp(rng.uniform(math.log(level.scale[0]), math.log(level.scale[1])))
        jitter = rng.uniform(-level.perspective, level.perspective, (4, 2))
        shift = rng.uniform(-level.perspective, level.perspective, 2)
        homography = compose_homography(size, angle, scale, jitter, shift)
        if overlap_share(homography, size) >= level.min_overlap:
            return homography
    raise RuntimeError(f"no homography with {level.min_overlap:.0%} overlap in {MAX_DRAWS} draws")


def write_validation_set(
    images: Path,
    out: Path,
    pairs_per_level: int,
    seed: int = TrainConfig.seed,
    levels: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Render `pairs_per_level` pairs of each of `levels` (names in `ALL_LEVELS`; None:
    the protocol's `LEVELS`) from the validation photos of `images` (the split training
    uses with `seed`) into `out`/pairs/ and write `out`/manifest.json. Returns the
    manifest. Deterministic given the photos and seed; a level's pairs do not depend on
    which other levels are asked for."""
    levels = tuple(LEVELS) if levels is None else levels
    unknown = [name for name in levels if name not in ALL_LEVELS]
    if unknown or not levels:
        raise ValueError(f"levels must be among {', '.join(ALL_LEVELS)}, got {', '.join(levels) or 'none'}")
    _, val_files = split_images(list_images(images), seed=seed)
    photos = [load_photo(path) for path in val_files]
    aug = AugmentConfig()
    (out / "pairs").mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, object]] = []
    for difficulty in levels:
        level, level_index = ALL_LEVELS[difficulty], list(ALL_LEVELS).index(difficulty)
        for item in range(pairs_per_level):
            rng = np.random.default_rng([seed, level_index, item])
            photo_index = int(rng.integers(len(photos)))
            homography = level_homography(rng, IMAGE_SIZE, level)
            image_a, image_b, _ = render_pair(photos[photo_index], rng, IMAGE_SIZE, aug, homography)
            image_a = photometric(image_a, rng, aug, strength=0.3)
            image_b = photometric(image_b, rng, aug, strength=1.0)
            pair_id = f"{len(entries) + 1:04d}"
            for suffix, image in (("a", image_a), ("b", image_b)):
                path = out / "pairs" / f"{pair_id}_{suffix}.jpg"
                cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            entries.append(
                {
                    "id": pair_id,
                    "a": f"pairs/{pair_id}_a.jpg",
                    "b": f"pairs/{pair_id}_b.jpg",
                    "H_a_to_b": homography.tolist(),
                    "kind": "synthetic",
                    "difficulty": difficulty,
                    "group": "validation",
                    "source": val_files[photo_index].name,
                }
            )
    manifest: dict[str, Any] = {
        "name": "validation",
        "image_size": list(IMAGE_SIZE),
        "convention": "H_a_to_b maps (x, y, 1) of a to b; pixel centres at integer coordinates",
        "seed": seed,
        "photos": [path.name for path in val_files],
        "levels": {name: asdict(ALL_LEVELS[name]) for name in levels},
        "pairs": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
