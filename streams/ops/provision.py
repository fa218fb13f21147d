"""Provisioning from the one topic catalogue (`schemas.catalogue`) and the index templates.

Idempotent: creates missing topics, raises partition counts that are too low, applies topic
configs, publishes every schema version the bus may write on ``schemas.v1`` (before any writer
starts: the schema store subscribers resolve fingerprints from); installs the Elasticsearch
template, the first versioned index and its alias.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError

from connectors.elasticsearch.admin import IndexNames, ensure_incident_index
from connectors.elasticsearch.client import async_client
from connectors.ingest.schema_topic import publish_schemas
from schemas.catalogue import SCHEMAS_TOPIC, TOPICS
from streams.settings import Settings


@dataclass
class ProvisionReport:
    """What a provisioning run did."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    repartitioned: list[str] = field(default_factory=list)
    es: list[str] = field(default_factory=list)
    schemas_published: int = 0


def provision_topics(settings: Settings, report: ProvisionReport | None = None, *,
                     only: Iterable[str] | None = None) -> ProvisionReport:
    """Make every catalogue topic (or those named in `only`, by catalogue name, and always the schema
    topic) exist with at least its partitions and its configs; then publish the schemas."""
    report = report or ProvisionReport()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="pingan-provision",
                             request_timeout_ms=15000, **settings.kafka_client_options())
    try:
        existing = set(admin.list_topics())
        names = None if only is None else {*only, SCHEMAS_TOPIC}
        wanted = {settings.topic(t.name): t for t in TOPICS if names is None or t.name in names}
        new = [NewTopic(name, t.partitions, settings.replication_factor, topic_configs=dict(t.config))
               for name, t in wanted.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new, timeout_ms=15000)
            except TopicAlreadyExistsError:
                pass
            report.created.extend(n.name for n in new)
        present = [name for name in wanted if name in existing]
        report.existing.extend(present)
        if present:
            described = admin.describe_topics(present)
            grow = {}
            for d in described:
                have = len(d.get("partitions", []))
                want = wanted[d["name"]].partitions
                if have < want:
                    grow[d["name"]] = NewPartitions(total_count=want)
            if grow:
                admin.create_partitions(grow)
                report.repartitioned.extend(grow)
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=dict(wanted[name].config))
                                 for name in present if wanted[name].config])
    finally:
        admin.close()
    report.schemas_published = publish_schemas(settings)
    return report


def provision_elasticsearch(settings: Settings, report: ProvisionReport | None = None) -> ProvisionReport:
    """Install the index template and make sure the incidents alias points at a versioned index."""
    report = report or ProvisionReport()

    async def run() -> str:
        client = async_client(settings)
        try:
            return str(await ensure_incident_index(client, IndexNames(settings.es_index_prefix),
                                                   settings.es_refresh_interval))
        finally:
            await client.close()

    report.es.append(asyncio.run(run()))
    return report


def provision(settings: Settings) -> ProvisionReport:
    """Topics and Elasticsearch, both idempotent."""
    report = provision_topics(settings)
    provision_elasticsearch(settings, report)
    return report
