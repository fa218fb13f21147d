"""A folder of native files as deliveries: `pingan connectors import DIR`.

Contract: `plan_folder(root)` splits a folder into simulator folders (any directory holding
``delivery.jsonl``, read in delivery order by `files.iter_deliveries`) and loose native files
(everything else that `inspect.sample_files` keeps: pushes, SIP messages, request captures,
CSV/XLSX exports of any of the six feeds, in any sub-folder). `iter_folder(plan, …)` yields one
`Delivery` per delivery — each file's feed detected from its content (`inspect.detect_feed`, or
forced with ``feed``) and run through the feed's own translate exactly as the receivers do — and a
`Skipped` for each file no feed reads (errors are data: the import goes on). Pure apart from
reading the files; publishing is `publish.publish_deliveries`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from connectors.ingest.files import Delivery, iter_deliveries
from connectors.ingest.inspect import InspectError, detect_feed, sample_files, translate_file
from connectors.sources import registry as source_registry
from connectors.sources.devices import DeviceRegistry
from streams.settings import DEFAULT_TIMEZONE


@dataclass(frozen=True)
class Skipped:
    """A file that was not imported, and why."""

    path: str
    reason: str


@dataclass
class FolderPlan:
    """What a folder holds: simulator folders (with their delivery counts) and loose native files."""

    root: Path
    simulator_folders: dict[Path, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def units(self) -> int:
        """Progress units: one per simulator delivery and one per loose file."""
        return sum(self.simulator_folders.values()) + len(self.files)


def plan_folder(root: Path) -> FolderPlan:
    """Find simulator folders and loose native files under `root` (sorted, deterministic)."""
    root = Path(root)
    plan = FolderPlan(root)
    sims = sorted(p.parent for p in root.rglob("delivery.jsonl"))
    for sim in sims:
        with open(sim / "delivery.jsonl", "rb") as fh:
            plan.simulator_folders[sim] = sum(1 for line in fh if line.strip())
    inside = lambda p: any(s == p or s in p.parents for s in sims)  # noqa: E731
    plan.files = [p for p in sample_files(root) if not inside(p)]
    return plan


def iter_folder(plan: FolderPlan, registry: DeviceRegistry | None = None, *, profile_dir: Path | None = None,
                feed: str | None = None, timezone: str = DEFAULT_TIMEZONE,
                received_at_ms: int | None = None,
                progress: Callable[[int], None] | None = None) -> Iterator[Delivery | Skipped]:
    """Every delivery of the plan (simulator folders first), translated by its feed (see module);
    `progress(1)` after each of the plan's units (a simulator delivery, a loose file)."""
    tick = progress or (lambda _n: None)
    for sim in plan.simulator_folders:
        sim_registry = registry if registry is not None else (
            DeviceRegistry.from_csv(sim / "registry.csv") if (sim / "registry.csv").is_file() else None)
        for d in iter_deliveries(sim, sim_registry, profile_dir=profile_dir, timezone=timezone,
                                 received_at_ms=received_at_ms):
            if feed is None or d.feed == feed:
                yield d
            tick(1)
    ctx = source_registry.context(registry, profile_dir)
    at = received_at_ms if received_at_ms is not None else int(time.time() * 1000)
    for seq, path in enumerate(plan.files):
        name = str(path.relative_to(plan.root))
        try:
            data = path.read_bytes()
            chosen = feed or detect_feed(data, path.name, ctx)[0]
            units = translate_file(data, path.name, chosen, ctx, at)
        except (InspectError, OSError) as exc:
            yield Skipped(name, str(exc))
            tick(1)
            continue
        for _unit, raw, ctype, result in units:
            yield Delivery(seq, chosen, raw, ctype, result)
        tick(1)
