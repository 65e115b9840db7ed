"""``python -m ais_wds_bench ...``: the same as ``scripts/bench ...``."""

import sys

from .cli import main

sys.exit(main())
