"""`coarse-loftr build-engine M.onnx [--fp16] [--out E.engine]`: build a TensorRT engine
(cached under ~/.cache/coarse-loftr/engines unless --out is given)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from coarse_loftr.commands import CommandError
from coarse_loftr.inference.backends.base import BackendUnavailable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=Path, help="model written by `coarse-loftr export-onnx`")
    parser.add_argument("--fp16", action="store_true", help="allow FP16 kernels (faster, tiny loss)")
    parser.add_argument(
        "--out", type=Path, default=None, help="engine file to write (default: the engine cache)"
    )
    parser.add_argument(
        "--workspace-mb", type=int, default=1024, help="TensorRT builder workspace in MiB (default 1024)"
    )
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached engine")


def run(args: argparse.Namespace) -> int:
    from coarse_loftr.inference.backends.tensorrt_backend import build_engine

    if not args.onnx.is_file():
        raise CommandError(f"no such file: {args.onnx}")
    start = time.perf_counter()
    try:
        path = build_engine(
            args.onnx, fp16=args.fp16, workspace_mb=args.workspace_mb, out=args.out, rebuild=args.rebuild
        )
    except BackendUnavailable as error:
        raise CommandError(str(error)) from None
    except ValueError as error:
        raise CommandError(f"{args.onnx}: {error}") from None
    print(f"engine {path} ({path.stat().st_size / 1e6:.1f} MB) ready in {time.perf_counter() - start:.1f} s")
    return 0
