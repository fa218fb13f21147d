"""Durable local spool: what a receiver has acknowledged while Kafka was away.

Contract
--------
* Layout: ``<directory>/seg-<base_seq:020d>.log`` append-only segment files plus ``committed.json``
  (``{"next_seq": N}``: every record with ``seq < N`` has been confirmed by Kafka).
  ``Spool.for_receiver(settings, name)`` puts it under ``settings.run_dir/spool/<name>/``.
* Record framing: ``u32 length | u32 crc32(payload) | payload``; payload is
  ``u16 len(topic) | topic | i32 len(key) (-1 = None) | key | value``.
* ``append`` is durable when it returns True: the bytes are written and ``fsync``-ed. Concurrent
  callers of the async ``append`` share one ``fsync`` (group commit). It returns False, writing
  nothing, when the batch would take the pending bytes above ``max_bytes``.
* ``drain(send)`` hands pending records to ``send`` in append order, batch by batch, and advances
  the committed offset only after ``send`` returns (i.e. after Kafka confirmed). If ``send`` raises,
  the offset stays where it was and the exception propagates: the next drain re-sends the batch
  (at-least-once; nothing is lost, duplicates only of the unconfirmed batch).
* A torn tail (crash mid-write) of the last segment is truncated on open; corruption anywhere
  else raises :class:`SpoolCorrupt` (the spool refuses to guess).
* Fully committed segments are deleted.
"""
from __future__ import annotations

import asyncio
import json
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from streams.settings import Settings

_FRAME = struct.Struct(">II")  # length, crc32
_TOPIC_LEN = struct.Struct(">H")
_KEY_LEN = struct.Struct(">i")
_SEG_PREFIX = "seg-"
_SEG_SUFFIX = ".log"
_COMMITTED = "committed.json"


class SpoolCorrupt(Exception):
    """A non-tail segment failed its checksum or framing: operator attention needed (fatal)."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One Kafka record waiting in the spool."""

    topic: str
    key: bytes | None
    value: bytes

    def encode(self) -> bytes:
        """Payload bytes (without the frame)."""
        t = self.topic.encode("utf-8")
        k = b"" if self.key is None else self.key
        klen = -1 if self.key is None else len(self.key)
        return b"".join((_TOPIC_LEN.pack(len(t)), t, _KEY_LEN.pack(klen), k, self.value))

    @classmethod
    def decode(cls, payload: bytes) -> "SpoolRecord":
        """Inverse of :meth:`encode`."""
        (tlen,) = _TOPIC_LEN.unpack_from(payload, 0)
        pos = _TOPIC_LEN.size
        topic = payload[pos : pos + tlen].decode("utf-8")
        pos += tlen
        (klen,) = _KEY_LEN.unpack_from(payload, pos)
        pos += _KEY_LEN.size
        key: bytes | None = None
        if klen >= 0:
            key = payload[pos : pos + klen]
            pos += klen
        return cls(topic=topic, key=key, value=payload[pos:])

    def framed(self) -> bytes:
        """Frame + payload as written to a segment."""
        payload = self.encode()
        return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass(slots=True)
class _Segment:
    base_seq: int
    path: Path
    count: int
    size: int

    @property
    def end_seq(self) -> int:
        return self.base_seq + self.count


def _seg_name(base_seq: int) -> str:
    return f"{_SEG_PREFIX}{base_seq:020d}{_SEG_SUFFIX}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan(path: Path) -> tuple[list[int], int, bool]:
    """Record sizes (framed) of a segment, the byte length of its valid prefix, and whether it is torn."""
    sizes: list[int] = []
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        if pos + _FRAME.size > len(data):
            return sizes, pos, True
        length, crc = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + length
        if end > len(data) or zlib.crc32(data[pos + _FRAME.size : end]) != crc:
            return sizes, pos, True
        sizes.append(end - pos)
        pos = end
    return sizes, pos, False


