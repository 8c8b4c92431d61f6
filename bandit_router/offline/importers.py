"""Importers that turn published routing data into the project's offline formats.

Each importer reads one published layout (a folder, or one file of it) and returns a validated
table in one of the formats of :mod:`bandit_router.offline.formats`; :func:`import_data` also
writes it. The layouts are those of the copies described in the shared data README
(RouteLLM MMLU responses, RouterBench via RouterDC, MMLU-Pro, AlpacaEval, arena-bench v1,
JudgeBench).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import string
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from bandit_router.offline.formats import (
    LABELS,
    FormatError,
    table_suffix,
    validate_battles,
    validate_gold,
    validate_verdicts,
    write_table,
)

logger = logging.getLogger(__name__)

Importer = Callable[[Path], pd.DataFrame]

ROUTELLM_CONTAMINATED = "mmlu_contaminated_prompts.jsonl"
MMLU_PRO_QUESTIONS = "questions.parquet"
MMLU_PRO_CORRECTNESS = "correctness_long.parquet"
ALPACA_ANNOTATIONS = "annotations_compact.parquet"
ALPACA_INSTRUCTIONS = "instructions.parquet"
ARENA_QUESTIONS = "question.jsonl"
ARENA_SCORES = "judge_scores.parquet"
ARENA_LENGTHS = "answer_lengths.parquet"
# The README of the arena-bench copy says the 1-10 scores are GPT-4 gradings.
ARENA_JUDGE = "gpt-4"
# A rough, model-agnostic characters-per-token ratio for English text; good enough to turn
# published answer lengths into token counts for cost estimates, not for billing.
CHARS_PER_TOKEN = 4.0


# ---------------------------------------------------------------- shared helpers


def _sha16(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _listing(path: Path, limit: int = 8) -> str:
    if path.is_file():
        return f"the file {path.name}"
    if not path.is_dir():
        return "nothing (path does not exist)"
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return "an empty folder"
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _mismatch(fmt: str, path: Path, expected: str) -> FormatError:
    return FormatError(f"{fmt}: {path} does not look like {expected}; found {_listing(path)}")


def _require(df: pd.DataFrame, columns: Sequence[str], fmt: str, where: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FormatError(
            f"{fmt}: {where.name} lacks column(s) {missing}; found {list(df.columns)}"
        )


def _folder_file(path: Path, name: str, fmt: str, expected: str) -> Path:
    """``path/name`` when ``path`` is a folder, or ``path`` itself when it is that file."""
    if path.is_file() and path.name == name:
        return path
    folder = path if path.is_dir() else path.parent
    candidate = folder / name
    if not candidate.is_file():
        raise _mismatch(fmt, path, expected)
    return candidate


def _gold_sorted(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of one prompt next to each other: parquet then compresses the repeated prompt text."""
    order = pd.factorize(df["prompt_id"], sort=False)[0]
    return df.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


# ---------------------------------------------------------------- RouteLLM MMLU


def _routellm_files(path: Path) -> list[Path]:
    expected = "RouteLLM MMLU responses (a folder of mmlu_<subject>.csv files, or one of them)"
    if path.is_file():
        if not (path.name.startswith("mmlu_") and path.suffix == ".csv"):
            raise _mismatch("routellm", path, expected)
        return [path]
    files = sorted(path.glob("mmlu_*.csv")) if path.is_dir() else []
    if not files:
        raise _mismatch("routellm", path, expected)
    return files


