"""The service as `bandit-router serve` in a subprocess on a loopback port, its output in a file:
for tests of what only a real server shows (uvicorn's own log lines, the served schema)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

MODEL_CACHE = Path(__file__).resolve().parents[1] / "var" / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bandit_router.cli", *args]
    return subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)


@contextmanager
def serving(env: dict[str, str], output: Path) -> Iterator[str]:
    """Yields the base URL once /healthz answers; stops the server (SIGTERM) on exit."""
    port = free_port()
    env = {
        "BANDIT_ROUTER_SCHEDULER_ENABLED": "false",
        "BANDIT_ROUTER_MODEL_CACHE_DIR": str(MODEL_CACHE),
        **env,
    }
    cmd = [sys.executable, "-m", "bandit_router.cli", "serve", "--port", str(port)]
    with output.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, output.read_text()[-3000:]
                assert time.monotonic() < deadline, "the server did not start"
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
