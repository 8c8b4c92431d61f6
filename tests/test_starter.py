"""The packaged starter policy: a fresh store on the example pool routes sensibly from the first
request (issue 11, "A fresh install"). Real Vowpal Wabbit, real SQL; the held-out check reads
../shared/data when it is there.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import SHARED_DATA
from served import serving
from sqlalchemy import Engine

from bandit_router.config import EXAMPLE_POOL, Settings, load_settings
from bandit_router.jobs.retrain import base_policy
from bandit_router.offline import starter
from bandit_router.policy.pool import load_pool_file
from bandit_router.runtime import prepare_database
from bandit_router.services.policies import load_policy
from bandit_router.services.warm_start import publish_warm_start
from bandit_router.store import repository as repo
from bandit_router.store.db import make_engine
from bandit_router.store.models import PolicyVersion

POOL = [s.name for s in load_pool_file(EXAMPLE_POOL)]
OTHER_VW_ARGS = "--cb_adf -q sa --cb_type mtr -l 0.1 --quiet"


def fresh_store(database_url: str, **overrides: object) -> tuple[Settings, Engine]:
    settings = load_settings(database_url=database_url, pool_file=EXAMPLE_POOL, **overrides)
    engine = make_engine(settings.database_url)
    prepare_database(engine, settings)
    return settings, engine


def active_row(engine: Engine) -> PolicyVersion:
    with engine.connect() as conn:
        version = repo.active_policy_id(conn)
        assert version is not None
        row = repo.get_policy(conn, version)
    assert row is not None
    return row


def test_the_packaged_starter_fits_the_current_code() -> None:
    """Fails after a change to VW_ARGS' default or to policy/features.py until the starter is
    rebuilt (`bandit-router build-starter`), instead of fresh installs silently starting cold."""
    meta = starter.read_meta()
    assert meta is not None, "no starter in the package: run `bandit-router build-starter`"
    blob = (starter.STARTER_DIR / starter.POLICY_FILE).read_bytes()
    assert starter.refusal(meta, Settings().vw_args, blob) is None, starter.REBUILD
    assert sorted(meta["models"]) == sorted(POOL)
    size = sum(f.stat().st_size for f in starter.STARTER_DIR.iterdir())
    assert size < 5 * 2**20


def test_a_fresh_store_starts_from_the_starter(database_url: str) -> None:
    settings, engine = fresh_store(database_url)
    try:
        row = active_row(engine)
        assert row.source == starter.SOURCE
        assert row.vw_args == settings.vw_args
        assert set(row.model_counts) == set(POOL)
        # Not cold: the models are told apart on a query (cold predicts 0 for every one).
        policy = load_policy(engine, row.id)
        assert policy.regions is not None
        quality = policy.model.predict(policy.regions[0], POOL)  # a typical training question
        assert np.ptp(quality) > 0.1
        # Retraining starts from it, as it would from a cold or warm-start version.
        assert base_policy(engine).source == starter.SOURCE
        # A second start keeps the active policy; a warm start replaces it.
        prepare_database(engine, settings)
        assert active_row(engine).id == row.id
        X = np.eye(4, 384, dtype=np.float32)
        publish_warm_start(engine, settings.vw_args, X, POOL[:2], np.full((4, 2), 0.5))
        assert active_row(engine).source == "warm_start"
        assert base_policy(engine).source == "warm_start"
    finally:
        engine.dispose()


def test_a_starter_built_under_other_vw_args_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bandit_router.offline.starter")
    _, engine = fresh_store(f"sqlite:///{tmp_path}/router.db", vw_args=OTHER_VW_ARGS)
    try:
        row = active_row(engine)
        assert row.source == "cold" and row.vw_args == OTHER_VW_ARGS
    finally:
        engine.dispose()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "starter policy not used" in warning and OTHER_VW_ARGS in warning
    assert "build-starter" in warning


def test_a_starter_is_refused_for_other_features_or_bytes_and_other_pools(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vw_args = Settings().vw_args
    copy = tmp_path / "starter"
    shutil.copytree(starter.STARTER_DIR, copy)
    assert starter.load_starter(vw_args, POOL, copy) is not None
    assert starter.load_starter(vw_args, POOL[:2], copy) is not None  # a smaller pool is covered
    with caplog.at_level(logging.INFO, logger="bandit_router.offline.starter"):
        assert starter.load_starter(vw_args, [*POOL, "my-model"], copy) is None
    assert "my-model" in caplog.text and not caplog.records[-1].levelno > logging.INFO

    meta = json.loads((copy / starter.META_FILE).read_text())
    (copy / starter.META_FILE).write_text(json.dumps({**meta, "features_sha256": "0" * 64}))
    with caplog.at_level(logging.WARNING, logger="bandit_router.offline.starter"):
        assert starter.load_starter(vw_args, POOL, copy) is None
    assert "features.py" in caplog.records[-1].getMessage()

    (copy / starter.META_FILE).write_text(json.dumps(meta))
    (copy / starter.POLICY_FILE).write_bytes(b"half a file")
    assert starter.load_starter(vw_args, POOL, copy) is None
    assert "policy.vw is not the file" in caplog.records[-1].getMessage()


@pytest.mark.shared_data
def test_the_starter_ranks_the_pool_on_held_out_mmlu_pro(encoder) -> None:  # type: ignore[no-untyped-def]
    """On MMLU-Pro questions it was not trained on, the starter predicts a higher quality for
    the pool's strongest model (by those questions' gold answers) than for its weakest."""
    folder = SHARED_DATA / "mmlu_pro"
    if not folder.is_dir():
        pytest.skip(f"shared data not available at {folder}")
    from bandit_router.bench.starter_build import mmlu_pro_gold, pool_sources
    from bandit_router.policy.learner import QualityModel
    from bandit_router.policy.pool import ModelSpec

    specs = [ModelSpec(**s.model_dump()) for s in load_pool_file(EXAMPLE_POOL)]
    gm = mmlu_pro_gold(SHARED_DATA, pool_sources(specs))
    heldout = np.flatnonzero([starter.is_heldout(q) for q in gm.prompt_ids])
    meta = starter.read_meta()
    assert meta is not None
    assert len(heldout) == meta["metrics"]["starter"]["heldout_questions"]
    test = gm.take(heldout[:: max(1, len(heldout) // 300)])  # ~300 of them: a few seconds
    accuracy = test.scores.mean(axis=0)
    strongest, weakest = int(np.argmax(accuracy)), int(np.argmin(accuracy))
    assert accuracy[strongest] - accuracy[weakest] > 0.2

    loaded = starter.load_starter(Settings().vw_args, POOL)
    assert loaded is not None
    model = QualityModel(loaded["vw_args"], loaded["model_bytes"])
    try:
        X = encoder.encode([str(p) for p in test.prompts])
        predicted = np.array([model.predict(x, test.models) for x in X])
    finally:
        model.close()
    assert predicted[:, strongest].mean() > predicted[:, weakest].mean() + 0.15
    assert (predicted[:, strongest] > predicted[:, weakest]).mean() > 0.9
    # The predicted order of the five models follows their held-out accuracy at the ends.
    assert int(np.argmax(predicted.mean(axis=0))) in np.argsort(accuracy)[-2:]


def test_a_fresh_serve_routes_a_maths_question_on_predicted_quality(tmp_path: Path) -> None:
    """`./dev serve` on a fresh SQLite store and the example pool."""
    env = {
        "BANDIT_ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db",
        "BANDIT_ROUTER_POOL_FILE": str(EXAMPLE_POOL),
    }
    question = "Solve for x: 3x^2 - 12x + 9 = 0. Give both roots."
    with serving(env, tmp_path / "server.log") as base:
        r = httpx.post(
            f"{base}/v1/route", json={"prompt": question, "preset": "quality"}, timeout=30
        )
        assert r.status_code == 200, r.text
        body = r.json()
        policies = httpx.get(f"{base}/v1/admin/policies", timeout=30).json()
    quality = {c["model"]: c["predicted_quality"] for c in body["candidates"]}
    assert set(quality) == set(POOL)
    assert any(q != 0 for q in quality.values())
    # The frontier models (or their stand-ins) above the two small open ones: the MMLU-Pro order.
    ranked = sorted(quality, key=quality.__getitem__)
    small = {"mixtral-8x7b-instruct", "llama-3.1-8b-instruct"}
    assert ranked[0] in small and ranked[-1] not in small
    assert quality[ranked[-1]] - quality[ranked[0]] > 0.1
    served = next(p for p in policies if p["id"] == body["policy_version"])
    assert served["source"] == starter.SOURCE


def test_build_starter_says_in_one_line_what_it_cannot_use(
    tmp_path: Path,
    pool_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bandit_router.cli import main

    out = tmp_path / "out"
    args = ["build-starter", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    monkeypatch.setenv("BANDIT_ROUTER_SHARED_DATA", str(tmp_path / "nowhere"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "nowhere/mmlu_pro" in err and "Traceback" not in err
    # A pool with a model no public data is mapped to: named, before any data is read.
    monkeypatch.setenv("BANDIT_ROUTER_POOL_FILE", str(pool_file))
    assert main(args) == 2
    assert "no public data is mapped to pool model(s) strong, mid, cheap" in capsys.readouterr().err
    assert not out.exists()
