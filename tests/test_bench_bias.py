"""`bench bias` end to end on a generated gold table, and the simulator's calibration."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bandit_router.bench.judges import (
    DEFAULT_JUDGE,
    MEASURED_JUDGES,
    MEASURED_LENGTH_SLOPE,
    MEASURED_SOURCE_ACCURACY,
    PreferenceModel,
    calibrate,
    judge_source,
    measured_constants,
    shared_data_dir,
)
from bandit_router.cli import main

CATEGORIES = ("arc-challenge", "mbpp", "winogrande")
# model -> (accuracy per category, USD per query, answer length in tokens). The verbose model is
# the weakest, so a judge with a length bias prefers it; the terse one is the best.
MODELS: dict[str, tuple[tuple[float, float, float], float, float]] = {
    "terse-strong": ((0.85, 0.80, 0.90), 0.010, 60.0),
    "verbose-weak": ((0.40, 0.35, 0.45), 0.002, 2500.0),
    "cheap-mid": ((0.70, 0.25, 0.65), 0.0005, 300.0),
}


def write_gold(path: Path, n_prompts: int = 360, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n_prompts):
        category = CATEGORIES[i % len(CATEGORIES)]
        split = "test" if i % 3 == 0 else "train"
        for model, (accuracy, cost, tokens) in MODELS.items():
            p = accuracy[CATEGORIES.index(category)]
            rows.append(
                {
                    "prompt_id": f"p{i}",
                    "prompt": f"{category} question {i}",
                    "model": model,
                    "score": float(rng.random() < p),
                    "cost_usd": cost * rng.uniform(0.8, 1.2),
                    "output_tokens": tokens * rng.uniform(0.7, 1.4),
                    "category": category,
                    "split": split,
                }
            )
    pd.DataFrame(rows).to_parquet(path)
    return path


def fake_embeddings(settings: Any, prompts: list[str], cache_dir: Path) -> np.ndarray:
    """No encoder: a category direction plus per-prompt noise seeded by the text."""
    out = []
    for text in prompts:
        noise = np.random.default_rng(zlib.crc32(text.encode())).normal(0, 0.3, 12)
        centre = np.eye(len(CATEGORIES))[CATEGORIES.index(text.split()[0])] * 2.0
        out.append(np.concatenate([centre, noise]))
    return np.asarray(out)


def test_bench_bias_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bandit_router.bench.data.embed_prompts", fake_embeddings)
    gold = write_gold(tmp_path / "gold.parquet")
    out = tmp_path / "out"
    code = main(
        ["bench", "bias", "--gold", str(gold), "--out", str(out), "--seeds", "3",
         "--audit-rate", "0.1", "--shared-data", str(tmp_path / "no-data")]
    )  # fmt: skip
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert "SIMULATED" in result["preference_feedback"]
    assert "simulated" in result["preference_feedback"].lower()
    assert "built-in constants" in result["simulation"]["calibration"]["origin"]["judges"]
    summary = result["summary"]
    assert set(summary) == {
        "preference_only", "pooled", "gold_only", "paired", "r", "dr", "all_gold",
    }  # fmt: skip
    for method in ("paired", "r", "dr"):
        assert summary[method]["gap_closed"] is not None
        assert {"mean", "std", "min", "max"} <= set(summary[method]["value"])
    assert len(result["per_seed"]) == 3
    best = max(summary[m]["value"]["mean"] for m in ("paired", "r", "dr"))
    assert best > summary["pooled"]["value"]["mean"]
    assert best > summary["preference_only"]["value"]["mean"]
    assert summary["all_gold"]["value"]["mean"] > summary["pooled"]["value"]["mean"]
    assert result["targets"]["best_corrected"] in ("paired", "r", "dr")
    assert (out / "value_by_method.png").stat().st_size > 0


def test_judge_follows_accuracy_length_and_scale() -> None:
    judge = PreferenceModel(measured_constants(), scale=(0.2, 0.7))
    acc = judge.query_accuracy(["law", "computer science", "mbpp", "unknown"], 4)
    assert acc[0] < acc[2] < acc[1]  # JudgeBench: law is hardest for judges, CS easiest
    assert acc[3] == pytest.approx(judge.judge_accuracy)
    gold, zero = np.array([1.0, 1.0, 0.0]), np.zeros(3)
    eta = judge.expected(gold, zero, np.full(3, 0.85))
    assert 0.2 < eta[2] < eta[0] < 0.7  # compressed: never reaches 0 or 1
    longer = judge.expected(gold, np.array([1.0, 1.0, 1.0]), np.full(3, 0.85))
    assert np.all(longer > eta)  # the verbosity bonus
    y = judge.sample(
        np.ones(20_000), np.zeros(20_000), np.full(20_000, 0.85), np.random.default_rng(0)
    )
    assert np.isclose(y[:, None], [0.2, 0.45, 0.7]).any(axis=1).all()
    assert y.mean() == pytest.approx(
        judge.expected(np.ones(1), np.zeros(1), np.full(1, 0.85))[0], abs=0.01
    )


def test_category_mapping() -> None:
    known = list(MEASURED_SOURCE_ACCURACY)
    assert judge_source("law", known) == "mmlu-pro-law"
    assert judge_source("mbpp", known) == "livecodebench"
    assert judge_source("abstract_algebra", known) == "all"


@pytest.mark.shared_data
def test_calibration_reads_the_real_judge_data() -> None:
    root = shared_data_dir()
    if not (root / "judgebench").is_dir() or not (root / "alpaca_eval").is_dir():
        pytest.skip(f"no shared data at {root}")
    cal = calibrate(root)
    assert "measured from" in cal.origin["judges"] and "measured from" in cal.origin["lengths"]
    np.testing.assert_allclose(cal.judges[DEFAULT_JUDGE], MEASURED_JUDGES[DEFAULT_JUDGE], atol=1e-4)
    assert cal.judges["claude-3-haiku-20240307"][0] == pytest.approx(0.322, abs=1e-3)
    for source, accuracy in MEASURED_SOURCE_ACCURACY.items():
        assert cal.source_accuracy[source] == pytest.approx(accuracy, abs=1e-4)
    assert cal.length_slope == pytest.approx(MEASURED_LENGTH_SLOPE, abs=0.01)
    assert cal.length_slope_raw > cal.length_slope > 0  # longer answers win, not only for quality
