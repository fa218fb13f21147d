"""The Faust application: thin agents that wire Kafka to the pure stages.

`build_app(settings)` creates a new app each call (no module-level app, no import-time side
effects). What it wires — agents, their topics, their tables, the timer — is declared in
streams/worker/topology.py; every faust-streaming specific patch (the consumer that cannot skip a
record, the commit barrier over every send, table writes with the right current event) is in
streams/worker/engine.py. Here:

- `faust_config(settings, table_store)`: the app's Faust settings.
- `_Wiring`: what the agents share (app, settings, schema store, metrics, topic names) and the
  two ways they publish, `send` and `dead_letter`.
- one function per agent (`_add_normalize`, `_add_correlate`, `_add_index`), the clock timer
  (`_add_clock_ticks`) and the web pages (`_add_pages`).

Every agent runs under mode's `CrashingSupervisor`: an error an agent raises stops the worker
(exit code 1; the demo's supervisor or systemd starts it again, and it resumes from the committed
offsets). Faust's default supervisor restarts the agent in the same process, at the consumer
position past the batch it was on (tried: a raising agent under it went on with the next batches),
so that batch would not be processed again by this worker; the correlate agent's next checkpoint
would even commit an offset past it.

The ``index`` agent flushes a batch to Elasticsearch (with retries until Elasticsearch confirms)
before it takes the next batch, so offsets are committed only after the documents are safe. Faust
commits a consumed offset only after the producer has flushed what the agent sent, so every output
is at-least-once and, with deterministic ids, effectively exactly-once downstream.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from mode import CrashingSupervisor

from connectors.elasticsearch.admin import IndexNames
from connectors.elasticsearch.client import async_client
from connectors.elasticsearch.sink import IncidentSink
from connectors.sources.devices import DeviceRegistry
from schemas.catalogue import topic as catalogue_topic
from schemas.deadletter import ErrorClass, classify, make_dead_letter
from schemas.serde import SchemaStore, default_store
from connectors.sources.registry import normalizer
from streams.domain.identity import PersonKeyer
from streams.domain.incidents import published
from streams.domain.pipeline import CountyProcessor, StepOutput, Stores
from streams.domain.ruleset import load_ruleset
from streams.domain.watch import parse_watchlists
from streams.settings import Settings
from streams.worker import topology
from streams.worker.checkpoint import CheckpointLost, Checkpoints, OutRecord, by_partition
from streams.worker.codec import use_gzip_level
from streams.worker.engine import PinganFaustApp, StateTables, changelog_records, fetch_state, write_store
from streams.worker.observability import install as install_observability
from streams.worker.observability import observe_bulk, observe_quality
from streams.worker.partitioner import KeyPartitioner
from streams.worker.runtime import LOOP_STALL_S, watch_loop
from streams.worker.stages import NormalizeStage, RetriableStageError, correlate_record
from streams.worker.topology import CORRELATE, INDEX, NORMALIZE

log = logging.getLogger(__name__)



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
    #: correlate batches, and the seconds spent running them through the processor (not waiting)
    correlate_batches: int = 0
    correlate_seconds: float = 0.0
    correlate_seconds_max: float = 0.0
    #: how long the oldest event of each correlate batch waited between its by-county record's
    #: timestamp and the start of the batch (fetch, stream buffer, the batches before it): summed, longest
    correlate_wait_seconds: float = 0.0
    correlate_wait_seconds_max: float = 0.0
    #: exactly_once checkpoints committed (one per input partition of a batch), seconds in their
    #: transactions (begin → sends → offsets → commit), and the longest one
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0
    checkpoint_seconds_max: float = 0.0
    #: checkpoints not committed (fenced, or an error such as a broker restart mid-transaction): each
    #: time the partition is read again from its committed offset (`PinganFaustApp.reinitialize`)
    checkpoints_failed: int = 0
    #: full (generation 2) collections of the cyclic garbage collector, seconds in every collection,
    #: and the longest pause (the event loop stands still meanwhile)
    gc_full_collections: int = 0
    gc_seconds: float = 0.0
    gc_seconds_max: float = 0.0
    #: event-loop lag: how late a 50 ms timer of the worker fired (the loop ran something else:
    #: a long batch, a big document, a collection). Lags over `LOOP_STALL_S` are counted as stalls.
    loop_stalls: int = 0
    loop_lag_seconds: float = 0.0
    loop_lag_seconds_max: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return dict(self.__dict__)

    def gc_paused(self, generation: int, seconds: float) -> None:
        """Count one garbage collection of `generation` that took `seconds` (runtime.watch_gc)."""
        self.gc_full_collections += generation == 2
        self.gc_seconds += seconds
        self.gc_seconds_max = max(self.gc_seconds_max, seconds)

    def correlated(self, seconds: float) -> None:
        """Count one correlate batch that ran `seconds` (processing only, no checkpoint)."""
        self.correlate_batches += 1
        self.correlate_seconds += seconds
        self.correlate_seconds_max = max(self.correlate_seconds_max, seconds)

    def loop_lagged(self, seconds: float) -> None:
        """Count one event-loop timer that fired `seconds` late."""
        self.loop_lag_seconds += seconds
        self.loop_lag_seconds_max = max(self.loop_lag_seconds_max, seconds)
        self.loop_stalls += seconds >= LOOP_STALL_S

    def batch_started(self, timestamps: list[float], now: float) -> None:
        """Count the wait of a correlate batch whose records carry these Kafka timestamps (epoch s)."""
        if timestamps:
            wait = max(0.0, now - min(timestamps))
            self.correlate_wait_seconds += wait
            self.correlate_wait_seconds_max = max(self.correlate_wait_seconds_max, wait)

    def checkpointed(self, seconds: float) -> None:
        """Count one committed checkpoint that took `seconds`."""
        self.checkpoints += 1
        self.checkpoint_seconds += seconds
        self.checkpoint_seconds_max = max(self.checkpoint_seconds_max, seconds)


def load_registry(settings: Settings) -> DeviceRegistry | None:
    """The device registry CSV of `settings` (None without one)."""
    if settings.registry_path is None:
        return None
    return DeviceRegistry.from_csv(settings.registry_path)


def normalize_stage(settings: Settings, store: SchemaStore, registry: DeviceRegistry | None,
                    topic_prefix: str = "") -> NormalizeStage:
    """The normalize agent's stage: the person key, time zone and `registry` of the deployment;
    raw topic names carry `topic_prefix`. (The benchmarks' baselines build theirs here too.)"""
    return NormalizeStage(store, normalizer(settings.person_key(), settings.timezone, registry),
                          topic_prefix=topic_prefix)


def county_processor(settings: Settings, stores: Stores | None = None) -> CountyProcessor:
    """The correlate agent's processor: the rules of `settings.rules_dir` (a RulesError names the
    file), its watch lists, over `stores` (in-memory dicts when None)."""
    ruleset = load_ruleset(settings.rules_dir)
    return CountyProcessor(stores or Stores(), rules=ruleset.correlation, tier_rules=ruleset.tiers,
                           rules_version=ruleset.version, watch=load_watch(settings))


def load_watch(settings: Settings) -> dict[str, str]:
    """The watch lists of `settings.watchlist_path` as key → list name ({} without a file)."""
    if settings.watchlist_path is None:
        return {}
    text = Path(settings.watchlist_path).read_text(encoding="utf-8")
    watch = parse_watchlists(text, PersonKeyer(settings.person_key()))
    log.info("watch lists: %d keys from %s", len(watch), settings.watchlist_path)
    return watch


def worker_dir(settings: Settings) -> Path:
    """This worker's data directory (Faust's datadir: RocksDB tables)."""
    return settings.run_dir / "workers" / f"{settings.app_id}-{settings.worker_id}"


def broker_credentials(settings: Settings) -> faust.auth.Credentials | None:
    """The Faust form of the settings' Kafka security (None: plaintext)."""
    opts = settings.aiokafka_client_options()
    if "sasl_mechanism" in opts:
        return faust.SASLCredentials(username=opts["sasl_plain_username"], password=opts["sasl_plain_password"],
                                     mechanism=opts["sasl_mechanism"], ssl_context=opts.get("ssl_context"))
    if "ssl_context" in opts:
        return faust.SSLCredentials(opts["ssl_context"])
    return None


def compression(settings: Settings) -> str | None:
    """The worker producers' compression codec (None: uncompressed)."""
    return None if settings.worker_compression_type == "none" else settings.worker_compression_type


def faust_config(settings: Settings, table_store: str) -> dict[str, Any]:
    """The Faust settings of the worker's app (keyword arguments of `faust.App`)."""
    return {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "broker_credentials": broker_credentials(settings),
        "store": table_store,
        "datadir": str(worker_dir(settings)),
        "web_enabled": True,
        "web_port": settings.worker_web_port + settings.worker_id,
        "web_bind": "127.0.0.1",
        "web_host": "127.0.0.1",
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "topic_replication_factor": settings.replication_factor,
        "topic_partitions": topology.table_partitions(),
        "broker_commit_every": 1000,
        # a killed worker's partitions move after ~10 s instead of Faust's default 60 s
        "broker_session_timeout": settings.worker_session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.worker_session_timeout_s / 3),
        "consumer_group_instance_id": (f"{settings.app_id}-worker-{settings.worker_id}"
                                       if settings.worker_static_membership else None),
        "broker_commit_interval": 1.0,
        "stream_buffer_maxsize": 4096,
        "producer_linger": 0.005,
        "producer_max_batch_size": 512 * 1024,
        "producer_compression_type": compression(settings),
        # Kafka's default partitioning (murmur2 of the key), computed faster than aiokafka's
        "producer_partitioner": KeyPartitioner(),
        "producer_max_request_size": settings.worker_max_request_size,
        "table_cleanup_interval": 60.0,
        "key_serializer": "json",
        "value_serializer": "json",
    }


