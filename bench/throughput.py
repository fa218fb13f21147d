"""Throughput and end-to-end latency of the bus against bare baselines, on the real stack.

`pingan bench throughput` (see `streams.cli.bench`) runs everything below in one process and prints ONE
table; every number in it comes from the same run.

Method
- Payloads: ``pingan simulate --out DIR --seed S --days 1 --scale N`` once; every delivery is
  translated (``connectors.ingest.files.iter_deliveries``) and encoded into raw Avro single-object
  records once, in memory. The same records are produced, per variant and round, into a fresh,
  isolated raw topic set (topic prefix, app id / consumer group and index prefix of their own).
- Expected outputs are computed offline once with the pure code the worker runs
  (``NormalizeStage`` + ``CountyProcessor``): how many events reach ``events.v1``, the live
  incidents the index must end up holding, and their ``incident_document``s.
- Kafka variants (B1, ours-normalize, B3, ours-pipeline) run as subprocesses. Each is started on
  empty topics; one warm-up record (a copy of the first record, which the pipeline treats as a
  duplicate) proves it is assigned and warm; then the clock starts, every record is produced and
  the clock stops when the output is complete (``events.v1`` end offsets, or Elasticsearch
  holding every expected document). Worker start-up is therefore not in the figure.
- Index variants (B2, ours-sink) run in this process on a fresh index with the project template.
- Rounds alternate the order of each pair (baseline first, then ours first, …); the table shows
  medians. CPU seconds per 1,000 items come from ``/proc/<pid>/stat`` (utime+stime) of the
  measured Python process, of Kafka and of Elasticsearch (their pid files under the run dir) —
  other work on the machine during the run lands in the Kafka/Elasticsearch figures too.
- Latency: a fresh full worker; records are produced at half the highest pipeline rate measured,
  the broker's ack time of each event is recorded, Elasticsearch is searched every 100 ms by
  ``event_ids`` (no forced refresh: "searchable" means what a user would see) and p50/p99 of
  searchable-minus-acked per event are reported beside the index refresh interval.

Variants
- B1: bare aiokafka consume → fastavro decode (schemaless, after the 10-byte header) → re-encode →
  produce to two topics (as the normalize agent does: ``events.v1`` and the by-county topic),
  batched ``getmany``, producer acks awaited and one commit per batch.
- ours normalize: the real Faust app (`streams.worker.app.build_app`) with only the ``normalize`` agent
  (the ``correlate`` agent is removed before start so it does not share the event loop; the index
  agent is off).
- B2: bare ``async_streaming_bulk`` of pre-built incident documents into a fresh index.
- ours sink: `IncidentSink` (builds actions, external versions, per-document outcomes) over the
  same incident records, batched like the index agent.
- B3: bare aiokafka → fastavro → ``async_bulk`` of one flat document per raw record, one commit
  per batch (no normalization, no correlation).
- ours pipeline: the real worker (``python -m streams.cli worker run``: normalize, correlate,
  index) until Elasticsearch holds exactly the expected incidents.

No import-time side effects: everything happens in `run_throughput`.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk, async_streaming_bulk
from fastavro import schemaless_reader, schemaless_writer
from faust import Worker
from rich.console import Console
from rich.table import Table

from bench.common import drop_indices_async, drop_kafka_namespace
from bench.tables import fit_table, number_column, text_column
from connectors.elasticsearch.admin import IndexNames, ensure_incident_index
from connectors.elasticsearch.documents import DocumentError, incident_document
from connectors.elasticsearch.sink import IncidentSink
from connectors.ingest.files import iter_deliveries
from connectors.sources.devices import DeviceRegistry
from infra.processes import ChildProcess, free_port, isolated_settings, pingan_command, settings_env, simulate_folder
from infra.stack import Elasticsearch, Kafka
from schemas.catalogue import TOPICS
from schemas.serde import default_store
from connectors.sources.registry import normalizer
from streams.domain.pipeline import CountyProcessor
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from streams.worker.app import build_app
from streams.worker.stages import RAW_SOURCES, NormalizeStage, decode_event
from streams.worker.topology import BY_COUNTY, EVENTS

RAW_TOPICS: tuple[str, ...] = tuple(RAW_SOURCES)
TARGETS: Mapping[str, float] = {"normalize": 0.7, "sink": 0.9, "pipeline": 0.5}
BASELINE_OF: Mapping[str, str] = {"normalize": "B1", "sink": "B2", "pipeline": "B3"}
LABELS: Mapping[str, str] = {
    "B1": "B1 bare aiokafka consume→Avro→produce",
    "normalize": "ours: normalize agent (Faust worker)",
    "B2": "B2 bare async_streaming_bulk",
    "sink": "ours: IncidentSink",
    "B3": "B3 bare aiokafka→fastavro→async_bulk",
    "pipeline": "ours: whole pipeline (Faust worker → ES)",
}
UNITS: Mapping[str, str] = {"B1": "events", "normalize": "events", "B2": "docs", "sink": "docs",
                            "B3": "events", "pipeline": "events"}
PAIRS: tuple[tuple[str, str], ...] = (("B1", "normalize"), ("B2", "sink"), ("B3", "pipeline"))
WAIT_S = 180.0  # upper bound for any single wait (start-up, completion)


# ------------------------------------------------------------------------------------------
# payloads and expected outputs


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One raw record as produced: catalogue topic name, key, single-object Avro value."""

    topic: str
    key: bytes
    value: bytes
    event_id: str | None  # the event it normalizes to (None: a dead letter)


