"""QualityModel: Vowpal Wabbit `--cb_adf` regression of quality per (query, model).

VW minimises cost, so it learns cost = -reward and predicted quality is minus its score. Only the
unknown part (quality) is learned; the known cost is added at decision time, which is what lets
one model serve every per-request trade-off λ.

Every example is learned with probability 1, i.e. as plain squared-loss regression on the model
that answered, whatever probability it was drawn with (the real one is logged for off-policy
evaluation). Importance weights 1/p made each rarely explored, expensive model's single noisy
reward weigh up to ~80 ordinary ones: with `--cb_type mtr` and the logged p, online learning cut
the policy's value by 0.10-0.17 on RouterBench and 0.04 on MMLU-Pro (9 models) at λ = 0.2;
with p = 1 it did not move it. Unweighted regression is also what SquareCB's guarantees assume.
(`--cb_type dm` / `ips` are no alternative: in `cb_adf` they pull every unlabelled model towards
cost 0, which ruined a warm start's predictions.)
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence

import numpy as np
from vowpalwabbit import Workspace

from bandit_router.policy import features


class QualityModel:
    def __init__(self, vw_args: str, model_bytes: bytes | None = None) -> None:
        self.vw_args = vw_args
        self._lock = threading.Lock()  # a Workspace is not safe to share between threads
        if model_bytes is None:
            self._vw = Workspace(vw_args)
        else:
            # No in-memory load in VW: go through a temp file. The saved model carries its
            # reduction stack, so it loads under the arguments it was trained with.
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "policy.vw")
                with open(path, "wb") as fh:
                    fh.write(model_bytes)
                self._vw = Workspace(f"-i {path} --quiet")

    def predict(self, emb: np.ndarray, models: Sequence[str]) -> np.ndarray:
        """Predicted quality per model, as the regression gives it: not clipped to [0, 1], since
        clipping would tie two models above 1 and let their order in the pool decide."""
        with self._lock:
            exs = features.build(self._vw, emb, models)
            scores = self._vw.predict(exs)
            self._vw.finish_example(exs)
        return -np.asarray(scores, dtype=np.float64) + 0.0  # no -0.0

    def learn(self, emb: np.ndarray, models: Sequence[str], chosen: int, reward: float) -> None:
        """One squared-loss step towards `reward` for `models[chosen]` on this query."""
        with self._lock:
            exs = features.build(self._vw, emb, models, (chosen, -reward, 1.0))
            self._vw.learn(exs)
            self._vw.finish_example(exs)

    def predict_and_learn(
        self, emb: np.ndarray, models: Sequence[str], chosen: int, reward: float
    ) -> np.ndarray:
        """predict() and then learn() on the same query, from one example instead of two: VW's
        `cb_adf` scores every action before it updates, and those scores are predict()'s, bit
        for bit (tests/test_policy.py). The jobs value each event before they learn it."""
        with self._lock:
            exs = features.build(self._vw, emb, models, (chosen, -reward, 1.0))
            self._vw.learn(exs)
            scores = exs[0].get_action_scores()
            self._vw.finish_example(exs)
        return -np.asarray(scores, dtype=np.float64) + 0.0

    def to_bytes(self) -> bytes:
        with self._lock, tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "policy.vw")
            self._vw.save(path)
            with open(path, "rb") as fh:
                return fh.read()

    def copy(self) -> QualityModel:
        return QualityModel(self.vw_args, self.to_bytes())

    def close(self) -> None:
        with self._lock:
            self._vw.finish()
