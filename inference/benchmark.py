"""Latency / throughput of the matcher on every runtime, with OpenCV ORB and SIFT as peers
(and any other matching method the caller passes, e.g. the learned peers of `eval`), and
the cost of drawing a 640x480 pair's overlay (what the stream adds to every frame).

All methods run in one process on the same decoded images (the eval-dev pairs when
../shared is beside the repository, else deterministic synthetic pairs), resized to
each benchmarked input size. Each measurement is one pair, split into pre-processing,
inference (the network, or detection + description for ORB / SIFT) and match
extraction (or descriptor matching). The methods take turns pair by pair rather than
one after another, so that the ratios of one run hold on a machine whose speed drifts.
Torch is imported only to export a model that has no ONNX file yet.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .drawing import MAX_LINES, draw_matches
from .io import read_image
from .matcher import Matcher
from .paths import SHARED_DATA
from .registration import estimate_homography

#: eval-dev pairs, when the test data sits beside the repository (never needed).
EVAL_DEV = SHARED_DATA / "eval-dev"
PHASES = ("preprocess", "inference", "postprocess", "total")


@dataclass(frozen=True)
class BenchPair:
    name: str
    image0: np.ndarray  # uint8 BGR or gray, as decoded
    image1: np.ndarray


@dataclass(frozen=True)
class ModelUnderTest:
    """label: how the results name it; weights: a folder with manifest.json (one entry
    per size, ONNX and checkpoint); note: said beside the results (e.g. random init);
    sizes: the (W, H) sizes to time it at, None for all that the run asks for."""

    label: str
    weights: Path
    note: str = ""
    sizes: tuple[tuple[int, int], ...] | None = None


class PeerMethod(Protocol):
    """Any matcher of two images: `match(image0, image1)` takes decoded images (uint8 BGR
    or gray) and returns (keypoints0 (N, 2), keypoints1 (N, 2), seconds)."""

    name: str

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]: ...


@dataclass(frozen=True)
class PeerUnderTest:
    """A `PeerMethod` to time at each of `sizes` ((W, H); None for the run's sizes);
    backend: what runs it, for the table; note: said beside its results."""

    method: PeerMethod
    backend: str
    sizes: tuple[tuple[int, int], ...] | None = None
    note: str = ""


@dataclass
class BenchRow:
    """One method x runtime x size. Times in milliseconds per pair: median and p90 of
    every (pair, repeat) run; fps = 1000 / median total; gflops: network FLOPs per
    pair (None for ORB / SIFT); gflops_per_s: gflops / median inference time."""

    method: str
    backend: str
    size: str
    samples: int
    median_ms: dict[str, float]
    p90_ms: dict[str, float]
    fps: float
    matches: float
    gflops: float | None = None
    gflops_per_s: float | None = None
    note: str = ""


def load_pairs(count: int, folder: Path | None = None) -> tuple[list[BenchPair], str]:
    """`count` image pairs -> (pairs, where from). Reads eval-dev's manifest when the
    folder exists, else makes synthetic pairs."""
    folder = EVAL_DEV if folder is None else folder
    manifest = folder / "manifest.json"
    if manifest.is_file():
        entries = json.loads(manifest.read_text())["pairs"][:count]
        pairs = [
            BenchPair(entry["id"], read_image(folder / entry["a"]), read_image(folder / entry["b"]))
            for entry in entries
        ]
        if pairs and all(p.image0 is not None and p.image1 is not None for p in pairs):
            return pairs, f"eval-dev ({folder})"
    return [synthetic_pair(seed) for seed in range(count)], "synthetic (deterministic pattern)"


def synthetic_pair(seed: int, size: tuple[int, int] = (640, 480)) -> BenchPair:
    """A textured image (random ellipses, lines and noise from a seeded generator) and a
    perspective warp of it: the same content on every machine."""
    rng = np.random.default_rng(1000 + seed)
    width, height = size
    image: np.ndarray = np.full((height, width), 128, np.uint8)
    for _ in range(120):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(4, 60)), int(rng.integers(4, 60)))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, int(rng.integers(0, 256)), -1)
    for _ in range(60):
        start = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(image, start, end, int(rng.integers(0, 256)), int(rng.integers(1, 4)))
    image = cv2.add(image, rng.integers(0, 20, image.shape, dtype=np.uint8))
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    moved = (corners + rng.uniform(-0.08, 0.08, (4, 2)) * [width, height]).astype(np.float32)
    warped = cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, moved), (width, height))
    return BenchPair(f"synthetic-{seed}", image, warped)


def _stats(samples: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, float]]:
    median = {phase: statistics.median(values) for phase, values in samples.items()}
    p90 = {phase: float(np.percentile(values, 90)) for phase, values in samples.items()}
    return median, p90


@dataclass(frozen=True)
class TimedMethod:
    """What one row times: `once(pair)` runs the method on a pair and returns its
    per-phase milliseconds and match count; the rest names the row (see `BenchRow`)."""

    once: Callable[[BenchPair], tuple[dict[str, float], int]]
    method: str
    backend: str
    size: tuple[int, int]
    note: str = ""
    gflops: float | None = None


def matcher_method(
    matcher: Matcher, label: str, gflops: float | None, note: str = "", rotations: bool = False
) -> TimedMethod:
    """`matcher.match` (with `rotations`: its rotation search)."""

    def once(pair: BenchPair) -> tuple[dict[str, float], int]:
        result = matcher.match(pair.image0, pair.image1, rotations=rotations)
        return result.timings_ms, len(result)

    return TimedMethod(once, label, matcher.backend.describe(), matcher.input_size, note, gflops)


def stream_frame_method(matcher: Matcher, label: str, gflops: float | None) -> TimedMethod:
    """What a stream's frame costs: `matcher.match` of a pair whose image0 the matcher
    already holds (it needs `image0_cache`), so only image1's half and what the two
    share run."""

    def once(pair: BenchPair) -> tuple[dict[str, float], int]:
        matcher.match(pair.image0, pair.image1)  # image0's half is held from here on
        result = matcher.match(pair.image0, pair.image1)
        return result.timings_ms, len(result)

    return TimedMethod(once, label, matcher.backend.describe(), matcher.input_size, "", gflops)


def time_interleaved(methods: Sequence[TimedMethod], pairs: list[BenchPair], repeat: int) -> list[BenchRow]:
    """Time every method on every pair `repeat` times after one warm-up run each ->
    their rows, in order. The methods take turns pair by pair, so that a slow spell of
    a shared machine falls on all of them alike rather than on whichever ran then."""
    for method in methods:
        method.once(pairs[0])
    samples: list[dict[str, list[float]]] = [{phase: [] for phase in PHASES} for _ in methods]
    matches: list[list[int]] = [[] for _ in methods]
    for _ in range(repeat):
        for pair in pairs:
            for index, method in enumerate(methods):
                times, count = method.once(pair)
                for phase in PHASES:
                    samples[index][phase].append(times[phase])
                matches[index].append(count)
    rows = []
    for method, method_samples, counts in zip(methods, samples, matches, strict=True):
        median, p90 = _stats(method_samples)
        gflops = method.gflops
        rows.append(
            BenchRow(
                method=method.method,
                backend=method.backend,
                size=f"{method.size[0]}x{method.size[1]}",
                samples=len(counts),
                median_ms=median,
                p90_ms=p90,
                fps=1e3 / median["total"],
                matches=float(np.mean(counts)),
                gflops=gflops,
                gflops_per_s=gflops / (median["inference"] / 1e3) if gflops else None,
                note=method.note,
            )
        )
    return rows


def opencv_method(kind: str, size: tuple[int, int], features: int = 4000) -> TimedMethod:
    """ORB or SIFT with `features` keypoints per image, brute-force mutual matching, on
    the pairs resized to `size` (the resize counts as pre-processing)."""
    detector: cv2.Feature2D
    if kind == "orb":
        detector, norm = cv2.ORB.create(nfeatures=features), cv2.NORM_HAMMING
    elif kind == "sift":
        detector, norm = cv2.SIFT.create(nfeatures=features), cv2.NORM_L2
    else:
        raise ValueError(f"unknown OpenCV method {kind!r}")
    matcher = cv2.BFMatcher(norm, crossCheck=True)

    def once(pair: BenchPair) -> tuple[dict[str, float], int]:
        start = time.perf_counter()
        grays = [
            cv2.resize(_gray(image), size, interpolation=cv2.INTER_AREA)
            for image in (pair.image0, pair.image1)
        ]
        prepared = time.perf_counter()
        (_, desc0), (_, desc1) = (detector.detectAndCompute(gray, None) for gray in grays)
        detected = time.perf_counter()
        found = matcher.match(desc0, desc1) if desc0 is not None and desc1 is not None else []
        end = time.perf_counter()
        return {
            "preprocess": (prepared - start) * 1e3,
            "inference": (detected - prepared) * 1e3,
            "postprocess": (end - detected) * 1e3,
            "total": (end - start) * 1e3,
        }, len(found)

    return TimedMethod(
        once,
        kind.upper(),
        f"opencv {cv2.__version__} ({cv2.getNumThreads()} threads)",
        size,
        f"{features} features, detect+describe as inference, brute-force cross-check matching",
    )


def peer_method(peer: PeerUnderTest, size: tuple[int, int]) -> TimedMethod:
    """A `PeerMethod` on the pairs resized to `size` (the resize is pre-processing; its
    whole `match`, detection to matching, is inference)."""

    def once(pair: BenchPair) -> tuple[dict[str, float], int]:
        start = time.perf_counter()
        images = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in (pair.image0, pair.image1)]
        prepared = time.perf_counter()
        keypoints0, _, _ = peer.method.match(*images)
        end = time.perf_counter()
        return {
            "preprocess": (prepared - start) * 1e3,
            "inference": (end - prepared) * 1e3,
            "postprocess": 0.0,
            "total": (end - start) * 1e3,
        }, len(keypoints0)

    return TimedMethod(once, peer.method.name, peer.backend, size, peer.note)


@dataclass
class DrawingTiming:
    """The overlay of a 640x480 pair as the service and the CLI draw it (`draw_matches`:
    an even sample of at most MAX_LINES matches, inliers apart, the homography's
    outline, the caption), on the matches of the first timed model; milliseconds per
    pair over every (pair, repeat): median and p90. matches / drawn: mean per pair."""

    size: str
    samples: int
    matches: float
    drawn: float
    median_ms: float
    p90_ms: float


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def bench_drawing(
    matcher: Matcher, pairs: list[BenchPair], repeat: int, size: tuple[int, int] = (640, 480)
) -> DrawingTiming:
    """Time `draw_matches` on each pair resized to `size` (its matches and homography
    computed once, untimed)."""
    jobs = []
    for pair in pairs:
        images = [_resized(image, size) for image in (pair.image0, pair.image1)]
        result = matcher.match(*images)
        jobs.append((images, result, estimate_homography(result)))

    def draw(images, result, geometry) -> None:
        draw_matches(
            images[0],
            images[1],
            result.keypoints0,
            result.keypoints1,
            result.confidence,
            inliers=geometry.inliers,
            text="30.0 FPS",
            homography=geometry.matrix,
            outline=True,
        )

    draw(*jobs[0])
    times = []
    for job in jobs:
        for _ in range(repeat):
            start = time.perf_counter()
            draw(*job)
            times.append((time.perf_counter() - start) * 1e3)
    counts = [len(result) for _, result, _ in jobs]
    return DrawingTiming(
        size=f"{size[0]}x{size[1]}",
        samples=len(times),
        matches=float(np.mean(counts)),
        drawn=float(np.mean([min(count, MAX_LINES) for count in counts])),
        median_ms=statistics.median(times),
        p90_ms=float(np.percentile(times, 90)),
    )


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def model_flops(onnx_path: Path) -> float | None:
    """GFLOPs per pair counted from the ONNX graph, or None without the `onnx` package."""
    try:
        from .flops import count_flops
    except ImportError:
        return None
    try:
        return count_flops(onnx_path).gflops
    except ImportError:
        return None


def prepare_models(
    folder: Path,
    sizes: list[tuple[int, int]],
    *,
    checkpoint: Path | None = None,
    preset: str | None = None,
    label: str | None = None,
    note: str = "",
) -> ModelUnderTest:
    """Export a checkpoint (or a random-initialised preset) at every size into `folder`,
    with the split graphs that the stream-frame rows run, and write the manifest a
    `Matcher` reads. Needs PyTorch."""
    import torch

    from .checkpoint import load_checkpoint
    from .config import get_preset
    from .export import export_onnx, export_split_onnx
    from .model import CoarseLoFTR

    folder.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        model, config = load_checkpoint(checkpoint)
    else:
        assert preset is not None, "a checkpoint or a preset"
        torch.manual_seed(0)
        config = get_preset(preset)
        model = CoarseLoFTR(config).eval()
    stored = folder / "model.pt"
    torch.save({"config": config.to_dict(), "model_state_dict": model.state_dict()}, stored)
    entries = {}
    for width, height in sizes:
        name = f"{config.name}_{width}x{height}"
        export_onnx(model, folder / f"{name}.onnx", (width, height), check_parity=False)
        export_split_onnx(model, folder / f"{name}.onnx", (width, height), check_parity=False)
        entries[name] = {"onnx": f"{name}.onnx", "checkpoint": stored.name, "input_size": [width, height]}
    default = next(iter(entries))
    (folder / "manifest.json").write_text(json.dumps({"default": default, "models": entries}, indent=1))
    return ModelUnderTest(label or config.name, folder, note, tuple(sizes))


@dataclass
class BenchReport:
    source: str
    pairs: int
    repeat: int
    threads: int | None
    machine: str
    rows: list[BenchRow]
    drawing: DrawingTiming | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def table(self) -> str:
        header = (
            f"{'method':<28} {'backend':<44} {'size':>8} {'median':>8} {'p90':>8} {'fps':>7} "
            f"{'pre':>6} {'infer':>7} {'post':>6} {'GFLOP':>6} {'GFLOP/s':>8} {'matches':>8}"
        )
        lines = [
            f"{self.pairs} pairs from {self.source}, {self.repeat} repeats each; {self.machine}; "
            f"times in ms per pair (median; p90 of total)",
            header,
            "-" * len(header),
        ]
        for row in self.rows:
            m = row.median_ms
            gflops = f"{row.gflops:6.2f}" if row.gflops else f"{'-':>6}"
            rate = f"{row.gflops_per_s:8.1f}" if row.gflops_per_s else f"{'-':>8}"
            lines.append(
                f"{row.method[:28]:<28} {row.backend[:44]:<44} {row.size:>8} {m['total']:8.1f} "
                f"{row.p90_ms['total']:8.1f} {row.fps:7.1f} {m['preprocess']:6.1f} {m['inference']:7.1f} "
                f"{m['postprocess']:6.1f} {gflops} {rate} {row.matches:8.0f}"
            )
        notes = {row.method: row.note for row in self.rows if row.note}
        lines += [f"note: {method}: {note}" for method, note in notes.items()]
        if self.drawing is not None:
            d = self.drawing
            lines.append(
                f"drawing: overlay of a {d.size} pair (draw_matches, {d.matches:.0f} matches, {d.drawn:.0f} "
                f"drawn, inliers apart, outline): median {d.median_ms:.2f} ms, p90 {d.p90_ms:.2f} ms"
            )
        return "\n".join(lines)


#: Whether the bench's ONNX Runtime sessions spin for work between runs: they do not.
#: The methods take turns, and a pool left spinning after one method's run takes the
#: cores from the next method's run; the service runs its sessions the same way.
BENCH_SPIN_WAIT = False


def bench_matcher(
    weights: str | Path | None,
    backend: str,
    size: tuple[int, int],
    threads: int | None,
    image0_cache: int = 0,
) -> Matcher:
    """A `Matcher` as the bench times it (`BENCH_SPIN_WAIT`)."""
    return Matcher(
        weights,
        backend=backend,
        size=size,
        num_threads=threads,
        image0_cache=image0_cache,
        spin_wait=BENCH_SPIN_WAIT,
    )


def run_benchmark(
    models: list[ModelUnderTest],
    backends: list[str],
    sizes: list[tuple[int, int]],
    pairs: list[BenchPair],
    source: str,
    repeat: int = 3,
    threads: int | None = None,
    peers: tuple[str, ...] = ("orb", "sift"),
    features: int = 4000,
    others: Sequence[PeerUnderTest] = (),
    rotations: bool = False,
) -> BenchReport:
    """Every model x backend x size (with `rotations`, also with its rotation search),
    each OpenCV peer at each size and each of `others` at its sizes, on the same pairs,
    taking turns (`time_interleaved`); the rows come in that order."""
    if threads is not None:
        cv2.setNumThreads(threads)
    methods = []
    matchers = []
    for model in models:
        for backend in backends:
            for size in model.sizes or sizes:
                matcher = bench_matcher(model.weights, backend, size, threads)
                matchers.append(matcher)
                gflops = model_flops(matcher.files.onnx)
                methods.append(matcher_method(matcher, model.label, gflops, model.note))
                split = matcher.files.split if matcher.backend.reuses_image0 else None
                frame_gflops = None if split is None else model_flops(split[1])
                if rotations:
                    label = f"{model.label} + rotation search"
                    # Four turns of image1: four whole graphs, or image0's half once and
                    # four frame graphs.
                    searched = None if gflops is None else 4 * gflops
                    if split is not None and frame_gflops is not None:
                        reference_gflops = model_flops(split[0])
                        searched = None if reference_gflops is None else reference_gflops + 4 * frame_gflops
                    methods.append(matcher_method(matcher, label, searched, rotations=True))
                if split is not None:
                    streaming = bench_matcher(model.weights, backend, size, threads, image0_cache=1)
                    matchers.append(streaming)
                    label = f"{model.label}, stream frame"
                    methods.append(stream_frame_method(streaming, label, frame_gflops))
    methods += [opencv_method(kind, size, features) for kind in peers for size in sizes]
    methods += [peer_method(other, size) for other in others for size in other.sizes or sizes]
    try:
        rows = time_interleaved(methods, pairs, repeat)
        # The overlay's cost, on the first model's matches.
        drawing = bench_drawing(matchers[0], pairs, repeat) if matchers else None
    finally:
        for matcher in matchers:
            matcher.close()
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    return BenchReport(source, len(pairs), repeat, threads, machine, rows, drawing)


def temporary_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="coarse-loftr-bench-")
