"""Error classification and dead-letter records (pure: imports no Kafka or Elasticsearch code).

Contract:
- ``classify(exc)``:
  FATAL — ``MemoryError``, ``SystemExit``, ``KeyboardInterrupt``, ``AssertionError``,
  ``GeneratorExit`` and ``asyncio.CancelledError`` (these must propagate, never be dead-lettered);
  RETRIABLE — ``ConnectionError``, ``TimeoutError`` (= ``asyncio.TimeoutError``), any exception with a
  true ``retriable`` attribute (kafka-python / aiokafka errors), classes named (anywhere in the MRO)
  ``KafkaTimeoutError``, ``KafkaConnectionError``, ``NotLeaderForPartitionError``, ``ConnectionError``,
  ``ConnectionTimeout`` (elasticsearch), and ``TransportError``/``ApiError`` whose HTTP status is 429 or
  >= 500; DEAD_LETTER — everything else (bad input, 4xx, serialization errors).
- ``make_dead_letter(...)`` returns a ``pingan.DeadLetter`` record dict. Its id is
  ``sha1(source | stage | raw | topic | partition | offset)`` as hex (40 chars), where each part is
  UTF-8 text (``raw`` is the bytes themselves), ``None`` is the empty string, and ``|`` is the byte 0x7C.
  The same input at the same place therefore always yields the same id.
- ``truncate_raw(record, keep=..., ref=...)``: a dead letter too large for Kafka keeps the first
  ``keep`` bytes of ``raw``; its ``reason`` ends with ``[raw truncated: kept K of N bytes;
  sha256=<hex of the whole raw>; whole body: <ref | not kept>]`` (``truncation_of`` reads it back);
  ``dead_letter_id`` stays the one of the whole raw.
- ``DeadLetterCounter`` counts records per ``(source, error_class)`` in the instance only.
"""
from __future__ import annotations

import asyncio
import enum
import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

MAX_REASON_CHARS = 4000


class ErrorClass(str, enum.Enum):
    """How a failure is handled: retry with backoff, dead-letter and go on, or stop."""

    RETRIABLE = "retriable"
    DEAD_LETTER = "dead_letter"
    FATAL = "fatal"


_FATAL: tuple[type[BaseException], ...] = (
    MemoryError, SystemExit, KeyboardInterrupt, AssertionError, GeneratorExit, asyncio.CancelledError,
)
_RETRIABLE_TYPES: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, asyncio.TimeoutError)
_RETRIABLE_NAMES = frozenset({
    "KafkaTimeoutError", "KafkaConnectionError", "NotLeaderForPartitionError",
    "ConnectionError", "ConnectionTimeout",  # elasticsearch (not builtins subclasses)
})
_HTTP_ERROR_NAMES = frozenset({"TransportError", "ApiError"})


