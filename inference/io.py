"""Image bytes -> decoded image, refusing bad input before it costs memory.

Images come back as `cv2.imread(..., IMREAD_UNCHANGED)` gives them, upright: uint8 or
uint16, (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA. The header is read first (Pillow's
lazy `Image.open` parses only the header), so an unknown format, a decompression bomb
or a truncated JPEG is refused before any pixel is decoded. The size limit is in decoded
bytes (`ImageHeader.decoded_bytes`: a 16-bit RGBA pixel costs 8 bytes, a gray one 1), so
it bounds memory whatever the pixel format. The error classes carry the HTTP status and
the stable code the web service answers with.

A JPEG can be decoded at 1/2, 1/4 or 1/8 scale in the DCT (`decode_image(..., factor=k)`,
`reduction_for`): pixel i of the reduced image covers full-resolution pixels
[k*i, k*i + k), so its centre is at k*i + (k - 1)/2 (`preprocess.unreduce` maps points back).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InvalidInput

#: Largest accepted image, in decoded bytes (`ImageHeader.decoded_bytes`): 160 MB is 53 MP of
#: 8-bit BGR (every phone camera), 40 MP of 8-bit BGRA, 20 MP of 16-bit BGRA. The one default
#: of the command line and of the service (`ServiceSettings.max_image_bytes`).
MAX_IMAGE_BYTES = 160_000_000

#: The scale factors of JPEG's DCT-domain decoding and OpenCV's flags for them.
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
_REDUCED_GRAY = {
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}

#: Pillow's names of the formats OpenCV decodes (MPO: multi-picture JPEG from phones).
_DECODABLE = {"PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP", "DIB", "PPM", "JPEG2000", "GIF"}
_JPEG = {"JPEG", "MPO"}


class ImageError(InvalidInput):
    """Base class of everything `decode_image` refuses; `http_status` for the service."""

    http_status = 422
    code = "invalid_image"


class UnsupportedImageFormat(ImageError):
    """The bytes are not an image in a format this service reads."""

    http_status = 415
    code = "unsupported_image"


class ImageDecodeError(ImageError):
    """A recognised image that cannot be decoded: empty, corrupt, truncated, odd depth."""

    http_status = 422
    code = "invalid_image"


class ImageTooLarge(ImageError):
    """The header announces more decoded bytes than allowed."""

    http_status = 413
    code = "image_too_large"


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, before any pixel is decoded.

    format: Pillow's name (PNG, JPEG, ...); size: (width, height) as stored (EXIF
    orientation not applied); channels, sample_bytes: of the array OpenCV will return
    (gray 1 channel; colour 3, or 4 with alpha or a palette that may carry one; 2 bytes
    per sample for 16-bit); orientation: the EXIF tag, 1..8 (5..8 swap the axes).
    """

    format: str
    size: tuple[int, int]
    channels: int
    sample_bytes: int
    orientation: int = 1

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) after the EXIF orientation is applied."""
        width, height = self.size
        return (height, width) if self.orientation in (5, 6, 7, 8) else (width, height)

    def decoded_bytes(self, factor: int = 1) -> int:
        """Bytes of the decoded array (at 1/`factor` scale: each side rounded up)."""
        width, height = (math.ceil(side / factor) for side in self.size)
        return width * height * self.channels * self.sample_bytes


def _sample_bytes(data: bytes, image: Image.Image) -> int:
    """2 for a 16-bit image, else 1. Pillow opens 16-bit colour PNGs as 8-bit RGB(A), so
    the PNG's own IHDR bit depth (byte 24) is read; TIFF says it in BitsPerSample."""
    if image.format == "PNG" and len(data) > 24:
        return 2 if data[24] == 16 else 1
    if image.format == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return 2 if max(bits) > 8 else 1
    return 2 if image.mode.startswith("I;16") or image.mode == "I" else 1


def _channels(image: Image.Image) -> int:
    """Channels of OpenCV's IMREAD_UNCHANGED array: gray stays one, gray + alpha and
    palettes become BGRA (a palette may carry transparency), colour BGR(A)."""
    if image.mode in ("1", "L", "I", "F") or image.mode.startswith("I;16"):
        return 1
    return 4 if image.mode in ("LA", "La", "PA", "P", "RGBA", "RGBa") else 3


def read_header(data: bytes) -> ImageHeader:
    """The header of an encoded image, without decoding pixels. Raises `ImageDecodeError`
    (empty, corrupt header), `UnsupportedImageFormat` (not an image)."""
    if not data:
        raise ImageDecodeError("empty image data")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns (or raises) on large headers; our limit decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format or "unknown"
                return ImageHeader(
                    fmt, image.size, _channels(image), _sample_bytes(data, image), _exif_orientation(image)
                )
    except Image.DecompressionBombError:
        raise ImageTooLarge("image header announces more pixels than allowed") from None
    except UnidentifiedImageError:
        raise UnsupportedImageFormat("not an image in a supported format") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"corrupt image header: {error}") from None


