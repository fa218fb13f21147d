"""The Faust application: thin agents that wire Kafka to the pure stages.

`build_app(settings)` creates a new app each call (no module-level app, no import-time side
effects). Agents:

- ``normalize``: all raw topics → `events.v1` (key event_id) and `internal.events-by-county.v1`
  (key county code); bad input → `deadletters.v1`.
- ``correlate``: `internal.events-by-county.v1` → `links.v1`, `incidents.v1`, `escalations.v1`,
  with candidate, incident and person-history state in changelogged RocksDB tables partitioned
  like the by-county topic (so a county's state lives with its partition and recovers with it).
- ``index``: `incidents.v1` → Elasticsearch through `IncidentSink`; a batch is flushed (with
  retries until Elasticsearch confirms) before the agent takes the next batch, so offsets are
  committed only after the documents are safe.

Faust commits a consumed offset only after the producer has flushed what the agent sent, so every
output is at-least-once and, with deterministic ids, effectively exactly-once downstream.
"""
from __future__ import annotations

import json
import logging
import time
import weakref
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import faust
from faust.streams import _current_event as FAUST_CURRENT_EVENT  # noqa: PLC2701 - see set_current

from schemas.catalogue import TOPICS
from schemas.deadletter import ErrorClass, classify, make_dead_letter
from schemas.serde import SchemaStore, default_store
from streams.worker.consumer import PinganFaustApp
from connectors.sources.registry import normalizer
from streams.domain.pipeline import CountyProcessor, StepOutput, Stores
from streams.settings import Settings
from streams.worker.tables import CachedTable
from streams.worker.stages import RAW_SOURCES, NormalizeStage, RetriableStageError, decode_event

log = logging.getLogger(__name__)

BY_COUNTY = "internal.events-by-county.v1"
TICK_PREFIX = b"{"  # deadline ticks are tiny JSON objects; Avro single-object data starts with C3 01


@dataclass
class Metrics:
    """Per-worker counters (exposed on the worker's web server at /pingan/metrics)."""

    raw_in: int = 0
    events_out: int = 0
    dead_letters: int = 0
    links: int = 0
    incidents: int = 0
    merges: int = 0
    escalations: int = 0
    indexed: int = 0
    index_retries: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _load_registry(settings: Settings) -> Any:
    if settings.registry_path is None:
        return None
    from connectors.sources.devices import DeviceRegistry

    return DeviceRegistry.from_csv(settings.registry_path)


