"""A documented model of biased preference feedback, calibrated from real judge data.

No public data set has preference feedback AND gold labels on the same prompts (see
../shared/data/README.md), so benchmarks of bias correction simulate the preference side from a
gold table and keep the gold labels for audits. The model, per event (query x, model k, gold g):

1. The judge emits a verdict v ∈ {0 (bad), ½ (tie), 1 (good)}. It ties with its own JudgeBench
   tie rate. Otherwise it says "good" with probability

       σ( (2g − 1)·logit(a(x)) + β·ℓ_k(x) )            (g ∈ [0, 1] mixes the two cases)

   a(x) — accuracy depends on the QUERY: the judge's JudgeBench accuracy on non-tied verdicts,
          shifted on the logit scale by how much harder or easier the query's source / category
          is for judges in JudgeBench (pooled over its 7 judges; e.g. mmlu-pro law 0.47,
          computer science 0.78, livecodebench 0.57, livebench-math 0.75).
   β·ℓ  — verbosity bonus that depends on the MODEL and the query: ℓ_k(x) is the log length of
          model k's answer minus the mean log length over the pool's answers to x; β is the
          logistic slope of GPT-4-judge wins on log length ratio in AlpacaEval, fitted with
          generator fixed effects so that it measures length, not the better models' quality.
2. Scale mismatch: the preference score is y = lo + (hi − lo)·v, a compressed, shifted scale
   (a judge that rarely gives extreme ratings). This part is an assumption, not calibrated.

So Δ_k(x) = g − E[y] varies with the query (a(x), g) and with the model (ℓ, g): a global mean
shift cannot remove it. Calibration reads `judgebench/` and `alpaca_eval/` under the shared data
folder (env BANDIT_ROUTER_SHARED_DATA, default ../shared/data next to the repository); without
them it falls back on the constants below, measured from those files.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

log = logging.getLogger(__name__)

DEFAULT_JUDGE = "o1-mini-2024-09-12"
LENGTH_JUDGE = "alpaca_eval_gpt4"  # AlpacaEval's GPT-4 annotator (baseline text-davinci-003)
DEFAULT_SCALE = (0.2, 0.7)
DEFAULT_ANSWER_CHARS = 1313.0  # geometric mean answer length over AlpacaEval's 227 models

# Measured on 2026-11-23 from ../shared/data/judgebench with offline.importers.import_judgebench
# (a verdict combines JudgeBench's two answer orders; an inconsistent pair counts as a tie).
# judge -> (P(correct), P(wrong), P(tie)) over all 350 pairs (270 for claude-3-haiku).
MEASURED_JUDGES: dict[str, tuple[float, float, float]] = {
    "o1-mini-2024-09-12": (0.657143, 0.111429, 0.231429),
    "claude-3-haiku-20240307": (0.322222, 0.292593, 0.385185),
    "Skywork/Skywork-Reward-Gemma-2-27B": (0.642857, 0.348571, 0.008571),
    "internlm/internlm2-20b-reward": (0.634286, 0.365714, 0.0),
    "Skywork/Skywork-Reward-Llama-3.1-8B": (0.622857, 0.374286, 0.002857),
    "Ray2333/GRM-Gemma-2B-rewardmodel-ft": (0.594286, 0.405714, 0.0),
    "internlm/internlm2-7b-reward": (0.594286, 0.405714, 0.0),
}
# Accuracy on non-tied verdicts pooled over the 7 judges, by JudgeBench source (2,181 verdicts,
# 0.641 overall). Groups ("mmlu-pro", "livebench") pool their sources.
MEASURED_SOURCE_ACCURACY: dict[str, float] = {
    "all": 0.640990,
    "livebench": 0.685836,
    "livebench-math": 0.747126,
    "livebench-reasoning": 0.649746,
    "livecodebench": 0.567460,
    "mmlu-pro": 0.617172,
    "mmlu-pro-biology": 0.647887,
    "mmlu-pro-business": 0.550725,
    "mmlu-pro-chemistry": 0.571429,
    "mmlu-pro-computer science": 0.782609,
    "mmlu-pro-economics": 0.653333,
    "mmlu-pro-engineering": 0.736111,
    "mmlu-pro-health": 0.617647,
    "mmlu-pro-history": 0.492754,
    "mmlu-pro-law": 0.472973,
    "mmlu-pro-math": 0.680556,
    "mmlu-pro-other": 0.695652,
    "mmlu-pro-philosophy": 0.536232,
    "mmlu-pro-physics": 0.666667,
    "mmlu-pro-psychology": 0.535211,
}
# Measured from ../shared/data/alpaca_eval: logistic slope of "model beats the baseline"
# (preference > 1.5) on log(len_model / len_baseline) for the GPT-4 annotator, 41,797 verdicts
# after import_alpaca_eval's de-duplication; with one intercept per model (fixed effects) and
# without (raw, which also credits longer answers for being better).
MEASURED_LENGTH_SLOPE = 0.3954
MEASURED_LENGTH_SLOPE_RAW = 0.7581
# model_output_lengths.parquet (227 models x 805 prompts): SD of log median answer length across
# models, and SD of the log length left once model and prompt effects are removed.
MEASURED_MODEL_LOG_LENGTH_SD = 0.5720
MEASURED_ANSWER_LOG_LENGTH_SD = 0.5908

# Gold-table categories that are not JudgeBench sources, mapped to the closest source.
CATEGORY_SOURCES: dict[str, str] = {
    "arc-challenge": "mmlu-pro",  # multiple-choice science questions
    "winogrande": "livebench-reasoning",  # commonsense reasoning
    "mbpp": "livecodebench",  # code generation
    "gsm8k": "livebench-math",
}


def shared_data_dir() -> Path:
    """The shared real-data folder: BANDIT_ROUTER_SHARED_DATA, else ../shared/data."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return Path(os.environ.get("BANDIT_ROUTER_SHARED_DATA", default))


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """Judge error rates and the verbosity bias, with where the numbers came from."""

    judges: dict[str, tuple[float, float, float]]
    source_accuracy: dict[str, float]
    length_slope: float
    length_slope_raw: float
    model_log_length_sd: float
    answer_log_length_sd: float
    origin: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "judges_correct_wrong_tie": self.judges,
            "non_tie_accuracy_by_source": self.source_accuracy,
            "length_slope_logit_per_log_ratio": self.length_slope,
            "length_slope_raw": self.length_slope_raw,
            "model_log_length_sd": self.model_log_length_sd,
            "answer_log_length_sd": self.answer_log_length_sd,
            "origin": self.origin,
        }


