"""`coarse-loftr serve`: the web service (FastAPI on uvicorn).

Options override the COARSE_LOFTR_* environment variables of `api.ServiceSettings`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coarse_loftr.inference.backends import KINDS

from . import CommandError, size_arg
from .serve_ray import add_ray_arguments, run_on_ray


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--backend",
        choices=KINDS,
        help="runtime (default: auto, the fastest available)",
    )
    parser.add_argument(
        "--weights", type=Path, help="an .onnx model or a weights folder (default: the shipped weights)"
    )
    parser.add_argument(
        "--size",
        type=size_arg,
        help="model input WxH for /match and /register (default: the weights' default)",
    )
    parser.add_argument(
        "--live-size",
        type=size_arg,
        help="model input WxH of the live stream (default: the weights' live model)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads of the runtime")
    parser.add_argument("--queue-size", type=int, help="waiting jobs before answering 503")
    parser.add_argument("--max-upload-bytes", type=int, help="per image (default 20 MB)")
    parser.add_argument(
        "--memory-budget-bytes", type=int, help="decoded images held at once, all requests (default 1 GB)"
    )
    parser.add_argument("--max-image-bytes", type=int, help="per image, decoded (default 160 MB)")
    parser.add_argument("--root-path", help="path prefix behind a reverse proxy, e.g. /matcher")
    parser.add_argument(
        "--allowed-origins",
        type=lambda text: tuple(part.strip() for part in text.split(",") if part.strip()),
        help="comma-separated origins besides the service's own allowed to open the WebSocket",
    )
    parser.add_argument("--log-format", choices=("json", "plain"), help="server log lines (default json)")
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    add_ray_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from coarse_loftr.api import ServiceSettings, create_app
    from coarse_loftr.api.server import serve
    from coarse_loftr.inference.weights import WeightsError, resolve_weights

    overrides = {
        "backend": args.backend,
        "weights": args.weights,
        "size": args.size,
        "live_size": args.live_size,
        "num_threads": args.threads,
        "queue_size": args.queue_size,
        "max_upload_bytes": args.max_upload_bytes,
        "memory_budget_bytes": args.memory_budget_bytes,
        "max_image_bytes": args.max_image_bytes,
        "root_path": args.root_path,
        "allowed_origins": args.allowed_origins,
        "log_format": args.log_format,
    }
    try:
        settings = ServiceSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        raise CommandError(
            "; ".join(f"{e['loc'][0] if e['loc'] else 'settings'}: {e['msg']}" for e in error.errors())
        ) from None
    # Fail here in one line rather than as a traceback from the app's startup.
    try:
        resolve_weights(settings.weights, settings.size)
        resolve_weights(settings.weights, settings.live_size, role="live")
    except WeightsError as error:
        raise CommandError(f"{error} (pass --weights PATH.onnx)") from None
    if args.ray:
        return run_on_ray(args, settings)
    return serve(create_app(settings), settings, args.host, args.port, args.log_level)
