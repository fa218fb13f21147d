"""Bulk sink of incident records into Elasticsearch (explicit lifecycle, never loses data).

Contract:
- ``setup()`` checks that the target (alias or index) exists; ``add(incident)`` buffers (the
  latest record per incident id wins; returns True when the batch is full; the document is built
  at flush, so a record superseded in the same batch costs no document); ``flush()`` sends
  the buffer with ``async_streaming_bulk`` (``raise_on_error=False``) and returns a `SinkResult`
  only when every document is settled: indexed/deleted, stale (409: the index already holds a
  newer version), or dead-lettered; ``stop()`` flushes what is left.
- Retriable failures (HTTP 429, 5xx, connection errors, timeouts) are retried, only the failed
  documents, with capped exponential backoff (``initial_backoff · 2^(n-1)``, at most
  ``max_backoff``) for as long as it takes — an outage means backlog, never loss — unless
  ``max_flush_attempts`` is set, in which case `SinkUnavailable` is raised and the buffer is kept.
  The caller commits its offsets only after ``flush()`` returns.
- Non-retriable rejections (400 mapper_parsing_exception, …) and records that cannot become a
  document become ``pingan.DeadLetter`` records (`schemas.deadletter.make_dead_letter`, source
  ``incidents``, stage ``index``, raw = the record as JSON) in `SinkResult.dead_letters`.
"""
from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_streaming_bulk

from connectors.elasticsearch.documents import DocumentError, incident_action
from schemas.deadletter import ErrorClass, classify, make_dead_letter

log = logging.getLogger(__name__)

DEAD_LETTER_SOURCE = "incidents"
DEAD_LETTER_STAGE = "index"


class SinkUnavailable(RuntimeError):
    """Elasticsearch stayed unavailable for ``max_flush_attempts`` rounds; nothing was lost."""


class SinkError(RuntimeError):
    """The sink cannot start (e.g. the target alias/index does not exist)."""


class Outcome(str, enum.Enum):
    """What one bulk item result means for the sink."""

    OK = "ok"
    STALE = "stale"
    RETRY = "retry"
    DEAD = "dead"


def classify_item(op_type: str, info: Mapping[str, Any]) -> Outcome:
    """Classify one per-document bulk result (``info`` is the item under its op type)."""
    status = info.get("status")
    exc = info.get("exception")
    if isinstance(exc, BaseException) and classify(exc) is ErrorClass.RETRIABLE:
        return Outcome.RETRY
    if not isinstance(status, int) or isinstance(status, bool):
        return Outcome.RETRY  # "N/A": connection error / timeout, the request never got an answer
    if 200 <= status < 300:
        return Outcome.OK
    if op_type == "delete" and status == 404:
        return Outcome.OK  # already gone
    if status == 409:
        return Outcome.STALE  # external_gte version conflict: a newer version is indexed
    if status == 429 or status >= 500:
        return Outcome.RETRY
    return Outcome.DEAD


@dataclass(frozen=True, slots=True)
class SinkResult:
    """Outcome of one flush; every added record is in exactly one of the counts."""

    indexed: int = 0
    deleted: int = 0
    stale: int = 0
    dead_letters: tuple[dict[str, Any], ...] = ()
    attempts: int = 0
    retried: int = 0

    @property
    def total(self) -> int:
        return self.indexed + self.deleted + self.stale + len(self.dead_letters)


@dataclass(slots=True)
class _Pending:
    incident: Mapping[str, Any]
    action: dict[str, Any] | None  # built by `flush` (None until then)
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    last_error: str = field(default="")


def _reason(info: Mapping[str, Any]) -> str:
    err = info.get("error")
    if isinstance(err, Mapping):
        text = f"{err.get('type')}: {err.get('reason')}"
        cause = err.get("caused_by")
        if isinstance(cause, Mapping):
            text += f" (caused by {cause.get('type')}: {cause.get('reason')})"
        return text
    return str(err) if err else f"status {info.get('status')}"


