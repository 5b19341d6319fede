"""The PyTorch model (needs the `train` extra). The runtime path never imports this."""

from .net import INPUT_NAMES, OUTPUT_NAMES, CoarseLoFTR, CoarseOutput, PredictGraph

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "CoarseLoFTR", "CoarseOutput", "PredictGraph"]
