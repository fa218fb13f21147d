"""kill -9 of the worker at 20+ random points of a flood day; the checkpoints keep it exact.

The seed-2 day (≈1,100 deliveries, a 264-event flood) is published in chunks, one per cycle; each
cycle starts the worker, waits until it is processing, then SIGKILLs its process group either at
a random point of the chunk's progress (mid-work) or after a random 0.2–3 s (no shutdown hooks, no final commit: a kill can land inside a checkpoint's
transaction, between it and the local table writes, inside normalize's sends, in recovery...).
After the last cycle the worker runs undisturbed until it has caught up. Then, reading with
``isolation_level="read_committed"`` as every downstream consumer does:

- the final state of every incident on `incidents.v1` equals the pure in-process pipeline's
  incidents over the same day (same ids, same event sets), and so does the index;
- no two committed `incidents.v1` records share (incident_id, version) with different content,
  and every committed link is there once;
- every event of `events.v1` is in exactly one live incident (no lost event), and
  `incident-members.v1` followed through the redirects gives the same incidents.

Every fourth restart also deletes the workers' RocksDB directories (a restart on a new node): the
tables are restored from their changelogs, the path in which Faust fetches while the worker seeks
(docs/faults.md, finding 4b).

The worker joins the group as a static member (`worker_static_membership`), so a restart takes
its partitions back without waiting for the killed member's session to expire.

Run twice: one ``all`` worker, and the split deployment (a ``correlate`` and an ``edge`` worker
of one group, docs/operations.md §7), where each cycle kills one of the two or both.
"""
from __future__ import annotations

import random
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.processes import wait_for
from schemas.serde import default_store
from streams.domain.incidents import resolve
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from streams.worker import topology
from tests.harness.pipeline import chunks, publish, stacks, wait_for_index, worker_metrics
from tests.harness.stack import fault_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

KILLS = 22


