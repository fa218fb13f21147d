"""Replays: rebuild the Elasticsearch index from ``incidents.v1``, or re-run the whole pipeline.

Contract (index replay, `replay_index`):
- Builds a NEW versioned index (``admin.create_next_index``) from the incidents topic, reading every
  partition from a start point (`replay_safety.StartPoint`: the beginning; an event time — every
  record is read, those whose incident changed before it are skipped; a Kafka produce time —
  ``offsets_for_times``; or explicit offsets) up to the end offsets captured when the replay started.
  Documents go through `IncidentSink` (same documents, same external versions as live).
- No loss window: after that, it catches up — moves the end offsets to the topic's end now and
  indexes the gap, round after round until a round finds nothing new — then swaps the alias, then
  catches up once more (what the live agent wrote into the old index until the swap). External
  versions make every extra read idempotent.
- Never shrinks silently: before the swap the new index is compared with the alias's current index;
  fewer documents → no swap, ``report.refused`` and ``report.shrink`` (the diff), the checkpoint is
  kept, and the same command with ``force`` swaps.
- Records its completeness in the mapping's ``_meta.pingan_build`` (complete: from the beginning, or
  seeded from a complete index). Not from the beginning, the new index is first seeded with a copy
  of the alias's current index (``_reindex`` keeping external versions) — refused (`ReplayRefused`)
  when that index was not a complete build, unless ``force``.
- Resumable: after each flushed batch the per-partition next offsets, the end offsets, the target
  index and the phase (swapped or not) are written atomically to
  ``run_dir/replay/index-<es prefix>[-<topic prefix>].json``; a rerun resumes from there (and says
  so through `announce`). A finished replay marks its checkpoint ``done``; the next run starts fresh.
- ``dry_run`` reports per partition what would be reprocessed and writes nothing.
- ``max_batches`` stops after that many flushed batches without swapping (tests of resumption).

Contract (pipeline replay, `replay_pipeline`): a Faust worker with a new ``app_id`` reads the raw
topics (``input_topic_prefix`` = the live prefix) and writes every output under ``target_prefix``;
when its consumer group has reached the raw and by-county end offsets captured at start, the worker
is stopped and `replay_index` builds a new index from ``<target_prefix>incidents.v1`` and swaps.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from connectors.elasticsearch import admin
from connectors.elasticsearch.client import async_client
from connectors.elasticsearch.sink import IncidentSink
from schemas.serde import SchemaStore, default_store
from streams.domain.incidents import complete_members, lists_fewer
from streams.ops.provision import provision_topics
from streams.ops.replay_safety import (ShrinkDiff, StartPoint, build_meta, event_time_of, is_complete, offset_for,
                                       shrink_check)
from streams.settings import DEFAULT_TIMEZONE, Settings
from streams.worker.stages import LIFECYCLE_INPUTS, RAW_SOURCES
from streams.worker.topology import BY_COUNTY, INCIDENT_MEMBERS, INCIDENTS

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """What one partition contributes: offsets ``[start, end)``."""

    partition: int
    start: int
    end: int

    @property
    def count(self) -> int:
        """Records in range (an upper bound on a compacted topic: compaction leaves gaps)."""
        return max(0, self.end - self.start)


def parse_timestamp(text: str, local_tz: str = DEFAULT_TIMEZONE) -> int:
    """ISO 8601 (``2026-07-14T08:00``, ``…+08:00``, ``…Z``) → UTC epoch ms; naive text is in `local_tz`
    (pass ``settings.timezone``)."""
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(local_tz))
    return int(dt.astimezone(timezone.utc).timestamp() * 1000)


def make_consumer(settings: Settings, client_id: str = "pingan-replay"):  # noqa: ANN201 - kafka.KafkaConsumer
    """A group-less kafka-python consumer (manual assignment, nothing committed)."""
    return KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", client_id=client_id, max_poll_records=500,
                         isolation_level="read_committed",
                         fetch_max_wait_ms=200, request_timeout_ms=30000, **settings.kafka_client_options())


def plan_partitions(consumer: Any, topic: str, from_ms: int | None) -> list[PartitionPlan]:
    """Per partition of `topic`: start offset for `from_ms` (None: the beginning) and end offset now."""
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise ValueError(f"topic {topic!r} does not exist (or has no partitions)")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    ends = consumer.end_offsets(tps)
    begins = consumer.beginning_offsets(tps)
    if from_ms is None:
        starts = {tp: begins[tp] for tp in tps}
    else:
        found = consumer.offsets_for_times({tp: from_ms for tp in tps})
        starts = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
    return [PartitionPlan(tp.partition, max(starts[tp], begins[tp]), ends[tp]) for tp in tps]


# --------------------------------------------------------------------------- checkpoint
@dataclass
class Checkpoint:
    """Resumable state of one index replay (JSON file)."""

    topic: str
    target_index: str
    from_ms: int | None  # produce time (Kafka offsets_for_times)
    positions: dict[int, int]  # partition → next offset to read
    ends: dict[int, int]  # partition → end offset read up to (moves forward while catching up)
    seeded: bool = False
    batches: int = 0
    records: int = 0
    done: bool = False
    started_at: float = field(default_factory=time.time)
    mode: str = "beginning"  # beginning | event-time | produce-time | offsets
    event_from_ms: int | None = None
    swapped: bool = False  # the alias points at target_index; only the post-swap catch-up is left
    seeded_from: list[str] = field(default_factory=list)
    catchup_records: int = 0

    def remaining(self) -> int:
        return sum(max(0, self.ends[p] - self.positions.get(p, 0)) for p in self.ends)

    def start_point(self) -> StartPoint:
        if self.mode == "event-time":
            return StartPoint("event-time", self.event_from_ms)
        if self.mode == "produce-time":
            return StartPoint("produce-time", self.from_ms)
        return StartPoint(self.mode)

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        data = asdict(self)
        data["positions"] = {str(k): v for k, v in self.positions.items()}
        data["ends"] = {str(k): v for k, v in self.ends.items()}
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Checkpoint | None":
        """The checkpoint at `path`, or None when there is none."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        data["positions"] = {int(k): int(v) for k, v in data["positions"].items()}
        data["ends"] = {int(k): int(v) for k, v in data["ends"].items()}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def checkpoint_path(settings: Settings, topic_prefix: str | None = None) -> Path:
    """``run_dir/replay/index-<es prefix>[-<topic prefix>].json``."""
    tp = settings.topic_prefix if topic_prefix is None else topic_prefix
    tag = settings.es_index_prefix + (f"-{tp.strip('.')}" if tp else "")
    return settings.run_dir / "replay" / f"index-{tag}.json"


