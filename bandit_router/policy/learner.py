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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from vowpalwabbit import Workspace

from bandit_router.policy import features

# A read-out is used only where it reproduces VW on random queries to within float32 rounding of
# the sum VW computes (relative to the sum of its terms' sizes: a warm start puts weights of 1e6 on
# embedding dimensions that real queries leave at ~0, which cancel only on the data); a model that
# is not linear in the embedding (other VW arguments) misses by orders of magnitude more.
READOUT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class LinearReadout:
    """Each model's predicted quality as the linear function of the embedding that the VW model
    computes (`-q sa`: intercept + weights · embedding), read out once per policy version so a
    route scores its candidates with one small matrix product instead of building VW examples."""

    index: Mapping[str, int]
    intercept: np.ndarray  # (models,)
    weights: np.ndarray  # (models, dim)

    def predict(self, emb: np.ndarray, models: Sequence[str]) -> np.ndarray | None:
        """None when a model was not read out (added after the snapshot was built)."""
        try:
            rows = [self.index[m] for m in models]
        except KeyError:
            return None
        return self.intercept[rows] + self.weights[rows] @ emb


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

    def linear_readout(self, models: Sequence[str], dim: int) -> LinearReadout | None:
        """Probe the model at the origin and along each axis (dim + 1 predictions), then check
        the result against VW on random queries; None when the model is not linear in the
        embedding (other VW arguments) or has nothing to read out."""
        if not models:
            return None
        at_zero = self.predict(np.zeros(dim), models)
        axes = np.array([self.predict(e, models) for e in np.eye(dim)])  # (dim, models)
        readout = LinearReadout(
            {m: i for i, m in enumerate(models)}, at_zero, (axes - at_zero).T.copy()
        )
        for x in np.random.default_rng(0).standard_normal((3, dim)) / np.sqrt(dim):
            scale = 1.0 + np.abs(at_zero) + np.abs(readout.weights) @ np.abs(x)
            miss = np.abs(readout.intercept + readout.weights @ x - self.predict(x, models))
            if np.any(miss > READOUT_TOLERANCE * scale):
                return None
        return readout

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
