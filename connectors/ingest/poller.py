"""110 alarm desk poller: a table or view of call sheets → ``raw.alarm110.v1``, resumable cursor.

Contract
--------
* Where and how: the table or view (``PollerConfig.table``, else the profile's ``table``, default
  ``JJD``; ``schema.name`` reaches another schema) and its cursor — one or more monotonic columns
  (``PollerConfig.cursor``, else the profile's ``cursor``, default ``["GXSJ", "JJDBH"]``): an update
  time, an integer id, a (time, id) pair, or SQLite's ``rowid``. Any SQLAlchemy URL (SQLite,
  PostgreSQL, …); tables and views are both found by reflection, names matched case-insensitively.
* Each poll reads up to ``batch_size`` rows strictly after the cursor, ordered by the cursor columns,
  translates them with the profile's aliases (pure ``translate_rows`` of the alarm110 source), sends
  records (key ``jjdbh``) and one dead letter per rejected row (raw = the row as JSON) and awaits
  Kafka's acknowledgement of all of them. Columns no alias names are counted in ``stats["unmapped"]``
  and logged once each.
* Only then is the cursor (the batch's last cursor values) saved to a JSON file by atomic write +
  fsync + rename. A crash between send and save re-sends the batch on restart: at-least-once, with
  the same native ids and therefore the same event ids downstream. The file keeps each value with
  its type (text, integer, number, date-time) so it binds the same way next time; a file written for
  other cursor columns is refused with a one-line error (never silently reused).
* A table/view that is missing, or lacks the cursor or a required column, is a one-line
  `PollerSetupError` naming the table, the columns it has and the profile key to set; ``setup`` and
  ``run`` log it and retry (the other connectors keep running). Database/Kafka outages are retried
  with capped exponential backoff (``run``); anything else propagates.
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
from typing import TYPE_CHECKING, Any, Mapping

from sqlalchemy import Column, MetaData, Table, and_, create_engine, inspect, literal_column, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.types import NullType

from connectors.ingest.base import Source
from connectors.ingest.producer import Item, RecordProducer, encode_key, is_retriable
from connectors.sources.alarm110.spec import RAW_FORMAT_DB, SPEC
from connectors.sources.alarm110.translate import mapping_of
from connectors.sources.alarm110.translate import translate_rows as translate_alarm_rows
from connectors.sources.registry import context as source_context
from connectors.sources.spec import SourceContext
from schemas.deadletter import make_dead_letter

if TYPE_CHECKING:  # pragma: no cover
    from streams.settings import Settings

log = logging.getLogger(__name__)

SOURCE = SPEC.feed


DEFAULT_TABLE = "JJD"
DEFAULT_CURSOR = ("GXSJ", "JJDBH")
#: Pseudo-columns a cursor may name although reflection does not list them (SQLite).
ROWID_NAMES = ("rowid", "_rowid_", "oid")
#: Required record fields → what the error says to set.
REQUIRED_FIELDS = ("jjdbh", "bjsj", "content")


class PollerSetupError(LookupError):
    """The table/view cannot be polled as configured (one line: table, columns found, key to set)."""


def _encode(value: Any) -> dict[str, Any]:
    kind = type(value).__name__
    if isinstance(value, datetime):
        value, kind = value.isoformat(), "datetime"
    elif isinstance(value, date):
        value, kind = value.isoformat(), "date"
    elif isinstance(value, Decimal):
        value, kind = str(value), "decimal"
    elif isinstance(value, bytes):
        value, kind = value.decode("utf-8"), "str"
    elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"unsupported cursor value type {kind}")
    return {"value": value, "type": kind}


_DECODE: dict[str, Any] = {
    "datetime": datetime.fromisoformat, "date": date.fromisoformat, "decimal": Decimal,
    "int": int, "float": float, "str": str,
}


class Cursor:
    """Position after the last delivered row: the cursor columns' values (and, when known, names).
    Two cursors are equal when their values are."""

    __slots__ = ("values", "columns")

    def __init__(self, *values: Any, columns: tuple[str, ...] = ()) -> None:
        self.values = tuple(values)
        self.columns = tuple(columns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cursor) and self.values == other.values

    def __hash__(self) -> int:
        return hash(self.values)

    def __repr__(self) -> str:
        cols = f", columns={self.columns!r}" if self.columns else ""
        return f"Cursor({', '.join(repr(v) for v in self.values)}{cols})"

    def to_json(self) -> dict[str, Any]:
        """JSON form with each value's type kept."""
        return {"columns": list(self.columns), "values": [_encode(v) for v in self.values]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Cursor":
        """Inverse of :meth:`to_json`; also reads the earlier ``{gxsj, gxsj_type, jjdbh}`` form."""
        if "values" in data:
            values = [_DECODE[v["type"]](v["value"]) for v in data["values"]]
            return cls(*values, columns=tuple(str(c) for c in data.get("columns", ())))
        return cls(_DECODE[data["gxsj_type"]](data["gxsj"]), str(data["jjdbh"]), columns=DEFAULT_CURSOR)


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
    table: str | None = None  # None or "JJD": the profile's ``table`` (default JJD)
    cursor: tuple[str, ...] | None = None  # None: the profile's ``cursor`` (default GXSJ, JJDBH)
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
    """Incremental call-sheet poller (see module contract)."""

    name = "alarm110-poller"

    def __init__(self, settings: "Settings", producer: RecordProducer, config: PollerConfig, *,
                 cursor_store: CursorStore | None = None, engine: Engine | None = None,
                 context: SourceContext | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.context = context if context is not None else source_context(profile_dir=settings.profile_dir)
        self.profile = self.context.profile(SOURCE)
        self.producer = producer
        self.config = config
        # the CLI options default to JJD: that default counts as unset, so the profile's table applies
        self.table_name = config.table if config.table not in (None, DEFAULT_TABLE) \
            else str(self.profile.get("table") or DEFAULT_TABLE)
        cursor = config.cursor if config.cursor is not None else self.profile.get("cursor", list(DEFAULT_CURSOR))
        self.cursor_names: tuple[str, ...] = (cursor,) if isinstance(cursor, str) else tuple(str(c) for c in cursor)
        self.cursor_store = cursor_store or CursorStore(
            config.cursor_path or Path(settings.run_dir) / "cursors" / "alarm110.json")
        self._engine = engine
        self._table: Table | None = None
        self.setup_error: str | None = None  # why the table is not usable yet (None: ready)
        self._cursor_cols: list[ColumnElement[Any]] = []
        self._cursor_keys: list[str] = []  # the row keys of the cursor values
        self._pseudo: list[str] = []  # keys of pseudo-columns (rowid) removed before translating
        self.cursor: Cursor | None = None
        self.stats: dict[str, Any] = {"rows": 0, "records": 0, "dead_letters": 0, "batches": 0, "retries": 0,
                                      "unmapped": {}}

    def _where(self) -> str:
        return f"{self.table_name!r} at {self._engine.url.render_as_string(hide_password=True)}" \
            if self._engine is not None else repr(self.table_name)

    async def setup(self) -> None:
        """Create the engine, find the table or view and its columns, load the cursor."""
        if self._engine is None:
            self._engine = create_engine(self.config.url, pool_pre_ping=True)
        try:
            self.cursor = self.cursor_store.load()
            await asyncio.to_thread(self._reflect)
            self._check_cursor_file()
        except Exception as exc:  # noqa: BLE001 - a missing table/database must not stop the receivers
            self.setup_error = str(exc) if isinstance(exc, PollerSetupError) \
                else f"alarm110 poller not ready: {type(exc).__name__}: {exc}"
            self.stats["setup_errors"] = self.stats.get("setup_errors", 0) + 1
            log.error("%s (the other connectors keep running; retrying)", self.setup_error)

    def _check_cursor_file(self) -> None:
        saved = self.cursor
        if saved is None or not saved.columns:
            return
        want = [c.lower() for c in self.cursor_columns]
        if [c.lower() for c in saved.columns] != want or len(saved.values) != len(want):
            self._table = None
            raise PollerSetupError(
                f"alarm110 poller: cursor file {self.cursor_store.path} holds a position on "
                f"({', '.join(saved.columns)}) but the cursor is now ({', '.join(self.cursor_columns)}); move the "
                f"file away to start from the beginning, or set cursor back in the profile (alarm110.toml)")

    def _reflect(self) -> None:
        assert self._engine is not None
        insp = inspect(self._engine)
        schema, _, bare = self.table_name.rpartition(".")
        schema_arg = schema or None
        names = {n.lower(): n for n in insp.get_table_names(schema=schema_arg)}
        try:
            views = insp.get_view_names(schema=schema_arg)
        except NotImplementedError:  # pragma: no cover - dialects without views
            views = []
        for n in views:
            names.setdefault(n.lower(), n)
        table_name = names.get(bare.lower())
        if table_name is None:
            known = ", ".join(sorted(names.values())[:20]) or "none"
            raise PollerSetupError(
                f"alarm110 poller: table or view {self.table_name!r} not found at "
                f"{self._engine.url.render_as_string(hide_password=True)} (tables/views there: {known}); "
                f"set table = \"…\" in the profile (alarm110.toml) or --alarm110-table")
        columns = [c["name"] for c in insp.get_columns(table_name, schema=schema_arg)]
        # NullType: values and binds pass through the driver untouched (no dialect re-formatting)
        table = Table(table_name, MetaData(), *(Column(c, NullType()) for c in columns), schema=schema_arg)
        by_lower = {c.lower(): table.c[c] for c in columns}
        found = ", ".join(columns) or "none"
        where = f"{'view' if table_name in views else 'table'} {table_name}"
        missing_cursor = [c for c in self.cursor_names
                          if c.lower() not in by_lower
                          and not (c.lower() in ROWID_NAMES and self._engine.dialect.name == "sqlite"
                                   and table_name not in views)]
        if missing_cursor or not self.cursor_names:
            raise PollerSetupError(
                f"alarm110 poller: {where} has no cursor column {', '.join(missing_cursor) or '(none set)'} "
                f"(columns: {found}); set cursor = [\"<monotonic column>\", …] in the profile (alarm110.toml), "
                f"e.g. an update time, an integer id, or rowid on SQLite tables")
        m = mapping_of(self.profile)
        for field in REQUIRED_FIELDS:
            if not any(a.lower() in by_lower for a in m.aliases[field]):
                raise PollerSetupError(
                    f"alarm110 poller: {where} has no {field} column (tried {', '.join(m.aliases[field])}; "
                    f"columns: {found}); add its name to aliases.{field} in the profile (alarm110.toml)")
        exprs: list[ColumnElement[Any]] = []
        keys: list[str] = []
        pseudo: list[str] = []
        for name in self.cursor_names:
            if name.lower() in by_lower:
                exprs.append(by_lower[name.lower()])
                keys.append(by_lower[name.lower()].name)
            else:  # SQLite rowid pseudo-column: selected under a label, removed before translating
                exprs.append(literal_column(name.lower()))
                keys.append(f"__pingan_{name.lower()}")
                pseudo.append(keys[-1])
        self._table, self._cursor_cols, self._cursor_keys, self._pseudo = table, exprs, keys, pseudo

    def fetch(self, cursor: Cursor | None) -> list[dict[str, Any]]:
        """Rows after ``cursor`` in cursor order (blocking; run in a thread)."""
        assert self._engine is not None
        if self._table is None:
            raise PollerSetupError(self.setup_error or "alarm110 poller: setup() first")
        exprs = self._cursor_cols
        extra = [e.label(k) for e, k in zip(exprs, self._cursor_keys) if k in self._pseudo]
        stmt = select(self._table, *extra)
        if cursor is not None:
            if len(cursor.values) != len(exprs):
                raise PollerSetupError(f"alarm110 poller: saved cursor {cursor!r} does not fit the cursor columns "
                                       f"({', '.join(self.cursor_names)})")
            clauses = []
            for i, expr in enumerate(exprs):
                equal = [exprs[j] == cursor.values[j] for j in range(i)]
                clauses.append(and_(*equal, expr > cursor.values[i]))
            stmt = stmt.where(or_(*clauses))
        stmt = stmt.order_by(*exprs).limit(self.config.batch_size)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    @property
    def cursor_columns(self) -> tuple[str, ...]:
        """The cursor's columns as the table spells them (``rowid`` as configured)."""
        return tuple(n if k in self._pseudo else k for n, k in zip(self.cursor_names, self._cursor_keys))

    def _cursor_of(self, row: dict[str, Any]) -> Cursor:
        return Cursor(*(row[k] for k in self._cursor_keys), columns=self.cursor_columns)

    def _note_unmapped(self, unmapped: Mapping[str, int]) -> None:
        seen: dict[str, int] = self.stats["unmapped"]
        for name, count in unmapped.items():
            if name not in seen:
                log.warning("alarm110 poller: column %s of %s is read by no mapping (add it to an alias or to "
                            "ignore in alarm110.toml)", name, self.table_name)
            seen[name] = seen.get(name, 0) + count

    async def poll_once(self) -> int:
        """One batch: fetch → translate → Kafka (acks) → save cursor. Returns rows processed."""
        rows = await asyncio.to_thread(self.fetch, self.cursor)
        if not rows:
            return 0
        now = time.time_ns() // 1_000_000
        items: list[Item] = []
        dead = 0
        for full_row in rows:
            row = {k: v for k, v in full_row.items() if k not in self._pseudo}
            result = translate_alarm_rows([row], received_at_ms=now, raw_format=RAW_FORMAT_DB,
                                          profile=self.profile, known=self.cursor_columns)
            self._note_unmapped(result.unmapped)
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
                    self._check_cursor_file()
                    self.setup_error = None
                    log.info("alarm110 poller ready: %s, cursor (%s)", self._table,
                             ", ".join(self.cursor_names))
                except Exception as exc:  # noqa: BLE001 - reported in logs and health, retried
                    self.setup_error = str(exc) if isinstance(exc, PollerSetupError) \
                        else f"alarm110 poller not ready: {type(exc).__name__}: {exc}"
                    log.error("%s; retry in %.1fs", self.setup_error, backoff)
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
