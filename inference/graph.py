"""The exported graph's contract, shared by the exporter and every runtime (no torch here).

Inputs `image0`, `image1`: (1, 1, H, W) float32 grayscale in [0, 1]. Outputs, per coarse
cell of image0 (N0 cells, row-major): `conf_max` (1, N0) float32, `match_index` (1, N0)
int64, `offset1` (1, N0, 2) float32 (see `backends.base.BackendOutput`).
"""

from __future__ import annotations

from collections.abc import Iterable

INPUT_NAMES = ("image0", "image1")
OUTPUT_NAMES = ("conf_max", "match_index", "offset1")

#: ONNX opset of exported graphs: the newest that TensorRT 10's parser fully supports for
#: the ops used here.
DEFAULT_OPSET = 17

#: Name scopes (torch module names in the exported graph) of the coarse matching: the
#: similarity matrix divided by a 0.1 temperature and the dual softmax over it overflow
#: FP16, so FP16 engines keep these layers in FP32 (EfficientLoFTR does the same). The
#: deployed graph has only the second (`MutualNearest`); training runs the first.
FP32_SCOPES = ("/dual_softmax/", "/mutual_nearest/")

#: The refinement levels' modules in `CoarseLoFTR`, first to last; their correlation ops
#: carry these names as scopes in exported graphs.
REFINEMENT_HEADS = ("fine_head", "fine2_head", "fine3_head")


def needs_fp32(layer_names: Iterable[str]) -> list[str]:
    """The names among `layer_names` (ONNX node names, which TensorRT's parser keeps as
    layer names) that must run in FP32."""
    return [name for name in layer_names if any(scope in name for scope in FP32_SCOPES)]
