"""Fault-injection fixtures: private engines, the simulated day and its expected incidents, workers.

The helpers are in the harness (`tests.harness.stack`: private engines and ports;
`tests.harness.pipeline`: expected incidents, publishing, index comparison). Destructive tests
never touch the shared engines: `private_kafka`, `private_es` and `KafkaCluster` start their own
Java processes under the test's tmp dir and stop them at teardown, whatever happened.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.ingest.files import Delivery, iter_deliveries
from infra.processes import simulate_folder
from streams.settings import Settings
from tests.harness.leaks import delete_tracked
from tests.harness.pipeline import Workers, offline_incidents
from tests.harness.stack import (EsEngine, KafkaEngine, private_es_settings, private_kafka_settings, private_run_dir,
                                 start_engine)

SEED = 2  # a smaller day than the e2e test's (≈1,100 deliveries)


@pytest.fixture()
def private_kafka(settings: Settings, tmp_path: Path) -> Iterator[KafkaEngine]:
    """A single-node KRaft broker of our own (256 MB heap), stopped at teardown."""
    s = private_kafka_settings(settings, private_run_dir(settings, tmp_path / "pk"))
    engine = KafkaEngine(s)
    try:
        start_engine(engine)
        yield engine
    finally:
        engine.kill()
        engine.stop()


@pytest.fixture()
def private_es(settings: Settings, tmp_path: Path) -> Iterator[EsEngine]:
    """An Elasticsearch 7.10.2 node of our own (384 MB heap), stopped at teardown."""
    s = private_es_settings(settings, private_run_dir(settings, tmp_path / "pes"))
    engine = EsEngine(s)
    try:
        start_engine(engine, 180)
        yield engine
    finally:
        engine.kill()
        engine.stop()


@pytest.fixture(scope="session")
def sim_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated county day (seed 2) in native formats with truth.json."""
    return simulate_folder(tmp_path_factory.mktemp("fault-day"), seed=SEED)


@pytest.fixture(scope="session")
def day_deliveries(sim_day: Path) -> list[Delivery]:
    """The day's translated deliveries, in delivery order (publish them in chunks)."""
    return list(iter_deliveries(sim_day))


@pytest.fixture(scope="session")
def expected_incidents(sim_day: Path, settings: Settings) -> dict[str, frozenset[str]]:
    """Live incidents (id → event ids) of the pure pipeline over the day."""
    return offline_incidents(sim_day, settings.person_key_secret.encode())


@pytest.fixture(autouse=True)
def _namespaces_deleted(settings: Settings) -> Iterator[None]:
    """The namespaces `fault_settings` made are deleted from the shared engines after the test
    (autouse: set up first, torn down last — after the workers and private engines are stopped)."""
    yield
    delete_tracked(settings)


@pytest.fixture()
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    for w in started:
        w.stop()
