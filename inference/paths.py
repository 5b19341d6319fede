"""Where the package's own files are, in a checkout and in an installed wheel alike.

In a checkout the package root is the repository (its top-level `weights/`, `templates/`,
`static/` folders are mapped into `coarse_loftr` by pyproject.toml); in a wheel it is the
installed `coarse_loftr` folder. Either way these folders sit beside `inference/`.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = PACKAGE_ROOT / "weights"
TEMPLATES_DIR = PACKAGE_ROOT / "templates"
STATIC_DIR = PACKAGE_ROOT / "static"

#: The team's data beside a checkout (`../shared/data`). Only defaults of development
#: commands (training photos, bench pairs, calibration photos) look here; nothing needs it.
SHARED_DATA = PACKAGE_ROOT.parent / "shared" / "data"
