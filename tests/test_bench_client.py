"""The benchmarks' HTTP client against a loopback server that answers in the three ways HTTP/1.1
allows (Content-Length, chunked, close), and the small version of `bench latency`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bandit_router.bench.client import BenchClient
from bandit_router.bench.latency import run_latency_bench
from bandit_router.config import load_settings


async def _serve(connections: list[int]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = json.loads(await reader.readexactly(length))
            out = json.dumps({"echo": body}).encode()
            if body["how"] == "chunked":
                half = len(out) // 2
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
                    % (half, out[:half], len(out) - half, out[half:])
                )
            elif body["how"] == "close":
                writer.write(b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nConnection: close\r\n")
                writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
                await writer.drain()
                break
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
            await writer.drain()
            if body["how"] == "drop":  # a keep-alive timeout: closed later, without a word
                break
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_client_reads_every_reply_shape_and_reuses_connections() -> None:
    async def run() -> None:
        connections: list[int] = []
        server = await _serve(connections)
        port = server.sockets[0].getsockname()[1]
        async with BenchClient(f"http://127.0.0.1:{port}", timeout=5) as client:
            for how in ("length", "chunked", "length"):
                reply = await client.post("/x", {"how": how})
                assert reply.status == 200 and reply.json() == {"echo": {"how": how}}
            assert len(connections) == 1  # kept alive
            reply = await client.post("/x", {"how": "close"})
            assert (reply.status, reply.headers["retry-after"], reply.is_success) == (
                503,
                "2",
                False,
            )
            await client.post("/x", {"how": "length"})
            assert len(connections) == 2  # the closed one was not reused
            assert (await client.post("/x", {"how": "drop"})).status == 200
            await asyncio.sleep(0.05)
            # The pooled connection is dead: the request goes again on a new one, once.
            assert (await client.post("/x", {"how": "length"})).json() == {
                "echo": {"how": "length"}
            }
            assert len(connections) == 3
        server.close()
        with pytest.raises(OSError):
            await BenchClient(f"http://127.0.0.1:{port}", timeout=5).post("/x", {"how": "length"})

    asyncio.run(run())


def test_latency_bench_small_run(pool_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    settings = load_settings(pool_file=pool_file)
    report = run_latency_bench(settings, requests=40, concurrency=4, rate=20.0, out=str(out))

    assert json.loads(out.read_text()) == report
    for phase in ("route_distinct_at_20_per_s", "route_distinct_max_c4", "feedback_max_c4"):
        assert report[phase]["n"] > 0 and 0 < report[phase]["p50_ms"] <= report[phase]["p99_ms"]
    d = report["durability"]
    assert d["decisions_in_store"] == d["decisions_acknowledged"] > 0
    assert d["feedback_in_store"] == d["feedback_acknowledged"] > 0
    # The embedding alone, paced like the routes, really ran at their rate.
    paced = report["embedding_alone_at_20_per_s"]
    assert paced["n"] == 40 and abs(paced["throughput_per_s"] - 20.0) < 2.0
