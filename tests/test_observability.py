"""Prometheus /metrics (also summed over worker processes) and JSON logs with decision ids.

(Named apart from tests/test_metrics.py, which tests the offline routing metrics.)"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bandit_router import telemetry as metrics
from bandit_router.api.logging import JsonFormatter

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, frozenset(labels.items())), 0.0)


@SQLITE_ONLY
def test_metrics_endpoint_counts_what_the_service_does(client, runtime) -> None:  # type: ignore[no-untyped-def]
    before = scrape(client.get("/metrics").text)
    out = client.post("/v1/route", json={"prompt": "What is 2 + 2?"}).json()
    fb = {"decision_id": out["decision_id"], "type": "rating", "value": 4}
    assert client.post("/v1/feedback", json=fb).status_code == 201
    runtime.runner.run("update")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = scrape(r.text)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("bandit_router_decisions_total", model=out["model"], endpoint="route") == 1
    assert delta("bandit_router_feedback_total", type="rating", status="created") == 1
    route = {"route": "/v1/route", "method": "POST", "status": "200"}
    assert delta("bandit_router_request_duration_seconds_count", **route) == 1
    job = {"kind": "update", "status": "succeeded"}
    assert delta("bandit_router_job_duration_seconds_count", **job) == 1
    policy = sample(after, "bandit_router_policy_version")
    assert policy == runtime.policy.version


def test_job_and_audit_hooks() -> None:
    def fails(*_: object) -> dict[str, object]:
        raise RuntimeError("boom")

    jobs = metrics.instrument_jobs({"ok": lambda *_: {"n": 1}, "bad": fails})
    before = scrape(metrics.render()[0].decode())
    assert jobs["ok"]() == {"n": 1}
    with pytest.raises(RuntimeError):
        jobs["bad"]()
    metrics.observe_job("retrain", 12.5, "succeeded")
    metrics.record_audit("graded")
    after = scrape(metrics.render()[0].decode())
    for labels in ({"kind": "ok", "status": "succeeded"}, {"kind": "bad", "status": "failed"}):
        name = "bandit_router_job_duration_seconds_count"
        assert sample(after, name, **labels) - sample(before, name, **labels) == 1
    name = "bandit_router_job_duration_seconds_sum"
    assert sample(after, name, kind="retrain", status="succeeded") - sample(
        before, name, kind="retrain", status="succeeded"
    ) == pytest.approx(12.5)
    name = "bandit_router_audits_total"
    assert sample(after, name, kind="graded") - sample(before, name, kind="graded") == 1


WORKER = """
import sys
from bandit_router import telemetry as metrics
metrics.record_decision("m1")
metrics.observe_request("/v1/route", "POST", 200, 0.01)
metrics.set_policy_version(int(sys.argv[1]))
"""

PARENT = """
import subprocess, sys
from bandit_router import telemetry as metrics
metrics.prepare_multiprocess(sys.argv[1])
for version in ("3", "4"):  # two workers, one after the other
    subprocess.run([sys.executable, "-c", sys.argv[2], version], check=True)
sys.stdout.write(metrics.render()[0].decode())
"""


def test_multiprocess_mode_sums_the_workers(tmp_path: Path) -> None:
    (tmp_path / "stale.db").write_bytes(b"left by a previous run")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PARENT), str(tmp_path), textwrap.dedent(WORKER)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    samples = scrape(out)
    assert sample(samples, "bandit_router_decisions_total", model="m1", endpoint="route") == 2
    route = {"route": "/v1/route", "method": "POST", "status": "200"}
    assert sample(samples, "bandit_router_request_duration_seconds_count", **route) == 2
    assert sample(samples, "bandit_router_policy_version") == 4  # the most recently set
    assert not (tmp_path / "stale.db").exists()


def test_prepare_multiprocess_refuses_once_metrics_exist(tmp_path: Path) -> None:
    metrics.record_rejection("test")
    with pytest.raises(RuntimeError, match="before any metric"):
        metrics.prepare_multiprocess(tmp_path)


@SQLITE_ONLY
def test_json_logs_carry_the_decision_id(make_client, make_key, restore_logging) -> None:  # type: ignore[no-untyped-def]
    key = make_key("client")
    buffer = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(buffer))
    client = make_client(log_format="json")
    headers = {"x-api-key": key, "x-request-id": "req-42"}
    r = client.post("/v1/route", json={"prompt": "Name a prime."}, headers=headers)
    assert r.headers["x-request-id"] == "req-42"
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]  # all of it is JSON
    access = [
        x for x in lines if x["logger"] == "bandit_router.access" and x["path"] == "/v1/route"
    ]
    assert len(access) == 1
    assert access[0]["decision_id"] == r.json()["decision_id"]
    assert access[0]["request_id"] == "req-42"
    assert access[0]["key"] == key[:12] and access[0]["status"] == 200
    assert key not in buffer.getvalue()


def test_json_formatter_redacts_keys_and_keeps_exceptions() -> None:
    key = "brk_0123abcd_" + "s3cr3t-Secret_value-0123456789"
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "got %s", (key,), sys.exc_info()
        )
    record.fields = {"request_id": key}
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "got brk_0123abcd_[redacted]"
    assert out["request_id"] == "brk_0123abcd_[redacted]"
    assert "s3cr3t" not in out["exc"] and "ValueError" in out["exc"]
    assert out["level"] == "ERROR" and "decision_id" not in out
