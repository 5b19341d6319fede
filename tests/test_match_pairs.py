"""`coarse-loftr match-pairs` in this process: the pairs file, matches.h5 (failures with
their reason, --resume), the keypoint merge and a COLMAP database read back by pycolmap.
The same command on Ray actors is in tests/test_ray.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")
pycolmap = pytest.importorskip("pycolmap")

from fixture_data import PAIRS  # noqa: E402

from coarse_loftr.inference.batch.colmap import KeypointGrid, one_to_one, to_colmap_matrix  # noqa: E402
from coarse_loftr.inference.batch.pairs import Pair, PairsFileError, read_pairs  # noqa: E402
from coarse_loftr.inference.batch.store import read_outcomes  # noqa: E402

FIXTURE_PAIRS = ("0001", "0002", "0041")


def image_folder(tmp_path: Path) -> Path:
    """The fixture pairs' images, a corrupt JPEG and a text file named like an image."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for pair in FIXTURE_PAIRS:
        for side in "ab":
            shutil.copy(PAIRS / f"{pair}_{side}.jpg", folder / f"{pair}_{side}.jpg")
    shutil.copy(PAIRS / "0041_b.jpg", folder / "sub" / "copy.jpg")
    (folder / "corrupt.jpg").write_bytes((PAIRS / "0001_a.jpg").read_bytes()[:3000])
    return folder


def pairs_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def match_pairs(*args: object) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "coarse_loftr", "match-pairs", *map(str, args), "--no-progress"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def report(process: subprocess.CompletedProcess) -> dict:
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_pairs_file_format(tmp_path):
    path = pairs_file(tmp_path, ["# comment", "a.jpg b.jpg", "", "b.jpg  a.jpg", "dir/c.png a.jpg"])
    pairs = read_pairs(path)
    assert pairs == [Pair("a.jpg", "b.jpg"), Pair("dir/c.png", "a.jpg")]  # the reversed repeat dropped
    assert pairs[1].key == "dir-c.png/a.jpg"  # hloc's names_to_pair
    with pytest.raises(PairsFileError, match=r"pairs\.txt:2: expected two image names, got 3"):
        read_pairs(pairs_file(tmp_path, ["a.jpg b.jpg", "a.jpg b.jpg c.jpg"]))
    with pytest.raises(PairsFileError, match="itself"):
        read_pairs(pairs_file(tmp_path, ["a.jpg a.jpg"]))
    with pytest.raises(PairsFileError, match="no pairs"):
        read_pairs(pairs_file(tmp_path, ["# nothing"]))


def test_bad_arguments_are_one_line_errors(tmp_path):
    for args in (
        (tmp_path / "missing", "--pairs", pairs_file(tmp_path, ["a b"]), "--out", tmp_path / "out"),
        (tmp_path, "--pairs", tmp_path / "missing.txt", "--out", tmp_path / "out"),
        (tmp_path, "--pairs", pairs_file(tmp_path, ["a b"]), "--out", tmp_path, "--reconstruct", tmp_path),
    ):
        process = match_pairs(*args)
        assert process.returncode == 2, process.stderr
        assert process.stderr.count("\n") == 1 and "Traceback" not in process.stderr


def test_keypoints_merge_on_a_grid_and_matches_stay_one_to_one():
    grid = KeypointGrid(1.0)
    first = grid.add(np.array([[10.2, 20.4], [30.0, 40.0]]))
    second = grid.add(np.array([[9.9, 19.6], [50.0, 60.0]]))  # the first point again, a new one
    assert first.tolist() == [0, 1] and second.tolist() == [0, 2]
    np.testing.assert_allclose(grid.keypoints(), [[10.5, 20.5], [30.5, 40.5], [50.5, 60.5]])  # COLMAP: +0.5
    # Matches 0 and 2 share keypoint 0 of image0, 1 and 3 keypoint 5 of image1: the first wins.
    keep = one_to_one(np.array([0, 1, 0, 2, 3]), np.array([4, 5, 6, 5, 7]))
    assert keep.tolist() == [0, 1, 4]


def test_geometry_moves_to_colmaps_pixel_convention():
    rng = np.random.default_rng(0)
    homography = np.array([[1.1, 0.05, 12.0], [-0.03, 0.95, -7.0], [1e-4, -2e-4, 1.0]])
    points = np.c_[rng.uniform(0, 600, (20, 2)), np.ones(20)]
    mapped = (homography @ points.T).T
    mapped /= mapped[:, 2:]
    shift = np.array([0.5, 0.5, 0.0])
    moved = (to_colmap_matrix(homography, "homography") @ (points + shift).T).T
    np.testing.assert_allclose(moved[:, :2] / moved[:, 2:], mapped[:, :2] + 0.5, atol=1e-9)
    # A fundamental matrix whose epipolar constraint holds on these points before and after.
    skew = np.array([[0.0, -1.0, 0.2], [1.0, 0.0, -0.3], [-0.2, 0.3, 0.0]])
    fundamental = skew @ homography  # x1^T [e]x H x0 = 0 for x1 = H x0
    assert np.abs(np.einsum("ni,ij,nj->n", mapped, fundamental, points)).max() < 1e-9
    shifted_f = to_colmap_matrix(fundamental, "fundamental")
    residual = np.einsum("ni,ij,nj->n", mapped + shift, shifted_f, points + shift)
    assert np.abs(residual).max() < 1e-9


