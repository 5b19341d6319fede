"""The seed's published student (Coarse_LoFTR_TRT, Apache-2.0) from its real checkpoint, as
an evaluation method run the way its demo runs it.

Its demo resizes both images to 640x480 (aspect ratio not kept), keeps every mutual match
of the 1/16 grid with dual-softmax confidence > 0.01, and reads each match at its cell's
top-left corner (`index * 16`), not the centre; it has no sub-cell refinement. Here the
checkpoint is exported to ONNX (needs torch and onnx) and run by our runtime, which gives
the same coarse output (its 1/4 FPN branch feeds nothing a coarse match uses); the corner
read-out is our cell centre minus half a cell, and the points are mapped back to each
original image's pixels (pixel centres at integers).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from coarse_loftr.inference.config import MatchConfig
from coarse_loftr.inference.errors import CoarseLoftrError
from coarse_loftr.inference.paths import SHARED_DATA

from .methods import SEED

#: the published student beside a checkout (../shared/reference); only a default
SEED_CHECKPOINT = SHARED_DATA.parent / "reference" / "coarse_loftr_trt" / "LoFTR_teacher.pt"
#: (W, H) its demo resizes every image to
SEED_INPUT_SIZE = (640, 480)
#: its demo keeps matches with confidence above this
SEED_THRESHOLD = 0.01


class SeedUnavailable(CoarseLoftrError):
    """The seed checkpoint is missing or cannot be exported here (exit status 2)."""


class PublishedStudent:
    """The published student as a `MatchMethod` (see the module docstring).

    checkpoint: LoFTR_teacher.pt (or any checkpoint `inference.checkpoint` reads);
    folder: where its ONNX export is written (default: a temporary folder the method owns);
    backend, num_threads, spin_wait: our runtime's (see `Matcher`).
    """

    name = SEED

    def __init__(
        self,
        checkpoint: Path = SEED_CHECKPOINT,
        folder: Path | None = None,
        backend: str = "auto",
        num_threads: int | None = None,
        spin_wait: bool = True,
    ) -> None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise SeedUnavailable(f"seed checkpoint not found: {checkpoint} (pass --seed-checkpoint PATH)")
        try:
            from coarse_loftr.inference.checkpoint import load_checkpoint
            from coarse_loftr.inference.export import export_onnx
        except ImportError as error:
            raise SeedUnavailable(
                f"the seed method exports its checkpoint and needs torch and onnx ({error}): "
                "pip install 'coarse-loftr[train]'"
            ) from None
        from coarse_loftr.inference import Matcher

        if folder is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="coarse-loftr-seed-")
            folder = Path(self._scratch.name)
        onnx_path = folder / f"seed_{SEED_INPUT_SIZE[0]}x{SEED_INPUT_SIZE[1]}.onnx"
        try:
            model, _ = load_checkpoint(checkpoint)
            export_onnx(model, onnx_path, SEED_INPUT_SIZE, check_parity=False)
        except (OSError, ValueError, RuntimeError) as error:
            raise SeedUnavailable(f"seed checkpoint {checkpoint}: {error}") from None
        self.matcher = Matcher(
            weights=onnx_path,
            backend=backend,
            match=MatchConfig(threshold=SEED_THRESHOLD, refine=False),
            num_threads=num_threads,
            spin_wait=spin_wait,
        )
        # Our cells are read at their centre ((i + 0.5) * s - 0.5); the demo's at i * s.
        self._corner_shift = self.matcher.info.coarse_stride / 2.0 - 0.5

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        start = time.perf_counter()
        mapped = []
        resized = [cv2.resize(image, SEED_INPUT_SIZE) for image in (image0, image1)]
        result = self.matcher.match(*resized)
        for image, points in ((image0, result.keypoints0), (image1, result.keypoints1)):
            scale = np.array([image.shape[1] / SEED_INPUT_SIZE[0], image.shape[0] / SEED_INPUT_SIZE[1]])
            corners = np.asarray(points, np.float64).reshape(-1, 2) - self._corner_shift
            mapped.append(((corners + 0.5) * scale - 0.5).astype(np.float32))
        return mapped[0], mapped[1], time.perf_counter() - start
