"""Elasticsearch goes away for ~30 s mid-run (SIGKILL of a private node), then comes back.

An outage must mean backlog, never loss: the index agent keeps retrying the same batch (offsets not
committed), the worker logs the retries, nothing is dead-lettered, and once the node is back the
index equals the offline incidents.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.ops.provision import provision_elasticsearch, provision_topics
from infra.stack import port_open
from streams.settings import Settings
from infra.processes import wait_for
from tests.harness.kafka import read_topic
from tests.harness.pipeline import chunks, indexed_incidents, publish, wait_for_index, worker_log, worker_metrics
from tests.harness.stack import fault_settings, start_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

OUTAGE_S = 30.0


def test_es_outage_is_backlog_not_loss(stack: Settings, private_es, sim_day: Path, day_deliveries: list,
                                       expected_incidents: dict, workers, tmp_path: Path) -> None:
    es = private_es.settings
    s = fault_settings(stack, sim_day, tmp_path / "run", es_url=es.es_url, es_http_port=es.es_http_port,
                       es_transport_port=es.es_transport_port)
    provision_topics(s)
    provision_elasticsearch(s)
    alias = f"{s.es_index_prefix}-incidents"
    first, second = chunks(day_deliveries, 2)

    w = workers.start(s, 0)
    publish(s, first)
    wait_for(lambda: len(indexed_incidents(s.es_url, alias) or {}) > 0, 180, 0.5, "first incidents indexed")

    t_down = time.monotonic()
    private_es.kill()
    wait_for(lambda: not port_open(es.es_http_port), 20, 0.2, "the Elasticsearch port to close")
    publish(s, second)  # produced during the outage: must wait in Kafka, not be lost
    wait_for(lambda: "elasticsearch unavailable" in worker_log(w), 60, 1, "the sink to log a retry")
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_down)))
    assert w.proc is not None and w.proc.poll() is None, f"worker died during the outage:\n{w.log_tail()}"
    outage = time.monotonic() - t_down
    restart = start_engine(private_es, 180)
    print(f"\nElasticsearch down {outage:.1f}s, back in {restart:.1f}s")

    wait_for_index(s, expected_incidents, [w], timeout_s=240)
    log = worker_log(w)
    retries = log.count("elasticsearch unavailable")
    assert retries >= 1
    m = worker_metrics(s) or {}
    print(f"retry warnings logged: {retries}; metrics: {m}")
    assert m.get("index_retries", 0) >= 1, m
    assert m.get("dead_letters", -1) == 0, m
    assert read_topic(s.kafka_bootstrap, s.topic("deadletters.v1"), idle_s=3) == []
