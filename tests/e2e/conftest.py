"""End-to-end harness: an isolated namespace (topic prefix, index prefix, consumer group) per test
module on the real stack, a simulated day published through the connectors, and real workers
started as `pingan worker run` subprocesses (helpers live in infra/processes.py)."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.processes import WorkerProcess, isolated_settings, settings_env, wait_for  # noqa: F401 - re-exported


@pytest.fixture(scope="session")
def sim_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated county day (seed 1) in native formats with truth.json."""
    out = tmp_path_factory.mktemp("sim-day")
    subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--out", str(out), "--days", "1",
                    "--seed", "1", "--quiet"], check=True, capture_output=True)
    return out


@pytest.fixture()
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Started workers are stopped at teardown, whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()
