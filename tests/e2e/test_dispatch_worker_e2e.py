"""The dispatch flow against a real worker (issue 15): the operator page's 受理 → 分派 → 办结 go
through ``POST /api/incidents/{id}/actions`` → dispositions.v1 → the worker's correlate stage
(`CountyProcessor.apply_disposition`) → incidents.v1 → the index and the page's live stream.
Nothing is applied by the test: the page shows 已受理 / 已分派 / 已办结 only if the worker did it.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from bench.screenshot import (
    COUNTY_TOKEN, CREDENTIALS, dispatch, drop_index, launch_chromium, login_operator, open_from_queue,
    search_server, write_credentials,
)
from connectors.elasticsearch.admin import IndexNames
from connectors.ingest.files import iter_deliveries
from connectors.ingest.publish import publish_deliveries
from infra.processes import WorkerProcess, free_port, isolated_settings, wait_for
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.ops.replay import end_offsets, group_offsets
from streams.settings import Settings
from streams.worker.stages import LIFECYCLE_INPUTS, RAW_SOURCES
from tests.harness.leaks import delete_namespace
from tests.harness.peers import chromium_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DELIVERIES = 300


@dataclass
class Live:
    settings: Settings
    base_url: str
    worker: WorkerProcess


def _doc(es: Elasticsearch, settings: Settings, incident_id: str) -> dict[str, Any]:
    alias = IndexNames(settings.es_index_prefix).alias
    es.indices.refresh(index=alias)
    return es.get(index=alias, id=incident_id)["_source"]


@pytest.fixture(scope="module")
def live(stack: Settings, sim_day: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("dispatch-worker")
    settings = isolated_settings(stack, registry=sim_day / "registry.csv", run_dir=work, worker_web_port=free_port(),
                                 clock_ticks=False)
    worker = WorkerProcess(settings, 0, work)
    try:
        provision_topics(settings)
        provision_elasticsearch(settings)
        publish_deliveries(settings, islice(iter_deliveries(sim_day), DELIVERIES))
        worker.start()
        topics = [settings.topic(n) for n in (*RAW_SOURCES, "internal.events-by-county.v1", "incidents.v1")]
        topics += [settings.input_topic(n) for n in LIFECYCLE_INPUTS]

        def caught_up() -> bool:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise AssertionError(f"the worker exited:\n{worker.log_tail()}")
            committed = group_offsets(settings, settings.app_id)
            ends = end_offsets(settings, topics)
            return bool(committed) and all(committed.get(k, 0) >= v for k, v in ends.items())

        try:
            wait_for(caught_up, 180, 1.0, "the worker to index the published deliveries")
        except AssertionError:
            raise AssertionError(f"worker log:\n{worker.log_tail()}") from None
        with search_server(settings, write_credentials(work / "credentials.json"), work) as url:
            yield Live(settings, url, worker)
    finally:
        worker.stop()
        drop_index(settings)
        delete_namespace(settings)


def test_dispatch_through_the_worker(live: Live) -> None:
    from playwright.sync_api import sync_playwright

    es = Elasticsearch(live.settings.es_url)
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                page = browser.new_context(viewport={"width": 1600, "height": 1100}).new_page()
                login_operator(page, live.base_url, COUNTY_TOKEN)
                queue_ids = page.locator("#queue li.queue-item").evaluate_all("ls => ls.map(l => l.dataset.id)")
                target = next(i for i in sorted(queue_ids) if _doc(es, live.settings, i)["status"] == "open")
                open_from_queue(page, target)
                assert "待受理" in page.locator("#detail").inner_text()
                t0 = time.perf_counter()
                ids = dispatch(page, "李某网格员", "双方达成调解协议，已履行")  # no apply: the worker's job
                seconds = time.perf_counter() - t0
                assert len(set(ids)) == 3
                detail = page.locator("#detail").inner_text()
                assert "已办结" in detail and "李某网格员" in detail and "双方达成调解协议" in detail
                page.wait_for_function("([id]) => !document.querySelector(`#queue li[data-id='${id}']`)",
                                       arg=[target], timeout=20_000)  # resolved: out of the queue
            finally:
                browser.close()
        doc = _doc(es, live.settings, target)
        assert doc["status"] == "resolved" and doc["accepted_by"] == CREDENTIALS[COUNTY_TOKEN][0]
        assert [d["action"] for d in doc["dispositions"]] == ["accept", "assign", "resolve"]
        assert sorted(d["disposition_id"] for d in doc["dispositions"]) == sorted(ids)
        print(f"\ndispatch through the worker: 3 actions applied and shown in {seconds:.1f}s")
    finally:
        es.close()