@dataclass
class _Wiring:
    """What the agents of one app share, and how they publish."""

    app: PinganFaustApp
    settings: Settings
    store: SchemaStore
    metrics: Metrics

    def name(self, catalogue_name: str) -> str:
        """The deployed topic name of a catalogue topic."""
        return self.settings.topic(catalogue_name)

    def topic(self, catalogue_name: str) -> faust.TopicT:
        """A catalogue topic as a Faust topic of raw bytes (an agent's source)."""
        return self.app.topic(self.name(catalogue_name), key_serializer="raw", value_serializer="raw",
                              partitions=catalogue_topic(catalogue_name).partitions, internal=False)

    async def send(self, name: str, key: str, value: bytes) -> None:
        """Publish to the deployed topic `name` (see `PinganFaustApp.publish`)."""
        await self.app.publish(name, key.encode(), value)

    async def send_many(self, records: list[OutRecord]) -> None:
        """Publish records outside a checkpoint, in order within each partition, as whole batches
        (`PinganFaustApp.publish_many`)."""
        await self.app.publish_many(records)

    async def dead_letter(self, record: dict[str, Any]) -> None:
        self.metrics.dead_letters += 1
        await self.send(self.name(topology.DEAD_LETTERS), record["source"],
                        self.store.encode("pingan.DeadLetter", record))


