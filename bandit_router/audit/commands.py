"""CLI sub-commands of this domain (registered by bandit_router.cli)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    return None