@dataclass
class Payload:
    """The pre-generated input and what the pipeline must make of it."""

    records: list[RawRecord]
    warmup: RawRecord
    events_out: int  # messages the normalize stage writes to events.v1 for `records`
    incidents: list[dict[str, Any]]  # live incident records, as the index agent decodes them
    docs: list[tuple[str, dict[str, Any]]]  # incident_document of each live incident
    event_total: int  # sum of event_count over the live incidents

    @property
    def n(self) -> int:
        return len(self.records)


def prepare_payload(folder: Path, settings: Settings) -> Payload:
    """Translate + encode every record once; compute the expected outputs offline."""
    store = default_store()
    registry = DeviceRegistry.from_csv(folder / "registry.csv")
    stage = NormalizeStage(store, normalizer(settings.person_key(), settings.timezone, registry))
    processor = CountyProcessor()
    latest: dict[str, dict[str, Any]] = {}
    records: list[RawRecord] = []
    events_out = 0
    for delivery in iter_deliveries(folder, registry):
        res = delivery.result
        for rec in res.records:
            value = store.encode(res.schema, rec)
            out = stage.handle(res.topic, None, None, value)
            event_id = None
            for event in out.events:
                events_out += 1
                # the worker correlates what it decodes from the by-county topic
                event = decode_event(store, stage.encode_event(event))
                event_id = event["event_id"]
                for inc in processor.process(event).incidents:
                    _name, latest[inc["incident_id"]] = store.decode(store.encode("pingan.Incident", inc))
            records.append(RawRecord(res.topic, res.key_of(rec).encode(), value, event_id))
    if not records:
        raise RuntimeError(f"{folder} holds no records")
    warmup = next((r for r in records if r.event_id), records[0])
    incidents = [inc for iid, inc in sorted(latest.items()) if inc.get("status") != "merged"]
    if {i["incident_id"] for i in incidents} != set(processor.state.live()):
        raise RuntimeError("offline incidents do not match the processor's live state")
    docs: list[tuple[str, dict[str, Any]]] = []
    for inc in incidents:
        try:
            docs.append(incident_document(inc))
        except DocumentError:
            continue
    return Payload(records, warmup, events_out, incidents, docs,
                   sum(int(d.get("event_count") or 0) for _i, d in docs))


# ------------------------------------------------------------------------------------------
# namespaces, processes, CPU


def isolated(base: Settings, run_dir: Path, registry: Path | None) -> Settings:
    """Settings with a topic prefix (``bench…``), app id (= consumer group) and index prefix
    (``pingan-bench-…``) of their own."""
    return isolated_settings(base, registry, topic_tag="bench", name="pingan-bench", run_dir=run_dir,
                             worker_web_port=free_port(), worker_id=0)


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process from /proc/<pid>/stat, in seconds (0.0 if unreadable)."""
    if not pid:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuProbe:
    """CPU-time snapshots of the measured Python process, Kafka and Elasticsearch."""

    kafka_pid: int | None
    es_pid: int | None

    def snapshot(self, python_pid: int | None) -> dict[str, float]:
        return {"python": cpu_seconds(python_pid), "kafka": cpu_seconds(self.kafka_pid),
                "es": cpu_seconds(self.es_pid)}


# ------------------------------------------------------------------------------------------
# Kafka and Elasticsearch helpers


class Offsets:
    """Sums end offsets of topics (one aiokafka consumer, no group)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: Any = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def total(self, topic: str, partitions: int) -> int:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        offsets = await asyncio.wait_for(self._consumer.end_offsets(tps), 10)
        return sum(offsets.values())


