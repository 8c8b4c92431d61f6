"""Prices for the models of a data set: from a pool YAML or a price table CSV, matched by name.

Published data sets and price tables spell model names differently (`mistralai/Mixtral-8x7B-
Instruct-v0.1` vs `mixtral-8x7b-instruct`), so names are normalised and a few known aliases are
listed. A base (non-chat) model is priced as its chat/instruct sibling (same size, same cost).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

from bandit_router.offline.importers import prices_from_csv
from bandit_router.policy.pool import load_pool_file

log = logging.getLogger(__name__)

Prices = dict[str, tuple[float, float]]  # model -> (USD per 1M input, USD per 1M output)

ALIASES = {
    "c4ai-command-r-v01": "command-r",
    "deepseek": "deepseek-chat",
    "claude-v2": "claude-2",
    "code-llama-instruct-34b-chat": "codellama-34b-instruct",
    "mistral-7b-chat": "mistral-7b-instruct",
    "mixtral-8x7b-chat": "mixtral-8x7b-instruct",
    "yi-34b": "yi-34b-chat",
    "gemma-7b": "gemma-7b-it",
    "qwen1.5-110b": "qwen1.5-110b-chat",
}
_SUFFIXES = ("", "-chat", "-instruct", "-it")


def normalise(name: str) -> str:
    name = re.sub(r"\(.*?\)", "", name).strip().lower().rsplit("/", 1)[-1]
    name = name.replace("_", ".").removeprefix("meta-")
    name = re.sub(r"-hf$", "", name)
    return ALIASES.get(name, name)


def _variants(name: str) -> Iterable[str]:
    base = normalise(name)
    stems = [base, re.sub(r"-v0\.\d$", "", base), re.sub(r"-(instruct|chat)(-v0\.\d)?$", "", base)]
    for stem in dict.fromkeys(stems):
        for suffix in _SUFFIXES:
            yield ALIASES.get(stem + suffix, stem + suffix)


def match_prices(models: Iterable[str], table: Prices) -> tuple[Prices, list[str]]:
    """Prices for each model found in `table`; and the models with no price."""
    by_norm = {normalise(k): v for k, v in table.items()}
    found: Prices = {}
    missing = []
    for m in models:
        hit = table.get(m) or next((by_norm[v] for v in _variants(m) if v in by_norm), None)
        if hit is None:
            missing.append(m)
        else:
            found[m] = hit
    return found, missing


def load_prices(path: Path) -> Prices:
    """A pool YAML (the service's format) or a CSV with per-1M input/output prices."""
    if path.suffix in (".yaml", ".yml"):
        return {s.name: (s.input_price, s.output_price) for s in load_pool_file(path)}
    return prices_from_csv(path)
