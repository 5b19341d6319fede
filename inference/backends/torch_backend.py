"""PyTorch reference backend: the checkpoint itself, no export in between."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..graph import IMAGE0_FEATURE_NAMES, INPUT_NAMES
from ._inputs import check_image, check_pair
from .base import Backend, BackendOutput, BackendUnavailable, Image0Encoding, ModelInfo


class TorchBackend(Backend):
    """Runs `CoarseLoFTR.predict` from a checkpoint (any format `inference.checkpoint`
    reads) on the CPU, or CUDA when asked and present.

    input_size: (width, height) the caller will feed, as for the ONNX model it stands
    beside; num_threads: torch intra-op threads (process-wide).
    """

    name = "torch"
    reuses_image0 = True

    def __init__(
        self,
        checkpoint_path: str | Path,
        input_size: tuple[int, int],
        num_threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        try:
            import torch
        except ImportError as error:
            raise BackendUnavailable(
                f"the torch backend needs PyTorch (the `train` extra): {error}"
            ) from None
        from ..checkpoint import load_checkpoint

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("torch backend: CUDA was requested but torch sees no GPU")
        model, config = load_checkpoint(checkpoint_path)
        width, height = input_size
        if width % config.coarse_stride or height % config.coarse_stride:
            raise ValueError(
                f"input size {width}x{height} is not a multiple of the coarse stride "
                f"{config.coarse_stride} of {config.name!r}"
            )
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        super().__init__(
            ModelInfo(
                input_size=(width, height),
                coarse_stride=config.coarse_stride,
                name=config.name,
                config=config.to_dict(),
            )
        )
        self._torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.num_threads = num_threads

    def run(self, image0: np.ndarray, image1: np.ndarray) -> BackendOutput:
        image0, image1 = check_pair(self.info, image0, image1)
        torch = self._torch
        with torch.inference_mode():
            conf_max, match_index, offset1 = self.model.predict(
                torch.from_numpy(image0).to(self.device), torch.from_numpy(image1).to(self.device)
            )
        return _output(conf_max, match_index, offset1)

    def encode_image0(self, image0: np.ndarray) -> Image0Encoding:
        image0 = check_image(self.info, INPUT_NAMES[0], image0)
        with self._torch.inference_mode():
            features = self.model.describe_image0(self._torch.from_numpy(image0).to(self.device))
        arrays = (features.tokens0, *features.descriptors0)
        return {name: array.cpu().numpy() for name, array in zip(IMAGE0_FEATURE_NAMES, arrays)}

    def run_encoded(self, image0: Image0Encoding, image1: np.ndarray) -> BackendOutput:
        from ..model import Image0Features

        image1 = check_image(self.info, INPUT_NAMES[1], image1)
        torch = self._torch
        tokens0, *descriptors0 = (
            torch.from_numpy(image0[name]).to(self.device) for name in IMAGE0_FEATURE_NAMES if name in image0
        )
        with torch.inference_mode():
            outputs = self.model.predict_from(
                Image0Features(tokens0, tuple(descriptors0)), torch.from_numpy(image1).to(self.device)
            )
        return _output(*outputs)

    def describe(self) -> str:
        threads = f", {self.num_threads} threads" if self.num_threads else ""
        return f"torch ({self.device.type}{threads})"


def _output(conf_max, match_index, offset1) -> BackendOutput:
    """(1, N0, ...) torch outputs of `predict` -> a `BackendOutput` of numpy arrays."""
    return BackendOutput(
        conf_max[0].cpu().numpy(), match_index[0].cpu().numpy().astype(np.int64), offset1[0].cpu().numpy()
    )
