"""The project's offline table formats: gold scores, battles and judge verdicts.

All three are long tables, stored as .parquet, .csv or .jsonl (chosen by the file suffix).

gold      one row per (prompt, model): ``prompt_id``, ``prompt``, ``model``, ``score`` in [0, 1]
          (1 = correct); optional ``cost_usd``, ``input_tokens``, ``output_tokens``, ``category``,
          ``split`` ("train" | "test").
battles   one row per comparison: ``prompt``, ``model_a``, ``model_b``, ``winner``
          ("model_a" | "model_b" | "tie"); optional ``judge``, ``source``.
verdicts  one row per (response pair, judge) with a ground-truth label: ``pair_id``, ``source``,
          ``label`` ("A>B" | "B>A"), ``judge``, ``verdict``, ``correct`` (verdict == label);
          optional ``original_id``.

Extra columns are allowed and kept; validation puts the known columns first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bandit_router.config import UserError

logger = logging.getLogger(__name__)

GOLD_REQUIRED = ("prompt_id", "prompt", "model", "score")
GOLD_OPTIONAL = ("cost_usd", "input_tokens", "output_tokens", "category", "split")
BATTLES_REQUIRED = ("prompt", "model_a", "model_b", "winner")
BATTLES_OPTIONAL = ("judge", "source")
VERDICTS_REQUIRED = ("pair_id", "source", "label", "judge", "verdict", "correct")
VERDICTS_OPTIONAL = ("original_id",)

WINNERS = ("model_a", "model_b", "tie")
SPLITS = ("train", "test")
LABELS = ("A>B", "B>A")
TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")

# Read as text from CSV so ids such as "0012" keep their leading zeros and "NA" stays a prompt.
_TEXT_COLUMNS = (
    "prompt_id",
    "prompt",
    "model",
    "category",
    "split",
    "model_a",
    "model_b",
    "winner",
    "judge",
    "source",
    "pair_id",
    "label",
    "verdict",
)


class FormatError(UserError, ValueError):
    """A file or table does not match the format it was read as."""


# ---------------------------------------------------------------- reading and writing


def table_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise FormatError(
            f"{path}: unsupported table suffix {suffix or '(none)'!r}; "
            f"use one of {', '.join(TABLE_SUFFIXES)}"
        )
    return suffix


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a .parquet, .csv or .jsonl table."""
    path = Path(path)
    suffix = table_suffix(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(
            path,
            dtype={c: str for c in _TEXT_COLUMNS},
            keep_default_na=False,
            na_values=[""],
        )
    if path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_json(path, lines=True, dtype=False, convert_dates=False)


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as .parquet, .csv or .jsonl (by suffix), creating the parent folder."""
    path = Path(path)
    suffix = table_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True, force_ascii=False)


# ---------------------------------------------------------------- validation helpers


def _require_columns(df: pd.DataFrame, required: Sequence[str], kind: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise FormatError(
            f"{kind} table is missing column(s) {missing}; "
            f"required {list(required)}, found {list(df.columns)}"
        )


def _raise_on_bad(kind: str, column: str, bad: pd.Series, shown: pd.Series, why: str) -> None:
    """Raise naming the column, how many rows fail and the first failing row (0-based)."""
    flags = bad.to_numpy(dtype=bool)
    if not flags.any():
        return
    first = int(np.flatnonzero(flags)[0])
    value = shown.iloc[first]
    if isinstance(value, np.generic):  # show 1.5, not np.float64(1.5)
        value = value.item()
    raise FormatError(
        f"{kind} table: column {column!r} {why} in {int(flags.sum())} row(s); "
        f"first bad row {first}: {value!r}"
    )


def _text_column(df: pd.DataFrame, column: str, kind: str, allow_null: bool = False) -> pd.Series:
    raw = df[column]
    null = raw.isna()
    if not allow_null:
        _raise_on_bad(kind, column, null, raw, "is missing")
    text = raw.astype("str")  # missing values stay missing in pandas' str dtype
    # A whitespace-only prompt or model name is as useless as an empty one.
    blank = text.str.fullmatch(r"\s*").fillna(False) & ~null
    _raise_on_bad(kind, column, blank, raw, "is empty")
    return text


def _numeric_column(
    df: pd.DataFrame, column: str, kind: str, low: float, high: float, allow_null: bool
) -> pd.Series:
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    unparsable = values.isna() & raw.notna()
    _raise_on_bad(kind, column, unparsable, raw, "is not a number")
    if not allow_null:
        _raise_on_bad(kind, column, values.isna(), raw, "is missing")
    _raise_on_bad(
        kind, column, (values < low) | (values > high), raw, f"is outside [{low}, {high}]"
    )
    return values


def _allowed_values(
    df: pd.DataFrame, column: str, kind: str, allowed: Sequence[str], allow_null: bool = False
) -> pd.Series:
    raw = df[column]
    bad = ~raw.isin(list(allowed))
    if allow_null:
        bad &= raw.notna()
    _raise_on_bad(kind, column, bad, raw, f"is not one of {list(allowed)}")
    return raw.astype("str")


def _ordered(df: pd.DataFrame, required: Sequence[str], optional: Sequence[str]) -> pd.DataFrame:
    known = [c for c in (*required, *optional) if c in df.columns]
    return df[known + [c for c in df.columns if c not in known]]


# ---------------------------------------------------------------- validators


def validate_gold(df: pd.DataFrame) -> pd.DataFrame:
    """Check a gold table and return a copy with normalised dtypes.

    Raises FormatError on missing columns, empty prompts, scores outside [0, 1], negative costs
    or token counts, unknown splits, a (prompt_id, model) pair given twice, or one prompt_id
    used for two different prompt texts.
    """
    kind = "gold"
    _require_columns(df, GOLD_REQUIRED, kind)
    out = df.reset_index(drop=True).copy()
    out["prompt_id"] = _text_column(out, "prompt_id", kind)
    out["prompt"] = _text_column(out, "prompt", kind)
    out["model"] = _text_column(out, "model", kind)
    out["score"] = _numeric_column(out, "score", kind, 0.0, 1.0, allow_null=False)
    for column in ("cost_usd", "input_tokens", "output_tokens"):
        if column in out.columns:
            out[column] = _numeric_column(out, column, kind, 0.0, np.inf, allow_null=True)
    if "split" in out.columns:
        out["split"] = _allowed_values(out, "split", kind, SPLITS, allow_null=True)
    if "category" in out.columns:
        out["category"] = _text_column(out, "category", kind, allow_null=True)

    dup = out.duplicated(["prompt_id", "model"])
    _raise_on_bad(
        kind, "prompt_id", dup, out["prompt_id"] + " / " + out["model"], "repeats a model"
    )
    texts = out[["prompt_id", "prompt"]].drop_duplicates()
    clash = texts["prompt_id"].duplicated()
    _raise_on_bad(kind, "prompt_id", clash, texts["prompt_id"], "names two different prompts")
    return _ordered(out, GOLD_REQUIRED, GOLD_OPTIONAL)


def validate_battles(df: pd.DataFrame) -> pd.DataFrame:
    """Check a battles table and return a copy with normalised dtypes."""
    kind = "battles"
    _require_columns(df, BATTLES_REQUIRED, kind)
    out = df.reset_index(drop=True).copy()
    for column in ("prompt", "model_a", "model_b"):
        out[column] = _text_column(out, column, kind)
    out["winner"] = _allowed_values(out, "winner", kind, WINNERS)
    same = out["model_a"] == out["model_b"]
    _raise_on_bad(kind, "model_b", same, out["model_b"], "equals model_a")
    for column in BATTLES_OPTIONAL:
        if column in out.columns:
            out[column] = _text_column(out, column, kind, allow_null=True)
    return _ordered(out, BATTLES_REQUIRED, BATTLES_OPTIONAL)


def validate_verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """Check a judge-verdicts table (JudgeBench style) and return a normalised copy."""
    kind = "verdicts"
    _require_columns(df, VERDICTS_REQUIRED, kind)
    out = df.reset_index(drop=True).copy()
    for column in ("pair_id", "source", "judge"):
        out[column] = _text_column(out, column, kind)
    out["label"] = _allowed_values(out, "label", kind, LABELS)
    out["verdict"] = out["verdict"].astype("str")
    correct = out["correct"]
    if correct.dtype != bool:
        _raise_on_bad(kind, "correct", ~correct.isin([True, False]), correct, "is not a boolean")
        correct = correct.astype(bool)
    out["correct"] = correct
    wrong = out["correct"] != (out["verdict"] == out["label"])
    _raise_on_bad(kind, "correct", wrong, out["correct"], "disagrees with verdict == label")
    dup = out.duplicated(["pair_id", "judge"])
    _raise_on_bad(kind, "pair_id", dup, out["pair_id"] + " / " + out["judge"], "repeats a judge")
    return _ordered(out, VERDICTS_REQUIRED, VERDICTS_OPTIONAL)


def load_gold(path: str | Path) -> pd.DataFrame:
    return validate_gold(read_table(path))


def load_battles(path: str | Path) -> pd.DataFrame:
    return validate_battles(read_table(path))


def load_verdicts(path: str | Path) -> pd.DataFrame:
    return validate_verdicts(read_table(path))


# ---------------------------------------------------------------- dense view of a gold table


@dataclass(frozen=True)
class GoldMatrix:
    """A gold table pivoted to prompts x models; row i of every array is prompt i."""

    prompt_ids: np.ndarray  # (n_prompts,) str
    prompts: np.ndarray  # (n_prompts,) str
    models: list[str]
    scores: np.ndarray  # (n_prompts, n_models) float in [0, 1]
    cost_usd: np.ndarray | None = None  # (n_prompts, n_models), NaN where unknown
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None
    split: np.ndarray | None = None  # (n_prompts,) "train" | "test" | None
    category: np.ndarray | None = None  # (n_prompts,)

    @property
    def n_prompts(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_models(self) -> int:
        return len(self.models)

    def take(self, rows: np.ndarray | Sequence[int]) -> GoldMatrix:
        """The same matrix restricted to some prompts (a boolean mask or positions)."""
        idx = np.asarray(rows)

        def sub(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return GoldMatrix(
            prompt_ids=self.prompt_ids[idx],
            prompts=self.prompts[idx],
            models=list(self.models),
            scores=self.scores[idx],
            cost_usd=sub(self.cost_usd),
            input_tokens=sub(self.input_tokens),
            output_tokens=sub(self.output_tokens),
            split=sub(self.split),
            category=sub(self.category),
        )


def gold_matrix(
    df: pd.DataFrame, models: Sequence[str] | None = None, validate: bool = True
) -> GoldMatrix:
    """Pivot a long gold table to a dense prompts x models matrix.

    ``models`` picks and orders the columns (default: order of first appearance). Prompts that
    lack a score for any chosen model are dropped, with a logged warning, because the offline
    replay needs every arm's reward on every prompt. Per-prompt ``split`` and ``category`` come
    from the prompt's first row.
    """
    if validate:
        df = validate_gold(df)
    if models is None:
        chosen = [str(m) for m in pd.unique(df["model"])]
    else:
        chosen = list(models)
        unknown = sorted(set(chosen) - set(df["model"]))
        if unknown:
            raise FormatError(f"gold table has no rows for model(s) {unknown}")
        df = df[df["model"].isin(chosen)]
    if df.empty:
        raise FormatError("gold table is empty")

    prompt_codes, prompt_ids = pd.factorize(df["prompt_id"], sort=False)
    model_codes = pd.Index(chosen).get_indexer(df["model"])
    shape = (len(prompt_ids), len(chosen))

    def cells(column: str) -> np.ndarray:
        grid = np.full(shape, np.nan)
        grid[prompt_codes, model_codes] = df[column].to_numpy(dtype=float, na_value=np.nan)
        return grid

    scores = cells("score")
    complete = ~np.isnan(scores).any(axis=1)
    n_dropped = int((~complete).sum())
    if n_dropped:
        logger.warning(
            "gold_matrix: dropped %d of %d prompts that lack a score for some of the %d models",
            n_dropped,
            shape[0],
            shape[1],
        )
    if not complete.any():
        raise FormatError(f"no prompt has a score for all {shape[1]} models {chosen}")

    _, first_row = np.unique(prompt_codes, return_index=True)

    def per_prompt(column: str) -> np.ndarray | None:
        if column not in df.columns:
            return None
        values = df[column].iloc[first_row].to_numpy(dtype=object)
        return values[complete]

    def per_cell(column: str) -> np.ndarray | None:
        return cells(column)[complete] if column in df.columns else None

    return GoldMatrix(
        prompt_ids=np.asarray(prompt_ids, dtype=object)[complete],
        prompts=per_prompt("prompt"),  # type: ignore[arg-type]  # prompt is a required column
        models=chosen,
        scores=scores[complete],
        cost_usd=per_cell("cost_usd"),
        input_tokens=per_cell("input_tokens"),
        output_tokens=per_cell("output_tokens"),
        split=per_prompt("split"),
        category=per_prompt("category"),
    )
