"""Two kinds of queries for learning tests: arithmetic and poetry, many phrasings each."""

from __future__ import annotations

import random

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
