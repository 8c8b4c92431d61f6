"""Two kinds of queries for learning tests: arithmetic and poetry, many phrasings each."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd

MATH = [
    "What is {a} plus {b}?",
    "Compute {a} times {b}.",
    "Solve for x: {a}x + {b} = 0",
    "What is the derivative of x^{a} + {b}x?",
    "Integrate {a}x^2 + {b} dx.",
    "Is {a}{b} a prime number? Show the factorisation.",
    "Find the greatest common divisor of {a} and {b}.",
    "What is {a} divided by {b} as a decimal?",
]
POETRY = [
    "Write a short poem about the {w} at dawn.",
    "Compose a haiku about a {w} in winter.",
    "Write a sonnet about lost love and the {w}.",
    "Give me a limerick about a {w} who loved to dance.",
    "Write free verse about the sound of the {w}.",
    "Write a rhyming couplet about an old {w}.",
    "Compose a lullaby that mentions the {w}.",
    "Write a ballad about a sailor and the {w}.",
]
WORDS = ["ocean", "moon", "forest", "river", "sparrow", "mountain", "lantern", "garden", "storm"]


def prompts(kind: str, n: int, seed: int) -> list[str]:
    rng = random.Random(f"{kind}-{seed}")
    out = []
    for _ in range(n):
        if kind == "math":
            out.append(rng.choice(MATH).format(a=rng.randint(2, 999), b=rng.randint(2, 999)))
        else:
            out.append(rng.choice(POETRY).format(w=rng.choice(WORDS)))
    return out


# Per topic: probability that each model answers correctly, and its cost per query (USD).
SKILL = {"big": (0.9, 0.9), "mathy": (0.9, 0.15), "poet": (0.15, 0.9)}
COST = {"big": 0.01, "mathy": 0.001, "poet": 0.001}


def gold_table(path: Path, models: list[str], n: int = 120) -> Path:
    """A gold table over both topics: each model's 0/1 correctness drawn from its SKILL."""
    rng = np.random.default_rng(0)
    rows = []
    for t, kind in enumerate(("math", "poetry")):
        for j, prompt in enumerate(prompts(kind, n, seed=123)):
            for m in models:
                rows.append(
                    {
                        "prompt_id": f"{kind}-{j}",
                        "prompt": prompt,
                        "model": m,
                        "score": float(rng.random() < SKILL[m][t]),
                        "cost_usd": COST[m],
                        "category": kind,
                    }
                )
    df = pd.DataFrame(rows).drop_duplicates(["prompt", "model"])
    df = df.drop_duplicates(["prompt_id", "model"])
    df = df[df.groupby("prompt")["prompt_id"].transform("nunique") == 1]
    df.to_parquet(path)
    return path
