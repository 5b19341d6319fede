"""Real-time detector-free local feature matching (coarse LoFTR), torch-free at runtime.

    from coarse_loftr import Matcher, estimate_homography, draw_matches
    result = Matcher().match("a.jpg", "b.jpg")
    geometry = estimate_homography(result)

Names are imported lazily: `import coarse_loftr.inference` loads neither a runtime nor PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> submodule that defines it
_EXPORTS = {
    "Matcher": "matcher",
    "MatchResult": "matcher",
    "MatchConfig": "config",
    "RegistrationConfig": "config",
    "estimate_homography": "registration",
    "estimate_fundamental": "registration",
    "GeometryResult": "registration",
    "warp_blend": "registration",
    "draw_matches": "drawing",
    "decode_image": "io",
    "read_image": "io",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
