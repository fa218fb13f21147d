"""Checkpoints: a batch's state changes, outputs and consumed offsets in one Kafka transaction.

Used by the correlate agent when ``processing_guarantee`` is ``exactly_once`` (streams/settings.py,
docs/faults.md "Checkpoints"). Per input partition there is one transactional producer, with the
transactional id ``<app_id>-<agent>-<partition>``; a checkpoint is

    begin → changelog records + output records → send_offsets_to_transaction → commit

so a worker killed at any point leaves either the whole checkpoint in Kafka or none of it
(consumers reading with ``isolation_level="read_committed"`` never see an aborted or open one).
Starting the producer of a partition (`Checkpoints.fence`) fences every older producer with the
same id — a previous incarnation of this worker, or another worker that owned the partition
before a rebalance — and completes its open transaction first, so the committed offsets read
after it are final. The worker fences its partitions before it reads their committed offsets
(`SafeOffsetsConsumer.perform_seek`).

No Faust here: records are bytes, the caller encodes them (the changelog records with Faust's
own serializers, streams/worker/engine.py).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record of a checkpoint: topic, key and value bytes (value None: a tombstone), partition
    (None: the producer's default partitioner, the same murmur2 as Faust's and Java's)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None


class CheckpointLost(RuntimeError):
    """The checkpoint was not committed because a newer producer of the partition's transactional id
    fenced this one (another worker took the partition, or the coordinator aborted the transaction
    with a new epoch): drop the batch's state and read the partition again from its committed
    offset, whoever owns it then (`PinganFaustApp.reinitialize`)."""


class Checkpoints:
    """Transactional producers of one agent, one per input partition (see the module docstring)."""

    def __init__(self, *, kafka: Mapping[str, Any], app_id: str, agent: str, input_topic: str,
                 transaction_timeout_ms: int = 30_000, linger_ms: int = 5, compression_type: str | None = None,
                 max_request_size: int = 2 * 1024 * 1024,
                 partitioner: Callable[[bytes | None, list[int], list[int]], int] | None = None,
                 retry_backoff_ms: int = 10) -> None:
        """`partitioner`: how an output record without a partition finds one (None: aiokafka's
        default; the worker passes the same murmur2 computed faster, streams/worker/partitioner.py).
        `retry_backoff_ms`: the producers' wait before a retried request. The broker writes a
        committed transaction's markers after it answered the commit, so the next checkpoint's
        AddOffsetsToTxn (and at times its EndTxn) is often answered CONCURRENT_TRANSACTIONS for a
        few milliseconds; aiokafka then waits this long (at its 100 ms default, up to one checkpoint in
        six of the latency probe took ~120 ms instead of ~30 ms on a single local broker)."""
        self.kafka = dict(kafka)
        self.partitioner = partitioner
        self.group_id = app_id
        self.prefix = f"{app_id}-{agent}"
        self.input_topic = input_topic
        self.transaction_timeout_ms = transaction_timeout_ms
        self.linger_ms = linger_ms
        self.compression_type = compression_type
        self.max_request_size = max_request_size
        self.retry_backoff_ms = retry_backoff_ms
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._lock = asyncio.Lock()
        self.committed = 0  # checkpoints committed by this worker (metrics, tests)

    def transactional_id(self, partition: int) -> str:
        return f"{self.prefix}-{partition}"

    def _new_producer(self, partition: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(**self.kafka, transactional_id=self.transactional_id(partition),
                                enable_idempotence=True, acks="all", linger_ms=self.linger_ms,
                                max_batch_size=512 * 1024, max_request_size=self.max_request_size,
                                compression_type=self.compression_type,
                                transaction_timeout_ms=self.transaction_timeout_ms,
                                retry_backoff_ms=self.retry_backoff_ms,
                                **({"partitioner": self.partitioner} if self.partitioner is not None else {}))

    async def fence(self, partitions: Iterable[int]) -> None:
        """(Re)start the producers of `partitions`: fences older producers of the same ids and
        ends their open transactions (committed or aborted) before this returns."""
        async with self._lock:
            for p in sorted(set(partitions)):
                old = self._producers.pop(p, None)
                if old is not None:
                    await _stop_quietly(old)
                producer = self._new_producer(p)
                await self._start(producer, p)  # InitProducerId: fences the previous epoch of this id
                self._producers[p] = producer

    async def _start(self, producer: AIOKafkaProducer, partition: int, warn_every_s: float = 15.0) -> None:
        """`producer.start()`, logging a warning every `warn_every_s` while it waits: aiokafka retries
        InitProducerId silently while the coordinator is still ending an older transaction of the
        id (CONCURRENT_TRANSACTIONS), and the partition's stream waits for it."""
        start = asyncio.ensure_future(producer.start())
        waited = 0.0
        while True:
            try:
                done, _ = await asyncio.wait({start}, timeout=warn_every_s)
            except asyncio.CancelledError:
                start.cancel()
                raise
            if done:
                return start.result()
            waited += warn_every_s
            log.warning("checkpoint producer %s: InitProducerId not done after %.0f s (the transaction "
                        "coordinator is still ending an older transaction of this id; input partition %s[%d] "
                        "waits)", self.transactional_id(partition), waited, self.input_topic, partition)

    async def _producer(self, partition: int) -> AIOKafkaProducer:
        producer = self._producers.get(partition)
        if producer is None:
            await self.fence([partition])
            producer = self._producers[partition]
        return producer

    async def commit(self, partition: int, records: Sequence[OutRecord], next_offset: int) -> list[Any]:
        """Commit `records` and the consumed offset `next_offset` of `partition` atomically.

        Returns the records' metadata (offsets), in order. Raises `CheckpointLost` when a newer
        producer fenced this one (nothing of the checkpoint is visible); any other error leaves
        the transaction aborted (or open until the broker's timeout aborts it) and is raised."""
        producer = await self._producer(partition)
        futures: list[asyncio.Future] = []
        try:
            await producer.begin_transaction()
            for r in records:
                futures.append(await producer.send(r.topic, r.value, key=r.key, partition=r.partition))
            await producer.send_offsets_to_transaction(
                {TopicPartition(self.input_topic, partition): next_offset}, self.group_id)
            await producer.commit_transaction()
        except ProducerFenced as exc:
            _settle(futures)
            await self._drop(partition, producer)
            raise CheckpointLost(f"{self.transactional_id(partition)} was fenced by a newer producer") from exc
        except BaseException:
            _settle(futures)
            await self._abort(partition, producer)
            raise
        self.committed += 1
        return [f.result() for f in futures]

    async def _abort(self, partition: int, producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.abort_transaction(), timeout=10)
        except Exception:  # noqa: BLE001 - the broker aborts it after transaction_timeout_ms
            await self._drop(partition, producer)

    async def _drop(self, partition: int, producer: AIOKafkaProducer) -> None:
        if self._producers.get(partition) is producer:
            del self._producers[partition]
        await _stop_quietly(producer)

    async def stop(self) -> None:
        async with self._lock:
            producers, self._producers = list(self._producers.values()), {}
        for producer in producers:
            await _stop_quietly(producer)


