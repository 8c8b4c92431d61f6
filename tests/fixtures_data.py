"""Writers of tiny copies of the published data layouts, for importer tests.

Each writer builds a few rows in the same layout as the real files (column names, dtypes,
quirks such as stringified prompt lists) under a folder the test owns, and returns the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd

MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
GPT4 = "gpt-4-1106-preview"

ANATOMY_PROMPTS = [
    "Which nerve supplies the tongue?\nA. vagus\nB. hypoglossal\nC. facial\nD. optic\nAnswer:",
    "The heart has how many chambers?\nA. 2\nB. 3\nC. 4\nD. 5\nAnswer:",
]
PHYSICS_REPEATED = "A 10 kg box slides.\nA. up\nB. down\nC. left\nD. right\nAnswer:"
PHYSICS_PROMPTS = [PHYSICS_REPEATED, "What is g?\nA. 9.8\nB. 1\nC. 0\nD. 3\nAnswer:"]
PHYSICS_PROMPTS.append(PHYSICS_REPEATED)
CONTAMINATED = ANATOMY_PROMPTS[1]


def write_routellm(folder: Path) -> Path:
    """Two subjects; college_physics repeats one question; one anatomy prompt is contaminated."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"prompt": ANATOMY_PROMPTS, MIXTRAL: [True, False], GPT4: [True, True]}).to_csv(
        folder / "mmlu_anatomy.csv", index=False
    )
    pd.DataFrame(
        {"prompt": PHYSICS_PROMPTS, MIXTRAL: [False, True, True], GPT4: [True, True, False]}
    ).to_csv(folder / "mmlu_college_physics.csv", index=False)
    contaminated = {
        "train_prompt": CONTAMINATED.replace("Answer:", "Output the Answer only:"),
        "eval_prompt": CONTAMINATED,
        "train_idx": 12,
        "eval_idx": 1,
    }
    (folder / "mmlu_contaminated_prompts.jsonl").write_text(json.dumps(contaminated) + "\n")
    return folder


ROUTERBENCH_MODELS = ["claude-v1", "gpt-3.5-turbo-1106", "mistralai/mixtral-8x7b-chat"]
Results = dict[str, tuple[float, float]]  # model -> (0/1 correct, total_cost USD)


class RouterBenchRow(NamedTuple):
    sample_id: str
    turns: list[str]
    eval_name: str
    results: Results  # models missing here have no result in this row (NaN in the CSV)


def _routerbench_frame(rows: list[RouterBenchRow]) -> pd.DataFrame:
    """Rows in RouterDC's routerbench_zs column layout (prompt = a stringified list)."""
    records = []
    for i, row in enumerate(rows):
        record: dict[str, object] = {
            "Unnamed: 0": 100 + i,
            "sample_id": row.sample_id,
            "prompt": str(row.turns),
            "eval_name": row.eval_name,
        }
        for model in ROUTERBENCH_MODELS:
            record[model] = row.results[model][0] if model in row.results else None
        for model in ROUTERBENCH_MODELS:
            record[f"{model}|model_response"] = str(["an answer"])
        for model in ROUTERBENCH_MODELS:
            record[f"{model}|total_cost"] = row.results[model][1] if model in row.results else None
        record["oracle_model_to_route_to"] = ROUTERBENCH_MODELS[0]
        records.append(record)
    return pd.DataFrame.from_records(records)


def write_routerbench(folder: Path) -> Path:
    """ARC train/test and an MBPP test file.

    ``arc-challenge.val.7`` is split like the real data: one train row holding only gpt-3.5's
    result (its prompt list repeats the question twice) and a test row holding the others.
    """
    folder.mkdir(parents=True, exist_ok=True)
    full: Results = {
        "claude-v1": (1.0, 0.003),
        "gpt-3.5-turbo-1106": (0.0, 0.0004),
        "mistralai/mixtral-8x7b-chat": (1.0, 0.0002),
    }
    arc = "arc-challenge"
    arc_q = "Which is a metal?\nA) wood\nB) iron\nAnswer:"
    arc_train = [
        RouterBenchRow("arc-challenge.val.1", ["Is ice cold?\nA) yes\nB) no"], arc, full),
        RouterBenchRow(
            "arc-challenge.val.7", [arc_q, arc_q], arc, {"gpt-3.5-turbo-1106": (1, 5e-4)}
        ),
    ]
    partial: Results = {"claude-v1": (0.0, 0.004), "mistralai/mixtral-8x7b-chat": (1.0, 1e-4)}
    arc_test = [RouterBenchRow("arc-challenge.val.7", [arc_q], arc, partial)]
    mbpp_q = "Write a python function to add 'a' and \"b\"."
    mbpp_test = [RouterBenchRow("mbpp.dev.3", [mbpp_q], "mbpp", full)]
    _routerbench_frame(arc_train).to_csv(folder / "arc_challenge_train.csv", index=False)
    _routerbench_frame(arc_test).to_csv(folder / "arc_challenge_test.csv", index=False)
    _routerbench_frame(mbpp_test).to_csv(folder / "mbpp_test.csv", index=False)
    return folder


