"""The ONNX encoders against the torch model they are exported from (the real bundled MiniLM)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bandit_router.config import Settings
from bandit_router.embed.encoder import Encoder, load_encoder
from bandit_router.embed.model_files import bundled_model_path
from bandit_router.embed.onnx import OnnxEncoder, ensure_onnx
from tests.topics import prompts

# Short, long (past the 256-token cut), empty and non-ASCII texts, in one batch of mixed lengths.
TEXTS = [
    *prompts("math", 6, seed=1),
    *prompts("poetry", 6, seed=2),
    "word " * 600,
    "",
    "Qu'est-ce qu'un trou noir ? 黑洞是什么？",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return Encoder(threads=1).encode(TEXTS)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def test_onnx_fp32_gives_the_torch_vectors(reference: np.ndarray, model_cache: Path) -> None:
    enc = load_encoder(Settings(embedding_backend="onnx", model_cache_dir=model_cache))
    vecs = enc.encode(TEXTS)
    assert vecs.shape == reference.shape and vecs.dtype == np.float32
    assert _cosines(vecs, reference).min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # One at a time (the request path) equals the padded batch.
    np.testing.assert_allclose(enc.encode([TEXTS[3]])[0], vecs[3], atol=1e-5)
    assert enc.name == Encoder(threads=1).name  # shares on-disk caches with torch


def test_int8_stays_close_and_keeps_neighbours(reference: np.ndarray, model_cache: Path) -> None:
    enc = load_encoder(Settings(embedding_backend="onnx-int8", model_cache_dir=model_cache))
    vecs = enc.encode(TEXTS)
    assert enc.name.endswith("-int8")
    assert _cosines(vecs, reference).min() > 0.96

    # What routing needs: every text's nearest other text is the same as under fp32.
    def nearest(v: np.ndarray) -> list[int]:
        sims = v @ v.T
        np.fill_diagonal(sims, -2)
        return [int(i) for i in sims.argmax(axis=1)]

    assert nearest(vecs) == nearest(reference)


def test_export_happens_once_and_leaves_no_partial_files(tmp_path: Path) -> None:
    model = bundled_model_path()
    first = ensure_onnx(model, tmp_path, int8=False)
    stamp = first.stat().st_mtime_ns
    assert ensure_onnx(model, tmp_path, int8=False) == first
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]
    assert first.stat().st_mode & 0o777 == 0o644  # readable by the other users of the cache


def test_a_model_without_mean_pooling_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "cls-pooled"
    shutil.copytree(bundled_model_path(), model)
    cfg = model / "1_Pooling" / "config.json"
    pooling = json.loads(cfg.read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    cfg.write_text(json.dumps(pooling))
    with pytest.raises(ValueError, match="EMBEDDING_BACKEND=torch"):
        OnnxEncoder(model, tmp_path / "cache", int8=False)
    assert not list((tmp_path / "cache").glob("*.onnx"))
