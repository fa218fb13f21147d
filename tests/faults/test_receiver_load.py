"""The HTTP receiver under a burst (20,000 camera POSTs, loopback) with Kafka unreachable.

`pingan connectors run` runs as a subprocess pointed at a closed port (so every record spools) with
a 1 MiB spool. Memory must stay bounded (the spool is on disk, nothing queues in RAM); cameras get
202 until the spool is full and 503 + Retry-After after it; the grid (a retrying sender) gets 429
above the high-water mark; the refused counter on /metrics equals the 503s and is 0 until the spool
is full.
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from infra.stack import port_open
from streams.settings import Settings
from infra.processes import settings_env, wait_for
from tests.harness.stack import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

TOTAL = 20_000
CONCURRENCY = 64
SPOOL_MB = 1
RSS_GROWTH_LIMIT_MB = 80.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def metric(text: str, name: str, source: str | None = None) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf'^{re.escape(name)}(?:\{{([^}}]*)\}})? ([0-9.e+-]+)$', line)
        if m and (source is None or f'source="{source}"' in (m.group(1) or "")):
            total += float(m.group(2))
    return total


@pytest.fixture()
def receiver(settings: Settings, sim_day: Path, tmp_path: Path):  # noqa: ANN201
    dead_kafka = free_ports(1)[0]  # nothing listens there: every delivery attempt fails fast
    port = free_ports(1)[0]
    s = Settings(**{**settings.model_dump(), "run_dir": tmp_path / "run", "kafka_bootstrap": f"127.0.0.1:{dead_kafka}",
                    "topic_prefix": "tload.", "receiver_port": port,
                    "dev_mode": True})  # about load and the spool, not authentication: an open receiver
    log = open(tmp_path / "receiver.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "connectors", "run", "--port", str(port), "--no-sip",
         "--spool-max-mb", str(SPOOL_MB), "--high-water", "0.5", "--kafka-timeout", "0.5", "--log-level", "WARNING",
         "--registry", str(sim_day / "registry.csv")],
        env=settings_env(s), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 60, 0.2, "the receiver to listen")
        assert proc.poll() is None, (tmp_path / "receiver.log").read_text()
        yield proc, f"http://127.0.0.1:{port}", s
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_receiver_burst_with_kafka_down_is_bounded(receiver, sim_day: Path) -> None:
    import aiohttp

    proc, base, s = receiver
    cameras = [p.read_bytes() for p in sorted((sim_day / "gb28181").glob("*.xml"))]
    grids = [ln for ln in (sim_day / "grid" / "reports.jsonl").read_bytes().splitlines() if ln.strip()]
    assert cameras and grids
    cam_headers = {"Content-Type": "Application/MANSCDP+xml"}
    grid_headers = {"Content-Type": "application/json"}

    rss: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                rss.append(rss_mb(proc.pid))
            except OSError:
                return
            time.sleep(0.1)

    async def run() -> dict:
        out: dict = {"statuses": [], "retry_after": Counter(), "refused_before_full": [], "grid": []}
        conn = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=conn) as http:
            async def health() -> dict:
                async with http.get(f"{base}/healthz") as r:
                    return await r.json()

            async def metrics() -> str:
                async with http.get(f"{base}/metrics") as r:
                    return await r.text()

            async def post_grid() -> int:
                async with http.post(f"{base}/grid/reports", data=grids[len(out["grid"]) % len(grids)],
                                     headers=grid_headers) as r:
                    await r.read()
                    out["grid"].append((r.status, r.headers.get("Retry-After")))
                    return r.status

            async def post_camera(i: int) -> int:
                async with http.post(f"{base}/gb28181/alarm", data=cameras[i % len(cameras)], headers=cam_headers) as r:
                    await r.read()
                    if r.status == 503:
                        out["retry_after"][r.headers.get("Retry-After")] += 1
                    return r.status

            assert await post_grid() == 202, out["grid"]  # below high water: a grid report is accepted
            # phase 1, one at a time: 202 until the spool is full; refused stays 0 meanwhile
            i = 0
            grid_checked = False
            while True:
                status = await post_camera(i)
                out["statuses"].append(status)
                i += 1
                if status != 202:
                    out["full_at"] = i
                    out["health_at_full"] = await health()
                    break
                if i % 100 == 0:
                    out["refused_before_full"].append(metric(await metrics(), "pingan_receiver_refused_total"))
                    if not grid_checked and (await health())["spool"]["above_high_water"]:
                        assert await post_grid() == 429, out["grid"]
                        grid_checked = True
                assert i < TOTAL, "the spool never filled"
            assert grid_checked or (await post_grid()) == 429
            # phase 2, the burst: the rest at CONCURRENCY in flight
            t0 = time.monotonic()
            sem = asyncio.Semaphore(CONCURRENCY)

            async def one(k: int) -> int:
                async with sem:
                    return await post_camera(k)

            out["statuses"] += await asyncio.gather(*(one(k) for k in range(i, TOTAL)))
            out["burst_s"] = time.monotonic() - t0
            out["burst_n"] = TOTAL - i
            out["metrics"] = await metrics()
            out["health"] = await health()
        return out

    time.sleep(1.0)
    baseline = rss_mb(proc.pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = asyncio.run(run())
    finally:
        stop.set()
        sampler.join(5)
    assert proc.poll() is None, "the receiver died under load"

    statuses = Counter(out["statuses"])
    n503 = statuses[503]
    full_at = out["full_at"]
    rate = out["burst_n"] / out["burst_s"]
    peak = max(rss)
    text = out["metrics"]
    refused = metric(text, "pingan_receiver_refused_total")
    print(f"\nstatuses {dict(statuses)}; spool full after {full_at - 1} cameras "
          f"(fill {out['health_at_full']['spool']['fill_ratio']}); burst {out['burst_n']} POSTs in "
          f"{out['burst_s']:.1f}s = {rate:.0f}/s; RSS baseline {baseline:.1f} MB, peak {peak:.1f} MB; "
          f"refused on /metrics {refused:.0f}; grid {out['grid']}")
    assert set(statuses) <= {202, 503}, statuses
    assert out["statuses"][: full_at - 1] == [202] * (full_at - 1)
    assert out["statuses"][full_at - 1] == 503
    assert out["health_at_full"]["spool"]["fill_ratio"] > 0.95, out["health_at_full"]
    assert all(v == 0 for v in out["refused_before_full"]), out["refused_before_full"]
    # once full (Kafka still down, nothing drains) cameras are refused; a rare small payload may still fit
    after = out["statuses"][full_at - 1:]
    assert after.count(503) >= 0.99 * len(after), Counter(after)
    assert set(out["retry_after"]) == {"5"} and sum(out["retry_after"].values()) == n503
    assert refused == n503, (refused, n503)
    assert metric(text, "pingan_receiver_throttled_total", "grid") == sum(1 for st, _ in out["grid"] if st == 429) >= 1
    assert all(ra == "5" for st, ra in out["grid"] if st == 429)
    spooled = metric(text, "pingan_receiver_spooled_total")
    assert spooled == statuses[202] + 1  # every 202 (cameras + the one grid report) is in the spool
    assert out["health"]["spool"]["pending_bytes"] <= SPOOL_MB << 20
    assert peak - baseline < RSS_GROWTH_LIMIT_MB, f"RSS grew {peak - baseline:.1f} MB under load"
