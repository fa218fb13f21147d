"""The Faust engine room: every faust-streaming specific patch of the worker, in one module.

The worker's at-least-once guarantee rests on a few overrides of faust-streaming *private* hooks.
They live here, and only here; the rest of the worker (streams/worker/app.py) uses this small
interface:

- `PinganFaustApp` — `faust.App` with the consumer below, `TrackedTable` tables and
  ``publish(topic, key, value)``: a send straight to the producer (bytes in, the sensors still
  see it) that joins the commit barrier (``watch_send``).
- `StateTables(app, partitions)` — the agent's state tables: ``table(name)`` gives a
  `CachedTable` (streams/worker/tables.py) over a Faust table; caches are cleared on every
  rebalance; ``begin_batch()`` / ``at(event)`` / ``flush()`` write each key once per batch with
  the event that wrote it current, so the changelog record goes to that event's partition.
- `consumer_of(app)` / `consumer_offsets(consumer)` — the running consumer (never created just to
  look) and its committed and read offsets, for the lag metric and /healthz.
- `FAUST_HOOKS` — every private (or relied-upon internal) Faust attribute this module overrides,
  calls or reads, with the parameters it expects. tests/unit/test_engine.py checks each against
  the installed faust-streaming (`inspect.signature`), docs/faults.md lists the same names.

Importing this module fails with a clear error unless the installed faust-streaming is
`SUPPORTED_FAUST_VERSION` (the version pinned in pyproject.toml): on an upgrade, re-read each
hook of `FAUST_HOOKS` in the new faust source, run tests/unit/test_engine.py and
tests/faults/test_cluster.py, then change the constant and the pin together.

The consumer
------------
A consumer whose offset bookkeeping cannot skip a message across a rebalance.

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
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import version as installed_version
from types import ModuleType, SimpleNamespace
from typing import Any, NamedTuple, cast

import aiokafka
import orjson
import rocksdict
from aiokafka.errors import IllegalStateError
from aiokafka.consumer.group_coordinator import GroupCoordinator

from streams.worker.checkpoint import Checkpoints, OutRecord, SentBatch, last_committed_offsets, send_batches
from streams.worker.tables import DELETED, CachedTable

#: The faust-streaming release whose internals every override below was written against.
SUPPORTED_FAUST_VERSION = "0.15.3"


class UnsupportedFaustVersion(ImportError):
    """The installed faust-streaming is not the one the engine room was checked against."""


def check_faust_version(found: str) -> None:
    """Raise `UnsupportedFaustVersion` unless `found` is `SUPPORTED_FAUST_VERSION`."""
    if found != SUPPORTED_FAUST_VERSION:
        raise UnsupportedFaustVersion(
            f"streams/worker/engine.py supports faust-streaming {SUPPORTED_FAUST_VERSION} (pinned in "
            f"pyproject.toml), but {found} is installed. The worker overrides private Faust hooks "
            "(Consumer._drain_messages, _new_offset, _commit_offsets, App._new_transport, the "
            "faust.streams._current_event context variable, ...: the full list is FAUST_HOOKS in that "
            "module). Before changing SUPPORTED_FAUST_VERSION, re-check each hook against the new "
            "faust-streaming source, then run tests/unit/test_engine.py and tests/faults/test_cluster.py.")


check_faust_version(installed_version("faust-streaming"))

# Faust is imported only once its version is known to be the supported one (a renamed private
# module would otherwise fail with a bare ImportError instead of the message above).
import faust  # noqa: E402
from faust import streams as faust_streams  # noqa: E402
from faust.sensors.base import SensorDelegate  # noqa: E402
from faust.sensors.monitor import Monitor  # noqa: E402
from faust.tables.manager import TableManager  # noqa: E402
from faust.tables.recovery import Recovery  # noqa: E402
from faust import stores as faust_stores  # noqa: E402
from faust.stores import rocksdb as faust_rocksdb  # noqa: E402
from faust.stores.base import SerializedStore  # noqa: E402
from faust.transport import consumer as faust_consumer  # noqa: E402
from faust.transport.conductor import Conductor  # noqa: E402
from faust.transport.consumer import CONSUMER_FETCHING, ensure_TP  # noqa: E402
from faust.transport.drivers import aiokafka as faust_aiokafka  # noqa: E402
from faust.transport.utils import DefaultSchedulingStrategy  # noqa: E402
from faust.types import TP  # noqa: E402
from faust.utils import json as faust_json  # noqa: E402


class Hook(NamedTuple):
    """A Faust attribute the engine relies on: where, its name, its parameters (None: not a method)."""

    owner: type | ModuleType
    name: str
    params: tuple[str, ...] | None
    use: str  # "overrides" | "calls" | "uses" (reads or writes) | "sets"

    @property
    def label(self) -> str:
        """``module.Class.name`` (or ``module.name``), as docs/faults.md lists it."""
        owner = self.owner
        where = owner.__name__ if isinstance(owner, ModuleType) else f"{owner.__module__}.{owner.__qualname__}"
        return f"{where}.{self.name}"


_Consumer = faust_aiokafka.Consumer  # the class SafeOffsetsConsumer extends
_BaseConsumer = faust_consumer.Consumer  # where Faust's bookkeeping attributes are set (__init__)

#: Every Faust private hook or internal attribute this module overrides, calls or reads.
FAUST_HOOKS: tuple[Hook, ...] = (
    # SafeOffsetsConsumer overrides
    Hook(_Consumer, "__post_init__", ("self",), "overrides"),
    Hook(_Consumer, "seek", ("self", "partition", "offset"), "overrides"),
    Hook(_Consumer, "seek_wait", ("self", "partitions"), "overrides"),
    Hook(_Consumer, "perform_seek", ("self",), "overrides"),
    Hook(_Consumer, "on_partitions_revoked", ("self", "revoked"), "overrides"),
    Hook(_Consumer, "_drain_messages", ("self", "fetcher"), "overrides"),
    Hook(_Consumer, "_new_offset", ("self", "tp"), "overrides"),
    Hook(_Consumer, "_commit_offsets", ("self", "offsets", "start_new_transaction"), "overrides"),
    Hook(_Consumer, "_new_consumer_thread", ("self",), "overrides"),
    Hook(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", ("self", "transport"), "overrides"),
    # ... what those overrides call
    Hook(_Consumer, "_wait_next_records", ("self", "timeout"), "calls"),
    Hook(_Consumer, "_to_message", ("self", "tp", "record"), "calls"),
    Hook(_Consumer, "_is_changelog_tp", ("self", "tp"), "calls"),
    Hook(_Consumer, "seek_to_committed", ("self",), "calls"),
    Hook(_Consumer, "earliest_offsets", ("self", "partitions"), "calls"),
    Hook(_Consumer, "position", ("self", "tp"), "calls"),
    Hook(_Consumer, "assignment", ("self",), "calls"),
    Hook(_Consumer, "highwater", ("self", "tp"), "calls"),
    Hook(_Consumer, "commit", ("self", "topics", "start_new_transaction"), "calls"),
    Hook(_Consumer, "wait_first", ("self", "coros", "timeout"), "calls"),
    Hook(_Consumer, "crash", ("self", "reason"), "calls"),
    Hook(DefaultSchedulingStrategy, "iterate", ("self", "records"), "calls"),
    Hook(Conductor, "acks_enabled_for", ("self", "topic"), "calls"),
    Hook(Monitor, "track_tp_end_offset", ("self", "tp", "offset"), "calls"),
    # ReadCommittedConsumerThread: the aiokafka consumer's fetch wait, read when it starts
    Hook(aiokafka.AIOKafkaConsumer, "_fetch_max_wait_ms", None, "uses"),
    Hook(aiokafka.AIOKafkaConsumer, "_fetch_min_bytes", None, "uses"),
    # ... and the consumer state they read and write
    Hook(_BaseConsumer, "_read_offset", None, "uses"),
    Hook(_BaseConsumer, "_committed_offset", None, "uses"),
    Hook(_BaseConsumer, "_acked", None, "uses"),
    Hook(_BaseConsumer, "_acked_index", None, "uses"),
    Hook(_BaseConsumer, "_gap", None, "uses"),
    Hook(_BaseConsumer, "_n_acked", None, "uses"),
    Hook(_BaseConsumer, "_commit_every", None, "uses"),
    Hook(_BaseConsumer, "_buffered_partitions", None, "uses"),
    Hook(_BaseConsumer, "_stopped", None, "uses"),
    Hook(_BaseConsumer, "flow_active", None, "uses"),
    Hook(_BaseConsumer, "suspend_flow", None, "uses"),
    Hook(_BaseConsumer, "callback", None, "uses"),
    Hook(_BaseConsumer, "in_transaction", None, "uses"),
    Hook(_Consumer, "consumer_stopped_errors", None, "uses"),
    Hook(faust_consumer.Fetcher, "_stopped", None, "uses"),
    Hook(faust.App, "consumer_generation_id", None, "uses"),
    # PinganFaustApp.reinitialize: a rejoin of the group, asked in the consumer's thread
    Hook(faust_consumer.ThreadDelegateConsumer, "_thread", None, "uses"),
    Hook(faust_consumer.ConsumerThread, "call_thread", ("self", "fun", "args", "kwargs"), "calls"),
    Hook(faust_aiokafka.AIOKafkaConsumerThread, "_ensure_consumer", ("self",), "calls"),
    Hook(GroupCoordinator, "request_rejoin", ("self",), "calls"),
    Hook(aiokafka.AIOKafkaConsumer, "_coordinator", None, "uses"),
    # PinganFaustApp, TrackedTable, publish
    Hook(faust.App, "_new_transport", ("self",), "overrides"),
    Hook(faust.App, "on_stop", ("self",), "overrides"),
    Hook(faust.Table, "_new_store_by_url", ("self", "url"), "overrides"),
    Hook(faust_rocksdb.Store, "_open_for_partition", ("self", "partition"), "overrides"),
    Hook(faust_rocksdb.Store, "use_rocksdict", None, "uses"),
    Hook(faust.Table, "send_changelog",
         ("self", "partition", "key", "value", "key_serializer", "value_serializer"), "overrides"),
    Hook(faust_aiokafka.Producer, "send",
         ("self", "topic", "key", "value", "partition", "timestamp", "headers", "transactional_id"), "calls"),
    Hook(SensorDelegate, "on_send_initiated", ("self", "producer", "topic", "message", "keysize", "valsize"),
         "calls"),
    # publish_many: whole batches on Faust's aiokafka producer, with its partitioner and size limit
    Hook(faust_aiokafka.Producer, "_ensure_producer", ("self",), "calls"),
    Hook(faust_aiokafka.Producer, "partitioner", None, "uses"),
    Hook(faust_aiokafka.Producer, "max_request_size", None, "uses"),
    # StateTables: table writes go to the changelog partition of the current event
    Hook(faust_streams, "_current_event", None, "sets"),
    # exactly_once: the table writes of a checkpoint (StateTables.commit), its restore (CheckpointRecovery)
    Hook(faust.Table, "changelog_topic", None, "uses"),
    Hook(faust.Table, "data", None, "uses"),
    Hook(faust.Table, "key_serializer", None, "uses"),
    Hook(faust.Table, "value_serializer", None, "uses"),
    Hook(faust.Topic, "prepare_key", ("self", "key", "key_serializer", "schema", "headers"), "calls"),
    Hook(faust.Topic, "prepare_value", ("self", "value", "value_serializer", "schema", "headers"), "calls"),
    # ChangelogCodec: Faust's JSON codec's own orjson call, made directly (proved byte-equal first)
    Hook(faust_json, "orjson", None, "uses"),
    Hook(faust_json, "on_default", None, "uses"),
    # write_store: committed changelog bytes straight into a serialized (RocksDB) store
    Hook(SerializedStore, "_set", ("self", "key", "value"), "calls"),
    Hook(SerializedStore, "_del", ("self", "key"), "calls"),
    # store_get: one store read per table read (Faust's table get reads twice on a hit: contains, then get)
    Hook(SerializedStore, "_get", ("self", "key"), "calls"),
    Hook(SerializedStore, "_encode_key", ("self", "key"), "calls"),
    Hook(SerializedStore, "_decode_value", ("self", "value"), "calls"),
    Hook(TableManager, "recovery", None, "overrides"),
    Hook(TableManager, "_recovery", None, "uses"),
    Hook(Recovery, "_build_highwaters", ("self", "consumer", "tps", "destination", "title"), "overrides"),
    # consumer_of / consumer_offsets / table_recovery (observability)
    Hook(faust.App, "_consumer", None, "uses"),
    Hook(Recovery, "active_remaining_total", ("self",), "calls"),
    Hook(Recovery, "completed", None, "uses"),
    Hook(Recovery, "in_recovery", None, "uses"),
)


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


def start_inline(coro: Coroutine[Any, Any, Any]) -> asyncio.Future | None:
    """Run `coro` in the calling task up to its first suspension.

    None when it finished without suspending (its exception, if any, is raised here); otherwise a
    task that drives the rest of it exactly as a task of its own would have. A delivery into a
    stream queue with room never suspends, so the common case creates no task at all."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_drive(coro, yielded))


