"""What every sub-command module shares."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from bandit_router.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
T = TypeVar("T")


def bench_group(sub: Any) -> Any:
    """The `bench` sub-command group, for domains that add their own benchmarks to it."""
    bench = sub.choices["bench"]
    return next(a for a in bench._actions if isinstance(a, argparse._SubParsersAction))


def options_from(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """A benchmark's options dataclass from the command-line arguments of the same names (an
    argument left at None keeps the field's default); `overrides` for the ones that differ."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if getattr(args, f.name, None) is not None
    }
    return cls(**{**given, **overrides})


def gold_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """What every benchmark on a gold table takes: the table, its prices, where results go."""
    parser.add_argument("--gold", required=True, help="gold table (`data import`)")
    parser.add_argument("--prices", help="pool YAML or price CSV (not needed with cost_usd)")
    parser.add_argument("--out", required=True, help="folder for result.json and plots")
