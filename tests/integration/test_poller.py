"""110 poller over a SQLite JJD table into the real Kafka: cursor saved only after delivery,
crash between send and cursor save → re-send with the same ids (at-least-once), bad rows dead-lettered."""
from __future__ import annotations

import sqlite3
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

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

COLUMNS = ("JJDBH", "GLJJDBH", "XZQHBH", "BJSJ", "BJDH", "LXDH", "BJRXM", "S_IDENTITYCARDNO", "SFDZ", "BJNR",
           "BJLB", "BJLX", "BJXL", "JQJB", "ZDDWJD", "ZDDWWD", "SDDWJD", "SDDWWD", "GXSJ")


def make_db(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """JJD with rows (JJDBH, BJSJ, GXSJ); GXSJ deliberately repeats across rows."""
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE JJD ({', '.join(c + ' TEXT' for c in COLUMNS)}, PRIMARY KEY (JJDBH))")
    add_rows(con, rows)
    con.close()


def add_rows(con: sqlite3.Connection, rows: list[tuple[str, str, str]]) -> None:
    for jjdbh, bjsj, gxsj in rows:
        values = {c: None for c in COLUMNS}
        values.update(JJDBH=jjdbh, XZQHBH="513221107", BJSJ=bjsj, BJDH="13888881234", BJRXM="王德学",
                      SFDZ="三江镇柒山村3组", BJNR="邻居因宅基地争吵，请求出警", BJLB="200000", BJLX="200200",
                      BJXL="200200", JQJB="2", ZDDWJD="103.3482", ZDDWWD="31.1055", GXSJ=gxsj)
        con.execute(f"INSERT INTO JJD VALUES ({', '.join('?' for _ in COLUMNS)})", [values[c] for c in COLUMNS])
    con.commit()


def rows_for(n: int, start: int = 0) -> list[tuple[str, str, str]]:
    # two rows per GXSJ second: the cursor must use (GXSJ, JJDBH), not GXSJ alone
    return [(f"J5132212026071400{i:04d}", "2026-07-14 09:12:00", f"2026-07-14 09:13:{i // 2:02d}")
            for i in range(start, start + n)]


def poller(settings, db: Path, prefix: str, batch: int = 4, bootstrap: str | None = None) -> Alarm110Poller:
    producer = RecordProducer(bootstrap or settings.kafka_bootstrap, deadletter_topic=prefix + "deadletters.v1",
                              config=ProducerConfig(start_timeout_s=2.0))
    return Alarm110Poller(settings, producer, PollerConfig(url=f"sqlite:///{db}", batch_size=batch, interval_s=0.1))


async def drain(p: Alarm110Poller) -> int:
    total = 0
    while n := await p.poll_once():
        total += n
    return total


async def test_poll_cursor_and_at_least_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, ["raw.alarm110.v1", "deadletters.v1"])
    db = tmp_path / "jjd.sqlite"
    make_db(db, rows_for(10))
    settings = tmp_settings(tmp_path, prefix)
    try:
        p1 = poller(settings, db, prefix)
        await p1.setup()
        assert await p1.poll_once() == 4
        saved = CursorStore(tmp_path / "cursors" / "alarm110.json").load()
        assert saved == Cursor("2026-07-14 09:13:01", "J51322120260714000003")

        # crash between Kafka's ack and the cursor save: the batch is sent but the cursor stays
        def boom(cursor: Cursor) -> None:
            raise OSError("disk gone")

        monkeypatch.setattr(p1.cursor_store, "save", boom)
        with pytest.raises(OSError):
            await p1.poll_once()
        await p1.stop()
        await p1.producer.stop()

        # restart: resumes from the saved cursor, re-sends rows 4-7, then 8-9
        p2 = poller(settings, db, prefix)
        await p2.setup()
        assert p2.cursor == saved
        assert await drain(p2) == 6
        # new rows (same GXSJ as the last one, larger JJDBH) are picked up incrementally
        con = sqlite3.connect(db)
        add_rows(con, [("J51322120260714000010", "2026-07-14 09:12:00", "2026-07-14 09:13:04"),
                       ("J51322120260714000011", "2026-07-14 09:12:00", "2026-07-14 09:13:05")])
        con.close()
        assert await drain(p2) == 2
        await p2.stop()
        await p2.producer.stop()

        msgs = await consume(prefix + "raw.alarm110.v1", 16)
        ids = [default_store().decode(m.value)[1]["jjdbh"] for m in msgs]
        assert [m.key.decode() for m in msgs] == ids
        expected = [f"J5132212026071400{i:04d}" for i in range(12)]
        assert sorted(set(ids)) == expected  # nothing lost
        assert len(ids) == 16  # rows 4-7 twice: at-least-once, same native ids
        assert [ids.count(e) for e in expected] == [1] * 4 + [2] * 4 + [1] * 4
        assert await count_records(prefix + "deadletters.v1", wait=0.5) == 0
    finally:
        delete_topics(topics)


async def test_bad_row_is_dead_lettered_and_cursor_moves_on(tmp_path: Path) -> None:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, ["raw.alarm110.v1", "deadletters.v1"])
    db = tmp_path / "jjd.sqlite"
    make_db(db, rows_for(3))
    con = sqlite3.connect(db)
    con.execute("UPDATE JJD SET BJSJ = 'yesterday-ish' WHERE JJDBH = 'J51322120260714000001'")
    con.commit()
    con.close()
    try:
        p = poller(tmp_settings(tmp_path, prefix), db, prefix)
        await p.setup()
        assert await drain(p) == 3
        assert p.stats["dead_letters"] == 1 and p.stats["records"] == 2
        await p.stop()
        await p.producer.stop()
        (letter,) = await consume(prefix + "deadletters.v1", 1)
        name, dl = default_store().decode(letter.value)
        assert letter.key == b"alarm110" and dl["stage"] == "translate" and "BJSJ" in dl["reason"]
        assert b"J51322120260714000001" in dl["raw"]
        assert len(await consume(prefix + "raw.alarm110.v1", 2)) == 2
    finally:
        delete_topics(topics)


async def test_kafka_down_keeps_cursor(tmp_path: Path) -> None:
    """No broker needed: an unreachable Kafka raises a retriable error and the cursor file is not written."""
    db = tmp_path / "jjd.sqlite"
    make_db(db, rows_for(2))
    p = poller(tmp_settings(tmp_path, unique_prefix(), bootstrap=CLOSED_BOOTSTRAP), db, "x-", bootstrap=CLOSED_BOOTSTRAP)
    await p.setup()
    with pytest.raises(DeliveryError) as info:
        await p.poll_once()
    assert info.value.retriable
    assert not (tmp_path / "cursors" / "alarm110.json").exists()
    assert p.cursor is None
    await p.stop()


async def test_missing_table_does_not_stop_the_poller_setup(tmp_path) -> None:  # noqa: ANN001
    """A desk database without JJD yet: setup reports it and keeps the process alive; polling retries."""
    import sqlite3

    from connectors.ingest.poller import Alarm110Poller, PollerConfig
    from streams.settings import Settings

    db = tmp_path / "empty.sqlite"
    sqlite3.connect(db).close()
    poller = Alarm110Poller(Settings(run_dir=tmp_path), producer=None,  # type: ignore[arg-type]
                            config=PollerConfig(url=f"sqlite:///{db}", cursor_path=tmp_path / "c.json"))
    await poller.setup()
    assert poller.setup_error and "JJD" in poller.setup_error
    with pytest.raises(LookupError, match="JJD"):
        poller.fetch(None)
