"""HPatches-protocol evaluation of matchers on a manifest of image pairs with known homographies.

Runtime dependencies only (numpy, OpenCV; matplotlib for the plot): no torch here.
"""

from .methods import MatcherMethod, MatchMethod, OpenCVFeatures
from .metrics import AUC_THRESHOLDS_PX, corner_error, cumulative_curve, error_auc, image_corners
from .pairs import BREAKDOWN_KEYS, EvalPair, ManifestError, load_manifest
from .runner import MethodResult, PairRecord, Summary, evaluate, summarise

__all__ = [
    "AUC_THRESHOLDS_PX",
    "BREAKDOWN_KEYS",
    "EvalPair",
    "ManifestError",
    "MatchMethod",
    "MatcherMethod",
    "MethodResult",
    "OpenCVFeatures",
    "PairRecord",
    "Summary",
    "corner_error",
    "cumulative_curve",
    "error_auc",
    "evaluate",
    "image_corners",
    "load_manifest",
    "summarise",
]
