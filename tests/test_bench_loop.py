"""`bench loop` on a generated gold table, small enough for CI: the whole loop (routing, feedback,
audits, update and retraining jobs) through the service's code, and the direction it must
have: learning from unbiased feedback does not lower the value the policy started with."""

from __future__ import annotations

import json

import pytest
from topics import gold_table

from bandit_router.bench.loop import LoopOptions, run_loop
from bandit_router.config import load_settings


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("loop")
    settings = load_settings(database_url=f"sqlite:///{tmp}/x.db")
    gold = gold_table(tmp / "gold.parquet", ["big", "mathy", "poet"], n=150)
    opts = LoopOptions(
        seeds=2,
        rounds=600,
        offline_fraction=0.05,  # a weak warm start: room to learn
        lambdas=(0.0, 0.2, 1.0),
        judges=("noisy", "gold"),
        update_every=100,
        retrain_every=300,
        checkpoint_every=300,
    )
    out = tmp / "out"
    run_loop(settings, gold, None, out, opts, tmp / "cache")
    return json.loads((out / "result.json").read_text()), out


def test_learning_from_unbiased_feedback_does_not_lower_the_start(result) -> None:  # type: ignore[no-untyped-def]
    res, _ = result
    policies = res["summary"]["policies"]
    for name in ("warm/noisy", "cold/noisy", "warm/gold"):
        assert policies[name]["change"]["0.2"] >= -0.005, (name, policies[name])
    # The cold start has everything to learn, and learns it.
    assert policies["cold/noisy"]["change"]["0.2"] > 0.05
    # The frozen warm start does not move; the full-information learner is the yardstick.
    assert policies["warm_frozen"]["worst_change"] == 0.0
    assert "full_information" in policies


def test_the_report_names_every_policy_target_and_retraining(result) -> None:  # type: ignore[no-untyped-def]
    res, out = result
    assert (out / "value_over_rounds.png").stat().st_size > 10_000
    table = (out / "summary.md").read_text()
    assert "| cold/noisy | " in table and "| promotion: truly worse promoted ≤ 5% |" in table
    seeds = res["seeds"]
    assert len(seeds) == 2
    assert set(seeds[0]["policies"]) == {
        "warm_frozen",
        "full_information",
        "warm/noisy",
        "cold/noisy",
        "warm/noisy/no_audits",
        "warm/gold",
        "cold/gold",
    }
    checkpoints = seeds[0]["policies"]["warm/noisy"]["trace"]
    assert sorted(int(t) for t in checkpoints) == [0, 300, 600]
    retrains = [p for s in seeds for p in s["promotions"]]
    assert len(retrains) == 2 * 2 * 2 * 2  # seeds x judges x (warm, cold) x retrainings
    decided = [p for p in retrains if "promoted" in p]
    assert decided and all(isinstance(p["true_difference"], float) for p in decided)
    targets = res["summary"]["targets"]
    assert any(t.startswith("promotion: truly worse") for t in targets)
    constants = res["summary"]["constants"]
    assert constants["best_single_model"]["0"] >= constants["cheapest_model"]["0"]
