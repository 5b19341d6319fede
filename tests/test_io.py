"""Decoding: every image kind comes back as cv2.imread gives it; bad input is refused
with the right error before any pixel is decoded."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from fixture_data import PAIRS
from PIL import Image

from coarse_loftr.inference.io import (
    ImageDecodeError,
    ImageTooLarge,
    UnsupportedImageFormat,
    decode_image,
    read_header,
    read_image,
    reduction_for,
)
from coarse_loftr.inference.preprocess import unreduce


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


@pytest.mark.parametrize(
    "shape,dtype,ext",
    [
        ((31, 17), np.uint8, ".png"),
        ((31, 17, 3), np.uint8, ".png"),
        ((31, 17, 4), np.uint8, ".png"),
        ((31, 17), np.uint16, ".png"),
        ((31, 17, 3), np.uint16, ".png"),
        ((31, 17, 4), np.uint16, ".png"),
        ((31, 17, 3), np.uint8, ".bmp"),
        ((31, 17, 3), np.uint8, ".tiff"),
        ((31, 17), np.uint16, ".tiff"),
        ((31, 17), np.uint8, ".pgm"),
        ((31, 17, 3), np.uint8, ".webp"),
    ],
)
def test_lossless_kinds_round_trip(shape, dtype, ext):
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    data = _webp_lossless(image) if ext == ".webp" else encode(image, ext)
    decoded = decode_image(data)
    assert decoded.dtype == dtype and decoded.shape == shape
    np.testing.assert_array_equal(decoded, image)


def _webp_lossless(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert ok
    return buffer.tobytes()


def test_jpeg_matches_cv2_imread(tmp_path):
    path = PAIRS / "0001_a.jpg"
    np.testing.assert_array_equal(read_image(path), cv2.imread(str(path), cv2.IMREAD_UNCHANGED))


def test_exif_orientation_is_applied():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :10] = 255  # bright left edge
    rgb = Image.fromarray(image[:, :, ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", exif=exif, quality=95)
    decoded = decode_image(buffer.getvalue())
    assert decoded.shape == (40, 20, 3)
    assert decoded[:10].mean() > 200 and decoded[-10:].mean() < 50  # left edge now on top


def test_empty_data():
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


def test_text_is_not_an_image():
    with pytest.raises(UnsupportedImageFormat) as info:
        decode_image(b"hello, this is not an image\n" * 20)
    assert info.value.http_status == 415


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.99])
def test_truncated_jpeg(keep):
    image = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    data = encode(image, ".jpg")
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data[: int(len(data) * keep)])
    assert info.value.http_status == 422


def test_jpeg_without_end_marker_is_refused_before_decoding():
    # Some OpenCV builds decode a truncated JPEG with only a warning: the marker check
    # must refuse it whatever the decoder would do.
    data = encode(np.full((64, 64, 3), 128, np.uint8), ".jpg")
    assert data.endswith(b"\xff\xd9")
    with pytest.raises(ImageDecodeError, match="no end-of-image marker"):
        decode_image(data[:-2])


def test_truncated_png():
    data = encode(np.random.default_rng(2).integers(0, 256, (100, 100), dtype=np.uint8), ".png")
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])


def test_corrupt_jpeg_header():
    data = bytearray(encode(np.zeros((32, 32, 3), np.uint8), ".jpg"))
    data[20:200] = b"\x00" * 180
    with pytest.raises((ImageDecodeError, UnsupportedImageFormat)):
        decode_image(bytes(data))


def test_png_bomb_refused_from_its_header():
    # A 1 KB file whose header claims 50000 x 50000 (2.5 gigapixels).
    header = struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 2000))
        + png_chunk(b"IEND", b"")
    )
    assert len(data) < 1024
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data)
    assert info.value.http_status == 413


def test_size_limit_is_ours_not_pillows():
    data = encode(np.zeros((100, 100), np.uint8), ".png")
    assert decode_image(data, max_bytes=10_000).shape == (100, 100)
    with pytest.raises(ImageTooLarge, match="100x100"):
        decode_image(data, max_bytes=9_999)


@pytest.mark.parametrize(
    "image,ext,bytes_per_pixel",
    [
        (np.zeros((30, 40), np.uint8), ".png", 1),
        (np.zeros((30, 40, 3), np.uint8), ".png", 3),
        (np.zeros((30, 40, 4), np.uint16), ".png", 8),  # 16-bit RGBA: 8 bytes a pixel
        (np.zeros((30, 40, 3), np.uint16), ".png", 6),
        (np.zeros((30, 40), np.uint16), ".png", 2),
        (np.zeros((30, 40), np.uint16), ".tiff", 2),
        (np.zeros((30, 40, 3), np.uint8), ".jpg", 3),
    ],
)
def test_header_counts_decoded_bytes(image, ext, bytes_per_pixel):
    """The limit is counted in the bytes the decoded array will take, from the header."""
    data = encode(image, ext)
    header = read_header(data)
    assert header.decoded_bytes() == 30 * 40 * bytes_per_pixel == decode_image(data).nbytes
    assert decode_image(data, max_bytes=header.decoded_bytes()).shape == image.shape[:2] + image.shape[2:]
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_bytes=header.decoded_bytes() - 1)


def test_png_orientation_comes_from_its_exif_chunk():
    """A PNG's eXIf chunk precedes its pixels: read from the header, applied on decode."""
    buffer, exif = io.BytesIO(), Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(buffer, "PNG", exif=exif)
    header = read_header(buffer.getvalue())
    assert header.orientation == 6 and header.upright_size == (10, 20)
    assert decode_image(buffer.getvalue()).shape == (20, 10, 3)


