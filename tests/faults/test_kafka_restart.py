"""The (private, single-node KRaft) broker is restarted mid-run: stop, start with the same run dir.

The worker's consumers and producer must ride through the restart (reconnect, rejoin, resume from
committed offsets); the final index equals the offline incidents.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from infra.processes import wait_for
from tests.harness.pipeline import chunks, indexed_incidents, publish, wait_for_index, worker_metrics
from tests.harness.stack import fault_settings, start_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def test_broker_restart_mid_run(stack: Settings, private_kafka, sim_day: Path, day_deliveries: list,
                                expected_incidents: dict, workers, tmp_path: Path) -> None:
    k = private_kafka.settings
    s = fault_settings(stack, sim_day, tmp_path / "run", kafka_bootstrap=k.kafka_bootstrap, kafka_port=k.kafka_port,
                       kafka_controller_port=k.kafka_controller_port)
    provision_topics(s)
    provision_elasticsearch(s)
    alias = f"{s.es_index_prefix}-incidents"
    first, second = chunks(day_deliveries, 2)

    w = workers.start(s, 0)
    publish(s, first)
    wait_for(lambda: len(indexed_incidents(s.es_url, alias) or {}) > 0, 180, 0.5, "first incidents indexed")
    before = worker_metrics(s)

    t0 = time.monotonic()
    private_kafka.stop()  # SIGTERM: controlled shutdown
    time.sleep(5)
    restart = start_engine(private_kafka, 120)
    print(f"\nbroker down {time.monotonic() - t0:.1f}s (start-up {restart:.1f}s); worker before: {before}")
    assert w.proc is not None and w.proc.poll() is None, f"worker died with the broker:\n{w.log_tail()}"

    publish(s, second)
    wait_for_index(s, expected_incidents, [w], timeout_s=300)
    print(f"worker after: {worker_metrics(s)}")
