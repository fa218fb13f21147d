"""Index administration: template, versioned indices, alias and atomic alias swap.

Contract: the template ``<prefix>-incidents`` covers ``<prefix>-incidents-*``; data lives in
versioned indices ``<prefix>-incidents-v000001``, ``…-v000002`` …; readers and the sink use the
alias ``<prefix>-incidents``, which points at exactly one index (``is_write_index``).
`swap_alias` moves the alias in one ``_aliases`` call (atomic: readers never see zero or two
indices). A replay fills `create_next_index(...)` and then swaps.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError, RequestError

from connectors.elasticsearch.templates import incident_mappings, incident_template

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexNames:
    """Names derived from an index prefix (``Settings.es_index_prefix``)."""

    prefix: str

    @property
    def template(self) -> str:
        return f"{self.prefix}-incidents"

    @property
    def alias(self) -> str:
        return f"{self.prefix}-incidents"

    @property
    def pattern(self) -> str:
        return f"{self.prefix}-incidents-*"

    def versioned(self, version: int) -> str:
        """``<prefix>-incidents-v000001`` for version 1."""
        if version < 1:
            raise ValueError("index versions start at 1")
        return f"{self.prefix}-incidents-v{version:06d}"

    def version_of(self, index: str) -> int | None:
        """The version number of a versioned index name, else None."""
        m = re.fullmatch(re.escape(self.prefix) + r"-incidents-v(\d{6})", index)
        return int(m.group(1)) if m else None


async def put_template(client: AsyncElasticsearch, names: IndexNames, refresh_interval: str = "1s",
                       *, shards: int = 1, replicas: int = 0) -> None:
    """Create or update the composable index template (applies to indices created afterwards)."""
    body = incident_template(names.prefix, refresh_interval, shards=shards, replicas=replicas)
    await client.indices.put_index_template(name=names.template, body=body)


async def alias_targets(client: AsyncElasticsearch, names: IndexNames) -> list[str]:
    """Indices the alias currently points at (sorted; empty if the alias does not exist)."""
    try:
        resp = await client.indices.get_alias(name=names.alias)
    except NotFoundError:
        return []
    return sorted(resp.keys())


async def versioned_indices(client: AsyncElasticsearch, names: IndexNames) -> list[str]:
    """Existing versioned indices, oldest first."""
    resp = await client.indices.get(index=names.pattern, allow_no_indices=True, expand_wildcards="open,closed")
    return sorted((i for i in resp if names.version_of(i) is not None), key=lambda i: names.version_of(i) or 0)


async def create_index(client: AsyncElasticsearch, names: IndexNames, version: int) -> str:
    """Create the versioned index (settings/mappings come from the template); returns its name."""
    index = names.versioned(version)
    await client.indices.create(index=index)
    await client.cluster.health(index=index, wait_for_status="yellow", timeout="30s")
    return index


async def create_next_index(client: AsyncElasticsearch, names: IndexNames) -> str:
    """Create the next versioned index after the newest existing one (for a replay)."""
    existing = await versioned_indices(client, names)
    last = names.version_of(existing[-1]) if existing else 0
    return await create_index(client, names, (last or 0) + 1)


async def swap_alias(client: AsyncElasticsearch, names: IndexNames, new_index: str) -> list[str]:
    """Point the alias at `new_index` only, atomically; returns the indices it was removed from."""
    old = [i for i in await alias_targets(client, names) if i != new_index]
    actions: list[dict[str, Any]] = [{"remove": {"index": i, "alias": names.alias}} for i in old]
    actions.append({"add": {"index": new_index, "alias": names.alias, "is_write_index": True}})
    await client.indices.update_aliases(body={"actions": actions})
    return old


async def ensure_incident_index(client: AsyncElasticsearch, names: IndexNames, refresh_interval: str = "1s",
                                *, shards: int = 1, replicas: int = 0) -> str:
    """Idempotent setup: template, ``v000001`` and the alias if missing; returns the alias target.

    An existing alias target gets the template's new fields added to its mapping (additions only:
    ES refuses to change an existing field, and then the index keeps serving and `pingan replay
    index` builds a new version), so an upgraded worker can index into it right away, and
    `refresh_interval` (a template applies only to indices created after it: a changed
    ``es_refresh_interval`` would otherwise wait for the next replay)."""
    await put_template(client, names, refresh_interval, shards=shards, replicas=replicas)
    targets = await alias_targets(client, names)
    if targets:
        await add_new_fields(client, targets[-1])
        await set_refresh_interval(client, targets[-1], refresh_interval)
        return targets[-1]
    existing = await versioned_indices(client, names)
    index = existing[-1] if existing else await create_index(client, names, 1)
    await swap_alias(client, names, index)
    return index


async def set_refresh_interval(client: AsyncElasticsearch, index: str, interval: str) -> None:
    """Put `interval` (``"250ms"``, ``"1s"``; ``"-1"``: off, for a bulk load) on `index` itself."""
    await client.indices.put_settings(index=index, body={"index": {"refresh_interval": interval}})


async def add_new_fields(client: AsyncElasticsearch, index: str) -> bool:
    """Put the current template's mapping on `index` (new fields only); False (and a warning) when
    ES refuses because an existing field would change: that needs a replay into a new version."""
    try:
        await client.indices.put_mapping(index=index, body=incident_mappings())
        return True
    except RequestError as exc:
        log.warning("index %s keeps its mapping (%s); run `pingan replay index` to rebuild it", index, exc)
        return False


async def drop_all(client: AsyncElasticsearch, names: IndexNames) -> None:
    """Delete every versioned index and the template of `names` (tests and local resets)."""
    for index in await versioned_indices(client, names):
        await client.indices.delete(index=index, ignore_unavailable=True)
    try:
        await client.indices.delete_index_template(name=names.template)
    except NotFoundError:
        pass
