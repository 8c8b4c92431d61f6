"""Offline routers learn topic-specific winners from synthetic battles / gold labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bandit_router.offline.routers import (
    BradleyTerryMFRouter,
    GoldRegressionRouter,
    QualityRouter,
    SimilarityWeightedRouter,
    load_router,
    win_prob_vs_pool,
)

MODELS = ["m1", "m2", "m3", "m4"]
DIM = 384


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def _topics(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n embeddings around two fixed topic centres (A = 0, B = 1), noisy but separable."""
    centres = _unit(np.random.default_rng(123).normal(size=(2, DIM)))
    topic = rng.integers(0, 2, size=n)
    noise = rng.normal(size=(n, DIM)) * (1.0 / np.sqrt(DIM))
    return _unit(centres[topic] + noise), topic


def _battles(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """m1 always wins on topic A, m2 on topic B; every other match-up is a coin flip or a tie."""
    X, topic = _topics(rng, n)
    a = rng.integers(0, 4, size=n)
    b = (a + rng.integers(1, 4, size=n)) % 4
    specialist = np.where(topic == 0, 0, 1)
    coin = rng.choice(np.array(["model_a", "model_b", "tie"]), size=n, p=[0.4, 0.4, 0.2])
    winner = np.where(a == specialist, "model_a", np.where(b == specialist, "model_b", coin))
    names = np.array(MODELS)
    return {"X": X, "topic": topic, "a": names[a], "b": names[b], "winner": winner}


@pytest.fixture(scope="module")
def battles() -> dict[str, np.ndarray]:
    return _battles(np.random.default_rng(0), 3000)


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    return _topics(np.random.default_rng(1), 400)


@pytest.fixture(scope="module")
def mf_router(battles: dict[str, np.ndarray]) -> BradleyTerryMFRouter:
    router = BradleyTerryMFRouter(epochs=15, batch_size=256, seed=0)
    return router.fit(battles["X"], battles["a"], battles["b"], battles["winner"])


def _assert_topic_winners(quality: np.ndarray, topic: np.ndarray, models: list[str]) -> None:
    assert quality.shape == (topic.size, 4)
    assert np.all((quality >= 0) & (quality <= 1))
    best = np.array(models)[quality.argmax(axis=1)]
    assert np.mean(best[topic == 0] == "m1") >= 0.95
    assert np.mean(best[topic == 1] == "m2") >= 0.95


def test_win_prob_vs_pool_two_models_is_pairwise_win_prob() -> None:
    s = np.array([[2.0, 0.0], [0.0, 1.0]])
    q = win_prob_vs_pool(s)
    np.testing.assert_allclose(q[:, 0], 1 / (1 + np.exp(-(s[:, 0] - s[:, 1]))))
    np.testing.assert_allclose(q.sum(axis=1), 1.0)


def test_mf_ranks_topic_specialist_first(mf_router, held_out) -> None:  # type: ignore[no-untyped-def]
    X, topic = held_out
    assert mf_router.models == MODELS
    _assert_topic_winners(mf_router.predict_quality(X), topic, mf_router.models)
    assert mf_router.loss_history_[-1] < mf_router.loss_history_[0]


def test_mf_win_prob_is_antisymmetric(mf_router, held_out) -> None:  # type: ignore[no-untyped-def]
    X, topic = held_out
    p = mf_router.win_prob(X, "m1", "m2")
    np.testing.assert_allclose(p + mf_router.win_prob(X, 1, 0), 1.0, atol=1e-12)
    assert p[topic == 0].mean() > 0.8 and p[topic == 1].mean() < 0.2


def test_mf_is_deterministic_for_a_seed(battles) -> None:  # type: ignore[no-untyped-def]
    def fit() -> np.ndarray:
        r = BradleyTerryMFRouter(dim=16, epochs=2, batch_size=512, seed=7)
        r.fit(battles["X"][:800], battles["a"][:800], battles["b"][:800], battles["winner"][:800])
        return r.predict_quality(battles["X"][:50])

    np.testing.assert_array_equal(fit(), fit())


def test_mf_two_models_quality_is_strong_vs_weak_prob() -> None:
    rng = np.random.default_rng(3)
    X, topic = _topics(rng, 1500)
    # "strong" wins topic B always, topic A only 30% of the time (70% "weak").
    strong_wins = np.where(topic == 1, 1.0, (rng.random(1500) < 0.3).astype(float))
    router = BradleyTerryMFRouter(["strong", "weak"], dim=32, epochs=20, batch_size=128)
    router.fit(X, np.zeros(1500, dtype=int), np.ones(1500, dtype=int), strong_wins)
    Xt, tt = _topics(np.random.default_rng(4), 200)
    q = router.predict_quality(Xt)
    np.testing.assert_allclose(q[:, 0], router.win_prob(Xt, "strong", "weak"), atol=1e-12)
    assert q[tt == 1, 0].mean() > 0.85
    assert abs(q[tt == 0, 0].mean() - 0.3) < 0.15


def test_mf_ties_drop_and_index_inputs(battles) -> None:  # type: ignore[no-untyped-def]
    idx = {m: i for i, m in enumerate(MODELS)}
    a = np.array([idx[m] for m in battles["a"]])
    b = np.array([idx[m] for m in battles["b"]])
    # The winner may also be given by name; ties dropped as in RouteLLM.
    names = np.where(
        battles["winner"] == "model_a",
        battles["a"],
        np.where(battles["winner"] == "model_b", battles["b"], "tie (bothbad)"),
    )
    router = BradleyTerryMFRouter(MODELS, dim=32, epochs=10, batch_size=256, ties="drop")
    router.fit(battles["X"], a, b, names)
    X, topic = _topics(np.random.default_rng(5), 200)
    _assert_topic_winners(router.predict_quality(X), topic, MODELS)


def test_mf_rows_map_battles_to_shared_prompts() -> None:
    rng = np.random.default_rng(8)
    prompts, topic = _topics(rng, 300)
    rows = np.repeat(np.arange(300), 4)  # four battles per prompt
    specialist = np.where(topic[rows] == 0, "m1", "m2")
    other = np.array(["m3", "m4"])[rng.integers(0, 2, rows.size)]
    router = BradleyTerryMFRouter(MODELS, dim=32, epochs=25, batch_size=128)
    router.fit(prompts, specialist, other, np.full(rows.size, "model_a"), rows=rows)
    q = router.predict_quality(prompts)
    assert np.mean(q[topic == 0, 0] > q[topic == 0, 2]) > 0.95
    assert np.mean(q[topic == 1, 1] > q[topic == 1, 3]) > 0.95


def test_sw_ranks_topic_specialist_first(battles, held_out) -> None:  # type: ignore[no-untyped-def]
    router = SimilarityWeightedRouter().fit(
        battles["X"], battles["a"], battles["b"], battles["winner"]
    )
    X, topic = held_out
    _assert_topic_winners(router.predict_quality(X), topic, router.models)
    p = router.win_prob(X, "m1", "m2")
    assert p[topic == 0].mean() > 0.6 and p[topic == 1].mean() < 0.4


def test_sw_chunking_does_not_change_results(battles, held_out) -> None:  # type: ignore[no-untyped-def]
    args = (battles["X"], battles["a"], battles["b"], battles["winner"])
    big = SimilarityWeightedRouter().fit(*args)
    small = SimilarityWeightedRouter(chunk_elements=10_000).fit(*args)
    X = held_out[0][:40]
    np.testing.assert_allclose(big.predict_quality(X), small.predict_quality(X), atol=1e-10)


def test_sw_weights_follow_routellm_formula(battles) -> None:  # type: ignore[no-untyped-def]
    router = SimilarityWeightedRouter().fit(
        battles["X"][:200], battles["a"][:200], battles["b"][:200], battles["winner"][:200]
    )
    q = battles["X"][300:302]
    sims = q.astype(np.float64) @ battles["X"][:200].T.astype(np.float64)
    raw = 10 * 10 ** (sims / sims.max(axis=1, keepdims=True))
    expected = raw / raw.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(router.similarity_weights(q), expected, rtol=1e-5)


def _gold_scores(
    rng: np.random.Generator, topic: np.ndarray, missing: float
) -> tuple[np.ndarray, np.ndarray]:
    n = topic.size
    p = np.full((n, 4), 0.35)
    p[topic == 0, 0] = 0.95
    p[topic == 1, 1] = 0.95
    binary = (rng.random((n, 4)) < p).astype(float)
    binary[rng.random((n, 4)) < missing] = np.nan
    return binary, p


def test_gold_logistic_ranks_topic_specialist_first(held_out) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    X, topic = _topics(rng, 2000)
    scores, _ = _gold_scores(rng, topic, missing=0.3)
    router = GoldRegressionRouter().fit(X, scores, MODELS)
    assert router.link_ == ["logistic"] * 4
    Xt, tt = held_out
    q = router.predict_quality(Xt)
    _assert_topic_winners(q, tt, MODELS)
    assert abs(q[tt == 0, 0].mean() - 0.95) < 0.1 and abs(q[tt == 0, 2].mean() - 0.35) < 0.1


def test_gold_ridge_and_constant_links(held_out) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(12)
    X, topic = _topics(rng, 1500)
    _, p = _gold_scores(rng, topic, missing=0.0)
    graded = np.clip(p + rng.normal(0, 0.05, p.shape), 0, 1)  # continuous judge-like scores
    graded[:, 3] = 0.6  # never varies
    router = GoldRegressionRouter(alpha=0.1).fit(X, graded, MODELS)
    assert router.link_ == ["ridge", "ridge", "ridge", "constant"]
    Xt, tt = held_out
    q = router.predict_quality(Xt)
    assert np.all((q >= 0) & (q <= 1))
    np.testing.assert_allclose(q[:, 3], 0.6)
    _assert_topic_winners(q, tt, MODELS)


def test_gold_rejects_model_without_labels() -> None:
    X, _ = _topics(np.random.default_rng(0), 20)
    scores = np.zeros((20, 2))
    scores[:, 1] = np.nan
    with pytest.raises(ValueError, match="no gold labels"):
        GoldRegressionRouter().fit(X, scores, ["a", "b"])


def test_save_load_roundtrip_identical(  # type: ignore[no-untyped-def]
    tmp_path: Path, battles, held_out, mf_router
) -> None:
    X = held_out[0]
    sw = SimilarityWeightedRouter().fit(
        battles["X"][:500], battles["a"][:500], battles["b"][:500], battles["winner"][:500]
    )
    scores, _ = _gold_scores(np.random.default_rng(2), battles["topic"], missing=0.2)
    gold = GoldRegressionRouter().fit(battles["X"], scores, MODELS)
    for name, router in {"mf": mf_router, "sw": sw, "gold": gold}.items():
        assert isinstance(router, QualityRouter)
        path = tmp_path / "sub" / f"{name}.router"
        router.save(path)
        assert path.exists() and not list(path.parent.glob("*.tmp"))
        loaded = load_router(path)
        assert type(loaded) is type(router)
        assert loaded.models == router.models
        np.testing.assert_array_equal(loaded.predict_quality(X), router.predict_quality(X))
        np.testing.assert_array_equal(
            type(router).load(path).predict_quality(X[:5]), router.predict_quality(X[:5])
        )
    with pytest.raises(ValueError, match="not 'gold_reg'"):
        GoldRegressionRouter.load(tmp_path / "sub" / "mf.router")


def test_input_validation(mf_router) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="dimension"):
        mf_router.predict_quality(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match="unknown models"):
        mf_router.win_prob(np.zeros((1, DIM), np.float32), "m1", "gpt-99")
    with pytest.raises(RuntimeError, match="not fitted"):
        BradleyTerryMFRouter(MODELS).predict_quality(np.zeros((1, DIM), np.float32))
    with pytest.raises(ValueError, match="cannot read winner"):
        BradleyTerryMFRouter().fit(np.zeros((1, DIM), np.float32), ["x"], ["y"], ["draw?"])
