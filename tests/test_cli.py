"""The command line as a user meets it: `./dev` with no arguments, a user's mistake (one line on
stderr, exit 2, no traceback), relative paths taken from the caller's directory, no noise."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fixtures_data import write_routellm

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "dev"


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEV), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dev_alone_prints_help_that_lists_test(tmp_path: Path) -> None:
    for args in ((), ("--help",), ("help",)):
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "test [pytest arguments]" in r.stdout and "serve" in r.stdout
        assert "warm-start" in r.stdout  # the CLI's own commands follow


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("data", "import", "routellm", "missing", "--out", "x.parquet"), "missing does not exist"),
        (("import-gold", "missing.parquet"), "missing.parquet: no such file"),
        (
            ("warm-start", "--router", "missing.npz", "--prompts", "p.parquet"),
            "No such file or directory: missing.npz",
        ),
        (("train-offline", "--kind", "gold", "--data", "g.csv", "--out", "r.npz"), "no such file"),
        (("data", "import", "routellm", ".", "--out", "x.parquet"), "does not look like RouteLLM"),
    ],
)
def test_a_users_mistake_is_one_line_and_exit_2(  # type: ignore[no-untyped-def]
    tmp_path: Path, args: tuple[str, ...], message: str, monkeypatch, capsys
) -> None:
    """In process (the same `main` the command runs; ./dev itself is tested above and below)."""
    from bandit_router.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BANDIT_ROUTER_DATABASE_URL", f"sqlite:///{tmp_path}/router.db")
    assert main(list(args)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bandit-router: "), lines
    assert message in lines[0]


def test_relative_paths_are_the_callers_and_the_output_is_quiet(tmp_path: Path) -> None:
    caller = tmp_path / "elsewhere"
    write_routellm(caller / "userdata" / "routellm")
    env = {"BANDIT_ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db"}
    r = run(
        "data",
        "import",
        "routellm",
        "userdata/routellm",
        "--out",
        "out/gold.parquet",
        cwd=caller,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert (caller / "out" / "gold.parquet").is_file()
    r = run("keys", "list", cwd=caller, env=env)  # opens (and migrates) the store
    assert r.returncode == 0, r.stderr
    assert "alembic" not in r.stderr and "Running upgrade" not in r.stderr


def test_a_bad_pool_file_stops_serve_with_one_line(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from bandit_router.cli import main

    pool = tmp_path / "pool.yaml"
    monkeypatch.setenv("BANDIT_ROUTER_DATABASE_URL", f"sqlite:///{tmp_path}/router.db")
    monkeypatch.setenv("BANDIT_ROUTER_POOL_FILE", str(pool))
    pool.write_text("models:\n  - {name: m, input_price: .inf, output_price: 1}\n")
    assert main(["serve", "--port", "1"]) == 2
    assert "input_price inf is not a price" in capsys.readouterr().err
    pool.write_text("models:\n  - {name: m, input_price: 1, output_price: 1, api_key_env: HOME}\n")
    assert main(["serve", "--port", "1"]) == 2
    assert "api_key_env HOME is not allowed" in capsys.readouterr().err
