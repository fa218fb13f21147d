"""Append-only, HMAC-chained JSONL audit log of searches, lookups, detail views and denied requests,
with anchors of the chain head kept outside the log.

Contract: each line is one JSON object (sorted keys, UTF-8, no spaces) with ``log`` (a random id of
this log, fixed by its first record), ``seq`` (1, 2, …), ``at`` (UTC epoch ms), ``user``,
``admin_code`` (the credential's; empty for a request without a valid credential), ``action``,
``filter`` (the request as the server understood it — never clear identifiers: lookups record only
the pseudonymous keys, free text has long digit runs masked by the caller), ``result_count``,
``status``, ``prev`` (the previous line's ``mac``; 64 zeros for the first line) and ``mac`` =
hex HMAC-SHA256, under the audit key, of the line's other fields encoded the same way. The key is
a secret kept outside the file (``Settings.audit_key``): without it nobody can write a line that
verifies, so editing, deleting or reordering lines and recomputing the chain is detected.

Anchors: every ``anchor_every`` records and on `AuditLog.close` the head of the chain (log id,
seq, mac, time, and an HMAC over them) goes to an `AnchorSink` outside the log — the Kafka topic
``audit-anchors.v1`` (`KafkaAnchors`) in a deployment, a JSONL file in another directory
(`FileAnchors`) in tests. `verify_chain` checks each line's HMAC and ``prev``, that ``seq`` runs
1, 2, … and that every anchor of the log matches the line with its sequence number: cutting the
last lines off (truncation) leaves an anchor beyond the end; deleting a record and rewriting the
chain changes the anchored lines' MACs. Records written after the latest anchor are only protected
by the chain (a truncation of those few is not detected until the next anchor); an attacker who
can delete records from the anchor topic *and* rewrite the file with the key is out of reach.

Writes are appended with ``O_APPEND`` and fsynced before returning.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

GENESIS = "0" * 64
ANCHOR_TOPIC = "audit-anchors.v1"
ANCHOR_SCHEMA = "pingan.AuditAnchor"


class AuditError(RuntimeError):
    """The audit log cannot be continued (its head does not verify under this key)."""


def _encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def record_mac(key: bytes, record: Mapping[str, Any]) -> str:
    """Hex HMAC-SHA256 of a record's fields other than ``mac``."""
    body = {k: v for k, v in record.items() if k != "mac"}
    return hmac.new(key, _encode(body), hashlib.sha256).hexdigest()


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
class Anchor:
    """The chain head of one log at one moment (``pingan.AuditAnchor``)."""

    log_id: str
    seq: int
    mac: str
    anchored_at: int
    anchor_mac: str

    @staticmethod
    def _payload(log_id: str, seq: int, mac: str, anchored_at: int) -> bytes:
        return f"{log_id}|{seq}|{mac}|{anchored_at}".encode("utf-8")

    @classmethod
    def make(cls, key: bytes, log_id: str, seq: int, mac: str, anchored_at: int) -> "Anchor":
        tag = hmac.new(key, cls._payload(log_id, seq, mac, anchored_at), hashlib.sha256).hexdigest()
        return cls(log_id, seq, mac, anchored_at, tag)

    def valid(self, key: bytes) -> bool:
        """True when ``anchor_mac`` was made with `key`."""
        want = hmac.new(key, self._payload(self.log_id, self.seq, self.mac, self.anchored_at), hashlib.sha256)
        return hmac.compare_digest(want.hexdigest(), self.anchor_mac)

    def as_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> "Anchor":
        return cls(str(rec["log_id"]), int(rec["seq"]), str(rec["mac"]), int(rec["anchored_at"]),
                   str(rec["anchor_mac"]))


class AnchorSink(Protocol):
    def publish(self, anchor: Anchor) -> None: ...

    def close(self) -> None: ...


class AnchorSource(Protocol):
    def anchors(self, log_id: str) -> list[Anchor]: ...