async def es_count(client: Any, index: str, *, with_sum: bool = False) -> tuple[int, int]:
    """(documents searchable now, sum of event_count) without forcing a refresh."""
    body: dict[str, Any] = {"size": 0, "track_total_hits": True}
    if with_sum:
        body["aggs"] = {"events": {"sum": {"field": "event_count"}}}
    resp = await client.search(index=index, body=body)
    total = int(resp["hits"]["total"]["value"])
    events = int((resp.get("aggregations") or {}).get("events", {}).get("value") or 0)
    return total, events


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, what: str, timeout: float = WAIT_S,
                     interval: float = 0.05, child: ChildProcess | None = None) -> None:
    """Poll an async predicate until true; fail with `what` (and the child's log) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if child is not None:
            child.check()
        try:
            if await predicate():
                return
        except (asyncio.TimeoutError, OSError, LookupError):
            pass
        except Exception as exc:  # noqa: BLE001 - transient client errors while topics/indices appear
            if type(exc).__name__ not in ("NotFoundError", "KafkaError", "UnknownTopicOrPartitionError",
                                          "KafkaTimeoutError", "ConnectionError", "TransportError"):
                raise
        if time.monotonic() > deadline:
            tail = f"\n{child.log_tail()}" if child else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        await asyncio.sleep(interval)


async def produce(producer: Any, settings: Settings, records: Sequence[RawRecord]) -> None:
    """Send records to their (prefixed) raw topics and wait for every ack."""
    futures = [await producer.send(settings.topic(r.topic), r.value, key=r.key) for r in records]
    await asyncio.gather(*futures)


async def wait_web(port: int, child: ChildProcess) -> None:
    """Wait for the worker's /pingan/metrics page."""
    await asyncio.to_thread(child.wait_healthy, f"http://127.0.0.1:{port}/pingan/metrics", WAIT_S, 0.5)


# ------------------------------------------------------------------------------------------
# measurements


@dataclass
class Measurement:
    """One timed run of one variant."""

    variant: str
    round: int
    items: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds during the timed window: python, kafka, es

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def cpu_per_1k(self, what: str) -> float:
        return 1000.0 * self.cpu[what] / self.items if self.items else 0.0


@dataclass
class Context:
    """Everything the variants share."""

    base: Settings
    payload: Payload
    run_dir: Path
    registry: Path
    es: Any
    probe: CpuProbe
    log: Callable[[str], None]
    event_copies: int = 1  # B1 and normalize consume the records this many times (normalize does not dedupe)
    producer: Any = None
    offsets: Any = None
    namespaces: list[tuple[Settings, list[str]]] = field(default_factory=list)

    def namespace(self, groups_suffixes: Sequence[str] = ("",)) -> Settings:
        ns = isolated(self.base, self.run_dir, self.registry)
        self.namespaces.append((ns, [ns.app_id + s for s in groups_suffixes]))
        return ns

    async def start_clients(self) -> None:
        """A producer and an offsets reader for the current variant (see `stop_clients`)."""
        await self.stop_clients()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.base.kafka_bootstrap, acks="all",
                                         enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024,
                                         client_id="pingan-bench")
        await self.producer.start()
        self.offsets = Offsets(self.base.kafka_bootstrap)
        await self.offsets.start()

    async def stop_clients(self) -> None:
        """Stop the variant's clients: one that still knows a deleted topic asks for its metadata
        and the broker re-creates it (auto.create.topics.enable)."""
        producer, offsets, self.producer, self.offsets = self.producer, self.offsets, None, None
        if offsets is not None:
            await offsets.stop()
        if producer is not None:
            await producer.stop()

    async def cleanup(self, ns: Settings) -> None:
        await self.stop_clients()
        for s, groups in list(self.namespaces):
            if s is ns:
                await asyncio.to_thread(drop_kafka_namespace, s, groups)
                await drop_indices_async(self.es, s)
                self.namespaces.remove((s, groups))


async def _timed_kafka_run(ctx: Context, ns: Settings, child: ChildProcess, variant: str, rnd: int,
                           done: Callable[[], Awaitable[bool]], warm: Callable[[], Awaitable[bool]],
                           copies: int = 1) -> Measurement:
    """Warm-up record → wait → start the clock → produce everything (`copies` times) → wait for `done`."""
    await produce(ctx.producer, ns, [ctx.payload.warmup])
    await wait_until(warm, what=f"{variant}: the warm-up record's output", child=child, interval=0.2)
    before = ctx.probe.snapshot(child.pid)
    t0 = time.perf_counter()
    await produce(ctx.producer, ns, ctx.payload.records * copies)
    await wait_until(done, what=f"{variant}: complete output", child=child)
    seconds = time.perf_counter() - t0
    after = ctx.probe.snapshot(child.pid)
    return Measurement(variant, rnd, ctx.payload.n * copies, seconds, {k: after[k] - before[k] for k in after})


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.throughput", *args]


async def run_b1(ctx: Context, rnd: int) -> Measurement:
    """B1: bare consume → decode → re-encode → produce (two topics), one commit per batch."""
    ns = ctx.namespace(("-b1",))
    try:
        await ctx.start_clients()
        await asyncio.to_thread(provision_topics, ns, only=[*RAW_TOPICS, EVENTS, BY_COUNTY])
        child = ChildProcess(_py("_b1", "--bootstrap", ns.kafka_bootstrap, "--prefix", ns.topic_prefix,
                          "--group", ns.app_id + "-b1"), os.environ, ctx.run_dir / f"b1-{rnd}.log").start()
        try:
            parts = 6
            events = ns.topic(EVENTS)

            async def count(n: int) -> bool:
                return await ctx.offsets.total(events, parts) >= n

            k = ctx.event_copies
            return await _timed_kafka_run(ctx, ns, child, "B1", rnd, lambda: count(1 + k * ctx.payload.n),
                                          lambda: count(1), copies=k)
        finally:
            child.stop()
    finally:
        await ctx.cleanup(ns)