# --------------------------------------------------------------------------- index replay
@dataclass
class ReplayReport:
    """What a replay did (or, for a dry run, would do)."""

    topic: str
    target_index: str
    plans: list[PartitionPlan]
    dry_run: bool = False
    resumed: bool = False
    completed: bool = False
    swapped_from: list[str] = field(default_factory=list)
    records: int = 0
    indexed: int = 0
    deleted: int = 0
    stale: int = 0
    skipped: int = 0  # records before the event-time start
    dead_letters: int = 0
    batches: int = 0
    seconds: float = 0.0
    catchup_records: int = 0  # records read after the captured end offsets (before and after the swap)
    catchup_rounds: int = 0
    refused: str | None = None  # why the alias was not swapped (the checkpoint is kept: rerun with force)
    shrink: ShrinkDiff | None = None
    complete_build: bool = False

    @property
    def total(self) -> int:
        return sum(p.count for p in self.plans)

    @property
    def rate(self) -> float:
        """Records per second of this run."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


class ReplayRefused(Exception):
    """A replay that would lose data without an explicit ``force`` (the message says why and what to do)."""


ProgressFn = Callable[[int, int], None]  # (records done in this step, total planned)


def _start_point(from_ms: int | None, from_event_ms: int | None, from_offsets: Mapping[int, int] | None) -> StartPoint:
    given = [x is not None for x in (from_ms, from_event_ms, from_offsets)]
    if sum(given) > 1:
        raise ValueError("give at most one of an event time, a produce time or offsets")
    if from_event_ms is not None:
        return StartPoint("event-time", from_event_ms)
    if from_ms is not None:
        return StartPoint("produce-time", from_ms)
    if from_offsets is not None:
        return StartPoint("offsets", offsets=dict(from_offsets))
    return StartPoint()


def _plans_for(consumer: Any, topic: str, start: StartPoint) -> list[PartitionPlan]:
    if start.mode == "produce-time":
        return plan_partitions(consumer, topic, start.ms)
    plans = plan_partitions(consumer, topic, None)  # event time: read everything, select by the record
    if start.mode == "offsets":
        offs = start.offsets or {}
        plans = [PartitionPlan(p.partition, min(max(p.start, o), p.end) if (o := offset_for(offs, p.partition))
                               is not None else p.start, p.end) for p in plans]
    return plans


async def replay_index(settings: Settings, *, from_ms: int | None = None, from_event_ms: int | None = None,
                       from_offsets: Mapping[int, int] | None = None, dry_run: bool = False,
                       source_topic_prefix: str | None = None, seed: bool = True, force: bool = False,
                       max_batches: int | None = None, batch_size: int | None = None,
                       checkpoint: Path | None = None, restart: bool = False,
                       progress: ProgressFn | None = None, store: SchemaStore | None = None,
                       es_client: Any = None, announce: Callable[[str], None] | None = None,
                       catchup_rounds: int = 20, before_swap: Callable[[], None] | None = None) -> ReplayReport:
    """Rebuild the incidents index from the incidents topic into a new version, catch up, swap (see module).

    Raises `ReplayRefused` when seeding would copy an index that was not a complete build (unless
    `force`); a swap that would shrink the index is refused as data (``report.refused``/``shrink``)."""
    store = store or default_store()
    say = announce or (lambda _msg: None)
    prefix = settings.topic_prefix if source_topic_prefix is None else source_topic_prefix
    topic = f"{prefix}{INCIDENTS}"
    names = admin.IndexNames(settings.es_index_prefix)
    cp_path = checkpoint or checkpoint_path(settings, prefix)
    batch_size = batch_size or settings.sink_batch_size
    start = _start_point(from_ms, from_event_ms, from_offsets)
    consumer = make_consumer(settings)
    client = es_client or async_client(settings, timeout=60)
    t0 = time.perf_counter()
    try:
        cp = None if restart else Checkpoint.load(cp_path)
        if cp is not None and (cp.done or cp.topic != topic):
            cp = None
        if cp is not None and not await client.indices.exists(index=cp.target_index):
            say(f"the unfinished replay's target {cp.target_index} is gone; starting over")
            cp = None
        if dry_run:
            plans = _plans_for(consumer, topic, start)
            if cp is not None:
                plans = [PartitionPlan(p, cp.positions.get(p, 0), cp.ends[p]) for p in sorted(cp.ends)]
                target = cp.target_index
            else:
                existing = await admin.versioned_indices(client, names)
                last = names.version_of(existing[-1]) if existing else 0
                target = names.versioned((last or 0) + 1)
            return ReplayReport(topic, target, plans, dry_run=True, resumed=cp is not None)

        resumed = cp is not None
        if cp is None:
            if start.mode != "beginning" and seed:
                await _check_seed_source(client, names, force)
            plans = _plans_for(consumer, topic, start)
            await admin.put_template(client, names, settings.es_refresh_interval)
            target = await admin.create_next_index(client, names)
            await _put_build_meta(client, target, build_meta(start, complete=False, topic=topic))
            cp = Checkpoint(topic, target, start.ms if start.mode == "produce-time" else None,
                            {p.partition: p.start for p in plans}, {p.partition: p.end for p in plans},
                            mode=start.mode, event_from_ms=start.ms if start.mode == "event-time" else None)
            cp.save(cp_path)
        else:
            if start != cp.start_point() and start.mode != "beginning":
                say(f"note: the unfinished replay was started {cp.start_point().describe()}; it goes on with "
                    "that (--restart discards it)")
            say(f"resuming the replay into {cp.target_index}: {cp.records} record(s) done, {cp.remaining()} left "
                f"(checkpoint {cp_path})")
        report = ReplayReport(topic, cp.target_index,
                              [PartitionPlan(p, cp.positions.get(p, 0), cp.ends[p]) for p in sorted(cp.ends)],
                              resumed=resumed)
        if cp.swapped:  # killed after the swap: only the post-swap catch-up is left
            await _catch_up(consumer, cp, cp_path, report, store, client, settings, batch_size, catchup_rounds)
            cp.done = True
            cp.save(cp_path)
            report.completed = True
            report.seconds = time.perf_counter() - t0
            return report
        await admin.set_refresh_interval(client, cp.target_index, "-1")
        if cp.mode != "beginning" and seed and not cp.seeded:
            cp.seeded_from = await _seed_from_alias(client, names, cp.target_index)
            cp.seeded = True
            cp.save(cp_path)

        sink = IncidentSink(client, cp.target_index, batch_size=batch_size, chunk_size=settings.sink_chunk_size)
        await sink.setup()
        stopped = False
        for batch in _batches(consumer, cp, batch_size):
            await _index_batch(sink, batch, cp, report, store)
            cp.batches += 1
            cp.save(cp_path)
            report.batches += 1
            if progress:
                progress(len(batch), report.total)
            if max_batches is not None and report.batches >= max_batches and cp.remaining() > 0:
                stopped = True
                break
        if stopped:
            report.seconds = time.perf_counter() - t0
            return report
        # catch up to the live end: records written while the replay ran (gap closed when a round reads nothing)
        await _catch_up(consumer, cp, cp_path, report, store, client, settings, batch_size, catchup_rounds)
        await admin.set_refresh_interval(client, cp.target_index, settings.es_refresh_interval)
        await client.indices.refresh(index=cp.target_index)
        live = [i for i in await admin.alias_targets(client, names) if i != cp.target_index]
        if live and not force:
            diff = shrink_check(live[0], await _ids(client, live[0]), cp.target_index,
                                await _ids(client, cp.target_index))
            if diff is not None:
                report.shrink = diff
                report.refused = (f"{cp.target_index} is smaller than the live index {live[0]}; the alias was not "
                                  "moved. Check the diff, then rerun the same command with --force to swap anyway "
                                  "(or --restart with another start point)")
                report.seconds = time.perf_counter() - t0
                return report
        complete = start_complete = cp.mode == "beginning"
        if cp.seeded:
            complete = all([(await _index_complete(client, i))[0] for i in cp.seeded_from]) if cp.seeded_from \
                else False
        report.complete_build = complete or start_complete
        await _put_build_meta(client, cp.target_index, build_meta(cp.start_point(), complete=report.complete_build,
                                                                  seeded_from=cp.seeded_from, topic=topic,
                                                                  finished=True))
        if before_swap:
            before_swap()
        report.swapped_from = await admin.swap_alias(client, names, cp.target_index)
        cp.swapped = True
        cp.save(cp_path)
        # the live agent wrote into the old index until the swap: read what it saw since our last end
        await _catch_up(consumer, cp, cp_path, report, store, client, settings, batch_size, catchup_rounds)
        cp.done = True
        cp.save(cp_path)
        report.completed = True
        report.seconds = time.perf_counter() - t0
        return report
    finally:
        consumer.close()
        if es_client is None:
            await client.close()


async def _index_batch(sink: IncidentSink, batch: list[Any], cp: Checkpoint, report: ReplayReport,
                       store: SchemaStore) -> None:
    """Index one batch (records before the event-time start are skipped) and advance the checkpoint."""
    for rec in batch:
        try:
            _name, inc = store.decode(rec.value)
        except Exception as exc:  # noqa: BLE001 - an undecodable record is counted, not fatal
            log.warning("replay: undecodable record %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset, exc)
            report.dead_letters += 1
            continue
        if cp.event_from_ms is not None and event_time_of(inc) < cp.event_from_ms:
            report.skipped += 1
            continue
        sink.add(inc, topic=rec.topic, partition=rec.partition, offset=rec.offset)
    result = await sink.flush()
    report.indexed += result.indexed
    report.deleted += result.deleted
    report.stale += result.stale
    report.dead_letters += len(result.dead_letters)
    for rec in batch:
        cp.positions[rec.partition] = max(cp.positions.get(rec.partition, 0), rec.offset + 1)
    cp.records += len(batch)
    report.records += len(batch)


async def _catch_up(consumer: Any, cp: Checkpoint, cp_path: Path, report: ReplayReport, store: SchemaStore,
                    client: Any, settings: Settings, batch_size: int, rounds: int) -> None:
    """Move the end offsets to the topic's end now and index the gap, until a round finds nothing new.

    Idempotent: documents carry external versions, so a record the live agent also indexed is stale."""
    sink = IncidentSink(client, cp.target_index, batch_size=batch_size, chunk_size=settings.sink_chunk_size)
    await sink.setup()
    for _ in range(rounds):
        tps = [TopicPartition(cp.topic, p) for p in sorted(cp.ends)]
        now = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        if all(now[p] <= cp.ends[p] for p in now):
            return
        report.catchup_rounds += 1
        cp.ends = {p: max(cp.ends[p], now[p]) for p in now}
        before = report.records
        for batch in _batches(consumer, cp, batch_size):
            await _index_batch(sink, batch, cp, report, store)
        report.catchup_records += report.records - before
        cp.catchup_records += report.records - before
        cp.save(cp_path)
    log.warning("replay: still behind after %d catch-up rounds; the live agent indexes the rest", rounds)


async def _ids(client: Any, index: str) -> set[str]:
    """Every document id of `index` (scroll, ids only)."""
    await client.indices.refresh(index=index)
    out: set[str] = set()
    resp = await client.search(index=index, query={"match_all": {}}, _source=False, sort=["_doc"], size=5000,
                               scroll="1m")
    try:
        while resp["hits"]["hits"]:
            out.update(h["_id"] for h in resp["hits"]["hits"])
            resp = await client.scroll(scroll_id=resp["_scroll_id"], scroll="1m")
    finally:
        await client.clear_scroll(scroll_id=resp["_scroll_id"], ignore=(404,))
    return out


async def _index_meta(client: Any, index: str) -> dict[str, Any]:
    resp = await client.indices.get_mapping(index=index)
    return dict((resp.get(index) or {}).get("mappings", {}).get("_meta") or {})


async def _index_complete(client: Any, index: str) -> tuple[bool, str]:
    return is_complete(await _index_meta(client, index))


async def _put_build_meta(client: Any, index: str, entry: Mapping[str, Any]) -> None:
    """Merge `entry` into the index mapping's ``_meta`` (put_mapping replaces _meta as a whole)."""
    meta = {**await _index_meta(client, index), **entry}
    await client.indices.put_mapping(index=index, body={"_meta": meta})


