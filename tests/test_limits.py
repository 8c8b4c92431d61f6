"""Per-key token buckets (429 + Retry-After) and the request body cap (413)."""

from __future__ import annotations

import pytest

from bandit_router.api.limits import RateLimiter

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# So slow that no token comes back during a test, whatever the machine's speed.
TRICKLE = {"rate_limit_per_second": 0.001, "rate_limit_burst": 2}


def test_token_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.acquire(1, now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire(1, now=0.0) == pytest.approx(0.5)  # next token in 1/rate s
    assert limiter.acquire(2, now=0.0) == 0.0  # another key has its own bucket
    assert limiter.acquire(1, now=0.5) == 0.0
    assert limiter.acquire(1, now=100.0) == 0.0  # a long pause saves up at most `burst`
    assert [limiter.acquire(1, now=100.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


@SQLITE_ONLY
def test_429_with_retry_after_per_key(make_client, make_key) -> None:  # type: ignore[no-untyped-def]
    first, second = make_key("client"), make_key("admin")
    client = make_client(**TRICKLE)
    for _ in range(2):
        assert client.get("/v1/decisions/x", headers={"x-api-key": first}).status_code == 404
    r = client.get("/v1/decisions/x", headers={"x-api-key": first})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert "rate limit exceeded" in r.json()["detail"] and first[:12] in r.json()["detail"]
    assert client.get("/v1/decisions/x", headers={"x-api-key": second}).status_code == 404
    assert client.get("/healthz").status_code == 200  # open paths carry no key to limit


@SQLITE_ONLY
def test_no_keys_no_limit(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(**TRICKLE)
    assert all(client.get("/v1/decisions/x").status_code == 404 for _ in range(4))


@SQLITE_ONLY
def test_body_cap(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(max_body_bytes=2048)
    big = {"prompt": "x" * 3000}
    r = client.post("/v1/route", json=big)
    assert r.status_code == 413
    assert "larger than 2048 bytes" in r.json()["detail"]

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"prompt": "'
        yield b"y" * 3000
        yield b'"}'

    # No Content-Length: the cap counts the bytes as they arrive.
    r = client.post("/v1/route", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than 2048" in r.json()["detail"]
    ok = client.post("/v1/route", json={"prompt": "y" * 1500})
    assert ok.status_code == 200, ok.text


@SQLITE_ONLY
def test_authentication_comes_before_the_body(make_client, make_key) -> None:  # type: ignore[no-untyped-def]
    make_key("client")
    r = make_client(max_body_bytes=2048).post("/v1/route", json={"prompt": "x" * 3000})
    assert r.status_code == 401
