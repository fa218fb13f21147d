"""Export importers: mediation CSV/XLSX files (or a watched folder) → ``raw.mediation.v1``, and 110
call-sheet CSV/XLSX exports → ``raw.alarm110.v1`` (`Alarm110Importer`, end of this module).

Contract
--------
* ``import_file(path)`` reads a CSV (UTF-8/BOM/GBK) or XLSX export, groups rows per case
  (pure ``translate_csv``/``translate_xlsx``), and sends each case keyed by its case number.
* Idempotent by case number: a ledger (JSON, atomic write+rename) remembers a content hash per
  case (``received_at`` excluded); a re-import sends only new or changed cases. The ledger is
  saved only after Kafka confirmed the batch, so a crash re-sends (at-least-once, same key and
  native id ``case_no``).
* Rejected cases/rows become one dead letter per file (source "mediation", stage "translate",
  raw = the file bytes, reason naming the cases and columns).
* ``run()`` (with ``watch_dir``) imports every ``*.csv``/``*.xlsx`` that appears there and moves it
  to ``processed/`` after delivery (``failed/`` when it cannot be read at all).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from connectors.ingest.base import Source
from connectors.ingest.producer import Item, RecordProducer, encode_key, is_retriable
from connectors.sources.alarm110.spec import SPEC as ALARM110
from connectors.sources.alarm110.translate import read_export
from connectors.sources.alarm110.translate import translate_export as translate_alarm110_export
from connectors.sources.mediation.spec import SPEC
from connectors.sources.registry import context as source_context
from connectors.sources.spec import Payload, SourceContext
from schemas.deadletter import make_dead_letter

if TYPE_CHECKING:  # pragma: no cover
    from streams.settings import Settings

log = logging.getLogger(__name__)

SOURCE = SPEC.feed
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_CONTENT_TYPE = "text/csv"
SUFFIXES = (".csv", ".xlsx")


@dataclass(slots=True)
class ImportReport:
    """What one import did."""

    file: str
    cases: int = 0
    sent: int = 0
    unchanged: int = 0
    rejected: list[str] = field(default_factory=list)
    dead_letters: int = 0


def case_hash(record: Mapping[str, Any]) -> str:
    """Content hash of a case record, independent of when it was read."""
    stable = {k: v for k, v in record.items() if k != "received_at"}
    return hashlib.sha256(json.dumps(stable, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


class Ledger:
    """case_no → content hash of what Kafka has confirmed (JSON file, atomic replace)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.cases: dict[str, str] = {}

    def load(self) -> "Ledger":
        """Read the file if present."""
        if self.path.exists():
            self.cases = dict(json.loads(self.path.read_text(encoding="utf-8")))
        return self

    def save(self) -> None:
        """Durably replace the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.cases, fh, ensure_ascii=False, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class MediationImporter(Source):
    """File importer / folder watcher (see module contract)."""

    name = "mediation-importer"

    def __init__(self, settings: "Settings", producer: RecordProducer, *, watch_dir: Path | None = None,
                 interval_s: float = 5.0, ledger_path: Path | None = None, send_timeout_s: float = 30.0,
                 context: SourceContext | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.context = context if context is not None else source_context(profile_dir=settings.profile_dir)
        self.producer = producer
        self.watch_dir = Path(watch_dir) if watch_dir else None
        self.interval_s = interval_s
        self.send_timeout_s = send_timeout_s
        self.ledger = Ledger(ledger_path or Path(settings.run_dir) / "importer" / "mediation-ledger.json")
        self._loaded = False

    async def setup(self) -> None:
        """Load the ledger; create the watched folder's subfolders."""
        self.ledger.load()
        self._loaded = True
        if self.watch_dir is not None:
            for sub in ("processed", "failed"):
                (self.watch_dir / sub).mkdir(parents=True, exist_ok=True)

    async def import_file(self, path: Path | str) -> ImportReport:
        """Import one export file (suffix decides CSV vs XLSX)."""
        path = Path(path)
        data = await asyncio.to_thread(path.read_bytes)
        return await self.import_bytes(data, name=path.name, xlsx=path.suffix.lower() == ".xlsx")

    async def import_bytes(self, data: bytes, *, name: str, xlsx: bool = False) -> ImportReport:
        """Import export bytes; returns what was sent, skipped and rejected."""
        if not self._loaded:
            self.ledger.load()
            self._loaded = True
        now = time.time_ns() // 1_000_000
        ctype = XLSX_CONTENT_TYPE if xlsx else CSV_CONTENT_TYPE
        result = SPEC.translate(Payload(data, ctype, now), self.context)
        report = ImportReport(file=name, cases=len(result.records), rejected=[r.reason for r in result.rejected])
        items: list[Item] = []
        pending: dict[str, str] = {}
        for record in result.records:
            case_no = result.key_of(record)
            digest = case_hash(record)
            if self.ledger.cases.get(case_no) == digest or pending.get(case_no) == digest:
                report.unchanged += 1
                continue
            try:
                value = self.producer.encode(result.schema, record)
            except Exception as exc:  # noqa: BLE001 - a case the schema refuses is dead-lettered
                report.rejected.append(f"{case_no}: {exc}")
                continue
            items.append((self.settings.topic(result.topic), encode_key(case_no), value))
            pending[case_no] = digest
        if report.rejected:
            items.append(self.producer.dead_letter_item(make_dead_letter(
                source=SOURCE, stage="translate", raw=data, error="; ".join(report.rejected),
                error_type=result.rejected[0].error_type if result.rejected else "SchemaViolation",
                content_type=ctype,
                at_ms=now)))
            report.dead_letters = 1
        if items:
            report.dead_letters += await self.producer.deliver(items, source=SOURCE, at_ms=now,
                                                               timeout=self.send_timeout_s)
            self.ledger.cases.update(pending)
            await asyncio.to_thread(self.ledger.save)  # only after Kafka confirmed
        report.sent = len(pending)
        return report

    def pending_files(self) -> list[Path]:
        """Export files waiting in the watched folder, oldest first."""
        if self.watch_dir is None:
            return []
        files = [p for p in self.watch_dir.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    async def run(self) -> None:
        """Watch the folder until stopped (returns at once without ``watch_dir``)."""
        if self.watch_dir is None:
            return
        backoff = 1.0
        while not self.stopping:
            try:
                for path in self.pending_files():
                    report = await self.import_file(path)
                    target = "failed" if report.cases == 0 and report.rejected else "processed"
                    path.replace(self.watch_dir / target / path.name)
                    log.info("mediation import %s: %s", path.name, report)
                backoff = 1.0
            except Exception as exc:  # noqa: BLE001 - Kafka outages back off; anything else propagates
                if not is_retriable(exc):
                    raise
                log.warning("mediation import failed (%s); retry in %.0fs", exc, backoff)
                if not await self.sleep(backoff):
                    return
                backoff = min(backoff * 2, 60.0)
                continue
            if not await self.sleep(self.interval_s):
                return


@dataclass(slots=True)
class Alarm110ImportReport:
    """What one 110 export import did."""

    file: str
    rows: int = 0
    sent: int = 0
    flagged: int = 0  # records accepted with quality flags (a bad optional field kept raw)
    rejected: list[str] = field(default_factory=list)
    dead_letters: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)


