"""Whole bodies Kafka cannot take, kept on local disk beside the spool (claim check).

Contract
--------
* ``BlobStore(directory, max_bytes)``: one file per distinct body, ``<directory>/<sha256>.bin``.
  ``put(data)`` returns the reference ``blobs/<sha256>`` once the bytes are written, ``fsync``-ed and
  renamed into place (crash-safe, idempotent: the same body is stored once). It returns None, writing
  nothing, when the store would grow beyond ``max_bytes`` (the caller counts the loss).
* ``get(ref)`` returns the bytes of a reference; ``path(ref)`` where they are.
* The receiver puts its store under its spool directory (``<spool>/blobs/``); a dead letter whose
  raw was truncated names the reference in its reason (``schemas.deadletter.truncate_raw``).
  Nothing deletes blobs: an operator removes them once the dead letter is handled.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path

REF_PREFIX = "blobs/"


class BlobStore:
    """Content-addressed, bounded, durable files (see module docstring)."""

    def __init__(self, directory: Path | str, *, max_bytes: int = 1024 * 1024 * 1024) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._used: int | None = None

    @property
    def used_bytes(self) -> int:
        """Bytes held (scanned once, then tracked)."""
        with self._lock:
            return self._used_locked()

    def _used_locked(self) -> int:
        if self._used is None:
            self._used = sum(p.stat().st_size for p in self.directory.glob("*.bin")) if self.directory.exists() else 0
        return self._used

    def path(self, ref: str) -> Path:
        """File of a reference (``ValueError`` for anything but ``blobs/<sha256>``)."""
        name = ref[len(REF_PREFIX):] if ref.startswith(REF_PREFIX) else ""
        if len(name) != 64 or any(c not in "0123456789abcdef" for c in name):
            raise ValueError(f"not a blob reference: {ref!r}")
        return self.directory / f"{name}.bin"

    def put(self, data: bytes) -> str | None:
        """Store ``data`` durably; its reference, or None when the store is full (nothing written)."""
        sha = hashlib.sha256(data).hexdigest()
        ref = REF_PREFIX + sha
        final = self.path(ref)
        with self._lock:
            if final.exists() and final.stat().st_size == len(data):
                return ref
            if self._used_locked() + len(data) > self.max_bytes:
                return None
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = final.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._used = self._used_locked() + len(data)
            return ref

    async def put_async(self, data: bytes) -> str | None:
        """``put`` in a worker thread (the event loop keeps serving)."""
        return await asyncio.to_thread(self.put, data)

    def get(self, ref: str) -> bytes:
        """The bytes of ``ref`` (``FileNotFoundError`` when it was never stored or was removed)."""
        return self.path(ref).read_bytes()
