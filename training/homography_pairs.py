"""Self-supervised pairs: two views of one photo related by a random homography.

Image0 is a crop of the photo; image1 is rendered from the whole photo (not from
image0) through the homography, so it shows real content where image0 has none, as
in the eval set's generator. Photometric changes hit image1 harder than image0.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .config import AugmentConfig
from .evaluation.stereo import HELD_OUT_PHOTOS
from .ground_truth import MatchTargets, targets_from_homography

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def list_images(folder: Path) -> list[Path]:
    """The training photos under `folder`, sorted, without the held-out ones (see `held_out`)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    sources = _index_sources(Path(folder))
    files = [p for p in files if not held_out(p, sources.get(p.name))]
    if not files:
        raise FileNotFoundError(f"no images found under {folder}")
    return files


def held_out(path: Path, source: str | None = None) -> bool:
    """Whether a photo is one the evaluation uses as a test scene (`HELD_OUT_PHOTOS`, e.g.
    the real-scene check's motorcycle_left.png): by its file name (`0180_skimage_
    motorcycle_left.jpg`) or by the `source` its folder's index.json records for it."""
    names = [path.stem] + ([Path(source.rpartition(":")[2]).stem] if source else [])
    return any(name == photo or name.endswith(f"_{photo}") for name in names for photo in HELD_OUT_PHOTOS)


def _index_sources(folder: Path) -> dict[str, str]:
    """{file name: source} from an index.json beside the photos (the shared training set's
    `{"images": [{"file", "source"}, ...]}`), empty without one."""
    index = folder / "index.json"
    try:
        entries = json.loads(index.read_text()).get("images", []) if index.is_file() else []
    except (OSError, ValueError, AttributeError):
        return {}
    return {
        str(e["file"]): str(e["source"])
        for e in entries
        if isinstance(e, dict) and "file" in e and "source" in e
    }


def split_images(files: list[Path], val_share: float = 0.1, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Deterministic train / validation split by source photo.

    A photo's source is the one its folder's index.json records, else its file name
    without a `_crop` suffix, so a crop always lands with its whole photo. The sources
    with the smallest hashes (salted with `seed`) are held out, `val_share` of them and
    at least one: adding or removing a photo moves at most one other source across.
    """
    sources = {folder: _index_sources(folder) for folder in {p.parent for p in files}}

    def source(path: Path) -> str:
        return sources[path.parent].get(path.name) or path.stem.removesuffix("_crop")

    def draw(key: str) -> bytes:
        return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()

    keys = sorted({source(p) for p in files}, key=draw)
    held = set(keys[: max(1, round(len(keys) * val_share))])
    return [p for p in files if source(p) not in held], [p for p in files if source(p) in held]


def load_photo(path: Path, max_side: int = 1024) -> np.ndarray:
    """A photo as (H, W) uint8 grayscale, shrunk (INTER_AREA) to at most `max_side` px."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    scale = max_side / max(image.shape)
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def random_homography(rng: np.random.Generator, size: tuple[int, int], aug: AugmentConfig) -> np.ndarray:
    """A homography of image0's pixels to image1's: rotation and scale about the
    centre, independent corner jitter and a common shift."""
    if rng.random() < aug.full_rotation_share:
        angle = rng.uniform(-aug.max_rotation_deg, aug.max_rotation_deg)
    else:
        angle = rng.uniform(-aug.small_rotation_deg, aug.small_rotation_deg)
    scale = math.exp(rng.uniform(math.log(aug.scale_range[0]), math.log(aug.scale_range[1])))
    jitter = rng.uniform(-aug.corner_jitter, aug.corner_jitter, (4, 2))
    shift = rng.uniform(-aug.max_shift, aug.max_shift, 2)
    return compose_homography(size, angle, scale, jitter, shift)


def compose_homography(
    size: tuple[int, int], angle_deg: float, scale: float, jitter: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """The homography that turns image0's corners by `angle_deg` and scales them by
    `scale` about its centre, then moves each corner by `jitter` (4, 2) and all of them
    by `shift` (2,), both as fractions of (width, height)."""
    width, height = size
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float)
    theta = math.radians(angle_deg)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    moved = (corners - centre) @ rotation.T * scale + centre
    moved += np.asarray(jitter) * [width, height]
    moved += np.asarray(shift) * [width, height]
    return cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)).astype(
        np.float64
    )


