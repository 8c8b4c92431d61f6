"""On-disk embedding cache for data sets: repeated training and benchmarking never re-embed a text.

Storage: one SQLite file, `<cache_dir>/embeddings.sqlite`, one row per (encoder name, sha256 of the
text) holding the float32 vector as a blob. Chosen over .npy chunks plus an index because SQLite
gives atomic, crash-safe commits (its journal is the "write temp + rename" for us: a process killed
mid-write leaves the last committed state), looks up 100k keys without loading the whole cache,
and lets two processes fill the same cache without losing each other's index updates.
Vectors are committed after every encoded batch, so a crash costs at most one batch of work.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

import numpy as np

DB_NAME = "embeddings.sqlite"
# SQLite caps the number of bound parameters per statement (999 in older builds).
_LOOKUP_CHUNK = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    encoder TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    dim INTEGER NOT NULL,
    vec BLOB NOT NULL,
    UNIQUE (encoder, text_sha256)
)
"""
# A rowid table with 8 KiB pages stores a 384-d vector in ~1.7 KB. A WITHOUT ROWID table keeps
# only ~1 KB of a row in its page and spills the rest: ~4.7 KB per vector at 4 KiB pages.
_PAGE_SIZE = 8192
# Little-endian float32 on disk whatever the host, so a cache file can be copied between machines.
_DTYPE = np.dtype("<f4")
_INSERT = "INSERT OR REPLACE INTO embeddings (encoder, text_sha256, dim, vec) VALUES (?, ?, ?, ?)"


class DatasetEncoder(Protocol):
    """Anything with a stable `name` (it keys the cache) and a batch `encode`."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _connect(cache_dir: Path) -> sqlite3.Connection:
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A generous busy timeout: a second process filling the same cache waits instead of failing.
    conn = sqlite3.connect(cache_dir / DB_NAME, timeout=120.0)
    conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")  # only takes effect on a new file
    conn.execute(_SCHEMA)
    conn.commit()
    return conn


def _chunks(items: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _lookup(conn: sqlite3.Connection, encoder: str, digests: Sequence[bytes]) -> dict[bytes, bytes]:
    # Blobs stay bytes until the end: one join + frombuffer for all rows is far cheaper than an
    # array per row plus np.stack (100k cached 384-d vectors: ~1.3 s instead of ~5.4 s).
    found: dict[bytes, bytes] = {}
    for part in _chunks(digests, _LOOKUP_CHUNK):
        marks = ",".join("?" * len(part))
        rows = conn.execute(
            f"SELECT text_sha256, dim, vec FROM embeddings "
            f"WHERE encoder = ? AND text_sha256 IN ({marks})",
            (encoder, *part),
        ).fetchall()
        for digest, dim, blob in rows:
            if len(blob) != dim * _DTYPE.itemsize:
                raise ValueError(f"corrupt cache entry for encoder {encoder!r}")
            found[digest] = blob
    return found


def _encode_batch(encoder: DatasetEncoder, texts: list[str]) -> list[bytes]:
    vecs = np.asarray(encoder.encode(texts), dtype=_DTYPE)
    if vecs.ndim != 2 or vecs.shape[0] != len(texts):
        raise ValueError(f"encoder returned shape {vecs.shape} for {len(texts)} texts")
    return [v.tobytes() for v in vecs]


def _store(
    conn: sqlite3.Connection, encoder: str, digests: Sequence[bytes], blobs: list[bytes]
) -> None:
    rows = [(encoder, d, len(b) // _DTYPE.itemsize, b) for d, b in zip(digests, blobs, strict=True)]
    with conn:  # one transaction per batch: all rows of the batch land, or none do
        conn.executemany(_INSERT, rows)


def _assemble(blobs: list[bytes], encoder: str) -> np.ndarray:
    sizes = {len(b) for b in blobs}
    if len(sizes) != 1:
        dims = sorted(size // _DTYPE.itemsize for size in sizes)
        raise ValueError(f"encoder {encoder!r} has vectors of several dimensions {dims}")
    dim = sizes.pop() // _DTYPE.itemsize
    # bytearray, not bytes: the array must be writable for callers that normalise in place.
    flat = np.frombuffer(bytearray().join(blobs), dtype=_DTYPE)
    return flat.reshape(len(blobs), dim).astype(np.float32, copy=False)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="embedding", unit="text")


def embed_texts(
    texts: Sequence[str],
    encoder: DatasetEncoder,
    cache_dir: Path,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Embeddings (n, d) float32 for `texts`, in order; only texts missing from the cache (each
    distinct text once) are sent to `encoder.encode`, in batches of `batch_size`.

    An empty `texts` gives an array of shape (0, 0): no dimension is known without encoding.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    digests = [text_digest(t) for t in texts]
    first_text: dict[bytes, str] = {}
    for d, t in zip(digests, texts, strict=True):
        first_text.setdefault(d, t)
    unique = list(first_text)
    with closing(_connect(Path(cache_dir))) as conn:
        vectors = _lookup(conn, encoder.name, unique)
        missing = [d for d in unique if d not in vectors]
        bar = _progress(len(missing), progress and bool(missing))
        for part in _chunks(missing, batch_size):
            blobs = _encode_batch(encoder, [first_text[d] for d in part])
            _store(conn, encoder.name, part, blobs)
            vectors.update(zip(part, blobs, strict=True))
            if bar is not None:
                bar.update(len(part))
        if bar is not None:
            bar.close()
    if not digests:
        return np.zeros((0, 0), dtype=np.float32)
    return _assemble([vectors[d] for d in digests], encoder.name)


def cached_count(cache_dir: Path, encoder_name: str) -> int:
    """How many texts are cached for `encoder_name` (0 if there is no cache yet)."""
    if not (Path(cache_dir) / DB_NAME).exists():
        return 0
    with closing(_connect(Path(cache_dir))) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM embeddings WHERE encoder = ?", (encoder_name,)
        ).fetchone()
    return int(count)
