"""`Matcher`: decoded images in, matches in each image's own pixels out.

from coarse_loftr import Matcher, estimate_homography
matcher = Matcher()                      # shipped default model, best available runtime
result = matcher.match("a.jpg", "b.jpg")  # or decoded numpy images
geometry = estimate_homography(result)
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import Image0Encoding, create_backend
from .config import MatchConfig, with_overrides
from .io import read_image
from .matching import Matches, extract_matches
from .preprocess import letterbox, to_gray_float, unrotate_points
from .weights import ModelFiles, WeightsError, resolve_weights

#: Turns of 90 degrees counter-clockwise tried for image1 when `rotations` is on.
QUARTER_TURNS = (0, 1, 2, 3)


@dataclass(frozen=True)
class MatchResult:
    """One matched pair, most confident first.

    keypoints0, keypoints1: (N, 2) float32 x, y in pixels of the original image0 /
    image1 (pixel centres at integers); confidence: (N,) float32 in [0, 1];
    image_size0/1: (width, height) of the inputs; timings_ms: preprocess, inference,
    postprocess and total milliseconds (summed over the turns tried); model, backend:
    names of what ran; rotation1: degrees counter-clockwise image1 was turned for the
    matches kept (0 unless `rotations` was asked for); the keypoints are in its own pixels.
    """

    keypoints0: np.ndarray
    keypoints1: np.ndarray
    confidence: np.ndarray
    image_size0: tuple[int, int]
    image_size1: tuple[int, int]
    timings_ms: dict[str, float]
    model: str
    backend: str
    rotation1: int = 0

    def __len__(self) -> int:
        return len(self.confidence)


class Matcher:
    """A loaded model plus the pre- and post-processing around it.

    weights: None for the shipped default, a path to an .onnx file, or a folder with a
    weights manifest; backend: "auto" | "onnxruntime" | "tensorrt" | "torch"; size:
    model input (width, height), picking (or exporting) the model of that size; role:
    without a size, the manifest's model for "default" use (uploads) or "live" video;
    match: default thresholds; num_threads: CPU threads of the runtime; image0_cache:
    how many image0s to keep the half of the graph of (see below; 0 keeps none);
    spin_wait: the runtime's idle threads spin for work (see `create_backend`).
    Not thread-safe: serialise calls to `match` (the service uses one worker thread).

    A stream matches every frame against one reference image0. Where the model comes
    with its split graphs (`graph.split_paths`) and the runtime can run them, image0's
    half of the graph (backbone, its refinement descriptors) is computed once per
    distinct image0, recognised by a hash of its model input, and each frame costs only
    image1's half and the part they share. The rotation search reuses image0 the same way
    across its turns. The outputs are the same either way.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        backend: str = "auto",
        size: tuple[int, int] | None = None,
        match: MatchConfig | None = None,
        num_threads: int | None = None,
        role: str = "default",
        image0_cache: int = 0,
        spin_wait: bool = True,
    ) -> None:
        if image0_cache < 0:
            raise ValueError(f"image0_cache must be >= 0, got {image0_cache}")
        self.files: ModelFiles = resolve_weights(weights, size, role)
        self.backend = create_backend(
            backend,
            onnx_path=self.files.onnx,
            checkpoint_path=self.files.checkpoint,
            num_threads=num_threads,
            split=self.files.split,
            spin_wait=spin_wait,
        )
        self.image0_cache = image0_cache
        self._image0_encodings: OrderedDict[bytes, Image0Encoding] = OrderedDict()
        #: image0s found in / missing from the cache since the matcher was made.
        self.image0_hits = self.image0_misses = 0
        self.info = self.backend.info
        if size is not None and tuple(self.info.input_size) != tuple(size):
            raise WeightsError(
                f"{self.files.onnx} takes {self.info.input_size[0]}x"
                f"{self.info.input_size[1]} input, not {size[0]}x{size[1]}"
            )
        self.config = match or MatchConfig()

    def close(self) -> None:
        """Free the backend (sessions, GPU memory); `match` fails afterwards."""
        self._image0_encodings.clear()
        self.backend.close()

    def __enter__(self) -> Matcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _encode_image0(self, input0: np.ndarray, rotations: bool) -> Image0Encoding | None:
        """image0's half of the graph, from the cache when it holds this input; None when
        the whole graph should run (no split graphs, or nothing would reuse it)."""
        if not self.backend.reuses_image0 or not (self.image0_cache or rotations):
            return None
        if not self.image0_cache:
            return self.backend.encode_image0(input0)
        key = hashlib.blake2b(np.ascontiguousarray(input0).data, digest_size=16).digest()
        encoded0 = self._image0_encodings.get(key)
        if encoded0 is not None:
            self.image0_hits += 1
            self._image0_encodings.move_to_end(key)  # the most recent last
            return encoded0
        self.image0_misses += 1
        encoded0 = self._image0_encodings[key] = self.backend.encode_image0(input0)
        if len(self._image0_encodings) > self.image0_cache:
            self._image0_encodings.popitem(last=False)
        return encoded0

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input in pixels."""
        return self.info.input_size

    def describe(self) -> str:
        width, height = self.info.input_size
        return f"{self.info.name} {width}x{height} on {self.backend.describe()}"

    def match(
        self,
        image0: np.ndarray | str | Path,
        image1: np.ndarray | str | Path,
        *,
        threshold: float | None = None,
        max_matches: int | None = None,
        refine: bool | None = None,
        rotations: bool | None = None,
    ) -> MatchResult:
        """Match two images: decoded arrays (uint8 / uint16 gray, BGR or BGRA, as
        `inference.io.decode_image` returns) or image file paths. Keyword options
        override this matcher's `MatchConfig` for this call."""
        start = time.perf_counter()
        image0 = read_image(image0) if isinstance(image0, (str, Path)) else image0
        image1 = read_image(image1) if isinstance(image1, (str, Path)) else image1
        config = with_overrides(
            self.config, threshold=threshold, max_matches=max_matches, refine=refine, rotations=rotations
        )
        size = self.info.input_size
        input0, box0 = letterbox(to_gray_float(image0), size)
        gray1 = to_gray_float(image1)
        steps = {"preprocess": time.perf_counter() - start, "inference": 0.0, "postprocess": 0.0}
        clock = time.perf_counter()
        encoded0 = self._encode_image0(input0, config.rotations)
        steps["inference"] += time.perf_counter() - clock
        best: tuple[float, int, Matches] | None = None  # total confidence, turns, matches
        for turns in QUARTER_TURNS if config.rotations else (0,):
            clock = time.perf_counter()
            input1, box1 = letterbox(gray1, size, turns)
            preprocessed = time.perf_counter()
            output = (
                self.backend.run(input0, input1)
                if encoded0 is None
                else self.backend.run_encoded(encoded0, input1)
            )
            inferred = time.perf_counter()
            matches = extract_matches(output, self.info, box0, box1, config)
            score = float(matches.confidence.sum())
            if best is None or score > best[0]:
                best = (score, turns, matches)
            end = time.perf_counter()
            for step, seconds in zip(steps, (preprocessed - clock, inferred - preprocessed, end - inferred)):
                steps[step] += seconds
        assert best is not None
        _, turns, matches = best
        size1 = (image1.shape[1], image1.shape[0])
        keypoints1 = matches.keypoints1
        if turns:
            keypoints1 = unrotate_points(keypoints1, turns, size1).astype(np.float32)
        timings = {step: seconds * 1e3 for step, seconds in steps.items()}
        timings["total"] = (time.perf_counter() - start) * 1e3
        return MatchResult(
            keypoints0=matches.keypoints0,
            keypoints1=keypoints1,
            confidence=matches.confidence,
            image_size0=box0.original_size,
            image_size1=size1,
            timings_ms=timings,
            model=self.info.name,
            backend=self.backend.name,
            rotation1=90 * turns,
        )
