"""The console's pages without a browser, on SQLite and PostgreSQL: the aggregates each database
computes (its own time-bucket SQL), sessions and the cross-site check."""

from __future__ import annotations

import re

import pytest

from bandit_router.console.session import Signer

ORIGIN = {"origin": "http://testserver"}


def _fill(client, n: int = 12) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    for i in range(n):
        r = client.post("/v1/route", json={"prompt": f"What is {i} plus {i + 1}?"})
        ids.append(r.json()["decision_id"])
        thumbs = {"decision_id": ids[-1], "type": "thumbs", "value": "up" if i % 4 else "down"}
        assert client.post("/v1/feedback", json=thumbs).status_code == 201
    return ids


def _card(html: str, card: str) -> str:
    found = re.search(rf'id="{card}">([^<]*)<', html)
    assert found, card
    return found.group(1)


def test_overview_numbers_come_from_the_store(client) -> None:  # type: ignore[no-untyped-def]
    ids = _fill(client)
    page = client.get("/console/overview?window=1h")  # no key exists: the console is open
    assert page.status_code == 200
    assert _card(page.text, "decisions") == "12"
    assert _card(page.text, "mean-reward") == "0.750"  # 9 ups of 12
    assert page.text.count("<svg") == 3 and "no data" not in page.text
    decision = client.get(f"/console/decisions/{ids[0]}")
    assert decision.status_code == 200 and ids[0] in decision.text
    models = client.get("/console/models")
    assert sum(int(n) for n in re.findall(r"<td>(\d+) \(\d+%\)</td>", models.text)) == 12


def test_console_is_not_in_the_schema(client) -> None:  # type: ignore[no-untyped-def]
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]


def test_login_sessions_and_cross_site_posts(make_client, make_key) -> None:  # type: ignore[no-untyped-def]
    admin, grader, client_key = make_key("admin"), make_key("grader"), make_key("client")
    c = make_client()
    assert c.get("/console/overview", follow_redirects=False).headers["location"].endswith("/login")
    refused = c.post("/console/login", data={"key": client_key}, headers=ORIGIN)
    assert refused.status_code == 401  # a client key may not use the console
    assert c.post("/console/login", data={"key": admin}).status_code == 403  # no Origin
    ok = c.post("/console/login", data={"key": admin}, headers=ORIGIN, follow_redirects=False)
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and admin not in cookie
    assert c.get("/console/policies").status_code == 200
    foreign = {"origin": "http://evil.example"}
    assert c.post("/console/policies/1/activate", headers=foreign).status_code == 403
    c.cookies.clear()
    c.post("/console/login", data={"key": grader}, headers=ORIGIN)
    assert c.get("/console/overview").status_code == 403
    assert c.get("/console/workbench").status_code == 200


def test_signed_cookie_expires_and_resists_tampering() -> None:
    signer = Signer(b"secret", max_age=60)
    cookie = signer.issue("brk_abc_def")
    assert signer.key_hash(cookie)
    assert signer.key_hash(cookie[:-1] + ("0" if cookie[-1] != "0" else "1")) is None
    assert Signer(b"other", max_age=60).key_hash(cookie) is None
    expired = Signer(b"secret", max_age=-1).issue("brk_abc_def")
    assert signer.key_hash(expired) is None


@pytest.mark.parametrize("given", ["", "x", "a.b", "a.b.c"])
def test_malformed_cookies_are_no_session(given: str) -> None:
    assert Signer(b"secret", max_age=60).key_hash(given) is None


HOSTILE_FORMS = [
    ("/console/models/gpt-4o", {"input_price": "nan"}),
    ("/console/models/gpt-4o", {"input_price": "inf"}),
    ("/console/models/gpt-4o", {"output_price": "1e400"}),
    ("/console/models/gpt-4o", {"expected_output_tokens": "-3"}),
    ("/console/models/no%2Fsuch", {"action": "disable"}),
    ("/console/workbench/claim", {"limit": "9" * 30}),
    ("/console/workbench/grade", {"decision_id": "x", "score": "nan"}),
    ("/console/workbench/grade", {"decision_id": "x", "score": "-inf"}),
    ("/console/workbench/grade", b"decision_id=%ED%A0%80&score=0.5"),  # a lone surrogate
    ("/console/workbench/grade", b"decision_id=\xff\xfe&score=0.5"),  # not UTF-8
    ("/console/policies/99999999999999999999999/activate", {}),
    ("/console/login", {"key": "\x00" * 10}),
]


@pytest.mark.parametrize(("path", "fields"), HOSTILE_FORMS)
def test_hostile_forms_get_no_server_error(
    client, path: str, fields: dict[str, str] | bytes
) -> None:  # type: ignore[no-untyped-def]
    _fill(client, 2)
    before = client.get("/v1/admin/models").json()
    if isinstance(fields, bytes):
        form = {"content-type": "application/x-www-form-urlencoded"}
        r = client.post(path, content=fields, headers=ORIGIN | form, follow_redirects=False)
    else:
        r = client.post(path, data=fields, headers=ORIGIN, follow_redirects=False)
    assert r.status_code < 500, (path, fields, r.status_code)
    after = client.get("/v1/admin/models").json()
    assert after == before  # a refused change changes nothing
