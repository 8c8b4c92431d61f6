"""API keys: roles, 401/403, revocation picked up by the background refresh, the bind check, the
keys CLI, and keys never stored or logged in clear."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import select

from bandit_router.api.auth import BindRefused, check_bind_allowed, is_loopback
from bandit_router.api.logging import JsonFormatter
from bandit_router.config import ConfigError, Settings
from bandit_router.services.keys import has_api_keys
from bandit_router.store import api_keys as store

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ROUTE = {"prompt": "How do I reverse a list in Python?"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(make_key) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {role: make_key(role, f"test {role}") for role in store.ROLES}


def test_roles(make_client, keys) -> None:  # type: ignore[no-untyped-def]
    client = make_client()
    r = client.post("/v1/route", json=ROUTE, headers=bearer(keys["client"]))
    assert r.status_code == 200, r.text
    did = r.json()["decision_id"]
    fb = {"decision_id": did, "type": "thumbs", "value": "up"}
    assert client.post("/v1/feedback", json=fb, headers=bearer(keys["client"])).status_code == 201
    assert client.get(f"/v1/decisions/{did}", headers=bearer(keys["client"])).status_code == 200

    r = client.get("/v1/admin/models", headers=bearer(keys["client"]))
    assert r.status_code == 403
    assert "role 'client'" in r.json()["detail"] and "needs role 'admin'" in r.json()["detail"]
    assert client.get("/v1/audits/pending", headers=bearer(keys["client"])).status_code == 403

    # grader: audits only
    assert client.get("/v1/audits/pending", headers=bearer(keys["grader"])).status_code == 200
    assert client.post("/v1/route", json=ROUTE, headers=bearer(keys["grader"])).status_code == 403
    assert client.get("/v1/admin/models", headers=bearer(keys["grader"])).status_code == 403

    # admin: everything, with either header
    assert client.get("/v1/admin/models", headers=bearer(keys["admin"])).status_code == 200
    assert client.get("/v1/admin/models", headers={"x-api-key": keys["admin"]}).status_code == 200
    assert client.get(f"/v1/decisions/{did}", headers=bearer(keys["admin"])).status_code == 200
    assert client.get("/v1/audits/pending", headers=bearer(keys["admin"])).status_code == 200


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "missing API key"),
        ({"Authorization": "Bearer brk_00000000_nope"}, "unknown API key"),
        ({"x-api-key": "something"}, "unknown API key"),
    ],
)
def test_401_without_a_valid_key(make_client, keys, headers, message) -> None:  # type: ignore[no-untyped-def]
    r = make_client().post("/v1/route", json=ROUTE, headers=headers)
    assert r.status_code == 401
    assert message in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


@SQLITE_ONLY
def test_openai_clients_get_openai_shaped_errors(make_client, keys) -> None:  # type: ignore[no-untyped-def]
    client = make_client()
    r = client.post("/v1/chat/completions", json={"model": "router"})
    assert r.status_code == 401
    assert r.json()["error"] == {
        "message": r.json()["detail"],
        "type": "authentication_error",
        "code": 401,
    }
    r = client.post("/v1/chat/completions", json={}, headers=bearer(keys["grader"]))
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert "error" not in client.post("/v1/route", json=ROUTE).json()  # the rest: just "detail"


@SQLITE_ONLY
def test_open_paths_need_no_key(make_client, keys) -> None:  # type: ignore[no-untyped-def]
    client = make_client()
    for path in ("/healthz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_revoked_key_stops_working_within_seconds(make_client, make_key, runtime) -> None:  # type: ignore[no-untyped-def]
    key = make_key("client")
    client = make_client()
    assert client.get("/v1/decisions/x", headers=bearer(key)).status_code == 404
    with runtime.engine.begin() as conn:
        prefix = store.prefix_of(key)
        revoked = store.revoke_key(conn, prefix)
        assert revoked is not None and revoked.revoked_at is not None
    deadline = time.monotonic() + 10  # the refresh runs every STATE_POLL_SECONDS (0.2 s here)
    while (r := client.get("/v1/decisions/x", headers=bearer(key))).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key still works"
        time.sleep(0.05)
    assert f"{prefix} has been revoked" in r.json()["detail"]


@SQLITE_ONLY
def test_revoking_the_last_key_locks_rather_than_opens(make_client, make_key, runtime) -> None:  # type: ignore[no-untyped-def]
    key = make_key("admin")
    with runtime.engine.begin() as conn:
        store.revoke_key(conn, store.prefix_of(key))
    assert make_client().post("/v1/route", json=ROUTE).status_code == 401


@SQLITE_ONLY
def test_required_and_disabled_settings(make_client, make_key) -> None:  # type: ignore[no-untyped-def]
    required = make_client(auth_required=True)  # no key exists yet
    assert required.post("/v1/route", json=ROUTE).status_code == 401
    make_key("client")
    disabled = make_client(auth_disabled=True)
    assert disabled.post("/v1/route", json=ROUTE).status_code == 200


@SQLITE_ONLY
def test_open_service_warns_at_start(make_client, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="bandit_router.api.auth"):
        client = make_client()
    assert "AUTHENTICATION IS OFF" in caplog.text
    assert client.post("/v1/route", json=ROUTE).status_code == 200


@SQLITE_ONLY
def test_keys_are_stored_hashed_and_never_logged(  # type: ignore[no-untyped-def]
    make_client, keys, runtime, caplog, restore_logging
) -> None:
    with caplog.at_level(logging.DEBUG):
        client = make_client(log_format="json")
        client.post("/v1/route", json=ROUTE, headers=bearer(keys["client"]))
        client.get("/v1/admin/models", headers=bearer(keys["client"]))
        client.get("/v1/admin/models", headers=bearer(keys["client"] + "x"))
    logged = caplog.text + "".join(JsonFormatter().format(r) for r in caplog.records)
    assert store.prefix_of(keys["client"]) in logged  # the prefix identifies the caller
    with runtime.engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(select(store.ApiKey.__table__))]
    for key in keys.values():
        secret = key.removeprefix(store.prefix_of(key) + "_")
        assert secret not in logged
        assert not any(secret in str(v) for row in stored for v in row)
        assert any(store.hash_key(key) in row for row in stored)


def test_bind_check() -> None:
    s = Settings()
    check_bind_allowed(s, "127.0.0.1", has_keys=False)
    check_bind_allowed(s, "::1", has_keys=False)
    check_bind_allowed(s, "localhost", has_keys=False)
    check_bind_allowed(s, "0.0.0.0", has_keys=True)
    check_bind_allowed(s.model_copy(update={"auth_disabled": True}), "0.0.0.0", has_keys=False)
    check_bind_allowed(s.model_copy(update={"auth_required": True}), "0.0.0.0", has_keys=False)
    for host in ("0.0.0.0", "::", "10.1.2.3", "router.internal"):
        with pytest.raises(BindRefused, match="BANDIT_ROUTER_AUTH_DISABLED=true"):
            check_bind_allowed(s, host, has_keys=False)
    both = s.model_copy(update={"auth_disabled": True, "auth_required": True})
    with pytest.raises(ConfigError, match="both true"):
        check_bind_allowed(both, "127.0.0.1", has_keys=True)
    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and not is_loopback("")


def test_keys_cli(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from bandit_router.cli import main

    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("BANDIT_ROUTER_DATABASE_URL", url)
    assert not has_api_keys(url)
    assert main(["keys", "create", "--role", "grader", "--name", "ann"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("brk_") and "shown only now" in out.err
    assert has_api_keys(url)

    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    prefix = store.prefix_of(key)
    assert prefix in listed and "grader" in listed and "ann" in listed
    assert key not in listed and store.hash_key(key) not in listed

    assert main(["keys", "revoke", prefix]) == 0
    assert "revoked key 1" in capsys.readouterr().out
    assert main(["keys", "revoke", "brk_ffffffff"]) == 1
    assert "no key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["keys", "create", "--role", "root"])
