"""`python -m ais_local ...`: the same as `scripts/ais-local ...`."""

import sys

from .cli import main

sys.exit(main())
