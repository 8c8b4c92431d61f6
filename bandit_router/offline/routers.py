"""Offline quality routers: predict a quality score in [0, 1] per (query, model) from embeddings.

All routers take precomputed query embeddings X (n, d) float32 (L2-normalised rows) and expose
`models`, `fit(...)`, `predict_quality(X) -> (n, K)`, `save(path)` and `load(path)`.

- BradleyTerryMFRouter: RouteLLM's matrix-factorisation router, generalised from one fixed pair to
  N models, trained on pairwise battles.
- SimilarityWeightedRouter: RouteLLM's similarity-weighted (SW) ranking: a Bradley–Terry model
  refitted per query on battles weighted by their prompt's similarity to the query.
- GoldRegressionRouter: one regression per model on gold scores (the full-information baseline).

Preference-trained routers return a *relative* quality: the probability of beating an average
other pool member, not a calibrated probability of a correct answer.

Persistence: one .npz file holding the arrays plus a JSON `__meta__` string with a `kind` field,
so `load_router(path)` can return the right class; no pickle is involved.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import numpy as np
from threadpoolctl import threadpool_limits

TieMode = Literal["half", "drop"]
FORMAT_VERSION = 1


@runtime_checkable
class QualityRouter(Protocol):
    """What the rest of the project relies on. `fit` is not part of it: each router learns from
    different data (battles or gold scores), so its signature differs per class."""

    kind: ClassVar[str]
    models: list[str]

    def predict_quality(self, X: np.ndarray) -> np.ndarray: ...

    def save(self, path: str | Path) -> None: ...


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def sigmoid(z: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warnings for large |z|, unlike 1/(1+exp(-z)).
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def win_prob_vs_pool(scores: np.ndarray) -> np.ndarray:
    """Q[i, k] = mean over j != k of σ(s_ik − s_ij): the chance k beats an average other model."""
    s = np.asarray(scores, dtype=np.float64)
    k = s.shape[1]
    if k < 2:
        raise ValueError("need at least two models")
    pairwise = sigmoid(s[:, :, None] - s[:, None, :])
    # The diagonal contributes σ(0) = 0.5 to every row sum; remove it instead of masking.
    return (pairwise.sum(axis=2) - 0.5) / (k - 1)


def _as_embeddings(X: np.ndarray, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be 2-d (n, d), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"embeddings have dimension {arr.shape[1]}, router expects {dim}")
    return arr


def _model_indices(values: Sequence[Any] | np.ndarray, models: list[str]) -> np.ndarray:
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() >= len(models)):
            raise ValueError("model index out of range")
        return arr.astype(np.int64)
    lookup = {m: i for i, m in enumerate(models)}
    unknown = sorted({str(v) for v in arr.tolist()} - lookup.keys())
    if unknown:
        raise ValueError(f"unknown models {unknown[:5]}; router models are {models}")
    return np.array([lookup[str(v)] for v in arr.tolist()], dtype=np.int64)


def _resolve_model(m: str | int, models: list[str]) -> int:
    if isinstance(m, int | np.integer):
        return int(_model_indices([int(m)], models)[0])
    return int(_model_indices([m], models)[0])


def _infer_models(
    models: Sequence[str] | None, model_a: Sequence[Any], model_b: Sequence[Any]
) -> list[str]:
    if models is not None:
        return list(models)
    names = np.concatenate([np.asarray(model_a), np.asarray(model_b)])
    if np.issubdtype(names.dtype, np.integer):
        raise ValueError("model indices given without a `models` list")
    return sorted({str(n) for n in names.tolist()})


def _winner_targets(
    winner: Sequence[Any] | np.ndarray, model_a: np.ndarray, model_b: np.ndarray
) -> np.ndarray:
    """Target P(a beats b) per battle: 1, 0 or 0.5 (tie).

    Accepts Chatbot-Arena labels ("model_a", "model_b", "tie", "tie (bothbad)"), the winning
    model's name, or numbers in [0, 1] (already a target).
    """
    arr = np.asarray(winner)
    if np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
        y = arr.astype(np.float64)
        if np.any((y < 0) | (y > 1)) or np.any(np.isnan(y)):
            raise ValueError("numeric winners must be in [0, 1]")
        return y
    out = np.empty(arr.size, dtype=np.float64)
    for i, (w, a, b) in enumerate(
        zip(arr.tolist(), model_a.tolist(), model_b.tolist(), strict=True)
    ):
        w = str(w)
        if w in ("model_a", "a") or w == str(a):
            out[i] = 1.0
        elif w in ("model_b", "b") or w == str(b):
            out[i] = 0.0
        elif w.startswith("tie"):
            out[i] = 0.5
        else:
            raise ValueError(f"cannot read winner {w!r} (battle {a!r} vs {b!r})")
    return out


class _Battles:
    """Validated battles: model indices a, b, target y = P(a wins), weight, embedding row."""

    def __init__(
        self,
        models: list[str],
        model_a: Sequence[Any],
        model_b: Sequence[Any],
        winner: Sequence[Any] | np.ndarray,
        rows: np.ndarray,
        sample_weight: np.ndarray | None,
        ties: TieMode,
    ) -> None:
        a_raw, b_raw = np.asarray(model_a), np.asarray(model_b)
        if not (a_raw.size == b_raw.size == len(winner) == rows.size):
            raise ValueError("model_a, model_b, winner and the embedding rows must align")
        a = _model_indices(a_raw, models)
        b = _model_indices(b_raw, models)
        names = np.array(models)
        y = _winner_targets(winner, names[a], names[b])
        w = np.ones(a.size) if sample_weight is None else np.asarray(sample_weight, float)
        if w.shape != a.shape or np.any(w < 0):
            raise ValueError("sample_weight needs one non-negative weight per battle")
        keep = a != b  # a model against itself says nothing about the ranking
        if ties == "drop":
            keep &= y != 0.5
        self.a, self.b, self.y, self.weight, self.rows = (
            a[keep],
            b[keep],
            y[keep],
            w[keep],
            rows[keep],
        )
        if self.a.size == 0:
            raise ValueError("no usable battles")


def _battle_rows(n_embeddings: int, n_battles: int, rows: np.ndarray | None) -> np.ndarray:
    if rows is None:
        if n_embeddings != n_battles:
            raise ValueError("X must have one row per battle unless `rows` maps battles to X")
        return np.arange(n_battles)
    r = np.asarray(rows, dtype=np.int64)
    if r.size and (r.min() < 0 or r.max() >= n_embeddings):
        raise ValueError("rows index outside X")
    return r


def _battles(
    router: BradleyTerryMFRouter | SimilarityWeightedRouter,
    X: np.ndarray,
    model_a: Sequence[Any],
    model_b: Sequence[Any],
    winner: Sequence[Any] | np.ndarray,
    rows: np.ndarray | None,
    sample_weight: np.ndarray | None,
) -> tuple[list[str], _Battles]:
    """The model list and the checked battles: where both battle-trained routers' `fit` start."""
    models = _infer_models(router.models or None, model_a, model_b)
    if len(models) < 2:
        raise ValueError("need at least two models")
    r = _battle_rows(X.shape[0], len(winner), rows)
    return models, _Battles(models, model_a, model_b, winner, r, sample_weight, router.ties)


