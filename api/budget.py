"""The memory budget: every decode is admitted before it allocates.

A request (two images) or a stream frame first reads the headers, works out what holding
and preprocessing the images will cost (`image_cost`), and reserves that many bytes of
the service's one budget (`ServiceSettings.memory_budget_bytes`, shared by uploads and
streams). When the budget is spent the answer is 503 with Retry-After, before any pixel
is decoded; the bytes come back when the request (or the frame) is done.

Everything here runs on the event loop thread, so the counter needs no lock.
"""

from __future__ import annotations

from types import TracebackType

from coarse_loftr.inference.errors import ResourceBusy
from coarse_loftr.inference.io import ImageHeader, ImageTooLarge

#: Bytes per pixel that preprocessing adds beside the decoded array while the image is
#: matched: a gray copy (up to 2 bytes for 16-bit) and its float32 version (4 bytes).
PREPROCESS_BYTES_PER_PIXEL = 6


class BudgetSpent(ResourceBusy):
    """The decoded images in flight already hold the whole budget: retry later."""

    code = "busy"


def image_cost(header: ImageHeader, factor: int = 1) -> int:
    """Bytes one image costs while it is decoded and matched at 1/`factor` scale."""
    width, height = header.size
    pixels = -(-width // factor) * -(-height // factor)
    return header.decoded_bytes(factor) + PREPROCESS_BYTES_PER_PIXEL * pixels


class MemoryBudget:
    """A counter of reserved bytes with a ceiling of `total`."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0
        self.refused = 0  # reservations turned away, for /metrics

    def reservation(self) -> Reservation:
        return Reservation(self)

    def _take(self, nbytes: int) -> None:
        if nbytes > self.total:
            raise ImageTooLarge(
                f"decoding this needs {nbytes} bytes, more than the server's whole memory budget "
                f"({self.total} bytes)"
            )
        if self.used + nbytes > self.total:
            self.refused += 1
            raise BudgetSpent("the server is decoding as many images as its memory allows; retry shortly")
        self.used += nbytes

    def _give(self, nbytes: int) -> None:
        self.used -= nbytes


class Reservation:
    """The bytes one request or frame holds; `with` releases them all at its end."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget, self.held = budget, 0

    def add(self, nbytes: int) -> None:
        """Reserve `nbytes` more, or raise `BudgetSpent` (503) / `ImageTooLarge` (413)
        without holding anything more."""
        self.budget._take(nbytes)
        self.held += nbytes

    def release(self) -> None:
        self.budget._give(self.held)
        self.held = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
