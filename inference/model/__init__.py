"""The PyTorch model (needs the `train` extra). The runtime path never imports this."""

from .net import CoarseLoFTR, CoarseOutput, PredictGraph

__all__ = ["CoarseLoFTR", "CoarseOutput", "PredictGraph"]