class Spool:
    """A bounded, durable, ordered local queue of Kafka records (see module docstring)."""

    def __init__(
        self,
        directory: Path | str,
        *,
        max_bytes: int = 512 * 1024 * 1024,
        segment_bytes: int = 16 * 1024 * 1024,
        high_water: float = 0.5,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be positive")
        if not 0.0 < high_water <= 1.0:
            raise ValueError("high_water must be in (0, 1]")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.high_water = high_water
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._sizes: dict[int, list[int]] = {}  # base_seq -> framed record sizes (for pending-bytes accounting)
        self._committed = 0
        self._next_seq = 0
        self._pending_bytes = 0
        self._reserved = 0
        self._fh = None  # type: ignore[var-annotated]
        self._opened = False
        # group commit (async append)
        self._queue: list[tuple[list[SpoolRecord], asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._drain_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def for_receiver(cls, settings: "Settings", receiver: str, **kwargs: object) -> "Spool":
        """Spool under ``settings.run_dir/spool/<receiver>/``."""
        return cls(Path(settings.run_dir) / "spool" / receiver, **kwargs)  # type: ignore[arg-type]

    def open(self) -> "Spool":
        """Create the directory, recover segments (truncating a torn tail) and the committed offset."""
        with self._lock:
            if self._opened:
                return self
            self.directory.mkdir(parents=True, exist_ok=True)
            self._committed = self._read_committed()
            paths = sorted(p for p in self.directory.iterdir() if p.name.startswith(_SEG_PREFIX) and p.name.endswith(_SEG_SUFFIX))
            segments: list[_Segment] = []
            for i, p in enumerate(paths):
                base = int(p.name[len(_SEG_PREFIX) : -len(_SEG_SUFFIX)])
                sizes, valid, torn = _scan(p)
                if torn:
                    if i != len(paths) - 1:
                        raise SpoolCorrupt(f"corrupt record in non-tail segment {p} at byte {valid}")
                    with open(p, "r+b") as fh:
                        fh.truncate(valid)
                        fh.flush()
                        os.fsync(fh.fileno())
                if segments and segments[-1].end_seq != base:
                    raise SpoolCorrupt(f"gap between segments before {p}")
                segments.append(_Segment(base, p, len(sizes), valid))
                self._sizes[base] = sizes
            self._segments = segments
            end = segments[-1].end_seq if segments else 0
            self._next_seq = max(end, self._committed)
            if self._committed > end and segments:
                raise SpoolCorrupt(f"committed offset {self._committed} beyond spool end {end}")
            self._pending_bytes = 0
            for seg in segments:
                for j, size in enumerate(self._sizes[seg.base_seq]):
                    if seg.base_seq + j >= self._committed:
                        self._pending_bytes += size
            self._gc_locked()
            self._opened = True
            return self

    def close(self) -> None:
        """Close the active segment file (data already durable)."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            self._opened = False

    # ------------------------------------------------------------------ state
    @property
    def pending_count(self) -> int:
        """Records appended but not yet confirmed by Kafka."""
        return self._next_seq - self._committed

    @property
    def pending_bytes(self) -> int:
        """Framed bytes of pending records (what ``max_bytes`` bounds)."""
        return self._pending_bytes

    @property
    def is_empty(self) -> bool:
        """True when nothing is waiting (neither durable nor being written)."""
        return self.pending_count == 0 and self._reserved == 0

    @property
    def fill_ratio(self) -> float:
        """(pending + reserved) bytes / max_bytes."""
        return (self._pending_bytes + self._reserved) / self.max_bytes

    @property
    def above_high_water(self) -> bool:
        """True when the fill ratio is at or above the configured high-water mark."""
        return self.fill_ratio >= self.high_water

    @property
    def committed(self) -> int:
        """Sequence number of the first unconfirmed record."""
        return self._committed

    # ------------------------------------------------------------------ append
    @staticmethod
    def _framed(batch: Iterable[SpoolRecord]) -> list[bytes]:
        return [r.framed() for r in batch]

    def append_sync(self, batch: Sequence[SpoolRecord]) -> bool:
        """Write and fsync one batch; False (nothing written) when it would exceed ``max_bytes``."""
        framed = self._framed(batch)
        size = sum(map(len, framed))
        with self._lock:
            if self._pending_bytes + self._reserved + size > self.max_bytes:
                return False
            self._write_locked([framed])
            return True

    async def append(self, batch: Sequence[SpoolRecord]) -> bool:
        """Durably append ``batch`` (group-committed with concurrent callers); False when full."""
        if not batch:
            return True
        framed = self._framed(batch)
        size = sum(map(len, framed))
        if self._pending_bytes + self._reserved + size > self.max_bytes:
            return False
        self._reserved += size
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((list(batch), fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_queue(), name="spool-group-commit")
        return await asyncio.shield(fut)

    async def _flush_queue(self) -> None:
        while self._queue:
            await asyncio.sleep(0)  # let concurrent requests join this group
            group, self._queue = self._queue, []
            framed = [self._framed(b) for b, _ in group]
            size = sum(len(f) for fr in framed for f in fr)
            try:
                await asyncio.to_thread(self._write_group, framed)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter, never swallowed
                self._reserved -= size
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self._reserved -= size
            for _, fut in group:
                if not fut.done():
                    fut.set_result(True)

    def _write_group(self, groups: list[list[bytes]]) -> None:
        with self._lock:
            self._write_locked(groups)

    def _write_locked(self, groups: list[list[bytes]]) -> None:
        if not self._opened:
            raise RuntimeError("spool is not open")
        fh = self._active_locked()
        seg = self._segments[-1]
        sizes = self._sizes[seg.base_seq]
        for framed in groups:
            for rec in framed:
                fh.write(rec)
                seg.count += 1
                seg.size += len(rec)
                sizes.append(len(rec))
                self._pending_bytes += len(rec)
        fh.flush()
        os.fsync(fh.fileno())
        self._next_seq = seg.end_seq
        if seg.size >= self.segment_bytes:
            fh.close()
            self._fh = None  # the next write rolls a new segment

    def _active_locked(self):  # type: ignore[no-untyped-def]
        if self._fh is not None:
            return self._fh
        if self._segments and self._segments[-1].size < self.segment_bytes:
            seg = self._segments[-1]
        else:
            base = self._next_seq
            seg = _Segment(base, self.directory / _seg_name(base), 0, 0)
            seg.path.touch()
            _fsync_dir(self.directory)
            self._segments.append(seg)
            self._sizes[base] = []
        self._fh = open(seg.path, "ab")
        return self._fh

    # ------------------------------------------------------------------ read / commit
    def read_batch(self, max_records: int = 500, max_bytes: int = 4 * 1024 * 1024) -> tuple[int, list[SpoolRecord]]:
        """Pending records from the committed offset, in order: ``(first_seq, records)``."""
        with self._lock:
            start = self._committed
            end = self._next_seq
            out: list[SpoolRecord] = []
            total = 0
            for seg in self._segments:
                if seg.end_seq <= start or len(out) >= max_records:
                    continue
                sizes = self._sizes[seg.base_seq]
                first = max(start, seg.base_seq) - seg.base_seq
                offset = sum(sizes[:first])
                with open(seg.path, "rb") as fh:
                    fh.seek(offset)
                    idx = first
                    while idx < seg.count and seg.base_seq + idx < end and len(out) < max_records:
                        frame = fh.read(sizes[idx])
                        length, crc = _FRAME.unpack_from(frame, 0)
                        payload = frame[_FRAME.size :]
                        if len(payload) != length or zlib.crc32(payload) != crc:
                            raise SpoolCorrupt(f"{seg.path}: record {seg.base_seq + idx} failed its checksum")
                        out.append(SpoolRecord.decode(payload))
                        total += len(frame)
                        idx += 1
                        if total >= max_bytes:
                            break
                if total >= max_bytes:
                    break
            return start, out

    def commit(self, next_seq: int) -> None:
        """Mark every record with ``seq < next_seq`` as confirmed (atomic write+rename, fsync)."""
        with self._lock:
            if next_seq <= self._committed:
                return
            if next_seq > self._next_seq:
                raise ValueError(f"commit {next_seq} beyond spool end {self._next_seq}")
            for seg in self._segments:
                sizes = self._sizes[seg.base_seq]
                for seq in range(max(self._committed, seg.base_seq), min(next_seq, seg.end_seq)):
                    self._pending_bytes -= sizes[seq - seg.base_seq]
            tmp = self.directory / (_COMMITTED + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"next_seq": next_seq}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.directory / _COMMITTED)
            _fsync_dir(self.directory)
            self._committed = next_seq
            self._gc_locked()

    def _read_committed(self) -> int:
        path = self.directory / _COMMITTED
        if not path.exists():
            return 0
        return int(json.loads(path.read_text(encoding="utf-8"))["next_seq"])

    def _gc_locked(self) -> None:
        """Delete segments whose records are all committed (never the one being written)."""
        keep: list[_Segment] = []
        for i, seg in enumerate(self._segments):
            is_active = i == len(self._segments) - 1
            if seg.end_seq <= self._committed and not is_active:
                seg.path.unlink(missing_ok=True)
                self._sizes.pop(seg.base_seq, None)
            else:
                keep.append(seg)
        # everything confirmed: close the active segment too, the next append starts a fresh one
        if keep and self._committed >= self._next_seq:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            for seg in keep:
                seg.path.unlink(missing_ok=True)
                self._sizes.pop(seg.base_seq, None)
            keep = []
        self._segments = keep

    # ------------------------------------------------------------------ drain
    async def drain(
        self,
        send: Callable[[list[SpoolRecord]], Awaitable[None]],
        *,
        batch_size: int = 500,
    ) -> int:
        """Deliver every pending record in order via ``send``; returns how many were confirmed.

        ``send`` must return only after Kafka confirmed the whole batch and raise otherwise; the
        committed offset moves only after it returns. Only one drain runs at a time.
        """
        if self._drain_lock is None:
            self._drain_lock = asyncio.Lock()
        delivered = 0
        async with self._drain_lock:
            while True:
                first, batch = await asyncio.to_thread(self.read_batch, batch_size)
                if not batch:
                    return delivered
                await send(batch)
                await asyncio.to_thread(self.commit, first + len(batch))
                delivered += len(batch)
