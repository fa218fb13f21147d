"""Smoke test of `pingan bench throughput` on the real stack with tiny settings.

Runs the real command fast (one round, ~2 s per variant, a 3-second latency probe, a small flood)
and checks that the one table has every row and every ratio beside its target, that the JSON holds
finite positive rates and ratios, that every run completed its outputs (events.v1 end offsets, the
index at every expected version, every bulk document written), and that the run left no topics,
consumer groups or indices behind.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.throughput import LABELS, RATIOS, SCALING
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]


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
        [sys.executable, "-m", "streams.cli", "bench", "throughput", "--scale", "0.5", "--rounds", "1",
         "--min-seconds", "2", "--latency-seconds", "3", "--latency-runs", "2", "--flood-events", "1000", "--flood-chunk", "200",
         "--json", str(out)],
        capture_output=True, text=True, timeout=400, env={**os.environ, "COLUMNS": "220"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    for label in [*LABELS.values(), *(r.label for r in (*RATIOS, *SCALING))]:
        assert label in proc.stdout, f"row {label!r} missing:\n{proc.stdout}"
    assert "end-to-end latency p99" in proc.stdout
    assert "flood:" in proc.stdout
    assert "FAILED" not in proc.stdout, proc.stdout + proc.stderr[-4000:]

    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["machine"]["cores"] >= 1
    for variant, row in data["summary"].items():
        assert math.isfinite(row["median_rate_per_s"]) and row["median_rate_per_s"] > 0, (variant, row)
        assert row["median_seconds"] > 0, (variant, row)
    for key, row in data["ratios"].items():
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, (key, row)
    for run in data["runs"]:  # every output was seen complete, after ≥ min-seconds of work
        assert run["expected"] > 0 and run["observed"] == run["expected"], run
        assert run["seconds"] >= 2.0 or run["short"], run
    assert data["latency"]["measured"] > 0 and data["latency"]["p99"] > 0
    per_run = data["latency"]["p99_per_run"]  # the row is the run with the median p99 (the higher of two)
    assert len(per_run) == 2 and data["latency"]["p99"] == max(per_run), per_run
    assert "median of 2 runs" in proc.stdout
    stages = data["latency"]["stages"]  # where the time goes, per event, from Kafka timestamps
    assert set(stages) == {"normalize", "correlate", "commit + index + refresh"}, stages
    assert all(count > 0 and 0 <= p50 <= p99 for p50, p99, count in stages.values()), stages
    assert "latency stage: correlate" in proc.stdout
    flood = data["flood"]
    assert flood == "n/a (bench.flood missing)" or (flood["ratio"] > 0 and len(flood["chunk_seconds"]) == 5), flood
    assert not data["failures"]

    after = _leftovers(stack)
    for kind, old, new in zip(("topics", "groups", "indices"), before, after):
        assert set(new) <= set(old), f"bench left {kind} behind: {sorted(set(new) - set(old))}"