async def _check_seed_source(client: Any, names: Any, force: bool) -> None:
    """Refuse to seed from an alias target that was not a complete build (unless `force`)."""
    for index in await admin.alias_targets(client, names):
        ok, why = await _index_complete(client, index)
        if not ok and not force:
            raise ReplayRefused(f"will not seed from {index}: it is {why}. Replay --from-beginning to rebuild a "
                                "complete index, or pass --force to seed from it anyway")


def _batches(consumer: Any, cp: Checkpoint, batch_size: int):  # noqa: ANN202 - Iterator[list[ConsumerRecord]]
    """Records of ``[positions, ends)`` per partition, in batches of at most `batch_size`.

    A compacted partition may have no records left before its end offset; the consumer's position
    (which skips such gaps) then moves the checkpoint forward."""
    tps = {p: TopicPartition(cp.topic, p) for p in cp.ends if cp.positions.get(p, 0) < cp.ends[p]}
    if not tps:
        return
    consumer.assign(list(tps.values()))
    consumer.resume(*tps.values())  # partitions paused by an earlier pass (catch-up rounds reuse the consumer)
    for p, tp in tps.items():
        consumer.seek(tp, cp.positions.get(p, 0))
    active = dict(tps)
    idle_polls = 0
    while active:
        polled = consumer.poll(timeout_ms=1000, max_records=batch_size)
        batch = []
        for tp, records in polled.items():
            end = cp.ends[tp.partition]
            batch.extend(r for r in records if r.offset < end)
        for p, tp in list(active.items()):
            pos = consumer.position(tp)
            if pos is not None and pos >= cp.ends[p]:
                if not any(r.partition == p for r in batch):
                    cp.positions[p] = max(cp.positions.get(p, 0), cp.ends[p])
                consumer.pause(tp)
                del active[p]
        if batch:
            idle_polls = 0
            yield batch
        else:
            idle_polls += 1
            if active and idle_polls > 30:
                raise TimeoutError(f"no records from {sorted(active)} of {cp.topic} for 30 s before their end offsets")


