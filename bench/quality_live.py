"""Correlation quality through the real pipeline: simulator → connectors → Kafka → worker → index.

`evaluate_live(base, folder)` publishes a simulator folder into an isolated namespace on the real
stack, runs a real `pingan worker run`, waits until every published event is in exactly one indexed
incident, then scores the indexed incidents against the simulator's ground truth with the same
metrics as the offline evaluation (`bench.quality`). It also reports whether the live index equals
the offline pipeline's incidents (it must: processing is deterministic).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from elasticsearch import Elasticsearch

from bench.common import drop_indices, drop_kafka_namespace
from bench.quality import run_folder, truth_maps
from connectors.ingest.publish import publish_folder
from infra.processes import WorkerProcess, isolated_settings, wait_for
from streams.domain.quality import QualityReport, evaluate
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings


@dataclass
class LiveQuality:
    """The live run's quality report plus how the run went."""

    report: QualityReport
    events: int
    incidents: int
    seconds: float
    equals_offline: bool


def _indexed(settings: Settings) -> dict[str, list[str]]:
    es = Elasticsearch(settings.es_url)
    alias = f"{settings.es_index_prefix}-incidents"
    try:
        es.indices.refresh(index=alias)
        out: dict[str, list[str]] = {}
        resp = es.search(index=alias, size=2000, scroll="1m", _source=["event_ids"], query={"match_all": {}})
        while resp["hits"]["hits"]:
            for h in resp["hits"]["hits"]:
                out[h["_id"]] = h["_source"]["event_ids"]
            resp = es.scroll(scroll_id=resp["_scroll_id"], scroll="1m")
        es.clear_scroll(scroll_id=resp["_scroll_id"])
        return out
    finally:
        es.close()


def _drop(settings: Settings) -> None:
    """Delete the namespace's topics and indices."""
    drop_kafka_namespace(settings, client_id="pingan-quality-live", wait_s=0.0)
    drop_indices(settings)


def evaluate_live(base: Settings, folder: Path, *, timeout_s: float = 600.0, keep: bool = False) -> LiveQuality:
    """Run the folder through the real pipeline and score the index against truth.json."""
    settings = isolated_settings(base, registry=folder / "registry.csv")
    provision_topics(settings)
    provision_elasticsearch(settings)
    offline = run_folder(folder, secret=settings.person_key())
    expected_events = set(offline.events)
    t0 = time.perf_counter()
    publish_folder(settings, folder)
    with tempfile.TemporaryDirectory() as logs:
        worker = WorkerProcess(settings, 0, Path(logs)).start()
        try:
            def done() -> bool:
                got = _indexed(settings)
                seen = [e for ids in got.values() for e in ids]
                return len(seen) == len(set(seen)) and set(seen) >= expected_events

            try:
                wait_for(done, timeout_s, 3, "every event indexed in exactly one incident")
            except AssertionError as exc:
                raise RuntimeError(f"{exc}\nworker log:\n{worker.log_tail()}") from None
            seconds = time.perf_counter() - t0
        finally:
            worker.stop()
    got = _indexed(settings)
    offline_incidents = {iid: sorted(inc["event_ids"]) for proc in offline.processors.values()
                         for iid, inc in proc.state.live().items()}
    equals = {k: sorted(v) for k, v in got.items()} == offline_incidents
    t_inc, scenario = truth_maps(folder)
    predicted = {eid: iid for iid, eids in got.items() for eid in eids if eid in t_inc}
    report = evaluate({e: t_inc[e] for e in predicted}, predicted, scenario)
    if not keep:
        _drop(settings)
    return LiveQuality(report, len(predicted), len(got), seconds, equals)
