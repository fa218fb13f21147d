"""The Faust agents in Faust's own test context (in-memory tables, captured sends).

These check the wiring only: decode → stage → publish, errors → dead letters, the stream goes on.
The same agents run against the real broker in tests/e2e.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.ingest.files import iter_deliveries, load_truth
from connectors.sources.devices import DeviceRegistry
from schemas.serde import default_store
from connectors.sources.registry import normalizer
from streams.settings import DEFAULT_TIMEZONE
from streams.settings import Settings
from streams.domain.incidents import resolve
from streams.worker import topology
from streams.worker.app import build_app


@pytest.fixture(params=["at_least_once", "exactly_once"])
def app_and_sent(tmp_path, monkeypatch, request):  # noqa: ANN001, ANN201
    """The app with its sends captured: the producer's (at_least_once and the normalize agent), or
    the correlate checkpoints' (exactly_once: changelog records in `app.checkpointed_log`)."""
    settings = Settings(run_dir=tmp_path, registry_path=None, processing_guarantee=request.param)
    app = build_app(settings, with_index=False, table_store="memory://")
    app.finalize()
    sent: list[tuple[str, bytes, bytes]] = []
    short = {settings.topic(n): alias for alias, n in (
        ("events", topology.EVENTS), ("by_county", topology.BY_COUNTY), ("links", topology.LINKS),
        ("incidents", topology.INCIDENTS), ("escalations", topology.ESCALATIONS),
        ("deadletters", topology.DEAD_LETTERS), ("members", topology.INCIDENT_MEMBERS))}

    async def send(topic: str, key: bytes, value: bytes, *_: Any, **__: Any) -> asyncio.Future:
        sent.append((short[topic], key, value))
        return delivered()

    monkeypatch.setattr(app.producer, "send", send)

    async def publish_many(records: list) -> None:  # the normalize agent's batches (engine.publish_many)
        sent.extend((short[r.topic], r.key, r.value) for r in records)

    monkeypatch.setattr(app, "publish_many", publish_many)
    app.checkpointed_log = []
    app.committed_offsets = []
    for checkpoints in app.checkpoints.values():
        async def commit(partition: int, records: list, next_offset: int) -> list:
            metas = []
            for r in records:
                if r.topic in short:
                    sent.append((short[r.topic], r.key, r.value))
                else:
                    app.checkpointed_log.append(r)
                metas.append(SimpleNamespace(offset=len(metas)))
            app.committed_offsets.append((partition, next_offset))
            return metas

        monkeypatch.setattr(checkpoints, "commit", commit)
    return app, sent


def delivered() -> asyncio.Future:
    """What the producer's send returns: the delivery future (here already acknowledged)."""
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


def _decoded(sent: list, name: str) -> list[dict]:
    store = default_store()
    return [store.decode(v)[1] for n, _k, v in sent if n == name]


async def test_normalize_agent_publishes_events_and_dead_letters(app_and_sent, sim_folder) -> None:  # noqa: ANN001
    app, sent = app_and_sent
    store = default_store()
    grid = next(d for d in iter_deliveries(sim_folder) if d.feed == "grid" and d.result.records)
    record = grid.result.records[0]
    async with app.pingan_agents["normalize"].test_context() as agent:
        await agent.put(key=b"k", value=store.encode(grid.result.schema, record))
        await agent.put(key=b"bad", value=b"\xc3\x01garbage")  # undecodable: a dead letter, not a crash
        await agent.put(key=b"k", value=store.encode(grid.result.schema, record))  # redelivery
    events = _decoded(sent, "events")
    assert [e["event_id"] for e in events] == [f"grid:{record['native_id']}"] * 2  # same id: idempotent downstream
    assert len(_decoded(sent, "by_county")) == 2
    (dl,) = _decoded(sent, "deadletters")
    assert dl["stage"] == "normalize" and dl["error_class"] == "dead_letter" and dl["raw"] == b"\xc3\x01garbage"
    assert record["persons"] and all(p.get("id_number") not in repr(events) for p in record["persons"]
                                     if p.get("id_number"))


