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
        listed = {group_id(g) for g in admin.list_groups()}
        delete_groups(admin, sorted(set(groups) & listed), timeout_s=max(wait_s, 30.0))
        return ours
    finally:
        admin.close()


def delete_groups(admin: KafkaAdminClient, groups: Iterable[str], timeout_s: float = 30.0) -> list[str]:
    """Delete consumer groups, waiting while one still has members (a stopped member is still
    leaving; a killed one stays until its session times out). kafka-python answers NonEmptyGroup per
    group instead of raising. Returns the groups left after `timeout_s` (logged)."""
    pending = list(groups)
    deadline = time.monotonic() + timeout_s
    while pending:
        try:
            result = admin.delete_groups(pending)
        except Exception:  # noqa: BLE001 - the coordinator did not answer: retried below
            log.debug("deleting groups %s raised", pending, exc_info=True)
            result = {}
        answers = dict(result) if not isinstance(result, dict) else result
        pending = [g for g in pending if not (str(answers.get(g, "")) in ("OK", "None")
                                              or "GroupIdNotFound" in str(answers.get(g, "")))]
        if not pending:
            break
        if time.monotonic() > deadline:
            log.warning("consumer groups %s could not be deleted: they still have members", pending)
            break
        time.sleep(1.0)
    return pending


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
