"""Failed-token rate limit per client address and the audit of denied requests, through the real
aiohttp app (`make_app`) with a fake Elasticsearch (the auth and audit paths never need data)."""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.settings import Settings
from streams.web.audit import AuditLog, verify_chain
from streams.web.auth import Credentials, FailureLimiter
from streams.web.server import make_app

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")  # the fixture's loop

KEY = b"unit-test-audit-key-auth-limits"
TOKEN = "tok-town-sanjiang-000001"
CREDS = Credentials.from_mapping({TOKEN: {"user": "三江镇综治中心", "admin_code": "513221107"}})


class FakeES:
    """Answers every search with no hits (and pings)."""

    def __init__(self) -> None:
        self.searches = 0

    async def search(self, **_: Any) -> dict[str, Any]:
        self.searches += 1
        return {"hits": {"total": {"value": 0}, "hits": []}, "aggregations": {}}

    async def ping(self) -> bool:
        return True


@pytest.fixture()
async def app(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Path]]:
    settings = Settings(auth_fail_limit=10, auth_fail_window_s=10.0, audit_denied_detail_s=1.0)
    path = tmp_path / "audit.jsonl"
    client = TestClient(TestServer(make_app(settings, FakeES(), CREDS, AuditLog(path, key=KEY))))  # type: ignore[arg-type]
    await client.start_server()
    try:
        yield client, path
    finally:
        await client.close()


def _recs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@SESSION_LOOP
async def test_a_burst_of_300_wrong_tokens_gets_429_after_the_limit(app: tuple[TestClient, Path]) -> None:
    client, path = app
    statuses, retry_after = [], set()
    started = time.monotonic()
    for i in range(300):
        resp = await client.get("/api/incidents", headers={"Authorization": f"Bearer wrong-token-{i:012d}"})
        statuses.append(resp.status)
        if resp.status == 429:
            retry_after.add(int(resp.headers["Retry-After"]))
    assert time.monotonic() - started < 10  # the whole burst falls in one window
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429] * 290
    assert retry_after and all(1 <= r <= 10 for r in retry_after)
    # a valid token does not lift the block for that client (no oracle while blocked)
    blocked = await client.get("/api/whoami", headers={"Authorization": f"Bearer {TOKEN}"})
    assert blocked.status == 429
    # audited: one full record for the burst, the rest counted and written at shutdown
    await client.close()
    recs = _recs(path)
    assert recs[0]["status"] == 401 and recs[0]["filter"]["reason"] == "unknown token"
    assert recs[0]["filter"]["client"] == "127.0.0.1" and recs[0]["user"] == ""
    counted = sum(sum(r["filter"]["suppressed"].values()) for r in recs)
    assert len(recs) + counted - sum(1 for r in recs if r["action"] == "denied-summary") == 301
    assert "wrong-token" not in path.read_text(encoding="utf-8")
    assert verify_chain(path, KEY).ok