def test_match_pairs_writes_h5_failures_resume_and_colmap(tmp_path):
    folder = image_folder(tmp_path)
    good = [f"{p}_a.jpg {p}_b.jpg" for p in FIXTURE_PAIRS[:2]]
    bad = ["0001_a.jpg missing.jpg", "corrupt.jpg 0001_b.jpg"]
    out = tmp_path / "out"
    first = report(match_pairs(folder, "--pairs", pairs_file(tmp_path, good + bad), "--out", out))
    assert (first["pairs"], first["matched"], first["failed"], first["skipped"]) == (4, 2, 2, 0)

    outcomes = {(o.pair.name0, o.pair.name1): o for o in read_outcomes(out / "matches.h5")}
    assert "no such image: missing.jpg" in outcomes["0001_a.jpg", "missing.jpg"].error
    assert "corrupt.jpg" in outcomes["corrupt.jpg", "0001_b.jpg"].error
    for pair in FIXTURE_PAIRS[:2]:
        outcome = outcomes[f"{pair}_a.jpg", f"{pair}_b.jpg"]
        assert outcome.error is None and outcome.ransac == "fundamental"
        count = len(outcome.confidence)
        assert count > 100 and outcome.keypoints0.shape == outcome.keypoints1.shape == (count, 2)
        assert outcome.geometry.shape == (3, 3) and outcome.inliers.shape == (count,)
        assert outcome.num_inliers > count // 2
        assert outcome.image_size0 == outcome.image_size1 == (640, 480)
        assert np.all(np.diff(outcome.confidence) <= 0)  # most confident first

    # --resume: the two matched pairs are skipped, the failed ones tried again, a new one added.
    more = [*good, *bad, "0041_a.jpg sub/copy.jpg"]
    second = report(
        match_pairs(
            folder, "--pairs", pairs_file(tmp_path, more), "--out", out, "--resume",
            "--colmap", out / "database.db", "--ransac", "homography",
        )
    )  # fmt: skip
    assert (second["pairs"], second["skipped"], second["matched"], second["failed"]) == (5, 2, 1, 2)
    outcomes = {o.pair.key: o for o in read_outcomes(out / "matches.h5")}
    assert set(outcomes) == {Pair(*line.split()).key for line in more}
    copy = outcomes[Pair("0041_a.jpg", "sub/copy.jpg").key]
    assert copy.ransac == "homography" and copy.num_inliers > 100  # 0041_b matched against 0041_a

    summary = second["colmap"]
    assert summary["images"] == 6 and summary["matched_pairs"] == 3  # the failed pairs add no images
    db = pycolmap.Database.open(out / "database.db")
    try:
        images = {image.name: image for image in db.read_all_images()}
        assert set(images) == {f"{p}_{s}.jpg" for p in ("0001", "0002") for s in "ab"} | {
            "0041_a.jpg",
            "sub/copy.jpg",
        }
        assert db.num_cameras() == 6  # one camera per image
        camera = db.read_camera(images["0001_a.jpg"].camera_id)
        assert (camera.width, camera.height, camera.model.name) == (640, 480, "SIMPLE_RADIAL")
        assert db.num_matched_image_pairs() == 3
        assert db.num_verified_image_pairs() == summary["verified_pairs"] == 3
        assert db.num_keypoints() == summary["keypoints"]
        for key, outcome in outcomes.items():
            if outcome.error is not None:
                continue
            id0, id1 = images[outcome.pair.name0].image_id, images[outcome.pair.name1].image_id
            matches = db.read_matches(id0, id1)
            assert 0 < len(matches) <= len(outcome.confidence), key
            assert len(np.unique(matches[:, 0])) == len(matches) == len(np.unique(matches[:, 1]))
            geometry = db.read_two_view_geometry(id0, id1)
            assert 15 <= len(geometry.inlier_matches) <= len(matches)
            keypoints0 = db.read_keypoints(id0)
            assert keypoints0.min() >= 0 and keypoints0[:, 0].max() <= 640
    finally:
        db.close()


def test_pairs_with_the_same_first_image_reuse_its_half_of_the_model(tmp_path):
    """An exhaustive list (each image first in a run of pairs) through one local matcher:
    the shipped default model's reference half runs once per first image."""
    from coarse_loftr.inference.batch.runner import LocalPool, MatchSettings, read_job

    folder = image_folder(tmp_path)
    names = ["0001_a.jpg", "0001_b.jpg", "0002_a.jpg", "0002_b.jpg"]
    pairs = [Pair(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    pool = LocalPool(MatchSettings(num_threads=1, ransac="homography"))
    outcomes = list(pool.imap(read_job(folder, pair) for pair in pairs))
    assert all(outcome.error is None for outcome in outcomes)
    assert (pool.matcher.image0_misses, pool.matcher.image0_hits) == (3, 3)