#: The worker roles (`Settings.worker_role`, `pingan worker run --role`): the agents one worker
#: process runs. All roles are members of the one consumer group ``app_id``; Faust's assignor gives
#: each member only the partitions of the topics its agents subscribe to, so the county-serial
#: ``correlate`` stage can have a process (a core) of its own while ``edge`` processes take the
#: stages that spread over partitions (normalize, index).
ROLES: dict[str, frozenset[str]] = {
    "all": frozenset({"normalize", "correlate", "index"}),
    "correlate": frozenset({"correlate"}),
    "edge": frozenset({"normalize", "index"}),
}


def build_app(settings: Settings, *, store: SchemaStore | None = None, with_index: bool = True,
              table_store: str = "rocksdb://") -> faust.App:
    """A configured Faust app with the agents of ``settings.worker_role`` (`ROLES`), their tables
    and timers (the clock ticks go with correlate); ``with_index=False`` leaves the index agent out.

    ``table_store`` is Faust's table store URL ("memory://" in agent unit tests)."""
    agents = ROLES[settings.worker_role]
    with_index = with_index and "index" in agents
    worker_dir(settings).mkdir(parents=True, exist_ok=True)
    if settings.worker_compression_type == "gzip":
        use_gzip_level(settings.worker_gzip_level)
    exactly_once = settings.processing_guarantee == "exactly_once"
    kafka = {"bootstrap_servers": settings.kafka_bootstrap, **settings.aiokafka_client_options()}
    app = PinganFaustApp(settings.app_id, read_committed=exactly_once, kafka=kafka,
                         fetch_max_wait_ms=settings.worker_fetch_max_wait_ms,
                         fetch_min_bytes=settings.worker_fetch_min_bytes, table_store_wal=settings.table_store_wal,
                         **faust_config(settings, table_store))
    w = _Wiring(app, settings, store or default_store(), Metrics())
    (by_county_t,) = [w.topic(n) for n in CORRELATE.inputs]
    (incidents_t,) = [w.topic(n) for n in INDEX.inputs]
    normalize = correlate = processor = None
    if "normalize" in agents:
        raw_topic = app.topic(*topology.deployed_inputs(NORMALIZE, settings), key_serializer="raw",
                              value_serializer="raw", internal=False)
        normalize = _add_normalize(w, raw_topic)
    if "correlate" in agents:
        tables = StateTables(app, topology.table_partitions())
        # a RulesError (clear, names the file) before anything starts
        processor = county_processor(settings, Stores(**{field: tables.table(name)
                                                         for field, name in topology.CORRELATE_TABLES.items()}))
        if exactly_once:
            tables.checkpointed(by_county_t.get_topic_name(), Checkpoints(
                kafka=kafka, app_id=settings.app_id, agent=CORRELATE.name, input_topic=by_county_t.get_topic_name(),
                compression_type=compression(settings), max_request_size=settings.worker_max_request_size,
                partitioner=KeyPartitioner(), retry_backoff_ms=settings.checkpoint_retry_backoff_ms))
            correlate = _add_correlate_checkpointed(w, by_county_t, tables, processor)
        else:
            correlate = _add_correlate(w, by_county_t, tables, processor)
        _add_clock_ticks(w)
    if with_index:
        _add_index(w, incidents_t)
    _add_pages(w, with_index=with_index)
    app.pingan_agents = {"normalize": normalize, "correlate": correlate}  # type: ignore[attr-defined]
    app.pingan_metrics = w.metrics  # type: ignore[attr-defined]
    app.pingan_processor = processor  # type: ignore[attr-defined]
    return app


