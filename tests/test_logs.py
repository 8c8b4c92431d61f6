"""No secret and no prompt or answer text in the logs, in both formats: the real `serve` (uvicorn's
own access lines included) driven over HTTP with a key in the query string, hostile bodies, a
proxied answer and failing upstreams; and tracebacks, whose messages can quote a request."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from conftest import SECRET_ENV
from served import cli, serving

from bandit_router.api.logging import WITHHELD, configure_logging

PROMPT = "zebra-quokka-7781 explain the proof"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_served_logs_carry_no_key_and_no_text(  # type: ignore[no-untyped-def]
    tmp_path: Path, pool_file: Path, upstream, log_format: str
) -> None:
    env = {
        "BANDIT_ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db",
        "BANDIT_ROUTER_POOL_FILE": str(pool_file),
        "BANDIT_ROUTER_LOG_FORMAT": log_format,
        SECRET_ENV: "sk-upstreamsecret0123456789",
    }
    made = cli("keys", "create", "--role", "admin", env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    secret = key.split("_", 2)[2]
    output = tmp_path / "server.log"
    with serving(env, output) as base, httpx.Client(base_url=base, timeout=30) as http:
        auth = {"Authorization": f"Bearer {key}"}
        raw = {**auth, "content-type": "application/json"}
        r = http.post(f"/v1/route?api_key={key}&limit=3", json={"prompt": PROMPT}, headers=auth)
        assert r.status_code == 200, r.text
        assert http.get(f"/healthz?token={key}").status_code == 200
        assert http.post("/v1/route", json={"prompt": PROMPT}).status_code == 401
        bad = f"Bearer {key[:-4]}XXXX"
        assert (
            http.post(
                "/v1/route", json={"prompt": PROMPT}, headers={"Authorization": bad}
            ).status_code
            == 401
        )
        for text in (
            f'{{"prompt": "{PROMPT} \\ud800"}}',
            f'{{"prompt": "{PROMPT}", "lambda": NaN}}',
            f'{{"prompt": "{PROMPT}", "unknown": "{PROMPT}"}}',
            f'{{"prompt": "{PROMPT}" ',
        ):
            assert http.post("/v1/route", content=text, headers=raw).status_code == 422
        for model, behaviour in (("strong", "fail"), ("mid", "ok"), ("cheap", "ok")):
            patch = {"base_url": upstream.url(behaviour), "api_key_env": SECRET_ENV}
            assert (
                http.patch(f"/v1/admin/models/{model}", json=patch, headers=auth).status_code == 200
            )
        chat = {"model": "router:quality", "messages": [{"role": "user", "content": PROMPT}]}
        for _ in range(4):
            r = http.post("/v1/chat/completions", json=chat, headers=auth)
            assert r.status_code == 200 and "hi from" in r.text
    logged = output.read_text()
    assert "POST /v1/route" in logged  # the access lines are there...
    if log_format == "text":
        assert "api_key=[redacted]&limit=3" in logged and "token=[redacted]" in logged
    else:
        lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
        assert any(line.get("logger") == "bandit_router.access" for line in lines)
    assert secret not in logged  # ...but no key,
    assert "sk-upstreamsecret" not in logged
    assert "zebra-quokka" not in logged  # no prompt text,
    assert "hi from" not in logged  # and no answer text


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("store_prompts", [False, True])
def test_tracebacks_lose_their_messages_unless_prompts_are_stored(  # type: ignore[no-untyped-def]
    log_format: str, store_prompts: bool, restore_logging
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    for name in ("uvicorn", "uvicorn.error"):  # what uvicorn logs reaches our handler (restored)
        logging.getLogger(name).handlers, logging.getLogger(name).propagate = [], True
    try:
        configure_logging(log_format, store_prompts)
        try:
            try:
                raise KeyError(PROMPT)
            except KeyError as inner:
                raise ValueError(f"cannot encode {PROMPT!r}") from inner
        except ValueError:
            # What uvicorn logs for an exception that escapes the app.
            logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=True)
        try:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        except OSError:
            logging.getLogger("bandit_router.test").warning("upstream down", exc_info=True)
    finally:
        logging.getLogger().removeHandler(handler)
    logged = stream.getvalue()
    assert "ValueError" in logged and "KeyError" in logged and "test_logs.py" in logged
    assert "Connection refused" in logged  # a message that cannot quote a request stays
    assert ("zebra-quokka" in logged) is store_prompts
    assert (WITHHELD in logged) is not store_prompts
    if log_format == "json":
        assert all(json.loads(line)["exc"] for line in logged.splitlines())


def test_a_key_anywhere_in_a_message_is_redacted(restore_logging) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        configure_logging("text")
        log = logging.getLogger("bandit_router.test")
        log.warning("header %s", "Authorization: Bearer brk_0123abcd_" + "s" * 30)
        log.warning("url %s", "/x?api_key=hunter2&session=s3cret&page=2")
        log.warning("vendor key sk-%s", "v" * 40)
    finally:
        logging.getLogger().removeHandler(handler)
    logged = stream.getvalue()
    for secret in ("s" * 30, "hunter2", "s3cret", "v" * 40):
        assert secret not in logged
    assert "page=2" in logged
