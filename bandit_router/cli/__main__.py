"""`python -m bandit_router.cli`: what the benchmarks and tests start as a subprocess."""

import sys

from bandit_router.cli import main

sys.exit(main())
