"""`coarse-loftr make-val-set`: validation pairs from the training photos' held-out split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from coarse_loftr.commands import main
from coarse_loftr.training.evaluation.pairs import load_manifest
from coarse_loftr.training.homography_pairs import list_images, split_images
from coarse_loftr.training.validation_set import ALL_LEVELS, LEVELS, overlap_share


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Twenty smooth-noise photos, so that a split holds out two of them."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for i in range(20):
        noise = rng.random((150, 200)).astype(np.float32)
        photo = cv2.resize(noise, (800, 600), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"photo{i:02d}.png"), (np.clip(photo, 0, 1) * 255).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def val_set(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("val")
    assert main(["make-val-set", str(photos), "--out", str(out), "--pairs-per-level", "3"]) == 0
    return out


def rotation_deg(homography: np.ndarray, size: tuple[int, int]) -> float:
    """The turn of a horizontal step at the image centre under `homography`."""
    centre = np.array([(size[0] - 1) / 2, (size[1] - 1) / 2])
    ends = np.array([[*centre, 1.0], [centre[0] + 10, centre[1], 1.0]]) @ homography.T
    step = ends[1, :2] / ends[1, 2] - ends[0, :2] / ends[0, 2]
    return math.degrees(math.atan2(step[1], step[0]))


def test_pairs_come_from_the_validation_photos_only(photos, val_set):
    manifest = json.loads((val_set / "manifest.json").read_text())
    train_files, val_files = split_images(list_images(photos))
    assert manifest["photos"] == [p.name for p in val_files]
    used = {pair["source"] for pair in manifest["pairs"]}
    assert used <= set(manifest["photos"])
    assert not used & {p.name for p in train_files}


def test_each_level_keeps_its_rotation_and_overlap(val_set):
    pairs = load_manifest(val_set / "manifest.json")
    assert [p.labels["difficulty"] for p in pairs] == ["easy"] * 3 + ["medium"] * 3 + ["hard"] * 3
    for pair in pairs:
        level = LEVELS[pair.labels["difficulty"]]
        image_a, _ = pair.load()
        size = (image_a.shape[1], image_a.shape[0])
        assert size == (640, 480)
        assert overlap_share(pair.homography, size) >= level.min_overlap
        # Corner jitter turns the centre's step a little beyond the drawn rotation.
        turn = abs(rotation_deg(pair.homography, size))
        assert level.rotation_deg[0] - 8 <= turn <= level.rotation_deg[1] + 8, (pair.id, turn)


def test_the_homography_maps_image_a_onto_image_b(val_set):
    """Warping a by H_a_to_b reproduces b where both have content (pixel centres at
    integers): a one-pixel error would decorrelate the fine noise."""
    for pair in load_manifest(val_set / "manifest.json"):
        image_a, image_b = (cv2.cvtColor(im, cv2.COLOR_BGR2GRAY).astype(np.float32) for im in pair.load())
        warped = cv2.warpPerspective(image_a, pair.homography, (640, 480), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.ones_like(image_a), pair.homography, (640, 480)) > 0.99
        mask &= image_b > 0  # outside the photo, image b is black
        mask = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        a, b = warped[mask], image_b[mask]
        assert np.corrcoef(a, b)[0, 1] > 0.9, pair.id
        shifted = np.roll(warped, 2, axis=1)[mask]
        assert np.corrcoef(shifted, b)[0, 1] < np.corrcoef(a, b)[0, 1] - 0.15


def test_the_same_photos_and_seed_give_the_same_files(photos, val_set, tmp_path):
    assert main(["make-val-set", str(photos), "--out", str(tmp_path), "--pairs-per-level", "3"]) == 0
    assert (tmp_path / "manifest.json").read_text() == (val_set / "manifest.json").read_text()
    for image in sorted((val_set / "pairs").iterdir()):
        assert (tmp_path / "pairs" / image.name).read_bytes() == image.read_bytes()


def test_the_rotated_level_turns_beyond_the_protocol(photos, val_set, tmp_path):
    args = ["make-val-set", str(photos), "--out", str(tmp_path), "--pairs-per-level", "3"]
    assert main([*args, "--levels", "hard,rotated"]) == 0
    pairs = load_manifest(tmp_path / "manifest.json")
    assert [p.labels["difficulty"] for p in pairs] == ["hard"] * 3 + ["rotated"] * 3
    level = ALL_LEVELS["rotated"]
    for pair in pairs[3:]:
        assert overlap_share(pair.homography, (640, 480)) >= level.min_overlap
        turn = abs(rotation_deg(pair.homography, (640, 480)))
        assert level.rotation_deg[0] - 8 <= turn <= level.rotation_deg[1] + 8, (pair.id, turn)
    # A level's pairs do not depend on the others asked for: these hard pairs are the
    # default set's (its pairs 7-9).
    for index in range(3):
        ours, default = f"{index + 1:04d}_b.jpg", f"{index + 7:04d}_b.jpg"
        assert (tmp_path / "pairs" / ours).read_bytes() == (val_set / "pairs" / default).read_bytes()


def test_bad_options_fail_in_one_line(photos, tmp_path, capsys):
    assert main(["make-val-set", str(photos), "--out", str(tmp_path), "--pairs-per-level", "0"]) == 2
    assert main(["make-val-set", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert main(["make-val-set", str(photos), "--out", str(tmp_path), "--levels", "easy,upside-down"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and "pairs-per-level" in errors[0] and "not found" in errors[1]
    assert "levels must be among easy, medium, hard, rotated" in errors[2]
