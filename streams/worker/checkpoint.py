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
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, ProducerFenced
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import RecordMetadata

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record of a checkpoint: topic, key and value bytes (value None: a tombstone), partition
    (None: the producer's default partitioner, the same murmur2 as Faust's and Java's)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None


#: ``partitioner(key, all_partitions, available_partitions) -> partition`` (aiokafka's signature)
Partitioner = Callable[[bytes | None, list[int], list[int]], int]
#: A queued batch: its future (the batch's metadata once acknowledged) and, per record in it,
#: (the record's index in the records sent, its offset in the batch).
SentBatch = tuple[asyncio.Future, list[tuple[int, int]]]


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
                 partitioner: Partitioner | None = None,
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
        self._partitioner: Partitioner = partitioner if partitioner is not None else DefaultPartitioner()
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

    async def commit(self, partition: int, records: Sequence[OutRecord], next_offset: int) -> list[RecordMetadata]:
        """Commit `records` and the consumed offset `next_offset` of `partition` atomically.

        Returns the records' metadata (offsets), in order. Raises `CheckpointLost` when a newer
        producer fenced this one (nothing of the checkpoint is visible); any other error leaves
        the transaction aborted (or open until the broker's timeout aborts it) and is raised.

        The records go out as whole batches, one per output partition (`send_batches`)."""
        producer = await self._producer(partition)
        sent: list[SentBatch] = []
        try:
            await producer.begin_transaction()
            await send_batches(producer, records, self._partitioner, self.max_request_size, sent)
            await producer.send_offsets_to_transaction(
                {TopicPartition(self.input_topic, partition): next_offset}, self.group_id)
            await producer.commit_transaction()
        except ProducerFenced as exc:
            _settle([fut for fut, _ in sent])
            await self._drop(partition, producer)
            raise CheckpointLost(f"{self.transactional_id(partition)} was fenced by a newer producer") from exc
        except BaseException:
            _settle([fut for fut, _ in sent])
            await self._abort(partition, producer)
            raise
        self.committed += 1
        return record_metadata(len(records), sent)

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


async def send_batches(producer: AIOKafkaProducer, records: Sequence[OutRecord], partitioner: Partitioner,
                       max_request_size: int, sent: list[SentBatch]) -> None:
    """Queue `records` on `producer` as whole batches: grouped by topic partition (in order within
    each), one closed batch per partition (more when one outgrows the producer's batch size),
    appending each queued batch to `sent` (`record_metadata` turns them into per-record offsets).

    What ``producer.send`` per record does, without its per-record cost: a coroutine, a future and
    an accumulator lookup per record, and every future resolved on the ack (~10 µs of the ~30 µs a
    1 kB record cost the worker's thread on this machine). A closed batch is sent at once instead
    of after ``linger_ms``. A record without a partition goes where ``send`` would put it
    (`partitioner` over the topic's partitions in the producer's metadata, read once per topic);
    one above `max_request_size` raises ``MessageSizeTooLargeError`` before it is queued, as
    ``send`` does."""
    partitions = {topic: sorted(producer.client.cluster.partitions_for_topic(topic)
                                or await producer.partitions_for(topic))
                  for topic in {r.topic for r in records if r.partition is None}}
    groups: dict[tuple[str, int], list[int]] = {}
    for i, r in enumerate(records):
        part = r.partition
        if part is None:
            part = partitioner(r.key, partitions[r.topic], partitions[r.topic])
        groups.setdefault((r.topic, part), []).append(i)
    for (topic, part), indexes in groups.items():
        batch, rel = producer.create_batch(), []
        for i in indexes:
            r = records[i]
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(r.key, r.value, [])
            if size > max_request_size:
                raise MessageSizeTooLargeError(f"a record of {r.topic} is {size} bytes, more than "
                                               f"max_request_size ({max_request_size})")
            meta = batch.append(key=r.key, value=r.value, timestamp=None)
            if meta is None:  # full (a batch always takes its first record): queue it, start another
                batch.close()
                sent.append((await producer.send_batch(batch, topic, partition=part), rel))
                batch, rel = producer.create_batch(), []
                meta = batch.append(key=r.key, value=r.value, timestamp=None)
            rel.append((i, meta.offset))
        batch.close()  # a closed batch does not linger: the sender takes it at once
        sent.append((await producer.send_batch(batch, topic, partition=part), rel))


def record_metadata(n: int, sent: Sequence[SentBatch]) -> list[RecordMetadata]:
    """Per record (in the order given to `send_batches`), its metadata once every batch in `sent`
    is acknowledged: its batch's base offset plus its offset in the batch, as aiokafka resolves a
    ``send`` future."""
    out: list[RecordMetadata | None] = [None] * n
    for fut, rel in sent:
        base: RecordMetadata = fut.result()
        for i, offset in rel:
            out[i] = RecordMetadata(base.topic, base.partition, base.topic_partition, base.offset + offset,
                                    base.timestamp, base.timestamp_type, base.log_start_offset)
    return cast(list[RecordMetadata], out)


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