class Alarm110Importer:
    """A 110 desk's CSV/XLSX export → ``raw.alarm110.v1`` with the same profile mapping as the poller.

    Contract: every row is translated with the deployment's alarm110 profile (aliases, code names,
    coordinate systems); each record is sent keyed by its call-sheet number, each rejected row (a
    missing/invalid JJDBH, BJSJ or BJNR) becomes one dead letter (source "alarm110", stage
    "translate", raw = the row as JSON, reason naming the row and column); a file that cannot be read
    at all is one dead letter with the file's bytes. Re-importing re-sends (at-least-once): the same
    call-sheet numbers give the same event ids downstream."""

    def __init__(self, settings: "Settings", producer: RecordProducer, *, send_timeout_s: float = 30.0,
                 context: SourceContext | None = None) -> None:
        self.settings = settings
        self.context = context if context is not None else source_context(profile_dir=settings.profile_dir)
        self.producer = producer
        self.send_timeout_s = send_timeout_s

    async def import_file(self, path: Path | str) -> Alarm110ImportReport:
        """Import one export file (CSV or XLSX, by suffix or content)."""
        path = Path(path)
        data = await asyncio.to_thread(path.read_bytes)
        return await self.import_bytes(data, name=path.name)

    async def import_bytes(self, data: bytes, *, name: str) -> Alarm110ImportReport:
        """Import export bytes; returns what was sent, flagged and rejected."""
        now = time.time_ns() // 1_000_000
        profile = self.context.profile(ALARM110.feed)
        result = translate_alarm110_export(data, name, received_at_ms=now, profile=profile)
        report = Alarm110ImportReport(file=name, unmapped=dict(result.unmapped))
        report.rows = len(result.records) + len(result.rejected)
        items: list[Item] = []
        sent = 0
        for record in result.records:
            try:
                value = self.producer.encode(result.schema, record)
            except Exception as exc:  # noqa: BLE001 - a record the schema refuses is dead-lettered
                report.rejected.append(f"{record.get('jjdbh')}: {exc}")
                items.append(self.producer.dead_letter_item(make_dead_letter(
                    source=ALARM110.feed, stage="translate", raw=json.dumps(record, ensure_ascii=False,
                                                                           default=str).encode(),
                    error=exc, content_type="application/json", at_ms=now)))
                continue
            items.append((self.settings.topic(result.topic), encode_key(result.key_of(record)), value))
            sent += 1
            report.flagged += bool(record.get("quality"))
        row_rejects = _rows_by_number(data, name, profile) if result.rejected else {}
        for rej in result.rejected:
            report.rejected.append(rej.reason)
            raw = row_rejects.get(_row_number(rej.reason))
            items.append(self.producer.dead_letter_item(make_dead_letter(
                source=ALARM110.feed, stage="translate",
                raw=json.dumps(raw, ensure_ascii=False, default=str, sort_keys=True).encode() if raw is not None
                else data,
                error=rej.reason, error_type=rej.error_type,
                content_type="application/json" if raw is not None else _content_type(name), at_ms=now)))
        report.dead_letters = len(items) - sent
        if items:
            report.dead_letters += await self.producer.deliver(items, source=ALARM110.feed, at_ms=now,
                                                               timeout=self.send_timeout_s)
        report.sent = sent
        return report


def _content_type(name: str) -> str:
    return XLSX_CONTENT_TYPE if name.lower().endswith(".xlsx") else CSV_CONTENT_TYPE


def _row_number(reason: str) -> int | None:
    head = reason.split(" ", 2)
    return int(head[1]) if len(head) > 1 and head[0] == "row" and head[1].isdigit() else None


def _rows_by_number(data: bytes, name: str, profile: Any) -> dict[int | None, dict[str, Any]]:
    """Row number (1-based, as in the rejection reasons) → the row, for the dead letters' raw."""
    try:
        return {i + 1: row for i, row in enumerate(read_export(data, name, profile))}
    except Exception:  # noqa: BLE001 - an unreadable file is dead-lettered whole
        return {}
