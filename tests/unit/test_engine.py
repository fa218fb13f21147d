"""The Faust engine room (streams/worker/engine.py) against the installed faust-streaming, offline.

Every private hook or internal attribute the engine overrides, calls or reads is listed once, in
`engine.FAUST_HOOKS`; each must still exist with the parameters the engine was written against.
A faust-streaming upgrade that renames or reshapes one fails here, in a second, instead of as lost
records in tests/faults/test_cluster.py."""
from __future__ import annotations

import asyncio
import contextvars
import inspect
from pathlib import Path
from types import ModuleType

import faust
import pytest
from faust.transport.consumer import Fetcher

from streams.settings import Settings
from streams.worker import engine
from streams.worker.app import build_app
from streams.worker.engine import FAUST_HOOKS, Hook, PinganFaustApp, SafeOffsetsConsumer, TrackedTable

ROOT = Path(__file__).resolve().parents[2]


def _id(hook: Hook) -> str:
    return hook.label


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> list[object]:
    """A real app, its consumer (created, never started: no network), a fetcher, the recovery, the
    table manager and a table."""
    app = build_app(Settings(run_dir=tmp_path_factory.mktemp("engine"), registry_path=None), with_index=False,
                    table_store="memory://")
    async def worker_client() -> object:  # aiokafka's consumer is built inside a loop; never started
        return app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)  # noqa: SLF001

    loop = asyncio.new_event_loop()
    try:
        client = loop.run_until_complete(worker_client())
    finally:
        loop.close()
    rocks = build_app(Settings(run_dir=tmp_path_factory.mktemp("engine-rocks"), registry_path=None),
                      with_index=False, table_store="rocksdb://")
    return [app, app.consumer, Fetcher(app), app.tables.recovery, app.tables,
            app.pingan_processor.stores.incidents.table, rocks.pingan_processor.stores.incidents.table.data,
            app.producer, client]


def test_the_installed_faust_is_the_supported_one() -> None:
    assert faust.__version__ == engine.SUPPORTED_FAUST_VERSION
    pin = f'"faust-streaming=={engine.SUPPORTED_FAUST_VERSION}"'
    assert pin in (ROOT / "pyproject.toml").read_text(), "the engine's version and the pin move together"


def test_another_faust_version_is_refused_with_what_to_recheck() -> None:
    engine.check_faust_version(engine.SUPPORTED_FAUST_VERSION)
    with pytest.raises(engine.UnsupportedFaustVersion) as err:
        engine.check_faust_version("0.16.0")
    text = str(err.value)
    assert "0.15.3" in text and "0.16.0" in text and "FAUST_HOOKS" in text and "test_cluster.py" in text


def test_each_hook_is_listed_once() -> None:
    keys = [(h.owner, h.name) for h in FAUST_HOOKS]
    assert len(keys) == len(set(keys))
    assert {h.use for h in FAUST_HOOKS} <= {"overrides", "calls", "uses", "sets"}


@pytest.mark.parametrize("hook", [h for h in FAUST_HOOKS if h.params is not None], ids=_id)
def test_method_hook_has_the_expected_parameters(hook: Hook) -> None:
    fn = getattr(hook.owner, hook.name, None)
    assert callable(fn), f"{_id(hook)} no longer exists in faust-streaming {faust.__version__}"
    assert tuple(inspect.signature(fn).parameters) == hook.params


@pytest.mark.parametrize("hook", [h for h in FAUST_HOOKS if h.params is None], ids=_id)
def test_attribute_hook_exists(hook: Hook, instances: list[object]) -> None:
    if isinstance(hook.owner, ModuleType):
        assert hasattr(hook.owner, hook.name), f"{_id(hook)} is gone"
        return
    owners = [obj for obj in instances if isinstance(obj, hook.owner)]
    assert owners, f"the test builds no {hook.owner.__qualname__}"
    for obj in owners:
        assert hasattr(obj, hook.name), f"{_id(hook)} is gone (faust-streaming {faust.__version__})"


def test_current_event_is_a_context_variable() -> None:
    assert isinstance(faust.streams._current_event, contextvars.ContextVar)  # noqa: SLF001


