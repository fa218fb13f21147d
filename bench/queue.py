"""`pingan bench queue`: what the incident lifecycle gives a county center, day by day (offline).

Contracts
- ``queue_counts(events, incidents, timezone) -> QueueCounts`` (pure): per local day (Asia/Shanghai
  by default) and row (section, item):
  - ``events/source``, ``events/kind``: canonical events by their occurred_at day;
  - ``queue`` (actionable incidents: the daily work queue) and ``evidence`` (clusters of evidence
    only), by kind and by final tier (村级/镇级/县级), on the day of the incident's first_seen;
  - ``escalations``: steps of the actionable incidents' escalation histories by reason_code, on
    the step's day;
  - ``single``: actionable incidents with one event (the share is single / queue total);
  - ``resolved``: resolved incidents by who resolved them (the source of a settling event —
    ``grid``, ``mediation`` — or ``center``), on the day of resolved_at.
- ``final_tick(run, end_ms)``: one clock tick per county processor (deadlines evaluated at the end
  of the last simulated day, as the worker's clock.v1 ticks would).
- ``queue_run(folder) -> (QueueCounts, OfflineRun)``: `bench.quality.run_folder` (the same pure
  pipeline) on the records received before the end of the last simulated day (scenarios reach
  beyond it: a mediation case ten days later would move the county clock there), plus the final
  tick, counted.
- ``render(counts) -> Table`` (one column per day and a total) and ``totals_line(counts) -> str``.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table

from bench.tables import number_column, text_column
from streams.domain.incidents import count_of
from streams.domain.tiers import TIER_NAMES_CN
from streams.settings import DEFAULT_TIMEZONE

_DAY_MS = 86_400_000
TIERS = ("village", "town", "county")


@dataclass
class QueueCounts:
    """rows[(section, item)][day] = count; days are local ISO dates."""

    rows: dict[tuple[str, str], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, section: str, item: str, day: str, n: int = 1) -> None:
        self.rows[(section, item)][day] += n

    def days(self) -> list[str]:
        return sorted({d for c in self.rows.values() for d in c})

    def total(self, section: str, item: str | None = None) -> int:
        """Sum over days of one row, or of every row of a section."""
        return sum(sum(c.values()) for (s, i), c in self.rows.items() if s == section and (item is None or i == item))

    def section(self, section: str) -> dict[str, int]:
        """item → total of a section's rows."""
        return {i: sum(c.values()) for (s, i), c in sorted(self.rows.items()) if s == section}


def _day(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz).date().isoformat()


def _resolver(incident: Mapping[str, Any]) -> str:
    """Who resolved an incident: the settling source (grid, mediation …) or 'center'."""
    at = incident.get("resolved_at")
    for d in reversed(incident.get("dispositions") or ()):
        if d.get("action") == "resolve" and (at is None or int(d["at"]) == int(at)):
            actor = str(d.get("actor") or "")
            return actor.split(":", 1)[1] if actor.startswith("source:") else "center"
    return "center"


def queue_counts(events: Iterable[Mapping[str, Any]], incidents: Iterable[Mapping[str, Any]],
                 timezone: str = DEFAULT_TIMEZONE) -> QueueCounts:
    """Count events and live incidents per local day (see module contract)."""
    tz = ZoneInfo(timezone)
    out = QueueCounts()
    for ev in events:
        day = _day(ev["occurred_at"], tz)
        out.add("events/source", str(ev.get("source") or "?"), day)
        out.add("events/kind", str(ev.get("kind") or "other"), day)
    for inc in incidents:
        if inc.get("status") == "merged":
            continue
        day = _day(inc["first_seen"], tz)
        tier = TIER_NAMES_CN.get(str(inc.get("tier")), str(inc.get("tier")))
        if inc.get("actionable", True):
            out.add("queue", "total", day)
            out.add("queue/kind", str(inc.get("kind") or "other"), day)
            out.add("queue/tier", tier, day)
            if count_of(inc) == 1:
                out.add("single", "actionable with one event", day)
            if inc.get("watch_hits"):
                out.add("queue/watch", "watch-list hits", day)
            for step in inc.get("escalation_history") or ():
                out.add("escalations", str(step["reason_code"]), _day(step["at"], tz))
        else:
            out.add("evidence", "total", day)
            out.add("evidence/kind", str(inc.get("kind") or "other"), day)
            out.add("evidence/tier", tier, day)
        if inc.get("status") == "resolved" and inc.get("resolved_at") is not None:
            out.add("resolved", _resolver(inc), _day(inc["resolved_at"], tz))
    return out


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _tier_order(item: str) -> tuple[int, str]:
    names = [TIER_NAMES_CN[t] for t in TIERS]
    return (names.index(item) if item in names else len(names), item)


