"""Dead-letter triage: list, show and re-drive records of ``deadletters.v1``.

Contract:
- `read_dead_letters(settings, ...)` reads the whole dead-letter topic (group-less consumer, from the
  beginning to the end offsets captured at the call) and returns `Letter`s (the decoded record plus
  where it sits in the dead-letter topic), filtered by source, stage, reason substring and limit
  (newest last). Undecodable entries are skipped with a warning.
- `redrive(settings, letters, dry_run=...)` re-drives each letter (its corrected body when `edit_letter`
  recorded one; letters already ``resolved`` are skipped):
  * stages with an origin topic (``normalize``, ``correlate``, ``index``, ``receive``): the raw bytes
    are re-published to the topic they came from (``letter.topic``), key recomputed from the value by
    the catalogue, with the header ``pingan-redrive-of: <dead_letter_id>``; the consuming stage
    processes them as new input → state ``re-driven`` (``failed-again`` when the same payload is
    dead-lettered again afterwards, see `dlq_state.collapse`). ``index`` letters (raw = the incident
    as JSON) are re-encoded as ``pingan.Incident``.
  * ``translate`` letters (no origin topic: the connector rejected the payload): the source's pure
    translate function is run again (device registry and profiles from the same settings as the
    receivers: ``registry_path``, ``profile_dir``); its records go to their raw topics with the header
    → ``resolved``; rejected again → ``failed-again`` with the new reason in the letter's history (no
    second letter with the same id).
  Returns a `RedriveOutcome` per letter; the states go to the journal (streams/ops/dlq_state.py)
  after Kafka confirmed the sends. ``dry_run`` does everything except send and record.
- Nothing here changes or deletes the dead letters in the topic (it is the audit trail).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.ingest.publish import make_producer
from connectors.sources import registry as source_registry
from connectors.sources.common import TranslateResult
from connectors.sources.spec import Payload, SourceContext
from schemas.catalogue import topic as catalogue_topic
from schemas.serde import SchemaStore, default_store
from streams.ops.dlq_state import (Group, Journal, LetterState, PatchError, apply_patch, collapse, entry,
                                    fingerprint)
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
                             client_id="pingan-dlq", fetch_max_wait_ms=200, isolation_level="read_committed",
                             **settings.kafka_client_options())
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


def journal_path(settings: Settings) -> Path:
    """``run_dir/dlq/state-<topic prefix or default>.jsonl``: the namespace's dead-letter state journal."""
    tag = settings.topic_prefix.strip(".") or "default"
    return settings.run_dir / "dlq" / f"state-{tag}.jsonl"


def journal(settings: Settings) -> Journal:
    """The state journal of the settings' namespace (see streams/ops/dlq_state.py)."""
    return Journal(journal_path(settings))


def grouped(letters: Iterable[Letter], states: Mapping[str, LetterState]) -> list[tuple[Letter, Group]]:
    """One entry per failure (oldest letter first, its copies and state), newest failure last."""
    ordered = sorted(letters, key=lambda x: (x.record.get("at") or 0, x.dlq_partition, x.dlq_offset))
    first: dict[str, Letter] = {}
    rows = []
    for x in ordered:
        first.setdefault(x.id, x)
        rec = x.record
        rows.append((x.id, fingerprint(str(rec.get("source")), str(rec.get("stage")), bytes(rec.get("raw") or b"")),
                     int(rec.get("at") or 0), rec.get("redrive_of")))
    return [(first[g.id], g) for g in collapse(rows, states)]


def edit_letter(settings: Settings, letter: Letter, *, patch: Mapping[str, Any] | None = None,
                body: bytes | None = None, content_type: str | None = None,
                store: SchemaStore | None = None) -> bytes:
    """Record a corrected body for `letter` (a merge patch on its current body, or a new body); returns it.

    Raises `PatchError` when the patch does not apply. The dead-letter topic is not changed."""
    store = store or default_store()
    jr = journal(settings)
    current = jr.states().get(letter.id)
    raw = current.body if current is not None and current.body is not None else bytes(letter.record.get("raw") or b"")
    if body is None:
        if patch is None:
            raise PatchError("give a patch or a body")
        body = apply_patch(raw, patch, decode=store.decode, encode=store.encode)
    state = current.state if current is not None and current.state != "resolved" else "new"
    jr.append(entry(letter.id, "edit", state, f"{len(raw)} → {len(body)} bytes", body=body,
                    content_type=content_type))
    return body


