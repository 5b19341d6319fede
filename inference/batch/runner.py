"""One pair: decode, match, fit the geometry. And the loop that runs pairs in this
process, or hands them to a pool (`ray_pool.RayPool`), writing each to the store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from coarse_loftr.inference.errors import CoarseLoftrError
from coarse_loftr.inference.io import decode_image
from coarse_loftr.inference.matcher import Matcher
from coarse_loftr.inference.registration import estimate_fundamental, estimate_homography

from .pairs import Pair
from .store import MatchStore, PairOutcome

RANSAC_METHODS = ("fundamental", "homography")


@dataclass(frozen=True)
class PairJob:
    """A pair with its two images' encoded bytes (None: the file could not be read; the
    reason is in `error`)."""

    pair: Pair
    data0: bytes | None
    data1: bytes | None
    error: str | None = None


@dataclass(frozen=True)
class MatchSettings:
    """What every worker needs to build its matcher and fit geometries: `Matcher`'s
    weights, backend, size, threads and image0 cache (pairs with the same first image one
    after another, as exhaustive and sequential lists have them, reuse its half of the
    model); the match options; the RANSAC model and its inlier threshold (pixels of
    image1, None: `RegistrationConfig`'s)."""

    weights: Path | None = None
    backend: str = "auto"
    size: tuple[int, int] | None = None
    num_threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # threshold, max_matches, refine
    ransac: str = "fundamental"
    ransac_threshold: float | None = None
    image0_cache: int = 2

    def matcher(self) -> Matcher:
        return Matcher(
            self.weights,
            backend=self.backend,
            size=self.size,
            num_threads=self.num_threads,
            image0_cache=self.image0_cache,
        )


def read_job(image_dir: Path, pair: Pair) -> PairJob:
    """The pair's two files read (not decoded)."""
    data = []
    for name in (pair.name0, pair.name1):
        try:
            data.append((image_dir / name).read_bytes())
        except FileNotFoundError:
            return PairJob(pair, None, None, f"no such image: {name}")
        except OSError as error:
            return PairJob(pair, None, None, f"cannot read {name}: {error.strerror or error}")
    return PairJob(pair, data[0], data[1])


def match_job(matcher: Matcher, job: PairJob, settings: MatchSettings) -> PairOutcome:
    """Decode, match and fit one pair; any failure becomes a `PairOutcome` with its reason."""
    if job.error is not None or job.data0 is None or job.data1 is None:
        return PairOutcome.failed(job.pair, settings.ransac, job.error or "no image data")
    try:
        images = []
        for name, data in ((job.pair.name0, job.data0), (job.pair.name1, job.data1)):
            try:
                images.append(decode_image(data))
            except CoarseLoftrError as error:
                raise CoarseLoftrError(f"{name}: {error}") from None
        result = matcher.match(images[0], images[1], **settings.options)
        fit = estimate_homography if settings.ransac == "homography" else estimate_fundamental
        if settings.ransac_threshold is None:
            geometry = fit(result)
        else:
            geometry = fit(result, threshold_px=settings.ransac_threshold)
    except CoarseLoftrError as error:
        return PairOutcome.failed(job.pair, settings.ransac, str(error))
    except Exception as error:  # one bad pair must not stop thousands: record it
        return PairOutcome.failed(job.pair, settings.ransac, f"{type(error).__name__}: {error}")
    return PairOutcome(
        job.pair,
        result.keypoints0,
        result.keypoints1,
        result.confidence,
        geometry.inliers,
        geometry.matrix,
        settings.ransac,
        result.image_size0,
        result.image_size1,
    )


class Pool(Protocol):
    def imap(self, jobs: Iterator[PairJob]) -> Iterator[PairOutcome]:
        """Outcomes of `jobs`, in any order, reading at most a bounded number ahead."""
        ...


class LocalPool:
    """Pairs one after the other, with one matcher in this process."""

    def __init__(self, settings: MatchSettings) -> None:
        self.settings = settings
        self.matcher = settings.matcher()

    def imap(self, jobs: Iterator[PairJob]) -> Iterator[PairOutcome]:
        for job in jobs:
            yield match_job(self.matcher, job, self.settings)


@dataclass
class RunSummary:
    total: int  # pairs in the file
    skipped: int  # already written (--resume)
    matched: int
    failed: int
    failures: list[tuple[Pair, str]]


def run_pairs(
    pairs: list[Pair],
    image_dir: Path,
    store: MatchStore,
    pool: Pool,
    progress: Callable[[Iterable[PairOutcome], int], Iterable[PairOutcome]] = lambda it, _: it,
) -> RunSummary:
    """Match every pair not yet in `store`, writing each as it finishes.
    progress(outcomes, count): wraps the outcomes (e.g. in a tqdm bar of `count` pairs)."""
    done = store.done()
    todo = [pair for pair in pairs if pair.key not in done]
    jobs = (read_job(image_dir, pair) for pair in todo)
    failures: list[tuple[Pair, str]] = []
    for outcome in progress(pool.imap(jobs), len(todo)):
        store.write(outcome)
        if outcome.error is not None:
            failures.append((outcome.pair, outcome.error))
    return RunSummary(len(pairs), len(pairs) - len(todo), len(todo) - len(failures), len(failures), failures)
