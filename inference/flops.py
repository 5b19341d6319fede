"""Analytic FLOP count of an ONNX graph (no torch; needs the `onnx` package).

Counts the multiply-adds of the ops that dominate this model: Conv, MatMul and Gemm,
from shapes given by ONNX shape inference. One multiply-add counts as 2 FLOPs.
Element-wise ops, softmax and normalisation are left out (a few percent here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path

_COUNTED = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class FlopCount:
    """total: FLOPs of one run of the graph (one image pair); by_op: FLOPs per op type."""

    total: int
    by_op: dict[str, int] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return self.total / 1e9


def count_flops(model_or_path: object) -> FlopCount:
    """FLOPs of a static-shape ONNX model (a path or an `onnx.ModelProto`).

    Shapes come from ONNX shape inference; the few it cannot resolve (the traced graph
    computes some from Shape ops) are read from one ONNX Runtime run on zero inputs.
    Raises ImportError when `onnx` is missing.
    """
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    assert isinstance(model, onnx.ModelProto)
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    graph = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = info.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)

    counted = [node for node in graph.node if node.op_type in _COUNTED]
    needed = {name for node in counted for name in (node.input[0], node.input[1], node.output[0])}
    unknown = sorted(needed - shapes.keys())
    if unknown:
        shapes.update(_shapes_by_running(model, unknown))

    by_op: dict[str, int] = {}
    for node in counted:
        out = shapes[node.output[0]]
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]  # (C_out, C_in / groups, kH, kW)
            macs = prod(out) * prod(weight[1:])
        else:
            a = shapes[node.input[0]]
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            macs = prod(out) * (a[0] if trans_a else a[-1])
        by_op[node.op_type] = by_op.get(node.op_type, 0) + 2 * macs
    return FlopCount(sum(by_op.values()), by_op)


def _shapes_by_running(model: object, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of intermediate tensors: expose them as graph outputs and run once."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {output.name for output in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.add().name = name
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for arg in session.get_inputs():
        if not all(isinstance(d, int) for d in arg.shape):
            raise ValueError(f"input {arg.name!r} has a dynamic shape {arg.shape}; FLOPs need static shapes")
        feeds[arg.name] = np.zeros(arg.shape, dtype=np.float32)
    values = session.run(names, feeds)
    return {name: tuple(value.shape) for name, value in zip(names, values)}
