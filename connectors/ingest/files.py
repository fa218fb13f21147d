"""Read a simulator output folder (or any folder in its layout) as translated deliveries.

Pure apart from reading the files: each delivery of ``delivery.jsonl`` is looked up in its
payload file, run through the system's own `translate` function, and yielded in delivery order
(so duplicates, late and out-of-order deliveries arrive as the feeds would send them). Used by
`pingan connectors import`, the quality benchmark and the end-to-end tests.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sources import registry as source_registry
from connectors.sources.common import TranslateResult
from connectors.sources.devices import DeviceRegistry
from connectors.sources.registry import context as source_context
from connectors.sources.spec import Payload, SourceContext, SourceSpec
from streams.settings import DEFAULT_TIMEZONE

#: A payload file whose lines are recorded HTTP requests (``{"content_type", "body_b64"}``).
REQUESTS_FILE = "requests.jsonl"


@dataclass(frozen=True)
class Delivery:
    """One translated delivery: where it came from, its raw bytes and the translation outcome."""

    seq: int
    feed: str
    raw: bytes
    content_type: str | None
    result: TranslateResult

    @property
    def source(self) -> str:
        """The canonical source of the delivery's records (both camera feeds are "camera")."""
        return source_registry.source_of_feed(self.feed)


class _Files:
    """Payload files of one folder, each read once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lines = lru_cache(maxsize=16)(self._read_lines)
        self._rows = lru_cache(maxsize=16)(self._read_rows)

    def _read_lines(self, name: str) -> list[bytes]:
        return (self.root / name).read_bytes().splitlines()

    def _read_rows(self, feed: str, name: str) -> list[dict[str, Any]]:
        spec = source_registry.feed(feed)
        if spec.read_table is None:
            raise ValueError(f"feed {feed!r} has no tabular form, but {name} is read as rows")
        return spec.read_table((self.root / name).read_bytes(), name)

    def line(self, name: str, line: int) -> bytes:
        return self._lines(name)[line - 1]

    def rows(self, feed: str, name: str, numbers: list[int]) -> list[dict[str, Any]]:
        """Data rows by number: CSV rows count from the first data row, XLSX rows are sheet rows
        (the header is sheet row 1), as the simulator's delivery log records them."""
        rows = self._rows(feed, name)
        first = 2 if name.endswith(".xlsx") else 1
        return [rows[n - first] for n in numbers]


def iter_deliveries(folder: Path, registry: DeviceRegistry | None = None, *, profile_dir: Path | None = None,
                    received_at_ms: int | None = None, timezone: str = DEFAULT_TIMEZONE) -> Iterator[Delivery]:
    """Translate every delivery of a simulator folder, in delivery order.

    ``received_at_ms`` defaults to a deterministic value per delivery (the simulator's delivery
    offset from the manifest's ``base_date``; a date without an offset is in ``timezone``), so the
    same folder always yields the same records. ``profile_dir`` defaults to the folder's own
    profiles when its manifest names them (`pingan simulate --variants`).
    """
    folder = Path(folder)
    registry = registry or DeviceRegistry.from_csv(folder / "registry.csv")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if profile_dir is None and manifest.get("profiles"):
        profile_dir = folder / str(manifest["profiles"])  # the folder's own deployment profiles
    ctx = source_context(registry, profile_dir)
    files = _Files(folder)
    base = datetime.fromisoformat(str(manifest.get("base_date") or "2026-07-14"))
    if base.tzinfo is None:
        base = base.replace(tzinfo=ZoneInfo(timezone))
    base_ms = int(base.timestamp() * 1000)
    with open(folder / "delivery.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            at = received_at_ms if received_at_ms is not None else base_ms + int(d["offset_s"]) * 1000
            yield _translate(d, files, ctx, at)


def _translate(d: dict[str, Any], files: _Files, ctx: SourceContext, at: int) -> Delivery:
    """One delivery-log entry → its raw bytes and the feed's translation of them.

    The entry's payload reference says the form: ``rows``/``row`` of an export table, a ``line``
    of a JSON-lines file (a recorded HTTP request in ``requests.jsonl``), or a whole ``file``."""
    try:
        spec = source_registry.feed(d["feed"])
    except KeyError:
        raise ValueError(f"unknown feed {d.get('feed')!r} in delivery {d.get('seq')}") from None
    ref = d["payload"]
    if "rows" in ref or "row" in ref:
        return _table_delivery(d, spec, files, ctx, at)
    ctype = spec.content_type
    if "line" in ref:
        raw = files.line(ref["file"], ref["line"])
        if Path(ref["file"]).name == REQUESTS_FILE:
            req = json.loads(raw)
            raw, ctype = base64.b64decode(req["body_b64"]), req.get("content_type")
    else:
        raw = (files.root / ref["file"]).read_bytes()
    result = spec.translate(Payload(raw, ctype, at), ctx)
    return Delivery(int(d["seq"]), spec.feed, raw, ctype, result)


def _table_delivery(d: dict[str, Any], spec: SourceSpec, files: _Files, ctx: SourceContext, at: int) -> Delivery:
    ref = d["payload"]
    if spec.translate_rows is None:
        raise ValueError(f"feed {spec.feed!r} has no tabular form (delivery {d.get('seq')})")
    many = "rows" in ref
    rows = files.rows(spec.feed, ref["file"], list(ref["rows"]) if many else [ref["row"]])
    raw = json.dumps(rows if many else rows[0], ensure_ascii=False, sort_keys=True, default=str).encode()
    fmt = f"{spec.feed}-{'xlsx' if ref['file'].endswith('.xlsx') else 'csv'}"
    return Delivery(int(d["seq"]), spec.feed, raw, None, spec.translate_rows(rows, at, fmt, ctx))


def load_truth(folder: Path) -> dict[str, Any]:
    """The simulator's ground truth (truth.json)."""
    return json.loads((Path(folder) / "truth.json").read_text(encoding="utf-8"))
