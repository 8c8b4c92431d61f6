"""Shared fixtures: a real encoder (loaded once), databases on SQLite and PostgreSQL, the app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_upstream import FakeUpstream, closed_port_url, running_upstream
from sqlalchemy import create_engine, text

from bandit_router.config import Settings, load_settings

PG_ADMIN_URL = os.environ.get(
    "BANDIT_ROUTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SHARED_DATA = Path(
    os.environ.get(
        "BANDIT_ROUTER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)

SECRET_ENV = "BANDIT_ROUTER_UPSTREAM_KEY_TEST"  # allowed by its prefix (services/pool.py)
POOL_YAML = """
models:
  - {name: strong, input_price: 10.0, output_price: 30.0, expected_output_tokens: 300}
  - {name: mid, input_price: 1.0, output_price: 2.0, expected_output_tokens: 300}
  - {name: cheap, input_price: 0.1, output_price: 0.2, expected_output_tokens: 300}
"""


# Exported ONNX models survive between runs here (gitignored), as they do for `./dev serve`.
MODEL_CACHE = Path(__file__).resolve().parents[1] / "var" / "models"


@pytest.fixture(scope="session")
def model_cache() -> Path:
    return MODEL_CACHE


@pytest.fixture(scope="session")
def encoder(model_cache: Path):  # type: ignore[no-untyped-def]
    """The encoder the service runs by default (the bundled model under ONNX Runtime, int8)."""
    from bandit_router.embed.encoder import load_encoder

    return load_encoder(Settings(model_cache_dir=model_cache))


@pytest.fixture
def pool_file(tmp_path: Path) -> Path:
    path = tmp_path / "pool.yaml"
    path.write_text(POOL_YAML)
    return path


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def pg_admin():  # type: ignore[no-untyped-def]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - say clearly what CI needs
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({exc}); .ci/run starts it")
    yield admin
    admin.dispose()


@pytest.fixture(scope="session")
def pg_template(pg_admin):  # type: ignore[no-untyped-def]
    """A migrated database that each test clones (much faster than migrating every time)."""
    from bandit_router.store.db import migrate

    name = f"br_tmpl_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    migrate(_pg_url(name))
    from sqlalchemy import create_engine as ce

    ce(_pg_url(name)).dispose()
    yield name
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _postgres_database(admin, template: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"br_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield _pg_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_admin, pg_template) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A migrated PostgreSQL database of the test's own (for tests that are PostgreSQL-only)."""
    yield from _postgres_database(pg_admin, pg_template)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/router.db"
    else:
        yield from _postgres_database(
            request.getfixturevalue("pg_admin"), request.getfixturevalue("pg_template")
        )


@pytest.fixture
def settings(database_url: str, pool_file: Path) -> Settings:
    from bandit_router.store.db import migrate

    migrate(database_url)
    return load_settings(
        database_url=database_url,
        pool_file=pool_file,
        scheduler_enabled=False,
        state_poll_seconds=0.2,
        reward_wait_seconds=0,
    )


@pytest.fixture
def runtime(settings: Settings, encoder):  # type: ignore[no-untyped-def]
    from bandit_router.runtime import Runtime

    rt = Runtime(settings, encoder=encoder, scheduler=False)
    yield rt
    rt.close()


@pytest.fixture
def client(settings: Settings, runtime):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from bandit_router.app import create_app

    with TestClient(create_app(settings, runtime)) as c:
        yield c


@pytest.fixture
def make_client(settings: Settings, encoder):  # type: ignore[no-untyped-def]
    """Start a router with some settings changed (auth, limits, proxy, logs) on the test's
    database and the shared encoder; each one loads the API keys that exist when it starts."""
    from contextlib import ExitStack

    from fastapi.testclient import TestClient

    from bandit_router.app import create_app
    from bandit_router.runtime import Runtime

    with ExitStack() as stack:

        def make(**overrides: object) -> TestClient:
            changed = settings.model_copy(update=overrides)
            rt = Runtime(changed, encoder=encoder, scheduler=False)
            stack.callback(rt.close)
            return stack.enter_context(TestClient(create_app(changed, rt)))

        yield make


@pytest.fixture
def make_key(runtime):  # type: ignore[no-untyped-def]
    """Create an API key in the test's database and return it: make_key("admin")."""
    from bandit_router.store import api_keys as keys

    def make(role: str, name: str | None = None) -> str:
        with runtime.engine.begin() as conn:
            key, _ = keys.create_key(conn, role, name)
        return key

    return make


@pytest.fixture
def restore_logging():  # type: ignore[no-untyped-def]
    """For tests that switch logs to JSON: put the process-wide logging set-up back afterwards."""
    import logging

    root = logging.getLogger()
    saved_root = (root.level, [(h, h.formatter, h.filters[:]) for h in root.handlers])
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = {lg.name: (lg.handlers[:], lg.propagate, lg.disabled) for lg in loggers}
    saved_filters = {h: h.filters[:] for lg in loggers for h in lg.handlers}
    yield
    root.setLevel(saved_root[0])
    root.handlers = [h for h, _, _ in saved_root[1]]
    for handler, formatter, filters in saved_root[1]:
        handler.setFormatter(formatter)
        handler.filters = filters
    for name, (handlers, propagate, disabled) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers, lg.propagate, lg.disabled = handlers, propagate, disabled
    for handler, filters in saved_filters.items():
        handler.filters = filters


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with running_upstream() as state:
        yield state


@pytest.fixture
def wire(client, upstream, monkeypatch):  # type: ignore[no-untyped-def]
    """wire(strong="ok", mid="fail", ...): point pool models at fake upstream behaviours."""
    monkeypatch.setenv(SECRET_ENV, "sk-upstream-secret")

    def set_up(**behaviours: str) -> None:
        upstream.calls.clear()
        for model, behaviour in behaviours.items():
            url = closed_port_url() if behaviour == "down" else upstream.url(behaviour)
            patch = {"base_url": url, "api_key_env": SECRET_ENV}
            assert client.patch(f"/v1/admin/models/{model}", json=patch).status_code == 200

    return set_up
