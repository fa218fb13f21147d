"""110 desk variants (tests/fixtures/variants/alarm110): the poller on a view, on an integer id and on
SQLite's rowid, its one-line configuration errors, and the CSV/XLSX export importer into the real Kafka.

The poller tests use a recording producer (real Avro encoding, no broker) so they check what would be
sent; the importer tests need the local Kafka."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from connectors.ingest.importer import Alarm110Importer
from connectors.ingest.poller import Alarm110Poller, Cursor, CursorStore, PollerConfig, PollerSetupError
from connectors.ingest.producer import RecordProducer
from connectors.sources.registry import context
from schemas.serde import default_store
from streams.settings import Settings
from tests.harness.kafka import consume, count_records, create_topics, delete_topics, require_kafka, tmp_settings, unique_prefix

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

VARIANTS = Path(__file__).resolve().parents[1] / "fixtures" / "variants" / "alarm110"


class RecordingProducer:
    """What the poller would send: Avro-encoded with the real store, kept in memory."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def encode(self, schema: str, record: Any) -> bytes:
        return default_store().encode(schema, record)

    def dead_letter_item(self, record: Any) -> tuple[str, bytes, bytes]:
        return ("deadletters.v1", str(record["source"]).encode(), self.encode("pingan.DeadLetter", record))

    async def deliver(self, items: list, **_: Any) -> int:
        self.sent.extend(items)
        return 0

    def decoded(self, topic_suffix: str) -> list[dict[str, Any]]:
        return [default_store().decode(v)[1] for t, _, v in self.sent if t.endswith(topic_suffix)]


def desk(tmp_path: Path, variant: str) -> Path:
    db = tmp_path / "desk.sqlite"
    con = sqlite3.connect(db)
    con.executescript((VARIANTS / variant / "desk.sql").read_text(encoding="utf-8"))
    con.close()
    return db


def make_poller(tmp_path: Path, url: str, *, profile_dir: Path | None = None, **config: Any) -> Alarm110Poller:
    return Alarm110Poller(Settings(run_dir=tmp_path), RecordingProducer(),  # type: ignore[arg-type]
                          PollerConfig(url=url, batch_size=1, cursor_path=tmp_path / "cursor.json", **config),
                          context=context(profile_dir=profile_dir))


async def drain(p: Alarm110Poller) -> int:
    total = 0
    while n := await p.poll_once():
        total += n
    return total


async def test_view_based_desk_with_profile(tmp_path: Path) -> None:
    db = desk(tmp_path, "datadisplay_view")
    # table="JJD" is what the CLI passes by default: the profile's table still applies
    p = make_poller(tmp_path, f"sqlite:///{db}", profile_dir=VARIANTS / "datadisplay_view", table="JJD")
    await p.setup()
    assert p.setup_error is None and p.table_name == "V_JJDB"
    assert await drain(p) == 2
    recs = p.producer.decoded("raw.alarm110.v1")  # type: ignore[attr-defined]
    assert [(r["jjdbh"], r["address"], r["bjlx"], r["longitude"], r["location_source"], r["jqjb"]) for r in recs] == [
        ("J513221202607150101", "映秀镇渔子溪村2组", "200200", 103.487, "other", 3),
        ("J513221202607150102", "绵虒镇河坝街", "400300", 103.497, "other", 1)]
    assert p.stats["dead_letters"] == 0 and p.stats["unmapped"] == {}
    assert CursorStore(tmp_path / "cursor.json").load() == Cursor("2026-07-15 11:22:30", "J513221202607150102")


def _renamed_table(db: Path, n: int) -> None:
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE T_JCJ (ID INTEGER PRIMARY KEY, JJD_ID TEXT, BJ_TIME TEXT, JQMS TEXT, LNG REAL, LAT REAL)")
    for i in range(n):
        con.execute("INSERT INTO T_JCJ VALUES (?, ?, ?, ?, ?, ?)",
                    (10 + i, f"K{i:03d}", "2026-07-15 12:00:00", "邻里纠纷", 103.59, 31.48))
    con.commit()
    con.close()


@pytest.mark.parametrize("cursor", [("ID",), ("rowid",), ("BJ_TIME", "ID")])
async def test_cursor_on_id_rowid_or_pair(tmp_path: Path, cursor: tuple[str, ...]) -> None:
    db = tmp_path / "desk.sqlite"
    _renamed_table(db, 3)
    p = make_poller(tmp_path, f"sqlite:///{db}", table="t_jcj", cursor=cursor)
    await p.setup()
    assert p.setup_error is None
    assert await drain(p) == 3
    assert [r["jjdbh"] for r in p.producer.decoded("raw.alarm110.v1")] == ["K000", "K001", "K002"]  # type: ignore[attr-defined]
    con = sqlite3.connect(db)
    con.execute("INSERT INTO T_JCJ VALUES (20, 'K100', '2026-07-15 12:00:00', '求助', NULL, NULL)")
    con.commit()
    con.close()
    assert await drain(p) == 1  # only the new row
    saved = CursorStore(tmp_path / "cursor.json").load()
    assert saved is not None and [c.lower() for c in saved.columns] == [c.lower() for c in cursor]
    assert p.stats["unmapped"] == ({} if "ID" in cursor else {"ID": 4})


