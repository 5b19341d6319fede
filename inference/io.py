"""Image bytes -> decoded image, refusing bad input before it costs memory.

Images come back as `cv2.imread(..., IMREAD_UNCHANGED)` gives them, upright: uint8 or
uint16, (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA. The header is read first (Pillow's
lazy `Image.open` parses only the header), so an unknown format, a decompression bomb
or a truncated JPEG is refused before any pixel is decoded. The error classes carry
the HTTP status the web service answers with.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InvalidInput

#: Largest accepted image, in pixels (width * height); 50 MP covers phone cameras.
MAX_PIXELS = 50_000_000

#: Pillow's names of the formats OpenCV decodes (MPO: multi-picture JPEG from phones).
_DECODABLE = {"PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP", "DIB", "PPM", "JPEG2000", "GIF"}
_JPEG = {"JPEG", "MPO"}


class ImageError(InvalidInput):
    """Base class of everything `decode_image` refuses; `http_status` for the service."""

    http_status = 422


class UnsupportedImageFormat(ImageError):
    """The bytes are not an image in a format this service reads."""

    http_status = 415


class ImageDecodeError(ImageError):
    """A recognised image that cannot be decoded: empty, corrupt, truncated, odd depth."""

    http_status = 422


class ImageTooLarge(ImageError):
    """The header announces more pixels than allowed."""

    http_status = 413


def image_header_size(data: bytes) -> tuple[str, tuple[int, int]]:
    """Format name and (width, height) from the header alone, without decoding pixels."""
    if not data:
        raise ImageDecodeError("empty image data")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns (or raises) on large headers; our limit decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.format or "unknown", image.size
    except Image.DecompressionBombError:
        raise ImageTooLarge("image header announces more pixels than allowed") from None
    except UnidentifiedImageError:
        raise UnsupportedImageFormat("not an image in a supported format") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"corrupt image header: {error}") from None


def _jpeg_is_complete(data: bytes) -> bool:
    """True when an end-of-image marker follows the first start-of-scan.

    Some OpenCV builds decode a truncated JPEG into a half-grey image with only a
    warning. Inside entropy-coded data every 0xFF byte is stuffed (FF 00), so an EOI
    after the first SOS belongs to the main image, not to an EXIF thumbnail (which sits
    before the SOS).
    """
    start = data.find(b"\xff\xda")
    return start >= 0 and data.find(b"\xff\xd9", start + 2) >= 0


def _exif_orientation(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not reject an otherwise good image
        return 1


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate / flip as EXIF orientation tag 1..8 says, as `cv2.imread` does by default."""
    ops = {
        2: lambda im: cv2.flip(im, 1),
        3: lambda im: cv2.rotate(im, cv2.ROTATE_180),
        4: lambda im: cv2.flip(im, 0),
        5: cv2.transpose,
        6: lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE),
        7: lambda im: cv2.rotate(cv2.transpose(im), cv2.ROTATE_180),
        8: lambda im: cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    op = ops.get(orientation)
    return image if op is None else op(image)


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, WebP, TIFF, BMP, PNM, ...), 8 or 16 bit.

    Returns uint8 / uint16 (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, EXIF orientation
    applied. Raises `ImageDecodeError` (empty, corrupt, truncated, unsupported depth),
    `UnsupportedImageFormat` (not an image) or `ImageTooLarge` (header over `max_pixels`).
    """
    data = bytes(data)
    fmt, (width, height) = image_header_size(data)
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"image header has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if fmt not in _DECODABLE:
        raise UnsupportedImageFormat(f"{fmt} images are not supported; use PNG, JPEG, WebP, TIFF or BMP")
    if fmt in _JPEG and not _jpeg_is_complete(data):
        raise ImageDecodeError("truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageDecodeError(f"cannot decode this {fmt} image (corrupt or truncated)")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageDecodeError(f"unsupported pixel type {image.dtype}; expected 8 or 16 bit")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        raise ImageDecodeError(f"unsupported channel count {image.shape[2]}")
    if fmt in _JPEG | {"TIFF", "WEBP", "PNG"}:
        image = _apply_orientation(image, _exif_orientation(data))
    return np.ascontiguousarray(image)


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """`decode_image` on a file's bytes. Raises FileNotFoundError / IsADirectoryError
    for a missing path, and the `ImageError`s of `decode_image`."""
    return decode_image(Path(path).read_bytes(), max_pixels)
