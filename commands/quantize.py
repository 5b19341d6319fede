"""`coarse-loftr quantize M.onnx --out M_int8.onnx`: int8 quantization with ONNX Runtime.

Static mode (default) calibrates activation ranges on pairs made from a folder of
photos (never the evaluation set); dynamic mode needs none. The written model keeps the
source's metadata, so `--weights M_int8.onnx` works wherever an .onnx file does.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from coarse_loftr.inference.paths import SHARED_DATA

from . import CommandError

#: Calibration photos when the test data sits beside the repository (training images,
#: disjoint from eval-dev).
DEFAULT_CALIBRATION = SHARED_DATA / "train-images"


def _globs(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from coarse_loftr.inference.export.quantize import (
        CALIBRATION_METHODS,
        EXCLUDE_PRESETS,
        MODES,
        QuantizeConfig,
    )

    defaults = QuantizeConfig()
    parser.add_argument("model", type=Path, help="ONNX model written by export-onnx or release")
    parser.add_argument("--out", type=Path, required=True, help="where to write the int8 model")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=defaults.mode,
        help=f"static: QDQ with calibrated activations; dynamic: int8 weights, "
        f"activations quantized at run time (default {defaults.mode})",
    )
    parser.add_argument(
        "--calibration-images",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of photos for static calibration (default: ../shared/data/train-images when present)",
    )
    parser.add_argument(
        "--calibration-pairs",
        type=int,
        default=defaults.calibration_pairs,
        metavar="N",
        help=f"pairs fed to the calibrator (default {defaults.calibration_pairs})",
    )
    parser.add_argument(
        "--calibration-method",
        choices=CALIBRATION_METHODS,
        default=defaults.calibration_method,
        help=f"how activation ranges are chosen (default {defaults.calibration_method})",
    )
    parser.add_argument(
        "--exclude",
        default="head",
        metavar="PRESET|GLOB,...",
        help="nodes kept in float: a preset ("
        + "; ".join(f"{name}: {', '.join(globs) or 'nothing'}" for name, globs in EXCLUDE_PRESETS.items())
        + ") or comma-separated node-name globs (default: head)",
    )
    parser.add_argument(
        "--per-tensor", action="store_true", help="one weight scale per tensor, not per output channel"
    )


def run(args: argparse.Namespace) -> int:
    from coarse_loftr.inference.export.quantize import (
        EXCLUDE_PRESETS,
        QuantizeConfig,
        QuantizeError,
        quantize_model,
    )

    exclude = EXCLUDE_PRESETS.get(args.exclude, _globs(args.exclude))
    try:
        config = QuantizeConfig(
            mode=args.mode,
            exclude=exclude,
            calibration_pairs=args.calibration_pairs,
            calibration_method=args.calibration_method,
            per_channel=not args.per_tensor,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    images = args.calibration_images
    if args.mode == "static" and images is None:
        if not DEFAULT_CALIBRATION.is_dir():
            raise CommandError(
                "static quantization needs --calibration-images DIR (a folder of photos, "
                "not the evaluation set), or use --mode dynamic"
            )
        images = DEFAULT_CALIBRATION
    # onnxruntime's tooling logs advice (pre-processing, per-channel axes of LayerNorm
    # scales it does not quantize here) on the root logger at WARNING.
    logging.getLogger().setLevel(logging.ERROR)
    try:
        report = quantize_model(args.model, args.out, config, images)
    except QuantizeError as error:
        raise CommandError(str(error)) from None
    print(report.summary())
    return 0
