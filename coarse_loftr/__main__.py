"""`python -m coarse_loftr ...` is the `coarse-loftr` command."""

import sys

from .commands import main

sys.exit(main())
