"""Kafka away for ~60 s while cameras and apps keep pushing: every acknowledged event still lands.

A PRIVATE single-node Kafka (never the shared one) serves `pingan connectors run` (subprocess).
Payloads (the simulator's, all five HTTP connectors) are POSTed before, during and after the
outage; during it the receivers must keep answering 202 (into the durable spool) — never 5xx,
cameras never 429. After the broker is back the spool drains, and every native id that was
acknowledged with a 2xx is on its raw topic (at-least-once: duplicates are allowed and counted).
"""
from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.ingest import HttpPayload, simulator_payloads
from infra.processes import ConnectorsProcess, wait_for
from infra.stack import Kafka as KafkaEngine
from infra.stack import java_binary
from streams.settings import Settings
from tests.harness.kafka import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = float(os.environ.get("PINGAN_TEST_OUTAGE_S", "60"))
TOPIC_OF = {"gb28181": "raw.camera.v1", "isapi": "raw.camera.v1", "grid": "raw.grid.v1",
            "mediation": "raw.mediation.v1", "door": "raw.door.v1"}


class Pusher:
    """Posts payloads from a queue and remembers each answer."""

    def __init__(self, url: str, payloads: list[HttpPayload]) -> None:
        self.url = url
        self.todo = list(reversed(payloads))
        self.answers: list[tuple[str, HttpPayload, int, dict[str, Any] | None]] = []

    async def push(self, session: aiohttp.ClientSession, n: int, phase: str, concurrency: int = 4) -> None:
        """POST the next ``n`` payloads, ``concurrency`` at a time."""
        sem = asyncio.Semaphore(concurrency)

        async def one(p: HttpPayload) -> None:
            async with sem:
                async with session.post(self.url + p.path, data=p.body,
                                        headers={"Content-Type": p.content_type}) as r:
                    body = await r.json(content_type=None)
                    self.answers.append((phase, p, r.status, body))

        batch = [self.todo.pop() for _ in range(min(n, len(self.todo)))]
        await asyncio.gather(*(one(p) for p in batch))

    async def paced(self, session: aiohttp.ClientSession, phase: str, until: Any, per_tick: int = 5,
                    tick_s: float = 0.5) -> None:
        """Keep posting ``per_tick`` payloads every ``tick_s`` while ``until()`` is false."""
        while not until() and self.todo:
            t0 = time.monotonic()
            await self.push(session, per_tick, phase)
            await asyncio.sleep(max(0.0, tick_s - (time.monotonic() - t0)))


def test_acknowledged_events_survive_a_kafka_outage(private_kafka: KafkaEngine, tmp_path: Path) -> None:
    from simulator.model import build_world
    from simulator.writer import write_registry
    from streams.ops.provision import provision_topics
    from schemas.serde import default_store

    engine = private_kafka
    settings = Settings(**{**engine.settings.model_dump(), "topic_prefix": "outage.", "run_dir": tmp_path / "recv",
                           "dev_mode": True})  # about Kafka outages, not authentication: an open receiver
    assert settings.kafka_bootstrap != "127.0.0.1:19092"
    provision_topics(settings)
    reg = tmp_path / "registry.csv"
    write_registry(build_world(1), reg)
    from connectors.sources.devices import DeviceRegistry

    by_label = simulator_payloads(3, 250, registry=DeviceRegistry.from_csv(reg))  # record-producing only
    mixed = [p for group in zip(*by_label.values()) for p in group]  # round-robin over the connectors
    mixed += [p for ps in by_label.values() for p in ps[len(mixed) // len(by_label):]]
    receivers = ConnectorsProcess(settings, registry=reg, log_path=tmp_path / "connectors.log",
                                  extra_args=["--kafka-timeout", "1.0"]).start()
    pusher = Pusher(receivers.url, mixed)
    timeline: dict[str, float] = {}

    async def scenario() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await pusher.push(session, 150, "before")
            # stop the broker while pushing goes on
            t_stop = time.monotonic()
            stopped = asyncio.ensure_future(asyncio.to_thread(engine.stop))
            await pusher.paced(session, "outage", lambda: stopped.done() and time.monotonic() - t_stop >= OUTAGE_S)
            await stopped
            timeline["down_s"] = time.monotonic() - t_stop
            health = receivers.healthz()
            assert health is not None and health["kafka"] == "unreachable", health
            assert health["spool"]["pending_records"] > 0, health
            # bring it back while pushing goes on
            t_start = time.monotonic()
            started = asyncio.ensure_future(asyncio.to_thread(
                lambda: (engine.start(java_binary()), engine.wait_ready(120))))
            await pusher.paced(session, "recovery", started.done)
            await started
            timeline["restart_s"] = time.monotonic() - t_start
            await pusher.push(session, 100, "after")

    try:
        asyncio.run(scenario())
        t_drain = time.monotonic()
        wait_for(lambda: (receivers.healthz() or {}).get("spool", {}).get("pending_records") == 0, 120, 1.0,
                 "the spool to drain")
        timeline["drain_s"] = time.monotonic() - t_drain
        assert receivers.alive(), receivers.log_tail()
    finally:
        code = receivers.stop()
    assert code == 0, receivers.log_tail()

    statuses = Counter((phase, status) for phase, _, status, _ in pusher.answers)
    assert all(status == 202 for _, _, status, _ in pusher.answers), statuses  # 2xx throughout, never 5xx/429
    spooled = sum(1 for phase, _, _, body in pusher.answers if body and body.get("spooled"))
    outage_n = sum(n for (phase, _), n in statuses.items() if phase == "outage")
    assert outage_n >= 50, statuses
    assert spooled >= outage_n, (spooled, outage_n)

    store = default_store()
    missing: dict[str, int] = {}
    dup_total = 0
    copies: Counter[tuple[str, int]] = Counter()  # (phase acknowledged in, copies on the topic) → ids
    phase_of = {p.native_id: phase for phase, p, _, _ in pusher.answers}
    for topic in sorted(set(TOPIC_OF.values())):
        acked = Counter(p.native_id for _, p, status, _ in pusher.answers
                        if 200 <= status < 300 and TOPIC_OF[p.source] == topic)
        got = Counter(store.decode(m.value)[1]["native_id"] for m in read_topic(settings.kafka_bootstrap,
                                                                                settings.topic(topic), idle_s=3))
        lost = acked - got
        if lost:
            missing[topic] = sum(lost.values())
        assert not set(got) - set(acked), (topic, list(set(got) - set(acked))[:3])
        dup_total += sum(n - 1 for i, n in got.items() if n > 1)
        copies.update((phase_of[i], n) for i, n in got.items())
    assert not missing, f"acknowledged but not in Kafka: {missing}"
    dead = read_topic(settings.kafka_bootstrap, settings.topic("deadletters.v1"), idle_s=2)
    assert dead == []
    print(f"outage: {len(pusher.answers)} acknowledged ({outage_n} during the outage, {spooled} spooled), "
          f"{dup_total} duplicate(s); timeline {timeline}; ids by (phase, copies): {sorted(copies.items())}")
