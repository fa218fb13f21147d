"""examples/downstream_consumer.py against the real Kafka: records produced with the bus's serde,
read back by the example's standalone decoder into its view (latest per id, merge redirects)."""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from schemas.serde import default_store
from streams.settings import Settings
from infra.processes import isolated_settings
from tests.harness.leaks import delete_namespace

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("downstream_consumer", ROOT / "examples" / "downstream_consumer.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def incident(inc_id: str, version: int, *, status: str = "open", merged_into: str | None = None,
             events: tuple[str, ...] = ("grid:1",), tier: str = "village") -> dict:
    return {"incident_id": inc_id, "status": status, "merged_into": merged_into, "kind": "dispute", "severity": 2,
            "tier": tier, "admin_code": "513221107201", "county_code": "513221", "town_codes": ["513221107"],
            "village_codes": ["513221107201"], "first_seen": 1_784_000_000_000, "last_seen": 1_784_000_000_000 + version,
            "event_ids": list(events), "events": [], "links": [], "person_keys": [], "vehicle_keys": [],
            "version": version, "updated_at": 1_784_000_000_000 + version}


def escalation(inc_id: str, to_tier: str) -> dict:
    return {"escalation_id": f"esc-{inc_id}-{to_tier}", "incident_id": inc_id, "from_tier": "village",
            "to_tier": to_tier, "reason_code": "recurrence", "reason": "同一当事人再次报警", "admin_code": "513221107",
            "at": 1_784_000_100_000}


def test_example_builds_the_latest_view_and_follows_merges(stack: Settings, request: pytest.FixtureRequest) -> None:
    from connectors.ingest.publish import make_producer
    from streams.ops.provision import provision_topics

    settings = isolated_settings(stack)
    request.addfinalizer(lambda: delete_namespace(settings))
    provision_topics(settings)
    store = default_store()
    producer = make_producer(settings)
    sends = [
        ("incidents.v1", incident("inc-a", 1)),
        ("incidents.v1", incident("inc-b", 1, events=("alarm110:9",))),
        # three members, two listed (as a record over listed_event_ids lists the smallest): the third
        # joined inc-b, which was merged into inc-a (incident-members.v1 + the redirect)
        ("incidents.v1", {**incident("inc-a", 3, events=("grid:1", "mediation:5"), tier="town"), "event_count": 3}),
        ("incidents.v1", incident("inc-a", 2)),  # an older update redelivered late: ignored
        ("incidents.v1", incident("inc-b", 2, status="merged", merged_into="inc-a")),
        ("escalations.v1", escalation("inc-b", "town")),
        ("escalations.v1", escalation("inc-b", "town")),  # at-least-once duplicate
        ("escalations.v1", escalation("inc-a", "county")),
        ("incident-members.v1", {"event_id": "door:7", "incident_id": "inc-b", "county_code": "513221",
                                 "occurred_at": 1_784_000_000_000}),
    ]
    schema = {"incidents.v1": "pingan.Incident", "escalations.v1": "pingan.Escalation",
              "incident-members.v1": "pingan.IncidentMember"}
    for name, rec in sends:
        key = rec["event_id"] if name == "incident-members.v1" else rec["incident_id"]
        producer.send(settings.topic(name), key=key.encode(),
                      value=store.encode(schema[name], rec)).get(30)
    producer.close()

    ex = example()
    decoder = ex.AvscDecoder(ROOT / "schemas")
    view = ex.IncidentView()
    consumer = ex.make_consumer(settings.kafka_bootstrap, None)
    t0 = time.monotonic()
    try:
        n = ex.consume(consumer, view, decoder, [settings.topic(t) for t in ("incidents.v1", "escalations.v1",
                                                                             "incident-members.v1")])
    finally:
        consumer.close()
    assert n == len(sends) and time.monotonic() - t0 < 30
    assert set(view.live()) == {"inc-a"}
    assert view.incidents["inc-a"]["version"] == 3 and view.incidents["inc-a"]["tier"] == "town"
    assert view.resolve("inc-b")["incident_id"] == "inc-a"  # merge redirect followed
    assert view.resolve("inc-missing") is None
    assert len(view.escalations) == 2
    assert [e["to_tier"] for e in view.escalations_of("inc-b")] == ["town", "county"]
    assert view.members_of("inc-a") == view.members_of("inc-b") == {"grid:1", "mediation:5", "door:7"}

    # the standalone decoder agrees with the bus's own serde on every schema
    for name in store.names:
        assert store.fingerprint(name) in decoder.by_fingerprint
    ex.print_view(view)
