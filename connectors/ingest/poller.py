"""110 alarm desk poller: table ``JJD`` → ``raw.alarm110.v1``, resumable cursor on ``(GXSJ, JJDBH)``.

Contract
--------
* Each poll reads up to ``batch_size`` rows strictly after the cursor, ordered by ``(GXSJ, JJDBH)``,
  translates them (the alarm110 source spec's pure ``translate_rows``), sends records (key ``jjdbh``) and one dead letter per
  bad row (raw = the row as JSON) and awaits Kafka's acknowledgement of all of them.
* Only then is the cursor (the batch's last ``(GXSJ, JJDBH)``) saved to a JSON file by atomic
  write + fsync + rename. A crash between send and save re-sends the batch on restart:
  at-least-once, with the same native ids (``JJDBH``) and therefore the same event ids downstream.
* The table and column names are matched case-insensitively (``JJD`` in Oracle/SQLite, ``jjd`` in
  PostgreSQL). Column values are passed through as the driver returns them; the cursor file keeps the
  GXSJ value with its type (text, integer, number or datetime) so it binds the same way next time.
* Database/Kafka outages are retried with capped exponential backoff (``run``); anything else
  (missing table, bad configuration) propagates.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, MetaData, Table, and_, create_engine, inspect, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.types import NullType

from connectors.ingest.base import Source
from connectors.ingest.producer import Item, RecordProducer, encode_key, is_retriable
from connectors.sources.alarm110.spec import RAW_FORMAT_DB, SPEC
from connectors.sources.registry import context as source_context
from connectors.sources.spec import SourceContext
from schemas.deadletter import make_dead_letter

if TYPE_CHECKING:  # pragma: no cover
    from streams.settings import Settings

log = logging.getLogger(__name__)

SOURCE = SPEC.feed


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the last delivered row."""

    gxsj: Any
    jjdbh: str

    def to_json(self) -> dict[str, Any]:
        """JSON form with the GXSJ type kept."""
        value, kind = self.gxsj, type(self.gxsj).__name__
        if isinstance(value, datetime):
            value, kind = value.isoformat(), "datetime"
        elif isinstance(value, date):
            value, kind = value.isoformat(), "date"
        elif isinstance(value, Decimal):
            value, kind = str(value), "decimal"
        elif isinstance(value, bytes):
            value, kind = value.decode("utf-8"), "str"
        elif not isinstance(value, (str, int, float)):
            raise TypeError(f"unsupported GXSJ type {kind}")
        return {"gxsj": value, "gxsj_type": kind, "jjdbh": self.jjdbh}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Cursor":
        """Inverse of :meth:`to_json`."""
        kind, value = data["gxsj_type"], data["gxsj"]
        parsed: Any = {
            "datetime": datetime.fromisoformat, "date": date.fromisoformat, "decimal": Decimal,
            "int": int, "float": float, "str": str,
        }[kind](value)
        return cls(parsed, str(data["jjdbh"]))


class CursorStore:
    """The cursor file (atomic write+rename, fsync of file and directory)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def load(self) -> Cursor | None:
        """The saved cursor, None before the first delivered batch."""
        if not self.path.exists():
            return None
        return Cursor.from_json(json.loads(self.path.read_text(encoding="utf-8")))

    def save(self, cursor: Cursor) -> None:
        """Durably replace the cursor."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(cursor.to_json(), fh, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class PollerConfig:
    """Where to poll and how fast."""

    url: str
    table: str = "JJD"
    batch_size: int = 500
    interval_s: float = 2.0
    send_timeout_s: float = 30.0
    backoff_max_s: float = 60.0
    cursor_path: Path | None = None  # None: settings.run_dir/cursors/alarm110.json