def _add_normalize(w: _Wiring, raw_topic: faust.TopicT) -> Any:
    """Every raw topic → `events.v1` (key event_id) and the by-county topic (key county code)."""
    settings, store, metrics = w.settings, w.store, w.metrics
    stage = normalize_stage(settings, store, load_registry(settings), settings.raw_topic_prefix)
    (events_name,) = [w.name(n) for n in NORMALIZE.outputs]
    (by_county_name,) = [w.name(n) for n in NORMALIZE.repartitions]

    @w.app.agent(raw_topic, name=NORMALIZE.name, supervisor_strategy=CrashingSupervisor)
    async def normalize(stream: faust.StreamT) -> None:
        # Whole batches: their outputs are sent together, and the batch is acknowledged only after
        # the body has run (take_events), so a crash replays the batch (idempotent downstream).
        async for batch in stream.take_events(settings.normalize_batch_size, within=settings.normalize_batch_s):
            records: list[OutRecord] = []
            dead: list[dict[str, Any]] = []
            notes: list[tuple[str, str]] = []
            for ev in batch:
                msg = ev.message
                metrics.raw_in += 1
                while True:
                    try:
                        out = stage.handle(msg.topic, msg.partition, msg.offset, ev.value)
                        break
                    except RetriableStageError as exc:
                        log.warning("normalize: retriable error at %s[%s]@%s: %s", msg.topic, msg.partition,
                                    msg.offset, exc)
                        await stream.sleep(1.0)
                notes.extend(out.quality_notes())
                for county, value in out.forward:  # centers' actions and clock ticks, unchanged
                    records.append(OutRecord(by_county_name, county.encode(), value))
                for event in out.events:
                    value = store.encode("pingan.Event", event)
                    county = (event.get("location") or {}).get("county_code") or settings.county_code
                    records.append(OutRecord(events_name, event["event_id"].encode(), value))
                    records.append(OutRecord(by_county_name, county.encode(), value))
                    metrics.events_out += 1
                dead.extend(out.dead_letters)
            if notes:
                observe_quality(w.app, notes)
            await w.send_many(records)
            for record in dead:
                await w.dead_letter(record)

    return normalize


