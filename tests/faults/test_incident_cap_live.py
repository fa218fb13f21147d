"""A flood past the cap on events per incident, through the live worker (rules from `rules_dir`).

The seed-2 day holds a 264-event flood. With ``[incidents] max_events = 100`` in the deployment's
tier_rules.toml the worker must split it into continuation incidents of at most 100 events (the
pieces exactly cover the flood), leave every smaller incident as the uncapped pure pipeline has
it, keep the links that reached a full incident with the reason saying so, and index what it
committed to `incidents.v1`. Which flood events land in which piece depends on the order links are
applied (docs/contracts.md), so the pieces are checked as a partition, not one by one.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from schemas.serde import default_store
from streams.domain.tiers import DEFAULT_TIER_RULES_PATH
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from streams.worker import topology
from tests.faults.test_kill_flood import read_all
from tests.harness.pipeline import indexed_incidents, publish
from tests.harness.stack import fault_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

CAP = 100


def _capped_rules(folder: Path) -> Path:
    text = DEFAULT_TIER_RULES_PATH.read_text("utf-8")
    capped = text.replace("max_events = 20000", f"max_events = {CAP}")
    assert capped != text, "the shipped tier_rules.toml no longer says max_events = 20000"
    folder.mkdir()
    (folder / "tier_rules.toml").write_text(capped, "utf-8")
    return folder


def _covers(got: dict[str, frozenset[str]] | None, expected: dict[str, frozenset[str]]) -> bool:
    """Every expected event is indexed in exactly one incident."""
    if not got:
        return False
    indexed = [eid for ids in got.values() for eid in ids]
    return len(indexed) == len(set(indexed)) and set(indexed) == set().union(*expected.values())


def test_a_flood_past_the_cap_goes_on_in_continuation_incidents_in_the_live_worker(
        stack: Settings, sim_day: Path, day_deliveries: list, expected_incidents: dict, workers,
        tmp_path: Path) -> None:
    floods = {iid: ids for iid, ids in expected_incidents.items() if len(ids) > CAP}
    assert floods, "the seed-2 day has no incident larger than the cap"
    s = fault_settings(stack, sim_day, tmp_path / "run", rules_dir=_capped_rules(tmp_path / "rules"),
                       processing_guarantee="exactly_once")
    provision_topics(s)
    provision_elasticsearch(s)
    publish(s, day_deliveries)
    w = workers.start(s, 0)

    alias = f"{s.es_index_prefix}-incidents"
    deadline, got = time.monotonic() + 300, None
    while time.monotonic() < deadline:
        assert w.proc is None or w.proc.poll() is None, f"the worker exited:\n{w.log_tail(60)}"
        got = indexed_incidents(s.es_url, alias)
        if _covers(got, expected_incidents):
            time.sleep(4)  # settle: no late writes
            got = indexed_incidents(s.es_url, alias)
            break
        time.sleep(2)
    assert _covers(got, expected_incidents), f"the index never held every event once: {len(got or {})} docs"
    assert got is not None

    # every incident at or below the cap is exactly the uncapped one; the floods are split into
    # pieces of at most CAP events that cover each flood exactly
    small = {iid: ids for iid, ids in expected_incidents.items() if len(ids) <= CAP}
    assert {iid: got.get(iid) for iid in small} == small
    for iid, ids in floods.items():
        pieces = [p for p in got.values() if p & ids]
        assert all(p <= ids and len(p) <= CAP for p in pieces), [len(p) for p in pieces]
        assert len(pieces) == -(-len(ids) // CAP), f"{len(ids)} events in {sorted(map(len, pieces))}"

    # what read_committed subscribers hold is what is indexed, and the links that reached a full
    # incident are kept with the reason
    store = default_store()
    final: dict[str, dict] = {}
    for r in read_all(s.kafka_bootstrap, s.topic(topology.INCIDENTS), "read_committed"):
        inc = store.decode(r.value)[1]
        final[inc["incident_id"]] = inc
    live = {iid: frozenset(inc["event_ids"]) for iid, inc in final.items() if inc["status"] != "merged"}
    assert live == got
    reasons = [lk["reasons"][-1] for inc in final.values() if inc["status"] != "merged" for lk in inc["links"]]
    assert any(r.startswith("未合并") and f"上限{CAP}条" in r for r in reasons)
