"""10,000 malformed inputs interleaved with a valid day on the raw topics.

Five kinds, 2,000 each: garbage bytes; wrong-schema Avro (well-formed single-object encodings of a
non-raw schema, and unknown fingerprints); truncated single-object encodings of real raw records;
valid raw camera Avro with an unparseable time; valid raw Avro with invalid fields (empty device id,
negative received_at, empty native id). Every one must land on the isolated ``deadletters.v1``
exactly once, with stage, error class and reason; the valid incidents must be unaffected.
"""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from connectors.ingest.publish import make_producer, publish_deliveries
from streams.ops.provision import provision_elasticsearch, provision_topics
from schemas.serde import default_store
from streams.settings import Settings
from streams.worker.stages import RAW_SOURCES
from infra.processes import wait_for
from tests.harness.kafka import read_topic
from tests.harness.pipeline import chunks, wait_for_index, worker_metrics
from tests.harness.stack import fault_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

N_EACH = 2000
KINDS = ("garbage", "wrong_schema", "truncated", "bad_time", "bad_fields")


def malformed_inputs(day_deliveries: list, rng: random.Random) -> list[tuple[str, str, bytes]]:
    """(kind, raw catalogue topic, value) × 10,000, shuffled."""
    store = default_store()
    raw_topics = list(RAW_SOURCES)
    valid: list[tuple[str, str, dict]] = [(d.result.topic, d.result.schema, r)
                                          for d in day_deliveries for r in d.result.records]
    cameras = [r for t, _s, r in valid if t == "raw.camera.v1"]
    out: list[tuple[str, str, bytes]] = []
    for i in range(N_EACH):
        # garbage: anything not starting with the single-object marker C3 01
        out.append(("garbage", rng.choice(raw_topics),
                    bytes([rng.randrange(0, 0xC3)]) + rng.randbytes(rng.randrange(0, 300))))
        # wrong schema: a well-formed Link record on a raw topic, or an unknown writer fingerprint
        if i % 2:
            link = {"link_id": f"lk-{i}", "event_a": f"a:{i}", "event_b": f"b:{i}", "score": 0.5,
                    "reasons": ["test"], "rule": "test", "county_code": "513221", "created_at": 0}
            value = store.encode("pingan.Link", link)
        else:
            value = b"\xc3\x01" + rng.randbytes(8) + rng.randbytes(rng.randrange(1, 80))
        out.append(("wrong_schema", rng.choice(raw_topics), value))
        # truncated: a real raw record, cut short (at least the 10-byte header kept half the time)
        topic, schema, rec = rng.choice(valid)
        enc = store.encode(schema, {**rec, "native_id": f"trunc-{i}"})
        out.append(("truncated", topic, enc[: rng.randrange(1 if i % 2 else 10, len(enc))]))
        # valid Avro, unparseable time
        cam = dict(rng.choice(cameras))
        cam.update(native_id=f"badtime-{i}", occurred_at_local=rng.choice(
            ["not a time", "2026-13-45 99:99:99", "昨天下午", "", "99999999999999999999"]))
        out.append(("bad_time", "raw.camera.v1", store.encode("pingan.raw.CameraAlarm", cam)))
        # valid Avro, invalid fields
        cam = dict(rng.choice(cameras))
        bad = i % 3
        if bad == 0:
            cam.update(native_id=f"badfield-{i}", device_id="   ")
        elif bad == 1:
            cam.update(native_id=f"badfield-{i}", received_at=-1 - i)
        else:
            cam.update(native_id="", event_type=f"x{i}")
        out.append(("bad_fields", "raw.camera.v1", store.encode("pingan.raw.CameraAlarm", cam)))
    rng.shuffle(out)
    return out


def test_ten_thousand_malformed_inputs_are_dead_lettered(stack: Settings, sim_day: Path, day_deliveries: list,
                                                         expected_incidents: dict, workers,
                                                         tmp_path: Path) -> None:
    s = fault_settings(stack, sim_day, tmp_path / "run")
    provision_topics(s)
    provision_elasticsearch(s)
    bad = malformed_inputs(day_deliveries, random.Random(20260714))
    assert len(bad) == 10_000 and Counter(k for k, _t, _v in bad) == {k: N_EACH for k in KINDS}

    w = workers.start(s, 0)
    producer = make_producer(s)
    translate_dead = 0
    try:
        rounds = 10
        valid_chunks = chunks(day_deliveries, rounds)
        bad_chunks = chunks(bad, rounds)
        for good, junk in zip(valid_chunks, bad_chunks):
            report = publish_deliveries(s, good, producer=producer)
            translate_dead += sum(report.dead_letters.values())
            futures = [producer.send(s.topic(t), key=f"junk-{n}".encode(), value=v)
                       for n, (_k, t, v) in enumerate(junk)]
            producer.flush()
            for f in futures:
                f.get(timeout=60)
    finally:
        producer.close()

    wait_for_index(s, expected_incidents, [w], timeout_s=300)

    store = default_store()

    def normalize_dead_letters() -> list[dict]:
        out = []
        for m in read_topic(s.kafka_bootstrap, s.topic("deadletters.v1"), idle_s=3):
            name, rec = store.decode(m.value)
            assert name == "pingan.DeadLetter"
            if rec["stage"] == "normalize":
                out.append(rec)
        return out

    dls = wait_for(lambda: (d := normalize_dead_letters()) and len(d) >= 10_000 and d, 120, 3,
                   "10,000 normalize dead letters")
    print(f"\nworker metrics: {worker_metrics(s)}; translate-stage dead letters from the valid day: {translate_dead}")
    assert len(dls) == 10_000, f"{len(dls)} dead letters (duplicates?)"
    assert len({d["dead_letter_id"] for d in dls}) == 10_000
    sent_raw = Counter(v for _k, _t, v in bad)
    assert Counter(d["raw"] for d in dls) == sent_raw, "dead letters do not carry exactly the malformed inputs"
    for d in dls:
        assert d["stage"] == "normalize" and d["error_class"] == "dead_letter" and d["reason"], d
        assert d["topic"] and d["topic"].startswith(s.topic_prefix) and d["offset"] is not None
    by_type = Counter(d["error_type"] for d in dls)
    print(f"dead letters by error type: {dict(by_type)}")
    m = worker_metrics(s) or {}
    assert m.get("dead_letters") == 10_000 + 0, m
