"""A gold table made ready for benchmarks: embeddings, per-query costs, a train/test split, and
the model pool the service would see (prices → expected cost per query)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bandit_router.config import Settings
from bandit_router.offline.formats import FormatError, GoldMatrix, gold_matrix, load_gold
from bandit_router.offline.prices import load_prices, match_prices
from bandit_router.policy.pool import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_TOKENS = 300.0


@dataclass
class BenchData:
    gold: GoldMatrix
    X: np.ndarray  # (n, d) query embeddings
    costs: np.ndarray  # (n, K) USD actually paid for each model's answer
    input_tokens: np.ndarray  # (n,)
    pool: list[ModelSpec]  # what the router knows before calling: prices, typical answer length
    train: np.ndarray  # row indices
    test: np.ndarray
    notes: list[str]

    @property
    def models(self) -> list[str]:
        return self.gold.models

    @property
    def scores(self) -> np.ndarray:
        return self.gold.scores


def _split(gm: GoldMatrix, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if gm.split is not None and set(np.unique(gm.split)) >= {"train", "test"}:
        return np.flatnonzero(gm.split == "train"), np.flatnonzero(gm.split == "test")
    perm = np.random.default_rng(seed).permutation(gm.n_prompts)
    n_test = max(1, round(test_fraction * gm.n_prompts))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _output_tokens(gm: GoldMatrix) -> np.ndarray:
    """(n, K) answer lengths: measured where known, else that model's median, else a default."""
    out = np.full(gm.scores.shape, np.nan)
    if gm.output_tokens is not None:
        out = np.asarray(gm.output_tokens, dtype=float)
    medians = np.array([np.nanmedian(col) if np.isfinite(col).any() else np.nan for col in out.T])
    overall = np.nanmedian(medians) if np.isfinite(medians).any() else DEFAULT_OUTPUT_TOKENS
    medians = np.where(np.isfinite(medians), medians, overall)
    return np.where(np.isfinite(out), out, medians[None, :])


def _costs_from_prices(
    gm: GoldMatrix, prices_path: Path, notes: list[str]
) -> tuple[GoldMatrix, np.ndarray, list[ModelSpec], np.ndarray]:
    prices, missing = match_prices(gm.models, load_prices(prices_path))
    if missing:
        notes.append(f"dropped {len(missing)} models with no price: {', '.join(missing)}")
        keep = [i for i, m in enumerate(gm.models) if m not in missing]
        gm = _keep_models(gm, keep)
    if len(gm.models) < 2:
        raise FormatError("fewer than two models of the gold table have a price")
    in_tok = _input_tokens(gm)
    out_tok = _output_tokens(gm)
    p_in = np.array([prices[m][0] for m in gm.models])
    p_out = np.array([prices[m][1] for m in gm.models])
    costs = (in_tok[:, None] * p_in[None, :] + out_tok * p_out[None, :]) / 1e6
    pool = [
        ModelSpec(
            m, float(p_in[k]), float(p_out[k]), max(1, round(float(np.median(out_tok[:, k]))))
        )
        for k, m in enumerate(gm.models)
    ]
    return gm, costs, pool, in_tok


def _costs_from_table(gm: GoldMatrix) -> tuple[np.ndarray, list[ModelSpec], np.ndarray]:
    """Real per-query costs; the router is given each model's mean cost as its expected cost."""
    assert gm.cost_usd is not None
    costs = np.asarray(gm.cost_usd, dtype=float)
    mean = np.nanmean(costs, axis=0)
    costs = np.where(np.isfinite(costs), costs, mean[None, :])
    # Priced per output token at 1,000 tokens so that expected_cost() returns the model's mean.
    pool = [ModelSpec(m, 0.0, float(mean[k]) * 1e3, 1000) for k, m in enumerate(gm.models)]
    return costs, pool, _input_tokens(gm)


def _input_tokens(gm: GoldMatrix) -> np.ndarray:
    """(n,) input tokens per prompt. The gold table gives them per (prompt, model) row, and
    models tokenise differently: their mean; from the prompt's length where none is given."""
    estimate = np.array([max(1.0, len(p) / 4.0) for p in gm.prompts])
    if gm.input_tokens is None:
        return estimate
    given = np.asarray(gm.input_tokens, dtype=float).reshape(gm.n_prompts, -1)
    known = np.isfinite(given).any(axis=1)
    mean = np.nanmean(np.where(known[:, None], given, 0.0), axis=1)
    return np.where(known, np.maximum(mean, 1.0), estimate)


def _keep_models(gm: GoldMatrix, keep: list[int]) -> GoldMatrix:
    def cols(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None or a.ndim != 2 else a[:, keep]

    return GoldMatrix(
        prompt_ids=gm.prompt_ids,
        prompts=gm.prompts,
        models=[gm.models[i] for i in keep],
        scores=gm.scores[:, keep],
        cost_usd=cols(gm.cost_usd),
        input_tokens=gm.input_tokens,
        output_tokens=cols(gm.output_tokens),
        split=gm.split,
        category=gm.category,
    )


def embed_prompts(settings: Settings, prompts: list[str], cache_dir: Path) -> np.ndarray:
    from bandit_router.embed.dataset_cache import embed_texts
    from bandit_router.embed.encoder import load_encoder

    encoder = load_encoder(settings)
    return embed_texts(prompts, encoder, cache_dir, progress=True)


def load_bench_data(
    settings: Settings,
    gold_path: Path,
    prices_path: Path | None,
    cache_dir: Path,
    test_fraction: float = 0.5,
    seed: int = 0,
    max_prompts: int | None = None,
) -> BenchData:
    notes: list[str] = []
    gm = gold_matrix(load_gold(gold_path))
    if max_prompts is not None and gm.n_prompts > max_prompts:
        rows = np.sort(np.random.default_rng(seed).choice(gm.n_prompts, max_prompts, replace=False))
        gm = gm.take(rows)
        notes.append(f"sampled {max_prompts} prompts")
    if prices_path is not None:
        gm, costs, pool, in_tok = _costs_from_prices(gm, prices_path, notes)
    elif gm.cost_usd is not None:
        costs, pool, in_tok = _costs_from_table(gm)
        notes.append("costs: the gold table's per-query cost_usd")
    else:
        raise FormatError("the gold table has no cost_usd column: pass --prices")
    train, test = _split(gm, test_fraction, seed)
    X = embed_prompts(settings, [str(p) for p in gm.prompts], cache_dir)
    return BenchData(gm, X, costs, in_tok, pool, train, test, notes)
