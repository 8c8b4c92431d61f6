"""Gold audits: sampling, the grader queue, grading; retraining on bias-corrected labels."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from bandit_router.api.app import create_app
from bandit_router.audit.sampling import audit_probability, selected_for_audit
from bandit_router.config import Settings
from bandit_router.runtime import Runtime


@pytest.fixture
def audited(settings: Settings, encoder):  # type: ignore[no-untyped-def]
    """A service that sends every decision to audit."""
    s = settings.model_copy(update={"audit_rate_floor": 1.0, "audit_rate_max": 1.0})
    rt = Runtime(s, encoder=encoder, scheduler=False)
    with TestClient(create_app(s, rt)) as c:
        yield c, rt
    rt.close()


def test_audit_probability_is_logged_and_has_a_floor() -> None:
    import numpy as np

    assert audit_probability(np.array([1.0, 0.0]), 0.02, 0.1, 0.5) == pytest.approx(0.02)
    assert audit_probability(np.array([0.5, 0.5]), 0.02, 0.1, 0.5) == pytest.approx(0.07)
    share = np.mean([selected_for_audit(f"d{i}", 0.05) for i in range(20_000)])
    assert share == pytest.approx(0.05, abs=0.006)


def test_decisions_carry_their_audit_probability(client) -> None:  # type: ignore[no-untyped-def]
    out = client.post("/v1/route", json={"prompt": "hello there"}).json()
    logged = client.get(f"/v1/decisions/{out['decision_id']}").json()
    assert logged["audit_probability"] >= 0.02


def test_audit_round_trip(audited) -> None:  # type: ignore[no-untyped-def]
    client, _ = audited
    ids = [
        client.post("/v1/route", json={"prompt": f"Integrate x^{i} dx"}).json()["decision_id"]
        for i in range(3)
    ]
    pending = client.get("/v1/audits/pending").json()
    assert [p["decision_id"] for p in pending] == ids
    claimed = client.post("/v1/audits/claim", json={"grader_id": "ann", "limit": 2}).json()
    assert [c["decision_id"] for c in claimed] == ids[:2]
    assert all(c["claimed_by"] == "ann" and c["model"] for c in claimed)
    assert [p["decision_id"] for p in client.get("/v1/audits/pending").json()] == ids[2:]

    r = client.post("/v1/audits", json={"decision_id": ids[0], "score": 0.75, "grader_id": "ann"})
    assert r.status_code == 201 and r.json()["status"] == "graded"
    again = client.post(
        "/v1/audits", json={"decision_id": ids[0], "score": 0.75, "grader_id": "ann"}
    )
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    clash = client.post(
        "/v1/audits", json={"decision_id": ids[0], "pass": False, "grader_id": "bo"}
    )
    assert clash.status_code == 409
    r = client.post("/v1/audits", json={"decision_id": ids[1], "pass": True, "grader_id": "ann"})
    assert r.status_code == 201 and r.json()["score"] == 1.0

    bad = [
        ({"decision_id": ids[2], "grader_id": "a"}, 422),
        ({"decision_id": ids[2], "score": 0.5, "pass": True, "grader_id": "a"}, 422),
        ({"decision_id": ids[2], "score": 1.5, "grader_id": "a"}, 422),
        ({"decision_id": ids[2], "score": 0.5}, 422),
        ({"decision_id": "f" * 32, "score": 0.5, "grader_id": "a"}, 404),
    ]
    for body, status in bad:
        assert client.post("/v1/audits", json=body).status_code == status, body


def test_unselected_decision_cannot_be_graded(client) -> None:  # type: ignore[no-untyped-def]
    client.app.state.runtime.settings = client.app.state.runtime.settings.model_copy(
        update={"audit_rate_floor": 0.0, "audit_uncertainty_boost": 0.0}
    )
    did = client.post("/v1/route", json={"prompt": "hi"}).json()["decision_id"]
    r = client.post("/v1/audits", json={"decision_id": did, "score": 1, "grader_id": "a"})
    assert r.status_code == 409 and "not selected" in r.json()["detail"]


def test_graders_never_claim_the_same_audit(audited) -> None:  # type: ignore[no-untyped-def]
    client, rt = audited
    for i in range(40):
        client.post("/v1/route", json={"prompt": f"question number {i}"})
    from datetime import timedelta

    from bandit_router.store import repository as repo

    got: dict[str, list[int]] = {}

    def grader(name: str) -> None:
        mine: list[int] = []
        while True:
            with rt.engine.begin() as conn:
                ids = repo.claim_audits(conn, name, 3, timedelta(hours=1))
            if not ids:
                break
            mine.extend(ids)
        got[name] = mine

    threads = [threading.Thread(target=grader, args=(f"g{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in got.values() for i in ids]
    assert len(everything) == 40
    assert len(set(everything)) == 40