async def run_normalize(ctx: Context, rnd: int) -> Measurement:
    """Ours: the real Faust app with only the normalize agent."""
    ns = ctx.namespace()
    try:
        await asyncio.to_thread(provision_topics, ns)
        await ctx.start_clients()
        child = ChildProcess(_py("_normalize_worker"), settings_env(ns), ctx.run_dir / f"normalize-{rnd}.log").start()
        try:
            await wait_web(ns.worker_web_port, child)
            parts = {t.name: t.partitions for t in TOPICS}[EVENTS]
            events = ns.topic(EVENTS)

            async def count(n: int) -> bool:
                return await ctx.offsets.total(events, parts) >= n

            k = ctx.event_copies
            expected = (1 if ctx.payload.warmup.event_id else 0) + k * ctx.payload.events_out
            return await _timed_kafka_run(ctx, ns, child, "normalize", rnd, lambda: count(expected),
                                          lambda: count(1), copies=k)
        finally:
            child.stop()
    finally:
        await ctx.cleanup(ns)


async def run_b3(ctx: Context, rnd: int) -> Measurement:
    """B3: bare aiokafka → fastavro → async_bulk of flat documents."""
    ns = ctx.namespace(("-b3",))
    index = f"{ns.es_index_prefix}-b3"
    try:
        await ctx.start_clients()
        await asyncio.to_thread(provision_topics, ns, only=RAW_TOPICS)
        await ctx.es.indices.create(index=index, body={"settings": {
            "number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": ns.es_refresh_interval,
            "index.mapping.total_fields.limit": 2000}})
        child = ChildProcess(_py("_b3", "--bootstrap", ns.kafka_bootstrap, "--prefix", ns.topic_prefix,
                          "--group", ns.app_id + "-b3", "--es-url", ns.es_url, "--index", index),
                      os.environ, ctx.run_dir / f"b3-{rnd}.log").start()
        try:
            async def count(n: int) -> bool:
                return (await es_count(ctx.es, index))[0] >= n

            return await _timed_kafka_run(ctx, ns, child, "B3", rnd, lambda: count(1 + ctx.payload.n),
                                          lambda: count(1))
        finally:
            child.stop()
    finally:
        await ctx.cleanup(ns)


async def run_pipeline(ctx: Context, rnd: int) -> Measurement:
    """Ours: the real worker (normalize, correlate, index) until ES holds every expected incident."""
    ns = ctx.namespace()
    alias = f"{ns.es_index_prefix}-incidents"
    try:
        await ctx.start_clients()
        await asyncio.to_thread(provision_topics, ns)
        await asyncio.to_thread(provision_elasticsearch, ns)
        child = _worker(ns, ctx.run_dir / f"pipeline-{rnd}.log").start()
        try:
            await wait_web(ns.worker_web_port, child)
            want = (len(ctx.payload.docs), ctx.payload.event_total)
            last: list[tuple[int, int]] = []

            async def complete() -> bool:
                got = await es_count(ctx.es, alias, with_sum=True)
                last[:] = [got]
                return got == want

            async def warm() -> bool:
                return (await es_count(ctx.es, alias))[0] >= 1

            try:
                return await _timed_kafka_run(ctx, ns, child, "pipeline", rnd, complete, warm)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\n(docs, events) expected {want}, last seen {last}") from None
        finally:
            child.stop()
    finally:
        await ctx.cleanup(ns)


def _worker(ns: Settings, log_path: Path) -> ChildProcess:
    return ChildProcess(pingan_command("worker", "run", "--loglevel", "warning"), settings_env(ns), log_path)


def _copies(payload: Payload, min_docs: int) -> int:
    return max(1, math.ceil(min_docs / max(1, len(payload.docs))))


async def run_b2(ctx: Context, rnd: int, min_docs: int) -> Measurement:
    """B2: bare async_streaming_bulk of the pre-built incident documents (fresh templated index)."""
    ns = ctx.namespace(())
    names = IndexNames(ns.es_index_prefix)
    try:
        await ensure_incident_index(ctx.es, names, ns.es_refresh_interval)
        copies = _copies(ctx.payload, min_docs)
        actions = [{"_index": names.alias, "_id": f"{iid}~{k}" if k else iid, "_source": doc}
                   for k in range(copies) for iid, doc in ctx.payload.docs]
        before = ctx.probe.snapshot(os.getpid())
        t0 = time.perf_counter()
        ok = 0
        async for good, _item in async_streaming_bulk(ctx.es, actions, chunk_size=ns.sink_chunk_size,
                                                       max_retries=3, raise_on_error=True):
            ok += bool(good)
        seconds = time.perf_counter() - t0
        after = ctx.probe.snapshot(os.getpid())
        if ok != len(actions):
            raise RuntimeError(f"B2 indexed {ok} of {len(actions)}")
        return Measurement("B2", rnd, len(actions), seconds, {k: after[k] - before[k] for k in after})
    finally:
        await ctx.cleanup(ns)


