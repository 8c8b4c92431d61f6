"""Draining a queue into batches, and answering the waiting callers: the one loop behind the
embedding batcher and group commit."""

from __future__ import annotations

import asyncio
import queue
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def next_batch(
    q: queue.Queue[Any] | queue.SimpleQueue[Any], max_batch: int, stop: object
) -> tuple[list[Any], bool]:
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


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # the request went away (cancelled) while its item was being processed
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def resolve(
    fut: asyncio.Future[Any] | Future[Any], result: Any = None, exc: BaseException | None = None
) -> None:
    """From a worker thread: settle an asyncio future on its loop (one thread-safe wake-up, where
    a concurrent future awaited through wrap_future costs a lock and chained callbacks: ~0.13 ms
    a request measured), or a concurrent one in place."""
    if isinstance(fut, asyncio.Future):
        fut.get_loop().call_soon_threadsafe(_settle, fut, result, exc)
    elif exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
