"""The project's Elasticsearch client: one constructor, JSON through orjson.

Contract: `async_client(settings, **options)` is an ``AsyncElasticsearch`` for ``settings.es_url``
with the settings' credentials (`Settings.es_client_options`) and `OrjsonSerializer` for request
bodies and JSON responses; `options` are further client keyword arguments (``timeout``, …).

`OrjsonSerializer` is the client's own `JSONSerializer` with orjson doing the work: the same
compact, non-ASCII-preserving JSON text for what the project sends (dicts of str keys, str, int,
float, bool, None, lists), several times faster — the index agent serializes every document of
every bulk, which was ~7 % of the edge worker's CPU with the standard library (bench profile,
docs/sizing.md). Whatever orjson refuses (non-str keys, integers past 64 bits, lone surrogates,
types only `JSONSerializer.default` knows) goes through `JSONSerializer` unchanged, so no input
serializes differently from the stock client except non-finite floats, which orjson writes as
``null`` where the standard library writes ``NaN`` (JSON Elasticsearch rejects). Dates go through
`JSONSerializer.default` (``isoformat``) as before.
"""
from __future__ import annotations

from typing import Any

import orjson
from elasticsearch import AsyncElasticsearch
from elasticsearch.serializer import JSONSerializer

from streams.settings import Settings

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


class OrjsonSerializer(JSONSerializer):
    """`JSONSerializer` whose ``dumps``/``loads`` use orjson, falling back to it on refusal."""

    def dumps(self, data: Any) -> Any:
        """``str``/``bytes`` as they are, else the JSON text (a ``str``, as the bulk helpers expect)."""
        if isinstance(data, (str, bytes)):
            return data
        try:
            return orjson.dumps(data, default=self.default, option=_OPTIONS).decode()
        except TypeError:  # orjson.JSONEncodeError: non-str keys, big ints, surrogates, unknown types
            return super().dumps(data)

    def loads(self, s: Any) -> Any:
        """The parsed JSON; what orjson refuses (integers past 64 bits) is parsed by `json`."""
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return super().loads(s)


def async_client(settings: Settings, **options: Any) -> AsyncElasticsearch:
    """An ``AsyncElasticsearch`` for the settings' URL and credentials, JSON through orjson."""
    return AsyncElasticsearch(settings.es_url, serializer=OrjsonSerializer(), **{**settings.es_client_options(), **options})
