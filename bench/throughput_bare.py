"""The bare baselines of `bench.throughput`: the worker's work without the framework.

Each does the same work as the project component it is compared with, with the project's own
pure code and plain clients:

- `BareNormalize` (B1, and the first half of B3): per raw message, `NormalizeStage.handle` (Avro
  decode + the worker's normalizer) → encode ``pingan.Event`` → ``events.v1`` (key event_id) and
  the by-county topic (key county code); lifecycle inputs forwarded, dead letters to
  ``deadletters.v1`` (key source) — exactly what the normalize agent publishes.
- `BareCorrelate` (the second half of B3): the by-county Event decoded → the worker's
  `CountyProcessor` over in-memory dicts → ``links.v1``, ``incidents.v1`` (latest record per
  incident per batch, member ids capped as the worker publishes them), ``escalations.v1``,
  ``incident-members.v1`` → bulk of `incident_actions` into the templated index.
- `incident_actions`: bulk actions built from incident records with `incident_document` and the
  sink's external versioning (index a live incident at its version, delete a merged id) — B2 and B3.
- `pure_pass` (the framework-tax baseline): raw Avro records → `NormalizeStage` →
  `CountyProcessor` → `incident_document` of each batch's latest incidents, no I/O.

Subprocess roles (``python -m bench.throughput_bare ROLE``, internal): ``b1``, ``b3`` (settings
from the environment, like the worker) and ``normalize_worker`` (the real Faust app with only the
normalize agent). They consume in batches (`getmany`), await every producer ack and commit once
per batch, and stop on SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from elasticsearch.helpers import async_streaming_bulk

from bench.throughput_payload import RawRecord
from connectors.elasticsearch.admin import IndexNames
from connectors.elasticsearch.client import async_client
from connectors.elasticsearch.documents import incident_document
from connectors.sources.devices import DeviceRegistry
from schemas.serde import default_store
from streams.domain.incidents import published
from streams.settings import Settings
from streams.worker.app import county_processor, load_registry, normalize_stage
from streams.worker.runtime import tune_gc
from streams.worker.stages import EVENT_SCHEMA, RAW_SOURCES, correlate_record
from streams.worker.topology import BY_COUNTY, DEAD_LETTERS, ESCALATIONS, EVENTS, INCIDENT_MEMBERS, INCIDENTS, LINKS

BATCH = 1000  # records per getmany


def incident_actions(incidents: Iterable[Mapping[str, Any]], index: str) -> Iterator[dict[str, Any]]:
    """Bulk actions as the sink builds them: a live incident's `incident_document` indexed at its
    version (``external_gte``), a merged id deleted."""
    for inc in incidents:
        if inc.get("status") == "merged":
            yield {"_op_type": "delete", "_index": index, "_id": inc["incident_id"]}
            continue
        doc_id, doc = incident_document(inc)
        yield {"_op_type": "index", "_index": index, "_id": doc_id, "_source": doc,
               "version": int(inc["version"]), "version_type": "external_gte"}


async def bulk(client: Any, actions: Iterable[dict[str, Any]], chunk_size: int) -> int:
    """`async_streaming_bulk`; returns the documents written. A 404 on delete (never indexed) and a
    409 (a newer version is there) are settled; anything else fails the run."""
    written = 0
    async for ok, item in async_streaming_bulk(client, actions, chunk_size=chunk_size, max_retries=3,
                                               raise_on_error=False, raise_on_exception=True):
        op, info = next(iter(item.items()))
        if ok:
            written += 1
        elif not (info.get("status") == 409 or (op == "delete" and info.get("status") == 404)):
            raise RuntimeError(f"bulk {op} of {info.get('_id')} failed: {info.get('status')} {info.get('error')}")
    return written


# ------------------------------------------------------------------------------------------
# the bare loops


class BareNormalize:
    """The normalize agent's work per message, published with a plain aiokafka producer."""

    def __init__(self, settings: Settings, producer: Any) -> None:
        self.settings = settings
        self.store = default_store()
        self.stage = normalize_stage(settings, self.store, load_registry(settings), settings.raw_topic_prefix)
        self.producer = producer
        self.events_t, self.county_t, self.dead_t = (settings.topic(t) for t in (EVENTS, BY_COUNTY, DEAD_LETTERS))

    async def handle(self, msgs: Sequence[Any]) -> tuple[list[Any], list[bytes]]:
        """(producer futures, the by-county values written) for one batch."""
        send, futures, by_county = self.producer.send, [], []
        for m in msgs:
            out = self.stage.handle(m.topic, m.partition, m.offset, m.value)
            for county, value in out.forward:
                futures.append(await send(self.county_t, value, key=county.encode()))
                by_county.append(value)
            for event in out.events:
                value = self.store.encode(EVENT_SCHEMA, event)
                county = (event.get("location") or {}).get("county_code") or self.settings.county_code
                futures.append(await send(self.events_t, value, key=event["event_id"].encode()))
                futures.append(await send(self.county_t, value, key=county.encode()))
                by_county.append(value)
            for record in out.dead_letters:
                futures.append(await send(self.dead_t, self.stage.encode_dead_letter(record),
                                          key=str(record["source"]).encode()))
        return futures, by_county


