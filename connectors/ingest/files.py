"""Read a simulator output folder (or any folder in its layout) as translated deliveries.

Pure apart from reading the files: each delivery of ``delivery.jsonl`` is looked up in its
payload file, run through the system's own `translate` function, and yielded in delivery order
(so duplicates, late and out-of-order deliveries arrive as the feeds would send them). Used by
`pingan connectors import`, the quality benchmark and the end-to-end tests.
"""
from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo
from typing import Any

from connectors.sources.common import TranslateResult
from connectors.sources.devices import DeviceRegistry

# the translate modules (the packages re-export their `translate` function under the same name)
alarm110 = importlib.import_module("connectors.sources.alarm110.translate")
door = importlib.import_module("connectors.sources.door.translate")
gb28181 = importlib.import_module("connectors.sources.gb28181.translate")
grid = importlib.import_module("connectors.sources.grid.translate")
isapi = importlib.import_module("connectors.sources.isapi.translate")
mediation = importlib.import_module("connectors.sources.mediation.translate")


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
        return "camera" if self.feed in ("gb28181", "isapi") else self.feed


class _Files:
    """Payload files of one folder, each read once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lines = lru_cache(maxsize=16)(self._read_lines)
        self._rows = lru_cache(maxsize=16)(self._read_rows)

    def _read_lines(self, name: str) -> list[bytes]:
        return (self.root / name).read_bytes().splitlines()

    def _read_rows(self, name: str) -> list[dict[str, Any]]:
        data = (self.root / name).read_bytes()
        if name.endswith(".xlsx"):
            return mediation.read_xlsx(data)
        if name.startswith("alarm110/"):
            return alarm110.read_csv(data)
        return mediation.read_csv(data)

    def line(self, name: str, line: int) -> bytes:
        return self._lines(name)[line - 1]

    def rows(self, name: str, numbers: list[int]) -> list[dict[str, Any]]:
        """Data rows by number: CSV rows count from the first data row, XLSX rows are sheet rows
        (the header is sheet row 1), as the simulator's delivery log records them."""
        rows = self._rows(name)
        first = 2 if name.endswith(".xlsx") else 1
        return [rows[n - first] for n in numbers]


def iter_deliveries(folder: Path, registry: DeviceRegistry | None = None, *,
                    received_at_ms: int | None = None) -> Iterator[Delivery]:
    """Translate every delivery of a simulator folder, in delivery order.

    ``received_at_ms`` defaults to a deterministic value per delivery (the simulator's delivery
    offset), so the same folder always yields the same records.
    """
    folder = Path(folder)
    registry = registry or DeviceRegistry.from_csv(folder / "registry.csv")
    files = _Files(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    base = datetime.fromisoformat(str(manifest.get("base_date") or "2026-07-14"))
    base_ms = int(base.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)
    with open(folder / "delivery.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            at = received_at_ms if received_at_ms is not None else base_ms + int(d["offset_s"]) * 1000
            yield _translate(d, files, registry, at)


def _translate(d: dict[str, Any], files: _Files, registry: DeviceRegistry, at: int) -> Delivery:
    feed, ref = d["feed"], d["payload"]
    ctype: str | None = None
    if feed == "gb28181":
        raw = (files.root / ref["file"]).read_bytes()
        result = gb28181.translate(raw, received_at_ms=at)
        ctype = "Application/MANSCDP+xml"
    elif feed == "isapi":
        req = json.loads(files.line(ref["file"], ref["line"]))
        raw = base64.b64decode(req["body_b64"])
        ctype = req.get("content_type")
        result = isapi.translate(raw, content_type=ctype, registry=registry, received_at_ms=at)
    elif feed == "grid":
        raw = files.line(ref["file"], ref["line"])
        result = grid.translate(raw, received_at_ms=at)
        ctype = "application/json"
    elif feed == "door":
        raw = files.line(ref["file"], ref["line"])
        result = door.translate(raw, registry=registry, received_at_ms=at, content_type="application/json")
        ctype = "application/json"
    elif feed == "alarm110":
        rows = files.rows(ref["file"], [ref["row"]])
        raw = json.dumps(rows[0], ensure_ascii=False, sort_keys=True, default=str).encode()
        result = alarm110.translate_row(rows[0], received_at_ms=at, raw_format="alarm110-csv")
    elif feed == "mediation":
        rows = files.rows(ref["file"], list(ref["rows"]))
        raw = json.dumps(rows, ensure_ascii=False, sort_keys=True, default=str).encode()
        fmt = "mediation-xlsx" if ref["file"].endswith(".xlsx") else "mediation-csv"
        result = mediation.translate_rows(rows, received_at_ms=at, raw_format=fmt)
    else:
        raise ValueError(f"unknown feed {feed!r} in delivery {d.get('seq')}")
    return Delivery(int(d["seq"]), feed, raw, ctype, result)


def load_truth(folder: Path) -> dict[str, Any]:
    """The simulator's ground truth (truth.json)."""
    return json.loads((Path(folder) / "truth.json").read_text(encoding="utf-8"))
