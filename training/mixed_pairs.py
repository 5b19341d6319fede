"""Interleave two pair datasets at a fixed share, deterministically by index."""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset


class PairSource(Protocol):
    """A map-style dataset of pairs with a length (what torch's `Dataset` does not promise)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


#: Keys every pair source provides (homography pairs add "homography", depth pairs
#: cannot); a mixed batch is stacked from these only.
SAMPLE_KEYS = ("image0", "image1", "match_index1", "coarse_valid", "fine_valid", "offset1")


class MixedPairs(Dataset):
    """`len(primary)` items; item i comes from `secondary` for a `share` of the indices,
    spread evenly (i is secondary when floor((i + 1) * share) > floor(i * share)), so
    every micro-batch holds about the same mix and a resumed run sees the same items.
    Secondary items are visited in a seeded order, cycling when exhausted."""

    def __init__(self, primary: PairSource, secondary: PairSource, share: float, seed: int = 0) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        if len(secondary) == 0:
            raise ValueError("the secondary dataset is empty")
        self.primary = primary
        self.secondary = secondary
        self.share = share
        self.order = np.random.default_rng(seed).permutation(len(secondary))

    def __len__(self) -> int:
        return len(self.primary)

    def is_secondary(self, index: int) -> bool:
        return math.floor((index + 1) * self.share) > math.floor(index * self.share)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.is_secondary(index):
            k = math.floor(index * self.share) % len(self.order)
            sample = self.secondary[int(self.order[k])]
        else:
            sample = self.primary[index]
        return {key: sample[key] for key in SAMPLE_KEYS}
