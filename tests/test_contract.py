"""The OpenAPI schema tells the truth: Schemathesis runs every check it has (`--checks all`:
server errors, status codes, content types, response schemas, headers, valid data accepted,
invalid data refused, unsupported methods and their Allow header, authentication ignored or
not, ...) through all its phases, stateful links included, against the real `serve` with keys
enforced and the proxy's models answering through the fake upstream. Zero failures.

Bounded: --max-examples per operation keeps the run near a minute on 2 cores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import SECRET_ENV
from served import cli, serving

MAX_EXAMPLES = os.environ.get("BANDIT_ROUTER_CONTRACT_EXAMPLES", "25")
SEED = os.environ.get("BANDIT_ROUTER_CONTRACT_SEED", "20261201")  # fixed: CI failures reproduce
HOOKS = Path(__file__).with_name("contract_hooks.py")


def test_schemathesis_finds_nothing(tmp_path: Path, pool_file: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    env = {
        "BANDIT_ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db",
        "BANDIT_ROUTER_POOL_FILE": str(pool_file),
        "BANDIT_ROUTER_RATE_LIMIT_PER_SECOND": "0",
        SECRET_ENV: "sk-contract",
    }
    made = cli("keys", "create", "--role", "admin", env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    with serving(env, tmp_path / "server.log") as base:
        auth = {"Authorization": f"Bearer {key}"}
        for model in ("strong", "mid", "cheap"):
            patch = {"base_url": upstream.url("ok"), "api_key_env": SECRET_ENV}
            r = httpx.patch(f"{base}/v1/admin/models/{model}", json=patch, headers=auth)
            assert r.status_code == 200, r.text
        report = tmp_path / "report.json"
        cmd = [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(HOOKS.with_name("schemathesis.toml")),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            SEED,
            "--workers",
            "1",
            "--header",
            f"Authorization: Bearer {key}",
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ]
        st_env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": HOOKS.stem,
            "BANDIT_ROUTER_CONTRACT_BASE": base,
            "BANDIT_ROUTER_CONTRACT_KEY": key,
            "BANDIT_ROUTER_CONTRACT_UPSTREAM": upstream.url("ok"),
            "PYTHONPATH": os.pathsep.join([str(HOOKS.parent), os.environ.get("PYTHONPATH", "")]),
        }
        run = subprocess.run(
            cmd, env=st_env, cwd=tmp_path, capture_output=True, text=True, timeout=900
        )
    (tmp_path / "schemathesis.txt").write_text(run.stdout + run.stderr)
    if os.environ.get("BANDIT_ROUTER_CONTRACT_OUT"):  # the whole output, for whoever debugs
        Path(os.environ["BANDIT_ROUTER_CONTRACT_OUT"]).write_text(run.stdout + run.stderr)
    summary = run.stdout[-6000:]
    print(summary)  # the counts, in the test's output
    assert run.returncode == 0, summary + run.stderr[-3000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts and counts[1] == counts[2], summary  # every generated case passed
    if report.exists():
        json.loads(report.read_text())  # a readable report for whoever wants the details


def test_docs_are_served_without_a_cdn(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 1000, asset
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    redoc = client.get("/redoc")
    assert redoc.status_code == 200 and "https://" not in redoc.text
    schema = client.get("/openapi.json").json()
    # The Authorize button: how to send a key, and which operations need one.
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/v1/route"]["post"]["security"]
    assert "security" not in schema["paths"]["/healthz"]["get"]
