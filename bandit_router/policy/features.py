"""Vowpal Wabbit examples for the router, built from dicts (string keys hash like the text format).

One multi-example per decision: a `shared` example holding the query embedding in namespace `s`,
then one example per candidate model in namespace `a` (`m=<name>` plus a constant `any` that lets
a model never seen before borrow what all models have in common). `-q sa` crosses them, so every
model gets its own linear function of the embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from vowpalwabbit import Example, LabelType, Workspace

_NAMES = [str(i) for i in range(4096)]
_CB = LabelType.CONTEXTUAL_BANDIT


def build(
    vw: Workspace,
    emb: np.ndarray,
    models: Sequence[str],
    label: tuple[int, float, float] | None = None,
) -> list[Example]:
    """Multi-example for `models`; `label` = (action index, VW cost, probability) when learning."""
    shared = Example(vw, {"s": list(zip(_NAMES, emb.tolist(), strict=False))}, labelType=_CB)
    shared.set_label_string("shared")
    out = [shared]
    for i, name in enumerate(models):
        ex = Example(vw, {"a": [f"m={name}", "any"]}, labelType=_CB)
        if label is not None and label[0] == i:
            ex.set_label_string(f"0:{label[1]:.6f}:{label[2]:.6f}")
        out.append(ex)
    for ex in out:
        ex.setup_example()
    return out
