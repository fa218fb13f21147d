"""streams/worker/checkpoint.py against the real broker: a checkpoint is all or nothing, a newer
producer fences an older one, and a restore finds the last committed record of a partition that
ends in commit markers and aborted transactions."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.worker.checkpoint import CheckpointLost, Checkpoints, OutRecord, last_committed_offsets
from tests.harness.leaks import delete_objects
from tests.harness.kafka import BOOTSTRAP, create_topics, delete_topics, require_kafka, unique_prefix

pytestmark = [pytest.mark.integration]
KAFKA = {"bootstrap_servers": BOOTSTRAP}


@pytest.fixture()
def topics():  # noqa: ANN201
    require_kafka()
    prefix = unique_prefix()
    names = create_topics(prefix, ["in", "out", "changelog"])
    yield dict(zip(["in", "out", "changelog"], names, strict=True)) | {"group": f"{prefix}group"}
    delete_topics(names)
    delete_objects(BOOTSTRAP, None, groups=[f"{prefix}group"])


async def _read(topic: str, isolation_level: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False, isolation_level=isolation_level)
    await consumer.start()
    out: list[bytes] = []
    try:
        for _ in range(6):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return out


async def _committed(group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


async def test_checkpoints_commit_all_or_nothing_and_fence_older_producers(topics: dict) -> None:
    mk = lambda: Checkpoints(kafka=KAFKA, app_id=topics["group"], agent="t", input_topic=topics["in"])  # noqa: E731
    first = mk()
    metas = await first.commit(0, [OutRecord(topics["changelog"], b"k", b"state-1", 0),
                                   OutRecord(topics["out"], b"k", b"out-1")], 10)
    assert [m.offset for m in metas][:1] == [0]
    assert await _committed(topics["group"], topics["in"]) == 10

    # a newer incarnation fences `first`, opens a transaction and is "killed": the transaction is
    # invisible, then aborted when its successor fences it in turn
    killed = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=first.transactional_id(0))
    await killed.start()
    await killed.begin_transaction()
    await killed.send_and_wait(topics["out"], b"out-lost", key=b"k")
    second = mk()
    await second.fence([0])
    with pytest.raises(CheckpointLost):
        await first.commit(0, [OutRecord(topics["out"], b"k", b"out-zombie")], 99)
    await second.commit(0, [OutRecord(topics["out"], b"k", b"out-2")], 20)
    assert await _read(topics["out"], "read_committed") == [b"out-1", b"out-2"]
    assert b"out-lost" in await _read(topics["out"], "read_uncommitted")
    assert await _committed(topics["group"], topics["in"]) == 20
    await first.stop()
    await second.stop()
    await killed.stop()


async def test_the_last_committed_record_is_found_behind_markers_and_aborted_transactions(topics: dict) -> None:
    tp = TopicPartition(topics["changelog"], 0)
    assert await last_committed_offsets(KAFKA, [tp]) == {tp: -1}  # empty
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"{topics['group']}-x")
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(5):
                await producer.send(tp.topic, b"v%d" % i, partition=0)
        # offsets 0-4 committed, 5 a commit marker; then 300 aborted records (more than a window)
        await producer.begin_transaction()
        for i in range(300):
            await producer.send(tp.topic, b"x", partition=0)
        await producer.abort_transaction()
    finally:
        await producer.stop()
    await asyncio.sleep(0.5)
    assert await last_committed_offsets(KAFKA, [tp], window=64) == {tp: 4}


async def test_a_flood_sized_record_is_committed_compressed(topics: dict) -> None:
    """An incident of a big flood (every member event id, and its JSON changelog copy) outgrows
    Kafka's 1 MiB message.max.bytes uncompressed; the worker's producers compress (gzip by default,
    `worker_compression_type`), and the broker's limit applies to the compressed batch."""
    ids = [f"gb28181:3402000000132{i:07d}-20260714T1{i % 60:02d}00" for i in range(60_000)]
    value = ('{"incident_id":"inc-flood","event_ids":' + str(ids).replace("'", '"') + "}").encode()
    assert len(value) > 2 * 1024 * 1024  # far above the broker's default limit uncompressed
    cp = Checkpoints(kafka=KAFKA, app_id=topics["group"], agent="t", input_topic=topics["in"],
                     compression_type="gzip", max_request_size=16 * 1024 * 1024)
    try:
        await cp.commit(0, [OutRecord(topics["changelog"], b"inc-flood", value, 0)], 5)
    finally:
        await cp.stop()
    assert await _read(topics["changelog"], "read_committed") == [value]
    assert await _committed(topics["group"], topics["in"]) == 5


