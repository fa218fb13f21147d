"""Read-only schema store over HTTP, mounted on the search server (no credential: schemas are public
contracts, and nothing here reveals data).

Contract:
- ``GET /schemas/{fingerprint}``: the writer schema of a fingerprint, given in wire notation (16 hex
  digits in header order) or as the signed decimal Java prints; 200 with the self-contained schema
  JSON (``application/json``; one ``Schema.Parser`` parses it) and headers ``X-Avro-Fingerprint``
  (wire hex), ``X-Avro-Fingerprint-Long``, ``X-Schema-Name``, ``X-Schema-Release``; 404 unknown,
  400 not a fingerprint. Responses may be cached for ever (a fingerprint names one schema).
- ``GET /schemas/{name}/versions``: every version of a full or short name, oldest release first, as
  a JSON list of SchemaEntry objects (``schema`` parsed to JSON); 404 for an unknown name.
- ``GET /schemas``: the names known, with their version counts.
- The entries come from ``schemas.v1`` (``SchemaSource.refresh``), seeded with the server's own
  store, and are re-read when a fingerprint is not found (at most every ``min_refresh_s``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from schemas.registry import SchemaIndex, parse_fingerprint, schema_entries
from schemas.serde import SchemaStore, default_store

log = logging.getLogger(__name__)

Loader = Callable[[], Mapping[str, Mapping[str, Any]]]


class SchemaSource:
    """The entries the endpoint serves: the local store's, plus what ``load`` reads from schemas.v1."""

    def __init__(self, store: SchemaStore | None = None, load: Loader | None = None, *,
                 min_refresh_s: float = 2.0) -> None:
        self.index = SchemaIndex()
        self.index.add(schema_entries(store or default_store()))
        self._load = load
        self._min_refresh_s = min_refresh_s
        self._last = float("-inf")
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> "SchemaSource":
        """A source reading the settings' ``schemas.v1``."""
        from connectors.ingest.schema_topic import read_published

        return cls(load=lambda: read_published(settings))

    async def refresh(self, *, force: bool = False) -> bool:
        """Re-read the topic (rate-limited unless ``force``); True when it was read."""
        if self._load is None:
            return False
        async with self._lock:
            if not force and time.monotonic() - self._last < self._min_refresh_s:
                return False
            self._last = time.monotonic()
            try:
                found = await asyncio.to_thread(self._load)
            except Exception as exc:  # noqa: BLE001 - serve what we have; the next miss retries
                log.warning("cannot read the schema topic: %s: %s", type(exc).__name__, exc)
                return False
            self.index.add(found.values())
            return True

    async def find(self, candidates: Iterable[bytes]) -> dict[str, Any] | None:
        """The entry of the first candidate fingerprint known (refreshing once on a miss)."""
        candidates = list(candidates)
        for attempt in (0, 1):
            for fp in candidates:
                hit = self.index.find(fp)
                if hit is not None:
                    return hit
            if attempt == 0 and not await self.refresh():
                return None
        return None


SOURCE_KEY = web.AppKey("schema_source", SchemaSource)


def _candidates(text: str) -> list[bytes]:
    """Fingerprint readings of a path segment: wire hex first, then a decimal."""
    out: list[bytes] = []
    if len(text) == 16 and all(c in "0123456789abcdefABCDEF" for c in text):
        out.append(bytes.fromhex(text))
    try:
        fp = parse_fingerprint(text)
    except ValueError:
        return out
    return out + ([fp] if fp not in out else [])


def _public(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {**entry, "schema": json.loads(entry["schema"])}


async def get_schema(request: web.Request) -> web.Response:
    """GET /schemas/{fingerprint}."""
    text = request.match_info["fingerprint"]
    candidates = _candidates(text)
    if not candidates:
        return web.json_response({"error": f"not a fingerprint: {text!r} (16 hex digits in wire order, "
                                           "or the signed decimal Java prints)"}, status=400)
    entry = await request.app[SOURCE_KEY].find(candidates)
    if entry is None:
        return web.json_response({"error": f"unknown fingerprint {text}"}, status=404)
    return web.Response(text=entry["schema"], content_type="application/json", charset="utf-8", headers={
        "X-Avro-Fingerprint": entry["fingerprint"], "X-Avro-Fingerprint-Long": str(entry["fingerprint_long"]),
        "X-Schema-Name": entry["name"], "X-Schema-Release": entry["release"],
        "Cache-Control": "public, max-age=31536000, immutable"})


async def get_versions(request: web.Request) -> web.Response:
    """GET /schemas/{name}/versions."""
    source = request.app[SOURCE_KEY]
    name = request.match_info["name"]
    found = source.index.versions(name)
    if not found and await source.refresh():
        found = source.index.versions(name)
    if not found:
        return web.json_response({"error": f"unknown schema {name!r}"}, status=404)
    return web.json_response([_public(e) for e in found], headers={"Cache-Control": "no-cache"})


async def list_schemas(request: web.Request) -> web.Response:
    """GET /schemas."""
    counts: dict[str, int] = {}
    for e in request.app[SOURCE_KEY].index.by_fingerprint.values():
        counts[e["name"]] = counts.get(e["name"], 0) + 1
    return web.json_response({"schemas": [{"name": n, "versions": c} for n, c in sorted(counts.items())]})


def add_schema_routes(app: web.Application, source: SchemaSource) -> None:
    """Mount the read-only schema routes on ``app``."""
    app[SOURCE_KEY] = source
    app.router.add_get("/schemas", list_schemas)
    app.router.add_get("/schemas/{name}/versions", get_versions)
    app.router.add_get("/schemas/{fingerprint}", get_schema)


def make_schema_app(source: SchemaSource) -> web.Application:
    """A stand-alone app serving only the schema routes (tests, a schema-only deployment)."""
    app = web.Application()
    add_schema_routes(app, source)
    return app
