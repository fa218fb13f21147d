"""Error classification and deterministic dead-letter records."""
from __future__ import annotations

import asyncio
import hashlib

import pytest

from schemas.deadletter import DeadLetterCounter, ErrorClass, classify, dead_letter_id, make_dead_letter
from schemas.serde import SchemaStore


# Stand-ins named like the real client errors (this module must not import Kafka/ES code).
class KafkaError(Exception):
    retriable = False


class KafkaTimeoutError(KafkaError):
    retriable = False  # name alone makes it retriable


class NotLeaderForPartitionError(KafkaError):
    retriable = True


class UnknownTopicOrPartitionError(KafkaError):
    retriable = False


class RequestTimedOutError(KafkaError):
    retriable = True


class TransportError(Exception):  # elasticsearch 7.x: args = (status_code, error, info)
    @property
    def status_code(self):
        return self.args[0]


class ESConnectionError(TransportError):
    pass


ESConnectionError.__name__ = "ConnectionError"


class ConnectionTimeout(ESConnectionError):
    pass


class ApiError(Exception):  # elasticsearch 8.x style: .meta.status
    def __init__(self, status: int) -> None:
        super().__init__(f"status {status}")
        self.meta = type("Meta", (), {"status": status})()


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionRefusedError(111, "refused"), ErrorClass.RETRIABLE),
        (ConnectionResetError(), ErrorClass.RETRIABLE),
        (TimeoutError(), ErrorClass.RETRIABLE),
        (asyncio.TimeoutError(), ErrorClass.RETRIABLE),
        (KafkaTimeoutError(), ErrorClass.RETRIABLE),
        (NotLeaderForPartitionError(), ErrorClass.RETRIABLE),
        (RequestTimedOutError(), ErrorClass.RETRIABLE),
        (UnknownTopicOrPartitionError(), ErrorClass.DEAD_LETTER),
        (ESConnectionError("N/A", "conn refused"), ErrorClass.RETRIABLE),
        (ConnectionTimeout("N/A", "timed out"), ErrorClass.RETRIABLE),
        (TransportError(429, "es_rejected_execution_exception"), ErrorClass.RETRIABLE),
        (TransportError(503, "unavailable"), ErrorClass.RETRIABLE),
        (TransportError(400, "mapper_parsing_exception"), ErrorClass.DEAD_LETTER),
        (TransportError(404, "index_not_found"), ErrorClass.DEAD_LETTER),
        (ApiError(502), ErrorClass.RETRIABLE),
        (ApiError(409), ErrorClass.DEAD_LETTER),
        (ValueError("bad AlarmTime"), ErrorClass.DEAD_LETTER),
        (UnicodeDecodeError("gb2312", b"\xff", 0, 1, "illegal"), ErrorClass.DEAD_LETTER),
        (KeyError("DeviceID"), ErrorClass.DEAD_LETTER),
        (MemoryError(), ErrorClass.FATAL),
        (SystemExit(1), ErrorClass.FATAL),
        (KeyboardInterrupt(), ErrorClass.FATAL),
        (AssertionError("invariant"), ErrorClass.FATAL),
        (asyncio.CancelledError(), ErrorClass.FATAL),
    ],
)
def test_classify(exc: BaseException, expected: ErrorClass) -> None:
    assert classify(exc) is expected


def test_retriable_attribute_on_any_exception() -> None:
    err = RuntimeError("broker says retry")
    err.retriable = True  # type: ignore[attr-defined]
    assert classify(err) is ErrorClass.RETRIABLE


RAW = '<?xml version="1.0" encoding="GB2312"?><Notify><CmdType>Alarm'.encode("gb2312")


def _dl(**kw):
    args = dict(source="camera", stage="translate", raw=RAW, error=ValueError("mismatched tag"),
                topic="raw.camera.v1", partition=2, offset=4711, at_ms=1784017412000)
    args.update(kw)
    return make_dead_letter(**args)


def test_make_dead_letter_fields_and_deterministic_id() -> None:
    rec = _dl(content_type="Application/MANSCDP+xml")
    expected = hashlib.sha1(b"camera|translate|" + RAW + b"|raw.camera.v1|2|4711").hexdigest()
    assert rec["dead_letter_id"] == expected == dead_letter_id("camera", "translate", RAW, "raw.camera.v1", 2, 4711)
    assert rec == {
        "dead_letter_id": expected, "source": "camera", "stage": "translate", "topic": "raw.camera.v1",
        "partition": 2, "offset": 4711, "error_class": "dead_letter", "error_type": "ValueError",
        "reason": "mismatched tag", "raw": RAW, "content_type": "Application/MANSCDP+xml",
        "at": 1784017412000, "redrive_of": None,
    }
    # same input, same place -> same id regardless of error text or time
    assert _dl(error="other", at_ms=1)["dead_letter_id"] == expected
    # any change of place or bytes -> different id
    ids = {expected, _dl(offset=4712)["dead_letter_id"], _dl(partition=None)["dead_letter_id"],
           _dl(raw=RAW + b" ")["dead_letter_id"], _dl(stage="normalize")["dead_letter_id"],
           _dl(topic=None, partition=None, offset=None)["dead_letter_id"]}
    assert len(ids) == 6
    assert _dl(topic=None, partition=None, offset=None)["dead_letter_id"] == \
        hashlib.sha1(b"camera|translate|" + RAW + b"|||").hexdigest()


def test_make_dead_letter_error_variants_and_encodes() -> None:
    as_text = _dl(error="missing DeviceID", error_type="missing_field")
    assert (as_text["error_class"], as_text["error_type"], as_text["reason"]) == ("dead_letter", "missing_field", "missing DeviceID")
    assert _dl(error="x")["error_type"] == "error"
    retr = _dl(error=TimeoutError(), stage="index")
    assert retr["error_class"] == "retriable" and retr["reason"] == "TimeoutError()"
    assert _dl(error=ValueError("x" * 10_000))["reason"].endswith("…")
    assert _dl(raw=bytearray(b"ab"))["raw"] == b"ab"
    with pytest.raises(TypeError):
        _dl(raw="text")
    with pytest.raises(ValueError):
        _dl(source="")
    store = SchemaStore()
    redrive = _dl(redrive_of=as_text["dead_letter_id"])
    assert store.decode(store.encode("DeadLetter", redrive)) == ("pingan.DeadLetter", redrive)


def test_counter_counts_per_source_and_class() -> None:
    counter = DeadLetterCounter()
    for rec in (_dl(), _dl(offset=1), _dl(error=TimeoutError()), _dl(source="grid")):
        counter.add(rec)
    assert counter.snapshot() == {"camera": {"dead_letter": 2, "retriable": 1}, "grid": {"dead_letter": 1}}
    assert counter.total == 4
    snap = counter.snapshot()
    snap["camera"]["dead_letter"] = 99
    assert counter.snapshot()["camera"]["dead_letter"] == 2
    assert DeadLetterCounter().snapshot() == {}