def crop_transform(
    rng: np.random.Generator, photo_size: tuple[int, int], size: tuple[int, int], aug: AugmentConfig
) -> np.ndarray:
    """Affine 3x3 map of image0's pixels into the photo: a random zoom and position."""
    photo_w, photo_h = photo_size
    width, height = size
    max_scale = min(photo_w / width, photo_h / height)
    low, high = aug.source_scale_range
    high = min(high, max_scale)
    low = min(low, high)
    scale = math.exp(rng.uniform(math.log(low), math.log(high)))
    x0 = rng.uniform(0, max(photo_w - width * scale, 0))
    y0 = rng.uniform(0, max(photo_h - height * scale, 0))
    # Pixel centres at integers: output pixel p covers source [x0 + p*s, x0 + (p+1)*s).
    return np.array([[scale, 0, x0 + 0.5 * scale - 0.5], [0, scale, y0 + 0.5 * scale - 0.5], [0, 0, 1]])


def photometric(
    image: np.ndarray, rng: np.random.Generator, aug: AugmentConfig, strength: float
) -> np.ndarray:
    """image: (H, W) uint8 -> uint8 with random brightness, contrast, gamma, blur, noise, JPEG."""
    x = image.astype(np.float32) / 255.0
    contrast = 1 + (rng.uniform(*aug.contrast) - 1) * strength
    x = (x - x.mean()) * contrast + x.mean() + rng.uniform(-aug.brightness, aug.brightness) * strength
    x = np.clip(x, 0, 1) ** (1 + (rng.uniform(*aug.gamma) - 1) * strength)
    if rng.random() < aug.blur_probability * strength:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    x = x + rng.normal(0, aug.noise_sigma * strength * rng.random(), x.shape).astype(np.float32)
    out = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rng.random() < aug.jpeg_probability * strength:
        quality = int(rng.integers(*aug.jpeg_quality))
        _, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return out


def render_pair(
    photo: np.ndarray,
    rng: np.random.Generator,
    size: tuple[int, int],
    aug: AugmentConfig,
    homography: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """photo: (H, W) uint8. Returns image0, image1 (size (W, H) uint8) and the 3x3
    homography of image0's pixels to image1's (`homography` when given, else a
    `random_homography`)."""
    photo_size = (photo.shape[1], photo.shape[0])
    to_photo = crop_transform(rng, photo_size, size, aug)
    if homography is None:
        homography = random_homography(rng, size, aug)
    flags = cv2.INTER_AREA if to_photo[0, 0] > 1.5 else cv2.INTER_LINEAR
    # warpAffine/warpPerspective take the map from source to destination.
    image0 = cv2.warpAffine(
        photo, np.linalg.inv(to_photo)[:2], size, flags=flags, borderMode=cv2.BORDER_REFLECT
    )
    photo_to_1 = homography @ np.linalg.inv(to_photo)
    image1 = cv2.warpPerspective(
        photo, photo_to_1, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return image0, image1, homography


class HomographyPairs(Dataset):
    """`length` random pairs; item i is deterministic given (seed, i), so a resumed run
    and the validation set see the same pairs."""

    def __init__(
        self,
        files: list[Path],
        size: tuple[int, int],
        stride: int,
        length: int,
        aug: AugmentConfig,
        seed: int = 0,
        max_side: int = 1024,
    ) -> None:
        self.size = size
        self.stride = stride
        self.length = length
        self.aug = aug
        self.seed = seed
        self.photos = [load_photo(f, max_side) for f in files]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        photo = self.photos[int(rng.integers(len(self.photos)))]
        image0, image1, homography = render_pair(photo, rng, self.size, self.aug)
        image0 = photometric(image0, rng, self.aug, strength=0.3)
        image1 = photometric(image1, rng, self.aug, strength=1.0)
        width, height = self.size
        grid_hw = (height // self.stride, width // self.stride)
        targets = targets_from_homography(homography, grid_hw, self.stride, self.size)
        return pair_to_tensors(image0, image1, targets, homography)


def pair_to_tensors(
    image0: np.ndarray, image1: np.ndarray, targets: MatchTargets, homography: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    sample = {
        "image0": torch.from_numpy(image0).float()[None] / 255.0,
        "image1": torch.from_numpy(image1).float()[None] / 255.0,
        "match_index1": torch.from_numpy(targets.match_index1),
        "coarse_valid": torch.from_numpy(targets.coarse_valid),
        "fine_valid": torch.from_numpy(targets.fine_valid),
        "offset1": torch.from_numpy(targets.offset1),
    }
    if homography is not None:
        sample["homography"] = torch.from_numpy(homography)
    return sample