class BareCorrelate:
    """The correlate and index agents' work per batch, with dict stores and a plain ES client."""

    def __init__(self, settings: Settings, producer: Any, client: Any) -> None:
        self.settings = settings
        self.store = default_store()
        self.processor = county_processor(settings)
        self.producer = producer
        self.client = client
        self.index = IndexNames(settings.es_index_prefix).alias
        self.links_t, self.incidents_t, self.escalations_t, self.members_t = (
            settings.topic(t) for t in (LINKS, INCIDENTS, ESCALATIONS, INCIDENT_MEMBERS))
        self.listed = self.processor.tier_rules.listed_event_ids

    async def handle(self, by_county: Sequence[bytes], futures: list[Any]) -> None:
        """Correlate a batch, publish its outputs, wait for every ack, then bulk its incidents."""
        send, encode = self.producer.send, self.store.encode
        latest: dict[str, dict[str, Any]] = {}
        for value in by_county:
            step = correlate_record(self.processor, self.store, value)
            for link in step.links:
                futures.append(await send(self.links_t, encode("pingan.Link", link), key=link["county_code"].encode()))
            for inc in step.incidents:
                latest[inc["incident_id"]] = inc
            for esc in step.escalations:
                futures.append(await send(self.escalations_t, encode("pingan.Escalation", esc),
                                          key=esc["incident_id"].encode()))
            for member in step.members:
                futures.append(await send(self.members_t, encode("pingan.IncidentMember", member),
                                          key=member["event_id"].encode()))
        for iid, inc in latest.items():
            futures.append(await send(self.incidents_t, encode("pingan.Incident", published(inc, self.listed)),
                                      key=iid.encode()))
        await asyncio.gather(*futures)
        await bulk(self.client, incident_actions(latest.values(), self.index), self.settings.sink_chunk_size)


async def consume_loop(settings: Settings, group: str, handle: Callable[[list[Any]], Awaitable[None]]) -> None:
    """Consume every raw topic in batches; `handle` a batch; commit once per batch; stop on SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    consumer = AIOKafkaConsumer(*(settings.input_topic(t) for t in RAW_SOURCES), bootstrap_servers=settings.kafka_bootstrap,
                                group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=BATCH)
            msgs = [m for part in batches.values() for m in part]
            if msgs:
                await handle(msgs)
                await consumer.commit()
    finally:
        await consumer.stop()


def _producer(settings: Settings) -> AIOKafkaProducer:
    """A producer configured like the worker's (acks=all, idempotent, 5 ms linger, 512 kB batches)."""
    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                            linger_ms=5, max_batch_size=512 * 1024)


async def run_b1(group: str) -> None:
    settings = Settings.from_env()
    producer = _producer(settings)
    await producer.start()
    normalize = BareNormalize(settings, producer)

    async def handle(msgs: list[Any]) -> None:
        futures, _values = await normalize.handle(msgs)
        await asyncio.gather(*futures)

    try:
        await consume_loop(settings, group, handle)
    finally:
        await producer.stop()


async def run_b3(group: str) -> None:
    settings = Settings.from_env()
    producer = _producer(settings)
    client = async_client(settings, timeout=60)
    await producer.start()
    normalize, correlate = BareNormalize(settings, producer), BareCorrelate(settings, producer, client)

    async def handle(msgs: list[Any]) -> None:
        futures, values = await normalize.handle(msgs)
        await correlate.handle(values, futures)

    try:
        await consume_loop(settings, group, handle)
    finally:
        await producer.stop()
        await client.close()


# ------------------------------------------------------------------------------------------
# the pure in-process pipeline (framework-tax baseline)


def pure_pass(records: Sequence[RawRecord], settings: Settings, registry: DeviceRegistry | None) -> tuple[int, float]:
    """One pass of raw records through normalize → correlate → documents, no I/O: (events, seconds).

    A fresh stage and processor (set up outside the timing); incident documents are built for the
    latest record of each incident per ``correlate_batch_size`` events, as the worker coalesces."""
    store = default_store()
    stage = normalize_stage(settings, store, registry)
    processor = county_processor(settings)
    batch = max(1, settings.correlate_batch_size)
    latest: dict[str, dict[str, Any]] = {}
    events = 0
    t0 = time.perf_counter()
    for index, raw in enumerate(records):
        for event in stage.handle(raw.topic, 0, index, raw.value).events:
            events += 1
            for inc in processor.process(event).incidents:
                latest[inc["incident_id"]] = inc
            if events % batch == 0:
                for _ in incident_actions(latest.values(), "pure"):
                    pass
                latest.clear()
    for _ in incident_actions(latest.values(), "pure"):
        pass
    return events, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------
# subprocess roles


def _normalize_worker(loglevel: str) -> None:
    """The real Faust app with only the normalize agent (index agent off, correlate removed)."""
    from faust import Worker

    from streams.worker.app import build_app

    settings = Settings.from_env()
    app = build_app(settings, with_index=False)
    del app.agents["correlate"]
    tune_gc(settings)  # as `pingan worker run` does
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


def main(argv: Sequence[str] | None = None) -> None:
    """Subprocess roles (internal): ``b1 GROUP``, ``b3 GROUP``, ``normalize_worker``."""
    parser = argparse.ArgumentParser(prog="python -m bench.throughput_bare")
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("b1", "b3"):
        sub.add_parser(role).add_argument("group")
    sub.add_parser("normalize_worker").add_argument("--loglevel", default="warning")
    args = parser.parse_args(argv)
    if args.role != "normalize_worker":  # the worker role tunes itself after building its app
        tune_gc(Settings.from_env())  # the worker's interpreter settings (streams/worker/runtime.py)
    if args.role == "b1":
        asyncio.run(run_b1(args.group))
    elif args.role == "b3":
        asyncio.run(run_b3(args.group))
    else:
        _normalize_worker(args.loglevel)


if __name__ == "__main__":
    main()
