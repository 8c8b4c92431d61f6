"""Offline formats and the importers of published routing data.

Fixture tests build tiny copies of each published layout; the ``shared_data`` tests run the
importers on the real copies when they exist and check facts the publications state.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA
from fixtures_data import (
    ANATOMY_PROMPTS,
    GPT4,
    MIXTRAL,
    PHYSICS_PROMPTS,
    write_alpaca_eval,
    write_arena_bench,
    write_judgebench,
    write_mmlu_pro,
    write_prices,
    write_routellm,
    write_routerbench,
)

from bandit_router.offline.formats import (
    FormatError,
    gold_matrix,
    load_battles,
    load_gold,
    load_verdicts,
    read_table,
    validate_battles,
    validate_gold,
    write_table,
)
from bandit_router.offline.importers import (
    IMPORTERS,
    arena_battles,
    import_alpaca_eval,
    import_data,
    preference_to_winner,
    prices_from_csv,
)

Change = Callable[[pd.DataFrame], pd.DataFrame]


def _gold(**extra: Sequence[object]) -> pd.DataFrame:
    base: dict[str, Sequence[object]] = {
        "prompt_id": ["p1", "p1", "p2", "p2", "p3"],
        "prompt": ["one", "one", "two", "two", "three"],
        "model": ["a", "b", "a", "b", "a"],
        "score": [1.0, 0.0, 0.5, 1.0, 1.0],
    }
    return pd.DataFrame(base | extra)


def _row(df: pd.DataFrame, **match: object) -> pd.Series:
    mask = np.ones(len(df), dtype=bool)
    for column, value in match.items():
        mask &= (df[column] == value).to_numpy()
    assert mask.sum() == 1, f"expected one row for {match}, found {mask.sum()}"
    return df[mask].iloc[0]


def _assert_reloads(
    table: pd.DataFrame, path: Path, loader: Callable[[Path], pd.DataFrame]
) -> None:
    """The written file loads back, validated, with the same rows and columns."""
    back = loader(path)
    assert len(back) == len(table)
    assert back.columns.tolist() == table.columns.tolist()


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_table_round_trip_keeps_text_ids(tmp_path: Path, suffix: str) -> None:
    gold = _gold(category=["x", "x", "y", "y", None], split=["train"] * 4 + ["test"])
    gold.loc[0:1, "prompt_id"] = "007"
    gold.loc[4, "prompt"] = "NA"
    path = tmp_path / f"gold{suffix}"
    write_table(gold, path)
    back = load_gold(path)
    assert back["prompt_id"].tolist() == ["007", "007", "p2", "p2", "p3"]
    assert back["prompt"].iloc[4] == "NA"
    assert back["score"].tolist() == [1.0, 0.0, 0.5, 1.0, 1.0]
    assert back["split"].tolist() == ["train"] * 4 + ["test"]


def test_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"\.xlsx.*\.parquet, \.csv, \.jsonl"):
        write_table(_gold(), tmp_path / "gold.xlsx")
    with pytest.raises(FormatError, match="no such file"):
        read_table(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["score", "model"]), r"missing column\(s\) \['model', 'sc"),
        (lambda df: df.assign(score=[1.0, 0.0, 1.5, 1.0, 1.0]), r"'score' is outside.*row 2: 1\.5"),
        (lambda df: df.assign(score=[1, 0, "x", 1, 1]), r"'score' is not a number.*row 2: 'x'"),
        (lambda df: df.assign(prompt=["one", "one", " ", "two", "t"]), r"'prompt' is empty.*row 2"),
        (lambda df: df.assign(split=["train"] * 4 + ["dev"]), r"'split' is not one of.*'dev'"),
        (lambda df: df.assign(model=["a", "a", "a", "b", "a"]), r"repeats a model.*p1 / a"),
        (lambda df: df.assign(prompt=["one", "uno", "two", "two", "t"]), "two different prompts"),
        (lambda df: df.assign(cost_usd=[0.1, -1.0, 0, 0, 0]), r"'cost_usd' is outside.*row 1"),
    ],
)
def test_validate_gold_rejects(change: Change, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        validate_gold(change(_gold()))


def test_validate_gold_accepts_booleans_and_orders_columns() -> None:
    gold = _gold(extra=[1, 2, 3, 4, 5], category=list("aabbc"))
    gold["score"] = [True, False, True, True, False]
    out = validate_gold(gold)
    assert list(out.columns) == ["prompt_id", "prompt", "model", "score", "category", "extra"]
    assert out["score"].dtype == float
    assert out["score"].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["winner"]), r"missing column\(s\) \['winner'\]"),
        (lambda df: df.assign(winner=["model_a", "A"]), r"'winner' is not one of.*row 1: 'A'"),
        (lambda df: df.assign(prompt=["hi", ""]), r"'prompt' is empty.*row 1"),
        (lambda df: df.assign(model_b=["y", "x"]), "equals model_a"),
    ],
)
def test_validate_battles_rejects(change: Change, message: str) -> None:
    battles = pd.DataFrame(
        {"prompt": ["hi", "yo"], "model_a": ["x", "x"], "model_b": ["y", "z"], "winner": "tie"}
    )
    assert len(validate_battles(battles)) == 2
    with pytest.raises(FormatError, match=message):
        validate_battles(change(battles))


def test_gold_matrix_drops_incomplete_prompts(caplog: pytest.LogCaptureFixture) -> None:
    gold = _gold(
        cost_usd=[0.1, 0.2, 0.3, 0.4, 0.5],
        split=["train", "train", "test", "test", "test"],
        category=["x", "x", "y", "y", "z"],
    )
    with caplog.at_level(logging.WARNING):
        m = gold_matrix(gold)
    assert "dropped 1 of 3 prompts" in caplog.text
    assert m.prompt_ids.tolist() == ["p1", "p2"]
    assert m.prompts.tolist() == ["one", "two"]
    assert m.models == ["a", "b"]
    np.testing.assert_array_equal(m.scores, [[1.0, 0.0], [0.5, 1.0]])
    assert m.cost_usd is not None
    np.testing.assert_array_equal(m.cost_usd, [[0.1, 0.2], [0.3, 0.4]])
    assert m.split is not None and m.split.tolist() == ["train", "test"]
    assert m.category is not None and m.category.tolist() == ["x", "y"]
    assert m.input_tokens is None and m.output_tokens is None
    test = m.take(m.split == "test")
    assert test.prompt_ids.tolist() == ["p2"] and test.scores.shape == (1, 2)


def test_gold_matrix_model_choice() -> None:
    m = gold_matrix(_gold(), models=["b", "a"])
    assert m.models == ["b", "a"]
    np.testing.assert_array_equal(m.scores[:, 0], [0.0, 1.0])
    only_a = gold_matrix(_gold(), models=["a"])
    assert only_a.prompt_ids.tolist() == ["p1", "p2", "p3"]
    with pytest.raises(FormatError, match=r"no rows for model\(s\) \['c'\]"):
        gold_matrix(_gold(), models=["a", "c"])


# ---------------------------------------------------------------- importers on fixtures


def test_routellm(tmp_path: Path) -> None:
    out = tmp_path / "gold.parquet"
    gold = import_data("routellm", write_routellm(tmp_path / "mmlu"), out)
    _assert_reloads(gold, out, load_gold)
    # 2 anatomy prompts minus the contaminated one, plus 3 physics rows (one question twice).
    assert gold["prompt_id"].nunique() == 4
    assert len(gold) == 8
    assert not gold["prompt"].isin([ANATOMY_PROMPTS[1]]).any()
    assert set(gold["model"]) == {MIXTRAL, GPT4}

    anatomy_id = hashlib.sha1(f"anatomy\n{ANATOMY_PROMPTS[0]}".encode()).hexdigest()[:16]
    first = _row(gold, prompt_id=anatomy_id, model=MIXTRAL)
    assert first["prompt"] == ANATOMY_PROMPTS[0]
    assert (first["score"], first["category"]) == (1.0, "anatomy")

    repeated = gold[gold["prompt"] == PHYSICS_PROMPTS[0]]
    base = hashlib.sha1(f"college_physics\n{PHYSICS_PROMPTS[0]}".encode()).hexdigest()[:16]
    assert sorted(repeated["prompt_id"].unique()) == [base, f"{base}-1"]
    assert _row(gold, prompt_id=f"{base}-1", model=GPT4)["score"] == 0.0
    assert _row(gold, prompt_id=base, model=GPT4)["score"] == 1.0


def test_routellm_single_file_keeps_ids(tmp_path: Path) -> None:
    folder = write_routellm(tmp_path / "mmlu")
    whole = import_data("routellm", folder, tmp_path / "a.csv")
    one = import_data("routellm", folder / "mmlu_college_physics.csv", tmp_path / "b.csv")
    physics = whole[whole["category"] == "college_physics"]
    assert sorted(one["prompt_id"]) == sorted(physics["prompt_id"])


def test_routerbench(tmp_path: Path) -> None:
    gold = import_data("routerbench", write_routerbench(tmp_path / "rb"), tmp_path / "g.jsonl")
    assert sorted(gold["prompt_id"].unique()) == [
        "arc-challenge.val.1",
        "arc-challenge.val.7",
        "mbpp.dev.3",
    ]
    assert len(gold) == 9  # the split ARC question is merged back to all 3 models

    merged = gold[gold["prompt_id"] == "arc-challenge.val.7"]
    assert merged["prompt"].unique().tolist() == ["Which is a metal?\nA) wood\nB) iron\nAnswer:"]
    assert merged["split"].unique().tolist() == ["test"]  # from the row with most models
    gpt35 = _row(merged, model="gpt-3.5-turbo-1106")
    assert (gpt35["score"], gpt35["cost_usd"]) == (1.0, 0.0005)
    assert _row(merged, model="claude-v1")["cost_usd"] == 0.004

    mbpp = _row(gold, prompt_id="mbpp.dev.3", model="claude-v1")
    assert mbpp["prompt"] == "Write a python function to add 'a' and \"b\"."
    assert (mbpp["category"], mbpp["split"], mbpp["score"]) == ("mbpp", "test", 1.0)
    assert _row(gold, prompt_id="arc-challenge.val.1", model="claude-v1")["split"] == "train"

    m = gold_matrix(gold)
    assert m.scores.shape == (3, 3) and m.cost_usd is not None and (m.cost_usd > 0).all()


def test_mmlu_pro(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gold = import_data("mmlu_pro", write_mmlu_pro(tmp_path / "mp"), tmp_path / "g.parquet")
    assert len(gold) == 5
    assert sorted(gold["model"].unique()) == ["model-a", "model-b", "model-c"]
    row = _row(gold, prompt_id="70", model="model-b")
    assert row["prompt"] == "What is 2+2?\nOptions:\nA. 3\nB. 4\nC. 5"
    assert (row["score"], row["output_tokens"], row["category"]) == (0.0, 100.0, "math")
    assert _row(gold, prompt_id="71", model="model-b")["output_tokens"] == 30.0
    # model-a published no outputs: its lengths are unknown, not zero.
    assert gold.loc[gold["model"] == "model-a", "output_tokens"].isna().all()
    assert _row(gold, prompt_id="71", model="model-a")["category"] == "other"
    assert "cost_usd" not in gold.columns

    with caplog.at_level(logging.WARNING):
        m = gold_matrix(gold)
    assert m.prompt_ids.tolist() == ["70"] and "dropped 1 of 2" in caplog.text


def test_alpaca_eval(tmp_path: Path) -> None:
    out = tmp_path / "battles.parquet"
    battles = import_data("alpaca_eval", write_alpaca_eval(tmp_path / "ae"), out)
    _assert_reloads(battles, out, load_battles)
    # 7 verdicts - 1 without preference; the self-battle and the repeated row are dropped.
    assert battles["winner"].tolist() == ["model_b", "model_a", "tie", "tie", "model_a", "model_b"]
    assert battles["model_a"].unique().tolist() == ["gpt4_1106_preview"]
    assert battles["model_b"].tolist() == [f"model-{i}" for i in range(6)]
    assert battles["prompt"].tolist() == ["Write a haiku.", "Explain DNS."] * 3
    assert battles["judge"].unique().tolist() == ["weighted_alpaca_eval_gpt4_turbo"]
    assert battles["source"].unique().tolist() == ["alpaca_eval/koala"]
    assert battles["preference"].tolist() == [2.0, 1.0, 1.5, 0.0, 1.2, 1.9]
    assert battles["len_b"].tolist() == [200, 201, 202, 203, 204, 205]

    strict = import_alpaca_eval(tmp_path / "ae", soft_preferences="tie")
    assert strict["winner"].tolist() == ["model_b", "model_a", "tie", "tie", "tie", "tie"]


def test_preference_out_of_range() -> None:
    with pytest.raises(FormatError, match="preference must be 0 or in"):
        preference_to_winner(pd.Series([1.0, 2.5]))


def test_arena_bench_gold_and_battles(tmp_path: Path) -> None:
    folder = write_arena_bench(tmp_path / "ab")
    gold = import_data("arena_bench", folder, tmp_path / "g.parquet")
    assert len(gold) == 5  # the unscored answer is dropped
    scores = {(r.prompt_id, r.model): r.score for r in gold.itertuples()}
    assert scores == pytest.approx(
        {
            ("q1", "model-a"): 1.0,
            ("q1", "model-b"): 0.0,
            ("q1", "model-c"): 1.0,
            ("q2", "model-a"): 1 / 3,
            ("q2", "model-b"): 2 / 3,
        }
    )
    assert _row(gold, prompt_id="q2", model="model-b")["output_tokens"] == 200.0
    assert _row(gold, prompt_id="q2", model="model-b")["prompt"] == "Sort a list."
    assert gold["category"].unique().tolist() == ["arena-bench-v1"]

    battles = import_data("arena_bench_battles", folder, tmp_path / "b.parquet")
    got = {(r.prompt_id, r.model_a, r.model_b): r.winner for r in battles.itertuples()}
    assert got == {
        ("q1", "model-a", "model-b"): "model_a",
        ("q1", "model-a", "model-c"): "tie",
        ("q1", "model-b", "model-c"): "model_b",
        ("q2", "model-a", "model-b"): "model_b",
    }
    assert battles["judge"].unique().tolist() == ["gpt-4"]
    assert arena_battles(gold).columns.tolist()[:4] == ["prompt", "model_a", "model_b", "winner"]


def test_judgebench(tmp_path: Path) -> None:
    out = tmp_path / "verdicts.csv"
    verdicts = import_data("judgebench", write_judgebench(tmp_path / "jb"), out)
    _assert_reloads(verdicts, out, load_verdicts)
    assert len(verdicts) == 4  # only the judged file contributes rows
    by_pair = verdicts.set_index("pair_id")
    assert by_pair["verdict"].to_dict() == {"p1": "A>B", "p2": "tie", "p3": "A>B", "p4": "A>B"}
    assert by_pair["correct"].to_dict() == {"p1": True, "p2": False, "p3": True, "p4": False}
    assert by_pair["consistent"].to_dict() == {"p1": True, "p2": False, "p3": False, "p4": False}
    assert by_pair.loc["p4", "decision_2"] == "A>B"  # flipped back from the swapped trial
    assert by_pair["original_id"].tolist()[0] == 70 and pd.isna(by_pair.loc["p2", "original_id"])
    assert by_pair["judge"].unique().tolist() == ["judge-1"]
    assert by_pair.loc["p2", "source"] == "livebench-reasoning"


def test_prices_from_csv(tmp_path: Path) -> None:
    prices = prices_from_csv(write_prices(tmp_path / "prices.csv"))
    assert prices == {
        "gpt-4o-2024-05-13": (5.0, 15.0),
        "claude-3-haiku-20240307": (0.25, 1.25),
    }


# ---------------------------------------------------------------- malformed inputs


def test_unknown_format_lists_known(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="unknown format 'lmsys'") as err:
        import_data("lmsys", tmp_path, tmp_path / "x.parquet")
    for name in IMPORTERS:
        assert name in str(err.value)
    assert {"arena_bench", "arena_bench_battles"} <= set(IMPORTERS)


def test_wrong_folder_says_what_was_expected(tmp_path: Path) -> None:
    folder = write_routellm(tmp_path / "mmlu")
    with pytest.raises(FormatError, match=r"questions\.parquet.*found mmlu_anatomy\.csv"):
        import_data("mmlu_pro", folder, tmp_path / "x.parquet")
    with pytest.raises(FormatError, match=r"mmlu_<subject>\.csv.*found an empty folder"):
        (tmp_path / "empty").mkdir()
        import_data("routellm", tmp_path / "empty", tmp_path / "x.parquet")
    with pytest.raises(FormatError, match="does not exist"):
        import_data("routerbench", tmp_path / "nope", tmp_path / "x.parquet")
    with pytest.raises(FormatError, match="'judgments'"):
        import_data("judgebench", folder, tmp_path / "x.parquet")


def test_missing_column_is_named(tmp_path: Path) -> None:
    folder = write_routerbench(tmp_path / "rb")
    csv = folder / "mbpp_test.csv"
    pd.read_csv(csv).drop(columns=["eval_name"]).to_csv(csv, index=False)
    with pytest.raises(FormatError, match=r"mbpp_test\.csv lacks column\(s\) \['eval_name'\]"):
        import_data("routerbench", folder, tmp_path / "x.parquet")

    ab = write_arena_bench(tmp_path / "ab")
    pd.read_parquet(ab / "judge_scores.parquet").rename(columns={"score": "rating"}).to_parquet(
        ab / "judge_scores.parquet"
    )
    with pytest.raises(FormatError, match=r"lacks column\(s\) \['score'\]"):
        import_data("arena_bench", ab, tmp_path / "x.parquet")


def test_bad_values_are_reported(tmp_path: Path) -> None:
    folder = write_routellm(tmp_path / "mmlu")
    csv = folder / "mmlu_anatomy.csv"
    pd.read_csv(csv).assign(**{GPT4: ["yes", "no"]}).to_csv(csv, index=False)
    with pytest.raises(FormatError, match="should hold True/False"):
        import_data("routellm", folder, tmp_path / "x.parquet")

    ab = write_arena_bench(tmp_path / "ab")
    scores = pd.read_parquet(ab / "judge_scores.parquet")
    scores.loc[0, "score"] = 11.0
    scores.to_parquet(ab / "judge_scores.parquet")
    with pytest.raises(FormatError, match=r"1\.\.10; found 11\.0"):
        import_data("arena_bench", ab, tmp_path / "x.parquet")


# ---------------------------------------------------------------- real published data


def _shared(folder: str) -> Path:
    path = SHARED_DATA / folder
    if not path.is_dir():
        pytest.skip(f"shared data not available at {path}")
    return path


@pytest.mark.shared_data
def test_real_routellm(tmp_path: Path) -> None:
    gold = import_data("routellm", _shared("routellm_mmlu"), tmp_path / "g.parquet")
    # 14,042 published rows minus the 5 that RouteLLM found in its training data.
    assert gold["prompt_id"].nunique() == 14_037
    acc = gold.groupby("model")["score"].mean()
    assert acc[MIXTRAL] == pytest.approx(0.681, abs=0.002)
    assert acc[GPT4] == pytest.approx(0.806, abs=0.002)
    assert gold["category"].nunique() == 57
    assert gold_matrix(gold, validate=False).scores.shape == (14_037, 2)


@pytest.mark.shared_data
def test_real_routerbench(tmp_path: Path) -> None:
    gold = import_data("routerbench", _shared("routerbench_subset"), tmp_path / "g.parquet")
    m = gold_matrix(gold, validate=False)
    assert m.n_models == 11
    assert m.n_prompts == 3_164  # 3,178 rows, 14 of them half-rows of a split ARC question
    assert m.cost_usd is not None and (m.cost_usd > 0).all()
    assert set(gold["category"]) == {"arc-challenge", "mbpp", "winogrande"}
    assert m.split is not None and set(m.split) == {"train", "test"}
    assert gold.groupby("model")["score"].mean()[GPT4] == pytest.approx(0.88, abs=0.01)


@pytest.mark.shared_data
def test_real_mmlu_pro(tmp_path: Path) -> None:
    gold = import_data("mmlu_pro", _shared("mmlu_pro"), tmp_path / "g.parquet")
    assert len(gold) == 383_274
    assert gold["model"].nunique() == 32
    assert gold["prompt_id"].nunique() == 12_032
    assert gold["category"].nunique() == 14
    acc = gold.groupby("model")["score"].mean()
    assert acc["gpt-4o-2024-05-13"] == pytest.approx(0.72, abs=0.01)
    assert acc["Llama-2-7b-hf"] == pytest.approx(0.18, abs=0.01)
    assert gold["output_tokens"].notna().any() and (gold["output_tokens"].dropna() >= 0).all()


@pytest.mark.shared_data
def test_real_alpaca_eval(tmp_path: Path) -> None:
    battles = import_data("alpaca_eval", _shared("alpaca_eval"), tmp_path / "b.parquet")
    assert 100_000 < len(battles) <= 107_055
    assert battles["prompt_id"].nunique() == 805
    assert set(battles["model_a"]) == {"gpt4_1106_preview", "text_davinci_003"}
    assert set(battles["winner"]) == {"model_a", "model_b", "tie"}


@pytest.mark.shared_data
def test_real_arena_bench(tmp_path: Path) -> None:
    folder = _shared("arena_bench_v1")
    gold = import_data("arena_bench", folder, tmp_path / "g.parquet")
    assert gold["prompt_id"].nunique() == 300 and gold["model"].nunique() == 14
    acc = gold.groupby("model")["score"].mean()
    assert acc.idxmax() in {"gpt-4-1106-preview", "gpt-4-0314"}
    battles = import_data("arena_bench_battles", folder, tmp_path / "b.parquet")
    assert len(battles) > 25_000 and battles["winner"].value_counts()["tie"] > 0


@pytest.mark.shared_data
def test_real_judgebench(tmp_path: Path) -> None:
    verdicts = import_data("judgebench", _shared("judgebench"), tmp_path / "v.parquet")
    assert verdicts["judge"].nunique() == 7  # 2 LLM judges + 5 reward models
    assert len(verdicts) == 270 + 6 * 350
    acc = verdicts.groupby("judge")["correct"].mean()
    assert 0.5 < acc["o1-mini-2024-09-12"] < 0.8
    mmlu = verdicts[verdicts["source"].str.startswith("mmlu-pro")]
    assert mmlu["original_id"].notna().all() and mmlu["pair_id"].nunique() == 2 * 154


@pytest.mark.shared_data
def test_real_prices() -> None:
    prices = prices_from_csv(_shared("prices") / "price_table_curated.csv")
    assert prices["gpt-4-1106-preview"] == (10.0, 30.0)
    assert all(i >= 0 and o >= 0 for i, o in prices.values())
