"""A Faust consumer whose offset bookkeeping cannot skip a message across a rebalance.

Found by the three-broker fault test (tests/faults/test_cluster.py), which lost 1 to 119 events
in about one run in three. faust-streaming 0.15's `Consumer` has three defects that combine:

1. Recovery resumes the stream partitions and the fetcher *before* `perform_seek()` has moved
   them back to the committed offsets, so a batch fetched from the old position (ahead of the
   committed offset, e.g. after commits failed while the group coordinator was down) reaches
   the drain loop after the seek.
2. The drain loop then treats the distance between the seek target and that stale record as a
   compacted-away *gap* (including the record itself), and drops every record below it as
   "already read" — the refetched records between the committed offset and the stale one are
   never delivered, yet the gap makes them committable.
3. `_new_offset` lets the commit pass exactly one unacknowledged record at the head of a
   partition (`min(acked) - committed > 1` instead of `> 0`).

This subclass keeps Faust's ack lists and interval tree but replaces the three decisions:

- Seeks (`seek`, `seek_wait`, `perform_seek`) run one at a time and bump a *seek epoch* when
  they start and when they end; nothing is fetched while one runs. A record is delivered only if
  no seek is in progress and the epoch is the one its batch was fetched in; otherwise it is not
  delivered, and its partition is sought back (under the same lock, in the consumer's thread) to
  the next offset this consumer owes its streams (`_next_offset`, set by every seek and advanced
  by every delivery). Faust's `getmany` is inlined so that the records it would drop (a partition
  paused mid-batch, flow stopped) are sought back to as well: nothing fetched is ever skipped.
- A gap is recorded only between records of fresh batches, and excludes the record that
  revealed it: offsets ``[next, offset)`` do not exist in the log (compaction).
- The commit advances only over a consecutive run of acknowledged (or gap) offsets that starts
  exactly at the committed offset (`committable_offset`, pure and unit-tested).

Duplicates are possible (a stale record that was already delivered is delivered again after the
seek); every stage downstream is idempotent, so at-least-once stays effectively exactly-once.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING, ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

#: How long a commit waits for the sends started before it (then it is skipped, not forced).
COMMIT_BARRIER_S = 30.0



def committable_offset(committed: int | None, acked: list[int]) -> tuple[int | None, list[int]]:
    """The offset to commit next and the acked offsets it consumes.

    `acked` is sorted; offsets below `committed` are stale and consumed without effect. The
    commit moves only over a consecutive run that starts at `committed` (or at the first acked
    offset when nothing was committed yet); otherwise ``(None, stale)``."""
    start = 0
    if committed is not None:
        while start < len(acked) and acked[start] < committed:
            start += 1
        if start == len(acked) or acked[start] != committed:
            return None, acked[:start]
    if start == len(acked):
        return None, acked[:start]
    end = start + 1
    while end < len(acked) and acked[end] <= acked[end - 1] + 1:
        end += 1
    return acked[end - 1] + 1, acked[:end]


class SafeOffsetsConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with epoch-checked delivery and a strict commit (module doc)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._seek_epoch = 0  # bumped when a seek starts and when it ends
        self._seeking = 0  # seeks in progress: nothing fetched meanwhile is delivered
        self._next_offset: dict[TP, int] = {}  # next offset owed to the streams, per partition
        self._reseek: dict[TP, int | None] = {}  # partitions whose fetched records were discarded
        self._seek_lock = asyncio.Lock()  # seeks never interleave (`_next_offset` follows the last one)

    # -- seeks ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def _seeking_window(self) -> AsyncIterator[None]:
        """Run one seek at a time; batches fetched before or during it are stale."""
        async with self._seek_lock:
            self._seeking += 1
            self._seek_epoch += 1
            try:
                yield
            finally:
                self._seeking -= 1
                self._seek_epoch += 1

    def _owe(self, tp: TP, offset: int) -> None:
        self._next_offset[tp] = offset
        self._reseek.pop(tp, None)

    async def seek(self, partition: TP, offset: int) -> None:
        async with self._seeking_window():
            await super().seek(partition, offset)
            self._owe(partition, offset)

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        async with self._seeking_window():
            await super().seek_wait(partitions)
            for tp, offset in partitions.items():
                self._owe(tp, offset)

    async def perform_seek(self) -> None:
        """Seek every stream partition to its committed offset.

        aiokafka's `seek_to_committed` leaves a partition without a committed offset (or with
        offset 0) where it was, possibly past records that were fetched but never processed;
        with ``auto_offset_reset=earliest`` such a partition is sought to its first offset."""
        async with self._seeking_window():
            committed = {ensure_TP(tp): off for tp, off in (await self.seek_to_committed()).items()}
            streams = {tp for tp in self.assignment() if not self._is_changelog_tp(tp)}
            targets = {tp: off for tp, off in committed.items() if tp in streams and off}
            unset = sorted(streams - set(targets))
            if unset and self.app.conf.consumer_auto_offset_reset == "earliest":
                earliest = await self.earliest_offsets(*unset)
                await super().seek_wait({tp: earliest[tp] for tp in unset if earliest.get(tp) is not None})
            for tp in unset:
                targets[tp] = await self.position(tp)
            for tp, target in targets.items():
                self._read_offset[tp] = target or None
                if target is not None:
                    self._owe(tp, target)
            self._committed_offset.update({tp: off for tp, off in committed.items() if off})

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._next_offset.pop(tp, None)
            self._reseek.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _seek_back(self) -> None:
        """Seek partitions whose fetched records were discarded back to the next offset owed.

        Runs under the seek lock, so it never undoes a `perform_seek` that ran meanwhile: the
        targets are read after any such seek has set `_next_offset` (and cleared `_reseek`)."""
        async with self._seeking_window():
            pending, self._reseek = self._reseek, {}
            assigned = self.assignment()
            targets = {tp: self._next_offset.get(tp, first) for tp, first in pending.items()
                       if tp in assigned and self._next_offset.get(tp, first) is not None}
            if targets:
                self.log.info("Refetching records fetched before a seek and not delivered: %s", ", ".join(
                    f"{tp.topic}[{tp.partition}] from {off}" for tp, off in sorted(targets.items())))
                await super().seek_wait(targets)  # in the consumer's thread (Faust's `seek` is not)
                for tp, offset in targets.items():
                    self._owe(tp, offset)

    # -- delivery --------------------------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised on the real stack
        """Faust's fetch → conductor loop, with its `getmany` inlined, in lockstep with the position.

        Every record aiokafka returns is either delivered, advancing `_next_offset`, or not
        delivered (a seek or rebalance intervened, flow stopped, the partition was paused), and
        then its partition is sought back to `_next_offset` before the next fetch. (Faust's own
        `getmany` silently skips records of a partition paused mid-batch and stops a batch when
        flow stops, after aiokafka's position has moved past them.) So at every fetch the position
        equals `_next_offset`, and a record above it proves the offsets in between are absent
        from the log (a compaction gap)."""
        callback = self.callback
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set  # noqa: SLF001 - same check as Faust's loop
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                if self._seeking:  # a seek is running: whatever is fetched now is stale
                    await asyncio.sleep(0.02)
                    continue
                if self._reseek:
                    await self._seek_back()
                    continue
                self.diag.set_flag(CONSUMER_FETCHING)
                epoch, generation = self._seek_epoch, self.app.consumer_generation_id
                records, active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    self.diag.unset_flag(CONSUMER_FETCHING)
                    await asyncio.sleep(0)
                    continue
                since_yield = 0
                for tp, record in self.scheduler.iterate(records):
                    offset = record.offset
                    if (tp in self._reseek or self._seeking or self._seek_epoch != epoch or not self.flow_active
                            or self.app.consumer_generation_id != generation
                            or not (active is None or tp in active or tp in self._buffered_partitions)):
                        self._reseek.setdefault(tp, offset)  # not delivered: refetch from _next_offset
                        continue
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    message = self._to_message(tp, record)
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    expected = self._next_offset.get(tp)
                    if expected is not None and offset > expected and acks_enabled_for(message.topic):
                        self._mark_gap(tp, expected, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    delivery = callback(message)
                    result = await self.wait_first(delivery, self.suspend_flow.wait())
                    if delivery not in result.done or self._seeking or self._seek_epoch != epoch:
                        self._reseek.setdefault(tp, offset)
                        continue
                    self._next_offset[tp] = offset + 1
                    self._read_offset[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _mark_gap(self, tp: TP, start: int, end: int) -> None:
        """Offsets [start, end) are absent from the log (compaction): committable once reached."""
        gaps = self._gap[tp]
        gaps.addi(start, end)
        gaps.merge_overlaps()

    # -- commits ---------------------------------------------------------------------------------

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        gaps = self._gap[tp]
        if gaps:
            top = max(acked)
            fill = [o for iv in sorted(gaps.overlap(0, top + 1), key=lambda iv: iv.begin)
                    for o in range(iv.begin, iv.end) if o not in self._acked_index[tp]]
            if fill:
                acked.extend(fill)
                gaps.chop(0, max(fill[-1] + 1, top + 1))
        acked.sort()
        offset, consumed = committable_offset(self._committed_offset[tp], acked)
        if consumed:
            del acked[:len(consumed)]
            self._acked_index[tp].difference_update(consumed)
        return offset


    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        """Commit only once every send started before this commit is acknowledged.

        Faust flushes the producer first, but its buffer flush gives up after 0.1 s without
        progress (e.g. while a changelog partition has no leader), so a commit could pass table
        writes still in the buffer, lost if the worker then dies. Here the sends this worker
        started (outputs and changelog records, `PinganFaustApp.outstanding`) are a barrier: if
        they are not acknowledged within `COMMIT_BARRIER_S`, this commit is skipped (the next one
        retries). Once any send has failed the worker crashes instead of committing, and the
        records are processed again after a restart."""
        app = cast(PinganFaustApp, self.app)
        barrier = list(getattr(app, "outstanding", ()))
        if barrier:  # (Faust's commit below flushes the producer; these complete on their own)
            _done, pending = await asyncio.wait(barrier, timeout=COMMIT_BARRIER_S)
            if pending:
                self.log.warning("Commit postponed: %d sends not acknowledged after %.0f s",
                                 len(pending), COMMIT_BARRIER_S)
                return False
        failed = getattr(app, "failed_send", None)
        if failed is not None:
            self.log.error("Not committing %r: a send failed: %r", dict(offsets), failed)
            await self.crash(failed)
            return False
        return await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)


class SafeOffsetsTransport(faust_aiokafka.Transport):
    """The aiokafka transport with `SafeOffsetsConsumer`."""

    Consumer = SafeOffsetsConsumer


class TrackedTable(faust.Table):
    """`faust.Table` whose changelog sends join the app's commit barrier (`watch_send`)."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        watch = getattr(self.app, "watch_send", None)
        if watch is not None:
            watch(fut)
        return fut


class PinganFaustApp(faust.App):
    """`faust.App` whose consumer is `SafeOffsetsConsumer` and whose tables are `TrackedTable`s."""

    #: The first send of this worker that failed for good (see `watch_send`); set once.
    failed_send: BaseException | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("Table", TrackedTable)
        super().__init__(*args, **kwargs)
        self.outstanding: set[asyncio.Future] = set()  # sends not yet acknowledged (commit barrier)

    def _new_transport(self) -> Any:
        return SafeOffsetsTransport(self.conf.broker_consumer, self)

    def watch_send(self, fut: asyncio.Future) -> None:
        """Track a producer send: commits wait for it, and a failure stops all commits."""
        if fut.done():
            self._on_sent(fut)
            return
        self.outstanding.add(fut)
        fut.add_done_callback(self._on_sent)

    def _on_sent(self, fut: asyncio.Future) -> None:
        self.outstanding.discard(fut)
        if fut.cancelled():
            exc: BaseException | None = asyncio.CancelledError("producer send cancelled")
        else:
            exc = fut.exception()
        if exc is not None and self.failed_send is None:
            self.failed_send = exc
