"""INT8 quantization of an exported matching graph with ONNX Runtime's tooling.

Static mode writes a QDQ graph (QuantizeLinear / DequantizeLinear around each quantized
op, int8 per-channel weights, uint8 activations whose ranges come from calibration
pairs) that ONNX Runtime's CPU provider fuses into integer kernels. Dynamic mode stores
int8 weights and quantizes activations at run time (MatMulInteger / ConvInteger).

Calibration pairs are built from ordinary photos, never from an evaluation set: each
photo, and a mild random perspective warp of it, go through the same letterbox the
runtime uses (`inference.preprocess`), at the model's own input size.

Needs `onnx` and `onnxruntime` (not torch).
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnx

from ..backends.base import ModelInfo
from ..errors import CoarseLoftrError
from ..graph import FP32_SCOPES, INPUT_NAMES, REFINEMENT_HEADS
from ..preprocess import letterbox, to_gray_float

MODES = ("static", "dynamic")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")

#: Node-name globs kept in float by default. The coarse matching (the scopes FP16
#: TensorRT engines keep in FP32, `inference.graph.FP32_SCOPES`): the dual-softmax turns
#: similarities into confidences through exp(sim / 0.1), so an int8 step on the
#: similarity MatMul's output is a large factor on the confidence, and the softmax itself
#: is a poor fit for a uniform grid. The refinement head (its projection convs, its
#: correlation MatMul and soft-argmax) regresses sub-pixel offsets, where one quantization
#: step is already a visible error. Everything else (backbone convs, transformer
#: projections and MLPs) is quantized.
#: The projections of every level show up under `/proj/`, their correlations under the heads.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    *(f"{scope}*" for scope in FP32_SCOPES),
    *(f"/{head}/*" for head in REFINEMENT_HEADS),
    "/proj/*",
)

#: Where the arithmetic is: the convolutions and the projection / MLP matrix products.
QUANTIZED_OPS: tuple[str, ...] = ("Conv", "MatMul")

#: Named sets of exclusions, for the CLI and the measurements in docs/quantization.md.
EXCLUDE_PRESETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "head": DEFAULT_EXCLUDE,
    # ... plus the linear attention's activation-by-activation products.
    "head+attention": (
        *DEFAULT_EXCLUDE,
        "/loftr_coarse/layers.?/MatMul*",
        "/loftr_coarse/layers.?_?/MatMul*",
    ),
}


class QuantizeError(CoarseLoftrError):
    """Quantization could not run or wrote an unusable graph; the message says why."""


@dataclass(frozen=True)
class QuantizeConfig:
    """mode: "static" (QDQ, calibrated) or "dynamic"; exclude: node-name globs
    (fnmatch) left in float; calibration_pairs: pairs fed to the calibrator (static
    only); calibration_method: "minmax", "percentile" or "entropy"; per_channel: one
    weight scale per output channel; op_types: op types quantized (elsewhere Q/DQ pairs
    would cost more than the int8 arithmetic saves); seed: of the calibration warps and
    photo order."""

    mode: str = "static"
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    calibration_pairs: int = 16
    calibration_method: str = "minmax"
    per_channel: bool = True
    op_types: tuple[str, ...] = QUANTIZED_OPS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown quantization mode {self.mode!r}; choose {' or '.join(MODES)}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"unknown calibration method {self.calibration_method!r}; "
                f"choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.calibration_pairs < 1:
            raise ValueError(f"calibration_pairs must be at least 1, got {self.calibration_pairs}")


@dataclass
class QuantizeReport:
    """What was written: the op counts before and after; excluded: the nodes of the
    quantized op types that the exclusion globs kept in float."""

    path: Path
    mode: str
    info: ModelInfo
    input_bytes: int
    file_bytes: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    excluded: list[str]
    calibration: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        quantized = {
            op: n
            for op, n in self.ops_after.items()
            if op
            in ("QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear")
        }
        lines = [
            f"wrote {self.path} ({self.file_bytes / 1e6:.2f} MB, from {self.input_bytes / 1e6:.2f} MB), "
            f"{self.mode} int8, model {self.info.name} {self.info.input_size[0]}x{self.info.input_size[1]}",
            "quantization ops: " + (", ".join(f"{op} {n}" for op, n in sorted(quantized.items())) or "none"),
            f"kept in float by the exclusions ({len(self.excluded)} nodes): "
            + (", ".join(self.excluded) or "none"),
        ]
        if self.calibration:
            lines.append(f"calibration: {self.calibration}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def read_info(model: onnx.ModelProto, path: Path) -> ModelInfo:
    """The `ModelInfo` stored in an exported graph's metadata, or a QuantizeError."""
    try:
        return ModelInfo.from_metadata({entry.key: entry.value for entry in model.metadata_props})
    except ValueError as error:
        raise QuantizeError(f"{path}: {error} (export it with `coarse-loftr export-onnx`)") from None


