"""110 poller against a real PostgreSQL (a private cluster from the Debian package, tests/harness/peers.py)
into the real Kafka, through SQLAlchemy + psycopg 3.

PostgreSQL folds unquoted names to lower case, so ``CREATE TABLE JJD (JJDBH …)`` is the table
``jjd`` with columns ``jjdbh`` …; GXSJ/BJSJ are real ``timestamp`` columns and the coordinates
``numeric``, so the cursor round-trips a ``datetime`` through its JSON file and binds it back.
Covers: incremental polling on (GXSJ, JJDBH) with GXSJ ties, the cursor saved only after Kafka
confirmed (checked at the moment of delivery), a crash between send and cursor save re-sending
the batch with the same ids, and an Oracle-style quoted upper-case ``"JJD"`` table.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.harness.kafka import (
    CLOSED_BOOTSTRAP,
    consume,
    count_records,
    create_topics,
    delete_topics,
    require_kafka,
    tmp_settings,
    unique_prefix,
)
from connectors.ingest.poller import Alarm110Poller, Cursor, CursorStore, PollerConfig
from connectors.ingest.producer import DeliveryError, ProducerConfig, RecordProducer
from schemas.serde import default_store
from tests.harness.peers import PostgresCluster, postgres_cluster, postgres_missing

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

COLUMNS = ("JJDBH", "GLJJDBH", "XZQHBH", "BJSJ", "BJDH", "LXDH", "BJRXM", "S_IDENTITYCARDNO", "SFDZ", "BJNR",
           "BJLB", "BJLX", "BJXL", "JQJB", "ZDDWJD", "ZDDWWD", "SDDWJD", "SDDWWD", "GXSJ")
TYPES = {"JJDBH": "varchar(32) PRIMARY KEY", "BJSJ": "timestamp(0) NOT NULL", "GXSJ": "timestamp(0) NOT NULL",
         "JQJB": "smallint", "ZDDWJD": "numeric(10,6)", "ZDDWWD": "numeric(10,6)", "SDDWJD": "numeric(10,6)",
         "SDDWWD": "numeric(10,6)", "BJNR": "text"}
T0 = datetime(2026, 7, 14, 9, 13, 0)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    reason = postgres_missing()
    if reason:
        pytest.skip(reason)
    with postgres_cluster() as cluster:
        yield cluster


def _connect(pg: PostgresCluster):  # noqa: ANN202
    import psycopg

    return psycopg.connect(pg.dsn(), autocommit=True)


def create_db(pg: PostgresCluster, name: str, *, quoted: bool = False) -> str:
    """A fresh database holding an empty JJD table; returns its SQLAlchemy URL."""
    with _connect(pg) as con:
        con.execute(f"CREATE DATABASE {name}")
    q = (lambda s: f'"{s}"') if quoted else (lambda s: s)
    cols = ", ".join(f"{q(c)} {TYPES.get(c, 'varchar(64)')}" for c in COLUMNS)
    import psycopg

    with psycopg.connect(pg.dsn(name), autocommit=True) as con:
        con.execute(f"CREATE TABLE {q('JJD')} ({cols})")
    return pg.url(name)


def insert_rows(pg: PostgresCluster, db: str, rows: list[tuple[str, datetime]], *, quoted: bool = False) -> None:
    import psycopg

    q = (lambda s: f'"{s}"') if quoted else (lambda s: s)
    sql = (f"INSERT INTO {q('JJD')} ({', '.join(q(c) for c in COLUMNS)}) "
           f"VALUES ({', '.join('%s' for _ in COLUMNS)})")
    with psycopg.connect(pg.dsn(db), autocommit=True) as con:
        for jjdbh, gxsj in rows:
            values = {c: None for c in COLUMNS}
            values.update(JJDBH=jjdbh, XZQHBH="513221107", BJSJ=datetime(2026, 7, 14, 9, 12, 0),
                          BJDH="13888881234", BJRXM="王德学", SFDZ="三江镇柒山村3组",
                          BJNR="邻居因宅基地争吵，请求出警", BJLB="200000", BJLX="200200", BJXL="200200", JQJB=2,
                          ZDDWJD=Decimal("103.348200"), ZDDWWD=Decimal("31.105500"), GXSJ=gxsj)
            con.execute(sql, [values[c] for c in COLUMNS])


def rows_for(n: int, start: int = 0) -> list[tuple[str, datetime]]:
    # two rows per GXSJ second: the cursor must use (GXSJ, JJDBH), not GXSJ alone
    return [(f"J5132212026071400{i:04d}", T0 + timedelta(seconds=i // 2)) for i in range(start, start + n)]


def make_poller(settings, url: str, prefix: str, batch: int = 4,  # noqa: ANN001
                bootstrap: str | None = None) -> Alarm110Poller:
    producer = RecordProducer(bootstrap or settings.kafka_bootstrap, deadletter_topic=prefix + "deadletters.v1",
                              config=ProducerConfig(start_timeout_s=2.0))
    return Alarm110Poller(settings, producer, PollerConfig(url=url, batch_size=batch, interval_s=0.1))


async def drain(p: Alarm110Poller) -> int:
    total = 0
    while n := await p.poll_once():
        total += n
    return total


async def test_postgres_poll_cursor_after_ack_and_redelivery(pg: PostgresCluster, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, ["raw.alarm110.v1", "deadletters.v1"])
    url = create_db(pg, "jjd_main")
    insert_rows(pg, "jjd_main", rows_for(10))
    settings = tmp_settings(tmp_path, prefix)
    cursor_file = tmp_path / "cursors" / "alarm110.json"
    try:
        p1 = make_poller(settings, url, prefix)
        await p1.setup()
        assert p1._table is not None and p1._table.name == "jjd"  # found case-insensitively

        # the cursor file is only written after Kafka acknowledged the batch
        seen_at_delivery: list[bool] = []
        real_deliver = p1.producer.deliver

        async def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            seen_at_delivery.append(cursor_file.exists())
            out = await real_deliver(*args, **kwargs)
            seen_at_delivery.append(cursor_file.exists())
            return out

        monkeypatch.setattr(p1.producer, "deliver", spy)
        assert await p1.poll_once() == 4
        assert seen_at_delivery == [False, False]
        saved = CursorStore(cursor_file).load()
        assert saved == Cursor(T0 + timedelta(seconds=1), "J51322120260714000003")
        assert json.loads(cursor_file.read_text())["values"][0]["type"] == "datetime"  # a timestamp column

        # crash between Kafka's ack and the cursor save: the batch is sent, the cursor stays
        def boom(cursor: Cursor) -> None:
            raise OSError("disk gone")

        monkeypatch.setattr(p1.cursor_store, "save", boom)
        with pytest.raises(OSError):
            await p1.poll_once()
        await p1.stop()
        await p1.producer.stop()
        assert CursorStore(cursor_file).load() == saved

        # restart: resumes from the saved cursor, re-sends rows 4-7, then 8-9
        p2 = make_poller(settings, url, prefix)
        await p2.setup()
        assert p2.cursor == saved and isinstance(p2.cursor.values[0], datetime)
        assert await drain(p2) == 6
        # new rows with the same GXSJ as the last one and larger JJDBH are picked up incrementally
        insert_rows(pg, "jjd_main", [("J51322120260714000010", T0 + timedelta(seconds=4)),
                                     ("J51322120260714000011", T0 + timedelta(seconds=5))])
        assert await drain(p2) == 2
        assert await p2.poll_once() == 0
        await p2.stop()
        await p2.producer.stop()
        assert CursorStore(cursor_file).load() == Cursor(T0 + timedelta(seconds=5), "J51322120260714000011")

        msgs = await consume(prefix + "raw.alarm110.v1", 16)
        records = [default_store().decode(m.value)[1] for m in msgs]
        ids = [r["jjdbh"] for r in records]
        assert [m.key.decode() for m in msgs] == ids
        expected = [f"J5132212026071400{i:04d}" for i in range(12)]
        assert sorted(set(ids)) == expected  # nothing lost
        assert [ids.count(e) for e in expected] == [1] * 4 + [2] * 4 + [1] * 4  # rows 4-7 twice
        first = records[0]
        assert first["bjsj_local"] == "2026-07-14 09:12:00"  # timestamp column → local text
        assert first["longitude"] == pytest.approx(103.3482) and first["latitude"] == pytest.approx(31.1055)
        assert first["jqjb"] == 2 and first["xzqhbh"] == "513221107" and first["bjxl"] == "200200"
        assert await count_records(prefix + "raw.alarm110.v1", wait=0.5) == 16
        assert await count_records(prefix + "deadletters.v1", wait=0.5) == 0
    finally:
        delete_topics(topics)


async def test_postgres_quoted_uppercase_table(pg: PostgresCluster, tmp_path: Path) -> None:
    """A table migrated from Oracle keeps quoted upper-case names: ``"JJD"("JJDBH", …, "GXSJ")``."""
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, ["raw.alarm110.v1", "deadletters.v1"])
    url = create_db(pg, "jjd_upper", quoted=True)
    insert_rows(pg, "jjd_upper", rows_for(5), quoted=True)
    try:
        p = make_poller(tmp_settings(tmp_path, prefix), url, prefix, batch=2)
        await p.setup()
        assert p._table is not None and p._table.name == "JJD"
        assert await drain(p) == 5 and p.stats["batches"] == 3
        await p.stop()
        await p.producer.stop()
        ids = [default_store().decode(m.value)[1]["jjdbh"] for m in await consume(prefix + "raw.alarm110.v1", 5)]
        assert ids == [r[0] for r in rows_for(5)]
    finally:
        delete_topics(topics)


async def test_postgres_kafka_down_keeps_cursor(pg: PostgresCluster, tmp_path: Path) -> None:
    """No broker: the delivery fails retriably and the cursor file is never written."""
    url = create_db(pg, "jjd_nokafka")
    insert_rows(pg, "jjd_nokafka", rows_for(2))
    p = make_poller(tmp_settings(tmp_path, unique_prefix(), bootstrap=CLOSED_BOOTSTRAP), url, "x-",
                    bootstrap=CLOSED_BOOTSTRAP)
    await p.setup()
    with pytest.raises(DeliveryError) as info:
        await p.poll_once()
    assert info.value.retriable
    assert not (tmp_path / "cursors" / "alarm110.json").exists() and p.cursor is None
    await p.stop()
