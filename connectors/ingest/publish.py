"""Publish translated deliveries to the raw topics (and rejections to the dead-letter topic).

The file-import path of the connectors: `pingan connectors import DIR` and the tests and
benchmarks use it to push a simulator folder through real Kafka. kafka-python producer with
acks=all and idempotence; `publish_folder` returns only after every record is acknowledged.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from connectors.ingest.files import Delivery, iter_deliveries
from connectors.sources.devices import DeviceRegistry
from schemas.deadletter import make_dead_letter
from schemas.serde import SchemaStore, default_store
from streams.settings import Settings

@dataclass
class PublishReport:
    """Counts of what was published, per topic, plus rejections and dropped inputs."""

    per_topic: Counter = field(default_factory=Counter)
    dead_letters: Counter = field(default_factory=Counter)
    dropped: int = 0
    seconds: float = 0.0
    accepted_by_feed: Counter = field(default_factory=Counter)  # records published, per feed
    dead_by_feed: Counter = field(default_factory=Counter)  # dead letters, per feed
    deliveries_by_feed: Counter = field(default_factory=Counter)

    @property
    def records(self) -> int:
        return sum(self.per_topic.values())


def make_producer(settings: Settings):  # noqa: ANN201 - kafka.KafkaProducer
    """An idempotent, acks=all kafka-python producer for the settings' cluster."""
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                         linger_ms=20, batch_size=256 * 1024, max_in_flight_requests_per_connection=5,
                         compression_type=None, client_id="pingan-import", **settings.kafka_client_options())


def publish_deliveries(settings: Settings, deliveries: Iterable[Delivery], *, store: SchemaStore | None = None,
                       producer=None, progress: Callable[[int], None] | None = None) -> PublishReport:  # noqa: ANN001
    """Send every record to its raw topic and every rejection to the dead-letter topic; flush."""
    store = store or default_store()
    own = producer is None
    producer = producer or make_producer(settings)
    report = PublishReport()
    t0 = time.perf_counter()
    futures = []
    try:
        for d in deliveries:
            res = d.result
            report.dropped += res.dropped
            report.deliveries_by_feed[d.feed] += 1
            report.accepted_by_feed[d.feed] += len(res.records)
            report.dead_by_feed[d.feed] += len(res.rejected)
            for rec in res.records:
                futures.append(producer.send(settings.topic(res.topic), key=res.key_of(rec).encode(),
                                             value=store.encode(res.schema, rec)))
                report.per_topic[res.topic] += 1
            for rej in res.rejected:
                dl = make_dead_letter(source=d.feed, stage="translate", raw=d.raw,
                                      error=rej.reason, error_type=rej.error_type, content_type=d.content_type,
                                      at_ms=int(time.time() * 1000))
                futures.append(producer.send(settings.topic("deadletters.v1"), key=dl["source"].encode(),
                                             value=store.encode("pingan.DeadLetter", dl)))
                report.dead_letters[rej.error_type] += 1
            if progress:
                progress(1)
        producer.flush()
        for f in futures:
            f.get(timeout=60)  # raises if any record was not acknowledged
    finally:
        if own:
            producer.close()
    report.seconds = time.perf_counter() - t0
    return report


def publish_folder(settings: Settings, folder: Path, *, registry: DeviceRegistry | None = None,
                   progress: Callable[[int], None] | None = None) -> PublishReport:
    """Translate a simulator-layout folder and publish it (see `publish_deliveries`)."""
    return publish_deliveries(settings, iter_deliveries(Path(folder), registry), progress=progress)
