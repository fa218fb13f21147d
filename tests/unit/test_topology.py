"""The worker topology (streams/worker/topology.py) is the one the app wires and the docs show."""
from __future__ import annotations

from pathlib import Path

from schemas.catalogue import TOPICS
from streams.settings import Settings
from streams.worker import topology
from streams.worker.app import build_app
from streams.worker.stages import LIFECYCLE_INPUTS, RAW_SOURCES

ROOT = Path(__file__).resolve().parents[2]


def test_every_topic_is_in_the_catalogue_and_tables_follow_the_by_county_topic() -> None:
    names = {t.name for t in TOPICS}
    for agent in topology.AGENTS:
        assert set(agent.inputs) | set(agent.outputs) | set(agent.repartitions) <= names, agent.name
    assert set(topology.TIMERS.values()) <= names and topology.DEAD_LETTERS in names
    assert topology.table_partitions() == next(t.partitions for t in TOPICS if t.name == topology.BY_COUNTY)
    assert topology.NORMALIZE.inputs == (*RAW_SOURCES, *LIFECYCLE_INPUTS)


def test_the_app_is_wired_from_the_topology(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, registry_path=None, topic_prefix="t.", input_topic_prefix="in.")
    app = build_app(settings, table_store="memory://")
    agents = {a.name: a for a in app.agents.values()}
    assert set(agents) == {a.name for a in topology.AGENTS}
    for spec in topology.AGENTS:
        assert set(agents[spec.name].channel.topics) == set(topology.deployed_inputs(spec, settings)), spec.name
    assert set(app.tables) == set(topology.CORRELATE.tables)
    assert all(t.partitions == topology.table_partitions() for t in app.tables.values())
    assert {n for n in topology.deployed_inputs(topology.NORMALIZE, settings)} == \
        {f"in.{n}" for n in (*RAW_SOURCES, *LIFECYCLE_INPUTS)}  # a replay re-reads actions and ticks too


def test_operations_doc_shows_the_topology() -> None:
    assert topology.markdown() in (ROOT / "docs" / "operations.md").read_text(), \
        "docs/operations.md: paste streams.worker.topology.markdown() under '4. Metrics and health'"
