"""What every sub-command module shares."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bandit_router.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def bench_group(sub: Any) -> Any:
    """The `bench` sub-command group, for domains that add their own benchmarks to it."""
    bench = sub.choices["bench"]
    return next(a for a in bench._actions if isinstance(a, argparse._SubParsersAction))