def _add_correlate(w: _Wiring, by_county_t: faust.TopicT, tables: StateTables, processor: CountyProcessor) -> Any:
    """By-county events and deadline ticks → links, incidents, escalations (state in `tables`)."""
    settings, store = w.settings, w.store
    publish = _publisher(w, processor.tier_rules.listed_event_ids)

    @w.app.agent(by_county_t, name=CORRELATE.name, supervisor_strategy=CrashingSupervisor)
    async def correlate(stream: faust.StreamT) -> None:
        # Batches are acknowledged only after the body has run (take_events), so outputs may be
        # coalesced per batch: an incident touched by 200 flood events is published once.
        async for batch in stream.take_events(settings.correlate_batch_size, within=settings.correlate_batch_s):
            out = StepOutput()
            tables.begin_batch()
            w.metrics.batch_started([float(ev.message.timestamp or 0) or time.time() for ev in batch], time.time())
            started = time.perf_counter()
            for ev in batch:
                tables.at(ev)
                step, dead = _correlate_step(processor, store, ev)
                if dead is not None:
                    await w.dead_letter(dead)
                    continue
                out.extend(step)
            w.metrics.correlated(time.perf_counter() - started)
            tables.flush()  # state first, then outputs: both are flushed before the batch is acked
            await publish(out)

    return correlate


def _correlate_step(processor: CountyProcessor, store: SchemaStore, ev: Any) -> tuple[StepOutput, dict[str, Any] | None]:
    """One by-county record through the processor: (its output, None), or (empty, a dead letter)."""
    msg = ev.message
    value: bytes = ev.value or b""
    try:
        return correlate_record(processor, store, value), None
    except Exception as exc:  # noqa: BLE001 - errors are data: dead-letter and go on
        if classify(exc) is ErrorClass.FATAL:
            raise
        log.exception("correlate failed at %s[%s]@%s", msg.topic, msg.partition, msg.offset)
        return StepOutput(), make_dead_letter(
            source="events", stage="correlate", raw=value, error=exc, topic=msg.topic,
            partition=msg.partition, offset=msg.offset, at_ms=int(time.time() * 1000))