def excluded_nodes(model: onnx.ModelProto, patterns: Sequence[str]) -> list[str]:
    """Names of the graph's nodes that match any glob in `patterns`."""
    return [
        node.name
        for node in model.graph.node
        if any(fnmatch.fnmatchcase(node.name, pattern) for pattern in patterns)
    ]


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive, sorted), or a QuantizeError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QuantizeError(f"calibration image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise QuantizeError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return files


def warp_view(gray: np.ndarray, rng: np.random.Generator, jitter: float = 0.1) -> np.ndarray:
    """A second view of a photo: (H, W) float32 -> the same size, warped by a random
    homography that moves each corner by up to `jitter` of the image side."""
    height, width = gray.shape
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
    moved = corners + rng.uniform(-jitter, jitter, (4, 2)).astype(np.float32) * [width, height]
    homography = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
    return cv2.warpPerspective(
        gray,
        homography,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def calibration_pairs(
    files: Sequence[Path], input_size: tuple[int, int], count: int, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`count` (image0, image1) model inputs, each (1, 1, H, W) float32 in [0, 1] at
    `input_size` (W, H): a photo and a warp of it, photos cycled in a seeded order.
    Unreadable files are skipped."""
    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    made = 0
    for attempt in range(count + len(order)):
        if made == count:
            return
        photo = cv2.imread(str(order[attempt % len(order)]), cv2.IMREAD_UNCHANGED)
        if photo is None or photo.dtype not in (np.uint8, np.uint16):
            continue
        gray = to_gray_float(photo)
        image0, _ = letterbox(gray, input_size)
        image1, _ = letterbox(warp_view(gray, rng), input_size)
        made += 1
        yield image0, image1
    if made < count:
        raise QuantizeError(
            f"only {made} of {count} calibration pairs could be made: the images are unreadable"
        )


class PairReader:
    """ONNX Runtime's CalibrationDataReader protocol over `calibration_pairs`: each
    `get_next()` is one feed {input name: image} per pair, then None."""

    def __init__(
        self,
        pairs: Iterator[tuple[np.ndarray, np.ndarray]],
        input_names: tuple[str, str] = INPUT_NAMES,
    ) -> None:
        self._pairs = pairs
        self._names = input_names
        self.fed = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        pair = next(self._pairs, None)
        if pair is None:
            return None
        self.fed += 1
        return dict(zip(self._names, pair))


def quantize_model(
    onnx_path: str | Path,
    out_path: str | Path,
    config: QuantizeConfig | None = None,
    calibration_images: str | Path | None = None,
) -> QuantizeReport:
    """Quantize the exported graph at `onnx_path` to int8 and write it to `out_path`,
    with the source's metadata (input size, model config) copied over so that
    `inference.Matcher(weights=out_path)` loads it like the float model.

    calibration_images: folder of photos (static mode only, required there).
    Raises QuantizeError for unusable inputs or a failed quantization.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    config = config or QuantizeConfig()
    source, target = Path(onnx_path), Path(out_path)
    if not source.is_file():
        raise QuantizeError(f"ONNX model not found: {source}")
    if source.resolve() == target.resolve():
        raise QuantizeError("the output would overwrite the input model; choose another --out")
    try:
        model = onnx.load(str(source))
    except Exception as error:  # onnx raises DecodeError and others for a bad file
        raise QuantizeError(f"{source}: not a readable ONNX model: {error}") from None
    info = read_info(model, source)
    excluded = excluded_nodes(model, config.exclude)
    kept = [
        node.name
        for node in model.graph.node
        if node.op_type in config.op_types and node.name in set(excluded)
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    report = QuantizeReport(
        path=target,
        mode=config.mode,
        info=info,
        input_bytes=source.stat().st_size,
        file_bytes=0,
        ops_before=dict(Counter(n.op_type for n in model.graph.node)),
        ops_after={},
        excluded=kept,
    )

    if config.mode == "static":
        if calibration_images is None:
            raise QuantizeError("static quantization needs calibration images (--calibration-images)")
        files = list_images(Path(calibration_images))

        class _Reader(PairReader, CalibrationDataReader):
            pass

        reader = _Reader(calibration_pairs(files, info.input_size, config.calibration_pairs, config.seed))
        methods = {
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }
        try:
            quantize_static(
                str(source),
                str(target),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=config.per_channel,
                # U8S8: ORT's x86 kernels (VNNI included) are built around uint8 activations.
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(config.op_types),
                nodes_to_exclude=excluded,
                calibrate_method=methods[config.calibration_method],
            )
        except QuantizeError:  # from the reader: unreadable calibration images
            raise
        except Exception as error:  # onnxruntime's tooling raises plain exceptions of many kinds
            raise QuantizeError(f"static quantization failed: {error}") from None
        report.calibration = (
            f"{reader.fed} pairs from {calibration_images} ({len(files)} images), "
            f"{config.calibration_method}, seed {config.seed}"
        )
    else:
        try:
            quantize_dynamic(
                str(source),
                str(target),
                per_channel=config.per_channel,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(config.op_types),
                nodes_to_exclude=excluded,
            )
        except Exception as error:  # as above
            raise QuantizeError(f"dynamic quantization failed: {error}") from None

    quantized = onnx.load(str(target))
    _copy_metadata(model, quantized)
    onnx.save(quantized, str(target))
    report.ops_after = dict(Counter(n.op_type for n in quantized.graph.node))
    report.file_bytes = target.stat().st_size
    return report


def _copy_metadata(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    present = {entry.key for entry in target.metadata_props}
    for entry in source.metadata_props:
        if entry.key not in present:
            copied = target.metadata_props.add()
            copied.key, copied.value = entry.key, entry.value