def _mro_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an (elasticsearch-style) error carries, if any."""
    for candidate in (
        getattr(exc, "status_code", None),
        getattr(exc, "status", None),
        getattr(getattr(exc, "meta", None), "status", None),
    ):
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            return candidate
    return None


def classify(exc: BaseException) -> ErrorClass:
    """Classify an exception (see the module contract)."""
    if isinstance(exc, _FATAL):
        return ErrorClass.FATAL
    if isinstance(exc, _RETRIABLE_TYPES):
        return ErrorClass.RETRIABLE
    if getattr(exc, "retriable", False) is True:
        return ErrorClass.RETRIABLE
    names = _mro_names(exc)
    if names & _RETRIABLE_NAMES:
        return ErrorClass.RETRIABLE
    if names & _HTTP_ERROR_NAMES:
        status = http_status(exc)
        if status is not None and (status == 429 or status >= 500):
            return ErrorClass.RETRIABLE
    return ErrorClass.DEAD_LETTER


def dead_letter_id(
    source: str, stage: str, raw: bytes, topic: str | None, partition: int | None, offset: int | None
) -> str:
    """``sha1(source|stage|raw|topic|partition|offset)`` hex; ``None`` parts are empty."""
    def text(value: object) -> bytes:
        return b"" if value is None else str(value).encode("utf-8")

    h = hashlib.sha1()
    h.update(b"|".join([text(source), text(stage), bytes(raw), text(topic), text(partition), text(offset)]))
    return h.hexdigest()


def make_dead_letter(
    *,
    source: str,
    stage: str,
    raw: bytes,
    error: BaseException | str,
    error_type: str | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    content_type: str | None = None,
    at_ms: int,
    redrive_of: str | None = None,
) -> dict[str, Any]:
    """A ``pingan.DeadLetter`` record for a failed input.

    ``error`` is the exception (its class gives ``error_class`` via ``classify`` and, unless
    ``error_type`` is given, ``error_type`` = class name; ``reason`` = its message) or a reason text
    (``error_class`` = dead_letter, ``error_type`` defaults to ``"error"``). ``raw`` must be bytes-like.
    """
    if not source or not stage:
        raise ValueError("source and stage are required")
    if isinstance(raw, str) or not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"raw must be bytes, got {type(raw).__name__}")
    raw_b = bytes(raw)
    if isinstance(error, BaseException):
        err_class = classify(error)
        etype = error_type or type(error).__name__
        reason = str(error) or repr(error)
    else:
        err_class = ErrorClass.DEAD_LETTER
        etype = error_type or "error"
        reason = str(error)
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return {
        "dead_letter_id": dead_letter_id(source, stage, raw_b, topic, partition, offset),
        "source": source,
        "stage": stage,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "error_class": err_class.value,
        "error_type": etype,
        "reason": reason,
        "raw": raw_b,
        "content_type": content_type,
        "at": int(at_ms),
        "redrive_of": redrive_of,
    }


_TRUNCATED = re.compile(
    r"\[raw truncated: kept (?P<kept>\d+) of (?P<size>\d+) bytes; sha256=(?P<sha256>[0-9a-f]{64}); "
    r"whole body: (?P<ref>[^\]]*)\]$")
NOT_KEPT = "not kept"


def truncate_raw(record: Mapping[str, Any], *, keep: int, ref: str | None) -> dict[str, Any]:
    """A copy of the DeadLetter dict ``record`` whose ``raw`` is cut to its first ``keep`` bytes.

    The reason gains ``[raw truncated: kept K of N bytes; sha256=…; whole body: <ref>]`` (``ref``:
    where the whole body is kept, None: ``not kept``); the id is unchanged (it hashes the whole raw)."""
    raw = bytes(record["raw"])
    keep = max(0, min(keep, len(raw)))
    note = (f"[raw truncated: kept {keep} of {len(raw)} bytes; sha256={hashlib.sha256(raw).hexdigest()}; "
            f"whole body: {ref or NOT_KEPT}]")
    reason = str(record["reason"])
    room = MAX_REASON_CHARS - len(note) - 1
    if len(reason) > room:
        reason = reason[: max(0, room - 1)] + "…"
    return {**record, "raw": raw[:keep], "reason": f"{reason} {note}"}


def truncation_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"kept", "size", "sha256", "ref"}`` of a truncated dead letter (``ref`` None when not kept);
    None when ``raw`` is whole."""
    m = _TRUNCATED.search(str(record.get("reason", "")))
    if m is None:
        return None
    ref = m.group("ref")
    return {"kept": int(m.group("kept")), "size": int(m.group("size")), "sha256": m.group("sha256"),
            "ref": None if ref == NOT_KEPT else ref}


class DeadLetterCounter:
    """Counts dead letters per ``(source, error_class)``; state lives in the instance only."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one DeadLetter record."""
        self._counts[(str(record["source"]), str(record["error_class"]))] += 1

    @property
    def total(self) -> int:
        """Number of records counted."""
        return sum(self._counts.values())

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{source: {error_class: count}}``, sorted, a fresh copy."""
        out: dict[str, dict[str, int]] = {}
        for (source, cls), n in sorted(self._counts.items()):
            out.setdefault(source, {})[cls] = n
        return out