def mark_resolved(settings: Settings, letter: Letter, note: str = "") -> None:
    """An operator closes a letter by hand (fixed elsewhere, or not worth re-driving)."""
    journal(settings).append(entry(letter.id, "resolve", "resolved", note or "resolved by an operator"))


def redrive(settings: Settings, letters: Iterable[Letter], *, dry_run: bool = False,
            store: SchemaStore | None = None, producer: Any = None, include_resolved: bool = False,
            record_state: bool = True) -> list[RedriveOutcome]:
    """Re-drive dead letters (see module contract); returns one outcome per letter, in order.

    Letters the journal marks ``resolved`` are skipped unless `include_resolved`; an edited letter is
    re-driven with its corrected body. Each outcome is appended to the journal (not on a dry run)."""
    store = store or default_store()
    jr = journal(settings)
    states = jr.states()
    own = producer is None and not dry_run
    producer = producer if producer is not None or dry_run else make_producer(settings)
    registry = None
    futures: list[Any] = []
    outcomes: list[RedriveOutcome] = []
    log_entries: list[dict[str, Any]] = []

    def send(topic: str, key: bytes | None, value: bytes, dl_id: str) -> None:
        if not dry_run:
            futures.append(producer.send(topic, key=key, value=value, headers=[(REDRIVE_HEADER, dl_id.encode())]))

    try:
        for letter in letters:
            rec = letter.record
            dl_id = letter.id
            st = states.get(dl_id)
            if st is not None and st.state == "resolved" and not include_resolved:
                outcomes.append(RedriveOutcome(dl_id, "skipped", detail="already resolved"))
                continue
            edited = st is not None and st.body is not None
            raw = st.body if edited and st is not None and st.body is not None else bytes(rec.get("raw") or b"")
            content_type = (st.content_type if st is not None and st.content_type else None) or rec.get("content_type")
            stage = rec.get("stage")
            note = " (edited body)" if edited else ""
            if stage == "translate" or not rec.get("topic"):
                if registry is None:
                    registry = source_registry.context_from_settings(settings)
                now = int(time.time() * 1000)
                try:
                    result = translate_payload(str(rec["source"]), raw, content_type, registry, now)
                    problem = "; ".join(r.reason for r in result.rejected) if result.rejected else None
                except Exception as exc:  # noqa: BLE001 - a failing re-drive is recorded, not raised
                    result, problem = None, f"{type(exc).__name__}: {exc}"
                out = RedriveOutcome(dl_id, "translated")
                if result is not None:
                    for r in result.records:
                        topic = settings.topic(result.topic)
                        send(topic, result.key_of(r).encode(), store.encode(result.schema, r), dl_id)
                        out.records += 1
                        if topic not in out.topics:
                            out.topics.append(topic)
                if problem:
                    out.action = "failed-again" if not out.records else "translated"
                    out.detail = problem
                state = "resolved" if not problem else ("failed-again" if not out.records else "re-driven")
                log_entries.append(entry(dl_id, "redrive", state, (problem or f"{out.records} record(s) → "
                                                                   f"{', '.join(out.topics) or '-'}") + note))
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
            log_entries.append(entry(dl_id, "redrive", "re-driven", f"republished to {topic}{note}"))
            outcomes.append(RedriveOutcome(dl_id, "republished", [topic], 1))
        if not dry_run and producer is not None:
            producer.flush()
            for f in futures:
                f.get(timeout=60)
            if record_state and log_entries:
                jr.append(*log_entries)  # only what Kafka confirmed
    finally:
        if own:
            producer.close()
    return outcomes
