"""Invalid configuration fails at start with a message naming the setting."""

from __future__ import annotations

import pytest

from bandit_router.cli import main
from bandit_router.config import ConfigError, load_settings


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"BANDIT_ROUTER_DATABASE_URL": "mysql://x"}, "BANDIT_ROUTER_DATABASE_URL"),
        ({"BANDIT_ROUTER_POOL_FILE": "/nonexistent.yaml"}, "BANDIT_ROUTER_POOL_FILE"),
        ({"BANDIT_ROUTER_EPSILON": "2"}, "BANDIT_ROUTER_EPSILON"),
        ({"BANDIT_ROUTER_EXPLORATION": "thompson"}, "BANDIT_ROUTER_EXPLORATION"),
        ({"BANDIT_ROUTER_VW_ARGS": "--cb_explore_adf"}, "BANDIT_ROUTER_VW_ARGS"),
    ],
)
def test_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch, env: dict, name: str) -> None:  # type: ignore[type-arg]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_cli_exits_2_on_bad_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BANDIT_ROUTER_SQUARECB_GAMMA", "-1")
    assert main(["migrate"]) == 2
    assert "BANDIT_ROUTER_SQUARECB_GAMMA" in capsys.readouterr().err


def test_bad_pool_file_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bandit_router.policy.pool import PoolFileError, load_pool_file

    bad = tmp_path / "pool.yaml"
    bad.write_text("models:\n  - {name: a, input_price: -1, output_price: 1}\n")
    with pytest.raises(PoolFileError, match=r"models\[0\]"):
        load_pool_file(bad)
    bad.write_text("models:\n" + "  - {name: a, input_price: 1, output_price: 1}\n" * 2)
    with pytest.raises(PoolFileError, match="duplicate"):
        load_pool_file(bad)
