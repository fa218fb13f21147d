"""Stage functions between Kafka bytes and the pure domain: decode, normalize, classify errors.

No Kafka or Faust imports: agents hand these functions message bytes and coordinates and
publish what comes back. Every failure becomes a dead-letter record with its stage and reason
(errors are data); only FATAL errors propagate.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from connectors.sources import registry as source_registry
from schemas.deadletter import ErrorClass, classify, make_dead_letter
from schemas.serde import SchemaStore
from streams.domain.normalize import Normalizer
from streams.domain.pipeline import CountyProcessor, StepOutput

# raw topic (catalogue name) → canonical source name, from the source registry
RAW_SOURCES: Mapping[str, str] = MappingProxyType({s.topic: s.source for s in source_registry.SOURCES})
# writer schema → canonical source name (used when the topic name does not say)
SCHEMA_SOURCES: Mapping[str, str] = MappingProxyType({s.schema: s.source for s in source_registry.SOURCES})
#: the correlate stage's other inputs (catalogue topic → schema): centers' actions and the county
#: clock. The normalize agent passes them on to the by-county topic, keyed by county code.
LIFECYCLE_INPUTS: Mapping[str, str] = MappingProxyType({
    "dispositions.v1": "pingan.Disposition", "clock.v1": "pingan.ClockTick"})
EVENT_SCHEMA = "pingan.Event"
DEAD_LETTER_SCHEMA = "pingan.DeadLetter"


@dataclass
class Outcome:
    """Result of one stage call: encoded outputs and dead letters (records, not yet encoded)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    #: (county code, the message bytes unchanged) for the by-county topic: lifecycle inputs
    forward: list[tuple[str, bytes]] = field(default_factory=list)

    def quality_notes(self) -> list[tuple[str, str]]:
        """(source, field) of every data-quality note on the events (``pingan_events_quality_notes_total``)."""
        return [(str(e.get("source")), str(note.get("field")))
                for e in self.events for note in e.get("quality") or () if isinstance(note, Mapping)]


class RetriableStageError(RuntimeError):
    """Raised so the caller retries the same input (its offset must not be committed)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class NormalizeStage:
    """raw Avro bytes → canonical Event records, or a dead letter."""

    def __init__(self, store: SchemaStore, normalizer: Normalizer, *, topic_prefix: str = "",
                 clock_ms: Callable[[], int] = _now_ms) -> None:
        self.store = store
        self.normalizer = normalizer
        self.prefix = topic_prefix
        self.clock_ms = clock_ms

    def handle(self, topic: str, partition: int | None, offset: int | None, value: bytes | None) -> Outcome:
        """Decode and normalize one raw message."""
        name = topic[len(self.prefix):] if self.prefix and topic.startswith(self.prefix) else topic
        source = RAW_SOURCES.get(name, name)
        try:
            if not value:
                raise ValueError("empty message value")
            schema, record = self.store.decode(value)
            if schema in LIFECYCLE_INPUTS.values():
                county = str(record.get("county_code") or "")
                if len(county) != 6 or not county.isdigit():
                    raise ValueError(f"{schema}: county_code {county!r} is not a 6-digit county code")
                return Outcome(forward=[(county, value)])
            if schema not in SCHEMA_SOURCES:
                raise ValueError(f"{topic}: expected a raw source record, got {schema}")
            source = SCHEMA_SOURCES[schema]
            event = self.normalizer.normalize(source, record, raw_topic=topic, raw_partition=partition,
                                              raw_offset=offset)
            return Outcome(events=[event])
        except Exception as exc:  # noqa: BLE001 - classified below; fatal ones re-raised
            cls = classify(exc)
            if cls is ErrorClass.FATAL:
                raise
            if cls is ErrorClass.RETRIABLE:
                raise RetriableStageError(str(exc)) from exc
            return Outcome(dead_letters=[make_dead_letter(
                source=source, stage="normalize", raw=value or b"", error=exc, topic=topic,
                partition=partition, offset=offset, at_ms=self.clock_ms())])

    def encode_event(self, event: Mapping[str, Any]) -> bytes:
        return self.store.encode(EVENT_SCHEMA, event)

    def encode_dead_letter(self, record: Mapping[str, Any]) -> bytes:
        return self.store.encode(DEAD_LETTER_SCHEMA, record)


def decode_correlate_input(store: SchemaStore, value: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a by-county message: (schema, record) for an Event, Disposition or ClockTick."""
    name, record = store.decode(value)
    if name != EVENT_SCHEMA and name not in LIFECYCLE_INPUTS.values():
        raise ValueError(f"expected {EVENT_SCHEMA} or a lifecycle input, got {name}")
    return name, record


def correlate_record(processor: CountyProcessor, store: SchemaStore, value: bytes) -> StepOutput:
    """A by-county message through the processor: a ClockTick moves the county clock, a
    Disposition is a center's action, an Event is correlated (`decode_correlate_input` errors)."""
    schema, record = decode_correlate_input(store, value)
    if schema == LIFECYCLE_INPUTS["clock.v1"]:
        return processor.tick(record)
    if schema == LIFECYCLE_INPUTS["dispositions.v1"]:
        return processor.apply_disposition(record)
    return processor.process(record)


def decode_event(store: SchemaStore, value: bytes) -> dict[str, Any]:
    """Decode an events topic message; ValueError when it is not a canonical Event."""
    name, record = store.decode(value)
    if name != EVENT_SCHEMA:
        raise ValueError(f"expected {EVENT_SCHEMA}, got {name}")
    return record
