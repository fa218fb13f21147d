"""End-to-end fixtures: an isolated namespace (topic prefix, index prefix, consumer group) per test
module on the real stack, a simulated day published through the connectors, and real workers
started as `pingan worker run` subprocesses (helpers: infra/processes.py and tests/harness/)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.processes import WorkerProcess, simulate_folder


@pytest.fixture(scope="session")
def sim_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated county day (seed 1) in native formats with truth.json."""
    return simulate_folder(tmp_path_factory.mktemp("sim-day"), seed=1)


@pytest.fixture()
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Started workers are stopped at teardown, whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()