def build_app(settings: Settings, *, store: SchemaStore | None = None, with_index: bool = True,
              table_store: str = "rocksdb://") -> faust.App:
    """A configured Faust app with the bus's agents, tables and timers.

    ``table_store`` is Faust's table store URL ("memory://" in agent unit tests)."""
    store = store or default_store()
    catalogue = {t.name: t for t in TOPICS}
    worker_dir = settings.run_dir / "workers" / f"{settings.app_id}-{settings.worker_id}"
    worker_dir.mkdir(parents=True, exist_ok=True)
    app = PinganFaustApp(  # faust.App with a consumer that cannot skip records (streams/worker/consumer.py)
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=table_store,
        datadir=str(worker_dir),
        web_enabled=True,
        web_port=settings.worker_web_port + settings.worker_id,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=settings.replication_factor,
        topic_partitions=catalogue[BY_COUNTY].partitions,
        broker_commit_every=1000,
        # a killed worker's partitions move after ~10 s instead of Faust's default 60 s
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=4096,
        producer_linger=0.005,
        producer_max_batch_size=512 * 1024,
        table_cleanup_interval=60.0,
        key_serializer="json",
        value_serializer="json",
    )
    metrics = Metrics()

    def topic(name: str) -> faust.TopicT:
        t = catalogue[name]
        return app.topic(settings.topic(name), key_serializer="raw", value_serializer="raw",
                         partitions=t.partitions, internal=False)

    raw_topic = app.topic(*[settings.input_topic(n) for n in RAW_SOURCES], key_serializer="raw",
                          value_serializer="raw", internal=False)
    by_county_t, incidents_t = topic(BY_COUNTY), topic("incidents.v1")  # agents' sources
    events_name, by_county_name = settings.topic("events.v1"), settings.topic(BY_COUNTY)
    links_name, incidents_name = settings.topic("links.v1"), settings.topic("incidents.v1")
    escalations_name, dlq_name = settings.topic("escalations.v1"), settings.topic("deadletters.v1")

    n = catalogue[BY_COUNTY].partitions

    cached: list[CachedTable] = []

    def table(name: str) -> CachedTable:
        cached.append(CachedTable(app.Table(name, partitions=n)))
        return cached[-1]

    stores = Stores(candidates=table("candidates"), event_incident=table("event-incident"),
                    incidents=table("incidents"), pending=table("pending-links"),
                    history=table("person-history"))

    @app.on_partitions_revoked.connect
    async def _forget_on_revoke(_app: Any, revoked: Any, **_: Any) -> None:
        for t in cached:  # the tables may now hold other partitions' state
            t.clear_cache()

    @app.on_partitions_assigned.connect
    async def _forget_on_assign(_app: Any, assigned: Any, **_: Any) -> None:
        for t in cached:
            t.clear_cache()
    processor = CountyProcessor(stores)
    normalize_stage = NormalizeStage(store, normalizer(settings.person_key_secret.encode(), settings.timezone,
                                                       _load_registry(settings)),
                                     topic_prefix=settings.raw_topic_prefix)

    async def send(name: str, key: str, value: bytes) -> None:
        # straight to the producer: bytes in, no Faust channel machinery per message; the
        # consumer's commit flushes this producer before committing the input offsets, and
        # never commits again once a send has failed (streams/worker/consumer.py)
        k = key.encode()
        app.sensors.on_send_initiated(app.producer, name, SimpleNamespace(key=k, value=value), len(k), len(value))
        app.watch_send(await app.producer.send(name, k, value, None, None, None))

    async def dead_letter(record: dict[str, Any]) -> None:
        metrics.dead_letters += 1
        await send(dlq_name, record["source"], store.encode("pingan.DeadLetter", record))

    @app.agent(raw_topic, name="normalize")
    async def normalize(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            msg = ev.message
            metrics.raw_in += 1
            while True:
                try:
                    out = normalize_stage.handle(msg.topic, msg.partition, msg.offset, ev.value)
                    break
                except RetriableStageError as exc:
                    log.warning("normalize: retriable error at %s[%s]@%s: %s", msg.topic, msg.partition,
                                msg.offset, exc)
                    await stream.sleep(1.0)
            for event in out.events:
                value = store.encode("pingan.Event", event)
                county = (event.get("location") or {}).get("county_code") or settings.county_code
                await send(events_name, event["event_id"], value)
                await send(by_county_name, county, value)
                metrics.events_out += 1
            for record in out.dead_letters:
                await dead_letter(record)

    async def publish(step: StepOutput) -> None:
        for link in step.links:
            metrics.links += 1
            await send(links_name, link["county_code"], store.encode("pingan.Link", link))
        latest: dict[str, dict[str, Any]] = {}
        for inc in step.incidents:  # one record per incident per batch: its latest state
            latest[inc["incident_id"]] = inc
        for inc in latest.values():
            metrics.incidents += 1
            metrics.merges += inc.get("status") == "merged"
            await send(incidents_name, inc["incident_id"], store.encode("pingan.Incident", inc))
        for esc in step.escalations:
            metrics.escalations += 1
            await send(escalations_name, esc["incident_id"], store.encode("pingan.Escalation", esc))

    @app.agent(by_county_t, name="correlate")
    async def correlate(stream: faust.StreamT) -> None:
        # Batches are acknowledged only after the body has run (take_events), so outputs may be
        # coalesced per batch: an incident touched by 200 flood events is published once.
        def set_current(ev: Any) -> None:
            # Table writes go to the store and changelog partition of the task's current event
            # (faust.streams.current_event(), a context variable). Only that variable is set:
            # the stream's own `current_event` attribute belongs to take_events' background
            # buffering, which reads it for the next event while this body is suspended.
            FAUST_CURRENT_EVENT.set(weakref.ref(ev))

        async for batch in stream.take_events(settings.correlate_batch_size, within=settings.correlate_batch_s):
            out = StepOutput()
            for t in cached:
                t.begin_batch()
            for ev in batch:
                set_current(ev)
                for t in cached:
                    t.current = ev
                msg = ev.message
                value: bytes = ev.value or b""
                try:
                    if value.startswith(TICK_PREFIX):
                        tick = json.loads(value)
                        step = processor.check_deadlines(int(tick["now_ms"]), tick.get("county"))
                        processor.expire()
                    else:
                        step = processor.process(decode_event(store, value))
                except Exception as exc:  # noqa: BLE001 - errors are data: dead-letter and go on
                    if classify(exc) is ErrorClass.FATAL:
                        raise
                    log.exception("correlate failed at %s[%s]@%s", msg.topic, msg.partition, msg.offset)
                    await dead_letter(make_dead_letter(
                        source="events", stage="correlate", raw=value, error=exc, topic=msg.topic,
                        partition=msg.partition, offset=msg.offset, at_ms=int(time.time() * 1000)))
                    continue
                out.links.extend(step.links)
                out.incidents.extend(step.incidents)
                out.escalations.extend(step.escalations)
            for t in cached:  # state first, then outputs: both are flushed before the batch is acked
                t.flush(set_current)
            await publish(out)

    @app.timer(settings.deadline_check_s)
    async def deadline_ticks() -> None:
        now_ms = int(time.time() * 1000)
        for county in filter(None, (c.strip() for c in settings.counties.split(","))):
            await by_county_t.send(key=county.encode(),
                                   value=json.dumps({"now_ms": now_ms, "county": county}).encode())

    if with_index:
        _add_index_agent(app, settings, store, incidents_t, dead_letter, metrics)

    @app.page("/pingan/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.json({"worker": settings.worker_id, **metrics.as_dict()})

    from streams.worker.observability import install as install_observability

    install_observability(app, settings, metrics, with_index=with_index)  # /metrics, /healthz (Prometheus)
    app.pingan_agents = {"normalize": normalize, "correlate": correlate}  # type: ignore[attr-defined]
    app.pingan_metrics = metrics  # type: ignore[attr-defined]
    app.pingan_processor = processor  # type: ignore[attr-defined]
    return app


def _add_index_agent(app: faust.App, settings: Settings, store: SchemaStore, incidents_t: faust.TopicT,
                     dead_letter: Any, metrics: Metrics) -> None:
    """incidents.v1 → Elasticsearch; flush (with retries) before the next batch is taken."""
    from elasticsearch import AsyncElasticsearch

    from connectors.elasticsearch.admin import IndexNames
    from connectors.elasticsearch.sink import IncidentSink
    from streams.worker.observability import observe_bulk

    @app.agent(incidents_t, name="index")
    async def index(stream: faust.StreamT) -> None:
        client = AsyncElasticsearch(settings.es_url)
        sink = IncidentSink(client, IndexNames(settings.es_index_prefix).alias,
                            batch_size=settings.sink_batch_size, chunk_size=settings.sink_chunk_size)
        try:
            async for batch in stream.take_events(settings.sink_batch_size, within=0.5):
                for ev in batch:
                    try:
                        _name, inc = store.decode(ev.value)
                    except Exception as exc:  # noqa: BLE001 - undecodable record → dead letter
                        msg = ev.message
                        await dead_letter(make_dead_letter(
                            source="incidents", stage="index", raw=ev.value or b"", error=exc, topic=msg.topic,
                            partition=msg.partition, offset=msg.offset, at_ms=int(time.time() * 1000)))
                        continue
                    sink.add(inc, topic=ev.message.topic, partition=ev.message.partition,
                             offset=ev.message.offset)
                t_flush = time.perf_counter()
                result = await sink.flush()
                observe_bulk(app, time.perf_counter() - t_flush, result.retried)
                metrics.indexed += result.indexed + result.deleted
                metrics.index_retries += result.retried
                for record in result.dead_letters:
                    await dead_letter(record)
        finally:
            await client.close()
