"""Pairs files in hloc's format: two image names per line, separated by spaces, relative
to the image folder; blank lines and lines starting with '#' are skipped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coarse_loftr.inference.errors import InvalidInput


class PairsFileError(InvalidInput):
    """A pairs file that cannot be read, or a line that is not two names."""


@dataclass(frozen=True)
class Pair:
    name0: str
    name1: str

    @property
    def key(self) -> str:
        """The pair's group in matches.h5: hloc's `names_to_pair` ('/' in a name becomes
        '-', the two names are joined by '/', i.e. a group name1 inside a group name0)."""
        return "/".join(name.replace("/", "-") for name in (self.name0, self.name1))


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of `path`, in file order, each once (a repeated pair, in either order,
    is dropped: it would be matched twice for the same result)."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise PairsFileError(f"no such pairs file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PairsFileError(f"cannot read {path}: {error}") from None
    pairs: list[Pair] = []
    seen: set[frozenset[str]] = set()
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        names = text.split()
        if len(names) != 2:
            raise PairsFileError(f"{path}:{number}: expected two image names, got {len(names)}: {text!r}")
        if names[0] == names[1]:
            raise PairsFileError(f"{path}:{number}: an image paired with itself: {names[0]!r}")
        if frozenset(names) in seen:
            continue
        seen.add(frozenset(names))
        pairs.append(Pair(*names))
    if not pairs:
        raise PairsFileError(f"{path} lists no pairs")
    return pairs