def _routellm_subject(csv_path: Path) -> pd.DataFrame:
    wide = pd.read_csv(csv_path, dtype={"prompt": str}, keep_default_na=False)
    _require(wide, ["prompt"], "routellm", csv_path)
    models = [c for c in wide.columns if c != "prompt"]
    if not models:
        raise FormatError(f"routellm: {csv_path.name} has no model columns next to 'prompt'")
    for model in models:
        if wide[model].dtype != bool:
            raise FormatError(
                f"routellm: {csv_path.name} column {model!r} should hold True/False, "
                f"found dtype {wide[model].dtype}"
            )
    subject = csv_path.stem.removeprefix("mmlu_")
    # Some subjects repeat a question verbatim (with different sampled answers), so the text
    # alone is not a unique id; the subject and the repeat number make it one, and stay the
    # same whether the folder or a single file is imported.
    base = wide["prompt"].map(lambda p: _sha16(f"{subject}\n{p}"))
    repeat = wide.groupby("prompt", sort=False).cumcount()
    wide["prompt_id"] = base.where(repeat == 0, base + "-" + repeat.astype(str))
    wide["category"] = subject
    long = wide.melt(
        id_vars=["prompt_id", "prompt", "category"], var_name="model", value_name="score"
    )
    long["score"] = long["score"].astype(float)
    return long


def _routellm_contaminated(folder: Path) -> set[str]:
    path = folder / ROUTELLM_CONTAMINATED
    if not path.is_file():
        return set()
    table = pd.read_json(path, lines=True, dtype=False)
    # RouteLLM's own MMLU benchmark drops rows whose prompt equals an ``eval_prompt`` here;
    # ``train_prompt`` is the near-duplicate training text that was found, not an MMLU row.
    _require(table, ["eval_prompt"], "routellm", path)
    return set(table["eval_prompt"].dropna().astype(str))


def import_routellm(path: Path) -> pd.DataFrame:
    """RouteLLM ``evals/mmlu/responses`` -> gold table (category = MMLU subject).

    Prompts listed in ``mmlu_contaminated_prompts.jsonl`` (next to the CSVs) are excluded, as
    RouteLLM's own evaluation does.
    """
    files = _routellm_files(path)
    gold = pd.concat([_routellm_subject(f) for f in files], ignore_index=True)
    contaminated = _routellm_contaminated(files[0].parent)
    if contaminated:
        dropped = gold["prompt"].isin(contaminated)
        n_prompts = gold.loc[dropped, "prompt_id"].nunique()
        logger.info("routellm: excluded %d contaminated prompt(s)", n_prompts)
        gold = gold[~dropped]
    return validate_gold(_gold_sorted(gold))


# ---------------------------------------------------------------- RouterBench (RouterDC copy)


def _routerbench_files(path: Path) -> list[Path]:
    expected = "RouterBench CSVs named <task>_train.csv / <task>_test.csv (or a folder of them)"
    if path.is_file():
        candidates = [path]
    elif path.is_dir():
        candidates = sorted(path.glob("*.csv"))
    else:
        candidates = []
    files = [f for f in candidates if f.stem.endswith(("_train", "_test")) and f.suffix == ".csv"]
    if not files or len(files) != len(candidates):
        raise _mismatch("routerbench", path, expected)
    return files


def _join_turns(turns: Iterable[Any]) -> str:
    """Join a RouterBench prompt list, collapsing back-to-back repeats of the same text.

    A few ARC rows store the same question twice (the gpt-3.5 copy of the row); keeping both
    would double the prompt.
    """
    kept: list[str] = []
    for turn in turns:
        text = str(turn)
        if not kept or kept[-1] != text:
            kept.append(text)
    return "\n\n".join(kept)


def _routerbench_prompt(raw: str, where: str) -> str:
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError) as exc:
        raise FormatError(f"routerbench: {where}: prompt is not a Python list literal") from exc
    if isinstance(value, str):
        return value
    if not isinstance(value, list | tuple):
        raise FormatError(f"routerbench: {where}: prompt parses to {type(value).__name__}")
    return _join_turns(value)


def _routerbench_file(csv_path: Path) -> tuple[pd.DataFrame, list[str]]:
    wide = pd.read_csv(csv_path, dtype={"prompt": str, "sample_id": str, "eval_name": str})
    _require(wide, ["sample_id", "prompt", "eval_name"], "routerbench", csv_path)
    models = [c for c in wide.columns if "|" not in c and f"{c}|total_cost" in wide.columns]
    if not models:
        raise FormatError(
            f"routerbench: {csv_path.name} has no '<model>' + '<model>|total_cost' column pairs"
        )
    wide["prompt"] = [
        _routerbench_prompt(raw, f"{csv_path.name} row {i}") for i, raw in enumerate(wide["prompt"])
    ]
    wide["split"] = "train" if csv_path.stem.endswith("_train") else "test"
    return wide, models


