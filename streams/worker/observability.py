"""Worker observability: Prometheus ``/metrics``, ``/healthz`` and JSON logs.

Contract:
- `install(app, settings, metrics, with_index=...)` (called once by ``build_app``) gives the app its
  own `prometheus_client.CollectorRegistry` (never the process-global one, so several apps in one
  process never collide) and adds two pages on the worker web port:
  * ``/metrics`` — Prometheus text format:
    ``pingan_events_in_total{stage,source}`` (messages consumed: normalize per raw source, correlate
    and index), ``pingan_events_out_total{stage,source}`` (normalize → events per source; correlate →
    links/incidents/escalations; index → documents), ``pingan_dead_letters_total{source,stage,error_type}``,
    ``pingan_links_total``, ``pingan_incidents_total``, ``pingan_merges_total``,
    ``pingan_escalations_total``, ``pingan_indexed_total``, ``pingan_index_retries_total``,
    ``pingan_bulk_seconds`` (histogram of Elasticsearch bulk flushes),
    ``pingan_events_quality_notes_total{source,field}`` (data-quality notes on the canonical events
    normalize made: an optional field kept with a problem; counted from the stage outcome),
    ``pingan_consumer_lag{topic,partition}`` (highwater − committed offset of each assigned partition),
    ``pingan_table_recovery_remaining`` and ``pingan_table_recovery_completed``,
    ``pingan_correlate_batches_total`` / ``pingan_correlate_seconds_total`` (time running correlate
    batches), ``pingan_correlate_wait_seconds_total`` / ``_max`` (the oldest event's wait before its
    batch: from its by-county record's timestamp), ``pingan_checkpoints_total`` / ``pingan_checkpoint_seconds_total`` /
    ``pingan_checkpoint_seconds_max``, ``pingan_checkpoints_failed_total`` (exactly_once checkpoint transactions),
    ``pingan_gc_full_collections_total`` / ``pingan_gc_seconds_total`` / ``pingan_gc_seconds_max``
    (garbage-collector pauses, `runtime.watch_gc`); ``pingan_loop_stalls_total`` /
    ``pingan_loop_lag_seconds_total`` / ``pingan_loop_lag_seconds_max`` (how late a 50 ms timer of
    the event loop fired: the loop was busy with something else).
    Stage/source counters come from a Faust `Sensor` (every consumed and produced message), totals
    from the app's `Metrics` object at scrape time; nothing in the agents' hot path changes.
  * ``/healthz`` — JSON ``{"status": "ok"|"degraded", "kafka": …, "elasticsearch": …, "tables": …}``,
    HTTP 200 when the consumer has partitions assigned (or the group has nothing to assign yet),
    Elasticsearch answers ping (only checked when the worker indexes) and table recovery completed;
    503 otherwise.
- `observe_bulk(app, seconds, retried)` records one bulk flush (the index agent calls it);
  `observe_quality(app, notes)` counts the (source, field) quality notes of one normalize outcome.
- `JsonFormatter` / `json_logging_config()` format log records as one JSON object per line
  (``PINGAN_LOG_JSON=1`` for workers).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from elasticsearch import AsyncElasticsearch
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from schemas.serde import default_store
from streams.settings import Settings
from streams.worker.engine import consumer_of, consumer_offsets, table_recovery
from streams.worker.runtime import LOOP_STALL_S
from streams.worker.topology import AGENTS, DEAD_LETTERS, deployed_inputs, input_sources

log = logging.getLogger(__name__)

MAX_QUALITY_LABELS = 500  # distinct (source, field) pairs; more are counted as field "_other"
BULK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Classifier:
    """Topic name → (stage, source) for consumed and produced messages of this app's namespace
    (from the topology: agent inputs, and the outputs each agent is counted for)."""

    def __init__(self, settings: Settings) -> None:
        self.inputs: dict[str, tuple[str, str]] = {}
        for agent in AGENTS:
            sources = input_sources(agent)
            for deployed, name in deployed_inputs(agent, settings).items():
                self.inputs[deployed] = (agent.name, sources[name])
        self.outputs: dict[str, str] = {settings.topic(n): a.name for a in AGENTS for n in a.outputs}
        self.names = {settings.topic(n): n for a in AGENTS for n in a.outputs}
        self.dead_letters = settings.topic(DEAD_LETTERS)


def _children(metric: Any) -> Any:
    """``child(*labels)``: `metric.labels(*labels)`, remembered (prometheus_client takes a lock and
    builds a key on every call; the sensors below call it for every message)."""
    cache: dict[tuple[str, ...], Any] = {}

    def child(*labels: str) -> Any:
        c = cache.get(labels)
        if c is None:
            c = cache[labels] = metric.labels(*labels)
        return c

    return child


def _make_sensor(classifier: _Classifier, events_in: Any, events_out: Any, dead_letters: Any) -> Any:
    events_in, events_out = _children(events_in), _children(events_out)

    class PinganSensor(faust.Sensor):
        """Counts consumed/produced messages by stage and source (cheap: topic and key only)."""

        def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
            where = classifier.inputs.get(tp.topic)
            if where:
                events_in(*where).inc()

        def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
            try:
                if topic == classifier.dead_letters:
                    _name, rec = default_store().decode(message.value)
                    dead_letters.labels(rec["source"], rec["stage"], rec["error_type"]).inc()
                    return None
                stage = classifier.outputs.get(topic)
                if stage == "normalize":  # events.v1 key = event_id = "<source>:<native id>"
                    key = message.key if isinstance(message.key, bytes) else b""
                    events_out(stage, key.split(b":", 1)[0].decode("utf-8", "replace") or "unknown").inc()
                elif stage:
                    events_out(stage, classifier.names[topic].split(".")[0]).inc()
            except Exception:  # noqa: BLE001 - metrics never break a send
                log.debug("metrics sensor failed", exc_info=True)
            return None

    return PinganSensor()


def consumer_lag(app: Any) -> dict[tuple[str, int], int]:
    """(topic, partition) → highwater − committed offset, for every input partition assigned to this worker.

    Uses faust's consumer (streams/worker/engine.py): ``assignment()``, ``highwater(tp)`` (the
    fetcher's cached log-end offset) and its committed offsets, falling back to the read position."""
    consumer = consumer_of(app)  # do not create a consumer just to report on it
    if consumer is None:
        return {}
    out: dict[tuple[str, int], int] = {}
    committed, read = consumer_offsets(consumer)
    try:
        assigned = consumer.assignment()
    except Exception:  # noqa: BLE001 - not started / rebalancing
        return {}
    for tp in assigned:
        if tp.topic.endswith("-changelog"):
            continue  # table changelogs are read during recovery only (see table_recovery)
        try:
            high = consumer.highwater(tp)
        except Exception:  # noqa: BLE001
            continue
        if high is None or high < 0:
            continue
        done = committed.get(tp)
        if done is None:
            last_read = read.get(tp)
            done = last_read + 1 if last_read is not None else 0
        out[(tp.topic, tp.partition)] = max(0, int(high) - int(done))
    return out