async def _seed_from_alias(client: Any, names: Any, target: str) -> list[str]:
    """Copy the alias's current documents (keeping their external versions) into `target`; the sources."""
    sources = [i for i in await admin.alias_targets(client, names) if i != target]
    if not sources:
        return []
    await client.reindex(body={"source": {"index": sources}, "dest": {"index": target, "version_type": "external"},
                               "conflicts": "proceed"}, wait_for_completion=True, refresh=True,
                         request_timeout=600)
    return sources


# --------------------------------------------------------------------------- pipeline replay
@dataclass
class PipelineReplayReport:
    """A pipeline replay: the new namespace and the index replay that followed it."""

    app_id: str
    target_prefix: str
    raw_records: int
    seconds_pipeline: float
    index: ReplayReport | None
    worker_log: Path

    @property
    def rate(self) -> float:
        """Raw records per second through the replayed pipeline (normalize → correlate)."""
        return self.raw_records / self.seconds_pipeline if self.seconds_pipeline > 0 else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pipeline_settings(settings: Settings, target_prefix: str, app_id: str) -> Settings:
    """Settings of the replay worker: raw topics from the live prefix, every output under `target_prefix`."""
    return Settings(**{**settings.model_dump(), "input_topic_prefix": settings.raw_topic_prefix,
                       "topic_prefix": target_prefix, "app_id": app_id, "worker_id": 0,
                       "worker_web_port": _free_port(), "clock_ticks": False})


