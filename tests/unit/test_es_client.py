"""The project's Elasticsearch client and its orjson serializer (pure: no request is sent)."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest
from elasticsearch.exceptions import SerializationError
from elasticsearch.serializer import JSONSerializer

from connectors.elasticsearch.client import OrjsonSerializer, async_client
from connectors.elasticsearch.documents import incident_action
from streams.settings import Settings
from tests.unit.test_documents import _incident

STOCK, FAST = JSONSerializer(), OrjsonSerializer()


def test_incident_documents_and_their_bulk_lines_are_the_text_the_stock_serializer_writes() -> None:
    """Byte for byte the stock client's text for what the index agent sends: compact separators,
    Chinese text unescaped, quotes, backslashes and control characters escaped, floats and nulls
    alike."""
    odd = _incident(events=[{**_incident()["events"][1], "text": '引号"反斜杠\\换行\n制表\t\x01 / é 𠀋'}])
    for inc in (_incident(), odd, _incident(severity=5, links=[])):
        action = incident_action(inc, "pingan-incidents")
        meta = {"index": {k: v for k, v in action.items() if k.startswith("_") and k != "_source"}}
        for line in (meta, action["_source"]):
            assert FAST.dumps(line) == STOCK.dumps(line)
    assert "柒山村" in FAST.dumps(incident_action(_incident(), "x")["_source"])


@pytest.mark.parametrize("value", [
    {1: "int key"},                       # orjson refuses non-str keys: the stock text
    {"big": 2**70},                      # past 64 bits
    {"d": Decimal("1.5"), "u": uuid.UUID(int=7)},
    {"when": dt.datetime(2026, 12, 2, 8, 30, 1, 250, tzinfo=dt.timezone.utc), "day": dt.date(2026, 12, 2)},
    ["a", 1, 2.5, True, None, {"n": {"m": []}}],
])
def test_what_orjson_refuses_or_would_write_differently_is_written_as_the_stock_client_does(value: object) -> None:
    assert FAST.dumps(value) == STOCK.dumps(value)


def test_strings_and_bytes_pass_through_and_unserializable_values_raise_as_before() -> None:
    assert FAST.dumps('{"pre":"built"}') == '{"pre":"built"}'
    assert FAST.dumps(b"raw") == b"raw"
    with pytest.raises(SerializationError):
        FAST.dumps({"x": object()})


def test_responses_parse_as_json_and_what_orjson_refuses_falls_back() -> None:
    body = '{"took":3,"errors":false,"items":[{"index":{"_id":"inc-1","status":201,"_version":4}}],"名":"值"}'
    assert FAST.loads(body) == json.loads(body)
    assert FAST.loads('{"n":%d}' % 2**70) == {"n": 2**70}
    with pytest.raises(SerializationError):
        FAST.loads("{not json")


def test_async_client_uses_the_serializer_the_settings_url_and_credentials() -> None:
    settings = Settings(es_url="http://127.0.0.1:1", es_username="u", es_password="p")

    async def check() -> None:
        client = async_client(settings, timeout=7)
        try:
            transport = client.transport
            assert isinstance(transport.serializer, OrjsonSerializer)
            assert isinstance(transport.deserializer.serializers["application/json"], OrjsonSerializer)
            assert [h.get("host") for h in transport.hosts] == ["127.0.0.1"]
            assert transport.kwargs["http_auth"] == ("u", "p")
            assert transport.kwargs["timeout"] == 7
        finally:
            await client.close()

    asyncio.run(check())