def import_routerbench(path: Path) -> pd.DataFrame:
    """RouterBench zero-shot CSVs -> gold table with per-query ``cost_usd``.

    ``prompt_id`` is RouterBench's ``sample_id``; category = ``eval_name``; split from the file
    name. RouterBench stores a few ARC questions as two rows, one holding only gpt-3.5's result;
    they are merged per sample_id, taking prompt/split from the row with the most models.
    """
    loaded = [_routerbench_file(f) for f in _routerbench_files(path)]
    wide = pd.concat([w for w, _ in loaded], ignore_index=True)
    models = list(dict.fromkeys(m for _, ms in loaded for m in ms))

    # Most complete row first, so it wins both the per-prompt fields and any repeated cell.
    n_scored = wide[models].notna().sum(axis=1)
    wide = wide.iloc[np.argsort(-n_scored.to_numpy(), kind="stable")]
    best = wide.drop_duplicates("sample_id").sort_index()
    n_merged = len(wide) - len(best)
    if n_merged:
        logger.info("routerbench: merged %d partial row(s) into their sample_id", n_merged)

    parts = [
        pd.DataFrame(
            {
                "prompt_id": wide["sample_id"],
                "model": model,
                "score": wide[model],
                "cost_usd": wide[f"{model}|total_cost"],
            }
        )
        for model in models
    ]
    cells = pd.concat(parts).dropna(subset=["score"]).drop_duplicates(["prompt_id", "model"])
    per_prompt = best[["sample_id", "prompt", "eval_name", "split"]].rename(
        columns={"sample_id": "prompt_id", "eval_name": "category"}
    )
    gold = per_prompt.merge(cells, on="prompt_id", how="inner")
    columns = ["prompt_id", "prompt", "model", "score", "cost_usd", "category", "split"]
    return validate_gold(gold[columns])


# ---------------------------------------------------------------- MMLU-Pro


