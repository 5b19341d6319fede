"""`coarse-loftr match A B`: match two images, fit a homography, print and draw them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from coarse_loftr.commands import CommandError, size_arg
from coarse_loftr.inference.backends import KINDS
from coarse_loftr.inference.backends.base import BackendUnavailable
from coarse_loftr.inference.config import MatchConfig, RegistrationConfig
from coarse_loftr.inference.drawing import draw_matches
from coarse_loftr.inference.io import ImageError, read_image
from coarse_loftr.inference.matcher import Matcher
from coarse_loftr.inference.registration import estimate_homography, warp_blend
from coarse_loftr.inference.weights import WeightsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = MatchConfig()
    parser.add_argument("image0", type=Path, help="first image (any common format)")
    parser.add_argument("image1", type=Path, help="second image")
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="an .onnx model or a folder with manifest.json (default: shipped)",
    )
    parser.add_argument("--backend", default="auto", choices=KINDS)
    parser.add_argument(
        "--size",
        type=size_arg,
        default=None,
        metavar="WxH",
        help="model input size, e.g. 640x480 (default: the model's)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"minimum match confidence (default {defaults.threshold})",
    )
    parser.add_argument("--max-matches", type=int, default=None, help="keep only the most confident matches")
    parser.add_argument(
        "--no-refine", action="store_true", help="coarse cell centres only, no sub-cell refinement"
    )
    parser.add_argument(
        "--rotations",
        action="store_true",
        help="also try image1 turned by 90, 180 and 270 degrees and keep the best turn (4x the time)",
    )
    parser.add_argument(
        "--ransac-threshold",
        type=float,
        default=None,
        help=f"homography inlier threshold in pixels of image1 (default {RegistrationConfig().threshold_px})",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the runtime")
    parser.add_argument(
        "--out", type=Path, default=None, help="write the matches drawn side by side (e.g. overlay.png)"
    )
    parser.add_argument(
        "--warp", type=Path, default=None, help="write image0 warped onto image1 by the homography"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def _load(path: Path) -> np.ndarray:
    try:
        return read_image(path)
    except FileNotFoundError:
        raise CommandError(f"no such file: {path}") from None
    except (IsADirectoryError, PermissionError) as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    except ImageError as error:
        raise CommandError(f"{path}: {error}") from None


def _write(path: Path, image: np.ndarray) -> None:
    try:
        ok = cv2.imwrite(str(path), image)
    except cv2.error:
        ok = False
    if not ok:
        raise CommandError(f"cannot write {path} (missing folder or unknown image extension)")


def run(args: argparse.Namespace) -> int:
    image0, image1 = _load(args.image0), _load(args.image1)
    try:
        matcher = Matcher(args.weights, backend=args.backend, size=args.size, num_threads=args.threads)
    except (WeightsError, BackendUnavailable, FileNotFoundError, ValueError) as error:
        # ValueError: a model file the runtime cannot load or whose metadata is missing.
        raise CommandError(str(error)) from None
    result = matcher.match(
        image0,
        image1,
        threshold=args.threshold,
        max_matches=args.max_matches,
        refine=False if args.no_refine else None,
        rotations=args.rotations or None,
    )
    geometry = estimate_homography(result, threshold_px=args.ransac_threshold)

    if args.out is not None:
        # The caption counts matches and inliers itself.
        text = f"{result.timings_ms['total']:.0f} ms, {matcher.describe()}"
        _write(
            args.out,
            draw_matches(
                image0,
                image1,
                result.keypoints0,
                result.keypoints1,
                result.confidence,
                geometry.inliers,
                text=text,
            ),
        )
    if args.warp is not None:
        if geometry.matrix is None:
            raise CommandError(f"no homography from {len(result)} matches: nothing to warp")
        _write(args.warp, warp_blend(image0, image1, geometry.matrix))

    if args.json:
        print(
            json.dumps(
                {
                    "model": result.model,
                    "backend": result.backend,
                    "image_size0": list(result.image_size0),
                    "image_size1": list(result.image_size1),
                    "rotation1": result.rotation1,
                    "num_matches": len(result),
                    "num_inliers": geometry.num_inliers,
                    "homography": None if geometry.matrix is None else geometry.matrix.tolist(),
                    "keypoints0": result.keypoints0.round(2).tolist(),
                    "keypoints1": result.keypoints1.round(2).tolist(),
                    "confidence": result.confidence.round(4).tolist(),
                    "inliers": geometry.inliers.tolist(),
                    "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()},
                }
            )
        )
        return 0
    print(f"model:    {matcher.describe()}")
    print(f"matches:  {len(result)}")
    print(f"inliers:  {geometry.num_inliers}")
    if args.rotations:
        print(f"image1 turned {result.rotation1} degrees counter-clockwise for these matches")
    if geometry.matrix is None:
        print("homography: none (too few matches or no consensus)")
    else:
        print("homography (image0 -> image1):")
        for row in geometry.matrix:
            print("  " + "  ".join(f"{value: .6g}" for value in row))
    print("timings:  " + ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items()))
    for label, path in (("overlay", args.out), ("warp", args.warp)):
        if path is not None:
            print(f"{label}:  {path}")
    return 0