class IncidentSink:
    """Buffers incident records and writes them to one alias/index with per-document results."""

    def __init__(
        self,
        client: AsyncElasticsearch,
        index: str,
        *,
        batch_size: int = 500,
        chunk_size: int = 500,
        max_chunk_bytes: int = 20 * 1024 * 1024,
        max_retries: int = 3,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_flush_attempts: int | None = None,
        external_version: bool = True,
        refresh: bool | str = False,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        if batch_size < 1 or chunk_size < 1 or initial_backoff < 0 or max_backoff < initial_backoff:
            raise ValueError("invalid batching/backoff settings")
        self._client = client
        self.index = index
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.max_chunk_bytes = max_chunk_bytes
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_flush_attempts = max_flush_attempts
        self.external_version = external_version
        self.refresh = refresh
        self._sleep = sleep
        self._clock_ms = clock_ms
        self._buffer: dict[str, _Pending] = {}
        self._dead: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    async def setup(self) -> None:
        """Fail fast unless the target alias/index exists (writing to a missing alias would
        auto-create an index with dynamic mappings)."""
        if not await self._client.indices.exists(index=self.index):
            raise SinkError(f"{self.index} does not exist; create it with connectors.elasticsearch.admin")

    def add(self, incident: Mapping[str, Any], *, topic: str | None = None, partition: int | None = None,
            offset: int | None = None) -> bool:
        """Buffer one incident record (latest per id wins); True when a flush is due.

        A record without an ``incident_id`` is dead-lettered at once; any other `DocumentError`
        surfaces at `flush` (in its `SinkResult.dead_letters`), where the document is built."""
        inc_id = incident.get("incident_id")
        if not isinstance(inc_id, str) or not inc_id:
            exc = DocumentError("incident without incident_id")
            self._dead.append(self._dead_letter(incident, exc, "DocumentError", topic, partition, offset))
            return self.pending >= self.batch_size
        self._buffer.pop(inc_id, None)
        self._buffer[inc_id] = _Pending(incident, None, topic, partition, offset)
        return self.pending >= self.batch_size

    def _build(self) -> None:
        """Build the bulk action of every buffered record that has none; a record that cannot
        become a document leaves the buffer as a dead letter."""
        for inc_id, pending in list(self._buffer.items()):
            if pending.action is not None:
                continue
            try:
                pending.action = incident_action(pending.incident, self.index, external_version=self.external_version)
            except DocumentError as exc:
                del self._buffer[inc_id]
                self._dead.append(self._dead_letter(pending.incident, exc, "DocumentError", pending.topic,
                                                    pending.partition, pending.offset))

    @property
    def pending(self) -> int:
        """Records buffered and not yet settled."""
        return len(self._buffer) + len(self._dead)

    def backoff(self, attempt: int) -> float:
        """Delay before retry round `attempt` (1-based): capped exponential."""
        return min(self.max_backoff, self.initial_backoff * (2 ** max(0, attempt - 1)))

    async def flush(self) -> SinkResult:
        """Send everything buffered; returns once every record is settled (see module contract)."""
        async with self._lock:
            self._build()
            counts = {"indexed": 0, "deleted": 0, "stale": 0, "attempts": 0, "retried": 0}
            dead, self._dead = self._dead, []
            try:
                while self._buffer:
                    counts["attempts"] += 1
                    if counts["attempts"] > 1:
                        if self.max_flush_attempts is not None and counts["attempts"] > self.max_flush_attempts:
                            raise SinkUnavailable(
                                f"{len(self._buffer)} document(s) still pending after "
                                f"{counts['attempts'] - 1} attempts: {self._last_errors()}"
                            )
                        delay = self.backoff(counts["attempts"] - 1)
                        log.warning("elasticsearch unavailable for %d document(s) (%s); retry in %.1fs",
                                    len(self._buffer), self._last_errors(), delay)
                        await self._sleep(delay)
                    await self._round(counts, dead)
            except BaseException:
                self._dead = dead + self._dead  # settled dead letters are kept for the next flush
                raise
            return SinkResult(counts["indexed"], counts["deleted"], counts["stale"], tuple(dead),
                              counts["attempts"], counts["retried"])

    async def _round(self, counts: dict[str, int], dead: list[dict[str, Any]]) -> None:
        """One bulk pass over the buffer; settled documents leave the buffer."""
        self._build()  # records added while an earlier round was in flight
        actions = [p.action for p in self._buffer.values() if p.action is not None]
        kwargs: dict[str, Any] = {}
        if self.refresh:
            kwargs["refresh"] = "wait_for" if self.refresh is True else self.refresh
        async for ok, item in async_streaming_bulk(
            self._client, actions,
            chunk_size=self.chunk_size, max_chunk_bytes=self.max_chunk_bytes,
            max_retries=self.max_retries, initial_backoff=self.initial_backoff,
            max_backoff=self.max_backoff, raise_on_error=False, raise_on_exception=False,
            yield_ok=True, **kwargs,
        ):
            op_type, info = next(iter(item.items()))
            doc_id = info.get("_id")
            pending = self._buffer.get(doc_id) if isinstance(doc_id, str) else None
            if pending is None:
                continue  # not one of ours (cannot happen with our own actions)
            outcome = Outcome.OK if ok else classify_item(op_type, info)
            if outcome is Outcome.RETRY:
                pending.last_error = _reason(info)
                counts["retried"] += 1
                continue
            del self._buffer[doc_id]
            if outcome is Outcome.OK:
                counts["deleted" if op_type == "delete" else "indexed"] += 1
            elif outcome is Outcome.STALE:
                counts["stale"] += 1
            else:
                err = info.get("error")
                etype = str(err.get("type")) if isinstance(err, Mapping) else f"http_{info.get('status')}"
                dead.append(self._dead_letter(pending.incident, _reason(info), etype,
                                              pending.topic, pending.partition, pending.offset))

    def _last_errors(self) -> str:
        errors = sorted({p.last_error for p in self._buffer.values() if p.last_error})
        return "; ".join(errors[:3])[:500]

    async def stop(self) -> SinkResult:
        """Flush what is left. The client belongs to the caller and is not closed."""
        return await self.flush()

    # -- helpers --------------------------------------------------------------------------------
    def _dead_letter(self, incident: Mapping[str, Any], error: BaseException | str, error_type: str,
                     topic: str | None, partition: int | None, offset: int | None) -> dict[str, Any]:
        raw = json.dumps(incident, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
        return make_dead_letter(
            source=DEAD_LETTER_SOURCE, stage=DEAD_LETTER_STAGE, raw=raw, error=str(error),
            error_type=error_type, topic=topic, partition=partition, offset=offset,
            content_type="application/json", at_ms=self._clock_ms(),
        )
