"""The request-path encoder: the same sentence-transformers model run by ONNX Runtime.

fp32 MiniLM under torch takes ~17 ms per short query on one core here, which capped a 2-core
machine at ~50 routes/s. The same weights exported to ONNX run in ~9 ms (the same vectors), and
with int8 weights (per-channel dynamic quantisation) in ~4.5 ms at mean cosine 0.992 to fp32; the
README ("Encoder backends") shows the routing quality this keeps. The ONNX files are derived
from the local model once, on first use, into a cache folder: nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bandit_router.embed.model_files import model_name, offline_hub, resolve_model_path

_SUB_BATCH = 32  # rows per ONNX run; bigger batches gain nothing on one core


def onnx_path(model_path: Path, cache_dir: Path, int8: bool) -> Path:
    return cache_dir / f"{model_name(model_path)}{'-int8' if int8 else ''}.onnx"


def ensure_onnx(model_path: Path, cache_dir: Path, int8: bool) -> Path:
    """The ONNX file for this model, exported (and quantised) now if the cache lacks it.
    Several processes may race here: each writes its own temporary file and renames it into
    place, so a reader never sees a half-written model."""
    target = onnx_path(model_path, cache_dir, int8)
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    fp32 = ensure_onnx(model_path, cache_dir, int8=False) if int8 else None
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=cache_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fp32 is not None:
            _quantize_int8(fp32, tmp)
        else:
            _export(model_path, tmp)
        tmp.chmod(0o644)  # mkstemp makes it owner-only; the model is no secret
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _check_mean_pooling(model_path: Path) -> None:
    """The exported graph mean-pools; a model that pools otherwise needs the torch backend."""
    cfg_file = model_path / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
    if not cfg.get("pooling_mode_mean_tokens", False):
        raise ValueError(
            f"{model_path} does not use mean pooling; set BANDIT_ROUTER_EMBEDDING_BACKEND=torch"
        )


def _export(model_path: Path, out: Path) -> None:
    import torch

    offline_hub()
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    _check_mean_pooling(model_path)
    transformers_logging.disable_progress_bar()  # a "Loading weights" bar on every first start
    model = AutoModel.from_pretrained(str(model_path), local_files_only=True).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    warnings.filterwarnings("ignore", module=r"torch\.onnx.*|transformers.*")
    dummy = torch.ones(1, 8, dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    # The TorchScript exporter: one self-contained file in ~2 s; the dynamo one needs onnxscript.
    torch.onnx.export(
        MeanPooled(),
        (dummy, dummy),
        str(out),
        input_names=["input_ids", "attention_mask"],
        output_names=["sentence_embedding"],
        dynamic_axes={
            "input_ids": axes,
            "attention_mask": axes,
            "sentence_embedding": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )


def _quantize_int8(src: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser logs a line per tensor at INFO on the root logger, and a WARNING advising
    # shape pre-processing: noise on a first start, which a user can do nothing about.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # Per channel: per-tensor int8 gave mean cosine 0.958 to fp32 (min 0.93), per channel 0.992.
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


class OnnxEncoder:
    """Maps texts to L2-normalised float32 vectors with ONNX Runtime; one instance per thread."""

    def __init__(
        self,
        model_path: str | Path | None,
        cache_dir: Path,
        int8: bool,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = resolve_model_path(model_path)
        file = ensure_onnx(path, cache_dir, int8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_truncation(_max_seq_length(path))
        self._tokenizer.no_padding()  # tokenizer.json pads to a fixed 128; _run pads per batch
        self.dim = int(json.loads((path / "config.json").read_text())["hidden_size"])
        self.encode(["warm-up"])  # ORT's first run is slow: pay it at start-up, not on a request
        # fp32 ONNX gives the torch vectors (to float rounding), so both share on-disk caches.
        self.name = model_name(path) + ("-int8" if int8 else "")

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(texts)
        # Like sentence-transformers: similar lengths run together, little compute goes on padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), _SUB_BATCH):
            rows = order[start : start + _SUB_BATCH]
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _run(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        (vecs,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        vecs = np.asarray(vecs, dtype=np.float32)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


def _max_seq_length(model_path: Path) -> int:
    cfg = model_path / "sentence_bert_config.json"
    return int(json.loads(cfg.read_text()).get("max_seq_length", 512)) if cfg.exists() else 512
