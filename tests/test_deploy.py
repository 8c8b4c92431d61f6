"""deploy/ can't be built or run here (no Docker engine, no cluster), so it is checked as data:
the Dockerfile, the compose file and the Kubernetes manifests agree with each other and with the
code (settings, CLI commands, port, health endpoint, migrations path)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bandit_router.cli import build_parser
from bandit_router.config import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
K8S: list[dict[str, Any]] = [
    doc
    for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if doc and doc.get("kind") != "Kustomization"
]
IMAGE = "bandit-router:0.1.0"
PORT = 8000


def k8s(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in K8S if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}"
    return found[0]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc["spec"]["template"]["spec"]
    return list(pod["containers"])


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_every_manifest_lists_the_same_image() -> None:
    images = {c["image"] for d in K8S if d["kind"] in ("Deployment", "Job") for c in containers(d)}
    ours = {s["image"] for name, s in COMPOSE["services"].items() if name != "postgres"}
    assert images == ours == {IMAGE}
    assert all(
        s["build"]["dockerfile"] == "deploy/Dockerfile"
        for name, s in COMPOSE["services"].items()
        if name != "postgres"
    )


def _env_names() -> set[str]:
    names = set(re.findall(r"\bBANDIT_ROUTER_[A-Z0-9_]+", DOCKERFILE))
    for service in COMPOSE["services"].values():
        names.update(service.get("environment", {}))
    for doc in K8S:
        if doc["kind"] in ("ConfigMap", "Secret"):
            names.update(doc.get("data", {}) or {})
            names.update(doc.get("stringData", {}) or {})
        if doc["kind"] in ("Deployment", "Job"):
            names.update(e["name"] for c in containers(doc) for e in c.get("env", []))
    return {n for n in names if n.startswith("BANDIT_ROUTER_")}


def test_every_setting_named_in_deploy_is_a_real_setting() -> None:
    fields = {"BANDIT_ROUTER_" + name.upper() for name in Settings.model_fields}
    names = _env_names()
    assert "BANDIT_ROUTER_DATABASE_URL" in names
    assert names <= fields, f"not settings: {sorted(names - fields)}"


def test_every_env_var_reaches_its_container() -> None:
    """envFrom names only ConfigMaps and Secrets that exist."""
    defined = {d["metadata"]["name"] for d in K8S if d["kind"] in ("ConfigMap", "Secret")}
    for doc in K8S:
        if doc["kind"] in ("Deployment", "Job"):
            for c in containers(doc):
                for source in c.get("envFrom", []):
                    ref = source.get("configMapRef") or source.get("secretRef")
                    assert ref["name"] in defined


def _commands() -> list[list[str]]:
    cmds = [s["command"] for name, s in COMPOSE["services"].items() if name != "postgres"]
    cmds += [c["command"] for d in K8S if d["kind"] in ("Deployment", "Job") for c in containers(d)]
    (image_cmd,) = [json.loads(a) for i, a in dockerfile_instructions() if i == "CMD"]
    return [*cmds, image_cmd]


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c[1:3]))
def test_every_command_is_a_real_cli_command(cmd: list[str]) -> None:
    assert cmd[0] == "bandit-router"
    args = build_parser().parse_args(cmd[1:])  # exits (fails the test) on an unknown command
    if args.command == "serve":
        assert args.port == PORT and args.host == "0.0.0.0"


def test_api_probes_hit_healthz_on_the_served_port() -> None:
    (api,) = containers(k8s("Deployment", "bandit-router-api"))
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert ports == {"http": PORT}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = api[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert ports.get(get["port"], get["port"]) == PORT
    service = k8s("Service", "bandit-router")
    assert (
        service["spec"]["selector"]
        == k8s("Deployment", "bandit-router-api")["spec"]["selector"]["matchLabels"]
    )
    assert ports[service["spec"]["ports"][0]["targetPort"]] == PORT


def test_image_healthcheck_hits_healthz_on_the_exposed_port() -> None:
    ins = dockerfile_instructions()
    (expose,) = [a for i, a in ins if i == "EXPOSE"]
    (check,) = [a for i, a in ins if i == "HEALTHCHECK"]
    assert int(expose) == PORT
    assert f"127.0.0.1:{PORT}/healthz" in check
    # Only the API serves HTTP: the one-shot and the worker containers must not be marked unhealthy.
    for name in ("migrate", "worker"):
        assert COMPOSE["services"][name]["healthcheck"] == {"disable": True}


def test_exactly_one_worker_and_api_replicas_without_scheduler() -> None:
    worker = k8s("Deployment", "bandit-router-worker")
    assert worker["spec"]["replicas"] == 1
    assert worker["spec"]["strategy"]["type"] == "Recreate"
    assert COMPOSE["services"]["worker"]["deploy"]["replicas"] == 1

    api = k8s("Deployment", "bandit-router-api")
    assert api["spec"]["replicas"] >= 2
    (container,) = containers(api)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BANDIT_ROUTER_SCHEDULER_ENABLED"] == "false"
    compose_api = COMPOSE["services"]["api"]
    assert compose_api["deploy"]["replicas"] >= 2
    assert compose_api["environment"]["BANDIT_ROUTER_SCHEDULER_ENABLED"] == "false"
    assert Settings(scheduler_enabled="false").scheduler_enabled is False  # type: ignore[arg-type]


def test_migration_runs_once_before_the_service() -> None:
    job = k8s("Job", "bandit-router-migrate")
    assert containers(job)[0]["command"][1] == "migrate"
    services = COMPOSE["services"]
    assert services["migrate"]["command"][1] == "migrate"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_dockerfile_installs_cpu_torch_before_the_project_and_runs_as_non_root() -> None:
    runs = [a for i, a in dockerfile_instructions() if i == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if "torch" in r)
    project_at = next(i for i, r in enumerate(runs) if re.search(r"pip install \.(\s|$)", r))
    assert torch_at < project_at
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch_at]
    assert dockerfile_instructions()[0] == ("FROM", "python:3.11-slim")
    (user,) = [a for i, a in dockerfile_instructions() if i == "USER"]
    assert user.split(":")[0] not in ("root", "0")


def test_image_keeps_migrations_where_the_code_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed package has no source tree around it: the image copies migrations/ to a
    fixed folder and BANDIT_ROUTER_MIGRATIONS_DIR points there. Replay that layout and migrate."""
    ins = dockerfile_instructions()
    env = " ".join(a for i, a in ins if i == "ENV")
    (target,) = re.findall(r"BANDIT_ROUTER_MIGRATIONS_DIR=(\S+)", env)
    workdir_before_copy = [a for i, a in ins if i in ("WORKDIR", "COPY")]
    copy_at = workdir_before_copy.index("migrations ./migrations")
    workdir = workdir_before_copy[copy_at - 1]
    assert str(Path(workdir) / "migrations") == target

    image_dir = tmp_path / target.lstrip("/")
    shutil.copytree(DEPLOY.parent / "migrations", image_dir)
    monkeypatch.setenv("BANDIT_ROUTER_MIGRATIONS_DIR", str(image_dir))
    from sqlalchemy import create_engine, inspect

    from bandit_router.store.db import migrate, migrations_dir

    assert migrations_dir() == image_dir
    url = f"sqlite:///{tmp_path}/image.db"
    migrate(url)
    assert "decisions" in inspect(create_engine(url)).get_table_names()
    assert Settings(migrations_dir=image_dir).migrations_dir == image_dir
    with pytest.raises(ValueError, match="not an Alembic migrations folder"):
        Settings(migrations_dir=tmp_path)