@SESSION_LOOP
async def test_missing_tokens_are_audited_but_not_counted_as_guesses(app: tuple[TestClient, Path]) -> None:
    client, path = app
    for _ in range(30):
        assert (await client.get("/api/stats")).status == 401
    ok = await client.get("/api/whoami", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200
    recs = _recs(path)
    assert recs[0]["action"] == "stats" and recs[0]["status"] == 401
    assert recs[0]["filter"]["reason"] == "no bearer token"


@SESSION_LOOP
async def test_a_stats_400_is_audited_with_the_credential(app: tuple[TestClient, Path]) -> None:
    client, path = app
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/api/stats", params={"from": "not-a-date"}, headers=auth)).status == 400
    await client.close()  # flush counters of the first client; then a fresh interval per request below
    recs = _recs(path)
    assert [(r["action"], r["status"], r["user"]) for r in recs] == [("stats", 400, "三江镇综治中心")]
    assert recs[0]["admin_code"] == "513221107" and recs[0]["filter"]["path"] == "/api/stats"


@pytest.mark.parametrize("request_args", [
    ("post", "/api/lookup", {"data": b"{not json"}),
    ("post", "/api/lookup", {"json": {"phone": "13812345678"}, "params": {"page": "x"}}),
    ("post", "/api/lookup", {"json": {"id_number": "not-an-id"}}),
    ("get", "/api/incidents", {"params": {"size": "100000"}}),
])
@SESSION_LOOP
async def test_each_bad_request_leaves_an_audit_record(app: tuple[TestClient, Path],
                                                        request_args: tuple[str, str, dict[str, Any]]) -> None:
    client, path = app
    method, url, kwargs = request_args
    resp = await getattr(client, method)(url, headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)
    assert resp.status == 400, await resp.text()
    recs = _recs(path)
    assert len(recs) == 1 and recs[0]["status"] == 400 and recs[0]["user"] == "三江镇综治中心"
    text = path.read_text(encoding="utf-8")
    assert "13812345678" not in text  # a clear phone never reaches the audit log


def test_limiter_is_per_client_and_frees_up_after_the_window() -> None:
    now = [0.0]
    lim = FailureLimiter(3, 10.0, clock=lambda: now[0])
    for _ in range(3):
        assert lim.retry_after("a") is None
        lim.failed("a")
    assert lim.retry_after("a") == 10 and lim.retry_after("b") is None
    now[0] = 4.0
    assert lim.retry_after("a") == 6
    now[0] = 10.5
    assert lim.retry_after("a") is None


def test_limiter_memory_is_bounded() -> None:
    lim = FailureLimiter(2, 10.0, clock=lambda: 0.0, max_clients=100)
    for i in range(1000):
        lim.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(lim._failures) <= 100  # noqa: SLF001 - the bound is the point of the test


@pytest.mark.parametrize("url", ["/api/lookup", "/api/incidents/inc-0000000000000000/actions"])
@pytest.mark.parametrize("content_type, body", [
    ("application/json", b"[" * 5000 + b"]" * 5000),  # deeper than the parser recurses
    ("application/json", '{"note": "张三"}'.encode("gbk")),  # not UTF-8
])
@SESSION_LOOP
async def test_unreadable_json_bodies_are_a_400_in_the_api_shape(app: tuple[TestClient, Path], url: str,
                                                                 content_type: str, body: bytes) -> None:
    client, path = app
    resp = await client.post(url, data=body, headers={"Authorization": f"Bearer {TOKEN}",
                                                      "Content-Type": content_type})
    assert resp.status == 400, await resp.text()
    assert "error" in await resp.json()
    assert [r["status"] for r in _recs(path)] == [400]


@SESSION_LOOP
async def test_a_body_is_read_as_utf8_whatever_charset_the_content_type_names(app: tuple[TestClient, Path]) -> None:
    client, _ = app
    resp = await client.post("/api/lookup", data='{"phone": "13812345678"}'.encode(),
                             headers={"Authorization": f"Bearer {TOKEN}",
                                      "Content-Type": "application/json; charset=bogus"})  # once a 500
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["total"] == 0


@pytest.mark.parametrize("method, url, kwargs, status", [
    ("put", "/api/incidents", {}, 405),
    ("get", "/api/no-such-route", {}, 404),
    ("post", "/api/lookup", {"data": b"x" * (17 * 1024)}, 413),
])
@SESSION_LOOP
async def test_aiohttp_refusals_on_the_api_are_json_errors(app: tuple[TestClient, Path], method: str, url: str,
                                                           kwargs: dict[str, Any], status: int) -> None:
    client, path = app
    resp = await getattr(client, method)(url, headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json" and "error" in await resp.json()
    if status == 405:
        assert "GET" in resp.headers["Allow"]
    if status == 413:
        assert [r["status"] for r in _recs(path)] == [413]  # a denial the audit log keeps
