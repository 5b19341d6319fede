"""`coarse-loftr release`: turn a training checkpoint into the shipped weights folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coarse_loftr.inference.paths import WEIGHTS_DIR
from coarse_loftr.inference.weights import ROLES

from . import CommandError, sizes_arg

DEFAULT_OUT = WEIGHTS_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (RUN_DIR/last.pt)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="weights folder")
    parser.add_argument("--name", default="student", help="file name stem of the released model")
    parser.add_argument(
        "--sizes",
        type=sizes_arg,
        default=[(320, 240), (640, 480)],
        help="ONNX input sizes WxH, comma-separated",
    )
    parser.add_argument(
        "--default",
        type=sizes_arg,
        default=None,
        help="input size of the default model: uploads, CLI, Matcher() (first of --sizes if omitted)",
    )
    parser.add_argument(
        "--live",
        type=sizes_arg,
        default=None,
        help="input size of the live-video model (the default's if omitted)",
    )
    parser.add_argument(
        "--roles",
        default=",".join(ROLES),
        help="the roles this release takes, comma-separated (default: both); the manifest's "
        "other role keeps its model, e.g. another checkpoint's live model",
    )


def run(args: argparse.Namespace) -> int:
    from coarse_loftr.training.release import release

    if not args.checkpoint.is_file():
        raise CommandError(f"checkpoint not found: {args.checkpoint}")
    roles = tuple(role.strip() for role in args.roles.split(",") if role.strip())
    default = args.default[0] if args.default else args.sizes[0]
    live = args.live[0] if args.live else default
    for role, size in (("default", default), ("live", live)):
        if role in roles and size not in args.sizes:
            raise CommandError(f"--{role} {size[0]}x{size[1]} is not among --sizes")
    try:
        released = release(args.checkpoint, args.out, args.sizes, default, args.name, live, roles)
    except ValueError as error:
        raise CommandError(str(error)) from None
    for model in released:
        split = "" if model.split is None else f" + {model.split[0].name}, {model.split[1].name}"
        print(f"{model.key}: {model.onnx} ({model.onnx.stat().st_size / 1e6:.1f} MB){split} {model.parity}")
    manifest = json.loads((args.out / "manifest.json").read_text())
    print(f"manifest: {args.out / 'manifest.json'} (" + ", ".join(f"{r} {manifest[r]}" for r in ROLES) + ")")
    return 0