def check_header(header: ImageHeader, max_bytes: int = MAX_IMAGE_BYTES, factor: int = 1) -> None:
    """Refuse what `decode_image` would refuse from the header alone: an empty size, more
    than `max_bytes` decoded bytes (`ImageTooLarge`), a format OpenCV does not read."""
    width, height = header.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"image header has an empty size {width}x{height}")
    if header.decoded_bytes(factor) > max_bytes:
        raise ImageTooLarge(
            f"image is {width}x{height} pixels of {header.channels * header.sample_bytes} bytes = "
            f"{header.decoded_bytes(factor)} bytes decoded; the limit is {max_bytes}"
        )
    if header.format not in _DECODABLE:
        raise UnsupportedImageFormat(
            f"{header.format} images are not supported; use PNG, JPEG, WebP, TIFF or BMP"
        )


def reduction_for(header: ImageHeader, needed: tuple[int, int]) -> int:
    """The largest JPEG DCT scale factor k (1, 2, 4 or 8) at which the upright image is
    still at least `needed` = (width, height) pixels; 1 for any other format."""
    if header.format not in _JPEG:
        return 1
    width, height = header.upright_size
    for factor in (8, 4, 2):
        if math.ceil(width / factor) >= needed[0] and math.ceil(height / factor) >= needed[1]:
            return factor
    return 1


def _jpeg_is_complete(data: bytes) -> bool:
    """True when an end-of-image marker follows the first start-of-scan.

    Some OpenCV builds decode a truncated JPEG into a half-grey image with only a
    warning. Inside entropy-coded data every 0xFF byte is stuffed (FF 00), so an EOI
    after the first SOS belongs to the main image, not to an EXIF thumbnail (which sits
    before the SOS).
    """
    start = data.find(b"\xff\xda")
    return start >= 0 and data.find(b"\xff\xd9", start + 2) >= 0


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag from the header alone. A PNG's eXIf chunk must precede
    its pixels, where Pillow has read it into `info`; `PngImageFile.getexif()` would
    decode the whole image to look behind them (a 16-bit RGBA bomb costs its full size)."""
    if image.format not in _JPEG | {"TIFF", "WEBP", "PNG"}:
        return 1
    try:
        if image.format == "PNG":
            exif = Image.Exif()
            if "exif" in image.info:
                exif.load(image.info["exif"])
        else:
            exif = image.getexif()
        orientation = int(exif.get(0x0112, 1))
    except Exception:  # a broken EXIF block must not reject an otherwise good image
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate / flip as EXIF orientation tag 1..8 says, as `cv2.imread` does by default."""
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
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


def decode_image(
    data: bytes, max_bytes: int = MAX_IMAGE_BYTES, factor: int = 1, header: ImageHeader | None = None
) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, WebP, TIFF, BMP, PNM, ...), 8 or 16 bit.

    Returns uint8 / uint16 (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, EXIF orientation
    applied. factor: 2, 4 or 8 decodes a JPEG at that fraction of its size in the DCT
    (`reduction_for` picks it; the result is then 8-bit BGR or gray, ceil(W / k) wide);
    header: `read_header(data)` when the caller already has it. Raises `ImageDecodeError`
    (empty, corrupt, truncated, unsupported depth), `UnsupportedImageFormat` (not an image)
    or `ImageTooLarge` (more than `max_bytes` decoded bytes, from the header).
    """
    data = bytes(data)
    header = header or read_header(data)
    check_header(header, max_bytes, factor)
    fmt = header.format
    if fmt in _JPEG and not _jpeg_is_complete(data):
        raise ImageDecodeError("truncated JPEG (no end-of-image marker)")
    if factor != 1 and (fmt not in _JPEG or factor not in _REDUCED):
        raise ValueError(f"reduced decoding takes a JPEG and a factor of 2, 4 or 8, not {fmt} / {factor}")
    if factor == 1:
        flags = cv2.IMREAD_UNCHANGED
    else:  # orientation is applied below, as for full-size images
        flags = (_REDUCED_GRAY if header.channels == 1 else _REDUCED)[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        raise ImageDecodeError(f"cannot decode this {fmt} image (corrupt or truncated)")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageDecodeError(f"unsupported pixel type {image.dtype}; expected 8 or 16 bit")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        raise ImageDecodeError(f"unsupported channel count {image.shape[2]}")
    image = _apply_orientation(image, header.orientation)
    return np.ascontiguousarray(image)


def read_image(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """`decode_image` on a file's bytes. Raises FileNotFoundError / IsADirectoryError
    for a missing path, and the `ImageError`s of `decode_image`."""
    return decode_image(Path(path).read_bytes(), max_bytes)
