"""bench.throughput.SearchableWatch on the real Elasticsearch node: a poll returns the event ids of
the documents changed and refreshed since the previous poll (plus its small margin), a document
changed again is found again, nothing unrefreshed is reported, and an index of two shards is refused."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from elasticsearch import AsyncElasticsearch

from bench.throughput import SearchableWatch
from connectors.elasticsearch.templates import incident_mappings, index_settings
from streams.settings import Settings

pytestmark = pytest.mark.usefixtures("stack")


@asynccontextmanager
async def _scratch(settings: Settings, unique: str, *, shards: int = 1) -> AsyncIterator[tuple[AsyncElasticsearch, str]]:
    """A client and a fresh index of the incident mapping (refresh off), deleted afterwards. The
    client is made here, in the test's own event loop (aiohttp's timeouts need it)."""
    es = AsyncElasticsearch(settings.es_url, **settings.es_client_options())
    name = f"pingan-test-watch-{unique}"
    try:
        await es.indices.create(index=name, settings=index_settings("-1", shards=shards), mappings=incident_mappings())
        yield es, name
    finally:
        await es.indices.delete(index=name, ignore_unavailable=True)
        await es.close()


def _doc(n: int, *ids: str) -> dict[str, object]:
    return {"incident_id": f"inc-{n}", "event_ids": list(ids)}


async def test_a_poll_reports_the_ids_of_documents_changed_since_the_last(settings: Settings, unique: str) -> None:
    async with _scratch(settings, unique) as (es, index):
        watch = SearchableWatch(es, index, margin=0)
        await watch.check_single_shard()
        assert await watch.poll() == set()
        for n in range(3):
            await es.index(index=index, id=f"inc-{n}", document=_doc(n, f"e{n}"))
        assert await watch.poll() == set()  # not refreshed: not searchable yet
        await es.indices.refresh(index=index)
        assert await watch.poll() == {"e0", "e1", "e2"}
        assert await watch.poll() == set()  # nothing changed since
        await es.index(index=index, id="inc-1", document=_doc(1, "e1", "e9"))
        await es.indices.refresh(index=index)
        assert await watch.poll() == {"e1", "e9"}  # the changed document only, under its new _seq_no

        margin = SearchableWatch(es, index, margin=1)
        assert await margin.poll() == {"e0", "e2", "e1", "e9"}
        await es.index(index=index, id="inc-5", document=_doc(5, "e5"))
        await es.indices.refresh(index=index)
        assert await margin.poll() == {"e1", "e9", "e5"}  # the last operation before, then the new one


async def test_pages_past_one_search(settings: Settings, unique: str) -> None:
    async with _scratch(settings, unique) as (es, index):
        watch = SearchableWatch(es, index, margin=0)
        watch.PAGE = 4
        ops: list[dict[str, object]] = []
        for n in range(10):
            ops += [{"index": {"_index": index, "_id": f"inc-{n}"}}, _doc(n, f"e{n}")]
        await es.bulk(body=ops, refresh=True)
        assert await watch.poll() == {f"e{n}" for n in range(10)}
        assert watch.searches == 3


async def test_an_index_of_two_shards_is_refused(settings: Settings, unique: str) -> None:
    async with _scratch(settings, unique, shards=2) as (es, index):
        with pytest.raises(RuntimeError, match="2"):
            await SearchableWatch(es, index).check_single_shard()
