"""The gzip level of the worker's Kafka producers (aiokafka hard-codes level 9).

aiokafka's record builders compress a gzip batch with ``aiokafka.codec.gzip_encode(data)``, which
uses level 9 whatever the producer was configured with. On the worker's records (Avro, JSON
changelogs) level 9 costs ~4x the CPU of level 6 and ~8x level 1 for a few per cent of size: in a
py-spy profile of the live worker at its maximum rate, gzip was ~8 % of all samples, the largest
single cost outside the domain code.

`use_gzip_level(level)` points the name the record builders look up (in the C extension and the
pure-Python fallback) at an encoder with `level`, and the decoder at `gzip.decompress` (one C call
instead of a `GzipFile` stream). The output is ordinary gzip (RFC 1952): every Kafka client and
the broker read it as before. It is process-wide (aiokafka has no per-producer hook), idempotent,
and called by `streams.worker.app.build_app` from the worker's settings (`worker_gzip_level`).
"""
from __future__ import annotations

import gzip
import importlib
from collections.abc import Callable
from types import ModuleType

#: aiokafka modules whose module-level ``gzip_encode`` / ``gzip_decode`` the record code calls
RECORD_MODULES: tuple[str, ...] = (
    "aiokafka.record._crecords.default_records",
    "aiokafka.record._crecords.legacy_records",
    "aiokafka.record.default_records",
    "aiokafka.record.legacy_records",
)


def gzip_encoder(level: int) -> Callable[..., bytes]:
    """``encode(payload, compresslevel=None) -> bytes``: gzip at `level` unless a level is given."""
    if not 1 <= level <= 9:
        raise ValueError(f"gzip level must be 1..9, not {level}")

    def encode(payload: bytes | bytearray | memoryview, compresslevel: int | None = None) -> bytes:
        return gzip.compress(bytes(payload), compresslevel=compresslevel or level, mtime=0)

    encode.pingan_level = level  # type: ignore[attr-defined]
    return encode


def gzip_decode(payload: bytes | bytearray | memoryview) -> bytes:
    """Decompress a gzip payload (every member)."""
    return gzip.decompress(bytes(payload))


def _modules() -> list[ModuleType]:
    out = []
    for name in RECORD_MODULES:
        try:
            out.append(importlib.import_module(name))
        except ImportError:  # the C extension is optional in aiokafka
            continue
    return out


def use_gzip_level(level: int) -> list[str]:
    """Make aiokafka's record builders gzip at `level`; returns the modules patched."""
    encode = gzip_encoder(level)
    patched = []
    for module in _modules():
        if hasattr(module, "gzip_encode"):
            module.gzip_encode = encode  # type: ignore[attr-defined]
            patched.append(module.__name__)
        if hasattr(module, "gzip_decode"):
            module.gzip_decode = gzip_decode  # type: ignore[attr-defined]
    if not patched:
        raise RuntimeError(f"no aiokafka record module to set the gzip level in (looked in {RECORD_MODULES})")
    return patched


def gzip_level_in_use() -> int | None:
    """The level `use_gzip_level` set in aiokafka's default record builder (None: aiokafka's own 9)."""
    for module in _modules():
        encode = getattr(module, "gzip_encode", None)
        if encode is not None:
            return getattr(encode, "pingan_level", None)
    return None