@pytest.mark.parametrize("hook", [h for h in FAUST_HOOKS if h.use == "overrides" and h.params is not None],
                         ids=_id)
def test_our_overrides_keep_faust_signatures(hook: Hook) -> None:
    ours = {engine.faust_aiokafka.Consumer: SafeOffsetsConsumer, faust.App: PinganFaustApp,
            faust.Table: TrackedTable, engine.faust_aiokafka.AIOKafkaConsumerThread: engine.ReadCommittedConsumerThread,
            engine.Recovery: engine.CheckpointRecovery, engine.faust_rocksdb.Store: engine.UnloggedRocksStore}[hook.owner]
    mine = inspect.signature(getattr(ours, hook.name))
    if any(p.kind is p.VAR_POSITIONAL for p in mine.parameters.values()):
        return  # a pass-through (*args, **kwargs): takes whatever Faust passes
    assert tuple(mine.parameters) == hook.params


def test_the_app_uses_the_engine_classes(instances: list[object]) -> None:
    app, consumer = instances[0], instances[1]
    assert isinstance(app, PinganFaustApp) and isinstance(consumer, SafeOffsetsConsumer)
    assert engine.consumer_of(app) is consumer  # the cached consumer, read without creating one
    assert app.tables and all(isinstance(t, TrackedTable) for t in app.tables.values())
    assert isinstance(app.tables, engine.PinganTableManager) and isinstance(app.tables.recovery, engine.CheckpointRecovery)
    assert isinstance(consumer._new_consumer_thread(), engine.ReadCommittedConsumerThread)  # noqa: SLF001


def test_docs_list_exactly_these_hooks() -> None:
    assert engine.hooks_markdown() in (ROOT / "docs" / "faults.md").read_text(), \
        "docs/faults.md: paste streams.worker.engine.hooks_markdown() under 'The engine room'"


def test_write_store_puts_the_committed_changelog_bytes_into_rocksdb(tmp_path: Path) -> None:
    """`write_store` with the changelog records writes their bytes as they are (no second
    serialization) — and they are exactly what the store itself would have written, so the value
    reads back the same either way, as after a changelog recovery."""
    from types import SimpleNamespace

    from streams.worker.engine import TableWrite, changelog_records, set_current_event, write_store
    from streams.worker.tables import DELETED

    app = build_app(Settings(run_dir=tmp_path, registry_path=None), with_index=False, table_store="rocksdb://")
    table = app.pingan_processor.stores.incidents.table
    class _Event:  # weak-referenceable, like faust's Event
        message = SimpleNamespace(partition=1, topic="t", offset=0)

    event = _Event()
    value = {"incident_id": "inc-1", "event_ids": ["a", "b"], "text": "汶川 威州镇", "n": 3}
    writes = [TableWrite(table, "inc-1", value, event), TableWrite(table, "inc-2", {"x": 1}, event)]
    records = changelog_records(writes)
    store = table.data
    assert isinstance(store, engine.SerializedStore)
    set_current_event(event)
    assert records[0].key == store._encode_key("inc-1") and records[0].value == store._encode_value(value)

    write_store(writes, [10, 11], records)
    set_current_event(event)
    assert store["inc-1"] == value and store["inc-2"] == {"x": 1}
    # a deletion: the tombstone's key removes it
    gone = [TableWrite(table, "inc-2", DELETED, event)]
    write_store(gone, [12], changelog_records(gone))
    set_current_event(event)
    assert "inc-2" not in store and store["inc-1"] == value
    with pytest.raises(ValueError):
        write_store(writes, [13, 14], records[:1])


def test_the_worker_consumer_fetch_wait_is_the_settings_one(instances: list[object]) -> None:
    """Faust builds its aiokafka consumer with a fixed fetch_max_wait_ms=1500; the engine sets the
    worker's own (`Settings.worker_fetch_max_wait_ms`), which aiokafka reads when the consumer starts."""
    import aiokafka

    client = instances[-1]
    assert isinstance(client, aiokafka.AIOKafkaConsumer)
    assert client._fetch_max_wait_ms == Settings().worker_fetch_max_wait_ms == 100  # noqa: SLF001
    assert "self._fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    # and the bytes a fetch gathers first (aiokafka's 1 answers with a record or two at low rates)
    assert client._fetch_min_bytes == Settings().worker_fetch_min_bytes == 16384  # noqa: SLF001
    assert "self._fetch_min_bytes" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


