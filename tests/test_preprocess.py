"""Decoded image -> model input: every image kind, and the exact coordinate round trip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from coarse_loftr.inference.preprocess import Letterbox, fit_size, letterbox, to_bgr8, to_gray_float

INPUT_SIZES = [(320, 240), (640, 480), (64, 48), (16, 16), (480, 640)]


def random_sizes(count: int, seed: int) -> list[tuple[int, int]]:
    """Original (w, h): tiny, odd, huge aspect ratios, and ordinary ones."""
    rng = np.random.default_rng(seed)
    sizes = [(1, 1), (1, 999), (999, 1), (3, 5), (7, 7), (4000, 3), (2, 3000), (641, 481)]
    while len(sizes) < count:
        log_w, log_h = rng.uniform(0, np.log(5000), size=2)
        sizes.append((max(1, int(np.exp(log_w))), max(1, int(np.exp(log_h)))))
    return sizes


def test_to_gray_float_every_kind():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    alpha = rng.integers(0, 256, (7, 5, 1), dtype=np.uint8)
    kinds = {
        "gray": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "gray1": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:, :, None],
        "bgr": bgr,
        "bgra": np.concatenate([bgr, alpha], axis=2),
    }
    for name, image in kinds.items():
        gray = to_gray_float(image)
        assert gray.shape == (7, 5) and gray.dtype == np.float32, name
        np.testing.assert_allclose(gray, expected, atol=1e-6, err_msg=name)


def test_to_gray_float_16_bit_is_scaled_by_65535():
    image = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    np.testing.assert_allclose(to_gray_float(image), image / 65535.0, rtol=1e-6)
    bgr16 = np.repeat(image[:, :, None], 3, axis=2)
    np.testing.assert_allclose(to_gray_float(bgr16), image / 65535.0, atol=2e-5)
    bgra16 = np.concatenate([bgr16, np.zeros_like(bgr16[:, :, :1])], axis=2)
    np.testing.assert_allclose(to_gray_float(bgra16), image / 65535.0, atol=2e-5)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((0, 4), np.uint8),
        np.zeros((2, 2, 2, 2), np.uint8),
    ],
)
def test_to_gray_float_refuses_other_arrays(bad):
    with pytest.raises(ValueError):
        to_gray_float(bad)


def test_to_bgr8():
    gray16 = np.full((3, 4), 0xABCD, np.uint16)
    out = to_bgr8(gray16)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8 and (out == 0xAB).all()
    bgra = np.zeros((3, 4, 4), np.uint8)
    bgra[..., 2] = 200
    assert (to_bgr8(bgra)[..., 2] == 200).all() and to_bgr8(bgra).shape == (3, 4, 3)


def test_fit_size_keeps_aspect_and_fits():
    for input_size in INPUT_SIZES:
        for size in random_sizes(200, seed=1):
            width, height = fit_size(size, input_size)
            assert 1 <= width <= input_size[0] and 1 <= height <= input_size[1]
            # One side fills the input (unless rounding a 1-pixel side forced it up).
            assert width == input_size[0] or height == input_size[1]
            # Rounding moves each side by at most half a pixel from the exact scale.
            exact = min(input_size[0] / size[0], input_size[1] / size[1])
            assert abs(width - size[0] * exact) <= 0.5 + 1e-9 or width == 1
            assert abs(height - size[1] * exact) <= 0.5 + 1e-9 or height == 1


def test_letterbox_round_trip_many_sizes():
    rng = np.random.default_rng(2)
    for input_size in INPUT_SIZES:
        for size in random_sizes(150, seed=3):
            box = Letterbox(size, fit_size(size, input_size), input_size)
            points = rng.uniform(-0.5, np.array(size) - 0.5, size=(50, 2))
            back = box.to_original(box.to_input(points))
            np.testing.assert_allclose(back, points, atol=1e-9)
            # The original image's extent maps exactly onto the unpadded region.
            corners = np.array([[-0.5, -0.5], [size[0] - 0.5, size[1] - 0.5]])
            np.testing.assert_allclose(
                box.to_input(corners), [[-0.5, -0.5], np.array(box.resized_size) - 0.5], atol=1e-9
            )
            assert box.in_valid_region(box.to_input(points)).all()


def test_letterbox_image_content_and_padding():
    rng = np.random.default_rng(4)
    for size in [(640, 480), (320, 240), (100, 300), (333, 77), (1, 1), (2000, 15), (13, 11)]:
        gray = rng.uniform(0.05, 1, (size[1], size[0])).astype(np.float32)
        model_input, box = letterbox(gray, (320, 240))
        assert model_input.shape == (1, 1, 240, 320) and model_input.dtype == np.float32
        width, height = box.resized_size
        assert box.original_size == size and box.input_size == (320, 240)
        valid = model_input[0, 0, :height, :width]
        assert (valid > 0).all()  # image everywhere it should be
        assert (model_input[0, 0, height:, :] == 0).all()  # zero padding below
        assert (model_input[0, 0, :, width:] == 0).all()  # and to the right
        assert abs(valid.mean() - gray.mean()) < 0.05


def test_letterbox_same_size_is_identity():
    gray = np.random.default_rng(5).uniform(0, 1, (240, 320)).astype(np.float32)
    model_input, box = letterbox(gray, (320, 240))
    np.testing.assert_array_equal(model_input[0, 0], gray)
    assert box.scale == (1.0, 1.0)


def test_letterbox_maps_a_feature_to_the_right_place():
    # A bright pixel-centred blob must land where Letterbox says, shrinking and enlarging.
    for size, input_size in [((640, 480), (320, 240)), ((160, 120), (640, 480)), ((400, 100), (320, 240))]:
        gray = np.zeros((size[1], size[0]), np.float32)
        centre = np.array([size[0] * 0.37, size[1] * 0.61])
        ys, xs = np.mgrid[: size[1], : size[0]]
        sigma = max(size) / 40
        gray[:] = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
        model_input, box = letterbox(gray, input_size)
        image = model_input[0, 0].astype(np.float64)
        ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
        found = np.array([(xs * image).sum(), (ys * image).sum()]) / image.sum()
        np.testing.assert_allclose(found, box.to_input(centre[None])[0], atol=0.1)


def test_letterbox_refuses_non_float_gray():
    with pytest.raises(ValueError):
        letterbox(np.zeros((4, 4), np.uint8), (8, 8))


@pytest.mark.parametrize("original", [(640, 480), (1000, 333), (200, 150)])  # shrink, odd aspect, enlarge
@pytest.mark.parametrize("turns", [1, 2, 3])
def test_letterbox_turns_the_resized_copy_as_if_the_image_were_turned_first(original, turns):
    gray = np.random.default_rng(turns).random((original[1], original[0]), dtype=np.float32)
    model_input, box = letterbox(gray, (320, 240), turns)
    expected, expected_box = letterbox(np.ascontiguousarray(np.rot90(gray, turns)), (320, 240))
    assert box == expected_box
    np.testing.assert_allclose(model_input, expected, atol=1e-5)
