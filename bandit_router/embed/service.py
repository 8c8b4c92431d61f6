"""Request-path embedding: a bounded LRU cache in front of a micro-batching encoder thread.

Concurrent requests that miss the cache are encoded together in one forward pass, which is what
keeps throughput up on 2 cores; a lone request is encoded at once (no waiting for a batch to fill).
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np

from bandit_router.batching import next_batch, resolve

_STOP = object()


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LRUCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            vec = self._data.get(key)
            if vec is not None:
                self._data.move_to_end(key)
            return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        if self._size == 0:
            return
        with self._lock:
            self._data[key] = vec
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class EncoderOverloaded(RuntimeError):
    """More queries are waiting for the encoder than `max_queue`: answering 503 now beats letting
    every request queue until its client times out."""


class EmbeddingService:
    """One batcher thread per encoder: each owns its encoder (fast tokenizers must not be shared
    between threads) and ONNX Runtime and torch release the GIL, so N single-threaded encoders use
    N cores."""

    def __init__(
        self,
        encoders: TextEncoder | list[TextEncoder],
        cache_size: int,
        max_batch: int,
        max_queue: int | None = None,
    ) -> None:
        self.encoders = encoders if isinstance(encoders, list) else [encoders]
        self.encoder = self.encoders[0]
        self.cache = LRUCache(cache_size)
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, args=(enc,), name=f"embed-{i}", daemon=True)
            for i, enc in enumerate(self.encoders)
        ]
        for t in self._threads:
            t.start()

    async def embed(self, text: str, key: str) -> tuple[np.ndarray, bool]:
        """Vector for `text` (whose hash is `key`) and whether it came from the cache."""
        vec = self.cache.get(key)
        if vec is not None:
            return vec, True
        if self._max_queue is not None and self._queue.qsize() >= self._max_queue:
            raise EncoderOverloaded(f"{self._queue.qsize()} queries are waiting for the encoder")
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put((text, key, fut))
        return await fut, False

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout=10)

    def _run(self, encoder: TextEncoder) -> None:
        stopped = False
        while not stopped:
            batch, stopped = next_batch(self._queue, self._max_batch, _STOP)
            if batch:
                self._encode(encoder, batch)

    def _encode(
        self, encoder: TextEncoder, batch: list[tuple[str, str, asyncio.Future[np.ndarray]]]
    ) -> None:
        try:
            vecs = encoder.encode([t for t, _, _ in batch])
        except Exception as exc:  # a failure is the caller's error to report, not a dead thread
            for _, _, fut in batch:
                resolve(fut, exc=exc)
            return
        for (_, key, fut), vec in zip(batch, vecs, strict=True):
            self.cache.put(key, vec)
            resolve(fut, vec)
