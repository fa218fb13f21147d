"""The throughput benchmark's input and what the pipeline must make of it (see `bench.throughput`).

`prepare(...)` simulates enough days that the slowest-scaling variants (B3 and the whole pipeline,
which need fresh events: a repeated event is a duplicate the pipeline skips) have at least
``min_seconds`` of work, translates and encodes every delivery once into raw single-object Avro
records, and runs them once through the pure code the worker runs (`NormalizeStage` →
`CountyProcessor` with the worker's rules) to know, for any prefix of the records:

- how many events reach ``events.v1`` (`Payload.events_in`),
- which incident ids the index must hold at which version and which merged ids it must not hold
  (`Payload.expected`), from the log of every incident record the processor emitted.

The same pass times the pure stages (`Calibration`); the benchmark sizes its first runs from it.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.ingest.files import iter_deliveries
from connectors.sources.devices import DeviceRegistry
from infra.processes import simulate_folder
from schemas.serde import SchemaStore, default_store
from streams.settings import Settings
from streams.worker.app import county_processor, normalize_stage
from streams.worker.stages import decode_event


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One raw record as produced: catalogue topic name, key, single-object Avro value."""

    topic: str
    key: bytes
    value: bytes
    event_id: str | None  # the event it normalizes to (None: a dead letter)


@dataclass(frozen=True)
class Expected:
    """What the index must hold after a prefix of the records: live id → version, merged ids gone."""

    records: int
    events: int
    live: dict[str, int]
    gone: frozenset[str]
    #: ids (live or gone) whose last change comes from the last records of the prefix: what a
    #: completion check reads first and often (reading every id often loads the node it measures)
    tail: frozenset[str] = frozenset()


@dataclass
class Calibration:
    """Pure-code seconds over the whole payload (single core, in this process)."""

    records: int = 0
    normalize_s: float = 0.0  # NormalizeStage.handle (Avro decode + normalize) + Event encode
    correlate_s: float = 0.0  # Event decode + CountyProcessor.process

    def rate(self, *, correlate: bool) -> float:
        seconds = self.normalize_s + (self.correlate_s if correlate else 0.0)
        return self.records / seconds if seconds > 0 else float("inf")


@dataclass
class Payload:
    """The pre-generated input and what the pipeline must make of it."""

    days: int  # simulated days (0: a folder given as is)
    records: list[RawRecord]
    warmup: RawRecord  # a copy of an early record whose event opens an incident on its own
    warm_incident: str  # that incident's id (the pipeline variants' warm-up check)
    warm_index: int  # the warm-up record's index (B3 and the pipeline read at least the records up to it)
    incidents: list[dict[str, Any]]  # every live incident record at the end (decoded like the index agent)
    changes: list[tuple[int, str, int, bool]]  # (record index, incident id, version, live) per emitted record
    calibration: Calibration
    event_prefix: list[int] = field(default_factory=list)  # events in records[:i] at index i
    folder: Path = Path(".")  # the simulator folder (its registry.csv is the worker's device registry)

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def events(self) -> int:
        return self.event_prefix[-1]

    def events_in(self, n: int) -> int:
        """Events the normalize stage writes for the first `n` records (n may exceed the payload:
        B1 and the normalize agent read the records repeated; normalize does not deduplicate)."""
        whole, part = divmod(n, self.n)
        return whole * self.events + self.event_prefix[part]

    def repeated(self, n: int) -> list[RawRecord]:
        """The first `n` records of the payload repeated."""
        whole, part = divmod(n, self.n)
        return self.records * whole + self.records[:part]

    def expected(self, n: int, *, tail_records: int = 200) -> Expected:
        """The index after the first `n` records (n ≤ len(records)); order-independent (the
        processor gives the same incidents for the same events in any order). ``tail`` holds the
        ids last changed by one of the final `tail_records` records."""
        if not 0 < n <= self.n:
            raise ValueError(f"prefix {n} outside 1..{self.n}")
        last: dict[str, tuple[int, int, bool]] = {}
        for index, iid, version, live in self.changes:
            if index >= n:
                break
            last[iid] = (index, version, live)
        return Expected(n, self.event_prefix[n], {i: v for i, (_x, v, live) in last.items() if live},
                        frozenset(i for i, (_x, _v, live) in last.items() if not live),
                        frozenset(i for i, (x, _v, _l) in last.items() if x >= n - tail_records))