def is_retriable_db(exc: BaseException) -> bool:
    """Connection-level database failures (worth retrying)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _json_row(row: dict[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, default=str, sort_keys=True).encode("utf-8")


class Alarm110Poller(Source):
    """Incremental JJD poller (see module contract)."""

    name = "alarm110-poller"

    def __init__(self, settings: "Settings", producer: RecordProducer, config: PollerConfig, *,
                 cursor_store: CursorStore | None = None, engine: Engine | None = None,
                 context: SourceContext | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.context = context if context is not None else source_context(profile_dir=settings.profile_dir)
        self.producer = producer
        self.config = config
        self.cursor_store = cursor_store or CursorStore(
            config.cursor_path or Path(settings.run_dir) / "cursors" / "alarm110.json")
        self._engine = engine
        self._table: Table | None = None
        self.setup_error: str | None = None  # why the table is not usable yet (None: ready)
        self._gxsj: Any = None
        self._jjdbh: Any = None
        self.cursor: Cursor | None = None
        self.stats = {"rows": 0, "records": 0, "dead_letters": 0, "batches": 0, "retries": 0}

    async def setup(self) -> None:
        """Create the engine, find the table and its columns, load the cursor."""
        if self._engine is None:
            self._engine = create_engine(self.config.url, pool_pre_ping=True)
        self.cursor = self.cursor_store.load()
        try:
            await asyncio.to_thread(self._reflect)
        except Exception as exc:  # noqa: BLE001 - a missing table/database must not stop the receivers
            self.setup_error = f"{type(exc).__name__}: {exc}"
            self.stats["setup_errors"] = self.stats.get("setup_errors", 0) + 1
            log.error("alarm110 poller not ready (%s); the other connectors keep running, retrying",
                      self.setup_error)

    def _reflect(self) -> None:
        assert self._engine is not None
        insp = inspect(self._engine)
        names = {n.lower(): n for n in insp.get_table_names()}
        table_name = names.get(self.config.table.lower())
        if table_name is None:
            raise LookupError(f"table {self.config.table!r} not found at {self._engine.url!r}")
        columns = [c["name"] for c in insp.get_columns(table_name)]
        # NullType: values and binds pass through the driver untouched (no dialect re-formatting)
        table = Table(table_name, MetaData(), *(Column(c, NullType()) for c in columns))
        by_lower = {c.lower(): table.c[c] for c in columns}
        missing = [c for c in ("gxsj", "jjdbh") if c not in by_lower]
        if missing:
            raise LookupError(f"table {table_name} lacks cursor column(s) {missing}")
        self._table, self._gxsj, self._jjdbh = table, by_lower["gxsj"], by_lower["jjdbh"]

    def fetch(self, cursor: Cursor | None) -> list[dict[str, Any]]:
        """Rows after ``cursor`` in cursor order (blocking; run in a thread)."""
        assert self._engine is not None
        if self._table is None:
            raise LookupError(self.setup_error or "alarm110 poller: setup() first")
        stmt = select(self._table)
        if cursor is not None:
            stmt = stmt.where(or_(self._gxsj > cursor.gxsj,
                                  and_(self._gxsj == cursor.gxsj, self._jjdbh > cursor.jjdbh)))
        stmt = stmt.order_by(self._gxsj, self._jjdbh).limit(self.config.batch_size)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def _cursor_of(self, row: dict[str, Any]) -> Cursor:
        return Cursor(row[self._gxsj.name], str(row[self._jjdbh.name]))

    async def poll_once(self) -> int:
        """One batch: fetch → translate → Kafka (acks) → save cursor. Returns rows processed."""
        rows = await asyncio.to_thread(self.fetch, self.cursor)
        if not rows:
            return 0
        now = time.time_ns() // 1_000_000
        items: list[Item] = []
        dead = 0
        for row in rows:
            result = SPEC.translate_rows([row], now, RAW_FORMAT_DB, self.context)
            for record in result.records:
                try:
                    items.append((self.settings.topic(result.topic), encode_key(result.key_of(record)),
                                  self.producer.encode(result.schema, record)))
                except Exception as exc:  # noqa: BLE001 - schema refusal: dead-lettered like a bad row
                    items.append(self.producer.dead_letter_item(make_dead_letter(
                        source=SOURCE, stage="translate", raw=_json_row(row), error=exc,
                        content_type="application/json", at_ms=now)))
                    dead += 1
            if result.rejected:
                items.append(self.producer.dead_letter_item(make_dead_letter(
                    source=SOURCE, stage="translate", raw=_json_row(row),
                    error="; ".join(r.reason for r in result.rejected),
                    error_type=result.rejected[0].error_type, content_type="application/json", at_ms=now)))
                dead += 1
        dead += await self.producer.deliver(items, source=SOURCE, at_ms=now, timeout=self.config.send_timeout_s)
        new_cursor = self._cursor_of(rows[-1])
        await asyncio.to_thread(self.cursor_store.save, new_cursor)  # only after Kafka confirmed
        self.cursor = new_cursor
        self.stats["rows"] += len(rows)
        self.stats["records"] += len(items) - dead
        self.stats["dead_letters"] += dead
        self.stats["batches"] += 1
        return len(rows)

    async def run(self) -> None:
        """Poll until stopped: immediately again after a full batch, else after ``interval_s``."""
        backoff = 0.5
        while not self.stopping:
            if self._table is None:  # setup could not find the table yet: keep trying, loudly
                try:
                    await asyncio.to_thread(self._reflect)
                    self.setup_error = None
                    log.info("alarm110 poller ready: table %s found", self._table)
                except Exception as exc:  # noqa: BLE001 - reported in logs and health, retried
                    self.setup_error = f"{type(exc).__name__}: {exc}"
                    log.error("alarm110 poller not ready (%s); retry in %.1fs", self.setup_error, backoff)
                    if not await self.sleep(backoff):
                        return
                    backoff = min(backoff * 2, self.config.backoff_max_s)
                    continue
            try:
                n = await self.poll_once()
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - classified: outages back off, the rest propagates
                if not (is_retriable(exc) or is_retriable_db(exc)):
                    raise
                self.stats["retries"] += 1
                log.warning("alarm110 poll failed (%s: %s); retry in %.1fs", type(exc).__name__, exc, backoff)
                if not await self.sleep(backoff):
                    return
                backoff = min(backoff * 2, self.config.backoff_max_s)
                continue
            if n < self.config.batch_size and not await self.sleep(self.config.interval_s):
                return

    async def stop(self) -> None:
        """Stop polling; the engine is disposed."""
        await super().stop()
        if self._engine is not None:
            self._engine.dispose()