async def test_correlate_agent_links_the_dispute_into_one_incident(app_and_sent, sim_folder) -> None:  # noqa: ANN001
    app, sent = app_and_sent
    store = default_store()
    truth = load_truth(sim_folder)
    dispute = {e["event_id"] for e in truth["events"] if e["scenario"] == "dispute_demolition"}
    norm = normalizer(b"test", DEFAULT_TIMEZONE, DeviceRegistry.from_csv(sim_folder / "registry.csv"))
    events = [norm.normalize(d.source, r) for d in iter_deliveries(sim_folder)
              for r in d.result.records]
    # the grid report is delivered twice, then once more when the grid worker settles it (已化解)
    chosen = [e for e in events if e["event_id"] in dispute]
    deliveries = [e for e in truth["events"] if e["scenario"] == "dispute_demolition"]
    assert len(chosen) == len(deliveries) >= 4 and {e["event_id"] for e in chosen} == dispute
    async with app.pingan_agents["correlate"].test_context() as agent:
        for ev in chosen:
            await agent.put(key=b"513221", value=store.encode("pingan.Event", ev))
        await agent.put(key=b"513221", value=b"\xc3\x01not an event")
    incidents = _decoded(sent, "incidents")
    final = [i for i in incidents if i["status"] != "merged" and set(i["event_ids"]) == dispute]
    assert final, "the three dispute events end in one incident"
    merged_away = {i["incident_id"] for i in incidents if i["status"] == "merged"}
    live = {i["incident_id"] for i in incidents if i["status"] != "merged"} - merged_away
    assert live == {final[-1]["incident_id"]}  # every intermediate incident was merged into it
    reasons = {r for link in final[-1]["links"] for r in link["reasons"]}
    assert "同一身份证号" in reasons
    # incident-members.v1: every event's member record leads, through the redirects, to that incident
    redirects = {i["incident_id"]: i["merged_into"] for i in incidents if i["status"] == "merged"}
    members = _decoded(sent, "members")
    assert {m["event_id"] for m in members} == dispute
    assert {resolve(m["incident_id"], redirects) for m in members} == {final[-1]["incident_id"]}
    if any(e.get("followup") for e in deliveries):  # settled by the source: resolved with its reason
        assert final[-1]["status"] == "resolved"
        assert any("已化解" in (d["outcome"] or "") for d in final[-1]["dispositions"] if d["origin"] == "source")
    (dl,) = _decoded(sent, "deadletters")
    assert dl["stage"] == "correlate"
    if app.checkpoints:  # exactly_once: state went with the outputs, then into the local tables
        assert app.committed_offsets and app.committed_offsets[-1] == (0, len(chosen) + 1)
        changelogs = {r.topic for r in app.checkpointed_log}
        assert changelogs == app.checkpointed_changelogs and all(r.partition == 0 for r in app.checkpointed_log)
        incidents_table = app.pingan_processor.stores.incidents.table
        assert final[-1]["incident_id"] in incidents_table.data
        m = app.pingan_metrics  # each committed checkpoint counted with its time
        assert m.checkpoints >= 1 and 0 < m.checkpoint_seconds_max <= m.checkpoint_seconds
    assert app.pingan_metrics.correlate_batches >= 1 and app.pingan_metrics.correlate_seconds > 0
    assert 0 <= app.pingan_metrics.correlate_wait_seconds_max <= app.pingan_metrics.correlate_wait_seconds + 1e-9


