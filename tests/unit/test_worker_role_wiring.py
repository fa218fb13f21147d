"""Worker roles (`Settings.worker_role`): which agents, tables and timers one worker process runs.

The live check — a correlate and an edge worker together produce exactly the index one worker
produces — is tests/faults/test_worker_roles.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from mode import CrashingSupervisor
from typer.testing import CliRunner

from streams.settings import Settings
from streams.worker import topology
from streams.worker.stages import RAW_SOURCES
from streams.worker.app import ROLES, build_app


def _app(tmp_path: Path, role: str):  # noqa: ANN202
    return build_app(Settings(run_dir=tmp_path, registry_path=None, worker_role=role), table_store="memory://")


def _subscribed(app) -> set[str]:  # noqa: ANN001
    return {t for agent in app.agents.values() for t in agent.channel.topics}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_runs_exactly_its_agents(tmp_path: Path, role: str) -> None:
    app = _app(tmp_path, role)
    names = {n.rsplit(".", 1)[-1] for n in app.agents}
    assert names == set(ROLES[role])
    s = Settings(run_dir=tmp_path, registry_path=None)
    topics = _subscribed(app)
    assert (s.topic(topology.BY_COUNTY) in topics) == ("correlate" in ROLES[role])
    assert (s.topic(topology.INCIDENTS) in topics) == ("index" in ROLES[role])
    assert (s.input_topic(next(iter(RAW_SOURCES))) in topics) == ("normalize" in ROLES[role])
    # the correlate tables (and their changelogs) exist only where correlate runs
    assert bool(app.tables) == ("correlate" in ROLES[role])
    assert (app.pingan_processor is None) == ("correlate" not in ROLES[role])
    # every role is a member of the one consumer group
    assert app.conf.id == s.app_id
    # an agent that raises stops the worker (restarted from committed offsets), never restarts in
    # place past its batch (streams/worker/app.py module docstring)
    assert all(agent.supervisor_strategy is CrashingSupervisor for agent in app.agents.values())


def test_roles_cover_every_agent_once_between_correlate_and_edge() -> None:
    assert ROLES["correlate"] | ROLES["edge"] == ROLES["all"] == {a.name for a in topology.AGENTS}
    assert not ROLES["correlate"] & ROLES["edge"]


def test_an_unknown_role_is_refused_with_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.cli.worker import app as worker_cli

    monkeypatch.setenv("PINGAN_RUN_DIR", str(tmp_path))
    result = CliRunner().invoke(worker_cli, ["run", "--role", "router"])
    assert result.exit_code == 2, result.output
    assert "worker_role" in result.output
