"""A simulated county day through the real pipeline: connectors → Kafka → worker → Elasticsearch.

The index must hold exactly the incidents that the pure pipeline computes offline for the same
input (deterministic ids: nothing lost, nothing duplicated), and the scenario incidents of the
simulator's ground truth must come out linked.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from bench.quality import run_folder
from connectors.ingest.files import load_truth
from connectors.ingest.publish import publish_folder
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from infra.processes import WorkerProcess, isolated_settings, wait_for
from tests.harness.leaks import delete_namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

def offline_incidents(folder: Path, secret: bytes) -> dict[str, set[str]]:
    """Live incidents (id → event ids) of the pure pipeline over the folder, in delivery order."""
    run = run_folder(folder, secret=secret)
    return {iid: set(inc["event_ids"]) for proc in run.processors.values() for iid, inc in proc.state.live().items()}


def indexed_incidents(es: Elasticsearch, alias: str) -> dict[str, set[str]]:
    es.indices.refresh(index=alias)
    resp = es.search(index=alias, size=10000, _source=["incident_id", "event_ids"], query={"match_all": {}})
    return {h["_id"]: set(h["_source"]["event_ids"]) for h in resp["hits"]["hits"]}


def test_simulated_day_indexes_exactly_the_offline_incidents(stack: Settings, sim_day: Path, workers: list,
                                                             tmp_path: Path) -> None:
    settings = isolated_settings(stack, registry=sim_day / "registry.csv")
    provision_topics(settings)
    provision_elasticsearch(settings)
    expected = offline_incidents(sim_day, settings.person_key_secret.encode())
    report = publish_folder(settings, sim_day)
    assert report.records > 1000 and not report.dead_letters

    workers.append(WorkerProcess(settings, 0, tmp_path).start())
    es = Elasticsearch(settings.es_url)
    alias = f"{settings.es_index_prefix}-incidents"
    try:
        def settled() -> bool:
            got = indexed_incidents(es, alias)
            return got == expected or (len(got) == len(expected) and got)

        try:
            wait_for(settled, 180, 2, "the index to hold every incident")
        except AssertionError:
            raise AssertionError(f"index incomplete; worker log:\n{workers[0].log_tail()}") from None
        got = indexed_incidents(es, alias)
        assert got == expected

        truth = load_truth(sim_day)
        by_truth: dict[str, set[str]] = {}
        for ev in truth["events"]:
            if ev["scenario"] != "background":
                by_truth.setdefault(ev["incident"], set()).add(ev["event_id"])
        incident_of = {eid: iid for iid, eids in got.items() for eid in eids}
        # the dispute seen by a grid worker, phoned to 110, and mediated in 三江镇 is one incident
        for inc, eids in by_truth.items():
            if inc.startswith("S1"):
                assert len({incident_of.get(e) for e in eids}) == 1, f"scenario {inc} split: {eids}"
    finally:
        es.close()
        for w in workers:
            w.stop()  # before the namespace goes, or the worker would recreate its topics
        delete_namespace(settings)
