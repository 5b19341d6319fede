"""`coarse-loftr build-engine M.onnx [--precision fp16|fp32] [--out E.engine]`: build a
TensorRT engine (cached under ~/.cache/coarse-loftr/engines unless --out is given)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from coarse_loftr.commands import CommandError
from coarse_loftr.inference.backends.tensorrt_backend import (
    DEFAULT_FP16,
    DEFAULT_WORKSPACE_MB,
    build_engine,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=Path, help="model written by `coarse-loftr export-onnx`")
    parser.add_argument(
        "--precision",
        choices=("fp16", "fp32"),
        default="fp16" if DEFAULT_FP16 else "fp32",
        help="fp16: FP16 kernels with the coarse matching kept in FP32 (default, what the "
        "tensorrt backend loads); fp32: FP32 throughout",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="engine file to write (default: the engine cache)"
    )
    parser.add_argument(
        "--workspace-mb",
        type=int,
        default=DEFAULT_WORKSPACE_MB,
        help=f"TensorRT builder workspace in MiB (default {DEFAULT_WORKSPACE_MB})",
    )
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached engine")


def run(args: argparse.Namespace) -> int:
    if not args.onnx.is_file():
        raise CommandError(f"no such file: {args.onnx}")
    start = time.perf_counter()
    try:
        path = build_engine(
            args.onnx,
            fp16=args.precision == "fp16",
            workspace_mb=args.workspace_mb,
            out=args.out,
            rebuild=args.rebuild,
        )
    except ValueError as error:
        raise CommandError(f"{args.onnx}: {error}") from None
    print(f"engine {path} ({path.stat().st_size / 1e6:.1f} MB) ready in {time.perf_counter() - start:.1f} s")
    return 0
