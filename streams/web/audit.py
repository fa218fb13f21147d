"""Append-only, hash-chained JSONL audit log of searches, lookups and detail views.

Contract: each line is one JSON object (sorted keys, UTF-8, no spaces) with ``seq`` (1, 2, …),
``at`` (UTC epoch ms), ``user``, ``admin_code`` (the credential's), ``action``, ``filter`` (the
request as the server understood it — never clear identifiers: lookups record only the
pseudonymous keys, free text has long digit runs masked by the caller), ``result_count``,
``status`` and ``prev`` = hex SHA-256 of the previous line's bytes (without its newline; 64 zeros
for the first line). Editing, deleting or reordering any line breaks the chain from there on,
which `verify_chain` reports. Writes are appended with ``O_APPEND`` and fsynced before returning.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _last_line(path: Path) -> bytes | None:
    """The last non-empty line of the file (read backwards), or None."""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        buf = b""
        pos = end
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
            stripped = buf.rstrip(b"\n")
            if b"\n" in stripped:
                return stripped.rsplit(b"\n", 1)[1]
        stripped = buf.rstrip(b"\n")
        return stripped or None


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """Result of `verify_chain`: ok, lines checked, first bad line number (1-based) and why."""

    ok: bool
    lines: int
    first_bad_line: int | None = None
    reason: str = ""


class AuditLog:
    """Appends chained audit records to one file (thread-safe within the process)."""

    def __init__(self, path: Path, *, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.path = Path(path)
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._prev: str | None = None
        self._seq = 0

    def _load_tail(self) -> None:
        if self._prev is not None:
            return
        if self.path.exists() and self.path.stat().st_size > 0:
            last = _last_line(self.path)
            if last:
                self._prev = _line_hash(last)
                self._seq = int(json.loads(last).get("seq", 0))
                return
        self._prev, self._seq = GENESIS, 0

    def record(self, *, user: str, admin_code: str, action: str, filter: Mapping[str, Any],
               result_count: int, status: int = 200) -> dict[str, Any]:
        """Append one record and return it (with ``seq`` and ``prev``)."""
        with self._lock:
            self._load_tail()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            rec = {
                "seq": self._seq + 1, "at": self._clock_ms(), "user": user, "admin_code": admin_code,
                "action": action, "filter": dict(filter), "result_count": int(result_count),
                "status": int(status), "prev": self._prev,
            }
            line = _encode(rec)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._prev, self._seq = _line_hash(line), rec["seq"]
            return rec


def verify_chain(path: Path) -> ChainCheck:
    """Check every line's ``prev`` against the hash of the line before it, and ``seq`` order."""
    prev, n = GENESIS, 0
    with Path(path).open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\n")
            try:
                rec = json.loads(line)
            except ValueError:
                return ChainCheck(False, n, n, "not JSON")
            if rec.get("prev") != prev:
                return ChainCheck(False, n, n, "prev hash does not match the previous line")
            if rec.get("seq") != n:
                return ChainCheck(False, n, n, f"seq {rec.get('seq')} where {n} expected")
            prev = _line_hash(line)
    return ChainCheck(True, n)