def _settle(futures: Sequence[asyncio.Future]) -> None:
    """Retrieve the outcome of a failed checkpoint's sends when they end (they fail with it; the
    checkpoint's own error says why), so asyncio does not log each as never retrieved."""
    for fut in futures:
        fut.add_done_callback(_retrieve)


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=10)
    except (KafkaError, asyncio.TimeoutError, OSError) as exc:
        log.warning("stopping a transactional producer: %r", exc)
    except ProducerFenced:
        pass


async def last_committed_offsets(kafka: Mapping[str, Any], tps: Iterable[TopicPartition], *,
                                 window: int = 256, timeout_s: float = 30.0) -> dict[TopicPartition, int]:
    """The offset of the last record of each partition that a read_committed consumer sees (-1: none).

    In a partition written by transactions the last offset is a commit marker (or an aborted
    transaction), so "end offset - 1" is not a record and a restore that waits to reach it never
    ends: this reads back from the end, `window` records at first, until a committed record is
    found."""
    tps = sorted({TopicPartition(tp.topic, tp.partition) for tp in tps})
    out: dict[TopicPartition, int] = {}
    if not tps:
        return out
    consumer = AIOKafkaConsumer(**kafka, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)  # the last stable offsets (read_committed)
        begins = await consumer.beginning_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for tp in tps:
            upper, begin, back, last = ends[tp], begins[tp], window, -1
            while last < 0 and upper > begin:
                lower = max(begin, upper - back)
                consumer.seek(tp, lower)
                while await consumer.position(tp) < upper:
                    if loop.time() > deadline:
                        raise TimeoutError(f"reading the tail of {tp} took over {timeout_s} s")
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    for record in batch.get(tp, ()):
                        if record.offset < upper:
                            last = max(last, record.offset)
                upper, back = lower, back * 4
            out[tp] = last
    finally:
        await consumer.stop()
    return out


def by_partition(items: Iterable[Any], partition_of: Callable[[Any], int]) -> dict[int, list[Any]]:
    """`items` grouped by partition, each group in the original order."""
    groups: dict[int, list[Any]] = {}
    for item in items:
        groups.setdefault(partition_of(item), []).append(item)
    return groups