def _add_correlate_checkpointed(w: _Wiring, by_county_t: faust.TopicT, tables: StateTables,
                                processor: CountyProcessor) -> Any:
    """`_add_correlate` under ``exactly_once``: per input partition of a batch, one checkpoint
    (streams/worker/checkpoint.py) commits the batch's table changes, its outputs and the consumed
    offset together; the local stores are written once it is committed. A checkpoint that fails
    (fenced, or any error) commits nothing, and its partition is read again from its committed
    offset after a rejoin of the group (`PinganFaustApp.reinitialize`)."""
    settings, store = w.settings, w.store
    checkpoints = w.app.checkpoints[by_county_t.get_topic_name()]
    records_of = _records(w, processor.tier_rules.listed_event_ids)

    @w.app.agent(by_county_t, name=CORRELATE.name, supervisor_strategy=CrashingSupervisor)
    async def correlate(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.correlate_batch_size, within=settings.correlate_batch_s):
            generation = w.app.consumer_generation_id
            outs: dict[int, StepOutput] = {}
            dead: dict[int, list[dict[str, Any]]] = {}
            next_offset: dict[int, int] = {}
            tables.begin_batch()
            w.metrics.batch_started([float(ev.message.timestamp or 0) or time.time() for ev in batch], time.time())
            started = time.perf_counter()
            reinitializing = w.app.reinitializing
            for ev in batch:
                msg = ev.message
                if msg.generation_id != generation:  # buffered before a rebalance: refetched after it
                    continue
                if reinitializing and (msg.topic, msg.partition) in reinitializing:
                    continue  # its checkpoint failed: read again after the next assignment
                tables.at(ev)
                p = msg.partition
                out = outs.setdefault(p, StepOutput())
                next_offset[p] = max(next_offset.get(p, 0), msg.offset + 1)
                step, dead_letter = _correlate_step(processor, store, ev)
                if dead_letter is not None:
                    dead.setdefault(p, []).append(dead_letter)
                    continue
                out.extend(step)
            writes = by_partition(tables.take_writes(), lambda tw: tw.partition)
            w.metrics.correlated(time.perf_counter() - started)
            for p in sorted(next_offset):
                state = writes.get(p, [])
                outputs = records_of(outs[p], dead.get(p, ()))
                records = changelog_records(state) + outputs
                try:
                    started = time.perf_counter()
                    metas = await checkpoints.commit(p, records, next_offset[p])
                    w.metrics.checkpointed(time.perf_counter() - started)
                except asyncio.CancelledError:
                    tables.forget()
                    raise  # the worker is stopping: the batch is processed again after a restart
                except Exception as exc:  # noqa: BLE001 - fenced, or any error: read the partition again
                    # Not raised: that would stop the whole worker (CrashingSupervisor) for what is
                    # often a broker blip; handing the one partition back re-reads just its records.
                    tables.forget()
                    w.metrics.checkpoints_failed += 1
                    log.warning("correlate: checkpoint of %s[%d] not committed (%r); the partition is read "
                                "again from its committed offset after a rejoin of the group",
                                by_county_t.get_topic_name(), p, exc, exc_info=not isinstance(exc, CheckpointLost))
                    await w.app.reinitialize(by_county_t.get_topic_name(), p)
                    continue
                write_store(state, [m.offset for m in metas[:len(state)]], records[:len(state)])
                w.app.sent_in_checkpoint(outputs)

    return correlate


def _records(w: _Wiring, listed: int) -> Any:
    """`records(step, dead_letters)`: a correlate batch's outputs as records (incidents coalesced
    to their latest state, each with at most `listed` member ids: `incidents.published`) and the
    members of its events, counted in the metrics: in a checkpoint, or sent by `_publisher`."""
    store, metrics = w.store, w.metrics
    links_name, incidents_name, escalations_name, members_name = (w.name(n) for n in CORRELATE.outputs)
    dead_name = w.name(topology.DEAD_LETTERS)

    def records(step: StepOutput, dead_letters: Any) -> list[OutRecord]:
        out = [OutRecord(links_name, link["county_code"].encode(), store.encode("pingan.Link", link))
               for link in step.links]
        latest: dict[str, dict[str, Any]] = {}
        for inc in step.incidents:
            latest[inc["incident_id"]] = inc
        out += [OutRecord(incidents_name, iid.encode(), store.encode("pingan.Incident", published(inc, listed)))
                for iid, inc in latest.items()]
        out += [OutRecord(escalations_name, esc["incident_id"].encode(), store.encode("pingan.Escalation", esc))
                for esc in step.escalations]
        out += [OutRecord(members_name, m["event_id"].encode(), store.encode("pingan.IncidentMember", m))
                for m in step.members]
        out += [OutRecord(dead_name, d["source"].encode(), store.encode("pingan.DeadLetter", d)) for d in dead_letters]
        metrics.links += len(step.links)
        metrics.incidents += len(latest)
        metrics.merges += sum(inc.get("status") == "merged" for inc in latest.values())
        metrics.escalations += len(step.escalations)
        metrics.dead_letters += len(dead_letters)
        return out

    return records


