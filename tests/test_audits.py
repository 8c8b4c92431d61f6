"""Gold audits: sampling, the grader queue, grading; retraining on bias-corrected labels."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from runtime_settings import change_settings

from bandit_router.app import create_app
from bandit_router.audit.sampling import audit_probability, selected_for_audit
from bandit_router.config import Settings
from bandit_router.runtime import Runtime
from bandit_router.services import audits as audit_service
from bandit_router.store.records import AuditTextRecord


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
    change_settings(client.app.state.runtime, audit_rate_floor=0.0, audit_uncertainty_boost=0.0)
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


# --- the text an audit needs ----------------------------------------------------------------------


def _audit_all(rt: Runtime, **more: object) -> None:
    """Every decision from now on is drawn for an audit (the routes read rt.settings)."""
    change_settings(rt, **{"audit_rate_floor": 1.0, "audit_rate_max": 1.0, **more})


def _audit_none(rt: Runtime, **more: object) -> None:
    change_settings(rt, **{"audit_rate_floor": 0.0, "audit_uncertainty_boost": 0.0, **more})


def _text(rt: Runtime, decision_id: str) -> AuditTextRecord | None:
    from bandit_router.store import repository as repo

    with rt.engine.connect() as conn:
        return repo.get_audit_text(conn, decision_id)


def _answer(rt: Runtime, decision_id: str) -> str | None:
    text = _text(rt, decision_id)
    return text.answer if text is not None else None


def test_an_audited_decision_keeps_its_prompt_and_answer_until_graded(client, runtime) -> None:  # type: ignore[no-untyped-def]
    assert runtime.settings.store_prompts is False
    _audit_all(runtime)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    did = client.post("/v1/route", json={"messages": messages}).json()["decision_id"]
    assert client.get(f"/v1/decisions/{did}").json()["prompt"] is None  # not with the decision
    (item,) = client.get("/v1/audits/pending").json()
    assert item["prompt"] == "system: Be brief.\n\nuser: What is 2 + 2?"
    assert item["answer"] is None and item["round"] == 1

    r = client.post(f"/v1/decisions/{did}/answer", json={"answer": "5"})
    assert r.status_code == 201 and r.json() == {"decision_id": did, "status": "created"}
    r = client.post(f"/v1/decisions/{did}/answer", json={"answer": "4"})
    assert r.status_code == 200 and r.json()["status"] == "replaced"
    (claimed,) = client.post("/v1/audits/claim", json={"grader_id": "ann"}).json()
    assert claimed["answer"] == "4" and claimed["prompt"].endswith("What is 2 + 2?")

    r = client.post(
        "/v1/audits",
        json={"decision_id": did, "pass": True, "grader_id": "ann", "rubric": "arith-v1"},
    )
    assert r.status_code == 201
    assert _text(runtime, did) is None  # graded: the text is deleted
    late = client.post(f"/v1/decisions/{did}/answer", json={"answer": "4"})
    assert late.status_code == 409 and "graded" in late.json()["detail"]


def test_answers_are_refused_where_no_text_is_kept(client, runtime) -> None:  # type: ignore[no-untyped-def]
    _audit_none(runtime)
    did = client.post("/v1/route", json={"prompt": "hello"}).json()["decision_id"]
    r = client.post(f"/v1/decisions/{did}/answer", json={"answer": "hi"})
    assert r.status_code == 409 and "not drawn for an audit" in r.json()["detail"]
    assert client.post(f"/v1/decisions/{'f' * 32}/answer", json={"answer": "x"}).status_code == 404
    for bad in ({"answer": ""}, {"answer": "  \n"}, {"answer": 3}, {}, {"answer": "a", "x": 1}):
        assert client.post(f"/v1/decisions/{did}/answer", json=bad).status_code == 422, bad
    _audit_none(runtime, store_prompts=True)  # prompts stored: any answer may be kept
    did = client.post("/v1/route", json={"prompt": "hello again"}).json()["decision_id"]
    assert client.post(f"/v1/decisions/{did}/answer", json={"answer": "hi"}).status_code == 201
    text = _text(runtime, did)
    assert text is not None and (text.prompt, text.answer) == ("hello again", "hi")


def test_no_text_of_an_unaudited_decision_is_stored(client, runtime) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    _audit_none(runtime)
    for i in range(5):
        client.post("/v1/route", json={"prompt": f"private question {i}"})
    with runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_texts")).scalar() == 0
        assert (
            conn.execute(text("SELECT count(*) FROM decisions WHERE prompt IS NOT NULL")).scalar()
            == 0
        )


def test_answer_bodies_are_bounded_by_the_request_limit(make_client, runtime) -> None:  # type: ignore[no-untyped-def]
    client = make_client(max_body_bytes=2048)
    _audit_all(runtime)
    did = client.post("/v1/route", json={"prompt": "hello"}).json()["decision_id"]
    r = client.post(f"/v1/decisions/{did}/answer", json={"answer": "x" * 4096})
    assert r.status_code == 413


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_proxy_keeps_the_answer_it_relayed(client, runtime, wire) -> None:  # type: ignore[no-untyped-def]
    import time

    wire(strong="ok", mid="ok", cheap="ok")
    _audit_all(runtime)
    chat = {"model": "router", "messages": [{"role": "user", "content": "Write a haiku."}]}
    r = client.post("/v1/chat/completions", json=chat)
    did, served = r.headers["x-bandit-router-decision-id"], r.headers["x-bandit-router-model"]
    assert _answer(runtime, did) == f"hi from {served}"
    with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as s:
        list(s.iter_lines())
        did = s.headers["x-bandit-router-decision-id"]
    deadline = time.monotonic() + 5
    while _answer(runtime, did) is None:  # written after the stream ended
        assert time.monotonic() < deadline, "the streamed answer was never kept"
        time.sleep(0.02)
    assert _answer(runtime, did) == "softrainfalls"
    _audit_none(runtime)
    did = client.post("/v1/chat/completions", json=chat).headers["x-bandit-router-decision-id"]
    assert _text(runtime, did) is None


def test_kept_text_expires_after_audit_text_days(audited) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from bandit_router.store.models import utcnow

    client, rt = audited
    did = client.post("/v1/route", json={"prompt": "keep me a while"}).json()["decision_id"]
    assert rt.runner.run("audits").result["texts_purged"] == 0
    assert _text(rt, did) is not None
    later = utcnow() + timedelta(days=rt.settings.audit_text_days, seconds=1)
    assert audit_service.purge_texts(rt.engine, rt.settings, now=later) == 1
    assert _text(rt, did) is None
    assert client.get("/v1/audits/pending").json()[0]["prompt"] is None  # still gradable


# --- claims and graders -------------------------------------------------------------------------


def test_a_claim_belongs_to_its_grader(make_client, make_key, runtime) -> None:  # type: ignore[no-untyped-def]
    ann, bo = make_key("grader", "ann"), make_key("grader", "bo")
    admin = make_key("admin")
    client = make_client(audit_rate_floor=1.0, audit_rate_max=1.0)
    as_ = {
        k: {"Authorization": f"Bearer {v}"}
        for k, v in {"ann": ann, "bo": bo, "admin": admin}.items()
    }
    did = client.post("/v1/route", json={"prompt": "2+2?"}, headers=as_["admin"]).json()[
        "decision_id"
    ]
    # A grader cannot pass for another by naming them: the claim belongs to the key.
    claimed = client.post("/v1/audits/claim", json={"grader_id": "ann"}, headers=as_["ann"]).json()
    assert [c["decision_id"] for c in claimed] == [did]
    grade = {"decision_id": did, "score": 0.5, "grader_id": "ann"}
    r = client.post("/v1/audits", json=grade, headers=as_["bo"])
    assert r.status_code == 409 and "claimed by another grader" in r.json()["detail"]
    assert client.post("/v1/audits", json=grade, headers=as_["ann"]).status_code == 201


def test_an_expired_claim_returns_to_the_queue(client, runtime) -> None:  # type: ignore[no-untyped-def]
    import time

    _audit_all(runtime, audit_claim_seconds=0.2)
    did = client.post("/v1/route", json={"prompt": "2+2?"}).json()["decision_id"]
    client.post("/v1/audits/claim", json={"grader_id": "ann"})
    r = client.post("/v1/audits", json={"decision_id": did, "score": 1, "grader_id": "bo"})
    assert r.status_code == 409
    time.sleep(0.3)
    assert [p["decision_id"] for p in client.get("/v1/audits/pending").json()] == [did]
    r = client.post("/v1/audits", json={"decision_id": did, "score": 1, "grader_id": "bo"})
    assert r.status_code == 201


def test_rubric_and_comment_are_kept_with_the_grade(client, runtime) -> None:  # type: ignore[no-untyped-def]
    from bandit_router.store import repository as repo

    _audit_all(runtime)
    did = client.post("/v1/route", json={"prompt": "2+2?"}).json()["decision_id"]
    base = {"decision_id": did, "score": 0.25, "grader_id": "ann"}
    for bad in (
        {"rubric": ""},
        {"rubric": "has space"},
        {"rubric": "x" * 65},
        {"comment": "c" * 2001},
    ):
        assert client.post("/v1/audits", json={**base, **bad}).status_code == 422, bad
    r = client.post("/v1/audits", json={**base, "rubric": "math-v2", "comment": "off by one"})
    assert r.status_code == 201
    with runtime.engine.connect() as conn:
        grade = repo.get_grade(conn, did, 1)
    assert grade is not None
    assert (grade.rubric, grade.comment, grade.grader, grade.score) == (
        "math-v2", "off by one", "ann", 0.25,
    )  # fmt: skip


def test_double_grading_keeps_both_grades_and_reports_agreement(client, runtime) -> None:  # type: ignore[no-untyped-def]
    from bandit_router.store import repository as repo

    _audit_all(runtime, audit_double_grade_rate=1.0)
    ids = [
        client.post("/v1/route", json={"prompt": f"question {i}"}).json()["decision_id"]
        for i in range(2)
    ]
    for did, score in zip(ids, (0.5, 1.0), strict=True):
        r = client.post("/v1/audits", json={"decision_id": did, "score": score, "grader_id": "ann"})
        assert r.status_code == 201 and r.json()["round"] == 1
        assert _text(runtime, did) is not None  # kept for the second grader
    pending = client.get("/v1/audits/pending").json()
    assert [(p["decision_id"], p["round"], p["score"]) for p in pending] == [
        (ids[0], 2, None), (ids[1], 2, None),
    ]  # fmt: skip
    assert client.post("/v1/audits/claim", json={"grader_id": "ann"}).json() == []  # not hers
    claimed = client.post("/v1/audits/claim", json={"grader_id": "bo"}).json()
    assert [(c["round"], c["claimed_by"], c["score"]) for c in claimed] == [(2, "bo", None)] * 2
    cy = client.post("/v1/audits", json={"decision_id": ids[0], "score": 0.25, "grader_id": "cy"})
    assert cy.status_code == 409  # bo's claim
    again = client.post(
        "/v1/audits", json={"decision_id": ids[0], "score": 0.5, "grader_id": "ann"}
    )
    assert again.status_code == 200 and again.json()["round"] == 1
    for did, score in zip(ids, (0.75, 1.0), strict=True):
        r = client.post("/v1/audits", json={"decision_id": did, "score": score, "grader_id": "bo"})
        assert r.status_code == 201 and r.json()["round"] == 2
        assert _text(runtime, did) is None
    with runtime.engine.connect() as conn:
        audit = repo.get_audit(conn, ids[0])
    assert audit is not None and audit.score == 0.5  # the first
    assert client.get("/v1/audits/pending").json() == []
    third = client.post("/v1/audits", json={"decision_id": ids[0], "score": 0.5, "grader_id": "cy"})
    assert third.status_code == 409
    agreement = client.get("/v1/admin/report").json()["agreement"]
    assert agreement == {"pairs": 2, "mean_abs_difference": 0.125, "share_within_0_25": 1.0}


def test_the_retention_purge_takes_an_audits_text_and_grades_with_its_decision(
    client, runtime
) -> None:  # type: ignore[no-untyped-def]
    """audit_texts and audit_grades hang off a decision: a purge that left them would break the
    foreign keys on PostgreSQL and keep text past RETENTION_DAYS."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from bandit_router.jobs.retention import run_retention
    from bandit_router.store import aggregates
    from bandit_router.store.models import AuditGrade, AuditText, utcnow

    _audit_all(runtime, audit_double_grade_rate=1.0)
    graded, kept = (client.post("/v1/route", json={"prompt": f"q {i}"}).json() for i in range(2))
    r = client.post(
        "/v1/audits", json={"decision_id": graded["decision_id"], "score": 0.5, "grader_id": "ann"}
    )
    assert r.status_code == 201  # a first grade; the text stays for the second
    with runtime.engine.begin() as conn:
        for d in (graded, kept):
            aggregates.move_decision(conn, d["decision_id"], utcnow() - timedelta(days=40))
    s = runtime.settings.model_copy(update={"retention_days": 30})
    assert run_retention(runtime.engine, s)["decisions_deleted"] == 2
    with runtime.engine.connect() as conn:
        for table in (AuditText, AuditGrade):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0
