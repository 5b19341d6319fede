"""The `--ray` options of `coarse-loftr serve`: the same app on Ray Serve
(`api/ray_serve.py`), with matcher replicas on this machine or a cluster."""

from __future__ import annotations

import argparse

from . import CommandError


def autoscale_arg(text: str) -> tuple[int, int]:
    """argparse type: '1:4' -> (1, 4)."""
    low, _, high = text.partition(":")
    try:
        bounds = int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX replicas, e.g. 1:4, not {text!r}") from None
    if not 0 < bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, not {text!r}")
    return bounds


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray Serve (needs the `distributed` extra)")
    group.add_argument("--ray", action="store_true", help="serve the app on Ray Serve, matchers as replicas")
    scale = group.add_mutually_exclusive_group()
    scale.add_argument("--replicas", type=int, default=2, help="matcher replicas (default 2)")
    scale.add_argument("--autoscale", type=autoscale_arg, metavar="MIN:MAX", help="autoscaled replicas")
    group.add_argument(
        "--replica-cpus",
        type=float,
        default=1.0,
        help="CPUs reserved per replica (default 1; also its threads)",
    )
    group.add_argument(
        "--ray-address", help="join this Ray cluster (e.g. ray://head:10001 or auto); default: local Ray"
    )


def run_on_ray(args: argparse.Namespace, settings) -> int:
    """`serve --ray`: deploy and block until interrupted."""
    if args.replicas < 1:
        raise CommandError("--replicas must be at least 1")
    try:
        from coarse_loftr.api.ray_serve import RayOptions, run_service
    except ImportError as error:
        raise CommandError(
            f'--ray needs Ray Serve: pip install "coarse-loftr[distributed]" ({error})'
        ) from None
    options = RayOptions(
        replicas=args.replicas,
        autoscale=args.autoscale,
        replica_cpus=args.replica_cpus,
        address=args.ray_address,
    )
    run_service(settings, options, args.host, args.port, on_ready=lambda line: print(line, flush=True))
    return 0