async def test_back_to_back_checkpoints_retry_with_the_configured_backoff(topics: dict) -> None:
    """Checkpoints started right after the previous commit (its markers may still be in flight: the
    broker answers CONCURRENT_TRANSACTIONS) all commit, in order, with the producer retrying after
    `retry_backoff_ms` (`Settings.checkpoint_retry_backoff_ms`), not aiokafka's 100 ms."""
    from streams.settings import Settings

    cp = Checkpoints(kafka=KAFKA, app_id=topics["group"], agent="t", input_topic=topics["in"],
                     retry_backoff_ms=Settings().checkpoint_retry_backoff_ms)
    try:
        for i in range(20):
            await cp.commit(0, [OutRecord(topics["out"], b"k", f"out-{i}".encode())], i + 1)
        assert cp._producers[0]._sender._retry_backoff == Settings().checkpoint_retry_backoff_ms / 1000 < 0.1  # noqa: SLF001
    finally:
        await cp.stop()
    assert cp.committed == 20
    assert await _read(topics["out"], "read_committed") == [f"out-{i}".encode() for i in range(20)]
    assert await _committed(topics["group"], topics["in"]) == 20


async def test_batched_records_get_their_own_offsets_and_the_partitions_send_would_give(topics: dict) -> None:
    """A checkpoint sends one batch per output partition (more when one outgrows the producer's
    512 kB batches); each record's metadata is still its own offset, and a record without a
    partition goes where ``producer.send`` would put it (the partitioner over the topic's partitions)."""
    from aiokafka.errors import MessageSizeTooLargeError
    from aiokafka.partitioner import DefaultPartitioner

    (multi,) = create_topics(topics["group"] + "-", ["multi"], partitions=3)
    cp = Checkpoints(kafka=KAFKA, app_id=topics["group"], agent="t", input_topic=topics["in"], max_request_size=64 * 1024)
    try:
        records = [OutRecord(topics["changelog"], b"c%d" % i, b"state-%d-" % i + b"s" * 1500, 0) for i in range(900)]
        records += [OutRecord(multi, b"key-%d" % i, b"out-%d" % i) for i in range(60)]
        records += [OutRecord(multi, b"key-x", None)]  # a tombstone
        metas = await cp.commit(0, records, 7)
        expected_partition = DefaultPartitioner()
        for r, m in zip(records, metas, strict=True):
            assert m.topic == r.topic
            want = r.partition if r.partition is not None else expected_partition(r.key, [0, 1, 2], [0, 1, 2])
            assert m.partition == want
        assert len({m.partition for m in metas if m.topic == multi}) == 3
        seen = {}
        consumer = AIOKafkaConsumer(topics["changelog"], multi, bootstrap_servers=BOOTSTRAP, group_id=None,
                                    auto_offset_reset="earliest", isolation_level="read_committed")
        await consumer.start()
        try:
            for _ in range(20):
                for tp, batch in (await consumer.getmany(timeout_ms=300)).items():
                    seen.update({(tp.topic, tp.partition, r.offset): (r.key, r.value) for r in batch})
                if len(seen) == len(records):
                    break
        finally:
            await consumer.stop()
        assert seen == {(m.topic, m.partition, m.offset): (r.key, r.value) for r, m in zip(records, metas, strict=True)}
        changelog_offsets = [m.offset for m in metas[:900]]
        assert changelog_offsets == sorted(changelog_offsets) and len(set(changelog_offsets)) == 900
        assert await _committed(topics["group"], topics["in"]) == 7

        # a record above max_request_size fails the checkpoint as `send` would; nothing of it is committed
        with pytest.raises(MessageSizeTooLargeError):
            await cp.commit(0, [OutRecord(multi, b"k", b"ok"), OutRecord(multi, b"big", b"b" * 70_000)], 9)
        assert await _committed(topics["group"], topics["in"]) == 7
        await cp.commit(0, [OutRecord(multi, b"k", b"after")], 11)  # the aborted transaction left the producer usable
        assert await _committed(topics["group"], topics["in"]) == 11
    finally:
        await cp.stop()
        delete_topics([multi])