def _translate(folder: Path, settings: Settings) -> tuple[list[RawRecord], DeviceRegistry]:
    """Translate every delivery and encode its records once (event ids filled in later)."""
    store = default_store()
    registry = DeviceRegistry.from_csv(folder / "registry.csv")
    records: list[RawRecord] = []
    for delivery in iter_deliveries(folder, registry, timezone=settings.timezone):
        res = delivery.result
        for rec in res.records:
            records.append(RawRecord(res.topic, res.key_of(rec).encode(), store.encode(res.schema, rec), None))
    if not records:
        raise RuntimeError(f"{folder} holds no records")
    return records, registry


def _evaluate(records: list[RawRecord], settings: Settings, registry: DeviceRegistry, days: int,
              folder: Path) -> Payload:
    """Run the records once through the pure worker code; log every incident record it emits."""
    store = default_store()
    stage = normalize_stage(settings, store, registry)
    processor = county_processor(settings)
    cal = Calibration(records=len(records))
    clock = time.perf_counter
    out_records: list[RawRecord] = []
    prefix = [0]
    changes: list[tuple[int, str, int, bool]] = []
    latest: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(records):
        t0 = clock()
        out = stage.handle(raw.topic, None, None, raw.value)
        encoded = [stage.encode_event(event) for event in out.events]
        t1 = clock()
        event_id = None
        for value in encoded:
            event = decode_event(store, value)  # the worker correlates what it decodes from Kafka
            event_id = event["event_id"]
            for inc in processor.process(event).incidents:
                latest[inc["incident_id"]] = inc
                changes.append((index, inc["incident_id"], int(inc["version"]), inc.get("status") != "merged"))
        cal.normalize_s += t1 - t0
        cal.correlate_s += clock() - t1
        out_records.append(RawRecord(raw.topic, raw.key, raw.value, event_id))
        prefix.append(prefix[-1] + len(encoded))
    live = processor.state.live()
    incidents = [store.decode(store.encode("pingan.Incident", latest[i]))[1] for i in sorted(live)]
    if {i["incident_id"] for i in incidents} != set(live) or not incidents:
        raise RuntimeError("offline incidents do not match the processor's live state")
    warm_index, warm_incident = _warmup(out_records, settings, store, registry)
    return Payload(days, out_records, out_records[warm_index], warm_incident, warm_index, incidents, changes,
                   cal, prefix, folder)


def _warmup(records: Sequence[RawRecord], settings: Settings, store: SchemaStore,
            registry: DeviceRegistry) -> tuple[int, str]:
    """The index of the first record whose event alone opens a live incident, and that incident's id."""
    stage = normalize_stage(settings, store, registry)
    for index, raw in enumerate(records[:5000]):
        if raw.event_id is None:
            continue
        processor = county_processor(settings)
        for event in stage.handle(raw.topic, None, None, raw.value).events:
            live = [i["incident_id"] for i in processor.process(decode_event(store, stage.encode_event(event))).incidents
                    if i.get("status") != "merged"]
            if live:
                return index, live[-1]
    raise RuntimeError("no early record opens an incident on its own (warm-up)")


def prepare_payload(folder: Path, settings: Settings) -> Payload:
    """The payload of one simulator folder (every delivery translated, encoded and evaluated)."""
    records, registry = _translate(folder, settings)
    return _evaluate(records, settings, registry, 0, folder)


def prepare_days(work: Path, settings: Settings, *, seed: int, scale: float, days: int) -> Payload:
    """``pingan simulate --days DAYS`` into ``work/sim-DAYS``, then `prepare_payload`."""
    folder = simulate_folder(work / f"sim-{days}", seed=seed, scale=scale, days=days)
    records, registry = _translate(folder, settings)
    return _evaluate(records, settings, registry, days, folder)


def prepare(work: Path, settings: Settings, *, seed: int, scale: float, min_seconds: float,
            margin: float = 2.0, max_days: int = 90, log: Callable[[str], None] = lambda s: None) -> Payload:
    """Simulate one day, time the pure pipeline on it, then simulate as many days as the pure
    pipeline needs for `min_seconds` × `margin` (B3 and the worker are slower than the pure code,
    so they then run at least `min_seconds` on a prefix of the records; the benchmark simulates
    more days if a run still needs more)."""
    one = prepare_days(work, settings, seed=seed, scale=scale, days=1)
    need = min_seconds * margin * one.calibration.rate(correlate=True)
    days = min(max_days, max(1, math.ceil(need / one.n)))
    log(f"payload: 1 day = {one.n} records; pure pipeline {one.calibration.rate(correlate=True):,.0f} records/s "
        f"→ {days} day(s) for {min_seconds:.0f} s")
    return one if days == 1 else prepare_days(work, settings, seed=seed, scale=scale, days=days)
