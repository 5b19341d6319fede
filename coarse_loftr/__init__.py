"""coarse-loftr: real-time detector-free local feature matching (a distilled coarse LoFTR).

    import cv2
    from coarse_loftr import Matcher, estimate_homography

    result = Matcher().match(cv2.imread("a.jpg"), cv2.imread("b.jpg"))
    geometry = estimate_homography(result)

The subpackages are `coarse_loftr.inference` (model, runtimes, matching: no PyTorch),
`coarse_loftr.training` (needs the `train` extra), `coarse_loftr.api` (the web service) and
`coarse_loftr.commands` (the `coarse-loftr` command). Names are imported lazily:
`import coarse_loftr` loads neither a runtime nor PyTorch.
"""

from __future__ import annotations

from typing import Any

from .inference import __all__ as _inference_names
from .inference.errors import CoarseLoftrError

__all__ = ["CoarseLoftrError", *_inference_names]  # noqa: PLE0604 (a list of str)


def __getattr__(name: str) -> Any:
    if name not in _inference_names:
        raise AttributeError(f"module 'coarse_loftr' has no attribute {name!r}")
    from . import inference

    value = getattr(inference, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
