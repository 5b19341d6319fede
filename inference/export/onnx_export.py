"""Export `CoarseLoFTR.predict` to a static-shape ONNX graph that ONNX Runtime and
TensorRT 10 both run, and check it: ONNX checker, an op allow-list, integer index
arithmetic, metadata, and numerical parity with PyTorch in ONNX Runtime.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, shape_inference
from torch import nn

from ..backends.base import ModelInfo
from ..config import MatchConfig
from ..errors import CoarseLoftrError
from ..flops import count_flops
from ..graph import DEFAULT_OPSET, IMAGE0_FEATURE_NAMES, INPUT_NAMES, OUTPUT_NAMES, split_paths
from ..model import CoarseLoFTR, FrameGraph, PredictGraph, ReferenceGraph

#: Ops this graph uses that TensorRT 10's ONNX parser supports (onnx-tensorrt
#: docs/operators.md for 10.x). Anything else fails the export, so a graph change that
#: would break TensorRT is caught on a machine without a GPU. Einsum is left out on
#: purpose: the parser takes only a subset of equations and LoFTR's einsums were the
#: usual reason its exports failed; this model is written with MatMul instead.
TENSORRT_OPS = frozenset(
    {
        "Add",
        "And",
        "ArgMax",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "Div",
        "Elu",
        "Equal",
        "Exp",
        "Expand",
        "Flatten",
        "Gather",
        "GatherElements",
        "Gemm",
        "Greater",
        "GreaterOrEqual",
        "Identity",
        "LayerNormalization",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "MatMul",
        "Max",
        "Min",
        "Mod",
        "Mul",
        "Neg",
        "Not",
        "Or",
        "Pad",
        "Pow",
        "Reciprocal",
        "ReduceMax",
        "ReduceMean",
        "ReduceSum",
        "Relu",
        "Reshape",
        "Round",
        "Shape",
        "Slice",
        "Softmax",
        "Sqrt",
        "Squeeze",
        "Sub",
        "TopK",
        "Transpose",
        "Unsqueeze",
        "Where",
        "Xor",
    }
)

PARITY_TOLERANCE = 1e-4
#: Cells whose best match is at least this confident must agree exactly on the index
#: (below it, near-ties between cells may legitimately flip between runtimes).
CONFIDENT = 0.01
#: A cell may be mutual in one runtime and not in the other only below this confidence:
#: two image0 cells all but tied for one image1 cell, where rounding decides, and where
#: the flip cannot add or remove a match at the default threshold.
MUTUAL_TIE = MatchConfig().threshold

_INTEGER_TYPES = {
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.UINT32,
    TensorProto.UINT64,
    TensorProto.INT16,
    TensorProto.INT8,
    TensorProto.UINT8,
    TensorProto.UINT16,
}
_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}


class ExportError(CoarseLoftrError):
    """The exported graph failed a check; the message says which."""


@dataclass
class ParityReport:
    """ONNX Runtime vs PyTorch on one random input pair.

    conf_matrix_max_diff: max |difference| of the dual-softmax matrix; conf_max_max_diff:
    of the deployed per-cell confidence, over the cells both call mutual or both not;
    mutual_flips: the other cells, flip_max_conf the highest confidence among them;
    confident_cells: cells with conf_max > CONFIDENT in PyTorch; index_agreement:
    fraction of those with the same match_index; offset_max_diff: max |difference| of
    offset1 (pixels) over those cells; graphs: what ran in ONNX Runtime. The split graphs
    have no confidence matrix to compare (None).
    """

    conf_matrix_max_diff: float | None
    conf_max_max_diff: float
    confident_cells: int
    index_agreement: float
    offset_max_diff: float
    mutual_flips: int = 0
    flip_max_conf: float = 0.0
    torch_finite: bool = True
    graphs: str = "onnxruntime"

    @property
    def ok(self) -> bool:
        return (
            self.torch_finite
            and (self.conf_matrix_max_diff is None or self.conf_matrix_max_diff < PARITY_TOLERANCE)
            and self.conf_max_max_diff < PARITY_TOLERANCE
            and self.flip_max_conf < MUTUAL_TIE
            and self.index_agreement == 1.0
            and self.offset_max_diff < 1e-2
        )

    def line(self) -> str:
        if not self.torch_finite:
            return (
                "parity: FAILED, PyTorch itself outputs NaN/inf "
                "(broken weights, e.g. negative BatchNorm variances)"
            )
        matrix = (
            ""
            if self.conf_matrix_max_diff is None
            else f"conf_matrix max|diff| {self.conf_matrix_max_diff:.2e}, "
        )
        return (
            f"parity ({self.graphs} vs torch): {matrix}"
            f"conf_max max|diff| {self.conf_max_max_diff:.2e}, {self.mutual_flips} mutual ties flipped"
            f"{f' (conf <= {self.flip_max_conf:.3f})' if self.mutual_flips else ''}, match_index equal on "
            f"{self.index_agreement:.1%} of {self.confident_cells} cells with conf > {CONFIDENT}, "
            f"offset1 max|diff| {self.offset_max_diff:.2e} px -> {'OK' if self.ok else 'FAILED'}"
        )


@dataclass
class ExportReport:
    """What was written and what was checked."""

    path: Path
    info: ModelInfo
    opset: int
    ops: dict[str, int]
    file_bytes: int
    parameters: int
    gflops: float
    export_seconds: float
    parity: ParityReport | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        width, height = self.info.input_size
        cols, rows = self.info.grid_size
        lines = [
            f"wrote {self.path} ({self.file_bytes / 1e6:.2f} MB, opset {self.opset}) "
            f"in {self.export_seconds:.1f} s",
            f"model {self.info.name}: {self.parameters:,} parameters, input {width}x{height}, "
            f"coarse grid {cols}x{rows} (stride {self.info.coarse_stride}), {self.gflops:.2f} GFLOP per pair",
            f"ops ({sum(self.ops.values())} nodes, all in the TensorRT 10 allow-list): "
            + ", ".join(f"{op} {n}" for op, n in sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        ]
        lines += [f"note: {note}" for note in self.notes]
        if self.parity is not None:
            lines.append(self.parity.line())
        return "\n".join(lines)


class _ConfidenceGraph(nn.Module):
    """The dual-softmax matrix as a graph output, only for the parity check."""

    def __init__(self, model: CoarseLoFTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> torch.Tensor:
        return self.model(image0, image1).conf_matrix


def export_onnx(
    model: CoarseLoFTR,
    path: str | Path,
    input_size: tuple[int, int] = (640, 480),
    opset: int = DEFAULT_OPSET,
    check_parity: bool = True,
    seed: int = 0,
) -> ExportReport:
    """Write `model.predict` for one (W, H) pair size as ONNX and check it.

    The graph takes image0, image1: (1, 1, H, W) float32 in [0, 1] and returns conf_max
    (1, N0) float32, match_index (1, N0) int64, offset1 (1, N0, 2) float32 (see
    `CoarseLoFTR.predict`). Raises ValueError for an unusable input size and ExportError
    when a check fails (the file is still written, for inspection).
    """
    path = Path(path)
    model = model.eval()
    info = _model_info(model, input_size)
    images = _random_pair(info, seed)
    start = time.perf_counter()
    graph = _write_graph(PredictGraph(model), images, path, INPUT_NAMES, OUTPUT_NAMES, opset, info)
    export_seconds = time.perf_counter() - start
    check_index_arithmetic(graph)
    report = ExportReport(
        path=path,
        info=info,
        opset=opset,
        ops=check_ops(graph),
        file_bytes=path.stat().st_size,
        parameters=sum(p.numel() for p in model.parameters()),
        gflops=count_flops(graph).gflops,
        export_seconds=export_seconds,
    )
    if check_parity:
        report.parity = parity_check(model, path, images, opset)
        if not report.parity.ok:
            raise ExportError(report.parity.line())
    return report


@dataclass
class SplitExportReport:
    """The two graphs of `export_split_onnx`: paths, op counts and GFLOP of each, parity."""

    reference: Path
    frame: Path
    ops: dict[str, int]
    reference_gflops: float
    frame_gflops: float
    parity: ParityReport | None = None

    def summary(self) -> str:
        lines = [
            f"wrote {self.reference} ({self.reference.stat().st_size / 1e6:.2f} MB, "
            f"{self.reference_gflops:.2f} GFLOP, once per reference) and {self.frame} "
            f"({self.frame.stat().st_size / 1e6:.2f} MB, {self.frame_gflops:.2f} GFLOP per frame)",
            f"ops of both ({sum(self.ops.values())} nodes, all in the TensorRT 10 allow-list)",
        ]
        if self.parity is not None:
            lines.append(self.parity.line())
        return "\n".join(lines)


def export_split_onnx(
    model: CoarseLoFTR,
    path: str | Path,
    input_size: tuple[int, int] = (640, 480),
    opset: int = DEFAULT_OPSET,
    check_parity: bool = True,
    seed: int = 0,
) -> SplitExportReport:
    """Write `model.predict` split in two at `split_paths(path)` (see `inference.graph`):
    the reference graph, image0 (1, 1, H, W) -> `IMAGE0_FEATURE_NAMES`, and the frame
    graph, image1 and those -> conf_max, match_index, offset1. Same checks as
    `export_onnx`; the parity check runs the two graphs in turn against `predict`."""
    model = model.eval()
    info = _model_info(model, input_size)
    images = _random_pair(info, seed)
    reference_path, frame_path = split_paths(path)
    with torch.no_grad():
        features = model.describe_image0(images[0])
    feature_names = IMAGE0_FEATURE_NAMES[: 1 + len(features.descriptors0)]
    reference = _write_graph(
        ReferenceGraph(model), images[:1], reference_path, INPUT_NAMES[:1], feature_names, opset, info
    )
    frame = _write_graph(
        FrameGraph(model),
        (images[1], features.tokens0, *features.descriptors0),
        frame_path,
        (INPUT_NAMES[1], *feature_names),
        OUTPUT_NAMES,
        opset,
        info,
    )
    check_index_arithmetic(frame)
    ops = Counter(check_ops(reference)) + Counter(check_ops(frame))
    report = SplitExportReport(
        reference_path, frame_path, dict(ops), count_flops(reference).gflops, count_flops(frame).gflops
    )
    if check_parity:
        report.parity = split_parity_check(model, reference_path, frame_path, images)
        if not report.parity.ok:
            raise ExportError(report.parity.line())
    return report


def _model_info(model: CoarseLoFTR, input_size: tuple[int, int]) -> ModelInfo:
    return ModelInfo(
        input_size=_validate_size(model, input_size),
        coarse_stride=model.config.coarse_stride,
        name=model.config.name,
        config=model.config.to_dict(),
    )


def _random_pair(info: ModelInfo, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    width, height = info.input_size
    generator = torch.Generator().manual_seed(seed)
    image0, image1 = (torch.rand(1, 1, height, width, generator=generator) for _ in INPUT_NAMES)
    return image0, image1


def _write_graph(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    opset: int,
    info: ModelInfo,
) -> onnx.ModelProto:
    """Trace `module` to `path` with `info` as metadata, check it with the ONNX checker
    and return it (op and index checks are the caller's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _trace_to_onnx(module, inputs, path, list(output_names), opset, input_names)
    graph = onnx.load(str(path))
    for key, value in info.to_metadata().items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))
    onnx.checker.check_model(str(path))
    return graph