async def run_sink(ctx: Context, rnd: int, min_docs: int) -> Measurement:
    """Ours: IncidentSink over the same incident records, batched like the index agent."""
    ns = ctx.namespace(())
    names = IndexNames(ns.es_index_prefix)
    try:
        await ensure_incident_index(ctx.es, names, ns.es_refresh_interval)
        copies = _copies(ctx.payload, min_docs)
        incidents = [{**inc, "incident_id": f"{inc['incident_id']}~{k}"} if k else inc
                     for k in range(copies) for inc in ctx.payload.incidents]
        sink = IncidentSink(ctx.es, names.alias, batch_size=ns.sink_batch_size, chunk_size=ns.sink_chunk_size)
        await sink.setup()
        indexed = 0
        before = ctx.probe.snapshot(os.getpid())
        t0 = time.perf_counter()
        for offset, inc in enumerate(incidents):
            if sink.add(inc, topic="incidents.v1", partition=0, offset=offset):
                indexed += (await sink.flush()).indexed
        indexed += (await sink.stop()).indexed
        seconds = time.perf_counter() - t0
        after = ctx.probe.snapshot(os.getpid())
        if indexed != len(ctx.payload.docs) * copies:
            raise RuntimeError(f"sink indexed {indexed} of {len(ctx.payload.docs) * copies}")
        return Measurement("sink", rnd, indexed, seconds, {k: after[k] - before[k] for k in after})
    finally:
        await ctx.cleanup(ns)


# ------------------------------------------------------------------------------------------
# latency


@dataclass
class Latency:
    """End-to-end latency: broker ack of an event → its incident searchable."""

    rate: float
    seconds: float
    produced: int
    measured: int
    missing: int
    p50: float
    p99: float
    max: float
    refresh_interval: str

    @property
    def target_s(self) -> float:
        return parse_interval(self.refresh_interval) + 1.0


def parse_interval(text: str) -> float:
    """'1s' → 1.0, '500ms' → 0.5, '2m' → 120.0."""
    text = text.strip()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))]


async def run_latency(ctx: Context, rate: float, duration: float) -> Latency:
    """Produce at `rate` for `duration` s into a warm worker; time each event until searchable."""
    ns = ctx.namespace()
    alias = f"{ns.es_index_prefix}-incidents"
    n = max(1, min(ctx.payload.n, math.ceil(rate * duration)))
    records = ctx.payload.records[:n]
    try:
        await ctx.start_clients()
        await asyncio.to_thread(provision_topics, ns)
        await asyncio.to_thread(provision_elasticsearch, ns)
        child = _worker(ns, ctx.run_dir / "latency.log").start()
        try:
            await wait_web(ns.worker_web_port, child)
            await produce(ctx.producer, ns, [ctx.payload.warmup])

            async def warm() -> bool:
                return (await es_count(ctx.es, alias))[0] >= 1

            await wait_until(warm, what="latency: warm-up incident", child=child, interval=0.2)
            skip = ctx.payload.warmup.event_id
            acked: dict[str, float] = {}
            seen: dict[str, float] = {}
            producing = True

            def on_ack(eid: str) -> Callable[[asyncio.Future[Any]], None]:
                def done(fut: asyncio.Future[Any]) -> None:
                    if not fut.cancelled() and fut.exception() is None:
                        acked.setdefault(eid, time.time())
                return done

            async def producer_task() -> float:
                nonlocal producing
                futures = []
                t0 = time.monotonic()
                sent = 0
                while sent < n:
                    due = min(n, int((time.monotonic() - t0) * rate) + 1)
                    for r in records[sent:due]:
                        fut = await ctx.producer.send(ns.topic(r.topic), r.value, key=r.key)
                        if r.event_id and r.event_id != skip:
                            fut.add_done_callback(on_ack(r.event_id))
                        futures.append(fut)
                    sent = due
                    await asyncio.sleep(0.01)
                await asyncio.gather(*futures)
                producing = False
                return time.monotonic() - t0

            async def poll_task() -> None:
                want = {r.event_id for r in records if r.event_id and r.event_id != skip}
                deadline: float | None = None
                while True:
                    child.check()
                    pending = [e for e in acked if e not in seen]
                    if not producing:
                        if len(seen) >= len(want):
                            return
                        deadline = deadline or time.monotonic() + 60.0
                        if time.monotonic() > deadline:
                            return
                    for i in range(0, len(pending), 5000):
                        chunk = pending[i:i + 5000]
                        resp = await ctx.es.search(index=alias, body={
                            "size": 10000, "_source": ["event_ids"],
                            "query": {"terms": {"event_ids": chunk}}})
                        now = time.time()
                        chunk_set = set(chunk)
                        for hit in resp["hits"]["hits"]:
                            for eid in hit["_source"].get("event_ids") or ():
                                if eid in chunk_set and eid not in seen:
                                    seen[eid] = now
                    await asyncio.sleep(0.1)

            poller = asyncio.create_task(poll_task())
            seconds = await producer_task()
            await poller
            lat = [seen[e] - acked[e] for e in seen if e in acked]
            return Latency(rate, seconds, n, len(lat), len(acked) - len(lat), percentile(lat, 50),
                           percentile(lat, 99), max(lat) if lat else float("nan"), ns.es_refresh_interval)
        finally:
            child.stop()
    finally:
        await ctx.cleanup(ns)