def group_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """(topic, partition) → committed offset of consumer group `group` (partitions it never committed left out)."""
    kafka_admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="pingan-replay-admin",
                                   **settings.kafka_client_options())
    try:
        for attempt in range(10):
            try:
                offsets = kafka_admin.list_group_offsets({group: None}).get(group) or {}
                break
            except KafkaError as exc:  # NotCoordinator / CoordinatorLoadInProgress while the broker moves groups
                if not getattr(exc, "retriable", False) or attempt == 9:
                    raise
                time.sleep(0.5 * (attempt + 1))
    finally:
        kafka_admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) → end offset now, for every partition of `topics`."""
    consumer = make_consumer(settings, "pingan-replay-ends")
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        return {(tp.topic, tp.partition): off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def pipeline_state_path(settings: Settings) -> Path:
    """``run_dir/replay/pipeline-<es prefix>[-<topic prefix>].json``: the unfinished pipeline replay."""
    tag = settings.es_index_prefix + (f"-{settings.topic_prefix.strip('.')}" if settings.topic_prefix else "")
    return settings.run_dir / "replay" / f"pipeline-{tag}.json"


def _save_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def replay_pipeline(settings: Settings, *, target_prefix: str | None = None, timeout_s: float = 3600.0,
                    poll_s: float = 2.0, log_dir: Path | None = None,
                    progress: Callable[[int, int], None] | None = None, restart: bool = False,
                    announce: Callable[[str], None] | None = None, force: bool = False) -> PipelineReplayReport:
    """Re-run normalize → correlate from the raw topics into `target_prefix`, then index + swap (see module).

    Resumable: the app id, target prefix and captured raw end offsets are saved in
    `pipeline_state_path`; the same call after a kill restarts the replay worker under the same app id
    (it continues from its committed offsets and changelogged tables) and then the index replay
    resumes from its own checkpoint. ``restart`` discards an unfinished replay."""
    say = announce or (lambda _msg: None)
    state_path = pipeline_state_path(settings)
    state: dict[str, Any] | None = None
    if not restart:
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = None
        if state and state.get("done"):
            state = None
    if state is not None:
        if target_prefix and target_prefix != state["target_prefix"]:
            raise ValueError(f"an unfinished pipeline replay into {state['target_prefix']!r} exists ({state_path}); "
                             "rerun without --target-prefix to resume it, or with --restart to discard it")
        app_id, target_prefix = state["app_id"], state["target_prefix"]
        raw_ends = {(t, int(p)): int(o) for t, p, o in state["raw_ends"]}
        say(f"resuming the pipeline replay {app_id} into {target_prefix!r} (phase {state['phase']}; "
            f"state {state_path})")
    else:
        stamp = time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]
        target_prefix = target_prefix or f"{settings.topic_prefix}replay{stamp}."
        if target_prefix == settings.raw_topic_prefix:
            raise ValueError("the target prefix must differ from the live (raw) topic prefix")
        app_id = f"{settings.app_id}-replay-{stamp}"
        raw_ends = {}
    replay_settings = pipeline_settings(settings, target_prefix, app_id)
    provision_topics(replay_settings)
    # every input of the bus: the raw topics, centers' actions and the recorded clock ticks
    raw_topics = [settings.input_topic(n) for n in (*RAW_SOURCES, *LIFECYCLE_INPUTS)]
    if state is None:
        raw_ends = end_offsets(settings, raw_topics)
        state = {"app_id": app_id, "target_prefix": target_prefix, "phase": "pipeline", "done": False,
                 "raw_ends": [[t, p, o] for (t, p), o in sorted(raw_ends.items())], "started_at": time.time()}
        _save_json(state_path, state)
    raw_total = sum(raw_ends.values())
    log_dir = log_dir or settings.run_dir / "replay"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"pipeline-{app_id}.log"
    seconds = 0.0
    if state["phase"] == "pipeline":
        seconds = _run_pipeline_worker(settings, replay_settings, app_id, raw_ends, log_path, timeout_s, poll_s,
                                       progress)
        state["phase"] = "index"
        state["seconds_pipeline"] = seconds
        _save_json(state_path, state)
    else:
        seconds = float(state.get("seconds_pipeline") or 0.0)
    index_report = asyncio.run(replay_index(settings, source_topic_prefix=target_prefix, announce=announce,
                                            force=force))
    if index_report.completed:
        state["done"] = True
        _save_json(state_path, state)
    return PipelineReplayReport(app_id, target_prefix, raw_total, seconds, index_report, log_path)


def _run_pipeline_worker(settings: Settings, replay_settings: Settings, app_id: str,
                         raw_ends: Mapping[tuple[str, int], int], log_path: Path, timeout_s: float, poll_s: float,
                         progress: Callable[[int, int], None] | None) -> float:
    """Run the replay worker until its group has committed `raw_ends` and the by-county end; seconds taken."""
    raw_total = sum(raw_ends.values())
    env = {**os.environ, **replay_settings.as_env()}
    t0 = time.perf_counter()
    with open(log_path, "ab") as log_fh:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "run", "--no-index",
                                 "--loglevel", "warning"], env=env, stdout=log_fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        by_county = replay_settings.topic(BY_COUNTY)
        done_raw = 0
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"replay worker exited with {proc.returncode}; see {log_path}")
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"pipeline replay not caught up after {timeout_s:.0f}s; see {log_path}")
            committed = group_offsets(settings, app_id)
            new_done = sum(min(committed.get(k, 0), end) for k, end in raw_ends.items())
            if progress and new_done > done_raw:
                progress(new_done - done_raw, raw_total)
            done_raw = new_done
            if done_raw >= raw_total:
                county_ends = end_offsets(settings, [by_county])
                if all(committed.get(k, 0) >= end for k, end in county_ends.items()):
                    break
            time.sleep(poll_s)
        return time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(10)


# --------------------------------------------------------------------------- rule change preview
def read_incidents(settings: Settings, topic: str, timeout_s: float = 120.0,
                   members_topic: str | None = None) -> dict[str, dict[str, Any]]:
    """incident_id → the latest record of `topic` (read from the beginning to the end offsets now).

    With `members_topic` (the matching incident-members.v1), a record listing fewer member ids than
    its ``event_count`` (over ``listed_event_ids``) gets all of them (`incidents.complete_members`)."""
    out = _read_latest(settings, topic, "incident_id", timeout_s)
    if members_topic is not None and any(lists_fewer(r) for r in out.values()):
        members = _read_latest(settings, members_topic, "event_id", timeout_s)
        out = complete_members(out, {eid: str(r["incident_id"]) for eid, r in members.items()})
    return out


def _read_latest(settings: Settings, topic: str, key_field: str, timeout_s: float) -> dict[str, dict[str, Any]]:
    """`key_field` → the latest record of `topic` with it (read from the beginning to the end offsets now)."""
    store = default_store()
    consumer = make_consumer(settings, "pingan-replay-diff")
    out: dict[str, dict[str, Any]] = {}
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            raise ValueError(f"topic {topic!r} does not exist")
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        pending = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if r.offset < ends[tp]:
                        try:
                            _name, rec = store.decode(r.value)
                        except Exception:  # noqa: BLE001 - an undecodable record is skipped (counted by the index)
                            continue
                        out[str(rec[key_field])] = rec
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
        if pending:
            raise TimeoutError(f"{topic} not read to its end within {timeout_s:.0f}s")
    finally:
        consumer.close()
    return out


def shadow_state_path(settings: Settings) -> Path:
    """``run_dir/replay/shadow-<es prefix>[-<topic prefix>].json``: the last rule-change preview."""
    tag = settings.es_index_prefix + (f"-{settings.topic_prefix.strip('.')}" if settings.topic_prefix else "")
    return settings.run_dir / "replay" / f"shadow-{tag}.json"


@dataclass
class DiffReport:
    """A rule-change preview: where the shadow pipeline ran and what would change."""

    app_id: str
    target_prefix: str
    rules_dir: str
    rules_version: str
    raw_records: int
    seconds_pipeline: float
    since_ms: int | None
    diff: Any  # rules_diff.RulesDiff
    json_path: Path


def replay_diff(settings: Settings, rules_dir: Path, *, window_ms: int | None = None, out_path: Path | None = None,
                timeout_s: float = 3600.0, poll_s: float = 2.0,
                progress: Callable[[int, int], None] | None = None) -> DiffReport:
    """Run the pipeline with the rules of `rules_dir` into a shadow prefix (nothing is swapped) and compare
    its incidents with the live ones changed within `window_ms` of the newest live incident.

    Raises `RulesError` (before anything runs) when the rules are invalid. The shadow namespace is
    kept for `promote` (``shadow_state_path``)."""
    from streams.domain.ruleset import load_ruleset
    from streams.ops.rules_diff import compare

    rules = load_ruleset(rules_dir)
    stamp = time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]
    target_prefix = f"{settings.topic_prefix}shadow{stamp}."
    app_id = f"{settings.app_id}-replay-shadow{stamp}"
    shadow = Settings(**{**pipeline_settings(settings, target_prefix, app_id).model_dump(),
                         "rules_dir": Path(rules_dir).resolve()})
    provision_topics(shadow)
    raw_topics = [settings.input_topic(n) for n in (*RAW_SOURCES, *LIFECYCLE_INPUTS)]
    raw_ends = end_offsets(settings, raw_topics)
    log_dir = settings.run_dir / "replay"
    log_dir.mkdir(parents=True, exist_ok=True)
    seconds = _run_pipeline_worker(settings, shadow, app_id, raw_ends, log_dir / f"shadow-{app_id}.log", timeout_s,
                                   poll_s, progress)
    live = read_incidents(settings, settings.topic(INCIDENTS), members_topic=settings.topic(INCIDENT_MEMBERS))
    shadowed = read_incidents(settings, f"{target_prefix}{INCIDENTS}", members_topic=f"{target_prefix}{INCIDENT_MEMBERS}")
    newest = max((int(r.get("last_seen") or 0) for r in live.values()), default=0)
    since_ms = newest - window_ms if window_ms is not None and newest else None
    diff = compare(live, shadowed, since_ms=since_ms)
    out_path = out_path or log_dir / f"diff-{stamp}.json"
    report = DiffReport(app_id, target_prefix, str(Path(rules_dir).resolve()), rules.version, sum(raw_ends.values()),
                        seconds, since_ms, diff, out_path)
    _save_json(out_path, {"app_id": app_id, "target_prefix": target_prefix, "rules_dir": report.rules_dir,
                          "rules_version": rules.version, "since_ms": since_ms, **diff.as_json()})
    _save_json(shadow_state_path(settings), {"app_id": app_id, "target_prefix": target_prefix,
                                             "rules_dir": report.rules_dir, "rules_version": rules.version,
                                             "diff": str(out_path), "promoted": False, "at": time.time()})
    return report


def promote(settings: Settings, *, force: bool = False,
            announce: Callable[[str], None] | None = None) -> tuple[dict[str, Any], ReplayReport]:
    """Index the last previewed shadow namespace into a new index version and swap the alias (the index
    replay's safety checks hold: resumable, catch-up, no shrink without `force`). ValueError when
    there is no preview to promote."""
    path = shadow_state_path(settings)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no rule-change preview to promote ({path}); run `pingan replay diff --rules DIR` "
                         "first") from None
    if state.get("promoted"):
        raise ValueError(f"the preview {state['target_prefix']!r} was already promoted; run a new `replay diff`")
    report = asyncio.run(replay_index(settings, source_topic_prefix=state["target_prefix"], force=force,
                                      announce=announce))
    if report.completed:
        state["promoted"] = True
        _save_json(path, state)
    return state, report


def plans_as_rows(plans: list[PartitionPlan]) -> list[Mapping[str, int]]:
    """Plain rows for printing/JSON."""
    return [{"partition": p.partition, "start": p.start, "end": p.end, "count": p.count} for p in plans]