@pytest.fixture(scope="module")
def sim_folder(tmp_path_factory):  # noqa: ANN001, ANN201
    out = tmp_path_factory.mktemp("sim")
    subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--out", str(out), "--days", "1", "--seed", "1",
                    "--quiet"], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_correlate_agent_processes_every_event_when_sends_are_slow(tmp_path, sim_folder, guarantee) -> None:  # noqa: ANN001
    """While the batch body waits on a slow send (a broker failing over), Faust's take_events keeps
    buffering the next events in the background; every one of them must still be processed. (The
    body sets only the current-event context variable for table writes, never the stream's
    `current_event` attribute, which that background buffering reads.)"""
    settings = Settings(run_dir=tmp_path, registry_path=None, correlate_batch_size=20, correlate_batch_s=0.01,
                        processing_guarantee=guarantee)
    app = build_app(settings, with_index=False, table_store="memory://")
    app.finalize()
    store = default_store()
    incidents_topic = settings.topic(topology.INCIDENTS)
    seen: set[str] = set()

    async def slow_send(topic: str, key: bytes, value: bytes, *_: Any, **__: Any) -> asyncio.Future:
        await asyncio.sleep(0.002)  # the producer's buffer is full: the send suspends the body
        if topic == incidents_topic:
            seen.update(store.decode(value)[1]["event_ids"])
        return delivered()

    app.producer.send = slow_send  # type: ignore[method-assign]

    async def slow_publish_many(records: list) -> None:  # at_least_once: the batches of engine.publish_many
        for r in records:
            await slow_send(r.topic, r.key, r.value)

    app.publish_many = slow_publish_many  # type: ignore[method-assign]

    async def slow_commit(partition: int, records: list, next_offset: int) -> list:
        for r in records:
            await slow_send(r.topic, r.key, r.value)
        return [SimpleNamespace(offset=i) for i in range(len(records))]

    for checkpoints in app.checkpoints.values():
        checkpoints.commit = slow_commit  # type: ignore[method-assign]
    norm = normalizer(b"test", DEFAULT_TIMEZONE, DeviceRegistry.from_csv(sim_folder / "registry.csv"))
    events = [norm.normalize(d.source, r) for d in iter_deliveries(sim_folder) for r in d.result.records][:400]
    expected = {e["event_id"] for e in events}
    async with app.pingan_agents["correlate"].test_context() as agent:
        for ev in events:
            await agent.put(key=b"513221", value=store.encode("pingan.Event", ev), wait=False)
        for _ in range(500):
            if expected <= seen:
                break
            await asyncio.sleep(0.02)
    assert expected - seen == set(), f"{len(expected - seen)} of {len(expected)} events never reached an incident"


async def test_failed_checkpoint_hands_its_partition_back_instead_of_skipping_the_batch(tmp_path, sim_folder) -> None:  # noqa: ANN001
    """A checkpoint that fails (here a KafkaError, as in a broker restart) commits nothing; the agent
    goes on (no raise: Faust would restart it in place, past the batch), asks for the partition to be
    read again (`reinitialize`), and skips the partition's records until the next assignment."""
    from aiokafka.errors import KafkaError

    settings = Settings(run_dir=tmp_path, registry_path=None, correlate_batch_size=5, correlate_batch_s=0.01)
    app = build_app(settings, with_index=False, table_store="memory://")
    app.finalize()
    store = default_store()
    (checkpoints,) = app.checkpoints.values()
    commits: list[tuple[int, int]] = []
    fail = [True]

    async def commit(partition: int, records: list, next_offset: int) -> list:
        if fail[0]:
            fail[0] = False
            raise KafkaError("Unexpected error during batch delivery")
        commits.append((partition, next_offset))
        return [SimpleNamespace(offset=i) for i in range(len(records))]

    checkpoints.commit = commit  # type: ignore[method-assign]
    asked: list[tuple[str, int]] = []

    async def reinitialize(topic: str, partition: int) -> None:
        asked.append((topic, partition))
        app.reinitializing.add((topic, partition))

    app.reinitialize = reinitialize  # type: ignore[method-assign]
    norm = normalizer(b"test", DEFAULT_TIMEZONE, DeviceRegistry.from_csv(sim_folder / "registry.csv"))
    events = [norm.normalize(d.source, r) for d in iter_deliveries(sim_folder) for r in d.result.records][:30]
    incidents_table = app.pingan_processor.stores.incidents.table
    async with app.pingan_agents["correlate"].test_context() as agent:
        for ev in events[:10]:
            await agent.put(key=b"513221", value=store.encode("pingan.Event", ev))
        assert asked == [(settings.topic(topology.BY_COUNTY), 0)]
        assert commits == [] and not incidents_table.data  # nothing of the failed batch, nothing after it
        assert app.pingan_metrics.checkpoints_failed == 1 and app.pingan_metrics.checkpoints == 0
        await app._reinitialized(app, set())  # noqa: SLF001 - the next assignment (restore, seek) ends the skip
        assert not app.reinitializing
        for ev in events[10:]:
            await agent.put(key=b"513221", value=store.encode("pingan.Event", ev))
    assert commits and all(p == 0 for p, _ in commits) and incidents_table.data