def _publisher(w: _Wiring, listed: int) -> Any:
    """`publish(step)`: a correlate batch's links, incidents (latest state only) and escalations,
    the records `_records` makes, sent outside a checkpoint (``at_least_once``)."""
    records_of = _records(w, listed)

    async def publish(step: StepOutput) -> None:
        await w.send_many(records_of(step, ()))

    return publish


def _add_clock_ticks(w: _Wiring) -> None:
    """Every `deadline_check_s`, one pingan.ClockTick per configured county into `clock.v1`:
    wall time minus `clock_grace_s` (events arriving that late still count on time). Off when
    `clock_ticks` is false: replays (they re-read the recorded ticks) and simulated feeds whose
    days are in the past (the demo: its clock is the feed's event time)."""
    settings = w.settings
    if not settings.clock_ticks:
        return
    clock_name = settings.input_topic(topology.CLOCK)

    @w.app.timer(settings.deadline_check_s)
    async def clock_ticks() -> None:
        now_ms = int(time.time() * 1000) - int(settings.clock_grace_s * 1000)
        for county in filter(None, (c.strip() for c in settings.counties.split(","))):
            await w.send(clock_name, county, w.store.encode(
                "pingan.ClockTick", {"county_code": county, "now_ms": now_ms, "worker": str(settings.worker_id)}))


def _add_pages(w: _Wiring, *, with_index: bool) -> None:
    """/pingan/metrics (JSON counters), then /metrics and /healthz (streams/worker/observability.py)."""
    settings, metrics = w.settings, w.metrics

    @w.app.page("/pingan/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.json({"worker": settings.worker_id, **metrics.as_dict()})

    @w.app.page("/pingan/debug/fetch")
    async def fetch_page(web: Any, request: Any) -> Any:
        """The consumer's fetch state (`engine.fetch_state`): why a worker does not consume."""
        return web.json({"worker": settings.worker_id, **fetch_state(w.app)})

    install_observability(w.app, settings, metrics, with_index=with_index)  # /metrics, /healthz (Prometheus)

    @w.app.task
    async def quiet_root_logger() -> None:
        restore_root_log_level()

    @w.app.task
    async def loop_lag() -> None:
        await watch_loop(metrics.loop_lagged)  # event-loop lag (streams/worker/runtime.py)


def restore_root_log_level() -> None:
    """Undo the DEBUG root level that Faust's worker sets for its startup spinner.

    `faust.Worker` lowers the root logger to DEBUG and adds a `SpinnerHandler` (it spins on every
    log record) whatever the log level asked for; the real handlers filter by level, but every
    library's debug call (aiokafka logs each send) still builds a record and runs the handlers
    (~3 % of the normalize agent's time in a py-spy profile). At the app's start the root level is
    put back to the least verbose level its handlers need and the spinner handler is removed."""
    root = logging.getLogger()
    spinners = [h for h in root.handlers if type(h).__name__ == "SpinnerHandler"]
    levels = [h.level for h in root.handlers if h not in spinners]
    if root.level == logging.DEBUG and levels and min(levels) > logging.DEBUG:
        for h in spinners:
            root.removeHandler(h)
        root.setLevel(min(levels))


def _add_index(w: _Wiring, incidents_t: faust.TopicT) -> None:
    """incidents.v1 → Elasticsearch; flush (with retries) before the next batch is taken."""
    app, settings, store, metrics = w.app, w.settings, w.store, w.metrics

    @app.agent(incidents_t, name=INDEX.name, supervisor_strategy=CrashingSupervisor)
    async def index(stream: faust.StreamT) -> None:
        client = async_client(settings)
        sink = IncidentSink(client, IndexNames(settings.es_index_prefix).alias,
                            batch_size=settings.sink_batch_size, chunk_size=settings.sink_chunk_size)
        try:
            async for batch in stream.take_events(settings.sink_batch_size, within=settings.index_batch_s):
                for ev in batch:
                    try:
                        _name, inc = store.decode(ev.value)
                    except Exception as exc:  # noqa: BLE001 - undecodable record → dead letter
                        msg = ev.message
                        await w.dead_letter(make_dead_letter(
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
                    await w.dead_letter(record)
        finally:
            await client.close()
