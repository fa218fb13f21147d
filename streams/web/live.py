"""Live incidents and dispositions for ``GET /api/stream`` (server-sent events).

Contract: one `LiveHub` per web server reads ``incidents.v1`` and ``dispositions.v1`` (prefixed by
``Settings.topic``) with an aiokafka consumer that joins no group and commits nothing: it assigns
every partition and starts at the end (only what changes from now on). It starts with the first
subscriber (`subscribe`; `ready` is set once positions are fixed) and keeps running until `stop`
(app cleanup). Every decoded record goes to every subscriber's bounded queue as
``(kind, record)`` with kind "incident" or "disposition"; a subscriber whose queue is full loses
the oldest item (counted in ``dropped``), never blocks the others. Filtering by jurisdiction is the
caller's (`streams.web.operations`), per subscriber. ``known_paths`` remembers the admin path of
the incidents seen (bounded) so dispositions and merges can be filtered too, and
``known_owners`` their own admin code (whether a credential sees all of an incident). Kafka unreachable:
the hub retries every `retry_s` seconds (also while neither topic exists: it never creates them); subscribers stay connected (heartbeats) meanwhile.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

from aiokafka import AIOKafkaConsumer

from connectors.elasticsearch.documents import incident_admin_path
from schemas.serde import SchemaStore, default_store
from streams.settings import Settings

log = logging.getLogger(__name__)

INCIDENTS_TOPIC = "incidents.v1"
DISPOSITIONS_TOPIC = "dispositions.v1"
QUEUE_SIZE = 500
KNOWN_PATHS = 50_000

Item = tuple[str, dict[str, Any]]


class LiveHub:
    """Fan-out of incidents.v1 / dispositions.v1 records to SSE subscribers."""

    def __init__(self, settings: Settings, *, store: SchemaStore | None = None, retry_s: float = 2.0) -> None:
        self.settings = settings
        self.topics = {settings.topic(INCIDENTS_TOPIC): "incident",
                       settings.topic(DISPOSITIONS_TOPIC): "disposition"}
        self.store = store or default_store()
        self.retry_s = retry_s
        self.ready = asyncio.Event()
        self.dropped = 0
        self.known_paths: OrderedDict[str, list[str]] = OrderedDict()
        #: incident id → its own admin code (the area holding all its events), for the same ids
        self.known_owners: dict[str, str] = {}
        self._subscribers: set[asyncio.Queue[Item]] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def subscribe(self) -> asyncio.Queue[Item]:
        """A new subscriber queue (starts the consumer on first use)."""
        q: asyncio.Queue[Item] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._subscribers.add(q)
        if self._task is None and not self._stopping:
            self._task = asyncio.create_task(self._run(), name="pingan-live-hub")
        return q

    def unsubscribe(self, q: asyncio.Queue[Item]) -> None:
        self._subscribers.discard(q)

    def publish(self, kind: str, record: dict[str, Any]) -> None:
        """Hand one record to every subscriber (oldest dropped when a queue is full)."""
        if kind == "incident" and record.get("incident_id"):
            inc_id = str(record["incident_id"])
            path = self.known_paths.pop(inc_id, None)
            if record.get("status") != "merged" or path is None:
                path = incident_admin_path(record)
                self.known_owners[inc_id] = str(record.get("admin_code") or "")
            self.known_paths[inc_id] = path
            while len(self.known_paths) > KNOWN_PATHS:
                gone, _ = self.known_paths.popitem(last=False)
                self.known_owners.pop(gone, None)
        for q in list(self._subscribers):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                self.dropped += 1
            q.put_nowait((kind, record))

    async def _consumer(self) -> AIOKafkaConsumer:
        """A started consumer holding every partition of both topics, positioned at their ends."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="latest",
                                    client_id="pingan-web-live", request_timeout_ms=15_000,
                                    isolation_level="read_committed")
        try:
            await consumer.start()
            # only topics that exist: a subscription to a missing topic would let the broker
            # auto-create it (provisioning creates topics, never a reader)
            existing = sorted(set(self.topics) & set(await consumer.topics()))
            if not existing:
                raise RuntimeError(f"none of {sorted(self.topics)} exists")
            # no group: the subscription is assigned every partition of the topics, no commits
            consumer.subscribe(topics=existing)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not consumer.assignment():
                if loop.time() > deadline:
                    raise RuntimeError(f"none of {sorted(self.topics)} exists")
                await asyncio.sleep(0.1)
            parts = sorted(consumer.assignment())
            await consumer.seek_to_end(*parts)
            for tp in parts:  # fix the positions now: records produced after `ready` are seen
                await consumer.position(tp)
        except BaseException:
            await asyncio.shield(consumer.stop())
            raise
        return consumer

    async def _run(self) -> None:
        while not self._stopping:
            try:
                consumer = await self._consumer()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Kafka away: retry, subscribers keep waiting
                log.warning("live stream: cannot read %s: %s", sorted(self.topics), exc)
                await asyncio.sleep(self.retry_s)
                continue
            self.ready.set()
            try:
                while not self._stopping:
                    batches = await consumer.getmany(timeout_ms=500)
                    for tp, msgs in batches.items():
                        kind = self.topics.get(tp.topic)
                        for msg in msgs:
                            try:
                                _, record = self.store.decode(msg.value)
                            except Exception as exc:  # noqa: BLE001 - a bad record is skipped, logged
                                log.warning("live stream: undecodable record %s@%s: %s", tp, msg.offset, exc)
                                continue
                            if kind:
                                self.publish(kind, record)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("live stream: consumer failed: %s; reconnecting", exc)
                self.ready.clear()
                await asyncio.sleep(self.retry_s)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(consumer.stop())

    async def stop(self) -> None:
        """Stop the consumer (idempotent)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