class FileAnchors:
    """Anchors as JSONL in a directory other than the log's (``<dir>/<log_id>.anchors.jsonl``).

    Protects only against someone who can write the log but not this directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, log_id: str) -> Path:
        return self.directory / f"{log_id}.anchors.jsonl"

    def publish(self, anchor: Anchor) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(anchor.log_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, _encode(anchor.as_record()) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        return None

    def anchors(self, log_id: str) -> list[Anchor]:
        path = self._path(log_id)
        if not path.exists():
            return []
        return [Anchor.from_record(json.loads(line)) for line in path.read_bytes().splitlines() if line.strip()]


class KafkaAnchors:
    """Anchors on the Kafka topic ``audit-anchors.v1`` (Avro single-object, key ``log_id``).

    `publish` hands the record to one background thread that sends it with a kafka-python producer
    (acks=all) and returns at once, so a slow or absent broker never blocks a request; a failed
    delivery is logged and counted in ``failures``, never raised. `close` waits for the sends.
    `anchors` reads the whole topic (it is small: one record per ``anchor_every`` audit records)."""

    def __init__(self, bootstrap: str, topic: str, *, timeout_s: float = 5.0,
                 security: Mapping[str, Any] | None = None) -> None:
        self.bootstrap, self.topic, self.timeout_s = bootstrap, topic, timeout_s
        self.security = dict(security or {})  # kafka-python TLS/SASL options (Settings.kafka_client_options)
        self.failures = 0
        self._producer: Any = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-anchors")

    def _ensure_producer(self) -> Any:
        from kafka import KafkaAdminClient, KafkaProducer

        with self._lock:
            if self._producer is None:
                # Never auto-create: a missing anchor topic is a deployment error (`pingan infra
                # provision` creates it). kafka-python 3.0.12 does not pass the producer's
                # allow_auto_create_topics to its metadata, so ask the admin API first.
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap,
                                         request_timeout_ms=int(self.timeout_s * 1000), **self.security)
                try:
                    if self.topic not in admin.list_topics():
                        raise AuditError(f"anchor topic {self.topic} does not exist (run `pingan infra provision`)")
                finally:
                    admin.close()
                self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                               max_block_ms=int(self.timeout_s * 1000), retries=5,
                                               allow_auto_create_topics=False, **self.security)
            return self._producer

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        log.error("audit anchor not published to %s: %s", self.topic, exc)

    def _send(self, anchor: Anchor) -> None:
        from schemas.serde import encode

        try:
            self._ensure_producer().send(self.topic, key=anchor.log_id.encode("utf-8"),
                                         value=encode(ANCHOR_SCHEMA, anchor.as_record())).get(self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - an unreachable broker must not fail the request
            self._failed(exc)

    def publish(self, anchor: Anchor) -> None:
        self._executor.submit(self._send, anchor)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(timeout=self.timeout_s)
            finally:
                producer.close(timeout=self.timeout_s)

    def anchors(self, log_id: str) -> list[Anchor]:
        from kafka import KafkaConsumer, TopicPartition

        from schemas.serde import decode

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                 consumer_timeout_ms=int(self.timeout_s * 1000), **self.security)
        try:
            parts = consumer.partitions_for_topic(self.topic)
            if not parts:
                raise AuditError(f"anchor topic {self.topic} not found at {self.bootstrap}")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            out: list[Anchor] = []
            remaining = {tp for tp in tps if end[tp] > 0}
            deadline = time.monotonic() + self.timeout_s * 3
            while remaining and time.monotonic() < deadline:
                for tp, msgs in consumer.poll(timeout_ms=500).items():
                    for msg in msgs:
                        if msg.key == log_id.encode("utf-8"):
                            out.append(Anchor.from_record(decode(msg.value)[1]))
                    if consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
            if remaining:
                raise AuditError(f"could not read {self.topic} to its end")
            return out
        finally:
            consumer.close()


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """Result of `verify_chain`: ok, lines checked, first bad line number (1-based) and why."""

    ok: bool
    lines: int
    first_bad_line: int | None = None
    reason: str = ""
    anchors: int = 0
    log_id: str | None = None


def _key_bytes(key: bytes | str) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


class AuditLog:
    """Appends HMAC-chained audit records to one file (thread-safe within the process).

    Without a `key` a random per-process key is generated (with a warning): the chain holds while
    the process runs, but nobody can verify the file afterwards — for tests only."""

    def __init__(self, path: Path, *, key: bytes | str | None = None, anchors: AnchorSink | None = None,
                 anchor_every: int = 100, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.path = Path(path)
        if key is None:
            log.warning("audit log %s: no audit key configured; using a random key for this process only "
                        "(the log cannot be verified afterwards)", self.path)
            key = secrets.token_bytes(32)
        self._key = _key_bytes(key)
        if not self._key:
            raise ValueError("the audit key must not be empty")
        self._anchors = anchors
        self._anchor_every = max(1, int(anchor_every))
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._prev: str | None = None
        self._seq = 0
        self._log_id = ""
        self._anchored_seq = 0

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    @property
    def log_id(self) -> str:
        with self._lock:
            self._load_tail()
            return self._log_id

    def _load_tail(self) -> None:
        if self._prev is not None:
            return
        if self.path.exists() and self.path.stat().st_size > 0:
            last = _last_line(self.path)
            if last:
                try:
                    rec = json.loads(last)
                except ValueError:
                    raise AuditError(f"{self.path}: the last line is not JSON") from None
                mac = rec.get("mac") if isinstance(rec, dict) else None
                if not isinstance(mac, str) or not hmac.compare_digest(mac, record_mac(self._key, rec)):
                    raise AuditError(f"{self.path}: the last record does not verify under this audit key "
                                     "(another key, an older unkeyed format, or tampering): run "
                                     "`pingan search verify-audit`, then move the file aside")
                self._prev, self._seq, self._log_id = mac, int(rec["seq"]), str(rec["log"])
                self._anchored_seq = self._seq  # not re-anchored until it grows
                return
        self._prev, self._seq, self._log_id = GENESIS, 0, secrets.token_hex(16)

    def check_head(self) -> None:
        """Raise `AuditError` now (at start-up) when the existing log cannot be continued."""
        with self._lock:
            self._load_tail()

    def record(self, *, user: str, admin_code: str, action: str, filter: Mapping[str, Any],
               result_count: int, status: int = 200) -> dict[str, Any]:
        """Append one record and return it (with ``seq``, ``prev`` and ``mac``)."""
        with self._lock:
            self._load_tail()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            rec: dict[str, Any] = {
                "log": self._log_id, "seq": self._seq + 1, "at": self._clock_ms(), "user": user,
                "admin_code": admin_code, "action": action, "filter": dict(filter),
                "result_count": int(result_count), "status": int(status), "prev": self._prev,
            }
            rec["mac"] = record_mac(self._key, rec)
            line = _encode(rec)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._prev, self._seq = rec["mac"], rec["seq"]
            if self._seq % self._anchor_every == 0:
                self._anchor_locked()
            return rec

    def _anchor_locked(self) -> Anchor | None:
        if self._anchors is None or self._seq == 0 or self._prev is None:
            return None
        anchor = Anchor.make(self._key, self._log_id, self._seq, self._prev, self._clock_ms())
        try:
            self._anchors.publish(anchor)
        except Exception as exc:  # noqa: BLE001 - an anchor failure must not fail the audited request
            log.error("audit anchor for %s seq %d not written: %s", self.path, self._seq, exc)
            return None
        self._anchored_seq = self._seq
        return anchor

    def anchor(self) -> Anchor | None:
        """Publish the current head now (None when there is nothing to anchor or no sink)."""
        with self._lock:
            self._load_tail()
            return self._anchor_locked()

    def close(self) -> None:
        """Anchor the head if it moved since the last anchor, then close the sink."""
        with self._lock:
            if self._prev is not None and self._seq > self._anchored_seq:
                self._anchor_locked()
            if self._anchors is not None:
                self._anchors.close()


def verify_chain(path: Path, key: bytes | str | None = None, anchors: AnchorSource | None = None) -> ChainCheck:
    """Check every line's HMAC and ``prev``, ``seq`` = 1, 2, …, one ``log`` id, and every anchor.

    Without `key` only the structure (links, seq, log id) is checked and ``reason`` says so: such a
    chain anyone can recompute, so it proves nothing against tampering — `pingan search
    verify-audit` always passes the key and the anchors. Without `anchors` a cut-off tail is not
    detected: ``reason`` says so too."""
    kb = _key_bytes(key) if key is not None else None
    prev, n, log_id = GENESIS, 0, None
    macs: dict[int, str] = {}
    with Path(path).open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\n")
            try:
                rec = json.loads(line)
            except ValueError:
                return ChainCheck(False, n, n, "not JSON")
            if not isinstance(rec, dict) or not isinstance(rec.get("mac"), str):
                return ChainCheck(False, n, n, "no mac (not an HMAC-chained record)")
            if kb is not None and not hmac.compare_digest(rec["mac"], record_mac(kb, rec)):
                return ChainCheck(False, n, n, "HMAC does not match (edited, or written without the key)")
            if rec.get("prev") != prev:
                return ChainCheck(False, n, n, "prev does not match the previous line's mac")
            if rec.get("seq") != n:
                return ChainCheck(False, n, n, f"seq {rec.get('seq')} where {n} expected")
            if log_id is None:
                log_id = rec.get("log")
            elif rec.get("log") != log_id:
                return ChainCheck(False, n, n, "log id changes")
            prev = rec["mac"]
            macs[n] = prev
    if kb is None:
        return ChainCheck(True, n, None, "structure only: no audit key, the HMACs were not checked", 0, log_id)
    if anchors is None:
        return ChainCheck(True, n, None, "no anchors checked: truncation of the last lines is not detected",
                          0, log_id)
    if log_id is None:
        return ChainCheck(True, 0, None, "empty log", 0, None)
    found = anchors.anchors(log_id)
    for a in sorted(found, key=lambda x: x.seq):
        if not a.valid(kb):
            return ChainCheck(False, n, None, f"anchor seq {a.seq} has a bad anchor_mac (forged)", len(found), log_id)
        if a.seq > n:
            return ChainCheck(False, n, n + 1 if n else 1,
                              f"truncated: anchored seq {a.seq}, the log ends at {n}", len(found), log_id)
        if not hmac.compare_digest(macs[a.seq], a.mac):
            return ChainCheck(False, n, a.seq, f"line {a.seq} differs from its anchor (rewritten chain)",
                              len(found), log_id)
    return ChainCheck(True, n, None, "", len(found), log_id)


def dev_key(run_dir: Path) -> bytes:
    """The development audit key ``<run_dir>/secrets/audit.key`` (created, 0600, when missing).

    For a loopback server without ``PINGAN_AUDIT_KEY`` only: whoever can read the run directory
    can read this key, so it proves nothing against them."""
    path = Path(run_dir) / "secrets" / "audit.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            return path.read_bytes().strip()
        try:
            os.write(fd, secrets.token_hex(32).encode("ascii"))
        finally:
            os.close(fd)
    return path.read_bytes().strip()


def rotate_aside(path: Path, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> Path:
    """Move a log that cannot be continued to ``<name>.<ms>.old`` (kept for inspection)."""
    target = path.with_name(f"{path.name}.{clock_ms()}.old")
    path.rename(target)
    return target


def iter_records(path: Path) -> Iterable[dict[str, Any]]:
    """The records of a log file (no verification)."""
    with Path(path).open("rb") as fh:
        for raw in fh:
            if raw.strip():
                yield json.loads(raw)


class DeniedRecorder:
    """Audits denied requests with rate-limited detail.

    At most one full record per client address per ``interval_s`` (action, status, path, reason,
    and ``suppressed``: how many denied requests of that client were only counted since its last
    full record, by status); the rest are counted. Counts still open are written as
    ``denied-summary`` records by `flush` (called on every denied request and on shutdown)."""

    def __init__(self, audit: AuditLog, interval_s: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.audit, self.interval_s, self._clock = audit, float(interval_s), clock
        self._last: dict[str, float] = {}
        self._counts: dict[str, dict[str, int]] = {}

    def record(self, client: str, *, user: str, admin_code: str, action: str, status: int,
               detail: Mapping[str, Any]) -> bool:
        """Audit or count one denied request; True when a full record was written."""
        now = self._clock()
        self.flush(now, skip=client)
        last = self._last.get(client)
        if last is not None and now - last < self.interval_s:
            counts = self._counts.setdefault(client, {})
            counts[str(status)] = counts.get(str(status), 0) + 1
            return False
        self._last[client] = now
        suppressed = self._counts.pop(client, {})
        self.audit.record(user=user, admin_code=admin_code, action=action,
                          filter={**detail, "client": client, "suppressed": suppressed},
                          result_count=0, status=status)
        return True

    def flush(self, now: float | None = None, *, skip: str | None = None, force: bool = False) -> None:
        """Write a ``denied-summary`` for every client (but `skip`) whose interval has passed."""
        now = self._clock() if now is None else now
        for client in list(self._counts):
            if client == skip or (not force and now - self._last.get(client, now) < self.interval_s):
                continue
            counts = self._counts.pop(client)
            self.audit.record(user="", admin_code="", action="denied-summary",
                              filter={"client": client, "suppressed": counts}, result_count=0,
                              status=max(int(s) for s in counts))
        for client in [c for c, t in self._last.items() if now - t >= self.interval_s and c not in self._counts]:
            del self._last[client]

    def close(self) -> None:
        """Write every open count (shutdown)."""
        self.flush(force=True)
