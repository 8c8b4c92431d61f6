"""Load shedding: queries beyond what the encoder can clear soon get 503 + Retry-After at once,
instead of queueing until their clients time out. Real encoder, real app."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi.testclient import TestClient

from bandit_router.app import create_app
from bandit_router.config import Settings
from bandit_router.embed.service import EmbeddingService, EncoderOverloaded
from bandit_router.runtime import Runtime


def test_a_full_encoder_queue_refuses_more(encoder) -> None:  # type: ignore[no-untyped-def]
    service = EmbeddingService(encoder, cache_size=0, max_batch=1, max_queue=3)
    texts = [f"what is {i} squared?" for i in range(40)]

    async def burst() -> list[object]:
        jobs = (service.embed(t, f"k{i}") for i, t in enumerate(texts))
        return await asyncio.gather(*jobs, return_exceptions=True)

    try:
        results = asyncio.run(burst())
    finally:
        service.close()
    shed = [i for i, r in enumerate(results) if isinstance(r, EncoderOverloaded)]
    served = [i for i, r in enumerate(results) if isinstance(r, tuple)]
    assert len(shed) + len(served) == len(texts)
    assert len(served) >= 3 and len(shed) >= 20
    for i in served:  # what was accepted was really encoded
        vec, cached = results[i]  # type: ignore[misc]
        assert not cached
        np.testing.assert_allclose(vec, encoder.encode([texts[i]])[0], atol=1e-5)


def test_overloaded_routes_get_503_with_retry_after(settings: Settings, encoder) -> None:  # type: ignore[no-untyped-def]
    tight = settings.model_copy(update={"embedding_max_queue": 1, "embedding_max_batch": 1})
    rt = Runtime(tight, encoder=encoder, scheduler=False)
    try:
        with TestClient(create_app(tight, rt)) as client, ThreadPoolExecutor(16) as pool:
            bodies = [{"prompt": f"explain topic number {i} in depth"} for i in range(48)]
            answers = list(pool.map(lambda b: client.post("/v1/route", json=b), bodies))
    finally:
        rt.close()
    statuses = sorted({r.status_code for r in answers})
    assert statuses == [200, 503], statuses
    refused = [r for r in answers if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert "overloaded" in refused[0].json()["detail"]
