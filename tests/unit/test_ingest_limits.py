"""Pure pieces of issue 14: record size checks, dead-letter truncation, the blob store, and the
producer's reset after a poisoned send (with a fake aiokafka producer)."""
from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from connectors.ingest.blobs import BlobStore
from connectors.ingest.limits import (KAFKA_DEFAULT_MAX_MESSAGE_BYTES, default_limits, digest, limits_from_configs,
                                      record_size)
from connectors.ingest.producer import (DeliveryError, ProducerConfig, ProducerStateError, RecordProducer,
                                        is_producer_state_error, is_retriable)
from schemas.deadletter import MAX_REASON_CHARS, make_dead_letter, truncate_raw, truncation_of
from schemas.serde import default_store


def test_limits_topic_then_broker_then_producer_cap() -> None:
    lim = limits_from_configs(2_000_000, {"raw.camera.v1": 500_000, "gone": None}, 1_500_000)
    assert lim.discovered
    assert lim.limit("raw.camera.v1") == 500_000
    assert lim.limit("gone") == 1_500_000  # broker 2 MB, capped by max_request_size
    assert lim.limit("other") == 1_500_000
    assert limits_from_configs(None, {}, None).limit("x") == KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    d = default_limits(4 << 20)
    assert not d.discovered and d.limit("x") == KAFKA_DEFAULT_MAX_MESSAGE_BYTES


def test_fits_and_check_at_the_boundary() -> None:
    lim = limits_from_configs(100_000, {}, None)
    key = b"k" * 20
    overhead = record_size(key, b"")
    assert lim.fits("t", key, b"v" * (100_000 - overhead))
    assert not lim.fits("t", key, b"v" * (100_000 - overhead + 1))
    assert lim.check("t", key, b"v") is None
    reason = lim.check("t", key, b"v" * 200_000)
    assert reason is not None and "200000 bytes" in reason and "100000" in reason
    assert lim.value_budget("t", key, 1000) == 100_000 - overhead - 1000
    assert lim.value_budget("t", key, 10**9) == 0


def test_a_1_5_mb_alarm_does_not_fit_kafkas_default() -> None:
    assert not default_limits(4 << 20).fits("raw.camera.v1", b"dev", b"x" * 1_500_000)


def test_truncate_raw_keeps_id_head_and_digest() -> None:
    raw = bytes(range(256)) * 10_000
    dl = make_dead_letter(source="grid", stage="translate", raw=raw, error="bad json", at_ms=1)
    cut = truncate_raw(dl, keep=1000, ref="spool:receiver/blobs/abc")
    assert cut["raw"] == raw[:1000] and cut["dead_letter_id"] == dl["dead_letter_id"]
    assert cut["reason"].startswith("bad json [raw truncated: kept 1000 of 2560000 bytes; sha256=")
    info = truncation_of(cut)
    assert info == {"kept": 1000, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                    "ref": "spool:receiver/blobs/abc"}
    assert truncation_of(dl) is None
    nowhere = truncation_of(truncate_raw(dl, keep=10, ref=None))
    assert nowhere is not None and nowhere["ref"] is None
    long = make_dead_letter(source="g", stage="s", raw=raw, error="x" * 10_000, at_ms=1)
    cut = truncate_raw(long, keep=5, ref=None)
    assert len(cut["reason"]) <= MAX_REASON_CHARS and truncation_of(cut) is not None
    assert digest(raw) == (hashlib.sha256(raw).hexdigest(), len(raw))


def test_dead_letter_item_truncates_to_fit_the_topic() -> None:
    p = RecordProducer("127.0.0.1:1", store=default_store())
    p.limits = limits_from_configs(200_000, {}, None)
    raw = b"<x>" + b"a" * 3_000_000
    dl = make_dead_letter(source="gb28181", stage="receive", raw=raw, error="too big", at_ms=1)
    assert not p.dead_letter_fits(dl)
    topic, key, value = p.dead_letter_item(dl, ref="spool:r/blobs/" + "0" * 64)
    assert p.limits.fits(topic, key, value)
    _, rec = default_store().decode(value)
    assert rec["raw"] == raw[: len(rec["raw"])] and 0 < len(rec["raw"]) <= 64 * 1024
    assert truncation_of(rec)["size"] == len(raw)
    small = make_dead_letter(source="g", stage="s", raw=b"abc", error="e", at_ms=1)
    assert default_store().decode(p.dead_letter_item(small)[2])[1]["raw"] == b"abc"