def read_all(bootstrap: str, topic: str, isolation_level: str, idle_s: float = 3.0) -> list[Any]:
    """Every record of `topic` a consumer with `isolation_level` sees, partition by partition in order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=int(idle_s * 1000), isolation_level=isolation_level)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return sorted(consumer, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


@pytest.mark.parametrize("deployment", ["all", "split"])
def test_kill9_at_random_points_of_a_flood_day_keeps_exact_incidents(
        stack: Settings, sim_day: Path, day_deliveries: list, expected_incidents: dict, workers,
        tmp_path: Path, deployment: str) -> None:
    """``all``: one worker, killed every cycle. ``split``: a correlate worker (id 0) and an edge
    worker (id 1, normalize + index) of one group; each cycle kills one of them, or both, at random."""
    t0 = time.monotonic()
    # small batches: many checkpoints per chunk, so a mid-work kill often lands inside a transaction
    s = fault_settings(stack, sim_day, tmp_path / "run", processing_guarantee="exactly_once",
                       worker_static_membership=True, worker_session_timeout_s=6.0,
                       correlate_batch_size=10, normalize_batch_size=10)
    provision_topics(s)
    provision_elasticsearch(s)
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    parts = chunks(day_deliveries, KILLS)
    kills: list[str] = []
    procs = [workers.start(s, 0)] if deployment == "all" else \
        [workers.start(s, 0, role="correlate"), workers.start(s, 1, role="edge")]
    normalizer = len(procs) - 1  # the worker id whose raw_in counts the chunk's progress
    killed = list(procs)
    for i, part in enumerate(parts):
        publish(s, part)
        if i:
            if i % 4 == 3:  # a restart on a new node: no local tables, all restored from the changelogs
                for tables in s.run_dir.glob("workers/*/v1/tables"):
                    shutil.rmtree(tables)
            for w in killed:
                w.start()
        # processing: the web server answers and the worker has read something. Every other cycle
        # the kill waits for a random point of the chunk's progress (mid-work: inside a batch, a
        # transaction, normalize's sends), the others a random 0.2-3 s (also after the work).
        mid = i % 2 == 0 and len(part) > 2
        target = rng.randint(1, len(part) - 1) if mid else 1
        try:
            wait_for(lambda: (worker_metrics(s, normalizer) or {}).get("raw_in", 0) >= target, 120, 0.02,
                     f"the worker to process (cycle {i})")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nseed {seed}; kills so far:\n" + "\n".join(kills) + "\n"
                                 + stacks(s, procs)) from None
        pause = rng.uniform(0.0, 0.1) if mid else rng.uniform(0.2, 3.0)
        time.sleep(pause)
        killed = list(procs) if len(procs) == 1 else rng.choice([procs[:1], procs[1:], procs])
        kills.append(f"{i}: {'at raw_in >= %d, ' % target if mid else ''}after {pause:.2f} s, kill "
                     f"{[w.worker_id for w in killed]} {worker_metrics(s, normalizer)}")
        for w in killed:
            w.kill9()
    for w in killed:
        w.start()
    try:
        wait_for_index(s, expected_incidents, procs, timeout_s=240)
    finally:
        print(f"{deployment}: seed {seed}; {len(kills)} kills in {time.monotonic() - t0:.0f} s:\n" + "\n".join(kills))
    assert len(kills) >= 20

    # what read_committed consumers see
    store = default_store()
    incidents = read_all(s.kafka_bootstrap, s.topic(topology.INCIDENTS), "read_committed")
    uncommitted = read_all(s.kafka_bootstrap, s.topic(topology.INCIDENTS), "read_uncommitted")
    versions: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    final: dict[str, dict[str, Any]] = {}
    for r in incidents:
        _name, inc = store.decode(r.value)
        versions[(inc["incident_id"], inc["version"])].add(r.value)
        final[inc["incident_id"]] = inc  # keyed by id: one partition, in order
    conflicting = {k: len(v) for k, v in versions.items() if len(v) > 1}
    assert not conflicting, f"committed incident versions with different content: {list(conflicting.items())[:5]}"
    live = {iid: frozenset(inc["event_ids"]) for iid, inc in final.items() if inc["status"] != "merged"}
    assert live == expected_incidents, (f"{len(live)} live vs {len(expected_incidents)} expected; "
                                        f"missing {sorted(set(expected_incidents) - set(live))[:5]}, "
                                        f"extra {sorted(set(live) - set(expected_incidents))[:5]}")

    links = [store.decode(r.value)[1]["link_id"]
             for r in read_all(s.kafka_bootstrap, s.topic(topology.LINKS), "read_committed")]
    twice = [lid for lid, n in Counter(links).items() if n > 1]
    assert links and not twice, f"{len(twice)} links committed more than once: {twice[:5]}"

    events = {store.decode(r.value)[1]["event_id"]
              for r in read_all(s.kafka_bootstrap, s.topic(topology.EVENTS), "read_committed")}
    holders = Counter(eid for ids in live.values() for eid in ids)
    lost = sorted(events - set(holders))
    assert not lost, f"{len(lost)} events in no live incident: {lost[:5]}"
    assert all(holders[e] == 1 for e in events), "an event in two live incidents"

    # incident-members.v1 (what a subscriber uses beyond the listed ids): each event's member record,
    # followed through the committed redirects, gives back the same live incidents
    redirects = {iid: inc["merged_into"] for iid, inc in final.items() if inc["status"] == "merged"}
    joined: dict[str, str] = {}
    for r in read_all(s.kafka_bootstrap, s.topic(topology.INCIDENT_MEMBERS), "read_committed"):
        member = store.decode(r.value)[1]
        joined[member["event_id"]] = member["incident_id"]  # keyed by event: one partition, in order
    rebuilt: dict[str, set[str]] = defaultdict(set)
    for eid, holder in joined.items():
        rebuilt[resolve(holder, redirects)].add(eid)
    assert {iid: frozenset(ids) for iid, ids in rebuilt.items()} == live, "incident-members.v1 disagrees"
    print(f"incidents.v1: {len(incidents)} committed records, {len(uncommitted) - len(incidents)} "
          f"aborted/uncommitted; {len(links)} links; {len(events)} events; {time.monotonic() - t0:.0f} s")
