"""Connectors end to end: `pingan simulate --send` against `pingan connectors run` (both subprocesses).

The receivers run with an isolated topic prefix (``PINGAN_TOPIC_PREFIX``) on the shared Kafka, the
device registry of a simulator folder (seed-independent) and the 110 poller on a SQLite ``JJD``
table that the sender inserts into. The sender's ``--report`` JSON is the truth: for every raw
topic the multiset of native ids on the topic equals the multiset the simulator had acknowledged
(202 for HTTP, "inserted" for 110 rows) — duplicates (the simulator's second deliveries) show up
as the same native id twice; heartbeats are answered 200 and are not records; nothing is
dead-lettered because nothing the simulator sends is malformed (every 4xx would be one dead letter).
"""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.processes import ConnectorsProcess, isolated_settings, simulate_folder
from tests.harness.auth import write_ingest_credentials
from tests.harness.kafka import delete_topics
from tests.harness.leaks import delete_namespace
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 100.0      # deliveries per second
MINUTES = 0.5     # → 3,000 deliveries in ~30 s
TOPIC_FEEDS = {
    "raw.camera.v1": ("gb28181", "isapi"),
    "raw.grid.v1": ("grid",),
    "raw.alarm110.v1": ("alarm110",),
    "raw.mediation.v1": ("mediation",),
    "raw.door.v1": ("door",),
}
ACKED = ("202", "inserted")


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Every message of ``topic`` from the start: wait until at least ``expected`` arrived, then read
    on for 3 s of silence (so extra messages are seen too)."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while True:
            batch = list(consumer)  # until 3 s without a message
            out.extend(batch)
            if len(out) >= expected or time.monotonic() > deadline:
                return out
    finally:
        consumer.close()


@pytest.fixture()
def namespace(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Isolated prefix with the catalogue's topics (deleted afterwards), run dir under tmp_path."""
    from streams.ops.provision import provision_topics
    from schemas.catalogue import TOPICS

    s = isolated_settings(stack, run_dir=tmp_path / "run",
                          ingest_credentials=write_ingest_credentials(tmp_path / "ingest.toml"))
    provision_topics(s)
    yield s
    delete_topics([s.topic(t.name) for t in TOPICS])
    delete_namespace(s)


def test_simulate_send_counts_equal_topics(namespace: Settings, tmp_path: Path) -> None:
    from simulator.sender import Alarm110Sink
    from schemas.serde import default_store

    # the registry of a simulator folder (the registry does not depend on the seed)
    sim = tmp_path / "sim"
    simulate_folder(sim, seed=7, scale=0.01)
    db_url = f"sqlite:///{tmp_path / 'jjd.db'}"
    Alarm110Sink(db_url).close()  # the desk's table exists before the poller starts (it refuses a missing table)

    receivers = ConnectorsProcess(namespace, registry=sim / "registry.csv", log_path=tmp_path / "connectors.log",
                                  alarm110_url=db_url, alarm110_interval=0.5).start()
    report_path = tmp_path / "report.json"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "streams.cli", "simulate", "--send", "--url", receivers.url, "--rate", str(RATE),
             "--minutes", str(MINUTES), "--alarm110-db", db_url, "--seed", "1", "--quiet", "--report", str(report_path),
             "--credentials", str(namespace.ingest_credentials)],  # the simulator signs like the real senders
            capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Sent" in proc.stdout  # the human table is still printed
        report = json.loads(report_path.read_text())
        assert report["total"] == int(RATE * MINUTES * 60)
        statuses = {st for c in report["by_feed"].values() for st in c}
        assert statuses <= {"200", "202", "400", "inserted", "duplicate-key"}, report["by_feed"]
        assert report["by_feed"]["isapi"].get("200", 0) > 0, "the simulator sends heartbeats; they are answered 200"
        assert sum(report["duplicates"].values()) > 0, "the simulator sends duplicates"

        store = default_store()
        for topic, feeds in TOPIC_FEEDS.items():
            expected: Counter[str] = Counter()
            for feed in feeds:
                for status in ACKED:
                    expected.update(report["native_ids"].get(feed, {}).get(status, []))
            msgs = read_all(namespace.kafka_bootstrap, namespace.topic(topic), sum(expected.values()))
            got = Counter(store.decode(m.value)[1]["native_id"] for m in msgs)
            assert len(msgs) == sum(expected.values()), (topic, len(msgs), sum(expected.values()))
            assert got == expected, (topic, (got - expected).most_common(3), (expected - got).most_common(3))
            dups = {i for i, n in got.items() if n > 1}
            sim_dups = sum(report["duplicates"].get(f, 0) for f in feeds if f != "alarm110")
            # every duplicate delivery the receivers acknowledged is a second copy of its native id
            if topic != "raw.alarm110.v1":
                assert sum(got[i] - 1 for i in dups) == sim_dups, (topic, len(dups), sim_dups)
        # heartbeats: answered 200, counted as dropped, never records
        beats = report["by_feed"]["isapi"].get("200", 0)
        assert f'pingan_receiver_dropped_total{{source="isapi"}} {float(beats)}' in receivers.metrics()

        # the dead-letter topic holds exactly one letter per 4xx answer (the simulator sends none)
        rejected = sum(n for c in report["by_feed"].values() for st, n in c.items() if st.startswith("4"))
        letters = read_all(namespace.kafka_bootstrap, namespace.topic("deadletters.v1"), rejected, timeout_s=5)
        assert len(letters) == rejected == 0
        # an unsigned push is refused, counted, and adds nothing to any topic
        req = urllib.request.Request(receivers.url + "/grid/reports", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)  # noqa: S310 - loopback
        assert refused.value.code == 401 and json.loads(refused.value.read())["code"] == "missing"
        assert 'pingan_receiver_auth_failed_total{code="missing",source="grid"} 1.0' in receivers.metrics()
        failed = [line for line in receivers.metrics().splitlines()
                  if line.startswith("pingan_receiver_auth_failed_total{") and 'code="challenge"' not in line]
        assert failed == ['pingan_receiver_auth_failed_total{code="missing",source="grid"} 1.0'], failed
        # (Digest challenges — the ISAPI handshake's first leg — are counted apart, as code="challenge")
        health = receivers.healthz()
        assert health is not None and health["kafka"] == "ok" and health["spool"]["pending_records"] == 0
    finally:
        code = receivers.stop()
    assert code == 0, receivers.log_tail()