async def test_missing_cursor_column_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "desk.sqlite"
    _renamed_table(db, 1)
    p = make_poller(tmp_path, f"sqlite:///{db}", table="T_JCJ")
    await p.setup()
    assert p.setup_error == (
        "alarm110 poller: table T_JCJ has no cursor column GXSJ, JJDBH (columns: ID, JJD_ID, BJ_TIME, JQMS, LNG, LAT); "
        'set cursor = ["<monotonic column>", …] in the profile (alarm110.toml), '
        "e.g. an update time, an integer id, or rowid on SQLite tables")
    with pytest.raises(PollerSetupError, match="no cursor column"):
        p.fetch(None)


async def test_missing_required_column_names_the_alias_key(tmp_path: Path) -> None:
    db = tmp_path / "desk.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE JJD (JJDBH TEXT, BJSJ TEXT, SFDD TEXT, GIS_X TEXT, GIS_Y TEXT, GXSJ TEXT)")
    con.close()
    p = make_poller(tmp_path, f"sqlite:///{db}")
    await p.setup()
    assert p.setup_error is not None and "\n" not in p.setup_error
    assert p.setup_error.startswith("alarm110 poller: table JJD has no content column (tried BJNR, JQMS")
    assert "columns: JJDBH, BJSJ, SFDD, GIS_X, GIS_Y, GXSJ" in p.setup_error and "aliases.content" in p.setup_error


async def test_cursor_file_of_other_columns_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "desk.sqlite"
    _renamed_table(db, 1)
    CursorStore(tmp_path / "cursor.json").save(Cursor("2026-07-15 12:00:00", "K000", columns=("BJ_TIME", "JJD_ID")))
    p = make_poller(tmp_path, f"sqlite:///{db}", table="T_JCJ", cursor=("ID",))
    await p.setup()
    assert p.setup_error is not None and "holds a position on (BJ_TIME, JJD_ID) but the cursor is now (ID)" in p.setup_error


async def test_cursor_file_of_the_earlier_form_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "alarm110.json"
    path.write_text(json.dumps({"gxsj": "2026-07-14T09:13:05", "gxsj_type": "datetime", "jjdbh": "J1"}))
    saved = CursorStore(path).load()
    assert saved is not None and saved.columns == ("GXSJ", "JJDBH") and saved.values[1] == "J1"
    assert type(saved.values[0]).__name__ == "datetime"


# --- export importer into the real Kafka ---------------------------------------------------------

@pytest_asyncio.fixture(loop_scope="session")
async def kafka_env(tmp_path: Path):  # noqa: ANN201
    """Settings and a producer on fresh test topics (raw.alarm110.v1, deadletters.v1)."""
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, ["raw.alarm110.v1", "deadletters.v1"])
    settings = tmp_settings(tmp_path, prefix)
    producer = RecordProducer(settings.kafka_bootstrap, deadletter_topic=prefix + "deadletters.v1")
    try:
        yield settings, producer, prefix
    finally:
        await producer.stop()
        delete_topics(topics)


@pytest.mark.parametrize(("variant", "file", "n"), [("gbk_chinese_headers", "export.csv", 3),
                                                    ("xlsx_jcjbh", "export.xlsx", 2),
                                                    ("sunshine_jd_wd", "jjd.csv", 2)])
async def test_importer_variants_into_kafka(kafka_env: Any, variant: str, file: str, n: int) -> None:
    settings, producer, prefix = kafka_env
    folder = VARIANTS / variant
    imp = Alarm110Importer(settings, producer,
                           context=context(profile_dir=folder if (folder / "alarm110.toml").exists() else None))
    report = await imp.import_file(folder / file)
    assert (report.rows, report.sent, report.rejected, report.dead_letters) == (n, n, [], 0)
    msgs = await consume(prefix + "raw.alarm110.v1", n)
    recs = [default_store().decode(m.value)[1] for m in msgs]
    assert all(r["longitude"] and r["address"] and r["bjlb"] and r["quality"] == [] for r in recs)
    assert [m.key.decode() for m in msgs] == [r["jjdbh"] for r in recs]
    assert await count_records(prefix + "deadletters.v1", wait=0.5) == 0


async def test_importer_dead_letters_rows_missing_a_required_field(kafka_env: Any) -> None:
    settings, producer, prefix = kafka_env
    report = await Alarm110Importer(settings, producer).import_file(VARIANTS / "pgis_no_content" / "jjd.csv")
    assert (report.sent, report.dead_letters) == (0, 1)
    assert report.rejected == ["row 1 (JJDBH 513221202607180001): missing BJNR"]
    (letter,) = await consume(prefix + "deadletters.v1", 1)
    _, dl = default_store().decode(letter.value)
    assert letter.key == b"alarm110" and dl["stage"] == "translate" and "missing BJNR" in dl["reason"]
    assert json.loads(dl["raw"])["JJDBH"] == "513221202607180001"  # the row itself, as JSON