def _win_prob(strength: np.ndarray, models: list[str], a: str | int, b: str | int) -> np.ndarray:
    """Bradley–Terry: P(a beats b) from per-row, per-model strengths."""
    s = strength.astype(np.float64)
    return sigmoid(s[:, _resolve_model(a, models)] - s[:, _resolve_model(b, models)])


def _save_npz(path: str | Path, kind: str, meta: dict[str, Any], arrays: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"kind": kind, "format": FORMAT_VERSION, **meta})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # An open file handle stops numpy from appending ".npz"; temp + rename keeps a crash from
    # leaving a half-written router where a good one used to be.
    with open(tmp, "wb") as fh:
        np.savez(fh, __meta__=np.array(header), **arrays)
    os.replace(tmp, path)


def _load_npz(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(Path(path), allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
    return meta, arrays


def _read_meta(path: str | Path) -> dict[str, Any]:
    with np.load(Path(path), allow_pickle=False) as z:
        meta: dict[str, Any] = json.loads(str(z["__meta__"]))
    return meta


def _check_kind(meta: dict[str, Any], expected: str) -> None:
    if meta.get("kind") != expected:
        raise ValueError(f"file holds a {meta.get('kind')!r} router, not {expected!r}")


# ---------------------------------------------------------------------------------------------
# 1. Bradley–Terry matrix factorisation (RouteLLM MF, N models)
# ---------------------------------------------------------------------------------------------


class BradleyTerryMFRouter:
    """s_k(x) = w2ᵀ(v_k ⊙ (W1·x)) + b_k;  P(a beats b | x) = σ(s_a(x) − s_b(x)).

    Ties count as half a win each (target 0.5) by default: a tie says "the cheaper model is as
    good here", exactly the signal a cost-aware router needs (RouteLLM's SW ranking, via its Elo
    fit, also counts a tie as half); ties="drop" reproduces RouteLLM's MF training.

    Training: Adam on binary cross-entropy, mini-batch epochs in torch on CPU, fixed seed.
    epochs=10 x batch 1024 suits ~100k battles (~1000 Adam steps); for a few thousand battles
    raise epochs or lower batch_size so the optimiser still takes a few hundred steps.
    threads=1 by default: the per-step matrices are small, and when other processes keep a
    2-core host busy two torch threads contend badly (measured, 100k battles x 10 epochs: 3-6 s
    on 1 thread whatever the load; ~2 s on 2 threads when idle but 37-58 s when busy).
    torch's thread count is process-wide; fit sets it for its duration and restores it;
    threads=None leaves it alone.
    Prediction needs numpy only: the model is linear in x, s = X·(W1ᵀ·(V ⊙ w2)ᵀ) + b.
    """

    kind: ClassVar[str] = "bt_mf"

    def __init__(
        self,
        models: Sequence[str] | None = None,
        *,
        dim: int = 128,
        use_bias: bool = True,
        lr: float = 3e-3,
        weight_decay: float = 1e-5,
        epochs: int = 10,
        batch_size: int = 1024,
        seed: int = 0,
        ties: TieMode = "half",
        threads: int | None = 1,
    ) -> None:
        self.models: list[str] = list(models) if models is not None else []
        self.dim = dim
        self.use_bias = use_bias
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.ties: TieMode = ties
        self.threads = threads
        self.W1_: np.ndarray | None = None  # (dim, d) text projection
        self.V_: np.ndarray | None = None  # (K, dim) model embeddings
        self.w2_: np.ndarray | None = None  # (dim,) output weights
        self.b_: np.ndarray | None = None  # (K,) per-model bias (zeros when use_bias=False)
        self.loss_history_: list[float] = []
        self.fit_seconds_: float = float("nan")

    def _hyper(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "use_bias": self.use_bias,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "ties": self.ties,
            "threads": self.threads,
        }

    def fit(
        self,
        X: np.ndarray,
        model_a: Sequence[Any],
        model_b: Sequence[Any],
        winner: Sequence[Any] | np.ndarray,
        *,
        rows: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> Self:
        """Learn from battles. model_a/model_b: names (or indices into `models`); winner: see
        `_winner_targets`. `rows[i]` is the row of X holding battle i's prompt (default: row i),
        so many battles on one prompt need not copy its embedding."""
        import torch

        started = time.perf_counter()
        X = _as_embeddings(X)
        self.models, battles = _battles(self, X, model_a, model_b, winner, rows, sample_weight)

        previous_threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            self._train(X, battles)
        finally:
            torch.set_num_threads(previous_threads)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _train(self, X: np.ndarray, battles: _Battles) -> None:
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        params = self._init_params(X.shape[1], gen)
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        data = {
            "x": torch.from_numpy(np.ascontiguousarray(X)),
            "row": torch.from_numpy(battles.rows),
            "a": torch.from_numpy(battles.a),
            "b": torch.from_numpy(battles.b),
            "y": torch.from_numpy(battles.y.astype(np.float32)),
            "w": torch.from_numpy(battles.weight.astype(np.float32)),
        }
        self.loss_history_ = [self._run_epoch(params, opt, data, gen) for _ in range(self.epochs)]
        W1, V, w2, b = (p.detach().numpy().astype(np.float32) for p in params)
        self.W1_, self.V_, self.w2_ = W1, V, w2
        self.b_ = b if self.use_bias else np.zeros(len(self.models), np.float32)

    def _init_params(self, d: int, gen: Any) -> list[Any]:
        import torch

        k = len(self.models)
        # Same scales as torch's nn.Linear / nn.Embedding defaults, drawn from our own generator
        # so fitting never touches (or depends on) the global torch RNG.
        W1 = (torch.rand(self.dim, d, generator=gen) * 2 - 1) / math.sqrt(d)
        V = torch.randn(k, self.dim, generator=gen)
        w2 = (torch.rand(self.dim, generator=gen) * 2 - 1) / math.sqrt(self.dim)
        b = torch.zeros(k)
        params = [W1, V, w2, b]
        for p in params:
            p.requires_grad_(True)
        if not self.use_bias:
            b.requires_grad_(False)
        return params

    def _run_epoch(self, params: list[Any], opt: Any, data: dict[str, Any], gen: Any) -> float:
        import torch
        import torch.nn.functional as F

        W1, V, w2, b = params
        n = data["a"].shape[0]
        order = torch.randperm(n, generator=gen)
        total, weight_sum = 0.0, 0.0
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            a, bb, w = data["a"][idx], data["b"][idx], data["w"][idx]
            # Same function and gradients as w2ᵀ(v_k ⊙ W1·x), but multiplying the factors first
            # (d×dim×K once per step) instead of projecting every x (B×d×dim) is ~30x cheaper.
            per_model = W1.T @ (V * w2).T  # (d, K)
            s = data["x"][data["row"][idx]] @ per_model + b  # (B, K)
            logit = s.gather(1, a[:, None])[:, 0] - s.gather(1, bb[:, None])[:, 0]
            losses = F.binary_cross_entropy_with_logits(logit, data["y"][idx], reduction="none")
            loss = (losses * w).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * float(w.sum())
            weight_sum += float(w.sum())
        return total / weight_sum

    def _require_fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.W1_ is None or self.V_ is None or self.w2_ is None or self.b_ is None:
            raise RuntimeError("router is not fitted")
        return self.W1_, self.V_, self.w2_, self.b_

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Raw Bradley–Terry scores s_k(x), shape (n, K); only differences are meaningful."""
        W1, V, w2, b = self._require_fitted()
        X = _as_embeddings(X, W1.shape[1])
        return X @ (W1.T @ (V * w2).T) + b

    def predict_quality(self, X: np.ndarray) -> np.ndarray:
        return win_prob_vs_pool(self.scores(X))

    def win_prob(self, X: np.ndarray, a: str | int, b: str | int) -> np.ndarray:
        """P(model a beats model b | x) per row of X."""
        return _win_prob(self.scores(X), self.models, a, b)

    def save(self, path: str | Path) -> None:
        W1, V, w2, b = self._require_fitted()
        meta = {"models": self.models, "hyper": self._hyper(), "loss_history": self.loss_history_}
        _save_npz(path, self.kind, meta, {"W1": W1, "V": V, "w2": w2, "b": b})

    @classmethod
    def load(cls, path: str | Path) -> Self:
        meta, arrays = _load_npz(path)
        _check_kind(meta, cls.kind)
        router = cls(meta["models"], **meta["hyper"])
        router.W1_, router.V_, router.w2_, router.b_ = (
            arrays["W1"],
            arrays["V"],
            arrays["w2"],
            arrays["b"],
        )
        router.loss_history_ = list(meta.get("loss_history", []))
        return router


# ---------------------------------------------------------------------------------------------
# 2. Similarity-weighted Bradley–Terry ranking (RouteLLM SW)
# ---------------------------------------------------------------------------------------------


class SimilarityWeightedRouter:
    """Per query x: weight battle i by w_i = 10·10^(cos(x, x_i)/max_j cos(x, x_j)) and fit a
    weighted Bradley–Terry model θ over the pool; quality = win prob vs an average member.

    Speed: the BT likelihood depends on the battles only through per-pair weighted counts, so a
    query costs one similarity row (N·d), one sparse product to aggregate weights per model pair
    (N·P) and a K-parameter Newton solve, vectorised over a chunk of queries: ~2·N·d flops per
    query. Measured with 100k battles, 4 models, 2 busy cores: 5-9 ms per query in batches of
    200, 16-36 ms for a lone query; the MF router predicts 1000 queries in ~2 ms.

    Details: weights are rescaled per query to mean 1 (the 10· factor and the overall scale
    cancel in the maximum-likelihood fit; only their ratio to the ridge `prior` matters), and a
    ridge prior·‖θ‖²/2 keeps θ finite for models that never lose. If no battle prompt has a
    positive similarity to the query, sim/max_sim is meaningless and weights are uniform.
    Ties count as half a win, as in RouteLLM's weighted Elo fit.
    """

    kind: ClassVar[str] = "sw_bt"

    def __init__(
        self,
        models: Sequence[str] | None = None,
        *,
        prior: float = 1.0,
        newton_iters: int = 30,
        chunk_elements: int = 4_000_000,
        ties: TieMode = "half",
    ) -> None:
        self.models: list[str] = list(models) if models is not None else []
        self.prior = prior
        self.newton_iters = newton_iters
        self.chunk_elements = chunk_elements
        self.ties: TieMode = ties
        self.X_: np.ndarray | None = None  # (m, d) distinct battle prompts
        self.rows_: np.ndarray | None = None  # (N,) prompt row of each battle
        self.pair_: np.ndarray | None = None  # (N,) index into pairs_
        self.pairs_: np.ndarray | None = None  # (P, 2) model pairs (i < j)
        self.y_: np.ndarray | None = None  # (N,) P(pairs_[pair, 0] wins)
        self.weight_: np.ndarray | None = None  # (N,) sample weights

    def _hyper(self) -> dict[str, Any]:
        return {
            "prior": self.prior,
            "newton_iters": self.newton_iters,
            "chunk_elements": self.chunk_elements,
            "ties": self.ties,
        }

    def fit(
        self,
        X: np.ndarray,
        model_a: Sequence[Any],
        model_b: Sequence[Any],
        winner: Sequence[Any] | np.ndarray,
        *,
        rows: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> Self:
        """Store the battles (same arguments as `BradleyTerryMFRouter.fit`); nothing is trained."""
        X = _as_embeddings(X)
        self.models, battles = _battles(self, X, model_a, model_b, winner, rows, sample_weight)
        # Orient every battle as (lower index, higher index) so each unordered pair is one column.
        swap = battles.a > battles.b
        lo = np.where(swap, battles.b, battles.a)
        hi = np.where(swap, battles.a, battles.b)
        y = np.where(swap, 1.0 - battles.y, battles.y)
        pairs, pair = np.unique(np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
        # Keep only prompts some battle uses: max_sim must range over the battles' prompts.
        used, rows_ = np.unique(battles.rows, return_inverse=True)
        self.X_ = X[used]
        self.rows_, self.pair_, self.pairs_ = rows_.ravel(), pair.ravel(), pairs
        self.y_, self.weight_ = y, battles.weight
        return self

    def _require_fitted(self) -> tuple[np.ndarray, ...]:
        parts = (self.X_, self.rows_, self.pair_, self.pairs_, self.y_, self.weight_)
        if any(p is None for p in parts):
            raise RuntimeError("router is not fitted")
        return tuple(p for p in parts if p is not None)

    def _pair_matrices(self) -> tuple[Any, Any, np.ndarray]:
        from scipy import sparse

        _, _, pair, pairs, y, weight = self._require_fitted()
        n, p = pair.size, pairs.shape[0]
        cols = (np.arange(n), pair)
        total = sparse.csr_matrix((weight, cols), shape=(n, p))
        wins = sparse.csr_matrix((weight * y, cols), shape=(n, p))
        incidence = np.zeros((p, len(self.models)))
        incidence[np.arange(p), pairs[:, 0]] = 1.0
        incidence[np.arange(p), pairs[:, 1]] = -1.0
        return total, wins, incidence

    def similarity_weights(self, X: np.ndarray) -> np.ndarray:
        """(n_queries, N_battles) weights, each row rescaled to mean 1."""
        X_store, rows, *_ = self._require_fitted()
        sims = (_as_embeddings(X, X_store.shape[1]) @ X_store.T).astype(np.float64)
        max_sim = sims.max(axis=1, keepdims=True)
        safe = np.where(max_sim > 0, max_sim, 1.0)
        exponent = np.where(max_sim > 0, sims / safe, 0.0)[:, rows]
        # Shift by the row max before exponentiating: same weights after rescaling, no overflow.
        w = 10.0 ** (1.0 + exponent - exponent.max(axis=1, keepdims=True))
        return w / w.mean(axis=1, keepdims=True)

    def ratings(self, X: np.ndarray) -> np.ndarray:
        """Per-query Bradley–Terry ratings θ (n, K) (natural-log scale; Elo = 400/ln10 · θ)."""
        X_store = self._require_fitted()[0]
        X = _as_embeddings(X, X_store.shape[1])
        total, wins, incidence = self._pair_matrices()
        chunk = max(1, self.chunk_elements // max(1, total.shape[0]))
        out = [
            self._newton(
                *self._pair_counts(X[s : s + chunk], total, wins),
                incidence,
            )
            for s in range(0, X.shape[0], chunk)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(self.models)))

    def _pair_counts(self, Xc: np.ndarray, total: Any, wins: Any) -> tuple[np.ndarray, np.ndarray]:
        w = self.similarity_weights(Xc)  # (q, N)
        return np.asarray(total.T @ w.T).T, np.asarray(wins.T @ w.T).T  # (q, P) each

    def _newton(self, tot: np.ndarray, won: np.ndarray, incidence: np.ndarray) -> np.ndarray:
        """Maximise Σ_p won_p·log σ(d_p) + (tot_p − won_p)·log σ(−d_p) − prior·‖θ‖²/2 per row,
        d_p = θ_i − θ_j for pair p = (i, j). Concave, so Newton converges in a few steps."""
        q, k = tot.shape[0], incidence.shape[1]
        theta = np.zeros((q, k))
        outer = (incidence[:, :, None] * incidence[:, None, :]).reshape(incidence.shape[0], k * k)
        ridge = self.prior * np.eye(k)
        for _ in range(self.newton_iters):
            mu = sigmoid(theta @ incidence.T)
            grad = (won - tot * mu) @ incidence - self.prior * theta
            hess = (tot * mu * (1.0 - mu)) @ outer
            step = np.linalg.solve(hess.reshape(q, k, k) + ridge, grad[:, :, None])[:, :, 0]
            # Damping: a capped step cannot overshoot into the flat tails of the sigmoid.
            step = np.clip(step, -2.0, 2.0)
            theta += step
            if np.abs(step).max() < 1e-8:
                break
        return theta

    def predict_quality(self, X: np.ndarray) -> np.ndarray:
        return win_prob_vs_pool(self.ratings(X))

    def win_prob(self, X: np.ndarray, a: str | int, b: str | int) -> np.ndarray:
        return _win_prob(self.ratings(X), self.models, a, b)

    def save(self, path: str | Path) -> None:
        X, rows, pair, pairs, y, weight = self._require_fitted()
        arrays = {"X": X, "rows": rows, "pair": pair, "pairs": pairs, "y": y, "weight": weight}
        _save_npz(path, self.kind, {"models": self.models, "hyper": self._hyper()}, arrays)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        meta, arr = _load_npz(path)
        _check_kind(meta, cls.kind)
        router = cls(meta["models"], **meta["hyper"])
        router.X_, router.rows_, router.pair_ = arr["X"], arr["rows"], arr["pair"]
        router.pairs_, router.y_, router.weight_ = arr["pairs"], arr["y"], arr["weight"]
        return router


# ---------------------------------------------------------------------------------------------
# 3. Gold-label regression (full-information supervised baseline)
# ---------------------------------------------------------------------------------------------


class GoldRegressionRouter:
    """One regression per model on gold scores: logistic regression when that model's labels
    are all 0/1, ridge clipped to [0, 1] otherwise, a constant when the labels never vary.

    Defaults C = 1, alpha = 1: with unit-norm embeddings and thousands of labels per model this is
    a mild prior (coefficient norms of ~10 cost little against thousands of loss terms) that
    still keeps a model with few labels near its mean; tune them for small data.

    threads=1 (BLAS threads during fit, via threadpoolctl, restored afterwards): lbfgs on these
    sizes makes many small BLAS calls, and two OpenBLAS threads on a busy 2-core host made a
    4-model fit on 2000 rows take 1.4-5.4 s instead of 0.1 s. None leaves BLAS alone.
    """

    kind: ClassVar[str] = "gold_reg"

    def __init__(
        self,
        models: Sequence[str] | None = None,
        *,
        C: float = 1.0,
        alpha: float = 1.0,
        max_iter: int = 2000,
        threads: int | None = 1,
    ) -> None:
        self.models: list[str] = list(models) if models is not None else []
        self.C = C
        self.alpha = alpha
        self.max_iter = max_iter
        self.threads = threads
        self.coef_: np.ndarray | None = None  # (K, d)
        self.intercept_: np.ndarray | None = None  # (K,)
        self.link_: list[str] = []  # per model: "logistic" | "ridge" | "constant"
        self.n_labels_: list[int] = []

    def _hyper(self) -> dict[str, Any]:
        return {
            "C": self.C,
            "alpha": self.alpha,
            "max_iter": self.max_iter,
            "threads": self.threads,
        }

    def fit(self, X: np.ndarray, scores: np.ndarray, models: Sequence[str] | None = None) -> Self:
        """scores: (n, K) gold scores in [0, 1], NaN where a model was not graded."""
        X = _as_embeddings(X)
        y = np.asarray(scores, dtype=np.float64)
        if models is not None:
            self.models = list(models)
        if y.ndim != 2 or y.shape[0] != X.shape[0] or y.shape[1] != len(self.models):
            raise ValueError(f"scores must be (n, K) = ({X.shape[0]}, {len(self.models)})")
        with threadpool_limits(limits=self.threads):
            fitted = [self._fit_one(X, y[:, k], self.models[k]) for k in range(len(self.models))]
        self.coef_ = np.stack([f[0] for f in fitted])
        self.intercept_ = np.array([f[1] for f in fitted])
        self.link_ = [f[2] for f in fitted]
        self.n_labels_ = [int(np.isfinite(y[:, k]).sum()) for k in range(len(self.models))]
        return self

    def _fit_one(self, X: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, float, str]:
        from sklearn.linear_model import LogisticRegression, Ridge

        mask = np.isfinite(y)
        if not mask.any():
            raise ValueError(f"model {name!r} has no gold labels")
        Xm, ym = X[mask].astype(np.float64), y[mask]
        zero = np.zeros(X.shape[1])
        if np.ptp(ym) == 0:
            return zero, float(np.clip(ym[0], 0.0, 1.0)), "constant"
        if np.isin(ym, (0.0, 1.0)).all():
            clf = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(Xm, ym.astype(int))
            return clf.coef_[0].astype(np.float64), float(clf.intercept_[0]), "logistic"
        reg = Ridge(alpha=self.alpha).fit(Xm, ym)
        return np.asarray(reg.coef_, np.float64), float(reg.intercept_), "ridge"

    def predict_quality(self, X: np.ndarray) -> np.ndarray:
        if self.coef_ is None or self.intercept_ is None:
            raise RuntimeError("router is not fitted")
        X = _as_embeddings(X, self.coef_.shape[1])
        z = X.astype(np.float64) @ self.coef_.T + self.intercept_
        logistic = np.array([link == "logistic" for link in self.link_])
        return np.where(logistic, sigmoid(z), np.clip(z, 0.0, 1.0))

    def save(self, path: str | Path) -> None:
        if self.coef_ is None or self.intercept_ is None:
            raise RuntimeError("router is not fitted")
        meta = {
            "models": self.models,
            "hyper": self._hyper(),
            "link": self.link_,
            "n_labels": self.n_labels_,
        }
        _save_npz(path, self.kind, meta, {"coef": self.coef_, "intercept": self.intercept_})

    @classmethod
    def load(cls, path: str | Path) -> Self:
        meta, arr = _load_npz(path)
        _check_kind(meta, cls.kind)
        router = cls(meta["models"], **meta["hyper"])
        router.coef_, router.intercept_ = arr["coef"], arr["intercept"]
        router.link_, router.n_labels_ = list(meta["link"]), list(meta["n_labels"])
        return router


# ---------------------------------------------------------------------------------------------
# Generic loading
# ---------------------------------------------------------------------------------------------

ROUTER_CLASSES: dict[str, type[Any]] = {
    cls.kind: cls for cls in (BradleyTerryMFRouter, SimilarityWeightedRouter, GoldRegressionRouter)
}


def load_router(path: str | Path) -> QualityRouter:
    """Load any router saved by this module, dispatching on the file's `kind`."""
    kind = _read_meta(path).get("kind")
    if kind not in ROUTER_CLASSES:
        raise ValueError(f"unknown router kind {kind!r} in {path}")
    router: QualityRouter = ROUTER_CLASSES[kind].load(path)
    return router