SECTIONS: tuple[tuple[str, str], ...] = (
    ("events/source", "events by source"), ("events/kind", "events by kind"),
    ("queue", "actionable incidents (work queue)"), ("queue/kind", "  by kind"), ("queue/tier", "  by tier"),
    ("queue/watch", "  watch-list hits"), ("single", "  single-event"),
    ("evidence", "evidence-only clusters"), ("evidence/kind", "  by kind"), ("evidence/tier", "  by tier"),
    ("escalations", "escalations by reason"), ("resolved", "resolved, by who settled"),
)


def render(counts: QueueCounts, title: str = "Work queue per day (offline pipeline)") -> Table:
    """One row per (section, item), one column per day, then the total."""
    days = counts.days()
    table = Table(title=title, caption="day = local date (first_seen for incidents, resolved_at for resolutions)")
    text_column(table, "section")
    text_column(table, "item")
    for d in days:
        number_column(table, d[5:])
    number_column(table, "total")
    for section, label in SECTIONS:
        items = sorted({i for (s, i) in counts.rows if s == section},
                       key=_tier_order if section.endswith("/tier") else (lambda i: (-counts.total(section, i), i)))
        if not items:
            continue
        table.add_section()
        for n, item in enumerate(items):
            row = counts.rows[(section, item)]
            cells = [str(row.get(d, 0)) for d in days] + [str(sum(row.values()))]
            table.add_row(label if n == 0 else "", item, *cells)
        if section == "single":
            queue = counts.rows.get(("queue", "total"), Counter())
            single = counts.rows[("single", items[0])]
            table.add_row("", "share of the queue", *[_pct(single.get(d, 0), queue.get(d, 0)) for d in days],
                          _pct(sum(single.values()), sum(queue.values())))
    return table


def totals_line(counts: QueueCounts) -> str:
    """One line of totals (for `pingan bench quality`)."""
    queue, single = counts.total("queue"), counts.total("single")
    tiers = counts.section("queue/tier")
    esc = counts.section("escalations")
    res = counts.section("resolved")
    return (f"work queue: {counts.total('events/source')} events → {queue} actionable incidents "
            f"({' '.join(f'{k} {v}' for k, v in sorted(tiers.items(), key=lambda kv: _tier_order(kv[0])))}), "
            f"{counts.total('evidence')} evidence-only clusters; single-event {_pct(single, queue)}; "
            f"escalations {sum(esc.values())} ({', '.join(f'{k} {v}' for k, v in esc.items()) or 'none'}); "
            f"resolved {sum(res.values())} ({', '.join(f'{k} {v}' for k, v in res.items()) or 'none'})")


# ------------------------------------------------------------------------------ the offline run

def end_of_days_ms(folder: Path, timezone: str = DEFAULT_TIMEZONE) -> int:
    """Epoch ms of the end of the folder's last simulated day (manifest base_date + days)."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    base = datetime.fromisoformat(str(manifest["base_date"]))
    if base.tzinfo is None:
        base = base.replace(tzinfo=ZoneInfo(timezone))
    return int(base.timestamp() * 1000) + int(manifest["days"]) * _DAY_MS


def final_tick(run: Any, end_ms: int) -> None:
    """A clock tick at `end_ms` for every county processor of an `OfflineRun`."""
    for county, proc in sorted(run.processors.items()):
        proc.tick({"county_code": county, "now_ms": end_ms})


def incidents_of(run: Any) -> list[dict[str, Any]]:
    """Every live incident of an `OfflineRun`."""
    return [inc for _c, proc in sorted(run.processors.items()) for inc in proc.state.live().values()]


def queue_of_run(run: Any, folder: Path) -> QueueCounts:
    """Tick the run's clocks to the end of the simulated days, then count."""
    final_tick(run, end_of_days_ms(folder))
    return queue_counts(run.events.values(), incidents_of(run))


def queue_run(folder: Path, *, secret: bytes = b"bench") -> tuple[QueueCounts, Any]:
    """`bench.quality.run_folder` up to the end of the simulated days, the final tick, the counts."""
    from bench.quality import run_folder

    end = end_of_days_ms(Path(folder))
    run = run_folder(Path(folder), secret=secret, until_ms=end)
    return queue_of_run(run, Path(folder)), run


def county_clocks(run: Any) -> dict[str, int | None]:
    """county → its clock (epoch ms) in an `OfflineRun`."""
    return {c: p.clock(c) for c, p in sorted(run.processors.items())}


def fmt_ms(ms: int | None, timezone: str = DEFAULT_TIMEZONE) -> str:
    """Epoch ms as local 'YYYY-MM-DD HH:MM' ('-' for None)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(int(ms) / 1000, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