async def _drive(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Drive the rest of a coroutine that `start_inline` started and that yielded `yielded`
    (what `asyncio.Task` does: wait for the future it awaits, then resume it; a cancellation
    cancels that future, so the coroutine sees its await cancelled)."""
    while True:
        throw: BaseException | None = None
        try:
            if yielded is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            elif getattr(yielded, "_asyncio_future_blocking", None) is not None:
                yielded._asyncio_future_blocking = False  # noqa: SLF001 - as asyncio.Task does
                await asyncio.wait([yielded])
            else:
                throw = RuntimeError(f"coroutine yielded {yielded!r}, not a future")
        except asyncio.CancelledError:
            if yielded is not None:
                yielded.cancel()
            else:
                throw = asyncio.CancelledError()
        try:
            yielded = coro.send(None) if throw is None else coro.throw(throw)
        except StopIteration as stop:
            return stop.value


class SafeOffsetsConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with epoch-checked delivery and a strict commit (module doc)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._seek_epoch = 0  # bumped when a seek starts and when it ends
        self._seeking = 0  # seeks in progress: nothing fetched meanwhile is delivered
        self._next_offset: dict[TP, int] = {}  # next offset owed to the streams, per partition
        self._reseek: dict[TP, int | None] = {}  # partitions whose fetched records were discarded
        self._seek_lock = asyncio.Lock()  # seeks never interleave (`_next_offset` follows the last one)
        # skipped offsets seen once (owed, position), refetched to confirm they hold no record
        self._marker_probe: dict[TP, tuple[int, int]] = {}

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
        """A seek set `tp`'s position to `offset`: the next offset owed to its streams.

        A pending refetch of `tp` (`_reseek`) is kept: the batch that set it may have been returned
        by aiokafka *after* this seek had moved the position, and handing it out moved the position
        past records never delivered. Seen in the kill test: a restarted worker restoring its tables
        fetched while `perform_seek` ran; the refetch was dropped here, the skipped records were
        then taken for transaction markers (`_skip_control_records`) and never normalized. Kept,
        the refetch costs at most one redundant seek to where this seek already put the position."""
        self._next_offset[tp] = offset

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
            # exactly_once: fence older producers of our checkpointed partitions first, so their
            # open transactions (and the offsets in them) are settled before the offsets are read
            await cast(PinganFaustApp, self.app).fence_checkpoints(self.assignment())
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

    def _new_consumer_thread(self) -> Any:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._next_offset.pop(tp, None)
            self._reseek.pop(tp, None)
            self._marker_probe.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _seek_back(self) -> None:
        """Seek partitions whose fetched records were discarded back to the next offset owed.

        Runs under the seek lock, so it never undoes a `perform_seek` that ran meanwhile: the
        targets are read after any such seek has set `_next_offset` (a refetch pending from before
        that seek then seeks once more to the same offset: harmless, see `_owe`)."""
        async with self._seeking_window():
            pending, self._reseek = self._reseek, {}
            assigned = self.assignment()
            targets = {tp: self._next_offset.get(tp, first) for tp, first in pending.items()
                       if tp in assigned and self._next_offset.get(tp, first) is not None}
            if targets:
                probes = {tp for tp in targets if tp in self._marker_probe}
                if len(probes) < len(targets):
                    self.log.info("Refetching records fetched before a seek and not delivered: %s", ", ".join(
                        f"{tp.topic}[{tp.partition}] from {off}" for tp, off in sorted(targets.items())
                        if tp not in probes))
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
        read_committed = bool(getattr(self.app, "read_committed", False))
        loop = asyncio.get_running_loop()
        next_skip_check = 0.0
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
                if read_committed and not self.should_stop and loop.time() >= next_skip_check:
                    next_skip_check = loop.time() + 1.0
                    await self._skip_control_records(epoch, generation, acks_enabled_for, records or {})
                if not records or self.should_stop:
                    self.diag.unset_flag(CONSUMER_FETCHING)
                    await asyncio.sleep(0)
                    continue
                since_yield = 0
                end_tracked: set[TP] = set()
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
                    if tp not in end_tracked:
                        end_tracked.add(tp)
                        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    expected = self._next_offset.get(tp)
                    if expected is not None and offset > expected and acks_enabled_for(message.topic):
                        self._mark_gap(tp, expected, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    # Most deliveries complete without suspending (the stream's queue has room):
                    # they run inline, with no task. Only one that suspends races a flow stop.
                    delivery = start_inline(callback(message))
                    if delivery is not None:
                        result = await self.wait_first(delivery, self.suspend_flow.wait())
                        if delivery not in result.done:
                            self._reseek.setdefault(tp, offset)
                            continue
                    if self._seeking or self._seek_epoch != epoch:
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

    async def _skip_control_records(self, epoch: int, generation: int, acks_enabled_for: Any,
                                    fetched: Mapping[TP, Any]) -> None:
        """Record as gaps the offsets a read_committed fetch skipped at the end of a partition.

        Transaction markers (and aborted records) are never delivered: between two records the next
        record reveals them as a gap (above), but after the last record of a transactional
        partition nothing does, so its committed offset would stay one short of the end for good
        (lag 1, "not caught up"). aiokafka's position has moved past them: when it is ahead of the
        next offset owed, with no seek since the fetch and nothing of the partition awaiting a
        refetch, the offsets in between were skipped by the fetch, not fetched. (Partitions with
        records in the fetch just returned are left alone: their position is past those records.)

        Confirmed before it is assumed: the first time a partition shows `[owed, position)` it is
        refetched from `owed` (`_marker_probe`); only when the same range shows again, so a fetch
        from `owed` returned no record, is it recorded as a gap. A position moved past records by
        some path this bookkeeping missed (the `_owe` defect) then costs a refetch, never the
        records: they are delivered by it."""
        for tp, owed in list(self._next_offset.items()):
            if tp in fetched or tp in self._reseek or not acks_enabled_for(tp.topic):
                continue
            end = self._known_highwater(tp)
            if end is None or end <= owed:  # not fetched since it was assigned, or nothing skipped
                continue
            try:
                position = await self.position(tp)
            except (AssertionError, IllegalStateError):  # no longer assigned: a rebalance is under way
                return
            if (self._seeking or self._seek_epoch != epoch or self.app.consumer_generation_id != generation
                    or tp in self._reseek or self._next_offset.get(tp) != owed):
                return
            if position is not None and position > owed:
                if self._marker_probe.get(tp) == (owed, position):
                    del self._marker_probe[tp]
                    self._mark_gap(tp, owed, position)
                    self._next_offset[tp] = position
                else:  # seen once: fetch [owed, position) again before taking it for markers
                    self._marker_probe[tp] = (owed, position)
                    self._reseek.setdefault(tp, owed)

    def _known_highwater(self, tp: TP) -> int | None:
        """The partition's end offset from the last fetch, or None: aiokafka knows none before the
        first fetch after an assignment (it returns None) and asserts for a partition that a
        rebalance has just taken away (seen with two workers: the fetcher crashed on ``None <= int``
        and the worker exited)."""
        try:
            return cast(int | None, self.highwater(tp))
        except AssertionError:
            return None

    def _mark_gap(self, tp: TP, start: int, end: int) -> None:
        """Offsets [start, end) are absent from the log (compaction): committable once reached."""
        gaps = self._gap[tp]
        gaps.addi(start, end)
        gaps.merge_overlaps()

    # -- commits ---------------------------------------------------------------------------------

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        gaps = self._gap[tp]
        if not acked and not gaps:
            return None
        if gaps:
            top = max(acked) if acked else max(iv.end for iv in gaps) - 1
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
        checkpointed = getattr(app, "checkpointed_topics", frozenset())
        if checkpointed:  # their offsets are committed by the checkpoints, in the same transaction
            mine = {tp: off for tp, off in offsets.items() if tp.topic in checkpointed}
            if mine:
                self._committed_offset.update(mine)
                offsets = {tp: off for tp, off in offsets.items() if tp.topic not in checkpointed}
                if not offsets:
                    return True
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


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """The consumer thread whose aiokafka consumer reads committed records only when the app asks
    (`PinganFaustApp.read_committed`), without Faust's own transactions: Faust ties
    ``isolation_level="read_committed"`` to its `in_transaction` flag, which is raised here only
    while the consumer is created.

    It also bounds the fetch long-poll by `PinganFaustApp.fetch_max_wait_ms`: Faust asks the broker
    to hold a fetch up to 1.5 s, and a read_committed fetch of a worker that only correlates was
    held that long with new records waiting (split roles: by-county records waited 0.9 s at the
    median, 2 s at p99, for the correlate worker; 0.1 s / 0.5 s with 100 ms)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = self.consumer
        if getattr(self.app, "read_committed", False):
            saved = consumer.in_transaction
            consumer.in_transaction = True  # read only in _create_worker_consumer's isolation choice
            try:
                client = super()._create_worker_consumer(transport)
            finally:
                consumer.in_transaction = saved
        else:
            client = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:  # Faust passes a fixed 1,500 ms; the fetcher is built from this at start()
            client._fetch_max_wait_ms = int(wait_ms)  # noqa: SLF001 - FAUST_HOOKS
        min_bytes = getattr(self.app, "fetch_min_bytes", None)
        if min_bytes is not None:  # Faust leaves aiokafka's 1 byte; read at start() as the wait is
            client._fetch_min_bytes = int(min_bytes)  # noqa: SLF001 - FAUST_HOOKS
        return client


class CheckpointRecovery(Recovery):
    """Faust's table recovery, ending at the last *committed record* of a checkpointed changelog.

    Faust restores a changelog partition until it has read offset ``end - 1``. In a partition
    written by transactions that offset is a commit marker (or an aborted record), never
    delivered to a read_committed consumer, so the restore would wait for ever."""

    async def _build_highwaters(self, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        app = cast(PinganFaustApp, self.app)
        topics = app.checkpointed_changelogs
        mine = [tp for tp in tps if tp.topic in topics]
        if mine:
            last = await last_committed_offsets(app.pingan_kafka, mine)
            for tp in mine:
                destination[tp] = last[(tp.topic, tp.partition)]
            self.log.info("Last committed changelog records (%s): %s", title,
                          ", ".join(f"{tp.topic}[{tp.partition}]={off}" for tp, off in sorted(last.items())))


class PinganTableManager(TableManager):
    """Faust's table manager with `CheckpointRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = CheckpointRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class SafeOffsetsTransport(faust_aiokafka.Transport):
    """The aiokafka transport with `SafeOffsetsConsumer`."""

    Consumer = SafeOffsetsConsumer


class UnloggedRocksStore(faust_rocksdb.Store):
    """Faust's RocksDB store whose databases write without RocksDB's write-ahead log.

    The table's changelog topic is its log. With the WAL off every write of a database (values,
    and the persisted changelog offset Faust keeps in the same database) survives a crash only if
    its memtable was flushed, and memtables flush in write order, so a crash leaves a prefix of
    the writes: a persisted offset never runs ahead of the values it covers, and the restore reads
    the changelog from that offset on. A clean stop closes the databases, which flushes them.
    Kafka Streams' RocksDB stores do the same. What it saves: a ~5 kB write costs ~8 us instead of
    ~25 us (rocksdict, this machine)."""

    def _open_for_partition(self, partition: int) -> Any:
        db = super()._open_for_partition(partition)
        if self.use_rocksdict:
            options = rocksdict.WriteOptions()
            options.disable_wal = True
            db.set_write_options(options)  # before any write: every write of the database skips it
        return db


class TrackedTable(faust.Table):
    """`faust.Table` whose changelog sends join the app's commit barrier (`watch_send`), on an
    `UnloggedRocksStore` where Faust would use its RocksDB store (unless the app asks for the WAL:
    `PinganFaustApp.table_store_wal`)."""

    def _new_store_by_url(self, url: Any) -> Any:
        if faust_stores.by_url(url) is not faust_rocksdb.Store or getattr(self.app, "table_store_wal", True):
            return super()._new_store_by_url(url)
        return UnloggedRocksStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                                  key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                                  value_type=self.value_type, loop=self.loop, options=self.options)

    _pingan_changelog_codec: ChangelogCodec | None = None

    def changelog_codec(self) -> ChangelogCodec:
        """This table's `ChangelogCodec` (made on first use: the changelog topic exists by then)."""
        codec = self._pingan_changelog_codec
        if codec is None:
            codec = self._pingan_changelog_codec = ChangelogCodec(self)
        return codec

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

    def __init__(self, *args: Any, read_committed: bool = False, kafka: Mapping[str, Any] | None = None,
                 fetch_max_wait_ms: int | None = None, fetch_min_bytes: int | None = None,
                 table_store_wal: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("Table", TrackedTable)
        kwargs.setdefault("TableManager", PinganTableManager)
        super().__init__(*args, **kwargs)
        self.outstanding: set[asyncio.Future] = set()  # sends not yet acknowledged (commit barrier)
        #: the consumer reads committed records only (outputs and changelogs of checkpoints)
        self.read_committed = read_committed
        #: the consumer's fetch long-poll bound (None: Faust's 1,500 ms; `ReadCommittedConsumerThread`)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        #: the bytes a fetch waits for (up to `fetch_max_wait_ms`) before the broker answers (None: 1)
        self.fetch_min_bytes = fetch_min_bytes
        #: RocksDB table stores write RocksDB's write-ahead log (else `UnloggedRocksStore`)
        self.table_store_wal = table_store_wal
        #: aiokafka client options (bootstrap servers, security) for the checkpoints' own clients
        self.pingan_kafka: dict[str, Any] = dict(kafka or {})
        #: checkpointed input topic → its `Checkpoints` (set by `StateTables.checkpointed`)
        self.checkpoints: dict[str, Checkpoints] = {}
        #: changelog topics written by checkpoints (restored up to their last committed record)
        self.checkpointed_changelogs: set[str] = set()
        #: (topic, partition) of checkpointed inputs whose checkpoint failed: their records are
        #: skipped until the group's next assignment reads them again (`reinitialize`)
        self.reinitializing: set[tuple[str, int]] = set()
        self.on_partitions_assigned.connect(self._reinitialized)

    async def _reinitialized(self, _app: Any, _assigned: Any, **_: Any) -> None:
        self.reinitializing.clear()

    async def reinitialize(self, topic: str, partition: int) -> None:
        """Read `topic[partition]` again from the log: its checkpoint failed (fenced, or any error).

        The batch's state and outputs are not in the local stores and may or may not be in Kafka,
        and the consumer's position is past its records; going on would lose them. So, as Kafka Streams
        does with a task whose producer was fenced, the partition is handed back to the group: its
        records are skipped from now on, and the consumer rejoins the group. Every assignment
        restores the tables from their changelogs (whatever the failed checkpoint committed
        included), fences the partition's producer and seeks it to its committed offset
        (`SafeOffsetsConsumer.perform_seek`), so the records are processed again by whoever owns
        the partition then (this worker, or the one that fenced it)."""
        self.reinitializing.add((topic, partition))
        thread = cast(SafeOffsetsConsumer, self.consumer)._thread  # noqa: SLF001 - FAUST_HOOKS
        await thread.call_thread(_request_rejoin, thread)

    async def on_stop(self) -> None:
        await super().on_stop()  # the consumer stops first: no batch is committed after this
        for checkpoints in self.checkpoints.values():
            await checkpoints.stop()

    @property
    def checkpointed_topics(self) -> frozenset[str]:
        """Input topics whose consumed offsets the checkpoints commit (Faust's commit skips them)."""
        return frozenset(self.checkpoints)

    async def fence_checkpoints(self, assignment: Any) -> None:
        """Start the checkpoint producers of the assigned partitions of checkpointed topics."""
        for topic, checkpoints in self.checkpoints.items():
            partitions = [tp.partition for tp in assignment if tp.topic == topic]
            if partitions:
                await checkpoints.fence(partitions)

    def _new_transport(self) -> Any:
        return SafeOffsetsTransport(self.conf.broker_consumer, self)

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Send `value` under `key` to `topic` (a full topic name), straight to the producer.

        Bytes in, no Faust channel machinery per message; the sensors still see every send, and
        the send joins the commit barrier: the consumer's commit waits for it and never commits
        again once a send has failed (`SafeOffsetsConsumer._commit_offsets`)."""
        self.sensors.on_send_initiated(self.producer, topic, SimpleNamespace(key=key, value=value),
                                       len(key), len(value))
        self.watch_send(await self.producer.send(topic, key, value, None, None, None))

    async def publish_many(self, records: Sequence[OutRecord]) -> None:
        """`publish` for many records at once: sent as whole batches, one per partition
        (`checkpoint.send_batches`: the partitions ``send`` would pick, ~10 µs less per record than
        a ``send`` each). The sensors see every record and every batch joins the commit barrier,
        as with `publish`; Faust's ``on_produce_message`` signal is not sent (nothing here uses it)."""
        if not records:
            return
        self._sensors_see(records)
        faust_producer = self.producer
        sent: list[SentBatch] = []
        try:
            await send_batches(faust_producer._ensure_producer(), records,  # noqa: SLF001 - FAUST_HOOKS
                               faust_producer.partitioner, faust_producer.max_request_size, sent)
        finally:
            for fut, _ in sent:  # a failure part way: what was queued is still watched
                self.watch_send(fut)

    def sent_in_checkpoint(self, records: Any) -> None:
        """Tell the sensors about output records a checkpoint committed (they never pass `publish`)."""
        self._sensors_see(records)

    def _sensors_see(self, records: Any) -> None:
        """``on_send_initiated`` for each `OutRecord` sent outside Faust's own send path."""
        on_send = self.sensors.on_send_initiated
        for r in records:
            on_send(self.producer, r.topic, SimpleNamespace(key=r.key, value=r.value), len(r.key or b""),
                    len(r.value or b""))

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


def _request_rejoin(thread: Any) -> None:
    """Ask the aiokafka consumer of Faust's consumer `thread` to rejoin its group (in that thread)."""
    thread._ensure_consumer()._coordinator.request_rejoin()  # noqa: SLF001 - FAUST_HOOKS


def hooks_markdown() -> str:
    """`FAUST_HOOKS` as the Markdown list docs/faults.md carries (a unit test keeps them equal)."""
    lines = []
    for h in FAUST_HOOKS:
        sig = "" if h.params is None else "(" + ", ".join(h.params) + ")"
        lines.append(f"- {h.use} `{h.label}`{sig}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- state tables
def set_current_event(event: Any) -> None:
    """Make `event` the task's current event, so table writes go to its store and changelog partition.

    Only Faust's context variable (`faust.streams.current_event()`) is set: the stream's own
    `current_event` attribute belongs to `take_events`' background buffering, which reads it for
    the next event while the agent's body is suspended."""
    faust_streams._current_event.set(weakref.ref(event))  # noqa: SLF001 - FAUST_HOOKS


def store_get(table: Any, key: str, default: Any, encode_key: Callable[[Any, str], bytes]) -> Any:
    """``table.get(key, default)`` with one read of a serialized (RocksDB) store.

    A Faust table's ``get`` goes through ``__getitem__``, which on a hit reads the store twice (``key
    in data``, then ``data[key]``) and on a miss raises and catches a KeyError; this is the read
    `CachedTable` makes on every cache miss (most candidate-key reads miss). Table sensors
    (``on_key_get``, metrics only) are not called. Any other store: ``table.get``.
    `encode_key(store, key)`: the store's key bytes (`StoreKeys`: the store's own ``_encode_key``,
    made faster where it can prove the bytes the same)."""
    data = table.data
    if isinstance(data, SerializedStore):
        raw = data._get(encode_key(data, key))
        return default if raw is None else data._decode_value(raw)
    return table.get(key, default)


def _json_str_key(key: str) -> bytes | None:
    """The JSON bytes of a str key of printable ASCII with nothing to escape (the quoted text, as every
    JSON serializer writes it), else None."""
    if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
        return b'"' + key.encode("ascii") + b'"'
    return None


class StoreKeys:
    """`encode_key` for `store_get`: a store's key bytes without a trip through Faust's serializer
    registry (a few microseconds per read; every cache miss of the correlate agent pays it, tens per
    event). Only for what it can prove: on a store's first key, the quoted text must equal the
    store's own encoding (a JSON key serializer); otherwise, and for any key JSON would escape,
    the store's ``_encode_key`` is used."""

    def __init__(self) -> None:
        self._direct: bool | None = None  # unknown until the first key

    def __call__(self, store: Any, key: Any) -> bytes:
        fast = _json_str_key(key) if type(key) is str and self._direct is not False else None
        if fast is None:
            return store._encode_key(key)
        if self._direct is None:
            self._direct = fast == store._encode_key(key)
            if not self._direct:
                return store._encode_key(key)
        return fast


class StateTables:
    """An agent's state tables: `CachedTable`s over Faust tables, flushed once per batch.

    Every table is created with `partitions` partitions (co-partitioned with the agent's input).
    The caches are cleared whenever partitions are revoked or assigned (the tables may then hold
    other partitions' state). In a batch: `begin_batch()`, `at(event)` before processing each
    event, `flush()` at the end: each key is written once, with the event that last wrote it
    current (`set_current_event`)."""

    def __init__(self, app: faust.App, partitions: int) -> None:
        self.app = app
        self.partitions = partitions
        self.cached: list[CachedTable] = []
        app.on_partitions_revoked.connect(self._forget)
        app.on_partitions_assigned.connect(self._forget)

    async def _forget(self, _app: Any, _partitions: Any, **_: Any) -> None:
        for t in self.cached:
            t.clear_cache()

    def table(self, name: str) -> CachedTable:
        """A new cached table `name` (the Faust table name, which also names its changelog topic)."""
        table = self.app.Table(name, partitions=self.partitions)
        keys = StoreKeys()
        cached = CachedTable(table, reader=lambda key, default: store_get(table, key, default, keys))
        self.cached.append(cached)
        return cached

    def begin_batch(self) -> None:
        for t in self.cached:
            t.begin_batch()

    def at(self, event: Any) -> None:
        """`event` is the one being processed: reads and writes from now on are on its behalf."""
        set_current_event(event)
        for t in self.cached:
            t.current = event

    def flush(self) -> None:
        """Write the batch's state (before its outputs are sent and its events acknowledged)."""
        for t in self.cached:
            t.flush(set_current_event)

    def take_writes(self) -> list[TableWrite]:
        """End the batch without writing: its state, one `TableWrite` per key (exactly_once: the
        checkpoint commits their changelog records, then `write_store` writes them locally)."""
        return [TableWrite(t.table, key, value, event)
                for t in self.cached for key, (value, event) in t.take_writes().items()]

    def forget(self) -> None:
        """Drop every cached value (a checkpoint failed: the cache may hold uncommitted state)."""
        for t in self.cached:
            t.clear_cache()

    def checkpointed(self, input_topic: str, checkpoints: Checkpoints) -> None:
        """The tables' changelogs are written by `checkpoints` for `input_topic`'s partitions."""
        app = cast(PinganFaustApp, self.app)
        app.checkpoints[input_topic] = checkpoints
        app.checkpointed_changelogs.update(t.table.changelog_topic.get_topic_name() for t in self.cached)


class TableWrite(NamedTuple):
    """One key of a batch's state: its table, key, value (`DELETED`: removed), writing event."""

    table: Any  # faust.Table
    key: Any
    value: Any
    event: Any

    @property
    def partition(self) -> int:
        return int(self.event.message.partition)


def _changelog_record(w: TableWrite) -> OutRecord:
    """The changelog record Faust would send for `w` (its serializers; a tombstone for a deletion)."""
    codec = getattr(w.table, "changelog_codec", None)
    if codec is not None:
        return codec().record(w)
    topic = w.table.changelog_topic
    key, _ = topic.prepare_key(w.key, w.table.key_serializer, None, None)
    value = None if w.value is DELETED else topic.prepare_value(w.value, w.table.value_serializer, None, None)[0]
    return OutRecord(topic.get_topic_name(), key, value, w.partition)


#: The value types `ChangelogCodec` writes itself (Faust's registry treats only its models specially).
_PLAIN_VALUES = (dict, list, str, int, float, bool)
#: The options Faust's JSON codec passes to orjson (faust.utils.json.dumps).
_FAUST_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


class ChangelogCodec:
    """A table's changelog records without a trip through Faust's serializer registry per write.

    Faust's path for a JSON table (``topic.prepare_key`` / ``prepare_value``: schema, registry,
    codec chain) costs ~10 µs per record on top of the JSON itself; a checkpoint writes a few per
    event. With orjson installed, Faust's JSON codec is ``orjson.dumps(value, default=on_default,
    option=OPT_NON_STR_KEYS | OPT_UTC_Z)`` and a printable ASCII str key is its quoted text; this
    writes those directly, but only once the first write of the table that has both (as `StoreKeys`
    proves its keys) gave bytes equal to Faust's own (any other serializer, or a difference:
    Faust's path for good). Keys JSON would escape and values that are not plain JSON types (a
    Faust model) always take Faust's path."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.topic = table.changelog_topic
        self.name = self.topic.get_topic_name()
        json_tables = table.key_serializer == "json" and table.value_serializer == "json"
        self._direct: bool | None = None if json_tables and faust_json.orjson is not None else False

    def record(self, w: TableWrite) -> OutRecord:
        if self._direct is None and w.value is not DELETED:
            fast_key, fast_value = self._fast_key(w.key), self._fast_value(w.value)
            if fast_key is not None and fast_value is not None:  # else Faust's path, and prove on a later write
                self._direct = fast_key == self._faust_key(w.key) and fast_value == self._faust_value(w.value)
        if self._direct:
            key = self._fast_key(w.key) or self._faust_key(w.key)
            value = None if w.value is DELETED else self._fast_value(w.value) or self._faust_value(w.value)
        else:
            key = self._faust_key(w.key)
            value = None if w.value is DELETED else self._faust_value(w.value)
        return OutRecord(self.name, key, value, w.partition)

    @staticmethod
    def _fast_key(key: Any) -> bytes | None:
        return _json_str_key(key) if type(key) is str else None

    @staticmethod
    def _fast_value(value: Any) -> bytes | None:
        if type(value) not in _PLAIN_VALUES:
            return None
        return orjson.dumps(value, default=faust_json.on_default, option=_FAUST_ORJSON_OPTIONS)

    def _faust_key(self, key: Any) -> bytes:
        return self.topic.prepare_key(key, self.table.key_serializer, None, None)[0]

    def _faust_value(self, value: Any) -> bytes:
        return self.topic.prepare_value(value, self.table.value_serializer, None, None)[0]


def changelog_records(writes: list[TableWrite]) -> list[OutRecord]:
    """The changelog records of `writes`, in order (each to its event's partition)."""
    return [_changelog_record(w) for w in writes]


def write_store(writes: list[TableWrite], offsets: list[int], records: list[OutRecord] | None = None) -> None:
    """Write committed `writes` to the tables' local stores (no changelog: it is committed) and
    record the changelog offsets they came from, as Faust does after a changelog send, so a
    restart restores only what follows.

    `records` are the committed changelog records of `writes` (`changelog_records`, same order). A
    serialized store (RocksDB) then gets their bytes as they are — what Faust's own changelog
    recovery writes (``apply_changelog_batch``) — instead of serializing every key and value again."""
    persisted: dict[tuple[Any, TP], int] = {}
    if records is not None and len(records) != len(writes):
        raise ValueError(f"{len(records)} changelog records for {len(writes)} writes")
    for i, (w, offset) in enumerate(zip(writes, offsets, strict=True)):
        set_current_event(w.event)
        data = w.table.data
        record = records[i] if records is not None else None
        if record is not None and record.key is not None and isinstance(data, SerializedStore):
            if record.value is None:
                data._del(record.key)
            else:
                data._set(record.key, record.value)
        elif w.value is DELETED:
            try:
                del data[w.key]
            except KeyError:
                pass
        else:
            data[w.key] = w.value
        tp = TP(w.table.changelog_topic.get_topic_name(), w.partition)
        persisted[(w.table, tp)] = max(offset, persisted.get((w.table, tp), -1))
    for (table, tp), offset in persisted.items():
        table.data.set_persisted_offset(tp, offset)


# --------------------------------------------------------------------------- introspection
def consumer_of(app: Any) -> Any | None:
    """The app's consumer if it was created; never creates one just to report on it."""
    return getattr(app, "_consumer", None)  # mode's cached_property keeps `consumer` there (FAUST_HOOKS)


def consumer_offsets(consumer: Any) -> tuple[Mapping[TP, int | None], Mapping[TP, int | None]]:
    """The consumer's committed offsets and last read offsets, per partition (empty if unknown)."""
    return getattr(consumer, "_committed_offset", {}), getattr(consumer, "_read_offset", {})


def table_recovery(app: Any) -> dict[str, Any]:
    """Recovery state of the app's tables (faust ``app.tables.recovery``)."""
    tables = getattr(app, "tables", None)
    try:
        recovery = tables.recovery  # type: ignore[union-attr]
        remaining = int(recovery.active_remaining_total())
        return {"tables": sorted(tables.keys()), "completed": bool(recovery.completed.is_set()),
                "in_recovery": bool(recovery.in_recovery), "active_remaining": remaining}
    except Exception as exc:  # noqa: BLE001 - not started yet
        return {"tables": [], "completed": False, "in_recovery": False, "active_remaining": -1,
                "error": f"{type(exc).__name__}: {exc}"}


def fetch_state(app: Any) -> dict[str, Any]:
    """What the consumer's fetch path is doing, for a worker that stopped consuming (diagnostics).

    Faust's side (flow, active / paused / buffered partitions, running seeks, partitions awaiting a
    refetch, the next offsets owed) and aiokafka's (per assigned partition: paused, valid position,
    position, highwater, last stable offset; the fetcher's buffered partitions, in-flight nodes and
    whether its background task is alive). Read from another thread without locks: a snapshot that
    may be torn, never used for decisions."""
    consumer = consumer_of(app)
    if consumer is None:
        return {"consumer": None}
    out: dict[str, Any] = {
        "flow_active": bool(getattr(consumer, "flow_active", False)),
        "active": sorted(f"{tp.topic}[{tp.partition}]" for tp in (getattr(consumer, "_active_partitions", None) or ())),
        "paused": sorted(f"{tp.topic}[{tp.partition}]" for tp in getattr(consumer, "_paused_partitions", ())),
        "buffered": sorted(f"{tp.topic}[{tp.partition}]" for tp in getattr(consumer, "_buffered_partitions", ())),
        "seeking": getattr(consumer, "_seeking", None), "seek_epoch": getattr(consumer, "_seek_epoch", None),
        "reseek": {f"{tp.topic}[{tp.partition}]": off for tp, off in dict(getattr(consumer, "_reseek", {})).items()},
        "next_offset": {f"{tp.topic}[{tp.partition}]": off
                        for tp, off in dict(getattr(consumer, "_next_offset", {})).items()},
    }
    client = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    if client is None:
        return out
    try:
        fetcher = client._fetcher  # noqa: SLF001 - diagnostics only
        subscription = client._subscription.subscription  # noqa: SLF001
        assignment = subscription.assignment if subscription is not None else None
        partitions = {}
        for tp in sorted(assignment.tps if assignment is not None else ()):
            st = assignment.state_value(tp)
            partitions[f"{tp.topic}[{tp.partition}]"] = {
                "paused": st.paused, "valid": st.has_valid_position, "reset": st.awaiting_reset,
                "position": st.position if st.has_valid_position else None,
                "highwater": st.highwater, "lso": st.lso}
        task = fetcher._fetch_task  # noqa: SLF001
        out["aiokafka"] = {
            "assignment_active": bool(assignment is not None and assignment.active),
            "partitions": partitions,
            "records": sorted(f"{tp.topic}[{tp.partition}]" for tp in list(fetcher._records)),  # noqa: SLF001
            "in_flight": sorted(fetcher._in_flight),  # noqa: SLF001
            "pending_tasks": len(fetcher._pending_tasks),  # noqa: SLF001
            "fetch_task": ("running" if not task.done() else
                           f"done: {task.exception()!r}" if not task.cancelled() else "cancelled"),
        }
    except Exception as exc:  # noqa: BLE001 - aiokafka internals moved: say so instead of failing
        out["aiokafka"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
