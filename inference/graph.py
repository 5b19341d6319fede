"""The exported graph's contract, shared by the exporter and every runtime (no torch here).

Inputs `image0`, `image1`: (1, 1, H, W) float32 grayscale in [0, 1]. Outputs, per coarse
cell of image0 (N0 cells, row-major): `conf_max` (1, N0) float32, `match_index` (1, N0)
int64, `offset1` (1, N0, 2) float32 (see `backends.base.BackendOutput`).

The same matching also ships split in two, for a stream whose frames all meet one
reference image0 (`CoarseLoFTR.describe_image0`, `.predict_from`): a reference graph,
`image0` -> `IMAGE0_FEATURE_NAMES`, and a frame graph, `image1` and those -> the outputs above.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

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

#: The reference graph's outputs: `tokens0` (1, N0, d), then per refinement level the model
#: has, first to last, `descriptors0_<level>` (1, N0, C_level); a model with fewer levels
#: has a prefix of these.
IMAGE0_FEATURE_NAMES = (
    "tokens0",
    *(f"descriptors0_{level}" for level in range(1, len(REFINEMENT_HEADS) + 1)),
)


def needs_fp32(layer_names: Iterable[str]) -> list[str]:
    """The names among `layer_names` (ONNX node names, which TensorRT's parser keeps as
    layer names) that must run in FP32."""
    return [name for name in layer_names if any(scope in name for scope in FP32_SCOPES)]


def split_paths(path: str | Path) -> tuple[Path, Path]:
    """Where the split graphs of the pair graph at `path` live: student_320x240.onnx ->
    (student_320x240.reference.onnx, student_320x240.frame.onnx)."""
    path = Path(path)
    return path.with_suffix(".reference.onnx"), path.with_suffix(".frame.onnx")
