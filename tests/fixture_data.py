"""Where the tests' data is (pytest imports this as a plain module).

`tests/data/` is the suite's own small fixture set, always present (sources and licences in
tests/data/README.md). `../shared/` beside the checkout is the team's big data: a test that
needs it carries `@pytest.mark.shared_data`, which skips it with a reason on a bare clone
and fails it under CI=true, so CI can never go green by skipping (tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parent / "data"
PAIRS = DATA / "pairs"
#: Five eval-dev pairs (easy, easy, medium, hard, the real graffiti pair) in eval-dev's format.
MANIFEST = DATA / "manifest.json"
#: The first 24 frames of shared/data/video/visp_cube_poster_384x288 (a camera over a poster).
CLIP = DATA / "video" / "visp_cube_poster_384x288_24f.mp4"
#: Name, shape and dtype of every tensor of the published Coarse_LoFTR_TRT student.
PUBLISHED_STUDENT_KEYS = DATA / "coarse_loftr_trt_student_keys.tsv"
#: The same for LoFTR's outdoor_ds.ckpt, written from kornia's LoFTR (an implementation
#: independent of ours that loads that checkpoint), with the Lightning `matcher.` prefix.
LOFTR_OUTDOOR_KEYS = DATA / "loftr_outdoor_ds_keys.tsv"
#: The ONNX ops TensorRT 10's ONNX parser supports, one a line (onnx-tensorrt's
#: docs/operators.md for 10.x): an independent check of the exporter's allow-list.
TENSORRT10_OPS = DATA / "tensorrt10_onnx_ops.txt"

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EVAL_DEV_MANIFEST = SHARED / "data" / "eval-dev" / "manifest.json"
TRAIN_IMAGES = SHARED / "data" / "train-images"
PUBLISHED_CHECKPOINTS = SHARED / "reference" / "coarse_loftr_trt"

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def clip_frames(count: int | None = None) -> list[np.ndarray]:
    """The fixture clip's frames, (288, 384, 3) uint8 BGR each."""
    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    while count is None or len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert frames, f"cannot read {CLIP}"
    return frames


def write_y4m(frames: Iterable[np.ndarray], path: Path, fps: int = 12) -> Path:
    """BGR frames (even width and height) -> a YUV4MPEG2 4:2:0 file, the format Chromium's
    fake camera reads (--use-file-for-fake-video-capture)."""
    frames = list(frames)
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def fake_camera_y4m(path: Path) -> Path:
    """The fixture clip as a .y4m for Chromium's fake camera (384x288, 12 fps; Chromium
    loops it)."""
    return write_y4m(clip_frames(), path)
