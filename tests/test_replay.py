"""The replay benchmark end to end on a generated gold table, small enough for CI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from topics import gold_table as gold_fixture

from bandit_router.bench.data import load_bench_data
from bandit_router.bench.replay import ReplayOptions, run_replay
from bandit_router.config import load_settings


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('db')}/x.db")


def test_replay_three_models(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gold = gold_fixture(tmp_path / "gold.parquet", ["big", "mathy", "poet"])
    opts = ReplayOptions(rounds=600, batch=100, seed=1, progress=False, mf_epochs=20)
    result = run_replay(settings, gold, None, tmp_path / "out", opts, tmp_path / "cache")
    on_disk = json.loads((tmp_path / "out" / "result.json").read_text())
    assert on_disk["best_single_model"]["model"] == "big"
    for png in ("quality_cost.png", "online_reward.png"):
        assert (tmp_path / "out" / png).stat().st_size > 10_000
    policies = {p["policy"]: p for p in result["policies"]}
    assert set(policies) == {
        "supervised_full_information",
        "offline_mf_router",
        "bandit_cold",
        "bandit_warm_mf",
        "bandit_warm_supervised",
    }
    rnd = result["random"]["quality"]
    for name in ("supervised_full_information", "offline_mf_router", "bandit_warm_mf"):
        p = policies[name]
        # A router that knows the topics reaches the big model's quality far cheaper.
        assert p["cost_share_to_match_best_single"] is not None, name
        assert p["cost_share_to_match_best_single"] < 0.5, name
        assert p["max_quality"] > rnd + 0.2, name
    cold = result["online"]["cold"]["first_1000_mean_reward"]
    assert result["online"]["warm_mf"]["first_1000_mean_reward"] > cold
    assert result["online"]["warm_supervised"]["first_1000_mean_reward"] > cold


def test_replay_two_models_reports_routellm_metrics(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gold = gold_fixture(tmp_path / "gold.parquet", ["big", "poet"])
    opts = ReplayOptions(rounds=300, batch=100, seed=2, progress=False, mf_epochs=20)
    result = run_replay(settings, gold, None, tmp_path / "out", opts, tmp_path / "cache")
    assert result["strong_model"] == "big"
    policies = {p["policy"]: p for p in result["policies"]}
    assert 0.4 < result["random"]["apgr"] < 0.6
    # A topic-perfect router scores ≈ 0.75 here (the weak model is as good on half the prompts).
    assert policies["supervised_full_information"]["apgr"] > 0.6
    assert policies["supervised_full_information"]["cpt50"] < 0.5
    assert (tmp_path / "out" / "pgr.png").exists()


def test_replay_reads_tables_with_cost_and_input_tokens(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Both documented columns at once: per-row input tokens (models tokenise differently)
    become one count per prompt, their mean."""
    path = gold_fixture(tmp_path / "gold.parquet", ["big", "poet"], n=40)
    table = pd.read_parquet(path)
    table["input_tokens"] = [30 if m == "big" else 50 for m in table["model"]]
    table.to_parquet(path)
    data = load_bench_data(settings, path, None, tmp_path / "cache")
    assert data.input_tokens.shape == (data.gold.n_prompts,)
    assert np.all(data.input_tokens == 40.0)
    opts = ReplayOptions(rounds=100, batch=50, seed=3, progress=False, mf_epochs=5)
    result = run_replay(settings, path, None, tmp_path / "out", opts, tmp_path / "cache")
    assert result["online"]["cold"]["rounds"] == 100
