"""ONNX export: checker, TensorRT 10 op support (against onnx-tensorrt's own list), the
FP32 scopes of FP16 engines, integer index arithmetic, metadata, parity with PyTorch in
ONNX Runtime (on a real pair with the shipped weights), FLOP counting."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from fixture_data import PAIRS, TENSORRT10_OPS
from onnx import TensorProto, helper, shape_inference

from coarse_loftr.inference.backends.base import ModelInfo
from coarse_loftr.inference.checkpoint import load_checkpoint
from coarse_loftr.inference.config import MatchConfig, ModelConfig, get_preset
from coarse_loftr.inference.export import (
    TENSORRT_OPS,
    ExportError,
    check_index_arithmetic,
    check_ops,
    export_onnx,
    export_split_onnx,
)
from coarse_loftr.inference.export.onnx_export import CONFIDENT, ParityReport, parity_check
from coarse_loftr.inference.flops import count_flops
from coarse_loftr.inference.graph import (
    IMAGE0_FEATURE_NAMES,
    INPUT_NAMES,
    OUTPUT_NAMES,
    needs_fp32,
    split_paths,
)
from coarse_loftr.inference.model import CoarseLoFTR
from coarse_loftr.inference.paths import WEIGHTS_DIR
from coarse_loftr.inference.preprocess import letterbox, to_gray_float


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


def tensorrt10_ops() -> set[str]:
    """The ops onnx-tensorrt's docs/operators.md marks supported for TensorRT 10 (a copy
    in tests/data, source in tests/data/README.md)."""
    lines = TENSORRT10_OPS.read_text().splitlines()
    ops = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert len(ops) > 100 and {"Conv", "MatMul", "Softmax"} <= ops
    return ops


#: Every preset, at a small size: the op set does not depend on the size.
PRESET_SIZES = [
    ("student", (160, 128)),
    ("teacher", (160, 128)),
    ("coarse_loftr_trt", (160, 128)),
    ("loftr_outdoor", (128, 96)),
]


@pytest.fixture(scope="module", params=PRESET_SIZES, ids=[name for name, _ in PRESET_SIZES])
def preset_graph(request, tmp_path_factory) -> onnx.ModelProto:
    preset, size = request.param
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("preset") / f"{preset}.onnx"
    export_onnx(CoarseLoFTR(get_preset(preset)), path, size, check_parity=False)
    return onnx.load(str(path))


def test_exported_ops_are_supported_by_tensorrt10(preset_graph):
    ops = {node.op_type for node in preset_graph.graph.node}
    assert ops <= tensorrt10_ops(), sorted(ops - tensorrt10_ops())
    assert "Einsum" not in ops  # supported only for some equations: the model avoids it
    assert check_ops(preset_graph) == dict(Counter(node.op_type for node in preset_graph.graph.node))


def test_the_exporters_allow_list_is_within_tensorrt10s():
    """The exporter refuses ops outside its own list: that list must not let through an
    op the parser lacks."""
    assert TENSORRT_OPS <= tensorrt10_ops(), sorted(TENSORRT_OPS - tensorrt10_ops())


def _walk_back(producers: dict[str, onnx.NodeProto], tensor: str, until: str) -> onnx.NodeProto:
    """The nearest node of type `until` upstream of `tensor`, along first inputs."""
    node = producers[tensor]
    while node.op_type != until:
        node = producers[node.input[0]]
    return node


def test_coarse_matching_is_under_the_fp32_scopes(preset_graph):
    """FP16 TensorRT engines keep `needs_fp32(layer names)` in FP32. Found from the
    graph's structure, not its names: the similarity MatMuls are those with a (..., cells,
    cells) output (one per orientation); every node on a path from them to `conf_max` or
    `match_index` must be kept, and no backbone Conv."""
    graph = shape_inference.infer_shapes(preset_graph).graph
    nodes = graph.node
    producers = {output: node for node in nodes for output in node.output}
    dims = {
        info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
        for info in (*graph.value_info, *graph.output)
    }
    cells = dims["conf_max"][1]

    def ancestors(tensor: str) -> set[str]:
        seen: set[str] = set()
        stack = [tensor]
        while stack:
            node = producers.get(stack.pop())
            if node is not None and node.name not in seen:
                seen.add(node.name)
                stack.extend(node.input)
        return seen

    upstream = ancestors("conf_max") | ancestors("match_index")
    similarity = [
        n
        for n in nodes
        if n.op_type == "MatMul" and n.name in upstream and dims[n.output[0]][-2:] == [cells, cells]
    ]
    assert len(similarity) == 2  # s and its transpose, each from its own MatMul
    before = set().union(*(ancestors(name) for n in similarity for name in n.input))
    must = upstream - before
    ops = {n.op_type for n in nodes if n.name in must}
    assert {"MatMul", "Softmax", "ReduceMax", "TopK", "GatherElements", "Exp", "Log"} <= ops, ops

    kept = set(needs_fp32(node.name for node in nodes))
    assert must <= kept, sorted(must - kept)
    assert not [node.name for node in nodes if node.op_type == "Conv" and node.name in kept]


def test_parity_report_of_random_models(exported):
    """The export's own check on random weights and a random pair: the dense outputs
    agree (random weights give few or no confident cells; the index and offset checks
    are made with the shipped weights on a real pair below)."""
    _, report, _ = exported
    parity = report.parity
    assert parity is not None and parity.ok
    assert parity.conf_matrix_max_diff < 1e-4
    assert parity.conf_max_max_diff < 1e-4
    assert "OK" in report.summary().splitlines()[-1]


def test_parity_allows_mutual_ties_only_below_the_default_threshold():
    """A cell mutual in one runtime and not in the other is a near-tie rounding decides:
    tolerated while it could not be a match at the default threshold, a failure above."""
    agreeing = ParityReport(1e-6, 1e-6, confident_cells=40, index_agreement=1.0, offset_max_diff=1e-5)
    tie = replace(agreeing, mutual_flips=1, flip_max_conf=0.0137)
    match = replace(agreeing, mutual_flips=1, flip_max_conf=MatchConfig().threshold)
    assert agreeing.ok and tie.ok and not match.ok
    assert "1 mutual ties flipped (conf <= 0.014)" in tie.line() and tie.line().endswith("OK")
    assert match.line().endswith("FAILED")


@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory) -> tuple[CoarseLoFTR, Path]:
    """The shipped student (weights/student.pt) exported at 320x240."""
    model, _ = load_checkpoint(WEIGHTS_DIR / "student.pt")
    path = tmp_path_factory.mktemp("shipped") / "student_320x240.onnx"
    export_onnx(model, path, (320, 240))
    return model, path


def _real_pair(stem: str = "0001") -> tuple[torch.Tensor, torch.Tensor]:
    """A fixture pair letterboxed to 320x240 as the runtime does: (1, 1, 240, 320) each."""
    images = (cv2.imread(str(PAIRS / f"{stem}_{side}.jpg")) for side in "ab")
    return tuple(torch.from_numpy(letterbox(to_gray_float(image), (320, 240))[0]) for image in images)


def test_onnxruntime_matches_pytorch_on_confident_cells_of_a_real_pair(shipped_export):
    """ONNX Runtime against PyTorch directly, on the cells that become matches."""
    model, path = shipped_export
    images = _real_pair()
    with torch.no_grad():
        expected = [t.numpy()[0] for t in model.predict(*images)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: image.numpy() for name, image in zip(INPUT_NAMES, images)}
    conf_max, match_index, offset1 = (out[0] for out in session.run(list(OUTPUT_NAMES), feeds))

    confident = expected[0] > MatchConfig().threshold
    assert confident.sum() >= 400, confident.sum()  # of 1200 cells: a textured, overlapping pair
    np.testing.assert_allclose(conf_max, expected[0], atol=1e-4)
    np.testing.assert_array_equal(match_index[confident], expected[1][confident])
    np.testing.assert_allclose(offset1[confident], expected[2][confident], atol=1e-3)


def test_parity_report_counts_confident_cells_on_a_real_pair(shipped_export):
    model, path = shipped_export
    parity = parity_check(model, path, _real_pair("0121"))
    assert parity.ok, parity.line()
    assert parity.confident_cells >= 500 and parity.index_agreement == 1.0


def test_parity_report_fails_for_a_graph_that_differs(shipped_export, tmp_path):
    """The report can fail: the same graph with one transformer weight scaled by 1.1."""
    model, path = shipped_export
    graph = onnx.load(str(path))
    weight = next(init for init in graph.graph.initializer if "loftr_coarse" in init.name)
    array = onnx.numpy_helper.to_array(weight) * 1.1
    weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
    changed = tmp_path / "changed.onnx"
    onnx.save(graph, str(changed))
    parity = parity_check(model, changed, _real_pair())
    assert not parity.ok and "FAILED" in parity.line()


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
    assert "later refinement levels left out" in result.stdout
    graph = onnx.load(str(out))
    info = ModelInfo.from_metadata({p.key: p.value for p in graph.metadata_props})
    assert info.config["fine2_dim"] == 0
    assert "Round" not in {node.op_type for node in graph.graph.node}  # only level 2 rounds


@pytest.mark.parametrize("preset", ["student", "coarse_loftr_trt"])
def test_split_graphs_are_the_pair_graph_in_two(preset, tmp_path):
    """The reference and frame graphs: static, TensorRT-10 ops, the names of the graph
    contract, and, run in turn in ONNX Runtime on a real pair, the pair graph's outputs."""
    torch.manual_seed(0)
    # The shipped student has confident cells to compare; the published preset, random, none.
    model = (
        load_checkpoint(WEIGHTS_DIR / "student.pt")[0]
        if preset == "student"
        else CoarseLoFTR(get_preset(preset))
    )
    model = model.eval()
    size = (320, 240)
    path = tmp_path / f"{preset}.onnx"
    export_onnx(model, path, size, check_parity=False)
    report = export_split_onnx(model, path, size)
    assert report.parity is not None and report.parity.ok and report.parity.conf_matrix_max_diff is None
    assert (report.reference, report.frame) == split_paths(path)
    reference, frame = (onnx.load(str(p)) for p in split_paths(path))
    levels = len(model.refinement_heads())
    names = list(IMAGE0_FEATURE_NAMES[: 1 + levels])
    assert [arg.name for arg in reference.graph.input] == ["image0"]
    assert [arg.name for arg in reference.graph.output] == names
    assert [arg.name for arg in frame.graph.input] == ["image1", *names]
    assert [arg.name for arg in frame.graph.output] == list(OUTPUT_NAMES)
    for graph in (reference, frame):
        ops = {node.op_type for node in graph.graph.node}
        assert ops <= tensorrt10_ops(), sorted(ops - tensorrt10_ops())
    image0, image1 = (
        letterbox(to_gray_float(cv2.imread(str(PAIRS / f"0001_{side}.jpg"))), size)[0] for side in "ab"
    )
    whole = ort.InferenceSession(str(path)).run(list(OUTPUT_NAMES), {"image0": image0, "image1": image1})
    features = ort.InferenceSession(str(report.reference)).run(names, {"image0": image0})
    halves = ort.InferenceSession(str(report.frame)).run(
        list(OUTPUT_NAMES), {"image1": image1, **dict(zip(names, features))}
    )
    confident = whole[0] > (CONFIDENT if preset == "student" else 0)
    assert confident.sum() > 50
    np.testing.assert_allclose(halves[0], whole[0], atol=1e-5)
    np.testing.assert_array_equal(halves[1][confident], whole[1][confident])
    np.testing.assert_allclose(halves[2][confident], whole[2][confident], atol=1e-3)