# ------------------------------------------------------------------------------------------
# orchestration and report


@dataclass
class Options:
    """What `pingan bench throughput` was asked to do."""

    scale: float = 3.0
    rounds: int = 3
    seed: int = 1
    latency_seconds: float = 20.0
    min_docs: int = 20000
    min_events: int = 20000
    json_path: Path | None = None
    keep_dir: bool = False


@dataclass
class Result:
    """Everything measured in one run."""

    options: dict[str, Any]
    machine: dict[str, Any]
    payload: dict[str, Any]
    runs: list[Measurement]
    latency: Latency | None
    failures: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    def runs_of(self, variant: str) -> list[Measurement]:
        return [m for m in self.runs if m.variant == variant]

    def median_rate(self, variant: str) -> float:
        rates = [m.rate for m in self.runs_of(variant)]
        return statistics.median(rates) if rates else 0.0

    def median(self, variant: str, attr: Callable[[Measurement], float]) -> float:
        values = [attr(m) for m in self.runs_of(variant)]
        return statistics.median(values) if values else 0.0

    def ratio(self, variant: str) -> float:
        base = self.median_rate(BASELINE_OF[variant])
        return self.median_rate(variant) / base if base else 0.0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for variant in LABELS:
            out[variant] = {
                "label": LABELS[variant], "unit": UNITS[variant],
                "items": self.runs_of(variant)[0].items if self.runs_of(variant) else 0,
                "median_seconds": self.median(variant, lambda m: m.seconds),
                "median_rate_per_s": self.median_rate(variant),
                "cpu_s_per_1k": {w: self.median(variant, lambda m, w=w: m.cpu_per_1k(w))
                                 for w in ("python", "kafka", "es")},
                "rates_per_round": [round(m.rate, 1) for m in self.runs_of(variant)],
            }
            if variant in TARGETS:
                out[variant]["ratio"] = self.ratio(variant)
                out[variant]["target"] = TARGETS[variant]
                out[variant]["meets_target"] = self.ratio(variant) >= TARGETS[variant]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"options": self.options, "machine": self.machine, "payload": self.payload,
                "summary": self.summary(), "runs": [asdict(m) | {"rate": m.rate} for m in self.runs],
                "latency": None if self.latency is None else asdict(self.latency) | {
                    "target_p99_s": self.latency.target_s}, "failures": self.failures,
                "wall_seconds": self.wall_seconds}


#: columns left out first when the terminal is narrow
NARROW_DROP = ("Kafka CPU", "ES CPU", "py CPU", "items", "target")