def _validate_size(model: CoarseLoFTR, input_size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in input_size)
    stride = model.config.coarse_stride
    max_h, max_w = model.config.pe_max_shape
    if width <= 0 or height <= 0 or width % stride or height % stride:
        raise ValueError(
            f"input size {width}x{height} must be positive multiples of the coarse "
            f"stride {stride} of model {model.config.name!r}"
        )
    if width // stride > max_w or height // stride > max_h:
        raise ValueError(
            f"input size {width}x{height} exceeds the positional encoding's {max_w * stride}x{max_h * stride}"
        )
    return width, height


def _trace_to_onnx(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    output_names: list[str],
    opset: int,
    input_names: tuple[str, ...] = INPUT_NAMES,
) -> None:
    # The TorchScript exporter: static shapes, and the graph it writes is the one the
    # op allow-list was checked against. The torch.export-based one (dynamo=True) is
    # the default since torch 2.9 and warns that this path is deprecated.
    # The exporter restores the wrapper's train/eval flag recursively afterwards: a fresh
    # wrapper (training=True) would leave the wrapped model's BatchNorms in training mode.
    module.eval()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=list(input_names),
            output_names=output_names,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def check_ops(graph: onnx.ModelProto) -> dict[str, int]:
    """Op type -> count; raises ExportError for any op outside `TENSORRT_OPS`."""
    ops = Counter(node.op_type for node in graph.graph.node)
    unsupported = sorted(set(ops) - TENSORRT_OPS)
    if unsupported:
        raise ExportError(f"ops outside the TensorRT 10 allow-list: {', '.join(unsupported)}")
    return dict(ops)


