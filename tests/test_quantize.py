"""INT8 quantization (inference/export/quantize.py, `coarse-loftr quantize`) with real
ONNX Runtime: the graph and CLI checks on a random-initialised student and calibration
photos written here; the accuracy check on the shipped live model and the fixture pairs."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import onnx
import pytest
from fixture_data import PAIRS

from coarse_loftr.commands import main
from coarse_loftr.inference import Matcher
from coarse_loftr.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from coarse_loftr.inference.benchmark import synthetic_pair
from coarse_loftr.inference.export.quantize import (
    DEFAULT_EXCLUDE,
    PairReader,
    QuantizeConfig,
    QuantizeError,
    calibration_pairs,
    excluded_nodes,
    list_images,
    quantize_model,
)
from coarse_loftr.inference.paths import WEIGHTS_DIR

#: The shipped live model, the float reference of the accuracy check.
SHIPPED_LIVE = WEIGHTS_DIR / "student_320x240.onnx"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three textured 'photos' of different sizes (not the evaluation set)."""
    folder = tmp_path_factory.mktemp("photos")
    for seed, size in enumerate([(400, 300), (512, 384), (300, 400)]):
        cv2.imwrite(str(folder / f"photo{seed}.png"), synthetic_pair(seed, size).image0)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _ops(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _outputs(path, pair):
    backend = OnnxRuntimeBackend(path, num_threads=1)
    return backend, backend.run(*pair)


def test_calibration_pairs_are_model_inputs_of_two_different_views(photos):
    files = list_images(photos)
    assert [f.suffix for f in files] == [".png"] * 3
    pairs = list(calibration_pairs(files, (320, 240), count=5, seed=1))
    assert len(pairs) == 5
    for image0, image1 in pairs:
        for image in (image0, image1):
            assert image.shape == (1, 1, 240, 320) and image.dtype == np.float32
            assert 0.0 <= image.min() and image.max() <= 1.0
        assert not np.allclose(image0, image1)
    reader = PairReader(iter(pairs[:2]))
    assert set(reader.get_next()) == {"image0", "image1"}
    assert reader.get_next() is not None and reader.get_next() is None and reader.fed == 2


def test_static_int8_loads_in_the_matcher_with_metadata_and_same_shapes(
    random_student_onnx, photos, tmp_path
):
    out = tmp_path / "student_int8.onnx"
    report = quantize_model(random_student_onnx, out, QuantizeConfig(calibration_pairs=3), photos)

    ops = _ops(out)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    source_meta = {p.key: p.value for p in onnx.load(str(random_student_onnx)).metadata_props}
    written = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert {key: written.get(key) for key in source_meta} == source_meta
    assert report.calibration.startswith("3 pairs")

    # The excluded similarity MatMul stays float: its inputs are not dequantized int8.
    model = onnx.load(str(out))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    similarity = next(n for n in model.graph.node if n.name == "/mutual_nearest/MatMul")
    assert all(producers.get(name) != "DequantizeLinear" for name in similarity.input)
    projection = next(n for n in model.graph.node if n.name.endswith("layers.0/q_proj/MatMul"))
    assert all(producers.get(name) == "DequantizeLinear" for name in projection.input)

    pair = tuple(np.random.default_rng(0).random((1, 1, 240, 320), dtype=np.float32) for _ in range(2))
    float_backend, expected = _outputs(random_student_onnx, pair)
    int8_backend, got = _outputs(out, pair)
    assert int8_backend.info == float_backend.info
    for name in ("conf_max", "match_index", "offset1"):
        assert getattr(got, name).shape == getattr(expected, name).shape
        assert getattr(got, name).dtype == getattr(expected, name).dtype
    assert np.isfinite(got.conf_max).all() and np.isfinite(got.offset1).all()

    matcher = Matcher(weights=out, backend="onnxruntime", num_threads=1)
    assert matcher.input_size == (320, 240)
    result = matcher.match(*(synthetic_pair(7).image0, synthetic_pair(7).image1))
    assert result.keypoints0.shape == result.keypoints1.shape == (len(result), 2)


@pytest.mark.parametrize("stem", ["0001", "0121"], ids=["easy-generated", "graffiti-real"])
def test_static_int8_matches_like_the_float_model_on_real_pairs(shipped_int8, stem):
    """The default static int8 copy of the shipped live model, calibrated on the fixture
    photos, finds about as many matches as the float model on a real pair, and its 100
    most confident matches land where the float model's do (same image0 cells, image1
    positions within 3 px)."""
    image0, image1 = (cv2.imread(str(PAIRS / f"{stem}_{side}.jpg")) for side in "ab")
    expected = Matcher(weights=SHIPPED_LIVE, backend="onnxruntime", num_threads=1).match(image0, image1)
    got = Matcher(weights=shipped_int8, backend="onnxruntime", num_threads=1).match(image0, image1)
    assert len(expected) >= 300  # a textured pair: the comparison has something to compare
    assert abs(len(got) - len(expected)) <= 0.1 * len(expected), (len(got), len(expected))

    # keypoints0 are image0 cell centres, the same grid in both models: pair them up.
    cells = {tuple(np.round(point, 3)): i for i, point in enumerate(got.keypoints0)}
    top = np.argsort(-expected.confidence)[:100]
    distances = np.array(
        [
            np.linalg.norm(expected.keypoints1[i] - got.keypoints1[cells[key]])
            if (key := tuple(np.round(expected.keypoints0[i], 3))) in cells
            else np.inf
            for i in top
        ]
    )
    assert (distances < 3.0).mean() >= 0.9, np.sort(distances)[-15:]
    assert np.median(distances) < 1.0


@pytest.fixture(scope="module")
def shipped_int8(tmp_path_factory):
    """The shipped live model quantized with the defaults, 4 calibration pairs made from
    the fixture photos (the compared pairs among them: calibration only sets the
    activation ranges, it fits nothing to those pairs)."""
    out = tmp_path_factory.mktemp("int8") / "student_320x240_int8.onnx"
    quantize_model(SHIPPED_LIVE, out, QuantizeConfig(calibration_pairs=4), PAIRS)
    return out


def test_dynamic_int8_uses_integer_kernels(random_student_onnx, tmp_path):
    out = tmp_path / "student_dynamic.onnx"
    quantize_model(random_student_onnx, out, QuantizeConfig(mode="dynamic"))
    ops = _ops(out)
    assert ops["MatMulInteger"] + ops["ConvInteger"] > 0
    assert Matcher(weights=out, backend="onnxruntime", num_threads=1).info.name == "student"


def test_exclusion_globs_pick_the_head(random_student_onnx):
    model = onnx.load(str(random_student_onnx))
    names = excluded_nodes(model, DEFAULT_EXCLUDE)
    # The whole coarse matching: both similarity MatMuls, the log-sum-exps, the mutual check.
    assert {"/mutual_nearest/MatMul", "/mutual_nearest/MatMul_1", "/mutual_nearest/TopK"} <= set(names)
    assert {"/mutual_nearest/Softmax", "/mutual_nearest/Exp", "/mutual_nearest/GatherElements"} <= set(names)
    assert not any(name.startswith(("/backbone/", "/loftr_coarse/")) for name in names)
    assert excluded_nodes(model, ()) == []


def test_bad_inputs_are_clear_errors(random_student_onnx, tmp_path, capsys):
    with pytest.raises(QuantizeError, match="calibration images"):
        quantize_model(random_student_onnx, tmp_path / "a.onnx", QuantizeConfig())
    with pytest.raises(QuantizeError, match="no images"):
        quantize_model(random_student_onnx, tmp_path / "a.onnx", QuantizeConfig(), tmp_path)
    with pytest.raises(QuantizeError, match="overwrite"):
        quantize_model(random_student_onnx, random_student_onnx, QuantizeConfig(mode="dynamic"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(QuantizeError, match="not a readable ONNX model"):
        quantize_model(broken, tmp_path / "b.onnx", QuantizeConfig(mode="dynamic"))
    with pytest.raises(ValueError, match="calibration_pairs"):
        QuantizeConfig(calibration_pairs=0)

    assert (
        main(
            [
                "quantize",
                str(tmp_path / "missing.onnx"),
                "--out",
                str(tmp_path / "c.onnx"),
                "--mode",
                "dynamic",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "quantize",
                str(random_student_onnx),
                "--out",
                str(tmp_path / "c.onnx"),
                "--calibration-pairs",
                "0",
                "--calibration-images",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "ONNX model not found" in err and "calibration_pairs" in err and "Traceback" not in err


def test_command_writes_a_static_model(random_student_onnx, photos, tmp_path, capsys):
    out = tmp_path / "cli_int8.onnx"
    assert (
        main(
            [
                "quantize",
                str(random_student_onnx),
                "--out",
                str(out),
                "--calibration-images",
                str(photos),
                "--calibration-pairs",
                "2",
                "--exclude",
                "head+attention",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "static int8" in printed and "/loftr_coarse/layers.0/MatMul" in printed
    assert _ops(out)["QuantizeLinear"] > 0