def render(result: Result, width: int | None = None) -> Table:
    """The one table: medians per variant, ratios beside their targets, then latency (fitted to
    `width` when given: the CPU columns go first)."""
    m = result.machine
    table = Table(title=f"Ping'an Bus throughput — scale {result.options['scale']}, {result.options['rounds']} "
                        f"round(s), medians; {m['cores']} cores, {m['python']}",
                  caption=f"{result.payload['raw_records']} raw records → {result.payload['events']} events → "
                          f"{result.payload['incidents']} incidents; index variants load "
                          f"{result.payload['index_docs']} docs; s = median seconds; CPU = CPU s per 1,000 items "
                          f"(py = the measured process); wall {result.wall_seconds:.0f} s")
    text_column(table, "variant")
    for col in ("items", "s", "rate/s", "py CPU", "Kafka CPU", "ES CPU", "ratio", "target"):
        number_column(table, col)
    table.add_column("ok", justify="center", no_wrap=True)
    for base, ours in PAIRS:
        for variant in (base, ours):
            runs = result.runs_of(variant)
            if not runs:
                table.add_row(LABELS[variant], "", "", "0", "", "", "", "", "", "[red]FAILED", style="red")
                continue
            cells = [LABELS[variant], f"{runs[0].items} {UNITS[variant]}",
                     f"{result.median(variant, lambda x: x.seconds):.2f}", f"{result.median_rate(variant):,.0f}",
                     *(f"{result.median(variant, lambda x, w=w: x.cpu_per_1k(w)):.3f}"
                       for w in ("python", "kafka", "es"))]
            if variant in TARGETS:
                ratio = result.ratio(variant)
                met = ratio >= TARGETS[variant]
                cells += [f"{ratio:.2f}", f"≥ {TARGETS[variant]:.1f}", "[green]yes" if met else "[red]no"]
            else:
                cells += ["", "", ""]
            table.add_row(*cells, style="bold" if variant in TARGETS else None)
        table.add_section()
    lat = result.latency
    if lat is None and result.options.get("latency_seconds"):
        table.add_row("end-to-end latency", "", "", "", "", "", "", "", "", "[red]FAILED", style="red")
    if lat is not None:
        table.add_row(f"end-to-end latency p50 (ack → searchable, refresh {lat.refresh_interval})",
                      f"{lat.measured} events", f"{lat.p50:.2f}", f"{lat.rate:,.0f}", "", "", "", "", "", "")
        met = lat.p99 <= lat.target_s
        table.add_row(f"end-to-end latency p99 (max {lat.max:.2f} s, {lat.missing} not seen)",
                      f"{lat.measured} events", f"{lat.p99:.2f}", f"{lat.rate:,.0f}", "", "", "", "",
                      f"≤ {lat.target_s:.1f} s", "[green]yes" if met else "[red]no", style="bold")
    return table if width is None else fit_table(table, width, NARROW_DROP, fold_min=24)


async def run_throughput(opts: Options, *, settings: Settings | None = None,
                         log: Callable[[str], None] = lambda s: None) -> Result:
    """Run every variant `opts.rounds` times (alternating order), then the latency probe."""
    started = time.perf_counter()
    base = settings or Settings.from_env()
    work = Path(tempfile.mkdtemp(prefix="pingan-bench-"))
    log(f"workdir {work}")
    ctx: Context | None = None
    es = AsyncElasticsearch(base.es_url, timeout=60)
    try:
        folder = simulate_folder(work / "sim", seed=opts.seed, scale=opts.scale)
        payload = await asyncio.to_thread(prepare_payload, folder, base)
        log(f"payload: {payload.n} raw records, {payload.events_out} events, {len(payload.docs)} incidents")
        probe = CpuProbe(Kafka(base).pid(), Elasticsearch(base).pid())
        copies = max(1, math.ceil(opts.min_events / payload.n))
        ctx = Context(base, payload, work, folder / "registry.csv", es, probe, log, copies)
        runners: dict[str, Callable[[Context, int], Awaitable[Measurement]]] = {
            "B1": run_b1, "normalize": run_normalize, "B3": run_b3, "pipeline": run_pipeline,
            "B2": lambda c, r: run_b2(c, r, opts.min_docs), "sink": lambda c, r: run_sink(c, r, opts.min_docs)}
        runs: list[Measurement] = []
        failures: list[str] = []
        for rnd in range(1, opts.rounds + 1):
            for pair in PAIRS:
                for variant in (pair if rnd % 2 else pair[::-1]):
                    try:
                        m = await runners[variant](ctx, rnd)
                    except Exception as exc:  # noqa: BLE001 - a failed variant is a result; go on
                        failures.append(f"round {rnd} {variant}: {type(exc).__name__}: {str(exc)[:2000]}")
                        log(f"[red]round {rnd} {variant} FAILED[/red]: {failures[-1]}")
                        continue
                    runs.append(m)
                    log(f"round {rnd} {variant:9s} {m.items} in {m.seconds:.2f} s = {m.rate:,.0f}/s "
                        f"(py {m.cpu['python']:.1f} s, kafka {m.cpu['kafka']:.1f} s, es {m.cpu['es']:.1f} s)")
        latency = None
        rates = [m.rate for m in runs if m.variant == "pipeline"]
        if opts.latency_seconds > 0 and rates:
            try:
                latency = await run_latency(ctx, max(rates) / 2.0, opts.latency_seconds)
            except Exception as exc:  # noqa: BLE001
                failures.append(f"latency: {type(exc).__name__}: {str(exc)[:2000]}")
                log(f"[red]latency FAILED[/red]: {failures[-1]}")
        if latency is not None:
            log(f"latency @ {latency.rate:,.0f}/s: p50 {latency.p50:.2f} s, p99 {latency.p99:.2f} s")
        result = Result(
            options={"scale": opts.scale, "rounds": opts.rounds, "seed": opts.seed,
                     "latency_seconds": opts.latency_seconds, "min_docs": opts.min_docs,
                     "min_events": opts.min_events},
            machine={"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                     "loadavg_at_end": os.getloadavg()},
            payload={"raw_records": payload.n, "events": payload.events_out, "incidents": len(payload.docs),
                     "index_docs": len(payload.docs) * _copies(payload, opts.min_docs),
                     "events_in_incidents": payload.event_total},
            runs=runs, latency=latency, failures=failures)
        result.wall_seconds = time.perf_counter() - started
        return result
    finally:
        if ctx is not None:
            for ns, _groups in list(ctx.namespaces):
                try:
                    await ctx.cleanup(ns)
                except Exception as exc:  # noqa: BLE001 - best effort; report and go on
                    log(f"cleanup of {ns.topic_prefix} failed: {exc}")
            await ctx.stop_clients()
        await es.close()
        if not opts.keep_dir:
            shutil.rmtree(work, ignore_errors=True)


def run_and_print(opts: Options, console: Console | None = None) -> Result:
    """Run the benchmark, print the table, write the JSON if asked."""
    console = console or Console()
    err = Console(stderr=True, style="dim")
    result = asyncio.run(run_throughput(opts, log=err.print))
    console.print(render(result, console.width))
    for failure in result.failures:
        err.print(f"[red]{failure}")
    if opts.json_path is not None:
        opts.json_path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str),
                                  encoding="utf-8")
    return result


