"""What makes a pool entry usable: its numbers (finite, bounded prices and answer length) and the
environment variable that holds its upstream key (allowed, and set). The admin API refuses what
breaks these rules, `serve` refuses a pool file that does, and the routing pool leaves out any
stored model whose numbers cannot be used, whatever put it there."""

from __future__ import annotations

import math
import os

from bandit_router.config import ENV_NAME, UPSTREAM_KEY_PREFIX, Settings
from bandit_router.policy.pool import ModelSpec

# USD per 1M tokens. The dearest price list we know is ~600; beyond this a number is a typo, and
# an expected cost of infinity (1e400 parses to it) made every routed decision unstorable.
MAX_PRICE = 100_000.0
MAX_OUTPUT_TOKENS = 1_000_000


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numbers_problem(spec: ModelSpec) -> str | None:
    """Why the model's prices or expected answer length cannot be used to price a query, if so."""
    for field in ("input_price", "output_price"):
        value = getattr(spec, field)
        if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= MAX_PRICE:
            return f"{field} {value!r} is not a price in [0, {MAX_PRICE:g}] USD per 1M tokens"
    tokens = spec.expected_output_tokens
    if not _is_number(tokens) or tokens != int(tokens) or not 1 <= tokens <= MAX_OUTPUT_TOKENS:
        return f"expected_output_tokens {tokens!r} is not a count in [1, {MAX_OUTPUT_TOKENS}]"
    return None


def key_env_refused(name: str, settings: Settings) -> str | None:
    """Why a model may not take its upstream key from the variable `name`, if so: only variables
    named for the purpose, or listed when the router started, can be sent to an upstream."""
    if name in settings.upstream_key_envs:
        return None
    named_for_it = name.startswith(UPSTREAM_KEY_PREFIX) and len(name) > len(UPSTREAM_KEY_PREFIX)
    if named_for_it and ENV_NAME.fullmatch(name):
        return None
    return (
        f"api_key_env {name} is not allowed: name a variable {UPSTREAM_KEY_PREFIX}<NAME>, or "
        "list it in BANDIT_ROUTER_UPSTREAM_API_KEY_ENVS when the router starts"
    )


def key_env_unset(name: str) -> str | None:
    if os.environ.get(name):
        return None
    return (
        f"api_key_env {name} is not set in the router's environment: requests routed to this "
        "model fall back to other models until it is"
    )


def model_warnings(spec: ModelSpec, settings: Settings) -> list[str]:
    """What an admin should know about a pool entry: why it is left out of routing, or why its
    upstream will not be reached."""
    found = [numbers_problem(spec)]
    if spec.api_key_env:
        found.append(key_env_refused(spec.api_key_env, settings) or key_env_unset(spec.api_key_env))
    return [w for w in found if w]
