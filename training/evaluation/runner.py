"""Run methods on pairs, fit homographies, and summarise the errors.

Every method matches each pair once; the homography is then fitted (OpenCV USAC
MAGSAC) once per candidate inlier threshold on those same matches, so trying several
thresholds costs RANSAC time only. Each method then keeps the candidate with the best
overall AUC@5 px (the protocol of the issue's reference numbers) or the first one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from coarse_loftr.inference.config import RegistrationConfig

from .geometry import fit_homography
from .methods import MatchMethod
from .metrics import AUC_THRESHOLDS_PX, corner_error, error_auc
from .pairs import BREAKDOWN_KEYS, EvalPair, iter_loaded

#: order of the manifest's difficulty levels in breakdowns
DIFFICULTY_ORDER: tuple[str, ...] = ("easy", "medium", "hard")
#: threshold whose AUC decides the best RANSAC threshold of a method
SELECTION_AUC_PX = 5.0


@dataclass
class Fit:
    """One robust fit of one pair's matches: corner error (px of image b, inf = no H),
    inliers, RANSAC seconds."""

    error: float
    num_inliers: int
    seconds: float


@dataclass
class PairRecord:
    """Everything measured for one method on one pair; `fits` per RANSAC threshold (px)."""

    pair_id: str
    labels: dict[str, str]
    num_matches: int
    match_seconds: float
    fits: dict[float, Fit] = field(default_factory=dict)


@dataclass
class Summary:
    """Aggregate figures of one method on a set of pairs at one RANSAC threshold.

    auc: {threshold px: AUC in [0, 1]}; failures: pairs without a homography;
    matches: mean putative matches per pair; inlier_ratio: mean of inliers / matches
    over pairs with at least one match (0 when none has any); median_error: median
    corner error in px (inf when more than half fail); match_ms, ransac_ms: mean
    milliseconds per pair.
    """

    pairs: int
    auc: dict[float, float]
    failures: int
    matches: float
    inlier_ratio: float
    median_error: float
    match_ms: float
    ransac_ms: float

    def to_json(self) -> dict[str, object]:
        return {
            "pairs": self.pairs,
            "auc": {f"{t:g}": round(100.0 * v, 2) for t, v in self.auc.items()},
            "failures": self.failures,
            "matches": round(self.matches, 1),
            "inlier_ratio": round(self.inlier_ratio, 4),
            "median_error_px": None if math.isinf(self.median_error) else round(self.median_error, 3),
            "match_ms": round(self.match_ms, 2),
            "ransac_ms": round(self.ransac_ms, 2),
        }


@dataclass
class MethodResult:
    """A method's records, its chosen RANSAC threshold and summaries at that threshold.

    by_threshold: overall summary for every candidate threshold; breakdown:
    {manifest key: {label: summary}}.
    """

    name: str
    records: list[PairRecord]
    threshold_px: float
    overall: Summary
    by_threshold: dict[float, Summary]
    breakdown: dict[str, dict[str, Summary]]

    def errors(self) -> np.ndarray:
        """(pairs,) corner errors at the chosen threshold, inf for failures."""
        return np.array([r.fits[self.threshold_px].error for r in self.records])


def summarise(records: Sequence[PairRecord], threshold_px: float) -> Summary:
    """Aggregate `records` at one RANSAC threshold (see `Summary`)."""
    if not records:
        raise ValueError("no records to summarise")
    fits = [r.fits[threshold_px] for r in records]
    errors = np.array([f.error for f in fits])
    ratios = [f.num_inliers / r.num_matches for r, f in zip(records, fits) if r.num_matches > 0]
    return Summary(
        pairs=len(records),
        auc=error_auc(errors, AUC_THRESHOLDS_PX),
        failures=int(np.isinf(errors).sum()),
        matches=float(np.mean([r.num_matches for r in records])),
        inlier_ratio=float(np.mean(ratios)) if ratios else 0.0,
        median_error=float(np.median(errors)),
        match_ms=1000.0 * float(np.mean([r.match_seconds for r in records])),
        ransac_ms=1000.0 * float(np.mean([f.seconds for f in fits])),
    )


def _breakdown(records: Sequence[PairRecord], threshold_px: float) -> dict[str, dict[str, Summary]]:
    groups: dict[str, dict[str, list[PairRecord]]] = {key: {} for key in BREAKDOWN_KEYS}
    for record in records:
        for key in BREAKDOWN_KEYS:
            groups[key].setdefault(record.labels.get(key, "unknown"), []).append(record)
    return {
        key: {label: summarise(by_label[label], threshold_px) for label in sorted(by_label, key=_label_order)}
        for key, by_label in groups.items()
    }


def _label_order(label: str) -> tuple[int, str]:
    """Difficulty levels easiest first, every other label alphabetically after them."""
    return (DIFFICULTY_ORDER.index(label) if label in DIFFICULTY_ORDER else len(DIFFICULTY_ORDER), label)


def finish(
    name: str, records: list[PairRecord], thresholds_px: Sequence[float], pick_best: bool = True
) -> MethodResult:
    """Summarise a method overall and per breakdown key at one RANSAC threshold: the one
    with the best overall AUC@5 (the first on ties) when `pick_best`, else the first."""
    thresholds = list(thresholds_px)
    by_threshold = {t: summarise(records, t) for t in thresholds}
    chosen = thresholds[0]
    if pick_best:
        chosen = max(thresholds, key=lambda t: (by_threshold[t].auc[SELECTION_AUC_PX], -thresholds.index(t)))
    return MethodResult(
        name, records, chosen, by_threshold[chosen], by_threshold, _breakdown(records, chosen)
    )


def evaluate(
    pairs: Sequence[EvalPair],
    methods: Sequence[MatchMethod],
    thresholds_px: Sequence[float] = (RegistrationConfig.threshold_px,),
    pick_best: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[MethodResult]:
    """Match every pair with every method and fit a homography at every threshold.

    Images are decoded once per pair and shared by all methods. `progress(done, total)`
    is called after each pair. Each method is summarised at its best threshold
    (`pick_best`) or at the first one (see `finish`). Returns one `MethodResult` per
    method, in order.
    """
    if not pairs:
        raise ValueError("no pairs to evaluate")
    if not methods:
        raise ValueError("no methods to evaluate")
    thresholds = [float(t) for t in thresholds_px]
    if not thresholds or min(thresholds) <= 0:
        raise ValueError(f"RANSAC thresholds must be positive pixels, got {list(thresholds_px)}")
    records: dict[str, list[PairRecord]] = {m.name: [] for m in methods}
    if len(records) != len(methods):
        raise ValueError(f"method names must be unique, got {[m.name for m in methods]}")
    for done, (pair, image_a, image_b) in enumerate(iter_loaded(list(pairs)), start=1):
        size_a = (image_a.shape[1], image_a.shape[0])
        for method in methods:
            keypoints_a, keypoints_b, seconds = method.match(image_a, image_b)
            record = PairRecord(pair.id, pair.labels, len(keypoints_a), seconds)
            for threshold in thresholds:
                fitted = fit_homography(keypoints_a, keypoints_b, threshold)
                record.fits[threshold] = Fit(
                    corner_error(fitted.matrix, pair.homography, size_a), fitted.num_inliers, fitted.seconds
                )
            records[method.name].append(record)
        if progress is not None:
            progress(done, len(pairs))
    return [finish(m.name, records[m.name], thresholds, pick_best) for m in methods]
