"""Dataset embedding cache: only missing texts are encoded, results survive restarts and crashes.

Uses a fake hash-based encoder; the real sentence-transformers encoder is tested elsewhere.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from bandit_router.embed.dataset_cache import cached_count, embed_texts


class FakeEncoder:
    """Deterministic 8-d vectors derived from sha256(name + text); records every call."""

    def __init__(self, name: str = "fake-v1", fail_on_call: int | None = None) -> None:
        self.name = name
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("simulated crash")
        return np.stack([self.vector(t) for t in texts])

    def vector(self, text: str) -> np.ndarray:
        digest = hashlib.sha256((self.name + "\0" + text).encode()).digest()
        return (np.frombuffer(digest[:8], dtype=np.uint8).astype(np.float32) - 128) / 128

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


def test_encodes_each_distinct_text_once_in_order(tmp_path: Path) -> None:
    enc = FakeEncoder()
    texts = ["b", "a", "b", "c", "a", "é ünïcode"]
    out = embed_texts(texts, enc, tmp_path)
    assert out.dtype == np.float32 and out.shape == (6, 8) and out.flags.writeable
    np.testing.assert_array_equal(out, np.stack([enc.vector(t) for t in texts]))
    assert sorted(enc.encoded) == sorted({*texts})


def test_second_run_only_encodes_missing_texts(tmp_path: Path) -> None:
    first = embed_texts([f"t{i}" for i in range(50)], FakeEncoder(), tmp_path)
    enc = FakeEncoder()
    texts = [f"t{i}" for i in range(70)]
    out = embed_texts(texts, enc, tmp_path, batch_size=8)
    assert sorted(enc.encoded) == sorted(f"t{i}" for i in range(50, 70))
    assert all(len(call) <= 8 for call in enc.calls)
    np.testing.assert_array_equal(out[:50], first)
    enc_again = FakeEncoder()
    np.testing.assert_array_equal(embed_texts(texts, enc_again, tmp_path), out)
    assert enc_again.calls == []
    assert cached_count(tmp_path, "fake-v1") == 70


def test_cache_is_keyed_by_encoder_name(tmp_path: Path) -> None:
    embed_texts(["x", "y"], FakeEncoder("enc-a"), tmp_path)
    other = FakeEncoder("enc-b")
    out = embed_texts(["x", "y"], other, tmp_path)
    assert other.encoded == ["x", "y"]
    np.testing.assert_array_equal(out[0], other.vector("x"))
    assert cached_count(tmp_path, "enc-a") == 2 and cached_count(tmp_path, "missing") == 0


def test_crash_mid_run_keeps_finished_batches(tmp_path: Path) -> None:
    texts = [f"doc {i}" for i in range(10)]
    crashing = FakeEncoder(fail_on_call=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_texts(texts, crashing, tmp_path, batch_size=3)
    assert cached_count(tmp_path, "fake-v1") == 6  # two full batches were committed
    enc = FakeEncoder()
    out = embed_texts(texts, enc, tmp_path, batch_size=3)
    assert sorted(enc.encoded) == sorted(texts[6:])
    np.testing.assert_array_equal(out, np.stack([enc.vector(t) for t in texts]))


def test_edge_cases(tmp_path: Path) -> None:
    assert embed_texts([], FakeEncoder(), tmp_path).shape == (0, 0)

    class BadEncoder(FakeEncoder):
        def encode(self, texts: list[str]) -> np.ndarray:
            return np.zeros((len(texts) + 1, 8), np.float32)

    with pytest.raises(ValueError, match="encoder returned shape"):
        embed_texts(["q"], BadEncoder("bad"), tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        embed_texts(["q"], FakeEncoder(), tmp_path, batch_size=0)
    assert cached_count(tmp_path / "nowhere", "fake-v1") == 0


def test_progress_bar_runs(tmp_path: Path) -> None:
    out = embed_texts(["p", "q"], FakeEncoder(), tmp_path, progress=True)
    assert out.shape == (2, 8)
