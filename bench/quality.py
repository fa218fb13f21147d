"""Offline correlation quality of a simulator folder (no Kafka, no Faust, no Elasticsearch).

Contract
- ``evaluate_folder(folder, *, secret=b"bench") -> QualityReport`` replays the folder the way the
  feeds deliver it (``connectors.ingest.files.iter_deliveries``: delivery order, duplicates, late
  events), normalizes every translated record (``streams.domain.normalize.Normalizer``), runs
  one ``streams.domain.pipeline.CountyProcessor`` per county partition (as the Faust agent does
  after repartitioning by county) and scores the final event → incident assignment against
  ``truth.json`` (event_id → incident, incident → scenario) with
  ``streams.domain.quality.evaluate``. Events the pipeline never produced count as singletons
  (a lost event costs recall); events it invented that the truth does not know count as
  singletons on the truth side (they cost precision if they were linked).
- ``run_folder(folder, *, secret, until_ms=None) -> OfflineRun`` the same replay, keeping the
  processors, the links and the counts (for diagnostics: which links are wrong and why); with
  ``until_ms``, only the records received and occurred before it (the county as it stood then;
  the others are counted in ``held_back``).
- ``evaluate_run(run, folder) -> QualityReport`` scores an existing replay.
- ``render(report, title=...) -> rich.table.Table``: one row per scenario plus "overall" —
  events, true/predicted/correct pairs, pairwise P/R/F1 and B-cubed P/R/F1.
Deterministic: the same folder and secret give the same report.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.tables import fit_table, number_column, text_column
from connectors.ingest.files import iter_deliveries, load_truth
from connectors.sources.devices import DeviceRegistry
from streams.domain.correlate import partition_key
from connectors.sources.registry import normalizer as make_normalizer
from streams.domain.pipeline import CountyProcessor
from streams.domain.quality import QualityReport, Scores, evaluate
from streams.domain.rules import CorrelationRules, load_rules
from streams.settings import DEFAULT_TIMEZONE



@dataclass
class OfflineRun:
    """Everything one offline replay produced."""

    processors: dict[str, CountyProcessor]
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: int = 0
    records: int = 0
    rejected: Counter = field(default_factory=Counter)
    normalize_errors: Counter = field(default_factory=Counter)
    held_back: int = 0

    def predicted(self) -> dict[str, str]:
        """event_id → live incident id, for every event the pipeline saw."""
        out: dict[str, str] = {}
        for eid, event in self.events.items():
            county = partition_key(event)
            iid = self.processors[county].state.incident_of(eid)
            if iid is not None:
                out[eid] = f"{county}/{iid}"
        return out


def run_folder(folder: Path, *, secret: bytes = b"bench", rules: CorrelationRules | None = None,
               timezone: str = DEFAULT_TIMEZONE, until_ms: int | None = None) -> OfflineRun:
    """Replay a simulator folder through translate → normalize → per-county processors."""
    folder = Path(folder)
    registry = DeviceRegistry.from_csv(folder / "registry.csv")
    normalizer = make_normalizer(secret, timezone, registry)
    rules = rules or load_rules()
    run = OfflineRun(processors={})
    for delivery in iter_deliveries(folder, registry):
        run.deliveries += 1
        for rej in delivery.result.rejected:
            run.rejected[(delivery.feed, rej.error_type)] += 1
        for record in delivery.result.records:
            run.records += 1
            try:
                event = normalizer.normalize(delivery.source, record)
            except Exception as exc:  # NormalizeError and friends: a dead letter in the real pipeline
                run.normalize_errors[(delivery.feed, type(exc).__name__)] += 1
                continue
            if until_ms is not None and max(int(event["occurred_at"]),
                                            int(event.get("received_at") or 0)) >= until_ms:
                run.held_back += 1
                continue
            county = partition_key(event)
            proc = run.processors.get(county)
            if proc is None:
                proc = run.processors[county] = CountyProcessor(rules=rules)
            step = proc.process(event)
            run.events.setdefault(event["event_id"], event)
            for link in step.links:
                run.links[link["link_id"]] = link
    return run


def truth_maps(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(event_id → true incident, true incident → scenario) from truth.json."""
    truth = load_truth(Path(folder))
    incident = {e["event_id"]: e["incident"] for e in truth["events"]}
    scenario = {e["incident"]: e["scenario"] for e in truth["events"]}
    return incident, scenario


def evaluate_run(run: OfflineRun, folder: Path) -> QualityReport:
    """Score a finished replay against the folder's truth.json."""
    truth, scenarios = truth_maps(Path(folder))
    return evaluate(truth, run.predicted(), scenarios)


def evaluate_folder(folder: Path, *, secret: bytes = b"bench") -> QualityReport:
    """Pairwise and B-cubed quality of the offline pipeline on a simulator folder."""
    return evaluate_run(run_folder(Path(folder), secret=secret), Path(folder))


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _row(name: str, s: Scores) -> list[str]:
    return [name, str(s.events), str(s.true_pairs), str(s.predicted_pairs), str(s.correct_pairs),
            _pct(s.pairwise.precision), _pct(s.pairwise.recall), _pct(s.pairwise.f1),
            _pct(s.bcubed.precision), _pct(s.bcubed.recall), _pct(s.bcubed.f1)]


#: columns left out first when the terminal is narrow (the pair counts are behind the percentages)
NARROW_DROP = ("true", "pred", "correct")


def render(report: QualityReport, title: str = "Correlation quality (%)", width: int | None = None) -> Table:
    """A rich table: one row per scenario, then the overall row (fitted to `width` when given)."""
    table = Table(title=title, caption="true / pred / correct: pairs of events linked")
    text_column(table, "scenario")
    for col in ("events", *NARROW_DROP, "pair P", "pair R", "pair F1", "B³ P", "B³ R", "B³ F1"):
        number_column(table, col)
    for name, scores in sorted(report.per_scenario.items()):
        table.add_row(*_row(name, scores))
    table.add_section()
    table.add_row(*_row("overall", report.overall), style="bold")
    if width is not None:
        fit_table(table, width, NARROW_DROP)
        if not {str(c.header) for c in table.columns} & set(NARROW_DROP):
            table.caption = None
    return table


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.quality FOLDER...``: print the table of each folder."""
    import sys

    from rich.console import Console

    console = Console(width=140)
    for folder in (argv if argv is not None else sys.argv[1:]):
        console.print(render(evaluate_folder(Path(folder)), title=f"Correlation quality (%) — {folder}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