def check_index_arithmetic(graph: onnx.ModelProto) -> None:
    """Assert that cell indices (ArgMax / TopK outputs) stay integers through the graph.

    Follows every integer tensor computed from an index; raises ExportError if one is
    cast to a float type (FP16 holds integers exactly only up to 2048) or if a Div /
    Mod on it has a float operand.
    """
    inferred = shape_inference.infer_shapes(graph)
    types = {
        info.name: info.type.tensor_type.elem_type
        for info in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    for init in inferred.graph.initializer:
        types[init.name] = init.data_type
    for node in inferred.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type

    index = {
        node.output[1] if node.op_type == "TopK" else node.output[0]
        for node in inferred.graph.node
        if node.op_type in ("ArgMax", "TopK")
    }
    if not index:
        raise ExportError("no ArgMax/TopK in the graph: cannot find the match index")
    # Nodes are topologically sorted in a valid ONNX graph, so one pass propagates.
    for node in inferred.graph.node:
        if not index.intersection(node.input):
            continue
        if node.op_type == "Cast":
            target = next(attr.i for attr in node.attribute if attr.name == "to")
            if target in _FLOAT_TYPES and types.get(node.input[0]) in _INTEGER_TYPES:
                raise ExportError(
                    f"Cast {node.name!r} turns the integer index tensor "
                    f"{node.input[0]!r} into {TensorProto.DataType.Name(target)}"
                )
        if node.op_type in ("Div", "Mod"):
            float_inputs = [name for name in node.input if types.get(name) in _FLOAT_TYPES]
            if float_inputs:
                raise ExportError(
                    f"{node.op_type} {node.name!r} on index tensors has float "
                    f"operands: {', '.join(float_inputs)}"
                )
        index.update(name for name in node.output if types.get(name) in _INTEGER_TYPES)


def parity_check(
    model: CoarseLoFTR, onnx_path: Path, images: tuple[torch.Tensor, ...], opset: int = DEFAULT_OPSET
) -> ParityReport:
    """Run the exported graph and a temporary conf_matrix graph in ONNX Runtime (CPU)
    and compare with PyTorch on the same input."""
    feeds = {name: image.numpy() for name, image in zip(INPUT_NAMES, images)}
    with torch.no_grad():
        conf_t = model(*images).conf_matrix.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        conf_path = Path(tmp) / "conf_matrix.onnx"
        _trace_to_onnx(_ConfidenceGraph(model), images, conf_path, ["conf_matrix"], opset)
        (conf_o,) = _session(conf_path).run(None, feeds)
    outputs = _session(onnx_path).run(list(OUTPUT_NAMES), feeds)
    report = _compare_cells(model, images, outputs, "onnxruntime")
    report.conf_matrix_max_diff = float(np.abs(conf_o - conf_t).max())
    report.torch_finite = report.torch_finite and bool(np.isfinite(conf_t).all())
    return report


def split_parity_check(
    model: CoarseLoFTR, reference_path: Path, frame_path: Path, images: tuple[torch.Tensor, ...]
) -> ParityReport:
    """Run the reference graph on image0, then the frame graph on image1 and its outputs,
    in ONNX Runtime (CPU), and compare with `predict` in PyTorch on the same pair."""
    reference = _session(reference_path)
    names = [arg.name for arg in reference.get_outputs()]
    features = reference.run(names, {INPUT_NAMES[0]: images[0].numpy()})
    feeds = {INPUT_NAMES[1]: images[1].numpy(), **dict(zip(names, features))}
    outputs = _session(frame_path).run(list(OUTPUT_NAMES), feeds)
    return _compare_cells(model, images, outputs, "onnxruntime reference + frame graphs")


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _compare_cells(
    model: CoarseLoFTR, images: tuple[torch.Tensor, ...], outputs: list[np.ndarray], graphs: str
) -> ParityReport:
    """The per-cell outputs of a graph run against `predict` in PyTorch on the same pair."""
    with torch.no_grad():
        conf_max_t, index_t, offset_t = (t.numpy() for t in model.predict(*images))
    conf_max_o, index_o, offset_o = outputs
    confident = conf_max_t > CONFIDENT
    count = int(confident.sum())
    agreement = float((index_o[confident] == index_t[confident]).mean()) if count else 1.0
    offset_diff = float(np.abs(offset_o[confident] - offset_t[confident]).max()) if count else 0.0
    flipped = (conf_max_o > 0) != (conf_max_t > 0)
    return ParityReport(
        conf_matrix_max_diff=None,
        conf_max_max_diff=float(np.abs(conf_max_o - conf_max_t)[~flipped].max(initial=0.0)),
        confident_cells=count,
        index_agreement=agreement,
        offset_max_diff=offset_diff,
        mutual_flips=int(flipped.sum()),
        flip_max_conf=float(np.maximum(conf_max_o, conf_max_t)[flipped].max(initial=0.0)),
        torch_finite=bool(np.isfinite(conf_max_t).all() and np.isfinite(offset_t).all()),
        graphs=graphs,
    )
