"""Encoders for the sentence-transformers model, loaded from local files only (never from a hub)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bandit_router.embed.model_files import model_name, offline_hub, resolve_model_path

if TYPE_CHECKING:
    from bandit_router.config import Settings
    from bandit_router.embed.service import TextEncoder


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
        offline_hub()
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
