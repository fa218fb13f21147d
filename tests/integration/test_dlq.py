"""`pingan dlq` on the real Kafka: list/show dead letters, re-drive them traceably."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schemas.deadletter import make_dead_letter
from schemas.serde import default_store
from streams.ops.dlq import REDRIVE_HEADER, journal, read_dead_letters, redrive
from streams.settings import Settings
from infra.processes import isolated_settings, settings_env
from tests.harness.leaks import delete_namespace

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "grid"


def _consume(settings: Settings, topic: str, min_count: int, timeout_s: float = 20.0) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list = []
    deadline = time.monotonic() + timeout_s
    while len(out) < min_count and time.monotonic() < deadline:
        for records in consumer.poll(500).values():
            out.extend(records)
    consumer.close()
    return out


@pytest.fixture(scope="module")
def dlq_settings(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """An isolated namespace holding three dead letters (see `letters`)."""
    from connectors.ingest.publish import make_producer
    from streams.ops.provision import provision_topics

    settings = isolated_settings(stack, run_dir=tmp_path_factory.mktemp("dlq-run"))  # the state journal
    provision_topics(settings)
    store = default_store()
    now = int(time.time() * 1000)
    grid_record = {"report_id": "G-REDRIVE-1", "grid_code": "513221107001", "reporter_id": "w1",
                   "category_code": "0101", "category_name": "邻里纠纷", "description": "柒山村邻里纠纷",
                   "address": None, "longitude": None, "latitude": None, "coord_system": "WGS84", "persons": [],
                   "reported_at_local": "2026-07-14T08:00:00", "status": None, "received_at": now,
                   "native_id": "G-REDRIVE-1", "raw_format": "grid-json"}
    letters = [
        # normalize failed on a raw record (say, a normalizer bug since fixed): re-publish its bytes
        make_dead_letter(source="grid", stage="normalize", raw=store.encode("pingan.raw.GridReport", grid_record),
                         error=ValueError("grid: bug in the address normalizer"), topic=settings.topic("raw.grid.v1"),
                         partition=0, offset=7, at_ms=now),
        # translate rejected a payload that the connector now accepts: translate again
        make_dead_letter(source="grid", stage="translate", raw=(FIXTURES / "report_gcj02.json").read_bytes(),
                         error="temporarily rejected", error_type="bad_field", content_type="application/json",
                         at_ms=now + 1),
        # a payload that is still bad: failed-again, its new reason in the letter's history
        make_dead_letter(source="grid", stage="translate", raw=(FIXTURES / "malformed.json").read_bytes(),
                         error="malformed JSON", error_type="malformed", content_type="application/json",
                         at_ms=now + 2),
    ]
    producer = make_producer(settings)
    for dl in letters:
        producer.send(settings.topic("deadletters.v1"), key=dl["source"].encode(),
                      value=store.encode("pingan.DeadLetter", dl)).get(30)
    producer.close()
    yield settings
    delete_namespace(settings)


def test_list_filters_and_show(dlq_settings: Settings) -> None:
    every = read_dead_letters(dlq_settings)
    assert [x.record["stage"] for x in every] == ["normalize", "translate", "translate"]
    assert [x.id for x in read_dead_letters(dlq_settings, stage="translate", reason_contains="MALFORMED")] == \
        [every[2].id]
    assert read_dead_letters(dlq_settings, source="camera") == []
    assert [x.id for x in read_dead_letters(dlq_settings, limit=1)] == [every[2].id]

    from streams.cli import _mount, app

    _mount()
    env = settings_env(dlq_settings)
    runner = CliRunner()
    listed = runner.invoke(app, ["dlq", "list", "--stage", "translate", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert len(listed.output.strip().splitlines()) == 2
    shown = runner.invoke(app, ["dlq", "show", every[0].id[:10]], env=env)
    assert shown.exit_code == 0, shown.output
    assert every[0].id in shown.output and "c3 01" in shown.output and "柒山村邻里纠纷" in shown.output


def test_redrive_is_tagged_and_traceable(dlq_settings: Settings) -> None:
    settings = dlq_settings
    every = read_dead_letters(settings)
    dry = redrive(settings, every, dry_run=True)
    assert [o.action for o in dry] == ["republished", "translated", "failed-again"]
    assert _consume(settings, settings.topic("raw.grid.v1"), 1, timeout_s=2) == []  # dry run sent nothing

    outcomes = redrive(settings, every)
    assert [o.action for o in outcomes] == ["republished", "translated", "failed-again"]
    translated = outcomes[1].records
    assert translated >= 1
    raw = _consume(settings, settings.topic("raw.grid.v1"), 1 + translated)
    assert len(raw) == 1 + translated
    tags = sorted(dict(r.headers)[REDRIVE_HEADER].decode() for r in raw)
    assert tags == sorted([every[0].id] + [every[1].id] * translated)
    original = next(r for r in raw if dict(r.headers)[REDRIVE_HEADER].decode() == every[0].id)
    assert original.value == every[0].record["raw"] and original.key == b"G-REDRIVE-1"  # key recomputed

    # one letter per id: a failed re-drive adds no second letter; the journal has the state and history
    assert [x.id for x in read_dead_letters(settings)] == [x.id for x in every]
    states = journal(settings).states()
    assert [states[x.id].state for x in every] == ["re-driven", "resolved", "failed-again"]
    assert outcomes[2].new_dead_letter_id is None and "JSON" in states[every[2].id].history[-1]["detail"]

    from streams.cli import _mount, app

    _mount()
    runner = CliRunner()
    env = {**settings_env(settings), "COLUMNS": "200"}
    bulk = runner.invoke(app, ["dlq", "redrive", "--source", "grid", "--stage", "translate", "--dry-run"], env=env)
    assert bulk.exit_code == 0, bulk.output
    assert "1 resolved letter(s) skipped" in bulk.output and every[1].id[:12] not in bulk.output
    assert every[2].id[:12] in bulk.output  # failed-again letters are re-driven again
    listed = runner.invoke(app, ["dlq", "list", "--state", "failed-again", "--json"], env=env)
    assert [json.loads(line)["dead_letter_id"] for line in listed.output.splitlines()] == [every[2].id]


def test_edit_then_redrive_by_prefix_resolves_the_letter(dlq_settings: Settings) -> None:
    """A grid report without its report id: corrected with a merge patch, re-driven by a 12-char prefix."""
    from connectors.ingest.publish import make_producer

    settings = dlq_settings
    store = default_store()
    raw = (FIXTURES / "bad_missing_report_id.json").read_bytes()
    dl = make_dead_letter(source="grid", stage="translate", raw=raw, error="no report id", error_type="MissingField",
                          content_type="application/json", at_ms=int(time.time() * 1000) + 10)
    producer = make_producer(settings)
    producer.send(settings.topic("deadletters.v1"), key=b"grid", value=store.encode("pingan.DeadLetter", dl)).get(30)
    producer.close()
    prefix = dl["dead_letter_id"][:12]

    from streams.cli import _mount, app

    _mount()
    runner = CliRunner()
    env = {**settings_env(settings), "COLUMNS": "200"}
    ambiguous = runner.invoke(app, ["dlq", "show", ""], env=env)
    assert ambiguous.exit_code == 2 and "empty" in ambiguous.output
    unknown = runner.invoke(app, ["dlq", "redrive", "--id", "zzzz"], env=env)
    assert unknown.exit_code == 2 and "no dead letter 'zzzz'" in unknown.output
    first = runner.invoke(app, ["dlq", "redrive", "--id", prefix], env=env)
    assert first.exit_code == 0 and "failed-again" in first.output, first.output
    patch = settings.run_dir / "patch.json"
    patch.write_text(json.dumps({"reportId": "WG-FIXED-1"}), encoding="utf-8")
    edited = runner.invoke(app, ["dlq", "edit", prefix, "--patch", str(patch)], env=env)
    assert edited.exit_code == 0 and "edited" in edited.output, edited.output
    shown = runner.invoke(app, ["dlq", "show", prefix], env=env)
    assert "WG-FIXED-1" in shown.output and '"failed-again"' in shown.output
    second = runner.invoke(app, ["dlq", "redrive", "--id", prefix], env=env)
    assert second.exit_code == 0 and "translated 1 record(s)" in second.output, second.output
    st = journal(settings).states()[dl["dead_letter_id"]]
    assert st.state == "resolved" and [h["action"] for h in st.history] == ["redrive", "edit", "redrive"]
    raw_topic = _consume(settings, settings.topic("raw.grid.v1"), 4)
    assert any(b"WG-FIXED-1" in r.value for r in raw_topic)
    again = runner.invoke(app, ["dlq", "redrive", "--source", "grid", "--stage", "translate"], env=env)
    assert prefix not in again.output and "2 resolved letter(s) skipped" in again.output
