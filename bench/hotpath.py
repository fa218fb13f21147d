"""Offline profile of the worker's hot path (pyinstrument), to explain the throughput figures.

Usage::

    pingan simulate --out /tmp/sim --seed 1 --days 1 --scale 5 --quiet
    python -m bench.hotpath /tmp/sim [--tables json] [--sink] [--limit N]

Profiles, on pre-encoded raw records (as `bench.throughput_payload` prepares them):

- ``normalize``: what the normalize agent does per message — `NormalizeStage.handle` (Avro decode +
  `Normalizer.normalize`) and encoding the event once per output topic;
- ``correlate``: what the correlate agent does — decode the by-county message and
  `CountyProcessor.process`, encoding every link/incident/escalation it publishes. With
  ``--tables json`` the processor's state mappings serialize every value on write and deserialize
  it on every read, as Faust RocksDB tables do (plus one more serialization for the changelog
  message), instead of plain dicts;
- ``sink`` (``--sink``): `IncidentSink` over the live incidents against the running
  Elasticsearch (a throw-away index, deleted afterwards).

Prints per-phase wall time and rate, then the pyinstrument tree of each phase.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from elasticsearch import AsyncElasticsearch

from bench.throughput_payload import prepare_payload
from connectors.elasticsearch.admin import IndexNames, drop_all, ensure_incident_index
from connectors.elasticsearch.sink import IncidentSink
from connectors.sources.devices import DeviceRegistry
from schemas.serde import default_store
from connectors.sources.registry import normalizer
from streams.domain.pipeline import CountyProcessor, Stores
from streams.settings import Settings
from streams.worker.stages import NormalizeStage, decode_event


class JsonTable(MutableMapping[str, Any]):
    """A dict that stores JSON text, like a Faust RocksDB table (decode on read, encode on write
    for the store and again for the changelog message)."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self.reads = 0
        self.writes = 0
        self.bytes_written = 0

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return json.loads(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        raw = json.dumps(value).encode()
        changelog = json.dumps(value).encode()
        self.bytes_written += len(raw) + len(changelog)
        self._data[key] = raw

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


def main(argv: list[str] | None = None) -> None:
    """Run the phases under pyinstrument and print where the time goes."""
    from pyinstrument import Profiler  # optional (the test extra): only this profile needs it

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--tables", choices=("dict", "json"), default="dict")
    parser.add_argument("--sink", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="only the first N records (0: all)")
    parser.add_argument("--depth", type=int, default=0, help="hide frames below this share (percent, 0: 1%%)")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    payload = prepare_payload(args.folder, settings)
    records = payload.records[: args.limit] if args.limit else payload.records
    store = default_store()
    registry = DeviceRegistry.from_csv(args.folder / "registry.csv")
    stage = NormalizeStage(store, normalizer(settings.person_key(), settings.timezone, registry))
    show = dict(color=False, show_all=False, short_mode=False)

    prof = Profiler(interval=0.0005)
    t0 = time.perf_counter()
    prof.start()
    encoded: list[bytes] = []
    for offset, rec in enumerate(records):
        out = stage.handle(rec.topic, 0, offset, rec.value)
        for event in out.events:
            value = store.encode("pingan.Event", event)
            store.encode("pingan.Event", event)  # the agent encodes once per output topic
            encoded.append(value)
    prof.stop()
    t_norm = time.perf_counter() - t0

    tables: dict[str, Any] = {}
    if args.tables == "json":
        tables = {n: JsonTable() for n in ("candidates", "event_incident", "incidents", "pending", "history")}
    processor = CountyProcessor(Stores(**tables) if tables else None)
    prof2 = Profiler(interval=0.0005)
    t0 = time.perf_counter()
    prof2.start()
    published = 0
    for value in encoded:
        step = processor.process(decode_event(store, value))
        for link in step.links:
            store.encode("pingan.Link", link)
        for inc in step.incidents:
            published += len(store.encode("pingan.Incident", inc))
        for esc in step.escalations:
            store.encode("pingan.Escalation", esc)
    prof2.stop()
    t_corr = time.perf_counter() - t0

    print(f"{len(records)} raw records, {len(encoded)} events, tables={args.tables}")
    print(f"normalize: {t_norm:.2f} s = {len(encoded) / t_norm:,.0f} events/s (profiled)")
    print(f"correlate: {t_corr:.2f} s = {len(encoded) / t_corr:,.0f} events/s (profiled); "
          f"incident records published {published / 1e6:.1f} MB")
    for name, t in tables.items():
        print(f"  table {name}: {t.reads} reads, {t.writes} writes, {t.bytes_written / 1e6:.1f} MB serialized")
    print(prof.output_text(**show))
    print(prof2.output_text(**show))

    if args.sink:
        asyncio.run(_profile_sink(settings, payload.incidents, show))


async def _profile_sink(settings: Settings, incidents: list[dict[str, Any]], show: dict[str, Any]) -> None:
    from pyinstrument import Profiler  # optional, as above

    client = AsyncElasticsearch(settings.es_url, timeout=60)
    names = IndexNames(f"pingan-hotpath-{uuid.uuid4().hex[:8]}")
    try:
        await ensure_incident_index(client, names, settings.es_refresh_interval)
        sink = IncidentSink(client, names.alias, batch_size=settings.sink_batch_size,
                            chunk_size=settings.sink_chunk_size)
        copies = max(1, 10000 // max(1, len(incidents)))
        items = [{**inc, "incident_id": f"{inc['incident_id']}~{k}"} for k in range(copies) for inc in incidents]
        prof = Profiler(interval=0.0005, async_mode="enabled")
        t0 = time.perf_counter()
        prof.start()
        n = 0
        for i, inc in enumerate(items):
            if sink.add(inc, topic="incidents.v1", partition=0, offset=i):
                n += (await sink.flush()).indexed
        n += (await sink.stop()).indexed
        prof.stop()
        dt = time.perf_counter() - t0
        print(f"sink: {n} docs in {dt:.2f} s = {n / dt:,.0f} docs/s (profiled)")
        print(prof.output_text(**show))
    finally:
        await drop_all(client, names)
        await client.close()


if __name__ == "__main__":
    main()