def measured_constants() -> Calibration:
    return Calibration(
        judges=dict(MEASURED_JUDGES),
        source_accuracy=dict(MEASURED_SOURCE_ACCURACY),
        length_slope=MEASURED_LENGTH_SLOPE,
        length_slope_raw=MEASURED_LENGTH_SLOPE_RAW,
        model_log_length_sd=MEASURED_MODEL_LOG_LENGTH_SD,
        answer_log_length_sd=MEASURED_ANSWER_LOG_LENGTH_SD,
        origin={
            "judges": "built-in constants measured from judgebench/ on 2026-11-23",
            "lengths": "built-in constants measured from alpaca_eval/ on 2026-11-23",
        },
    )


def judge_rates(verdicts: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """judge -> (P(correct), P(wrong), P(tie)) from an import_judgebench table."""
    tie = verdicts["verdict"] == "tie"
    wrong = ~verdicts["correct"].astype(bool) & ~tie
    frame = pd.DataFrame(
        {"judge": verdicts["judge"], "c": verdicts["correct"], "w": wrong, "t": tie}
    )
    means = frame.groupby("judge")[["c", "w", "t"]].mean()
    return {str(j): (float(r.c), float(r.w), float(r.t)) for j, r in means.iterrows()}


def source_accuracy(verdicts: pd.DataFrame) -> dict[str, float]:
    """Non-tie accuracy pooled over judges, per source, per source group and overall."""
    decided = verdicts[verdicts["verdict"] != "tie"]
    correct = decided["correct"].astype(float)
    group = decided["source"].str.replace(r"^(mmlu-pro|livebench)-.*$", r"\1", regex=True)
    out = {"all": float(correct.mean())}
    for keys in (decided["source"], group):
        out.update({str(s): float(v) for s, v in correct.groupby(keys.to_numpy()).mean().items()})
    return out


def length_slopes(battles: pd.DataFrame, judge: str = LENGTH_JUDGE) -> tuple[float, float]:
    """(fixed-effects slope, raw slope) of P(model_b wins) on log(len_b / len_a)."""
    from sklearn.linear_model import LogisticRegression

    rows = battles[(battles["judge"] == judge) & (battles["len_a"] > 0) & (battles["len_b"] > 0)]
    ratio = np.log(rows["len_b"].to_numpy(float) / rows["len_a"].to_numpy(float))[:, None]
    win = (rows["preference"].to_numpy(float) > 1.5).astype(int)
    raw = LogisticRegression(C=1e6, max_iter=1000).fit(ratio, win).coef_[0, 0]
    dummies = pd.get_dummies(rows["model_b"]).to_numpy(float)
    fixed = LogisticRegression(C=1e6, max_iter=5000).fit(np.hstack([ratio, dummies]), win)
    return float(fixed.coef_[0, 0]), float(raw)


def length_spread(lengths: pd.DataFrame) -> tuple[float, float]:
    """(SD of log median length across models, residual SD of one answer's log length)."""
    ll = np.log(lengths["output_len_chars"].clip(lower=1).to_numpy(float))
    frame = pd.DataFrame({"m": lengths["generator"], "p": lengths["instruction_idx"], "ll": ll})
    per_model = frame.groupby("m")["ll"].median()
    resid = (
        frame["ll"]
        - frame.groupby("m")["ll"].transform("mean")
        - frame.groupby("p")["ll"].transform("mean")
        + frame["ll"].mean()
    )
    return float(per_model.std()), float(resid.std())


@lru_cache(maxsize=4)
def calibrate(data_dir: Path | None = None) -> Calibration:
    """Measure the judge and length numbers from the shared data; fall back on the constants."""
    from bandit_router.offline.formats import FormatError
    from bandit_router.offline.importers import import_alpaca_eval, import_judgebench

    root = shared_data_dir() if data_dir is None else Path(data_dir)
    cal = measured_constants()
    origin = dict(cal.origin)
    try:
        verdicts = import_judgebench(root / "judgebench")
        cal = replace(cal, judges=judge_rates(verdicts), source_accuracy=source_accuracy(verdicts))
        origin["judges"] = f"measured from {root / 'judgebench'}"
    except (FormatError, OSError) as exc:
        log.info("judge calibration: using built-in constants (%s)", exc)
    try:
        slope, raw = length_slopes(import_alpaca_eval(root / "alpaca_eval"))
        model_sd, answer_sd = length_spread(
            pd.read_parquet(root / "alpaca_eval" / "model_output_lengths.parquet")
        )
        cal = replace(
            cal,
            length_slope=slope,
            length_slope_raw=raw,
            model_log_length_sd=model_sd,
            answer_log_length_sd=answer_sd,
        )
        origin["lengths"] = f"measured from {root / 'alpaca_eval'}"
    except (FormatError, OSError) as exc:
        log.info("length calibration: using built-in constants (%s)", exc)
    return replace(cal, origin=origin)


# --------------------------------------------------------------------------- the preference model


def judge_source(category: object, known: Sequence[str]) -> str:
    """The JudgeBench source whose judge accuracy stands in for a gold-table category."""
    name = str(category).strip().lower() if category is not None else ""
    for candidate in (f"mmlu-pro-{name}", name, CATEGORY_SOURCES.get(name, "")):
        if candidate in known:
            return candidate
    return "all"


def answer_log_lengths(
    output_tokens: np.ndarray | None,
    models: Sequence[str],
    n_prompts: int,
    calibration: Calibration,
    seed: int = 0,
) -> np.ndarray:
    """(n, K) log length of each model's answer to each query.

    Measured lengths are used where the gold table has them; otherwise lengths are drawn from the
    AlpacaEval spreads: a per-model offset (seeded by the model's name, so a model is equally
    verbose in every run) plus a per-answer residual.
    """
    if output_tokens is not None and np.isfinite(output_tokens).all():
        return np.log(np.maximum(np.asarray(output_tokens, dtype=float), 1.0))
    offsets = np.array(
        [
            np.random.default_rng(zlib.crc32(m.encode())).normal(
                0.0, calibration.model_log_length_sd
            )
            for m in models
        ]
    )
    noise = np.random.default_rng(seed).normal(
        0.0, calibration.answer_log_length_sd, size=(n_prompts, len(models))
    )
    return np.asarray(np.log(DEFAULT_ANSWER_CHARS) + offsets[None, :] + noise)


def relative_log_length(log_lengths: np.ndarray) -> np.ndarray:
    """ℓ_k(x): an answer's log length minus the mean over the pool's answers to the same query."""
    return np.asarray(log_lengths - log_lengths.mean(axis=1, keepdims=True))


@dataclass(frozen=True)
class PreferenceModel:
    """Simulated judge feedback y ∈ [lo, hi] for an answer with gold score g (module docstring)."""

    calibration: Calibration
    judge: str = DEFAULT_JUDGE
    scale: tuple[float, float] = DEFAULT_SCALE
    length_slope: float | None = None  # None: the calibrated AlpacaEval slope

    def __post_init__(self) -> None:
        if self.judge not in self.calibration.judges:
            raise ValueError(
                f"unknown judge {self.judge!r}; known: {', '.join(self.calibration.judges)}"
            )
        lo, hi = self.scale
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError("scale must satisfy 0 <= lo < hi <= 1")

    @property
    def slope(self) -> float:
        return self.calibration.length_slope if self.length_slope is None else self.length_slope

    @property
    def tie_rate(self) -> float:
        return self.calibration.judges[self.judge][2]

    @property
    def judge_accuracy(self) -> float:
        """This judge's accuracy on the verdicts where it did not tie."""
        c, w, _ = self.calibration.judges[self.judge]
        return c / (c + w)

    def query_accuracy(
        self, categories: Sequence[object] | np.ndarray | None, n: int
    ) -> np.ndarray:
        """a(x) per query: the judge's logit accuracy + its category's offset in JudgeBench."""
        acc = self.calibration.source_accuracy
        base = logit(np.clip(self.judge_accuracy, 1e-3, 1 - 1e-3))
        if categories is None:
            return np.full(n, expit(base))
        known = list(acc)
        sources = [judge_source(c, known) for c in categories]
        shift = np.array([logit(acc[s]) - logit(acc["all"]) for s in sources])
        return np.asarray(expit(base + shift), dtype=float)

    def p_good(self, gold: np.ndarray, ell: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
        """P(verdict "good" | not a tie)."""
        g = np.clip(np.asarray(gold, dtype=float), 0.0, 1.0)
        a = logit(np.clip(accuracy, 1e-6, 1 - 1e-6))
        return np.asarray(g * expit(a + self.slope * ell) + (1 - g) * expit(-a + self.slope * ell))

    def expected(self, gold: np.ndarray, ell: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
        """η = E[y | x, k]: what an unbiased learner on preference alone converges to."""
        v = self.tie_rate * 0.5 + (1 - self.tie_rate) * self.p_good(gold, ell, accuracy)
        lo, hi = self.scale
        return lo + (hi - lo) * v

    def sample(
        self, gold: np.ndarray, ell: np.ndarray, accuracy: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        n = np.asarray(gold).shape[0]
        tie = rng.random(n) < self.tie_rate
        good = rng.random(n) < self.p_good(gold, ell, accuracy)
        v = np.where(tie, 0.5, good.astype(float))
        lo, hi = self.scale
        return lo + (hi - lo) * v

    def statement(self) -> str:
        c, w, t = self.calibration.judges[self.judge]
        lo, hi = self.scale
        return (
            "Preference feedback is SIMULATED from the gold labels (no real preferences exist on "
            f"these prompts): a judge modelled on {self.judge} in JudgeBench (correct {c:.3f}, "
            f"wrong {w:.3f}, tie {t:.3f}) whose non-tie accuracy "
            f"{self.judge_accuracy:.3f} is shifted per query category by JudgeBench's per-source "
            f"accuracy, a verbosity bonus of {self.slope:.3f} logit per unit log length ratio "
            "(AlpacaEval GPT-4 judge, model fixed effects) on each answer's length relative to "
            f"the pool's answers, and verdicts bad/tie/good reported on the compressed scale "
            f"{lo:g}/{(lo + hi) / 2:g}/{hi:g}. Gold labels are the data set's real scores."
        )

    def summary(self) -> dict[str, Any]:
        return {
            "statement": self.statement(),
            "judge": self.judge,
            "judge_non_tie_accuracy": self.judge_accuracy,
            "tie_rate": self.tie_rate,
            "length_slope": self.slope,
            "scale": list(self.scale),
            "calibration": self.calibration.summary(),
        }
