"""Operator-facing index replay on the real stack (issue 17), without a live worker: incidents are
published straight to ``incidents.v1`` of an isolated namespace.

- no loss window: incidents published while a (slowed) replay runs — during the build, after the
  last catch-up round and just before the swap — are all in the index the alias points at afterwards;
- safe points in time: an event-time replay skips older records and equals the live index; an
  offsets replay without seed refuses to swap to a smaller index (diff printed), swaps with --force
  and is marked a partial build; a later seeded replay refuses to copy it;
- a killed ``pingan replay index`` ends with one line and resumes with the same command.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from connectors.elasticsearch.admin import IndexNames
from connectors.ingest.publish import make_producer
from infra.processes import isolated_settings, settings_env
from schemas.examples import example
from schemas.serde import default_store
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.ops.replay import Checkpoint, ReplayRefused, checkpoint_path, replay_index
from streams.settings import Settings
from tests.harness.leaks import delete_namespace

pytestmark = [pytest.mark.integration]

T0 = 1_784_000_000_000  # 2026-07-14 (event time)
HOUR = 3600_000


def incident(n: int, version: int = 1, hour: int = 0) -> dict:
    inc = example("pingan.Incident")
    return {**inc, "incident_id": f"inc-ops-{n:05d}", "version": version, "last_seen": T0 + hour * HOUR,
            "updated_at": T0 + hour * HOUR, "first_seen": T0, "opened_at": T0}


def publish(settings: Settings, incidents: list[dict]) -> None:
    store = default_store()
    producer = make_producer(settings)
    try:
        futures = [producer.send(settings.topic("incidents.v1"), key=i["incident_id"].encode(),
                                 value=store.encode("pingan.Incident", i)) for i in incidents]
        producer.flush()
        for f in futures:
            f.get(30)
    finally:
        producer.close()


def alias_docs(es: Elasticsearch, settings: Settings) -> dict[str, int]:
    """_id → version of every document behind the alias."""
    alias = IndexNames(settings.es_index_prefix).alias
    es.indices.refresh(index=alias)
    resp = es.search(index=alias, size=10000, query={"match_all": {}}, version=True)
    return {h["_id"]: h["_version"] for h in resp["hits"]["hits"]}


def alias_target(es: Elasticsearch, settings: Settings) -> list[str]:
    return sorted(es.indices.get_alias(name=IndexNames(settings.es_index_prefix).alias))


@pytest.fixture(scope="module")
def ns(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """An isolated namespace with 300 incidents (hours 0..29) indexed once from the beginning."""
    settings = isolated_settings(stack, run_dir=tmp_path_factory.mktemp("replay-ops-run"))
    provision_topics(settings)
    provision_elasticsearch(settings)
    try:
        publish(settings, [incident(n, hour=n // 10) for n in range(300)])
        report = asyncio.run(replay_index(settings))
        assert report.completed and report.indexed == 300
        yield settings
    finally:
        delete_namespace(settings)


def test_records_published_during_a_slow_replay_are_all_found_after_the_swap(ns: Settings) -> None:
    settings = ns
    es = Elasticsearch(settings.es_url)
    during: list[dict] = []
    calls = 0

    def slow_progress(_done: int, _total: int) -> None:  # a slow replay: the feeds keep writing meanwhile
        nonlocal calls
        calls += 1
        if calls <= 3:
            new = [incident(1000 + 10 * calls + k, hour=40) for k in range(3)] + [incident(calls, version=5)]
            publish(settings, new)
            during.extend(new)
        time.sleep(0.05)

    def before_swap() -> None:  # written after the last catch-up round, indexed "live" into the old index
        new = [incident(2000 + k, hour=41) for k in range(4)]
        publish(settings, new)
        during.extend(new)

    try:
        before = alias_docs(es, settings)
        report = asyncio.run(replay_index(settings, batch_size=50, progress=slow_progress, before_swap=before_swap))
        assert report.completed and report.swapped_from and report.complete_build
        assert report.catchup_records >= 3 * 4 + 4 and report.catchup_rounds >= 2
        after = alias_docs(es, settings)
        assert alias_target(es, settings) == [report.target_index]
        missing = [i["incident_id"] for i in during if i["incident_id"] not in after]
        assert not missing, f"lost after the swap: {missing}"
        assert len(after) == len(before) + 3 * 3 + 4
        assert all(after[f"inc-ops-{n:05d}"] == 5 for n in (1, 2, 3))  # updates during the replay: newest version
        cp = Checkpoint.load(checkpoint_path(settings))
        assert cp is not None and cp.done and cp.swapped
    finally:
        es.close()


def test_event_time_replay_skips_older_records_and_keeps_the_rest(ns: Settings) -> None:
    settings = ns
    es = Elasticsearch(settings.es_url)
    try:
        before = alias_docs(es, settings)
        report = asyncio.run(replay_index(settings, from_event_ms=T0 + 25 * HOUR))
        assert report.completed and report.skipped > 0 and report.indexed < report.records
        assert report.complete_build  # seeded from a complete index
        assert alias_docs(es, settings) == before
    finally:
        es.close()


def test_a_smaller_index_is_not_swapped_without_force_and_a_partial_one_is_not_seeded(ns: Settings) -> None:
    settings = ns
    es = Elasticsearch(settings.es_url)
    env = {**settings_env(settings), "COLUMNS": "200"}
    try:
        live = alias_target(es, settings)
        before = alias_docs(es, settings)
        cli = [sys.executable, "-m", "streams.cli", "replay", "index", "--from-offsets", "250", "--no-seed"]
        refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "REFUSED" in refused.stderr and "would disappear from search" in refused.stderr
        assert "inc-ops-00000" in refused.stderr and "Traceback" not in refused.stderr
        assert alias_target(es, settings) == live  # nothing swapped
        forced = subprocess.run([*cli, "--force"], env=env, capture_output=True, text=True, timeout=120)
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert "resuming the replay" in forced.stderr and "PARTIAL build" in forced.stdout
        assert alias_target(es, settings) != live and len(alias_docs(es, settings)) < len(before)
        with pytest.raises(ReplayRefused, match="not seeded"):
            asyncio.run(replay_index(settings, from_event_ms=T0))
        healed = asyncio.run(replay_index(settings))  # from the beginning: complete again
        assert healed.completed and healed.complete_build and set(alias_docs(es, settings)) == set(before)
    finally:
        es.close()


def test_a_killed_index_replay_resumes_with_the_same_command(ns: Settings) -> None:
    settings = ns
    env = settings_env(settings)
    cmd = [sys.executable, "-m", "streams.cli", "replay", "index", "--from-beginning", "--batch-size", "5"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        path = checkpoint_path(settings)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cp = Checkpoint.load(path)
            if cp is not None and not cp.done and cp.records >= 20:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the replay made no progress")
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, out + err
    assert "run the same command again to resume" in err and "Traceback" not in err
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming the replay" in again.stderr and "alias →" in again.stdout
