"""Files of the BlendedMVS / MVSNet scene layout.

A scene folder holds `blended_images/00000000.jpg`, `rendered_depth_maps/00000000.pfm`
and `cams/00000000_cam.txt` per view, plus `cams/pair.txt` listing each view's best
partners. Readers check what they parse and name the file on error; the writers exist so
that tests (and tools) can build scenes in the same layout.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_DIR = "blended_images"
DEPTH_DIR = "rendered_depth_maps"
CAM_DIR = "cams"
PAIR_FILE = "pair.txt"


def view_name(view: int) -> str:
    return f"{view:08d}"


@dataclass(frozen=True)
class Camera:
    """One view's calibration.

    extrinsic: (4, 4) world -> camera (x_cam = R @ x_world + t); intrinsic: (3, 3)
    pinhole matrix in pixels of the view's image, pixel centres at integer coordinates;
    depth_min / depth_interval: the MVS depth range (kept for completeness, unused here).
    """

    extrinsic: np.ndarray
    intrinsic: np.ndarray
    depth_min: float = 0.0
    depth_interval: float = 0.0


def read_pfm(path: Path) -> np.ndarray:
    """A single-channel PFM ("Pf") as an (H, W) float32 array, top row first.

    PFM stores rows bottom to top; a negative scale means little-endian floats.
    """
    data = Path(path).read_bytes()
    # Three whitespace-terminated header tokens after the magic, then raw floats.
    header = re.match(rb"(P[fF])\s+(\d+)\s+(\d+)\s+([-+0-9.eE]+)\s", data)
    if header is None:
        raise ValueError(f"{path}: not a PFM file")
    if header.group(1) != b"Pf":
        raise ValueError(f"{path}: colour PFM, expected a single-channel depth map")
    width, height = int(header.group(2)), int(header.group(3))
    scale = float(header.group(4))
    dtype = np.dtype("<f4" if scale < 0 else ">f4")
    payload = data[header.end() :]
    if len(payload) < width * height * 4:
        raise ValueError(f"{path}: truncated PFM ({len(payload)} bytes for {width}x{height})")
    values = np.frombuffer(payload, dtype=dtype, count=width * height).reshape(height, width)
    return np.ascontiguousarray(values[::-1]).astype(np.float32)


def write_pfm(path: Path, image: np.ndarray) -> None:
    """Write an (H, W) float array as a single-channel PFM in native byte order."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected an (H, W) array, got shape {image.shape}")
    scale = -1.0 if sys.byteorder == "little" else 1.0
    height, width = image.shape
    with open(path, "wb") as f:
        f.write(f"Pf\n{width} {height}\n{scale}\n".encode("ascii"))
        f.write(np.ascontiguousarray(image[::-1]).tobytes())


def read_cam(path: Path) -> Camera:
    """`extrinsic` + 16 numbers, `intrinsic` + 9 numbers, then depth_min depth_interval [...]."""
    words = Path(path).read_text().split()
    try:
        e = words.index("extrinsic")
        i = words.index("intrinsic")
        extrinsic = np.array(words[e + 1 : e + 17], dtype=np.float64).reshape(4, 4)
        intrinsic = np.array(words[i + 1 : i + 10], dtype=np.float64).reshape(3, 3)
    except ValueError as error:
        raise ValueError(f"{path}: malformed camera file ({error})") from None
    rest = words[i + 10 :]
    depth_min = float(rest[0]) if len(rest) > 0 else 0.0
    depth_interval = float(rest[1]) if len(rest) > 1 else 0.0
    return Camera(extrinsic, intrinsic, depth_min, depth_interval)


def write_cam(path: Path, camera: Camera) -> None:
    lines = ["extrinsic"]
    lines += [" ".join(f"{v:.10g}" for v in row) for row in camera.extrinsic]
    lines += ["", "intrinsic"]
    lines += [" ".join(f"{v:.10g}" for v in row) for row in camera.intrinsic]
    lines += ["", f"{camera.depth_min:.10g} {camera.depth_interval:.10g}", ""]
    Path(path).write_text("\n".join(lines))


def read_pairs(path: Path) -> dict[int, list[tuple[int, float]]]:
    """pair.txt: the number of views, then per view its id and a line
    `n id score id score ...`. Returns view -> [(partner, score), ...] best first."""
    words = Path(path).read_text().split()
    try:
        count = int(words[0])
        pos = 1
        pairs: dict[int, list[tuple[int, float]]] = {}
        for _ in range(count):
            view, n = int(words[pos]), int(words[pos + 1])
            items = words[pos + 2 : pos + 2 + 2 * n]
            if len(items) != 2 * n:
                raise IndexError("list shorter than its count")
            pairs[view] = [(int(items[2 * k]), float(items[2 * k + 1])) for k in range(n)]
            pos += 2 + 2 * n
    except (IndexError, ValueError) as error:
        raise ValueError(f"{path}: malformed pair file ({error})") from None
    return pairs


def write_pairs(path: Path, pairs: dict[int, list[tuple[int, float]]]) -> None:
    lines = [str(len(pairs))]
    for view, partners in pairs.items():
        lines.append(str(view))
        lines.append(" ".join([str(len(partners))] + [f"{p} {s:.6g}" for p, s in partners]))
    Path(path).write_text("\n".join(lines) + "\n")
