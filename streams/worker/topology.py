"""The worker's topology, declared once: agents, the topics they read and write, their tables.

`build_app` (streams/worker/app.py) wires Faust from it, the metrics sensor
(streams/worker/observability.py) labels consumed and produced messages from it, and
`markdown()` writes it out for docs/operations.md (a unit test keeps the two equal). Topic names
are catalogue names (schemas/catalogue.py); `Settings.topic(name)` adds the deployment prefix.

Agents:

- ``normalize``: every raw topic → `events.v1` (key event_id) and `internal.events-by-county.v1`
  (the same event keyed by county code); bad input → `deadletters.v1`. Centers' actions
  (`dispositions.v1`) and clock ticks (`clock.v1`) pass through to the by-county topic.
- ``correlate``: `internal.events-by-county.v1` (events, actions, ticks) → `links.v1`,
  `incidents.v1`, `escalations.v1`,
  with its state in changelogged tables partitioned like the by-county topic (a county's state
  lives with its partition and recovers with it).
- ``index``: `incidents.v1` → Elasticsearch (no topic output).
- the ``clock_ticks`` timer writes a pingan.ClockTick per county into `clock.v1` (an input, read
  back through normalize), so quiet counties' deadlines pass and a replay re-reads the ticks.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from schemas.catalogue import topic as catalogue_topic
from streams.settings import Settings
from streams.worker.stages import LIFECYCLE_INPUTS, RAW_SOURCES

EVENTS = "events.v1"
BY_COUNTY = "internal.events-by-county.v1"
LINKS = "links.v1"
INCIDENTS = "incidents.v1"
INCIDENT_MEMBERS = "incident-members.v1"
ESCALATIONS = "escalations.v1"
DEAD_LETTERS = "deadletters.v1"
DISPOSITIONS = "dispositions.v1"
CLOCK = "clock.v1"

#: Stores field (streams.domain.pipeline.Stores) → Faust table name. The table names are part of
#: the deployed state: they name the changelog topics (``<app_id>-<table>-changelog``).
CORRELATE_TABLES: Mapping[str, str] = MappingProxyType({
    "candidates": "candidates",
    "event_incident": "event-incident",
    "incidents": "incidents",
    "pending": "pending-links",
    "history": "person-history",
})


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent of the worker.

    ``outputs`` are the stage's products (counted per stage in the metrics); ``repartitions`` are
    topics it writes the same records to again under another key for another agent (not counted).
    Every agent may also write dead letters (`DEAD_LETTERS`). ``source`` is the metrics `source`
    label of what it consumes ("" when it is per raw source, see `input_sources`). An agent with
    ``raw_inputs`` reads the bus's input topics, deployed under `Settings.input_topic` names."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ()
    repartitions: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    source: str = ""
    sink: str = ""
    raw_inputs: bool = False


# the normalize agent also reads the lifecycle inputs (centers' actions, clock ticks) and passes
# them on to the by-county topic: they are inputs of the bus like the raw topics, so a pipeline
# replay re-reads them from the live prefix
NORMALIZE = Agent("normalize", inputs=(*RAW_SOURCES, *LIFECYCLE_INPUTS), outputs=(EVENTS,),
                  repartitions=(BY_COUNTY,), raw_inputs=True)
CORRELATE = Agent("correlate", inputs=(BY_COUNTY,), outputs=(LINKS, INCIDENTS, ESCALATIONS, INCIDENT_MEMBERS),
                  tables=tuple(CORRELATE_TABLES.values()), source="events")
INDEX = Agent("index", inputs=(INCIDENTS,), source="incidents", sink="Elasticsearch (the incidents alias)")

AGENTS: tuple[Agent, ...] = (NORMALIZE, CORRELATE, INDEX)

#: Timer name → the topic it writes (deadline ticks go where the correlate agent reads them).
TIMERS: Mapping[str, str] = MappingProxyType({"clock_ticks": CLOCK})


def table_partitions() -> int:
    """Partitions of the correlate tables: co-partitioned with the by-county topic."""
    return catalogue_topic(BY_COUNTY).partitions


def deployed_inputs(agent: Agent, settings: Settings) -> dict[str, str]:
    """Deployed topic name → catalogue name, for every input of `agent`."""
    name = settings.input_topic if agent.raw_inputs else settings.topic
    return {name(n): n for n in agent.inputs}


def input_sources(agent: Agent) -> dict[str, str]:
    """Catalogue topic name → the metrics `source` label of what `agent` consumes from it."""
    return {name: agent.source or RAW_SOURCES.get(name) or name.split(".")[0] for name in agent.inputs}


def markdown() -> str:
    """The topology as a Markdown table (docs/operations.md carries exactly this text)."""
    rows = ["| agent | reads | writes | tables |", "|---|---|---|---|"]
    for a in AGENTS:
        writes = [f"`{t}`" for t in (*a.outputs, *a.repartitions)] + ([a.sink] if a.sink else [])
        writes.append(f"`{DEAD_LETTERS}` (bad input)")
        rows.append(f"| `{a.name}` | {', '.join(f'`{t}`' for t in a.inputs)} | {', '.join(writes)} | "
                    f"{', '.join(f'`{t}`' for t in a.tables) or '—'} |")
    for name, target in TIMERS.items():
        rows.append(f"| `{name}` (timer) | — | `{target}` | — |")
    return "\n".join(rows) + "\n"
