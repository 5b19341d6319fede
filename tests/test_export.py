"""ONNX export: checker, TensorRT op allow-list, integer index arithmetic, metadata,
parity with PyTorch in ONNX Runtime, FLOP counting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from coarse_loftr.inference.backends.base import ModelInfo
from coarse_loftr.inference.config import ModelConfig, get_preset
from coarse_loftr.inference.export import (
    TENSORRT_OPS,
    ExportError,
    check_index_arithmetic,
    check_ops,
    export_onnx,
)
from coarse_loftr.inference.flops import count_flops
from coarse_loftr.inference.model import CoarseLoFTR


@pytest.fixture(
    scope="module",
    params=[("student", (320, 240)), ("coarse_loftr_trt", (640, 480))],
    ids=["student-320x240", "coarse_loftr_trt-640x480"],
)
def exported(request, tmp_path_factory):
    preset, size = request.param
    torch.manual_seed(0)
    model = CoarseLoFTR(get_preset(preset))
    path = tmp_path_factory.mktemp("export") / f"{preset}.onnx"
    return model, export_onnx(model, path, size), size


def test_graph_is_valid_static_and_opset17(exported):
    _, report, (width, height) = exported
    onnx.checker.check_model(str(report.path))
    graph = onnx.load(str(report.path))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [17]
    for arg in graph.graph.input:
        assert [d.dim_value for d in arg.type.tensor_type.shape.dim] == [1, 1, height, width]
    assert [o.name for o in graph.graph.output] == ["conf_max", "match_index", "offset1"]
    assert graph.graph.output[1].type.tensor_type.elem_type == TensorProto.INT64


def test_ops_are_in_the_tensorrt_allow_list(exported):
    _, report, _ = exported
    ops = {node.op_type for node in onnx.load(str(report.path)).graph.node}
    assert ops <= TENSORRT_OPS
    assert "Einsum" not in ops
    assert report.ops == check_ops(onnx.load(str(report.path)))


def test_parity_with_pytorch(exported):
    _, report, _ = exported
    parity = report.parity
    assert parity is not None and parity.ok
    assert parity.conf_matrix_max_diff < 1e-4
    assert parity.conf_max_max_diff < 1e-4
    assert parity.index_agreement == 1.0
    assert "OK" in report.summary().splitlines()[-1]


def test_metadata_round_trip(exported):
    model, report, size = exported
    meta = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    info = ModelInfo.from_metadata(meta)
    assert info.input_size == size
    assert info.coarse_stride == model.config.coarse_stride
    assert info.name == model.config.name
    assert ModelConfig.from_dict(info.config) == model.config


def test_flops_of_the_export(exported):
    model, report, (width, height) = exported
    # The first convolution alone: 7x7 over one channel at half resolution, both images.
    stem = model.config.backbone.stem_dim
    stem_flops = 2 * 2 * stem * 49 * (width // 2) * (height // 2)
    assert report.gflops * 1e9 > stem_flops
    assert report.gflops == pytest.approx(count_flops(report.path).gflops)


def test_bad_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="multiples of the coarse stride 16"):
        export_onnx(CoarseLoFTR(get_preset("coarse_loftr_trt")), tmp_path / "x.onnx", (600, 450))


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_einsum_is_rejected():
    value = helper.make_tensor_value_info
    model = _model(
        [helper.make_node("Einsum", ["a", "b"], ["c"], equation="ij,jk->ik")],
        [value("a", TensorProto.FLOAT, [2, 3]), value("b", TensorProto.FLOAT, [3, 4])],
        [value("c", TensorProto.FLOAT, [2, 4])],
    )
    with pytest.raises(ExportError, match="Einsum"):
        check_ops(model)


def test_float_cast_of_the_index_is_rejected():
    value = helper.make_tensor_value_info
    nodes = [
        helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=0),
        helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["f", "w"], ["row"]),
    ]
    width = helper.make_tensor("w", TensorProto.FLOAT, [], [40.0])
    model = _model(
        nodes, [value("x", TensorProto.FLOAT, [1, 8])], [value("row", TensorProto.FLOAT, [1])], [width]
    )
    with pytest.raises(ExportError, match="FLOAT"):
        check_index_arithmetic(model)
    # The same arithmetic on integers passes.
    nodes = [
        helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=0),
        helper.make_node("Div", ["i", "w"], ["row"]),
    ]
    width = helper.make_tensor("w", TensorProto.INT64, [], [40])
    check_index_arithmetic(
        _model(
            nodes, [value("x", TensorProto.FLOAT, [1, 8])], [value("row", TensorProto.INT64, [1])], [width]
        )
    )


def test_flop_counter_on_a_known_graph():
    value = helper.make_tensor_value_info
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.0] * 108)
    matrix = helper.make_tensor("m", TensorProto.FLOAT, [8, 5], [0.0] * 40)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["y", "m"], ["z"]),
    ]
    model = _model(
        nodes,
        [value("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [value("z", TensorProto.FLOAT, [1, 4, 8, 5])],
        [weight, matrix],
    )
    flops = count_flops(model)
    assert flops.by_op == {"Conv": 2 * 4 * 8 * 8 * 27, "MatMul": 2 * 4 * 8 * 5 * 8}


def test_export_can_leave_out_the_second_refinement_level(tmp_path):
    out = tmp_path / "level1.onnx"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coarse_loftr",
            "export-onnx",
            "--preset",
            "student",
            "--size",
            "160x120",
            "--out",
            str(out),
            "--first-level-only",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert "second refinement level left out" in result.stdout
    graph = onnx.load(str(out))
    info = ModelInfo.from_metadata({p.key: p.value for p in graph.metadata_props})
    assert info.config["fine2_dim"] == 0
    assert "Round" not in {node.op_type for node in graph.graph.node}  # only level 2 rounds
