"""Dead-letter triage: list, show and re-drive records of ``deadletters.v1``.

Contract:
- `read_dead_letters(settings, ...)` reads the whole dead-letter topic (group-less consumer, from the
  beginning to the end offsets captured at the call) and returns `Letter`s (the decoded record plus
  where it sits in the dead-letter topic), filtered by source, stage, reason substring and limit
  (newest last). Undecodable entries are skipped with a warning.
- `redrive(settings, letters, dry_run=...)` re-drives each letter:
  * stages with an origin topic (``normalize``, ``correlate``, ``index``, ``receive``): the raw bytes
    are re-published unchanged to the topic they came from (``letter.topic``), key = the original
    key when it is recoverable (``index``: the incident id; otherwise none), with the header
    ``pingan-redrive-of: <dead_letter_id>``; the consuming stage processes them as new input. For
    the ``index`` stage (raw = the incident as JSON) the record is re-encoded as ``pingan.Incident``.
  * ``translate`` letters (no origin topic: the connector rejected the payload): the source's pure
    translate function is run again on the raw bytes (by source name, see `translate_payload`); its
    records go to their raw topics with the header; if it rejects the payload again, a NEW dead letter
    with ``redrive_of`` = the old id and the new reason is published (same header), so every attempt
    is traceable.
  Returns a `RedriveOutcome` per letter. ``dry_run`` does everything except send.
- Nothing here changes or deletes the original dead letters (the topic is an audit trail).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.ingest.publish import make_producer
from connectors.sources import registry as source_registry
from connectors.sources.common import TranslateResult
from connectors.sources.spec import Payload, SourceContext
from schemas.catalogue import topic as catalogue_topic
from schemas.deadletter import make_dead_letter
from schemas.serde import SchemaStore, default_store
from streams.settings import Settings
from streams.worker.topology import BY_COUNTY, DEAD_LETTERS

log = logging.getLogger(__name__)

DLQ_TOPIC = DEAD_LETTERS
REDRIVE_HEADER = "pingan-redrive-of"
DEAD_LETTER_SCHEMA = "pingan.DeadLetter"


@dataclass(frozen=True)
class Letter:
    """One dead letter and its place in the dead-letter topic."""

    record: Mapping[str, Any]
    dlq_partition: int
    dlq_offset: int
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def id(self) -> str:
        return str(self.record["dead_letter_id"])

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None


def read_dead_letters(settings: Settings, *, source: str | None = None, stage: str | None = None,
                      reason_contains: str | None = None, ids: Iterable[str] | None = None,
                      limit: int | None = None, store: SchemaStore | None = None,
                      timeout_s: float = 30.0) -> list[Letter]:
    """Dead letters matching every given filter (see module contract); `limit` keeps the newest."""
    from kafka import KafkaConsumer, TopicPartition

    store = store or default_store()
    want_ids = set(ids or [])
    topic = settings.topic(DLQ_TOPIC)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                             client_id="pingan-dlq", fetch_max_wait_ms=200, **settings.kafka_client_options())
    out: list[Letter] = []
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        pending = {tp for tp in tps if ends[tp] > consumer.position(tp)}
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    try:
                        _name, rec = store.decode(r.value)
                    except Exception as exc:  # noqa: BLE001 - a corrupt dead letter is reported, not fatal
                        log.warning("undecodable dead letter at %s[%s]@%s: %s", r.topic, r.partition, r.offset, exc)
                        continue
                    if _matches(rec, source, stage, reason_contains, want_ids):
                        headers = tuple((k, bytes(v or b"")) for k, v in (r.headers or []))
                        out.append(Letter(rec, r.partition, r.offset, headers))
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()
    out.sort(key=lambda letter: (letter.record.get("at") or 0, letter.dlq_partition, letter.dlq_offset))
    return out[-limit:] if limit else out


def _matches(rec: Mapping[str, Any], source: str | None, stage: str | None, reason: str | None,
             ids: set[str]) -> bool:
    if ids and rec.get("dead_letter_id") not in ids:
        return False
    if source and rec.get("source") != source:
        return False
    if stage and rec.get("stage") != stage:
        return False
    return not reason or reason.lower() in str(rec.get("reason") or "").lower()


def raw_preview(raw: bytes, max_lines: int = 16) -> dict[str, str]:
    """Hex dump (16 bytes a line, at most `max_lines`) and UTF-8 preview of raw bytes."""
    lines = []
    for i in range(0, min(len(raw), 16 * max_lines), 16):
        chunk = raw[i:i + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{i:08x}  {chunk.hex(' '):<47}  {text}")
    if len(raw) > 16 * max_lines:
        lines.append(f"… {len(raw)} bytes in all")
    return {"hex": "\n".join(lines), "utf8": raw[:2000].decode("utf-8", "replace")}


def original_key(settings: Settings, topic: str, raw: bytes, store: SchemaStore) -> bytes | None:
    """The key the original message had, recomputed from its value by the catalogue (None if unknown).

    Keys matter: correlation state is partitioned by county, raw topics keep per-device order."""
    name = topic[len(settings.topic_prefix):] if topic.startswith(settings.topic_prefix) else topic
    if settings.raw_topic_prefix and topic.startswith(settings.raw_topic_prefix):
        name = topic[len(settings.raw_topic_prefix):]
    try:
        entry = catalogue_topic(name)
        _schema, record = store.decode(raw)
        return entry.key_bytes(record)
    except Exception:  # noqa: BLE001 - undecodable or keyless: no key (the stage dead-letters it again)
        return settings.county_code.encode() if name == BY_COUNTY else None


# --------------------------------------------------------------------------- translate again
def translate_payload(source: str, raw: bytes, content_type: str | None, ctx: SourceContext | None,
                      received_at_ms: int) -> TranslateResult:
    """Run the feed's own translate function (from the source registry) on a rejected payload.

    `source` is the dead letter's source: the feed whose delivery was rejected. ValueError for a
    name the registry does not know."""
    try:
        spec = source_registry.feed(source)
    except KeyError as exc:
        raise ValueError(f"no translate function for source {source!r}") from exc
    return spec.translate(Payload(raw, content_type, received_at_ms), ctx or source_registry.context())


# --------------------------------------------------------------------------- redrive
@dataclass
class RedriveOutcome:
    """What happened to one dead letter."""

    dead_letter_id: str
    action: str  # "republished" | "translated" | "failed-again" | "skipped"
    topics: list[str] = field(default_factory=list)
    records: int = 0
    new_dead_letter_id: str | None = None
    detail: str = ""


def redrive(settings: Settings, letters: Iterable[Letter], *, dry_run: bool = False,
            store: SchemaStore | None = None, producer: Any = None) -> list[RedriveOutcome]:
    """Re-drive dead letters (see module contract); returns one outcome per letter, in order."""
    store = store or default_store()
    own = producer is None and not dry_run
    producer = producer if producer is not None or dry_run else make_producer(settings)
    registry = None
    futures: list[Any] = []
    outcomes: list[RedriveOutcome] = []

    def send(topic: str, key: bytes | None, value: bytes, dl_id: str) -> None:
        if not dry_run:
            futures.append(producer.send(topic, key=key, value=value, headers=[(REDRIVE_HEADER, dl_id.encode())]))

    try:
        for letter in letters:
            rec = letter.record
            dl_id = letter.id
            raw = bytes(rec.get("raw") or b"")
            stage = rec.get("stage")
            if stage == "translate" or not rec.get("topic"):
                if registry is None:
                    registry = source_registry.context_from_settings(settings)
                now = int(time.time() * 1000)
                try:
                    result = translate_payload(str(rec["source"]), raw, rec.get("content_type"), registry, now)
                    problem = "; ".join(r.reason for r in result.rejected) if result.rejected else None
                    error_type = result.rejected[0].error_type if result.rejected else None
                except Exception as exc:  # noqa: BLE001 - a failing re-drive becomes a new dead letter
                    result, problem, error_type = None, f"{type(exc).__name__}: {exc}", type(exc).__name__
                out = RedriveOutcome(dl_id, "translated")
                if result is not None:
                    for r in result.records:
                        topic = settings.topic(result.topic)
                        send(topic, result.key_of(r).encode(), store.encode(result.schema, r), dl_id)
                        out.records += 1
                        if topic not in out.topics:
                            out.topics.append(topic)
                if problem:
                    new = make_dead_letter(source=str(rec["source"]), stage=str(stage or "translate"), raw=raw,
                                           error=problem, error_type=error_type or "error",
                                           content_type=rec.get("content_type"), at_ms=now, redrive_of=dl_id)
                    send(settings.topic(DLQ_TOPIC), str(rec["source"]).encode(), store.encode(DEAD_LETTER_SCHEMA, new),
                         dl_id)
                    out.action = "failed-again" if not out.records else "translated"
                    out.new_dead_letter_id = new["dead_letter_id"]
                    out.detail = problem
                outcomes.append(out)
                continue
            topic = str(rec["topic"])
            key: bytes | None = None
            value = raw
            if stage == "index":
                try:
                    incident = json.loads(raw)
                    value = store.encode("pingan.Incident", incident)
                    key = str(incident.get("incident_id") or "").encode() or None
                except Exception as exc:  # noqa: BLE001 - cannot rebuild the record: report, keep the letter
                    outcomes.append(RedriveOutcome(dl_id, "skipped", detail=f"cannot re-encode: {exc}"))
                    continue
            else:
                key = original_key(settings, topic, raw, store)
            send(topic, key, value, dl_id)
            outcomes.append(RedriveOutcome(dl_id, "republished", [topic], 1))
        if not dry_run and producer is not None:
            producer.flush()
            for f in futures:
                f.get(timeout=60)
    finally:
        if own:
            producer.close()
    return outcomes