# ------------------------------------------------------------------------------------------
# subprocess roles: the bare baselines and the normalize-only worker


def _writers() -> dict[bytes, Any]:
    return {sv.fingerprint: sv.parsed for sv in default_store().writer_versions()}


async def _baseline_loop(args: argparse.Namespace, handle: Callable[[list[Any]], Awaitable[None]]) -> None:
    """Consume the raw topics in batches; `handle` each batch; commit once per batch; stop on SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    consumer = AIOKafkaConsumer(*[args.prefix + t for t in RAW_TOPICS], bootstrap_servers=args.bootstrap,
                                group_id=args.group, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=2000)
            msgs = [m for part in batches.values() for m in part]
            if msgs:
                await handle(msgs)
                await consumer.commit()
    finally:
        await consumer.stop()


async def _b1(args: argparse.Namespace) -> None:
    writers = _writers()
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    events, county = args.prefix + EVENTS, args.prefix + BY_COUNTY

    async def handle(msgs: list[Any]) -> None:
        futures = []
        for m in msgs:
            value: bytes = m.value
            schema = writers[value[2:10]]
            record = schemaless_reader(io.BytesIO(value[10:]), schema, None)
            buf = io.BytesIO()
            buf.write(value[:10])
            schemaless_writer(buf, schema, record)
            out = buf.getvalue()
            futures.append(await producer.send(events, out, key=m.key))
            futures.append(await producer.send(county, out, key=b"513221"))
        await asyncio.gather(*futures)

    try:
        await _baseline_loop(args, handle)
    finally:
        await producer.stop()


def _flat(record: Mapping[str, Any], topic: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"raw_topic": topic}
    for k, v in record.items():
        if v is None or isinstance(v, (str, int, float, bool)):
            doc[k] = v
        elif isinstance(v, bytes):
            continue
        else:
            doc[k] = json.dumps(v, ensure_ascii=False, default=str)
    return doc


async def _b3(args: argparse.Namespace) -> None:
    writers = _writers()
    client = AsyncElasticsearch(args.es_url, timeout=60)

    async def handle(msgs: list[Any]) -> None:
        actions = []
        for m in msgs:
            value: bytes = m.value
            record = schemaless_reader(io.BytesIO(value[10:]), writers[value[2:10]], None)
            actions.append({"_index": args.index, "_id": f"{m.topic}-{m.partition}-{m.offset}",
                            "_source": _flat(record, m.topic)})
        await async_bulk(client, actions, chunk_size=500, max_retries=3)

    try:
        await _baseline_loop(args, handle)
    finally:
        await client.close()


def _normalize_worker(loglevel: str) -> None:
    """The real Faust app with only the normalize agent (index agent off, correlate removed)."""
    app = build_app(Settings.from_env(), with_index=False)
    del app.agents["correlate"]
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


def main(argv: Sequence[str] | None = None) -> None:
    """Subprocess roles (internal): ``_b1``, ``_b3``, ``_normalize_worker``."""
    parser = argparse.ArgumentParser(prog="python -m bench.throughput")
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("_b1", "_b3"):
        p = sub.add_parser(role)
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--prefix", required=True)
        p.add_argument("--group", required=True)
        if role == "_b3":
            p.add_argument("--es-url", required=True)
            p.add_argument("--index", required=True)
    p = sub.add_parser("_normalize_worker")
    p.add_argument("--loglevel", default="warning")
    args = parser.parse_args(argv)
    if args.role == "_b1":
        asyncio.run(_b1(args))
    elif args.role == "_b3":
        asyncio.run(_b3(args))
    else:
        _normalize_worker(args.loglevel)


if __name__ == "__main__":
    main()