def test_store_keys_make_the_stores_own_key_bytes(tmp_path: Path) -> None:
    """`StoreKeys` (the key bytes of `store_get` without Faust's serializer registry) gives exactly the
    bytes the store's own ``_encode_key`` gives, for the key shapes the correlate tables use, and
    leaves every key JSON would escape to the store; a value the store wrote reads back through
    `store_get` with them."""
    from types import SimpleNamespace

    from streams.worker.engine import StoreKeys, set_current_event, store_get

    app = build_app(Settings(run_dir=tmp_path, registry_path=None), with_index=False, table_store="rocksdb://")
    table = app.pingan_processor.stores.candidates.table
    class _Event:  # weak-referenceable, like faust's Event
        message = SimpleNamespace(partition=0, topic="t", offset=0)

    event = _Event()  # held: the current event is a weak reference
    set_current_event(event)
    store = table.data
    keys = StoreKeys()
    shapes = ["g:8740e1a3fffffff:480123", "p:id:5f2a9c", "~watermark", "alarm110:A-1 2/3", "e:grid:x y",
              '带"引号', "back\\slash", "汶川:威州", "tab\there", "line\u2028sep", "", "\x7f"]
    for key in shapes:
        assert keys(store, key) == store._encode_key(key), key
    assert keys._direct is True  # the first key proved the JSON quoting
    store["g:8740e1a3fffffff:480123"] = [{"event_id": "a"}]  # written with the store's own key bytes
    store['带"引号'] = [1]
    for key, value in (("g:8740e1a3fffffff:480123", [{"event_id": "a"}]), ('带"引号', [1]), ("p:none", None)):
        assert store_get(table, key, None, keys) == value


def test_store_keys_use_the_store_whenever_the_quoted_text_is_not_its_encoding() -> None:
    """A store whose keys are not JSON (here: raw bytes) is detected on the first key and always asked."""
    from streams.worker.engine import StoreKeys

    class _RawStore:
        calls = 0

        def _encode_key(self, key: str) -> bytes:
            self.calls += 1
            return key.encode()

    store, keys = _RawStore(), StoreKeys()
    assert [keys(store, k) for k in ("g:1", "g:2", "p:3")] == [b"g:1", b"g:2", b"p:3"]
    assert keys._direct is False and store.calls == 4  # the check, then every key


_WRITE_AND_DIE = """
import os, sys
from pathlib import Path
from streams.settings import Settings
from streams.worker.app import build_app
app = build_app(Settings(run_dir=Path(sys.argv[1]), registry_path=None, table_store_wal=sys.argv[2] == "wal"),
                with_index=False, table_store="rocksdb://")
store = app.pingan_processor.stores.incidents.table.data
print(type(store).__name__, store.partition_path(0), flush=True)
store._db_for_partition(0).put(b"written", b"before the crash")
os._exit(0)  # a crash: nothing closed, nothing flushed
"""