def _dot_jpeg(width: int, height: int, centre: tuple[float, float]) -> bytes:
    yy, xx = np.mgrid[0:height, 0:width]
    blob = 220 * np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * 6.0**2))
    return encode(cv2.merge([blob.astype(np.uint8)] * 3), ".jpg")


def _centroid(image: np.ndarray) -> np.ndarray:
    gray = (image if image.ndim == 2 else image[..., 1]).astype(np.float64)
    gray[gray < 20] = 0
    yy, xx = np.mgrid[0 : gray.shape[0], 0 : gray.shape[1]]
    return np.array([[(gray * xx).sum() / gray.sum(), (gray * yy).sum() / gray.sum()]])


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_reduced_jpeg_decode_maps_back_to_full_pixels(factor):
    """A JPEG decoded at 1/k in the DCT: a point found in the reduced image, mapped by
    `unreduce`, lands where the full decode has it (pixel centres at integers); the naive
    x * k would be off by (k - 1) / 2 pixels."""
    data = _dot_jpeg(1283, 962, (701.3, 455.8))
    full = _centroid(decode_image(data))
    reduced_image = decode_image(data, factor=factor)
    assert reduced_image.shape[:2] == (-(-962 // factor), -(-1283 // factor))
    reduced = _centroid(reduced_image)
    np.testing.assert_allclose(unreduce(reduced, factor), full, atol=0.45)
    assert np.abs(reduced * factor - full).max() > (factor - 1) / 2 - 0.45


def test_reduction_is_chosen_from_the_size_the_model_needs():
    header = read_header(_dot_jpeg(1283, 962, (600, 400)))
    assert reduction_for(header, (320, 240)) == 4  # 321x241 still covers 320x240
    assert reduction_for(header, (640, 480)) == 2
    assert reduction_for(header, (1000, 800)) == 1
    png_header = read_header(encode(np.zeros((962, 1283), np.uint8), ".png"))
    assert reduction_for(png_header, (320, 240)) == 1  # only JPEG scales in the DCT


def test_unsupported_depth():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 5), np.float32)).save(buffer, "TIFF")
    with pytest.raises(ImageDecodeError, match="8 or 16 bit"):
        decode_image(buffer.getvalue())


def test_read_image_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")
