"""The schema store on Kafka (topic ``schemas.v1``): publish every writer version, read them back,
and the writers' guard.

Contract:
- ``publish_schemas(settings, store)`` creates the compacted ``schemas.v1`` (catalogue config) when
  missing and sends one ``pingan.SchemaEntry`` per writer version of ``store`` (current and released),
  keyed by the fingerprint in wire hex, acks=all; idempotent (same key, same bytes). Returns the count.
- ``read_published(settings)`` returns ``{fingerprint hex: SchemaEntry dict}`` read from the start of
  the topic to its end offsets at call time; ``{}`` when the topic does not exist.
- ``ensure_published(settings, store)`` is the writers' guard, called before a writer's first send:
  when a current schema of ``store`` is missing from the topic it publishes the store's versions
  (``publish_missing``) and reads again; anything still missing raises ``UnpublishedSchemaError``
  and the writer refuses to send (a ``DeliveryError``-compatible ``retriable`` flag is set, so a
  receiver spools instead of losing what it acknowledged).
- Kafka I/O uses kafka-python (blocking); async callers run it in a thread.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from schemas.catalogue import SCHEMAS_TOPIC, topic
from schemas.registry import SCHEMA_ENTRY, missing, schema_entries
from schemas.serde import SchemaStore, SerdeError, default_store
from streams.settings import Settings

log = logging.getLogger(__name__)


class UnpublishedSchemaError(RuntimeError):
    """A schema the writer would write is not on ``schemas.v1``: the writer refuses to send."""

    retriable = True  # publishing (provisioning) fixes it; what was acknowledged waits in the spool

    def __init__(self, names: list[str]) -> None:
        super().__init__("refusing to write: schema version(s) not published on schemas.v1: " + ", ".join(names)
                         + " (run `pingan infra provision` or `pingan schemas publish`)")
        self.names = names


def ensure_schema_topic(settings: Settings) -> bool:
    """Create the compacted schema topic if missing; True when it was created."""
    t = topic(SCHEMAS_TOPIC)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="pingan-schemas",
                             request_timeout_ms=15000, **settings.kafka_client_options())
    try:
        if settings.topic(t.name) in set(admin.list_topics()):
            return False
        try:
            admin.create_topics([NewTopic(settings.topic(t.name), t.partitions, settings.replication_factor,
                                          topic_configs=dict(t.config))], timeout_ms=15000)
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


def publish_schemas(settings: Settings, store: SchemaStore | None = None, *, timeout_s: float = 30.0) -> int:
    """Send every writer version of ``store`` to the schema topic (creating it first); the count sent."""
    store = store or default_store()
    ensure_schema_topic(settings)
    name = settings.topic(SCHEMAS_TOPIC)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", client_id="pingan-schemas",
                             **settings.kafka_client_options())
    try:
        futures = [producer.send(name, key=e["fingerprint"].encode("ascii"), value=store.encode(SCHEMA_ENTRY, e))
                   for e in schema_entries(store)]
        producer.flush(timeout_s)
        for f in futures:
            f.get(timeout_s)
    finally:
        producer.close(timeout=5)
    return len(futures)


def read_published(settings: Settings, store: SchemaStore | None = None, *,
                   timeout_s: float = 15.0) -> dict[str, dict[str, Any]]:
    """Every SchemaEntry on the schema topic by fingerprint hex (the latest per key); {} if no topic."""
    store = store or default_store()
    name = settings.topic(SCHEMAS_TOPIC)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                             client_id="pingan-schemas-reader", **settings.kafka_client_options())
    try:
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            return {}
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {name} took more than {timeout_s}s")
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    if r.value is None:
                        continue
                    try:
                        _, rec = store.decode(r.value)
                    except SerdeError as exc:  # an entry of a newer SchemaEntry version: keep its key
                        log.warning("unreadable entry in %s at %s@%s: %s", name, r.partition, r.offset, exc)
                        continue
                    found[str(rec["fingerprint"])] = rec
        return found
    finally:
        consumer.close()


def ensure_published(settings: Settings, store: SchemaStore | None = None, *, publish_missing: bool = True) -> int:
    """The writers' guard: every current schema of ``store`` is on the schema topic before a write.
    Publishes the store's versions when some are missing (``publish_missing``); returns how many
    entries it sent; raises ``UnpublishedSchemaError`` when any is still missing."""
    store = store or default_store()
    absent = missing(store, read_published(settings, store))
    sent = 0
    if absent and publish_missing:
        sent = publish_schemas(settings, store)
        absent = missing(store, read_published(settings, store))
    if absent:
        raise UnpublishedSchemaError([f"{sv.name} {sv.fingerprint.hex()}" for sv in absent])
    return sent