def write_mmlu_pro(folder: Path) -> Path:
    """Two questions x three models; one model tagged '(dir x)', one without output lengths,
    and question 71 lacks model-c's answer."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "question_id": [70, 71],
            "question": ["What is 2+2?", "Capital of France?"],
            "options": [json.dumps(["3", "4", "5"]), json.dumps(["Paris", "Rome"])],
            "answer": ["B", "A"],
            "answer_index": [1, 0],
            "category": ["math", "other"],
            "src": ["ori_mmlu-math", "ori_mmlu-geo"],
        }
    ).to_parquet(folder / "questions.parquet", index=False)
    pd.DataFrame(
        {
            "question_id": [70, 70, 70, 71, 71],
            "model": ["model-a", "model-b(dir mb)", "model-c", "model-a", "model-b(dir mb)"],
            "pred": ["B", "A", None, "A", "A"],
            "correct": [1, 0, 0, 1, 1],
            "output_chars": [0, 400, 0, 0, 120],
            "source_file": ["a.zip", "b/x.json", "c.zip", "a.zip", "b/x.json"],
        }
    ).to_parquet(folder / "correctness_long.parquet", index=False)
    return folder


ALPACA_PREFERENCES = [2.0, 1.0, 1.5, 0.0, 1.2, 1.9, None]


def write_alpaca_eval(folder: Path) -> Path:
    """Seven verdicts with every kind of preference, plus a self-battle and a repeated row."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"instruction_idx": [0, 1], "instruction": ["Write a haiku.", "Explain DNS."]}
    ).to_parquet(folder / "instructions.parquet", index=False)
    n = len(ALPACA_PREFERENCES)
    rows = pd.DataFrame(
        {
            "instruction_idx": [i % 2 for i in range(n)],
            "dataset": ["koala"] * n,
            "generator_1": ["gpt4_1106_preview"] * n,
            "generator_2": [f"model-{i}" for i in range(n)],
            "annotator": ["weighted_alpaca_eval_gpt4_turbo"] * n,
            "annotator_dir": ["weighted_alpaca_eval_gpt4_turbo"] * n,
            "results_model_dir": [f"model-{i}" for i in range(n)],
            "preference": ALPACA_PREFERENCES,
            "len_output_1": [100 + i for i in range(n)],
            "len_output_2": [200 + i for i in range(n)],
            "price_per_example": [0.01] * n,
        }
    )
    self_battle = rows.iloc[[0]].assign(generator_2="gpt4_1106_preview")
    repeat = rows.iloc[[0]].assign(results_model_dir="elsewhere")
    pd.concat([rows, self_battle, repeat], ignore_index=True).to_parquet(
        folder / "annotations_compact.parquet", index=False
    )
    return folder


def write_arena_bench(folder: Path) -> Path:
    """Two questions x three models, with one unscored answer (q2, model-c)."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = [
        {"question_id": "q1", "category": "arena-bench-v1", "turns": ["Hi?"], "required_temp": 0},
        {"question_id": "q2", "category": "arena-bench-v1", "turns": ["Sort a list."]},
    ]
    (folder / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    pd.DataFrame(
        {
            "question_id": ["q1", "q1", "q1", "q2", "q2", "q2"],
            "model": ["model-a", "model-b", "model-c"] * 2,
            "score": [10.0, 1.0, 10.0, 4.0, 7.0, None],
        }
    ).to_parquet(folder / "judge_scores.parquet", index=False)
    pd.DataFrame(
        {
            "question_id": ["q1", "q1", "q1", "q2", "q2", "q2"],
            "model": ["model-a", "model-b", "model-c", "model-a", "model-b", "model-d"],
            "answer_chars": [40, 80, 120, 400, 800, 10],
        }
    ).to_parquet(folder / "answer_lengths.parquet", index=False)
    return folder


class JudgedPair(NamedTuple):
    pair_id: str
    original_id: int | None
    source: str
    label: str
    decisions: list[str | None]  # trial 1, then trial 2 with the responses swapped


# Trial 2 sees the responses swapped, so "B>A" there agrees with "A>B" in trial 1.
JUDGEBENCH_PAIRS = [
    JudgedPair("p1", 70, "mmlu-pro-math", "A>B", ["A>B", "B>A"]),  # consistent, right
    JudgedPair("p2", None, "livebench-reasoning", "B>A", ["A>B", "A>B"]),  # split -> tie
    JudgedPair("p3", None, "livecodebench", "A>B", ["A=B", "B>A"]),  # one vote for A, right
    JudgedPair("p4", 71, "mmlu-pro-other", "B>A", [None, "B>A"]),  # one vote for A, wrong
]


def _pair_record(pair: JudgedPair) -> dict[str, object]:
    return {
        "pair_id": pair.pair_id,
        "original_id": pair.original_id,
        "source": pair.source,
        "question": "Q?",
        "response_model": "gpt-4o",
        "response_A": "a",
        "response_B": "b",
        "label": pair.label,
    }


def _judged_record(pair: JudgedPair, judge: str) -> dict[str, object]:
    judgments = [
        {"judgment": {"judge_model": judge, "prompt": "", "response": ""}, "decision": d}
        for d in pair.decisions
    ]
    return _pair_record(pair) | {"judge_name": "arena_hard", "judgments": judgments}


def write_judgebench(folder: Path) -> Path:
    """A plain pair file (skipped by the importer) and one judged by a fake arena-hard judge."""
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / "dataset=judgebench,response_model=gpt-4o.jsonl"
    plain.write_text("".join(json.dumps(_pair_record(p)) + "\n" for p in JUDGEBENCH_PAIRS))
    judged_name = "dataset=judgebench,response_model=gpt-4o,judge_name=arena_hard,judge_model=j"
    rows = [_judged_record(p, "judge-1") for p in JUDGEBENCH_PAIRS]
    (folder / f"{judged_name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def write_prices(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "model,source,key,input_usd_per_1M,output_usd_per_1M\n"
        "gpt-4o-2024-05-13,tokencost,gpt-4o-2024-05-13,5.0,15.0\n"
        "claude-3-haiku-20240307,tokencost,claude-3-haiku-20240307,0.25,1.25\n"
        "mathstral-7b,,,,\n"
    )
    return path