def test_blob_store_is_content_addressed_bounded_and_durable(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=100)
    ref = store.put(b"x" * 60)
    assert ref == "blobs/" + hashlib.sha256(b"x" * 60).hexdigest()
    assert store.put(b"x" * 60) == ref  # idempotent, no extra space
    assert store.get(ref) == b"x" * 60 and store.used_bytes == 60
    assert store.put(b"y" * 60) is None  # full: nothing written
    assert len(list((tmp_path / "blobs").iterdir())) == 1
    assert BlobStore(tmp_path / "blobs", max_bytes=100).used_bytes == 60  # rescanned
    with pytest.raises(ValueError):
        store.path("../etc/passwd")


# ------------------------------------------------------------------ producer reset after a poisoned send
class OutOfOrderSequenceNumber(Exception):
    """Named like aiokafka's: the producer-session error."""


class MessageSizeTooLargeError(Exception):
    """Named like aiokafka's: the record's own fault (not retriable)."""

    retriable = False


class FakeKafka:
    """aiokafka-like producers sharing one log: after a too-large record, the same producer fails
    every later send with OutOfOrderSequenceNumber (poisoned), until it is replaced."""

    def __init__(self) -> None:
        self.log: list[bytes] = []
        self.created = 0

    def factory(self, **_: Any) -> "FakeProducer":
        self.created += 1
        return FakeProducer(self)


class FakeProducer:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka
        self.poisoned = False
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> "asyncio.Future[Any]":
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.stopped:
            fut.set_exception(RuntimeError("stopped"))
        elif len(value) > 100:
            self.poisoned = True
            fut.set_exception(MessageSizeTooLargeError("too large"))
        elif self.poisoned:
            fut.set_exception(OutOfOrderSequenceNumber("out of order"))
        else:
            self.kafka.log.append(value)
            fut.set_result(len(self.kafka.log) - 1)
        return fut


def test_error_classes() -> None:
    assert is_producer_state_error(OutOfOrderSequenceNumber())
    assert not is_producer_state_error(MessageSizeTooLargeError())
    assert is_retriable(ProducerStateError("x")) and not is_retriable(MessageSizeTooLargeError())


def test_a_refused_record_does_not_poison_the_records_after_it() -> None:
    kafka = FakeKafka()
    p = RecordProducer("fake:1", config=ProducerConfig(), producer_factory=kafka.factory)

    async def go() -> None:
        with pytest.raises(DeliveryError) as info:
            await p.send_batch([("t", b"k", b"ok-1"), ("t", b"k", b"x" * 500), ("t", b"k", b"ok-2")])
        exc = info.value
        assert not exc.retriable
        assert [(i, type(e).__name__) for i, e in exc.failures] == [(1, "MessageSizeTooLargeError")]
        # the innocent record after it was re-sent on a fresh producer
        assert kafka.log == [b"ok-1", b"ok-2"] and p.resets == 1 and kafka.created == 2
        # later sends go through
        await p.send_batch([("t", b"k", f"later-{i}".encode()) for i in range(4)])
        assert kafka.log[2:] == [b"later-0", b"later-1", b"later-2", b"later-3"]

    asyncio.run(go())


def test_records_that_keep_failing_on_producer_state_are_retriable() -> None:
    class AlwaysPoisoned(FakeProducer):
        async def send(self, topic: str, value: bytes, key: bytes | None = None) -> "asyncio.Future[Any]":
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_exception(OutOfOrderSequenceNumber("still"))
            return fut

    kafka = FakeKafka()
    p = RecordProducer("fake:1", config=ProducerConfig(state_retries=2),
                       producer_factory=lambda **_: AlwaysPoisoned(kafka))

    async def go() -> None:
        with pytest.raises(DeliveryError) as info:
            await p.send_batch([("t", None, b"a"), ("t", None, b"b")])
        assert info.value.retriable  # the caller spools them
        assert all(isinstance(e, ProducerStateError) for _, e in info.value.failures)
        assert p.resets == 3  # the first attempt and each of the two re-sends

    asyncio.run(go())


