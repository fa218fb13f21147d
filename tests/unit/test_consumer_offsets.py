"""The commit rule of `streams.worker.engine.SafeOffsetsConsumer` (pure bookkeeping, no broker).

The delivery side (seek epochs, refetch after discarded batches) is exercised on the real
three-broker cluster by tests/faults/test_cluster.py."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest
from intervaltree import IntervalTree

from faust.types import TP
from streams.worker.engine import SafeOffsetsConsumer, committable_offset

T = TP("raw.grid.v1", 0)


@pytest.mark.parametrize(("committed", "acked", "expected"), [
    (None, [0, 1, 2, 4], (3, [0, 1, 2])),        # nothing committed yet: the first run
    (5, [5, 6, 7], (8, [5, 6, 7])),
    (5, [6, 7], (None, [])),                     # offset 5 is not acknowledged: do not pass it
    (5, [7, 8], (None, [])),
    (5, [3, 4, 5, 6, 9], (7, [3, 4, 5, 6])),     # stale acks below the commit are consumed
    (5, [3, 4], (None, [3, 4])),
    (5, [], (None, [])),
    (0, [0], (1, [0])),
    (5, [5, 5, 6], (7, [5, 5, 6])),              # a duplicate ack does not break the run
])
def test_committable_offset(committed, acked, expected) -> None:  # noqa: ANN001
    assert committable_offset(committed, acked) == expected


def bare_consumer(committed: int | None) -> SafeOffsetsConsumer:
    """Only the bookkeeping attributes `_new_offset` reads (no transport, no thread)."""
    c = SafeOffsetsConsumer.__new__(SafeOffsetsConsumer)
    c._acked = defaultdict(list)  # noqa: SLF001
    c._acked_index = defaultdict(set)  # noqa: SLF001
    c._gap = defaultdict(IntervalTree)  # noqa: SLF001
    c._committed_offset = defaultdict(lambda: None)  # noqa: SLF001
    c._committed_offset[T] = committed  # noqa: SLF001
    return c


def ack(c: SafeOffsetsConsumer, *offsets: int) -> None:
    for o in offsets:
        c._acked[T].append(o)  # noqa: SLF001
        c._acked_index[T].add(o)  # noqa: SLF001


def test_head_record_not_acked_holds_the_commit() -> None:
    # Faust 0.15's own rule (`min(acked) - committed > 1`) would commit 8 here and skip offset 5.
    c = bare_consumer(5)
    ack(c, 6, 7)
    assert c._new_offset(T) is None  # noqa: SLF001
    ack(c, 5)
    assert c._new_offset(T) == 8  # noqa: SLF001
    assert c._acked[T] == [] and c._acked_index[T] == set()  # noqa: SLF001


def test_compaction_gap_is_committable_once_the_record_after_it_is_acked() -> None:
    c = bare_consumer(10)
    c._mark_gap(T, 10, 14)  # offsets 10..13 were compacted away; 14 revealed it  # noqa: SLF001
    assert c._new_offset(T) == 14  # noqa: SLF001 - up to 14 only: 14 itself is not a gap
    c._committed_offset[T] = 14  # noqa: SLF001
    ack(c, 14, 15)
    assert c._new_offset(T) == 16  # noqa: SLF001
    assert not c._gap[T]  # noqa: SLF001


def test_gap_does_not_cover_a_record_that_was_not_acked() -> None:
    c = bare_consumer(10)
    c._mark_gap(T, 12, 14)  # noqa: SLF001
    ack(c, 14)
    assert c._new_offset(T) is None  # noqa: SLF001 - 10 and 11 exist and are not acknowledged
    ack(c, 10, 11)
    assert c._new_offset(T) == 15  # noqa: SLF001


async def test_a_failed_send_is_remembered_for_the_commit(tmp_path) -> None:  # noqa: ANN001
    import asyncio

    from streams.worker.app import build_app
    from streams.settings import Settings

    app = build_app(Settings(run_dir=tmp_path, registry_path=None), with_index=False, table_store="memory://")
    loop = asyncio.get_running_loop()
    ok, bad, later = loop.create_future(), loop.create_future(), loop.create_future()
    for fut in (ok, bad, later):
        app.watch_send(fut)
    assert app.outstanding == {ok, bad, later}  # a commit now waits for all three
    ok.set_result(None)
    await asyncio.sleep(0)
    assert app.failed_send is None and app.outstanding == {bad, later}
    bad.set_exception(RuntimeError("KafkaTimeoutError: batch expired"))
    later.set_exception(RuntimeError("second"))
    await asyncio.sleep(0)
    assert str(app.failed_send) == "KafkaTimeoutError: batch expired"  # the first failure wins
    assert app.outstanding == set()


def test_tables_are_tracked(tmp_path) -> None:  # noqa: ANN001
    from streams.worker.app import build_app
    from streams.worker.engine import TrackedTable
    from streams.settings import Settings

    app = build_app(Settings(run_dir=tmp_path, registry_path=None), with_index=False, table_store="memory://")
    assert app.tables and all(isinstance(t, TrackedTable) for t in app.tables.values())


def test_a_trailing_transaction_marker_is_committable_without_a_record_after_it() -> None:
    """read_committed: records 10..12 and the commit marker 13 end the partition; the marker is
    never delivered, the fetch position passes it (`_skip_control_records` records the gap)."""
    c = bare_consumer(10)
    ack(c, 10, 11, 12)
    assert c._new_offset(T) == 13  # noqa: SLF001
    c._committed_offset[T] = 13  # noqa: SLF001
    c._mark_gap(T, 13, 14)  # noqa: SLF001
    assert c._new_offset(T) == 14  # noqa: SLF001 - caught up: committed == end offset
    assert not c._gap[T]  # noqa: SLF001


class _Skipper:
    """What `_skip_control_records` reads of the consumer, with a scripted aiokafka state."""

    def __init__(self, highwater: object, position: int | None) -> None:
        self._highwater, self._position = highwater, position

    def highwater(self, tp: object) -> int | None:
        if isinstance(self._highwater, BaseException):
            raise self._highwater
        return self._highwater  # type: ignore[return-value]

    async def position(self, tp: object) -> int | None:
        return self._position


def _skipper(highwater: object, position: int | None = 14) -> SafeOffsetsConsumer:
    c = bare_consumer(10)
    stub = _Skipper(highwater, position)
    c.highwater = stub.highwater  # type: ignore[method-assign]
    c.position = stub.position  # type: ignore[method-assign]
    c._next_offset = {T: 13}  # noqa: SLF001
    c._reseek = {}  # noqa: SLF001
    c._marker_probe = {}  # noqa: SLF001
    c._seeking = False  # noqa: SLF001
    c._seek_epoch = 1  # noqa: SLF001
    c.app = SimpleNamespace(consumer_generation_id=7)  # type: ignore[misc]
    return c


@pytest.mark.parametrize("highwater", [None, AssertionError("Partition is not assigned")],
                         ids=["not-fetched-since-assigned", "revoked-by-a-rebalance"])
def test_skipping_markers_waits_while_the_end_offset_is_unknown(highwater: object) -> None:
    """Seen with two workers: after a rebalance aiokafka's highwater was None (and asserts for a
    partition just taken away); the drain loop crashed on ``None <= int`` and the worker exited."""
    c = _skipper(highwater)
    asyncio.run(c._skip_control_records(1, 7, lambda topic: True, {}))  # noqa: SLF001
    assert c._next_offset == {T: 13} and not c._gap[T]  # noqa: SLF001 - nothing assumed


def test_skipping_markers_records_the_gap_once_a_refetch_confirms_it() -> None:
    c = _skipper(14, position=14)
    asyncio.run(c._skip_control_records(1, 7, lambda topic: True, {}))  # noqa: SLF001
    # seen once: refetched from 13 before anything is assumed
    assert c._next_offset == {T: 13} and not c._gap[T] and c._reseek == {T: 13}  # noqa: SLF001
    c._reseek = {}  # noqa: SLF001 - the refetch ran and returned no record: the position is 14 again
    asyncio.run(c._skip_control_records(1, 7, lambda topic: True, {}))  # noqa: SLF001
    assert c._next_offset == {T: 14}  # noqa: SLF001
    assert sorted((i.begin, i.end) for i in c._gap[T]) == [(13, 14)]  # noqa: SLF001


def test_a_refetch_that_delivers_records_is_no_gap() -> None:
    c = _skipper(20, position=20)
    asyncio.run(c._skip_control_records(1, 7, lambda topic: True, {}))  # noqa: SLF001
    assert c._reseek == {T: 13}  # noqa: SLF001
    c._reseek = {}  # noqa: SLF001 - the refetch delivered 13..18; a marker at 19 is left
    c._next_offset[T] = 19  # noqa: SLF001
    asyncio.run(c._skip_control_records(1, 7, lambda topic: True, {}))  # noqa: SLF001
    assert not c._gap[T] and c._reseek == {T: 19}  # noqa: SLF001 - (19, 20) is probed in turn
    c._reseek = {}  # noqa: SLF001
    asyncio.run(c._skip_control_records(1, 7, lambda topic: True, {}))  # noqa: SLF001
    assert sorted((i.begin, i.end) for i in c._gap[T]) == [(19, 20)] and c._next_offset[T] == 20  # noqa: SLF001


def test_a_seek_keeps_a_pending_refetch_and_markers_are_not_assumed_meanwhile() -> None:
    """The kill test's stall: a batch fetched while `perform_seek` ran was handed out by aiokafka
    after the seek had set the position, so the position moved past records never delivered. The
    seek's bookkeeping (`_owe`) used to drop the refetch that batch asked for; the records were then
    taken for transaction markers and skipped. Now the refetch survives the seek, and the marker
    check leaves the partition alone until it has run."""
    c = _skipper(20, position=20)
    c._reseek = {T: 13}  # noqa: SLF001 - the stale batch (offsets 13..19) was not delivered
    c._owe(T, 13)  # noqa: SLF001 - the seek that ran meanwhile ends: 13 is owed
    assert c._reseek == {T: 13} and c._next_offset[T] == 13  # noqa: SLF001
    asyncio.run(c._skip_control_records(1, 7, lambda topic: True, {}))  # noqa: SLF001
    assert c._next_offset[T] == 13 and not c._gap[T]  # noqa: SLF001 - nothing taken for markers
