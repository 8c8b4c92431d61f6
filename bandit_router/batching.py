"""Draining a queue into batches: the one loop behind the embedding batcher and group commit."""

from __future__ import annotations

import queue
from typing import Any, TypeVar

T = TypeVar("T")


def next_batch(q: queue.Queue[Any], max_batch: int, stop: object) -> tuple[list[Any], bool]:
    """Block for one item, then take what else is already waiting (up to `max_batch`).
    Returns the batch and whether `stop` was seen (the batch is still to be processed)."""
    first = q.get()
    if first is stop:
        return [], True
    batch = [first]
    while len(batch) < max_batch:
        try:
            item = q.get_nowait()
        except queue.Empty:
            break
        if item is stop:
            return batch, True
        batch.append(item)
    return batch, False
