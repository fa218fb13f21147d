"""Single-core throughput of the pure pipeline (no Kafka, no Elasticsearch, no Avro).

Measures, on one simulator folder, the three pure stages a Faust worker runs per record:

1. ``connectors.ingest.files.iter_deliveries`` — read + the source's own ``translate`` (in production this
   runs in the receivers/pollers, not in the worker);
2. ``streams.domain.normalize.Normalizer.normalize`` — the ``normalize`` agent's work;
3. ``streams.domain.pipeline.CountyProcessor.process`` — the ``correlate`` agent's work (one
   processor per county, as one by-county partition holds one county's state; in-memory dict
   tables here, RocksDB-backed Faust tables in the worker).

Usage (the numbers in docs/sizing.md come from exactly this)::

    pingan simulate --out /tmp/x --days 1 --seed 1 --scale 5 --quiet
    python -m bench.pure_rate /tmp/x [--repeat 3] [--digest]

Prints the per-stage time and events/s, best of ``--repeat`` runs. Single-threaded: the figure is
what one core does, and a Faust worker runs its agents on one event loop (one core).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.ingest.files import iter_deliveries
from connectors.sources.devices import DeviceRegistry
from connectors.sources.registry import normalizer as make_normalizer
from streams.domain.pipeline import CountyProcessor
from streams.settings import DEFAULT_TIMEZONE



@dataclass
class Rate:
    """One timed run: counts and seconds per stage."""

    deliveries: int = 0
    records: int = 0
    events: int = 0
    links: int = 0
    translate_s: float = 0.0
    normalize_s: float = 0.0
    correlate_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.translate_s + self.normalize_s + self.correlate_s

    def per_s(self, seconds: float) -> float:
        return self.events / seconds if seconds > 0 else float("inf")


def measure(folder: Path, secret: bytes = b"bench", digest: Any = None) -> Rate:
    """Run the folder once through translate → normalize → correlate, timing each stage; with
    `digest` (a hashlib object), feed it every correlate step's links and incidents (outside the
    timed part): two versions of the code that give the same digest gave the same outputs."""
    registry = DeviceRegistry.from_csv(folder / "registry.csv")
    normalizer = make_normalizer(secret, DEFAULT_TIMEZONE, registry)
    processors: dict[str, CountyProcessor] = {}
    rate = Rate()
    clock = time.perf_counter
    deliveries = iter_deliveries(folder, registry)
    while True:
        t0 = clock()
        delivery = next(deliveries, None)
        rate.translate_s += clock() - t0
        if delivery is None:
            break
        rate.deliveries += 1
        for record in delivery.result.records:
            rate.records += 1
            t1 = clock()
            try:
                event = normalizer.normalize(delivery.source, record)
            except Exception:  # noqa: BLE001 - a dead letter in the worker; still costs time
                rate.normalize_s += clock() - t1
                continue
            t2 = clock()
            rate.normalize_s += t2 - t1
            county = (event.get("location") or {}).get("county_code") or "513221"
            proc = processors.get(county)
            if proc is None:
                proc = processors[county] = CountyProcessor()
            step = proc.process(event)
            rate.correlate_s += clock() - t2
            rate.events += 1
            rate.links += len(step.links)
            if digest is not None:
                digest.update(json.dumps([step.links, step.incidents], sort_keys=True, default=str).encode())
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--digest", action="store_true",
                        help="print a SHA-256 of every correlate step's links and incidents (a refactor must keep it)")
    args = parser.parse_args(argv)
    digest = hashlib.sha256() if args.digest else None
    runs = [measure(args.folder, digest=digest if i == 0 else None) for i in range(max(1, args.repeat))]
    best = min(runs, key=lambda r: r.total_s)
    print(f"folder {args.folder}: {best.deliveries} deliveries, {best.records} records, "
          f"{best.events} events, {best.links} links (best of {len(runs)})")
    print(f"  translate  {best.translate_s:7.2f} s  {best.per_s(best.translate_s):9.0f} events/s")
    print(f"  normalize  {best.normalize_s:7.2f} s  {best.per_s(best.normalize_s):9.0f} events/s")
    print(f"  correlate  {best.correlate_s:7.2f} s  {best.per_s(best.correlate_s):9.0f} events/s")
    worker_s = best.normalize_s + best.correlate_s
    print(f"  worker (normalize+correlate)  {best.per_s(worker_s):9.0f} events/s")
    print(f"  all three  {best.total_s:7.2f} s  {best.per_s(best.total_s):9.0f} events/s")
    if digest is not None:
        print(f"  outputs digest {digest.hexdigest()}")


if __name__ == "__main__":
    main()
