"""Helpers the benchmarks share (and the tests reuse): dropping an isolated namespace from the shared
Kafka and Elasticsearch.

Processes, settings environments, free ports and `pingan simulate` are in `infra.processes`;
provisioning in `streams.ops.provision`; group and end offsets in `streams.ops.replay`; tables that
fit the terminal in `bench.tables`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from elasticsearch import AsyncElasticsearch
from kafka import KafkaAdminClient

from connectors.elasticsearch.admin import IndexNames, drop_all
from streams.settings import Settings

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# namespaces on the shared engines


def group_id(entry: Any) -> str:
    """The group id of a `list_groups` entry (a dict in kafka-python 3, a tuple before)."""
    if isinstance(entry, Mapping):
        return str(entry.get("group_id"))
    return str(entry[0] if isinstance(entry, tuple) else entry)


def namespace_topics(admin: Any, settings: Settings) -> list[str]:
    """Every topic of the namespace: the settings' topic prefix, or the app id (Faust's changelogs)."""
    return [t for t in admin.list_topics() if t.startswith(settings.topic_prefix) or t.startswith(settings.app_id)]


def drop_kafka_namespace(settings: Settings, groups: Iterable[str] = (), *, client_id: str = "pingan-bench",
                         wait_s: float = 20.0) -> list[str]:
    """Delete every topic of the namespace (`namespace_topics`) and the given consumer groups;
    waits up to `wait_s` until the topics are gone (deletion is asynchronous). Returns the topics."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id=client_id)
    try:
        ours = namespace_topics(admin, settings)
        if ours:
            admin.delete_topics(ours, timeout_ms=30000, raise_errors=False)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and set(ours) & set(admin.list_topics()):
                time.sleep(0.5)
        wanted = set(groups)
        deadline = time.monotonic() + max(wait_s, 30.0)
        while True:
            left = sorted(wanted & {group_id(g) for g in admin.list_groups()})
            if not left:
                break
            try:
                # errors come back per group (NonEmptyGroup while a stopped member is still
                # leaving, a coordinator moving), not raised: list the groups again to know
                admin.delete_groups(left)
            except Exception:  # noqa: BLE001 - the coordinator did not answer; retry
                log.debug("deleting groups %s raised", left, exc_info=True)
            if not set(left) & {group_id(g) for g in admin.list_groups()}:
                break
            if time.monotonic() > deadline:
                log.warning("consumer groups %s could not be deleted: they still have members", left)
                break
            time.sleep(1.0)
        return ours
    finally:
        admin.close()


async def drop_indices_async(client: Any, settings: Settings) -> None:
    """Delete the namespace's indices (every ``<es prefix>-*``) and its template."""
    await drop_all(client, IndexNames(settings.es_index_prefix))
    await client.indices.delete(index=f"{settings.es_index_prefix}-*", ignore_unavailable=True,
                                allow_no_indices=True)


def drop_indices(settings: Settings) -> None:
    """`drop_indices_async` with a client of its own."""
    async def run() -> None:
        client = AsyncElasticsearch(settings.es_url)
        try:
            await drop_indices_async(client, settings)
        finally:
            await client.close()

    asyncio.run(run())


def drop_namespace(settings: Settings, groups: Iterable[str] = ()) -> None:
    """Topics and consumer groups (`drop_kafka_namespace`), then indices (`drop_indices`)."""
    drop_kafka_namespace(settings, groups)
    drop_indices(settings)
