"""`Matcher` end to end on the real ONNX Runtime backend (random-initialised exported
models), weights resolution, and the `coarse-loftr match` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixture_data import PAIRS

from coarse_loftr.inference import Matcher, MatchResult, estimate_homography
from coarse_loftr.inference.io import read_image
from coarse_loftr.inference.weights import WeightsError, resolve_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pair() -> tuple[Path, Path]:
    return PAIRS / "0001_a.jpg", PAIRS / "0001_b.jpg"


@pytest.fixture(scope="module")
def student(random_student_onnx) -> Matcher:
    return Matcher(random_student_onnx, backend="onnxruntime", num_threads=1)


def check_result(result: MatchResult, size0: tuple[int, int], size1: tuple[int, int]) -> None:
    count = len(result)
    assert result.keypoints0.shape == (count, 2) and result.keypoints0.dtype == np.float32
    assert result.keypoints1.shape == (count, 2) and result.keypoints1.dtype == np.float32
    assert result.confidence.shape == (count,) and result.confidence.dtype == np.float32
    assert result.image_size0 == size0 and result.image_size1 == size1
    for points, (width, height) in ((result.keypoints0, size0), (result.keypoints1, size1)):
        assert (points >= -0.5).all()
        assert (points[:, 0] <= width - 0.5).all() and (points[:, 1] <= height - 0.5).all()
    assert ((result.confidence >= 0) & (result.confidence <= 1)).all()
    assert (np.diff(result.confidence) <= 0).all()
    assert set(result.timings_ms) == {"preprocess", "inference", "postprocess", "total"}
    assert all(v >= 0 for v in result.timings_ms.values())
    assert result.timings_ms["total"] >= result.timings_ms["inference"] > 0


def test_student_on_an_eval_pair(student, pair):
    result = student.match(*pair, threshold=0.0)
    check_result(result, (640, 480), (640, 480))
    assert result.model == "student" and result.backend == "onnxruntime"
    # threshold 0 keeps every cell of the 40 x 30 grid less a 1-cell border whose match
    # is not on image1's border either.
    assert 0 < len(result) <= 38 * 28
    top = student.match(*pair, threshold=0.0, max_matches=25)
    np.testing.assert_array_equal(top.confidence, result.confidence[:25])


def test_image_kinds_and_sizes(student, pair):
    bgr = read_image(pair[0])
    gray16 = (cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)[:401, :333]
    bgra = cv2.cvtColor(cv2.resize(bgr, (211, 517)), cv2.COLOR_BGR2BGRA)
    result = student.match(gray16, bgra, threshold=0.0)
    check_result(result, (333, 401), (211, 517))
    assert len(result) > 0


def test_self_match_is_the_identity(student, pair):
    # A pair of identical images: every mutual match of the (even random) network is a
    # cell with itself, so keypoints coincide and the homography is the identity.
    image = read_image(pair[0])
    result = student.match(image, image, threshold=1e-6, refine=False)
    assert len(result) > 100
    np.testing.assert_array_equal(result.keypoints0, result.keypoints1)
    geometry = estimate_homography(result)
    np.testing.assert_allclose(geometry.matrix, np.eye(3), atol=1e-6)


def test_each_image_gets_its_own_pixels(student, pair):
    # image1 is image0 at half size: both become the same model input, so matches are
    # self-matches and image0's keypoints are image1's mapped by x0 = 2 (x1 + 0.5) - 0.5.
    image0 = read_image(pair[0])
    image1 = cv2.resize(image0, (320, 240), interpolation=cv2.INTER_AREA)
    result = student.match(image0, image1, threshold=1e-6, refine=False)
    assert len(result) > 100
    check_result(result, (640, 480), (320, 240))
    np.testing.assert_allclose(result.keypoints0, 2 * (result.keypoints1 + 0.5) - 0.5, atol=1e-4)


def test_coarse_loftr_trt_preset_at_640x480(random_trt_onnx, pair):
    matcher = Matcher(random_trt_onnx, num_threads=1, size=(640, 480))
    assert matcher.input_size == (640, 480) and matcher.info.coarse_stride == 16
    result = matcher.match(*pair, threshold=0.0)
    check_result(result, (640, 480), (640, 480))
    assert result.model == "coarse_loftr_trt"
    assert 0 < len(result) <= 38 * 28  # the 40 x 30 grid of 16-pixel cells less the border
    coarse = matcher.match(*pair, threshold=0.0, refine=False)
    assert ((coarse.keypoints1 + 0.5) % 16 == 8).all()  # cell centres of a 16-px grid


def test_size_mismatch_with_an_onnx_file(random_student_onnx):
    with pytest.raises(WeightsError, match="320x240"):
        Matcher(random_student_onnx, size=(640, 480))


def test_import_inference_stays_torch_free(random_student_onnx, pair):
    code = (
        "import sys, inference\n"
        "from inference import Matcher, estimate_homography, draw_matches, warp_blend\n"
        f"r = Matcher({str(random_student_onnx)!r}, num_threads=1).match({str(pair[0])!r}, "
        f"{str(pair[1])!r})\n"
        "estimate_homography(r)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


# -- weights resolution --------------------------------------------------------------


def write_manifest(folder: Path, models: dict, default: str, live: str | None = None) -> Path:
    roles = {"default": default} if live is None else {"default": default, "live": live}
    (folder / "manifest.json").write_text(json.dumps({**roles, "models": models}))
    return folder


def test_weights_folder_picks_by_size(tmp_path, random_student_onnx, random_trt_onnx):
    (tmp_path / "small.onnx").write_bytes(random_student_onnx.read_bytes())
    (tmp_path / "large.onnx").write_bytes(random_trt_onnx.read_bytes())
    write_manifest(
        tmp_path,
        {
            "large": {"onnx": "large.onnx", "input_size": [640, 480]},
            "small": {"onnx": "small.onnx", "input_size": [320, 240]},
        },
        default="small",
    )
    assert resolve_weights(tmp_path).onnx == tmp_path / "small.onnx"
    assert resolve_weights(tmp_path, (640, 480)).onnx == tmp_path / "large.onnx"
    assert Matcher(tmp_path, size=(640, 480), num_threads=1).input_size == (640, 480)
    with pytest.raises(WeightsError, match=r"available: 320x240, 640x480"):
        resolve_weights(tmp_path, (800, 600))


def test_weights_folder_roles(tmp_path, random_student_onnx, random_trt_onnx):
    (tmp_path / "small.onnx").write_bytes(random_student_onnx.read_bytes())
    (tmp_path / "large.onnx").write_bytes(random_trt_onnx.read_bytes())
    models = {
        "large": {"onnx": "large.onnx", "input_size": [640, 480]},
        "small": {"onnx": "small.onnx", "input_size": [320, 240]},
    }
    write_manifest(tmp_path, models, default="large", live="small")
    assert resolve_weights(tmp_path).onnx == tmp_path / "large.onnx"
    assert resolve_weights(tmp_path, role="live").onnx == tmp_path / "small.onnx"
    assert resolve_weights(tmp_path, (640, 480), role="live").onnx == tmp_path / "large.onnx"
    assert Matcher(tmp_path, role="live", num_threads=1).input_size == (320, 240)
    # One .onnx file serves every role; a manifest without "live" uses its default.
    assert resolve_weights(random_student_onnx, role="live").onnx == random_student_onnx
    write_manifest(tmp_path, models, default="large")
    assert resolve_weights(tmp_path, role="live").onnx == tmp_path / "large.onnx"
    with pytest.raises(ValueError, match="role must be one of default, live"):
        resolve_weights(tmp_path, role="uploads")


def test_missing_manifest_says_no_weights(tmp_path):
    with pytest.raises(WeightsError, match="no shipped weights"):
        resolve_weights(tmp_path)
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights(tmp_path / "nothing.onnx")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(WeightsError, match="invalid"):
        resolve_weights(tmp_path)


@pytest.mark.slow
def test_new_size_is_exported_from_the_checkpoint_and_cached(tmp_path, monkeypatch):
    import torch

    from coarse_loftr.inference.config import get_preset
    from coarse_loftr.inference.model import CoarseLoFTR

    torch.manual_seed(1)
    config = get_preset("student")
    torch.save(
        {"config": config.to_dict(), "model_state_dict": CoarseLoFTR(config).state_dict()},
        tmp_path / "student.pt",
    )
    write_manifest(
        tmp_path, {"student": {"checkpoint": "student.pt", "input_size": [320, 240]}}, default="student"
    )
    monkeypatch.setenv("COARSE_LOFTR_CACHE", str(tmp_path / "cache"))
    files = resolve_weights(tmp_path, (160, 128))
    assert files.onnx.parent == tmp_path / "cache" and files.onnx.is_file()
    assert files.checkpoint == tmp_path / "student.pt" and files.input_size == (160, 128)
    stamp = files.onnx.stat().st_mtime_ns
    assert resolve_weights(tmp_path, (160, 128)).onnx.stat().st_mtime_ns == stamp  # cached
    matcher = Matcher(tmp_path, size=(160, 128), num_threads=1)
    assert matcher.input_size == (160, 128)
    check_result(
        matcher.match(np.zeros((50, 70), np.uint8), np.zeros((50, 70), np.uint8), threshold=0.0),
        (70, 50),
        (70, 50),
    )


# -- the command ---------------------------------------------------------------------


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "coarse_loftr", "match", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cli_json(random_student_onnx, pair):
    done = cli(
        *pair,
        "--weights",
        random_student_onnx,
        "--threshold",
        "0",
        "--max-matches",
        "50",
        "--threads",
        "1",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["num_matches"] == 50 == len(report["keypoints0"]) == len(report["confidence"])
    assert report["image_size0"] == [640, 480] and report["backend"] == "onnxruntime"
    assert len(report["inliers"]) == 50
    assert set(report["timings_ms"]) == {"preprocess", "inference", "postprocess", "total"}
    assert report["rotation1"] == 0  # no rotation search unless asked for


def test_cli_rotation_search_finds_an_upside_down_image(pair, tmp_path):
    upside_down = tmp_path / "b.png"
    cv2.imwrite(str(upside_down), cv2.rotate(cv2.imread(str(pair[1])), cv2.ROTATE_180))
    done = cli(pair[0], upside_down, "--rotations", "--threads", "1", "--json")  # shipped weights
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rotation1"] == 180 and report["num_inliers"] > 100


def test_cli_text_overlay_and_warp(random_student_onnx, pair, tmp_path):
    # The same image twice: self-matches, so a homography exists and --warp works.
    overlay, warped = tmp_path / "overlay.png", tmp_path / "warped.jpg"
    done = cli(
        pair[0],
        pair[0],
        "--weights",
        random_student_onnx,
        "--threshold",
        "1e-6",
        "--no-refine",
        "--out",
        overlay,
        "--warp",
        warped,
    )
    assert done.returncode == 0, done.stderr
    assert "matches:" in done.stdout and "homography (image0 -> image1)" in done.stdout
    assert cv2.imread(str(overlay)).shape == (480, 1280, 3)
    assert cv2.imread(str(warped)).shape == (480, 640, 3)


def assert_clean_error(done: subprocess.CompletedProcess, text: str) -> None:
    assert done.returncode == 2
    assert text in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_errors(random_student_onnx, pair, tmp_path):
    weights = ("--weights", random_student_onnx)
    assert_clean_error(cli(tmp_path / "missing.jpg", pair[1], *weights), "no such file")
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    assert_clean_error(cli(pair[0], text, *weights), "not an image")
    assert_clean_error(cli(*pair, "--weights", tmp_path / "none.onnx"), "not found")
    # No confident match in a random network: --warp cannot be written.
    assert_clean_error(cli(*pair, *weights, "--warp", tmp_path / "w.png"), "no homography")
    done = cli(*pair, *weights, "--size", "big")
    assert done.returncode == 2 and "size must look like 640x480" in done.stderr


def _same_matches(first: MatchResult, second: MatchResult) -> None:
    assert len(first) == len(second) > 0 and first.rotation1 == second.rotation1
    np.testing.assert_array_equal(first.keypoints0, second.keypoints0)
    np.testing.assert_allclose(first.keypoints1, second.keypoints1, atol=1e-4)
    np.testing.assert_allclose(first.confidence, second.confidence, atol=1e-5)


@pytest.fixture(scope="module")
def pair_graph_only(random_student_onnx, tmp_path_factory) -> Matcher:
    """The same model without its split graphs beside it: the whole graph every time."""
    bare = tmp_path_factory.mktemp("bare") / random_student_onnx.name
    bare.write_bytes(random_student_onnx.read_bytes())
    return Matcher(bare, backend="onnxruntime", num_threads=1)


def test_reused_image0s_give_the_whole_graphs_matches(random_student_onnx, pair_graph_only):
    """A stream's order of references and frames, through a cache of one and of two
    (random weights: every mutual match counts):
    the cache hits only an image0 it holds, evicts the oldest, and every answer is the
    one the whole graph gives."""
    images = [read_image(PAIRS / name) for name in ("0001_a.jpg", "0001_b.jpg", "0002_a.jpg")]
    calls = [(0, 1), (0, 2), (2, 1), (0, 1), (0, 1)]
    assert pair_graph_only.files.split is None and not pair_graph_only.backend.reuses_image0
    expected = [pair_graph_only.match(images[a], images[b], threshold=1e-6) for a, b in calls]
    for size, misses in ((1, 3), (2, 2)):
        matcher = Matcher(random_student_onnx, backend="onnxruntime", num_threads=1, image0_cache=size)
        assert matcher.backend.reuses_image0
        for (a, b), want in zip(calls, expected):
            _same_matches(matcher.match(images[a], images[b], threshold=1e-6), want)
        assert (matcher.image0_misses, matcher.image0_hits) == (misses, len(calls) - misses)
        assert len(matcher._image0_encodings) == size


def test_the_rotation_search_reuses_image0_across_its_turns(random_student_onnx, pair_graph_only, pair):
    image0 = read_image(pair[0])
    image1 = cv2.rotate(read_image(pair[1]), cv2.ROTATE_90_CLOCKWISE)
    split = Matcher(random_student_onnx, backend="onnxruntime", num_threads=1)
    _same_matches(
        split.match(image0, image1, rotations=True, threshold=1e-6),
        pair_graph_only.match(image0, image1, rotations=True, threshold=1e-6),
    )
    assert split.image0_misses == split.image0_hits == 0  # no cache: within the call only


def test_split_graphs_that_do_not_fit_are_refused(random_student_onnx, tmp_path):
    import torch

    from coarse_loftr.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    from coarse_loftr.inference.config import get_preset
    from coarse_loftr.inference.export import export_split_onnx
    from coarse_loftr.inference.graph import split_paths
    from coarse_loftr.inference.model import CoarseLoFTR

    reference, frame = split_paths(random_student_onnx)
    with pytest.raises(ValueError, match="not a reference graph and its frame graph"):
        OnnxRuntimeBackend(random_student_onnx, split=(frame, reference))
    torch.manual_seed(0)
    smaller = export_split_onnx(
        CoarseLoFTR(get_preset("student")), tmp_path / "s.onnx", (160, 120), check_parity=False
    )
    with pytest.raises(ValueError, match="not split from the model"):
        OnnxRuntimeBackend(random_student_onnx, split=(smaller.reference, smaller.frame))
    with pytest.raises(ValueError, match="image0_cache"):
        Matcher(random_student_onnx, image0_cache=-1)
