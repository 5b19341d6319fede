"""`coarse-loftr export-onnx --weights W --size 640x480 --out M.onnx`: export a checkpoint
(any format `inference.checkpoint` reads, the published Coarse_LoFTR_TRT files included)
to ONNX, check the graph and print the report with the parity line last."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from coarse_loftr.commands import CommandError, size_arg
from coarse_loftr.inference.config import PRESETS
from coarse_loftr.inference.graph import DEFAULT_OPSET


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="checkpoint (.pt / .ckpt) to export")
    source.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="export a randomly initialised model of this preset (speed tests)",
    )
    parser.add_argument(
        "--size",
        type=size_arg,
        default=(640, 480),
        metavar="WxH",
        help="model input size in pixels (default 640x480)",
    )
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    parser.add_argument(
        "--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch parity check"
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="also write the reference and frame graphs beside --out (reuse of an image0 by streams)",
    )
    parser.add_argument(
        "--first-level-only",
        action="store_true",
        help="leave out the refinement levels after the first (for ablations)",
    )


def run(args: argparse.Namespace) -> int:
    # torch is imported only by this command, never by the runtime ones.
    try:
        import torch
    except ImportError:
        raise CommandError("export needs PyTorch: pip install 'coarse-loftr[train]'") from None
    from coarse_loftr.inference.checkpoint import read_checkpoint
    from coarse_loftr.inference.config import get_preset
    from coarse_loftr.inference.export import ExportError, export_onnx, export_split_onnx
    from coarse_loftr.inference.model import CoarseLoFTR

    if args.weights is not None:
        try:
            loaded = read_checkpoint(args.weights)
        except (FileNotFoundError, ValueError) as error:
            raise CommandError(str(error)) from None
        model = loaded.model
        print(
            f"loaded {args.weights} ({loaded.source_format} format, model {loaded.config.name!r}"
            + (
                f", ignored {len(loaded.ignored_keys)} tensors of unused FPN/fine branches)"
                if loaded.ignored_keys
                else ")"
            )
        )
    else:
        torch.manual_seed(0)
        model = CoarseLoFTR(get_preset(args.preset))
        print(f"random-initialised {args.preset!r} (for speed tests only: it matches nothing)")
    if args.first_level_only:
        if model.fine2_head is None:
            raise CommandError("this model has no second refinement level to leave out")
        model.fine2_head = model.fine3_head = None
        model.config = replace(model.config, fine2_dim=0, fine3_dim=0)  # what the graph's metadata records
        print("later refinement levels left out")
    options = {"opset": args.opset, "check_parity": not args.no_parity}
    try:
        print(export_onnx(model, args.out, args.size, **options).summary())
        if args.split:
            print(export_split_onnx(model, args.out, args.size, **options).summary())
    except ValueError as error:
        raise CommandError(str(error)) from None
    except ExportError as error:
        raise CommandError(f"the exported graph failed a check: {error}") from None
    return 0