class _Collector:
    """Reads the app's `Metrics`, consumer lag and recovery state at scrape time."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        m = self.metrics
        for name, attr, text in (("links", "links", "links published"),
                                 ("incidents", "incidents", "incident records published"),
                                 ("merges", "merges", "merge redirects published"),
                                 ("escalations", "escalations", "escalations published"),
                                 ("indexed", "indexed", "documents indexed or deleted in Elasticsearch"),
                                 ("index_retries", "index_retries", "bulk items retried"),
                                 ("raw_messages", "raw_in", "raw messages consumed by normalize"),
                                 ("canonical_events", "events_out", "canonical events published")):
            yield CounterMetricFamily(f"pingan_{name}", text, value=int(getattr(m, attr, 0)))
        for name, text in (("correlate_batches", "correlate batches processed"),
                           ("correlate_seconds", "seconds running correlate batches"),
                           ("correlate_wait_seconds", "seconds the oldest event of each correlate batch waited before it"),
                           ("checkpoints", "checkpoint transactions committed"),
                           ("checkpoint_seconds", "seconds in checkpoint transactions"),
                           ("checkpoints_failed", "checkpoints not committed (the partition was read again)"),
                           ("gc_full_collections", "full collections of the cyclic garbage collector"),
                           ("gc_seconds", "seconds in garbage collections (the loop stands still)"),
                           ("loop_stalls", f"event-loop timers that fired {LOOP_STALL_S} s or more late"),
                           ("loop_lag_seconds", "seconds event-loop timers fired late, summed")):
            yield CounterMetricFamily(f"pingan_{name}", text, value=float(getattr(m, name, 0)))
        for name, text in (("correlate_seconds_max", "the longest correlate batch so far"),
                           ("correlate_wait_seconds_max", "the longest such wait so far"),
                           ("checkpoint_seconds_max", "the longest checkpoint transaction so far"),
                           ("gc_seconds_max", "the longest garbage collection pause so far"),
                           ("loop_lag_seconds_max", "the latest an event-loop timer fired so far")):
            yield GaugeMetricFamily(f"pingan_{name}", text, value=float(getattr(m, name, 0.0)))
        lag = GaugeMetricFamily("pingan_consumer_lag", "highwater - committed offset per assigned partition",
                                labels=["topic", "partition"])
        for (topic, partition), value in sorted(consumer_lag(self.app).items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        rec = table_recovery(self.app)
        yield GaugeMetricFamily("pingan_table_recovery_remaining", "changelog records left to recover",
                                value=rec["active_remaining"])
        yield GaugeMetricFamily("pingan_table_recovery_completed", "1 when table recovery completed",
                                value=1 if rec["completed"] else 0)


def install(app: Any, settings: Settings, metrics: Any, *, with_index: bool = True) -> Any:
    """Add the registry, sensor, /metrics and /healthz to `app` (see module contract); returns the registry."""
    registry = CollectorRegistry(auto_describe=False)
    events_in = Counter("pingan_events_in", "messages consumed per stage and source", ["stage", "source"],
                        registry=registry)
    events_out = Counter("pingan_events_out", "messages produced per stage and source", ["stage", "source"],
                         registry=registry)
    dead = Counter("pingan_dead_letters", "dead letters per source, stage and error type",
                   ["source", "stage", "error_type"], registry=registry)
    bulk = Histogram("pingan_bulk_seconds", "Elasticsearch bulk flush latency (with its retries)",
                     buckets=BULK_BUCKETS, registry=registry)
    bulk_retries = Counter("pingan_bulk_retried_items", "bulk items retried (429/5xx/connection)",
                           registry=registry)
    quality = Counter("pingan_events_quality_notes", "data-quality notes on canonical events (optional fields "
                      "kept with a problem) per source and field", ["source", "field"], registry=registry)
    registry.register(_Collector(app, metrics))
    app.sensors.add(_make_sensor(_Classifier(settings), events_in, events_out, dead))

    def observe(seconds: float, retried: int = 0) -> None:
        bulk.observe(seconds)
        if retried:
            bulk_retries.inc(retried)

    seen: set[tuple[str, str]] = set()

    def observe_notes(notes: Iterable[tuple[str, str]]) -> None:
        for source, name in notes:
            if (source, name) not in seen:
                if len(seen) >= MAX_QUALITY_LABELS:
                    name = "_other"
                else:
                    seen.add((source, name))
            quality.labels(source, name).inc()

    app.pingan_registry = registry
    app.pingan_observe_bulk = observe
    app.pingan_observe_quality = observe_notes

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body = generate_latest(registry).decode("utf-8")
        return web.text(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        report = await health(app, settings, with_index=with_index)
        return web.json(report, status=200 if report["status"] == "ok" else 503)

    return registry


def observe_bulk(app: Any, seconds: float, retried: int = 0) -> None:
    """Record one bulk flush on `app` (no-op for an app without observability)."""
    fn = getattr(app, "pingan_observe_bulk", None)
    if fn is not None:
        fn(seconds, retried)


def observe_quality(app: Any, notes: Iterable[tuple[str, str]]) -> None:
    """Count (source, field) quality notes of one normalize outcome on `app` (no-op without observability)."""
    fn = getattr(app, "pingan_observe_quality", None)
    if fn is not None and notes:
        fn(notes)


async def ping_elasticsearch(url: str, timeout_s: float = 2.0, **client_options: Any) -> dict[str, Any]:
    """``{"ok": bool, "ms": float}`` (or an error) for the cluster at `url` (`client_options`: auth, CA)."""
    client = AsyncElasticsearch(url, timeout=timeout_s, max_retries=0, **client_options)
    t0 = time.perf_counter()
    try:
        ok = bool(await client.ping())
        return {"ok": ok, "ms": round((time.perf_counter() - t0) * 1000, 1)}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        await client.close()


async def health(app: Any, settings: Settings, *, with_index: bool = True) -> dict[str, Any]:
    """The /healthz report (see module contract)."""
    consumer = consumer_of(app)
    assigned: list[str] = []
    try:
        assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in consumer.assignment()) if consumer else []
    except Exception:  # noqa: BLE001
        assigned = []
    kafka = {"ok": bool(assigned), "assigned_partitions": len(assigned), "partitions": assigned,
             "rebalancing": bool(getattr(app, "rebalancing", False))}
    es = await ping_elasticsearch(settings.es_url, **settings.es_client_options()) if with_index else {"ok": True, "checked": False}
    tables = table_recovery(app)
    ok = kafka["ok"] and es["ok"] and tables["completed"]
    return {"status": "ok" if ok else "degraded", "worker": settings.worker_id, "app_id": settings.app_id,
            "kafka": kafka, "elasticsearch": es, "tables": tables}


# --------------------------------------------------------------------------- JSON logs
class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC ISO), level, logger, message, pid, and exc when present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        extra = getattr(record, "pingan", None)
        if isinstance(extra, Mapping):
            out.update(extra)
        return json.dumps(out, ensure_ascii=False, default=str)


def json_logging_config(loglevel: str = "warning") -> dict[str, Any]:
    """A `logging.config.dictConfig` dict that sends everything to stderr as JSON lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": loglevel.upper()},
    }
