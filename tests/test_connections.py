"""`serve`'s connection limits, on the real server: a connection that sends nothing is closed
after TIMEOUT_KEEP_ALIVE_SECONDS (silent connections once exhausted the file descriptors), and a
request whose headers pass MAX_HEADER_BYTES gets a 400."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
from served import serving


def test_silent_connections_are_closed_and_huge_headers_refused(
    tmp_path: Path, pool_file: Path
) -> None:
    env = {
        "BANDIT_ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db",
        "BANDIT_ROUTER_POOL_FILE": str(pool_file),
        "BANDIT_ROUTER_TIMEOUT_KEEP_ALIVE_SECONDS": "1",
        "BANDIT_ROUTER_MAX_HEADER_BYTES": "8192",
    }
    with serving(env, tmp_path / "server.log") as base:
        address = (urlparse(base).hostname or "", urlparse(base).port or 0)
        silent = [socket.create_connection(address) for _ in range(50)]
        time.sleep(2.5)
        for sock in silent:
            sock.settimeout(5)
            assert sock.recv(1) == b""  # closed by the server
            sock.close()

        big = {"x-padding": "a" * 10_000}
        r = httpx.get(f"{base}/healthz", headers=big, timeout=10)
        assert r.status_code == 400
        assert httpx.get(f"{base}/healthz", headers={"x-padding": "a" * 4000}).status_code == 200

        # A connection that did send a request is kept alive between requests, as before.
        with httpx.Client(base_url=base) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/healthz").status_code == 200
