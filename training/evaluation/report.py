"""Evaluation results as a markdown table, an error-curve plot and a JSON document."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .metrics import AUC_THRESHOLDS_PX, cumulative_curve
from .pairs import BREAKDOWN_KEYS
from .runner import MethodResult, Summary

CORNER_CONVENTION = (
    "mean distance in pixels of image b between image a's corners (0,0), (w-1,0), "
    "(w-1,h-1), (0,h-1) (pixel centres at integers) warped by the estimated and "
    "the true homography; a pair without a homography counts as infinite error"
)
#: x range of the error-curve plot, pixels
CURVE_MAX_PX = 10.0


def _fmt_error(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


def _row(label: str, summary: Summary, threshold_px: float | None = None) -> str:
    aucs = " | ".join(f"{100.0 * summary.auc[t]:.1f}" for t in AUC_THRESHOLDS_PX)
    ransac = "" if threshold_px is None else f" {threshold_px:g} |"
    return (
        f"| {label} |{ransac} {summary.pairs} | {aucs} | {summary.failures} | "
        f"{summary.matches:.0f} | {summary.inlier_ratio:.2f} | "
        f"{_fmt_error(summary.median_error)} | {summary.match_ms:.1f} | {summary.ransac_ms:.1f} |"
    )


def _header(first: str, with_threshold: bool) -> list[str]:
    aucs = " | ".join(f"AUC@{t:g}px" for t in AUC_THRESHOLDS_PX)
    ransac = " RANSAC px |" if with_threshold else ""
    columns = (
        f"| {first} |{ransac} pairs | {aucs} | failures | matches | inlier ratio | "
        "median err px | match ms | RANSAC ms |"
    )
    return [columns, "|" + "---|" * (columns.count("|") - 1)]


def refinement_lines(refined: MethodResult, coarse: MethodResult) -> list[str]:
    """What sub-cell refinement changes: the same weights with it on and off. The
    per-pair change is over the pairs where both runs found a homography."""
    on, off = refined.errors(), coarse.errors()
    both = np.isfinite(on) & np.isfinite(off)
    change = float(np.median(on[both] - off[both])) if both.any() else float("nan")
    aucs = ", ".join(
        f"AUC@{t:g} {100.0 * refined.overall.auc[t]:.1f} vs {100.0 * coarse.overall.auc[t]:.1f}"
        for t in AUC_THRESHOLDS_PX
    )
    return [
        "",
        "## Refinement on vs off (same weights)",
        "",
        f"- {aucs} (on vs off)",
        f"- median corner error {_fmt_error(refined.overall.median_error)} px on vs "
        f"{_fmt_error(coarse.overall.median_error)} px off",
        f"- per pair, median change of the corner error with refinement: {change:+.3f} px "
        f"over {int(both.sum())} pairs solved both ways",
    ]


def markdown_table(
    results: Sequence[MethodResult],
    manifest: str,
    selection: str,
    ablation: tuple[MethodResult, MethodResult] | None = None,
) -> str:
    """The whole report: overall table, the refinement ablation (refined, unrefined)
    when given, then one table per breakdown key."""
    lines = [
        f"# Homography evaluation on `{manifest}`",
        "",
        f"Corner error: {CORNER_CONVENTION}. AUC in percent. RANSAC: OpenCV USAC MAGSAC, "
        f"{selection}. Times are means per pair; matching and RANSAC are timed separately.",
        "",
        "## Overall",
        "",
    ]
    lines += _header("method", with_threshold=True)
    lines += [_row(r.name, r.overall, r.threshold_px) for r in results]
    if any(len(r.by_threshold) > 1 for r in results):
        lines += ["", "## Every RANSAC threshold", ""]
        lines += _header("method", with_threshold=True)
        for result in results:
            lines += [_row(result.name, s, t) for t, s in result.by_threshold.items()]
    if ablation is not None:
        lines += refinement_lines(*ablation)
    for key in BREAKDOWN_KEYS:
        lines += ["", f"## By {key}", ""]
        lines += _header(f"{key} / method", with_threshold=False)
        labels = list(dict.fromkeys(label for r in results for label in r.breakdown[key]))
        for label in labels:
            lines += [
                _row(f"{label} / {r.name}", r.breakdown[key][label])
                for r in results
                if label in r.breakdown[key]
            ]
    return "\n".join(lines) + "\n"


def plot_curves(results: Sequence[MethodResult], path: Path, title: str) -> None:
    """Fraction of pairs with corner error <= x against x in [0, 10] px, one line per method."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    xs = np.linspace(0.0, CURVE_MAX_PX, 401)
    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for result in results:
        auc5 = 100.0 * result.overall.auc[5.0] if 5.0 in result.overall.auc else float("nan")
        axes.plot(
            xs,
            cumulative_curve(result.errors(), xs),
            drawstyle="steps-post",
            label=f"{result.name} (AUC@5 {auc5:.1f})",
        )
    axes.set_xlim(0.0, CURVE_MAX_PX)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("mean corner error (px)")
    axes.set_ylabel("fraction of pairs with error <= x")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def to_json(
    results: Sequence[MethodResult], manifest: str, thresholds_px: Sequence[float], selection: str
) -> dict[str, object]:
    """Every figure of the report, for machines (AUC in percent, errors in px, times in ms;
    an infinite error is null)."""
    return {
        "manifest": manifest,
        "corner_error": CORNER_CONVENTION,
        "auc_thresholds_px": list(AUC_THRESHOLDS_PX),
        "ransac": {
            "method": "USAC_MAGSAC",
            "candidate_thresholds_px": list(thresholds_px),
            "selection": selection,
        },
        "methods": {
            r.name: {
                "ransac_threshold_px": r.threshold_px,
                "overall": r.overall.to_json(),
                "by_ransac_threshold": {f"{t:g}": s.to_json() for t, s in r.by_threshold.items()},
                "breakdown": {
                    key: {label: s.to_json() for label, s in by_label.items()}
                    for key, by_label in r.breakdown.items()
                },
            }
            for r in results
        },
    }


def per_pair_json(results: Sequence[MethodResult]) -> dict[str, list[dict[str, object]]]:
    """Per method, one entry per pair at its chosen RANSAC threshold."""
    out: dict[str, list[dict[str, object]]] = {}
    for result in results:
        rows: list[dict[str, object]] = []
        for record in result.records:
            fit = record.fits[result.threshold_px]
            rows.append(
                {
                    "id": record.pair_id,
                    **record.labels,
                    "matches": record.num_matches,
                    "inliers": fit.num_inliers,
                    "error_px": None if math.isinf(fit.error) else round(fit.error, 4),
                    "match_ms": round(1000.0 * record.match_seconds, 2),
                    "ransac_ms": round(1000.0 * fit.seconds, 2),
                }
            )
        out[result.name] = rows
    return out
