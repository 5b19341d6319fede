"""The PyTorch model (needs the `train` extra). The runtime path never imports this."""

from .net import CoarseLoFTR, CoarseOutput, FrameGraph, Image0Features, PredictGraph, ReferenceGraph

__all__ = ["CoarseLoFTR", "CoarseOutput", "FrameGraph", "Image0Features", "PredictGraph", "ReferenceGraph"]
