"""Images and apps for the web service tests (pytest imports this as a plain module)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from fixture_data import PAIRS, fake_camera_y4m

__all__ = ["PAIRS", "decode", "fake_camera_y4m", "jpeg", "pair_bytes", "png", "png_bomb"]


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def pair_bytes(pair: str = "0001") -> tuple[bytes, bytes]:
    """A fixture pair (tests/data/pairs) as JPEG bytes (640x480 each)."""
    return (PAIRS / f"{pair}_a.jpg").read_bytes(), (PAIRS / f"{pair}_b.jpg").read_bytes()


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid, tiny PNG whose header claims width x height 8-bit gray pixels: the
    zlib stream of all those zero rows compresses to a few hundred bytes per MB but is
    cut short here, so a decoder that trusted the header would allocate 2.5 GB first."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compressobj(9)
    data = rows.compress(b"\x00" * (width + 1) * 16) + rows.flush(zlib.Z_FULL_FLUSH)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "not a decodable image"
    return image