def test_concurrent_failures_reset_the_producer_once() -> None:
    kafka = FakeKafka()
    p = RecordProducer("fake:1", producer_factory=kafka.factory)

    async def go() -> None:
        await p.start()
        gen = p.generation
        await asyncio.gather(p.reset_generation(gen, OutOfOrderSequenceNumber()),
                             p.reset_generation(gen, OutOfOrderSequenceNumber()))
        assert p.resets == 1

    asyncio.run(go())


class MetadataHang(FakeProducer):
    """Like aiokafka once its client is closed: a send waiting for a topic's metadata never returns."""

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> "asyncio.Future[Any]":
        if topic == "slow" and self.kafka.created == 1:
            await asyncio.Event().wait()  # nobody will ever set it
        return await super().send(topic, value, key)


def hanging_factory(kafka: FakeKafka) -> Any:
    def make(**_: Any) -> MetadataHang:
        kafka.created += 1
        return MetadataHang(kafka)
    return make


def test_a_send_waiting_on_a_producer_that_another_send_reset_is_re_sent_on_the_new_one() -> None:
    """The CI flake of tests/faults/test_receiver_oversize.py: one send waited forever on a reset
    producer, so every later spool drain answered "Kafka has not confirmed earlier records yet"."""
    kafka = FakeKafka()
    p = RecordProducer("fake:1", producer_factory=hanging_factory(kafka))

    async def go() -> None:
        await p.start()
        slow = asyncio.ensure_future(p.send_batch([("slow", b"k", b"waiting")], timeout=5))
        await asyncio.sleep(0.01)  # the slow send is now waiting inside the first producer
        with pytest.raises(DeliveryError) as info:
            await p.send_batch([("t", b"k", b"x" * 500)], timeout=5)  # refused for good: resets the producer
        assert not info.value.retriable and p.resets == 1
        assert await asyncio.wait_for(slow, timeout=2) == [0]  # re-sent and confirmed by the second producer
        assert kafka.log == [b"waiting"] and kafka.created == 2
        await p.send_batch([("t", b"k", b"after")], timeout=5)  # nothing is stuck
        assert kafka.log == [b"waiting", b"after"]

    asyncio.run(go())


def test_stopping_the_producer_ends_a_send_that_would_wait_forever() -> None:
    kafka = FakeKafka()
    p = RecordProducer("fake:1", producer_factory=hanging_factory(kafka))

    async def go() -> None:
        await p.start()
        slow = asyncio.ensure_future(p.send_batch([("slow", b"k", b"waiting")]))
        await asyncio.sleep(0.01)
        await p.stop()
        with pytest.raises(DeliveryError):
            await asyncio.wait_for(slow, timeout=2)
        assert kafka.log == []

    asyncio.run(go())


def test_a_reset_wakes_the_sends_of_the_producer_it_stops_not_of_the_one_started_meanwhile() -> None:
    class SlowStop(MetadataHang):
        async def stop(self) -> None:
            await asyncio.sleep(0.05)  # long enough for another send to start the next producer
            await super().stop()

    kafka = FakeKafka()

    def make(**_: Any) -> SlowStop:
        kafka.created += 1
        return SlowStop(kafka)

    p = RecordProducer("fake:1", producer_factory=make)

    async def go() -> None:
        await p.start()
        slow = asyncio.ensure_future(p.send_batch([("slow", b"k", b"waiting")], timeout=5))
        await asyncio.sleep(0.01)
        resetting = asyncio.ensure_future(p.reset())
        await asyncio.sleep(0.01)
        await p.send_batch([("t", b"k", b"meanwhile")], timeout=5)  # starts producer 2 during the stop
        assert p.generation == 2
        await resetting
        assert 2 in p._gone and not p._gone[2].is_set()  # producer 2 is live: its sends are not woken
        assert await asyncio.wait_for(slow, timeout=2) == [1]  # the stopped one's send, re-sent on producer 2
        assert kafka.log == [b"meanwhile", b"waiting"]

    asyncio.run(go())
