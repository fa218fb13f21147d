"""Smoke test of `pingan bench throughput` on the real stack with tiny settings.

Runs the real command (one round, scale 0.2, a 3-second latency probe) and checks that the one
table has every row with a positive rate, that the JSON holds the same numbers, and that the run
left no topics, consumer groups or indices behind.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.throughput import LABELS
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def _leftovers(settings: Settings) -> tuple[list[str], list[str], list[str]]:
    from elasticsearch import Elasticsearch
    from kafka import KafkaAdminClient

    from bench.common import group_id as _group_id

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        topics = [t for t in admin.list_topics() if t.startswith("bench") or t.startswith("pingan-bench-")]
        groups = [g for g in map(_group_id, admin.list_groups()) if g.startswith("pingan-bench-")]
    finally:
        admin.close()
    es = Elasticsearch(settings.es_url)
    try:
        indices = list(es.indices.get(index="pingan-bench-*", allow_no_indices=True))
    finally:
        es.close()
    return topics, groups, indices


def test_throughput_bench_prints_every_row(stack: Settings, tmp_path: Path) -> None:
    before = _leftovers(stack)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "bench", "throughput", "--scale", "0.2", "--rounds", "1",
         "--latency-seconds", "3", "--min-docs", "1000", "--min-events", "2000", "--json", str(out)],
        capture_output=True, text=True, timeout=220, env={**__import__("os").environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    for label in LABELS.values():
        assert label in proc.stdout, f"row {label!r} missing:\n{proc.stdout}"
    assert "end-to-end latency p99" in proc.stdout
    assert "FAILED" not in proc.stdout, proc.stdout + proc.stderr[-4000:]

    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["machine"]["cores"] >= 1
    for variant, row in data["summary"].items():
        assert row["median_rate_per_s"] > 0, (variant, row)
        assert row["median_seconds"] > 0, (variant, row)
    for variant in ("normalize", "sink", "pipeline"):
        assert data["summary"][variant]["ratio"] > 0
    assert data["latency"]["measured"] > 0 and data["latency"]["p99"] > 0
    assert not data["failures"]

    after = _leftovers(stack)
    for kind, old, new in zip(("topics", "groups", "indices"), before, after):
        assert set(new) <= set(old), f"bench left {kind} behind: {sorted(set(new) - set(old))}"
