"""Mediation export importer into the real Kafka: CSV and XLSX, idempotent by case number, folder watch."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.harness.kafka import (
    consume,
    count_records,
    create_topics,
    delete_topics,
    require_kafka,
    tmp_settings,
    unique_prefix,
)
from connectors.ingest.importer import MediationImporter
from connectors.ingest.producer import RecordProducer
from schemas.serde import default_store

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mediation"


async def test_import_is_idempotent_by_case_number(tmp_path: Path) -> None:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, ["raw.mediation.v1", "deadletters.v1"])
    settings = tmp_settings(tmp_path, prefix)
    try:
        imp = MediationImporter(settings, RecordProducer(settings.kafka_bootstrap, deadletter_topic=prefix + "deadletters.v1"))
        await imp.setup()
        first = await imp.import_file(FIXTURES / "cases_utf8.csv")
        assert first.cases >= 1 and first.sent == first.cases and not first.rejected
        again = await imp.import_file(FIXTURES / "cases_gbk.csv")  # same cases, another encoding
        assert again.sent == 0 and again.unchanged == first.cases
        # a new importer instance (process restart) remembers through the ledger
        imp2 = MediationImporter(settings, imp.producer)
        await imp2.setup()
        assert (await imp2.import_file(FIXTURES / "cases_utf8_bom.csv")).sent == 0
        msgs = await consume(prefix + "raw.mediation.v1", first.cases)
        assert await count_records(prefix + "raw.mediation.v1", wait=1.0) == first.cases
        keys = {m.key for m in msgs}
        assert keys == {default_store().decode(m.value)[1]["case_no"].encode() for m in msgs}

        bad = await imp.import_file(FIXTURES / "cases_bad.csv")
        assert bad.rejected and bad.dead_letters == 1
        (letter,) = await consume(prefix + "deadletters.v1", 1)
        assert letter.key == b"mediation"
        assert default_store().decode(letter.value)[1]["raw"] == (FIXTURES / "cases_bad.csv").read_bytes()
        await imp.producer.stop()
    finally:
        delete_topics(topics)


async def test_watch_folder_imports_xlsx(tmp_path: Path) -> None:
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, ["raw.mediation.v1", "deadletters.v1"])
    settings = tmp_settings(tmp_path, prefix)
    watch = tmp_path / "inbox"
    watch.mkdir()
    try:
        imp = MediationImporter(settings, RecordProducer(settings.kafka_bootstrap, deadletter_topic=prefix + "deadletters.v1"),
                                watch_dir=watch, interval_s=0.1)
        await imp.setup()
        task = asyncio.create_task(imp.run())
        shutil.copy(FIXTURES / "cases.xlsx", watch / "cases.xlsx")
        for _ in range(100):
            if (watch / "processed" / "cases.xlsx").exists():
                break
            await asyncio.sleep(0.1)
        await imp.stop()
        await task
        assert (watch / "processed" / "cases.xlsx").exists()
        msgs = await consume(prefix + "raw.mediation.v1", 1)
        assert default_store().decode(msgs[0].value)[1]["case_no"]
        await imp.producer.stop()
    finally:
        delete_topics(topics)
