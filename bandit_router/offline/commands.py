"""CLI sub-commands for offline data and training (filled in by the offline issue)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    return None