@pytest.mark.parametrize("wal", [False, True])
def test_table_stores_write_the_wal_only_when_asked(tmp_path: Path, wal: bool) -> None:
    """`table_store_wal` off (the default): the worker's RocksDB stores are `UnloggedRocksStore`s and
    a write not yet flushed is gone after a crash (the changelog restores it); on: Faust's store, the
    write survives."""
    import subprocess
    import sys

    import rocksdict

    out = subprocess.run([sys.executable, "-c", _WRITE_AND_DIE, str(tmp_path), "wal" if wal else "nowal"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    kind, path = out[0], out[1]
    assert kind == ("Store" if wal else "UnloggedRocksStore")
    db = rocksdict.Rdict(path, options=rocksdict.Options(raw_mode=True))
    try:
        assert (db.get(b"written") == b"before the crash") is wal
    finally:
        db.close()


async def test_publish_many_sends_one_batch_per_partition_and_watches_every_batch(tmp_path: Path) -> None:
    """`PinganFaustApp.publish_many` (the normalize agent's sends): one closed batch per topic
    partition, each record in the partition Faust's producer would pick for its key, the sensors
    told of every record, and every batch in the commit barrier until acknowledged; a failed batch
    stops the commits (`failed_send`)."""
    from types import SimpleNamespace

    from aiokafka.producer.message_accumulator import BatchBuilder

    from streams.worker.checkpoint import OutRecord

    app = build_app(Settings(run_dir=tmp_path, registry_path=None), with_index=False, table_store="memory://")
    queued: list[tuple[str, int, BatchBuilder, asyncio.Future]] = []

    class _Producer:  # the aiokafka producer's batch API, no network
        client = SimpleNamespace(cluster=SimpleNamespace(partitions_for_topic=lambda topic: {0, 1, 2}))

        def create_batch(self) -> BatchBuilder:
            return BatchBuilder(16 * 1024, 0)

        async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future:
            fut = asyncio.get_running_loop().create_future()
            queued.append((topic, partition, batch, fut))
            return fut

    seen: list[tuple[str, bytes]] = []
    app.producer._ensure_producer = lambda: _Producer()  # noqa: SLF001
    app.sensors.on_send_initiated = lambda producer, topic, message, keysize, valsize: seen.append((topic, message.key))
    records = [OutRecord("events", b"e%d" % i, b"v%d" % i) for i in range(12)] + [OutRecord("by-county", b"510621", b"x")]
    await app.publish_many(records)

    assert seen == [(r.topic, r.key) for r in records]
    partition_of = app.producer.partitioner
    want: dict[tuple[str, int], list[bytes]] = {}
    for r in records:
        want.setdefault((r.topic, partition_of(r.key, [0, 1, 2], [0, 1, 2])), []).append(r.key)
    assert {(t, p): b.record_count() for t, p, b, _f in queued} == {tp: len(keys) for tp, keys in want.items()}
    assert len(queued) == len(want) and all(b.closed() for _t, _p, b, _f in queued)
    assert app.outstanding == {f for _t, _p, _b, f in queued}
    queued[0][3].set_result(None)
    queued[1][3].set_exception(RuntimeError("broker gone"))
    await asyncio.sleep(0)
    assert len(app.outstanding) == len(queued) - 2 and str(app.failed_send) == "broker gone"


def test_changelog_records_are_the_bytes_faust_would_send(tmp_path: Path) -> None:
    """`ChangelogCodec` (the checkpoint's changelog records without Faust's serializer registry)
    gives exactly Faust's key and value bytes: plain and escaped keys, nested values, floats,
    non-ASCII text, deletions; a table whose serializer is not JSON always goes through Faust."""
    from types import SimpleNamespace

    from streams.worker.engine import ChangelogCodec, TableWrite, changelog_records
    from streams.worker.tables import DELETED

    app = build_app(Settings(run_dir=tmp_path, registry_path=None), with_index=False, table_store="memory://")
    app.finalize()
    table = app.pingan_processor.stores.candidates.table
    ev = SimpleNamespace(message=SimpleNamespace(partition=2))
    values = [[{"event_id": "e1", "t": 1752494400000, "lat": 31.4700001, "persons": ["p:1"], "note": "汶川 \"水\"\n"}],
              {"a": None, "b": True, "c": 1.5e-7, "d": {"e": []}}, "inc-1", 7, DELETED]
    keys = ["g:wm7b1", "名:张三", 'q"uote', "tab\t", "p:abc"]
    writes = [TableWrite(table, k, v, ev) for k, v in zip(keys, values, strict=True)]
    topic = table.changelog_topic
    faust_bytes = [(topic.prepare_key(w.key, table.key_serializer, None, None)[0],
                    None if w.value is DELETED else topic.prepare_value(w.value, table.value_serializer, None, None)[0])
                   for w in writes]
    records = changelog_records(writes)
    assert [(r.key, r.value) for r in records] == faust_bytes
    assert {(r.topic, r.partition) for r in records} == {(topic.get_topic_name(), 2)}
    assert table.changelog_codec()._direct is True  # noqa: SLF001 - proved on the first write

    raw = SimpleNamespace(changelog_topic=topic, key_serializer="raw", value_serializer="raw")
    assert ChangelogCodec(raw)._direct is False  # noqa: SLF001