def _options_list(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [str(o) for o in json.loads(raw)]
    return [str(o) for o in raw]


def _mmlu_pro_prompts(questions: pd.DataFrame) -> pd.Series:
    """Question text plus lettered options, as MMLU-Pro's own prompts lay them out."""
    letters = string.ascii_uppercase
    texts = []
    for question, raw in zip(questions["question"], questions["options"], strict=True):
        options = _options_list(raw)
        lines = [f"{letters[i]}. {option}" for i, option in enumerate(options)]
        texts.append(f"{question}\nOptions:\n" + "\n".join(lines))
    return pd.Series(texts, index=questions["question_id"].to_numpy())


def _mmlu_pro_model_names(models: pd.Series) -> pd.Series:
    # The compacted copy tags three models with the results folder they came from, e.g.
    # "gpt-4o-2024-05-13(dir gpt4o)"; the tag is provenance, not part of the model's name.
    return models.str.replace(r"\s*\(dir [^)]*\)\s*$", "", regex=True)


def _mmlu_pro_output_tokens(correctness: pd.DataFrame) -> pd.Series:
    # output_tokens ~= output_chars / 4 (CHARS_PER_TOKEN): a rough English average. Most
    # models in the copy have output_chars == 0 on every row because their outputs were not
    # published; for those the length is unknown (NaN), not zero.
    chars = correctness["output_chars"].astype(float)
    recorded = chars.groupby(correctness["model"]).transform("max") > 0
    return (chars / CHARS_PER_TOKEN).where(recorded)


def import_mmlu_pro(path: Path) -> pd.DataFrame:
    """MMLU-Pro questions + per-model correctness -> gold table (no cost; prices come later)."""
    expected = f"an MMLU-Pro folder with {MMLU_PRO_QUESTIONS} and {MMLU_PRO_CORRECTNESS}"
    q_path = _folder_file(path, MMLU_PRO_QUESTIONS, "mmlu_pro", expected)
    c_path = _folder_file(path, MMLU_PRO_CORRECTNESS, "mmlu_pro", expected)
    questions = pd.read_parquet(q_path)
    _require(questions, ["question_id", "question", "options", "category"], "mmlu_pro", q_path)
    correctness = pd.read_parquet(c_path)
    _require(correctness, ["question_id", "model", "correct", "output_chars"], "mmlu_pro", c_path)

    known = correctness["question_id"].isin(questions["question_id"])
    if not known.all():
        logger.warning("mmlu_pro: dropped %d rows of unknown question_id", int((~known).sum()))
        correctness = correctness[known]
    correctness = correctness.sort_values(["question_id", "model"], kind="stable")

    prompts = _mmlu_pro_prompts(questions)
    category = pd.Series(questions["category"].to_numpy(), index=questions["question_id"])
    qid = correctness["question_id"]
    gold = pd.DataFrame(
        {
            "prompt_id": qid.astype(str).to_numpy(),
            "prompt": qid.map(prompts).to_numpy(),
            "model": _mmlu_pro_model_names(correctness["model"]).to_numpy(),
            "score": correctness["correct"].astype(float).to_numpy(),
            "output_tokens": _mmlu_pro_output_tokens(correctness).to_numpy(),
            "category": qid.map(category).to_numpy(),
        }
    )
    return validate_gold(gold)


# ---------------------------------------------------------------- AlpacaEval


def preference_to_winner(
    preference: pd.Series, soft_preferences: Literal["round", "tie"] = "round"
) -> pd.Series:
    """Map AlpacaEval preferences to battle winners (model_a = generator_1).

    1 -> model_a, 2 -> model_b, 1.5 and 0 (AlpacaEval's legacy draw code) -> tie. Values strictly
    between come from the logprob-weighted annotator and are P(output 2 better) + 1: "round"
    (default) sends them to the nearer side, as AlpacaEval's own discrete win rate does; "tie"
    makes every one of them a tie.
    """
    p = preference.astype(float)
    valid = (p == 0) | ((p >= 1) & (p <= 2))
    if not valid.all():
        bad = p[~valid]
        raise FormatError(
            f"alpaca_eval: preference must be 0 or in [1, 2]; {len(bad)} row(s) are not, "
            f"first {float(bad.iloc[0])!r}"
        )
    tie = (p == 0) | (p == 1.5)
    if soft_preferences == "round":
        a_wins, b_wins = (p < 1.5) & ~tie, (p > 1.5) & ~tie
    elif soft_preferences == "tie":
        a_wins, b_wins = p == 1, p == 2
    else:
        raise ValueError(f"soft_preferences must be 'round' or 'tie', not {soft_preferences!r}")
    winner = np.select([a_wins.to_numpy(), b_wins.to_numpy()], ["model_a", "model_b"], "tie")
    return pd.Series(winner, index=preference.index)


def import_alpaca_eval(
    path: Path, soft_preferences: Literal["round", "tie"] = "round"
) -> pd.DataFrame:
    """AlpacaEval annotations -> battles (judge = annotator), keeping the raw preference.

    Drops verdicts without a preference, a baseline judged against itself, and exact repeats of
    (instruction, generators, annotator) that the compacted copy holds twice.
    """
    expected = f"an AlpacaEval folder with {ALPACA_ANNOTATIONS} and {ALPACA_INSTRUCTIONS}"
    a_path = _folder_file(path, ALPACA_ANNOTATIONS, "alpaca_eval", expected)
    i_path = _folder_file(a_path.parent, ALPACA_INSTRUCTIONS, "alpaca_eval", expected)
    ann = pd.read_parquet(a_path)
    key = ["instruction_idx", "generator_1", "generator_2", "annotator"]
    _require(ann, [*key, "preference"], "alpaca_eval", a_path)
    instructions = pd.read_parquet(i_path)
    _require(instructions, ["instruction_idx", "instruction"], "alpaca_eval", i_path)

    n_rows = len(ann)
    ann = ann[ann["preference"].notna()]
    ann = ann[ann["generator_1"] != ann["generator_2"]]
    ann = ann.drop_duplicates(key)
    if len(ann) < n_rows:
        logger.info(
            "alpaca_eval: kept %d of %d annotations (no preference / self-battle / repeat)",
            len(ann),
            n_rows,
        )

    text = pd.Series(instructions["instruction"].to_numpy(), index=instructions["instruction_idx"])
    unknown = ~ann["instruction_idx"].isin(text.index)
    if unknown.any():
        first = ann.loc[unknown, "instruction_idx"].iloc[0]
        raise FormatError(
            f"alpaca_eval: {int(unknown.sum())} annotation(s) refer to instruction_idx missing "
            f"from {i_path.name}, first {first!r}"
        )
    source = "alpaca_eval"
    if "dataset" in ann.columns:
        source = ("alpaca_eval/" + ann["dataset"].astype(str)).to_numpy()
    battles = pd.DataFrame(
        {
            "prompt": ann["instruction_idx"].map(text).to_numpy(),
            "model_a": ann["generator_1"].to_numpy(),
            "model_b": ann["generator_2"].to_numpy(),
            "winner": preference_to_winner(ann["preference"], soft_preferences).to_numpy(),
            "judge": ann["annotator"].to_numpy(),
            "source": source,
            "prompt_id": ann["instruction_idx"].astype(str).to_numpy(),
            "preference": ann["preference"].astype(float).to_numpy(),
        }
    )
    # Output lengths matter for studying the judge's length bias, so they travel along.
    for src, dst in (("len_output_1", "len_a"), ("len_output_2", "len_b")):
        if src in ann.columns:
            battles[dst] = ann[src].to_numpy()
    return validate_battles(battles)


# ---------------------------------------------------------------- arena-bench v1


def _arena_prompt(turns: Any) -> str:
    # Later arena-hard files store turns as {"content": ...} dicts; v1 stores plain strings.
    parts = [t["content"] if isinstance(t, dict) else str(t) for t in turns]
    return "\n\n".join(parts)


def import_arena_bench(path: Path) -> pd.DataFrame:
    """arena-bench v1 -> gold table with score = (judge score - 1) / 9.

    ``output_tokens`` is answer_chars / 4 when answer_lengths.parquet is present.
    """
    expected = f"an arena-bench folder with {ARENA_QUESTIONS} and {ARENA_SCORES}"
    q_path = _folder_file(path, ARENA_QUESTIONS, "arena_bench", expected)
    s_path = _folder_file(path, ARENA_SCORES, "arena_bench", expected)
    questions = pd.read_json(q_path, lines=True, dtype=False)
    _require(questions, ["question_id", "turns"], "arena_bench", q_path)
    scores = pd.read_parquet(s_path)
    _require(scores, ["question_id", "model", "score"], "arena_bench", s_path)

    n_missing = int(scores["score"].isna().sum())
    if n_missing:
        logger.info("arena_bench: dropped %d unscored (question, model) pair(s)", n_missing)
        scores = scores.dropna(subset=["score"])
    out_of_range = (scores["score"] < 1) | (scores["score"] > 10)
    if out_of_range.any():
        raise FormatError(
            f"arena_bench: {s_path.name} scores must lie in 1..10; "
            f"found {float(scores.loc[out_of_range, 'score'].iloc[0])!r}"
        )

    questions = questions.assign(prompt=questions["turns"].map(_arena_prompt))
    if "category" not in questions.columns:
        questions["category"] = "arena-bench"
    per_q = questions[["question_id", "prompt", "category"]]
    unknown = ~scores["question_id"].isin(per_q["question_id"])
    if unknown.any():
        raise FormatError(
            f"arena_bench: {int(unknown.sum())} score(s) for question_id missing from "
            f"{q_path.name}, first {scores.loc[unknown, 'question_id'].iloc[0]!r}"
        )
    gold = scores[["question_id", "model", "score"]].merge(per_q, on="question_id", how="left")
    gold["score"] = (gold["score"].astype(float) - 1.0) / 9.0
    gold = gold.rename(columns={"question_id": "prompt_id"})

    lengths_path = s_path.parent / ARENA_LENGTHS
    if lengths_path.is_file():
        lengths = pd.read_parquet(lengths_path)
        _require(lengths, ["question_id", "model", "answer_chars"], "arena_bench", lengths_path)
        lengths = lengths.rename(columns={"question_id": "prompt_id"})
        lengths["output_tokens"] = lengths["answer_chars"].astype(float) / CHARS_PER_TOKEN
        gold = gold.merge(
            lengths[["prompt_id", "model", "output_tokens"]], on=["prompt_id", "model"], how="left"
        )
    return validate_gold(_gold_sorted(gold))


def arena_battles(
    gold: pd.DataFrame, judge: str | None = None, source: str | None = None
) -> pd.DataFrame:
    """Battles between every pair of models that answered the same prompt in a gold table.

    The higher score wins; equal scores tie. Each unordered pair appears once, with model_a the
    alphabetically smaller name, so the orientation carries no information.
    """
    cells = gold[["prompt_id", "prompt", "model", "score"]]
    pairs = cells.merge(
        cells[["prompt_id", "model", "score"]], on="prompt_id", suffixes=("_a", "_b")
    )
    pairs = pairs[pairs["model_a"] < pairs["model_b"]].reset_index(drop=True)
    a, b = pairs["score_a"].to_numpy(), pairs["score_b"].to_numpy()
    pairs["winner"] = np.select([a > b, a < b], ["model_a", "model_b"], "tie")
    if judge is not None:
        pairs["judge"] = judge
    if source is not None:
        pairs["source"] = source
    columns = ["prompt", "model_a", "model_b", "winner"]
    columns += [c for c in ("judge", "source") if c in pairs.columns]
    columns += ["prompt_id", "score_a", "score_b"]
    return validate_battles(pairs[columns])


def import_arena_bench_battles(path: Path) -> pd.DataFrame:
    """arena-bench v1 -> battles derived from the per-answer judge scores."""
    return arena_battles(import_arena_bench(path), judge=ARENA_JUDGE, source="arena_bench")


# ---------------------------------------------------------------- JudgeBench


def _flip(decision: str | None) -> str | None:
    return {"A>B": "B>A", "B>A": "A>B"}.get(decision, decision) if decision else decision


def _combined_verdict(first: str | None, second: str | None) -> str:
    """One verdict from the two trials (the second already flipped back to the A/B order).

    Same rule as JudgeBench's metrics: each trial votes for a side; more votes for a side wins,
    anything else (a split, "A=B", a failed parse) is a tie.
    """
    votes = sum(1 if d == "A>B" else -1 if d == "B>A" else 0 for d in (first, second))
    return "A>B" if votes > 0 else "B>A" if votes < 0 else "tie"


def _judgebench_rows(jsonl: Path) -> list[dict[str, Any]]:
    rows = []
    with jsonl.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            pair = json.loads(line)
            judgments = pair.get("judgments")
            if not judgments:
                continue
            missing = [k for k in ("pair_id", "source", "label") if k not in pair]
            if missing:
                raise FormatError(f"judgebench: {jsonl.name} line {line_no} lacks {missing}")
            rows.append(_judgebench_row(pair, judgments, jsonl))
    return rows


def _judge_model(judgments: list[Any], jsonl: Path) -> str:
    for j in judgments:
        if j and isinstance(j.get("judgment"), dict) and j["judgment"].get("judge_model"):
            return str(j["judgment"]["judge_model"])
    # Fall back on the file name, which JudgeBench writes as ...,judge_model=<name>.jsonl.
    for part in jsonl.stem.split(","):
        if part.startswith("judge_model="):
            return part.removeprefix("judge_model=")
    raise FormatError(f"judgebench: {jsonl.name}: cannot tell which judge made the judgments")


def _judgebench_row(pair: dict[str, Any], judgments: list[Any], jsonl: Path) -> dict[str, Any]:
    decisions = [j.get("decision") if j else None for j in judgments]
    first = decisions[0]
    # JudgeBench runs the second trial with the responses swapped, so its decision is in the
    # swapped order and must be flipped back before it can be compared with the label.
    second = _flip(decisions[1]) if len(decisions) > 1 else None
    if len(decisions) > 1:
        verdict = _combined_verdict(first, second)
    else:
        verdict = first if first in LABELS else "tie" if first == "A=B" else str(first)
    return {
        "pair_id": str(pair["pair_id"]),
        "source": str(pair["source"]),
        "label": pair["label"],
        "judge": _judge_model(judgments, jsonl),
        "verdict": verdict,
        "correct": verdict == pair["label"],
        "original_id": pair.get("original_id"),
        "judge_type": pair.get("judge_name"),
        "response_model": pair.get("response_model"),
        "decision_1": first,
        "decision_2": second,
        "consistent": len(decisions) > 1 and first == second and first in LABELS,
    }


def import_judgebench(path: Path) -> pd.DataFrame:
    """JudgeBench judged pairs -> verdicts table, one row per (pair, judge).

    Reads every .jsonl whose rows carry ``judgments`` (the plain response-pair files are
    skipped). ``original_id`` is the MMLU-Pro question_id for MMLU-Pro pairs, else missing.
    """
    expected = "JudgeBench .jsonl files whose rows carry 'judgments' (or a folder of them)"
    files = [path] if path.is_file() else sorted(path.glob("*.jsonl")) if path.is_dir() else []
    if not files or any(f.suffix != ".jsonl" for f in files):
        raise _mismatch("judgebench", path, expected)
    rows = [row for f in files for row in _judgebench_rows(f)]
    if not rows:
        raise _mismatch("judgebench", path, expected)
    verdicts = pd.DataFrame(rows)
    verdicts["original_id"] = pd.array(verdicts["original_id"], dtype="Int64")
    return validate_verdicts(verdicts)


# ---------------------------------------------------------------- prices


def prices_from_csv(path: str | Path) -> dict[str, tuple[float, float]]:
    """model -> (USD per 1M input tokens, USD per 1M output tokens); rows without a price skip."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"prices: {path} does not exist")
    table = pd.read_csv(path, dtype={"model": str})
    columns = ["model", "input_usd_per_1M", "output_usd_per_1M"]
    _require(table, columns, "prices", path)
    priced = table.dropna(subset=columns)
    if len(priced) < len(table):
        skipped = sorted(set(table["model"].dropna()) - set(priced["model"]))
        logger.info("prices: no price for %s", ", ".join(skipped) or "(rows without a model)")
    values = priced[columns[1:]].astype(float)
    if (values < 0).any().any():
        raise FormatError(f"prices: {path.name} has a negative price")
    return {
        str(m): (float(i), float(o))
        for m, i, o in zip(priced["model"], values.iloc[:, 0], values.iloc[:, 1], strict=True)
    }


# ---------------------------------------------------------------- entry point

IMPORTERS: dict[str, Importer] = {
    "routellm": import_routellm,
    "routerbench": import_routerbench,
    "mmlu_pro": import_mmlu_pro,
    "alpaca_eval": import_alpaca_eval,
    "arena_bench": import_arena_bench,
    "arena_bench_battles": import_arena_bench_battles,
    "judgebench": import_judgebench,
}


def import_data(fmt: str, path: str | Path, out: str | Path) -> pd.DataFrame:
    """Convert the published data at ``path`` (format ``fmt``) and write it to ``out``."""
    importer = IMPORTERS.get(fmt)
    if importer is None:
        raise FormatError(f"unknown format {fmt!r}; known formats: {', '.join(IMPORTERS)}")
    path, out = Path(path), Path(out)
    table_suffix(out)  # fail on a bad output name before the slow part
    if not path.exists():
        raise FormatError(f"{fmt}: {path} does not exist")
    table = importer(path)
    write_table(table, out)
    logger.info("%s: wrote %d rows to %s", fmt, len(table), out)
    return table
