"""`pingan bench ingest`: measured ingest rate per connector, next to the bare translate rate.

For every connector the same payloads are measured twice:

* **ingest** — through the real I/O shell into the real Kafka (isolated topic prefix on the shared
  broker): the HTTP receivers (`pingan connectors run` as a subprocess, driven on loopback by a
  concurrent aiohttp client with bounded concurrency; a 202 means Kafka acknowledged, the spool
  stays empty), the 110 poller over a SQLite ``JJD`` table of N rows (poll until caught up), and
  the mediation CSV importer (one export file of N cases);
* **translate** — the pure translate function alone on the same payloads (no I/O), so the
  HTTP + Avro + Kafka overhead is visible as the ratio of the two.

Payloads come from the simulator (``seed``), so they are realistic and valid against its device
registry; only payloads whose pure translation yields at least one record are used (heartbeats are
left out). The receivers run as `infra.processes.ConnectorsProcess`.
"""
from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import shlex
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.common import drop_kafka_namespace
from bench.tables import fit_table, number_column, text_column
from connectors.ingest.importer import MediationImporter
from connectors.ingest.poller import Alarm110Poller, PollerConfig
from connectors.ingest.producer import RecordProducer
from connectors.ingest.receiver import Payload, default_translators
from connectors.sources.alarm110.translate import translate_row
from connectors.sources.auth import Credentials, load_credentials
from connectors.sources.devices import DeviceRegistry
from connectors.sources.mediation.translate import translate_csv
from infra.demo import write_ingest_credentials
from infra.processes import ConnectorsProcess, isolated_settings
from simulator.formats import ALARM110_COLUMNS, MEDIATION_COLUMNS, alarm110_row, http_request, mediation_rows
from simulator.model import build_world
from simulator.sender import Alarm110Sink, PushAuth, delivery_stream
from simulator.writer import write_registry
from streams.ops.provision import provision_topics
from streams.settings import Settings

#: HTTP connectors measured, with the simulator feed/form that feeds them.
HTTP_CONNECTORS: tuple[tuple[str, str, Callable[[Any], bool]], ...] = (
    ("gb28181 XML", "gb28181", lambda ev: True),
    ("isapi multipart", "isapi", lambda ev: ev.form == "multipart"),
    ("grid JSON", "grid", lambda ev: True),
    ("door JSON", "door", lambda ev: True),
    ("mediation REST", "mediation", lambda ev: True),
)
#: feed → receiver source name (the translator key)
SOURCE_OF_FEED = {"gb28181": "gb28181", "isapi": "isapi", "grid": "grid", "door": "door", "mediation": "mediation"}


# --------------------------------------------------------------------------------------------
# payloads and the pure baseline
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HttpPayload:
    """One POST: receiver source, path, Content-Type, body, and the simulator's native id."""

    source: str
    path: str
    content_type: str
    body: bytes
    native_id: str


def simulator_payloads(seed: int, count: int, *, max_deliveries: int = 60_000,
                       registry: Any = None) -> dict[str, list[HttpPayload]]:
    """Up to ``count`` distinct record-producing payloads per HTTP connector label (simulator order).

    With ``registry`` given, payloads whose pure translation yields no record are skipped."""
    translators = default_translators(registry) if registry is not None else None
    out: dict[str, list[HttpPayload]] = {label: [] for label, _, _ in HTTP_CONNECTORS}
    for d in islice(delivery_stream(seed, 1.0), max_deliveries):
        ev = d.event
        if d.duplicate or ev.feed not in SOURCE_OF_FEED:
            continue
        for label, feed, accept in HTTP_CONNECTORS:
            if ev.feed != feed or not accept(ev) or len(out[label]) >= count:
                continue
            path, ctype, body = http_request(ev)
            if translators is not None:
                res = translators[SOURCE_OF_FEED[feed]](Payload(body, ctype, 0, None))
                if not res.records:
                    continue
            out[label].append(HttpPayload(SOURCE_OF_FEED[feed], path, ctype, body, ev.native_id))
        if all(len(v) >= count for v in out.values()):
            break
    return out


def cycle_to(items: Sequence[Any], n: int) -> list[Any]:
    """``items`` repeated until ``n`` long (empty when ``items`` is)."""
    if not items:
        return []
    return [items[i % len(items)] for i in range(n)]


def pure_rate(fn: Callable[[Any], Any], items: Sequence[Any], *, min_seconds: float = 0.5,
              events_per_item: float = 1.0) -> tuple[float, float]:
    """(events, seconds) of calling ``fn`` over ``items`` (repeated until ``min_seconds`` have passed)."""
    n = 0
    t0 = time.perf_counter()
    while True:
        for it in items:
            fn(it)
        n += len(items)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds or not items:
            return n * events_per_item, elapsed


# --------------------------------------------------------------------------------------------
# measurements through the I/O shells
# --------------------------------------------------------------------------------------------

async def post_all(url: str, payloads: Sequence[HttpPayload], concurrency: int,
                   timeout_s: float = 30.0, credentials: Credentials | None = None) -> tuple[Counter[str], float]:
    """POST every payload with at most ``concurrency`` in flight, authenticated like the simulator's
    pushes with `credentials` (None: unauthenticated); (status counts, wall seconds)."""
    statuses: Counter[str] = Counter()
    auth = PushAuth(credentials)
    sem = asyncio.Semaphore(concurrency)
    conn = aiohttp.TCPConnector(limit=concurrency)

    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        async def one(p: HttpPayload) -> None:
            async with sem:
                try:
                    statuses[str(await auth.post(session, url, p.source, p.path, p.body, p.content_type))] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    statuses[f"error:{type(exc).__name__}"] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(p) for p in payloads))
        return statuses, time.perf_counter() - t0


def alarm110_rows(seed: int, n: int) -> list[dict[str, str]]:
    """``n`` JJD rows: the simulator's 110 rows cycled, with unique JJDBH and a monotonic GXSJ."""
    base: list[dict[str, str]] = []
    for d in islice(delivery_stream(seed, 1.0), 20_000):
        if d.event.feed == "alarm110" and not d.duplicate:
            base.append(dict(zip(ALARM110_COLUMNS, alarm110_row(d.event.payload))))
            if len(base) >= min(n, 500):
                break
    t0 = datetime(2026, 7, 14, 0, 0, 0)
    rows = []
    for i, row in enumerate(cycle_to(base, n)):
        rows.append({**row, "JJDBH": f"B{seed:03d}{i:016d}",
                     "GXSJ": (t0 + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S")})
    return rows


def mediation_csv(seed: int, cases: int) -> bytes:
    """A mediation CSV export (UTF-8 with BOM) of ``cases`` cases (simulator cases, unique case numbers)."""
    base = [d.event.payload for d in islice(delivery_stream(seed, 1.0), 40_000)
            if d.event.feed == "mediation" and not d.duplicate][:200]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(MEDIATION_COLUMNS)
    for i, case in enumerate(cycle_to(base, cases)):
        for row in mediation_rows({**case, "案件编号": f"BM{seed:03d}{i:08d}"}):
            w.writerow(row)
    return buf.getvalue().encode("utf-8-sig")


async def measure_alarm110(settings: Settings, rows: list[dict[str, str]], db_path: Path) -> tuple[int, float, dict[str, int]]:
    """Poll a fresh SQLite JJD table of ``rows`` until caught up; (rows, seconds, poller stats)."""
    url = f"sqlite:///{db_path}"
    sink = Alarm110Sink(url)
    with sink.engine.begin() as conn:
        conn.execute(sa.insert(sink.table), rows)
    sink.close()
    producer = RecordProducer.from_settings(settings)
    poller = Alarm110Poller(settings, producer, PollerConfig(url=url, cursor_path=db_path.with_suffix(".cursor.json")))
    await poller.setup()
    await producer.ensure_started()
    try:
        t0 = time.perf_counter()
        while await poller.poll_once():
            pass
        return poller.stats["rows"], time.perf_counter() - t0, dict(poller.stats)
    finally:
        await poller.stop()
        await producer.stop()


async def measure_mediation_csv(settings: Settings, data: bytes) -> tuple[int, float, int]:
    """Import one CSV export with a fresh ledger; (cases sent, seconds, dead letters)."""
    producer = RecordProducer.from_settings(settings)
    imp = MediationImporter(settings, producer)
    await imp.setup()
    await producer.ensure_started()
    try:
        t0 = time.perf_counter()
        report = await imp.import_bytes(data, name="bench.csv")
        return report.sent, time.perf_counter() - t0, report.dead_letters
    finally:
        await producer.stop()


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IngestOptions:
    """What `pingan bench ingest` measures."""

    count: int = 1000              # payloads per HTTP connector
    concurrency: int = 16          # requests in flight
    alarm110_rows: int = 3000
    mediation_cases: int = 1000
    seed: int = 1
    json_path: Path | None = None


@dataclass
class RateRow:
    """One connector: ingest rate through its I/O shell and the bare translate rate."""

    connector: str
    shell: str
    events: int
    seconds: float
    baseline_events: float = 0.0
    baseline_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Ingested events per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def baseline_rate(self) -> float:
        """Bare translate events per second."""
        return self.baseline_events / self.baseline_seconds if self.baseline_seconds > 0 else 0.0


def run_ingest(options: IngestOptions, base: Settings | None = None,
               progress: Callable[[str], None] = lambda _: None) -> list[RateRow]:
    """Measure every connector (see module doc); topics are created under a fresh prefix and deleted."""
    rows: list[RateRow] = []
    with tempfile.TemporaryDirectory(prefix="pingan-bench-ingest-") as tmp_s:
        tmp = Path(tmp_s)
        reg_path = tmp / "registry.csv"
        write_registry(build_world(options.seed), reg_path)
        registry = DeviceRegistry.from_csv(reg_path)
        creds_path = tmp / "ingest-credentials.toml"
        write_ingest_credentials(creds_path)  # the receivers check signatures as in production
        settings = isolated_settings(base or Settings.from_env(), registry=reg_path, run_dir=tmp / "run",
                                     ingest_credentials=creds_path)
        provision_topics(settings)
        try:
            progress("preparing payloads")
            payloads = simulator_payloads(options.seed, options.count, registry=registry)
            translators = default_translators(registry)
            proc = ConnectorsProcess(settings, registry=reg_path, log_path=tmp / "connectors.log")
            progress(f"starting {shlex.join(proc.command()[1:])}")
            proc.start()
            try:
                for label, feed, _ in HTTP_CONNECTORS:
                    distinct = payloads[label]
                    batch = cycle_to(distinct, options.count)
                    if not batch:
                        continue
                    tr = translators[SOURCE_OF_FEED[feed]]
                    b_events, b_secs = pure_rate(lambda p, tr=tr: tr(Payload(p.body, p.content_type, 0, None)),
                                                 batch)
                    progress(f"posting {len(batch)} {label} payloads")
                    statuses, secs = asyncio.run(post_all(proc.url, batch, options.concurrency,
                                                          credentials=load_credentials(creds_path)))
                    rows.append(RateRow(label, "HTTP → Kafka", statuses.get("202", 0), secs, b_events, b_secs,
                                        {**statuses, "distinct": len(distinct)}))
            finally:
                proc.stop()

            progress(f"110 poller over {options.alarm110_rows} SQLite rows")
            jjd = alarm110_rows(options.seed, options.alarm110_rows)
            b_events, b_secs = pure_rate(lambda r: translate_row(r, received_at_ms=0), jjd)
            n, secs, stats = asyncio.run(measure_alarm110(settings, jjd, tmp / "jjd.db"))
            rows.append(RateRow("alarm110 poller", "SQLite → Kafka", stats["records"], secs, b_events, b_secs,
                                {"dead_letters": stats["dead_letters"], "batches": stats["batches"]}))

            progress(f"mediation CSV importer, {options.mediation_cases} cases")
            data = mediation_csv(options.seed, options.mediation_cases)
            b_events, b_secs = pure_rate(lambda d: translate_csv(d, received_at_ms=0), [data],
                                         events_per_item=float(options.mediation_cases))
            sent, secs, dead = asyncio.run(measure_mediation_csv(settings, data))
            rows.append(RateRow("mediation CSV importer", "file → Kafka", sent, secs, b_events, b_secs,
                                {"dead_letters": dead, "bytes": len(data)}))
        finally:
            with contextlib.suppress(Exception):  # cleanup only
                drop_kafka_namespace(settings, client_id="pingan-bench-ingest", wait_s=0.0)
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(
            [{**asdict(r), "rate": r.rate, "baseline_rate": r.baseline_rate} for r in rows],
            ensure_ascii=False, indent=1, default=str))
    return rows


#: columns left out first when the terminal is narrow
NARROW_DROP = ("outcomes", "seconds", "shell", "events")


def render(rows: Sequence[RateRow], command_line: str, width: int | None = None) -> Table:
    """A rich table of the rates (ingest vs bare translate), fitted to `width` when given."""
    t = Table(title="Ingest rate per connector (events/s)", caption=command_line)
    text_column(t, "connector")
    text_column(t, "shell")
    for col in ("events", "seconds", "ingest/s", "translate/s", "overhead ×"):
        number_column(t, col)
    text_column(t, "outcomes")
    for r in rows:
        ratio = f"{r.baseline_rate / r.rate:.1f}" if r.rate > 0 else "—"
        t.add_row(r.connector, r.shell, str(r.events), f"{r.seconds:.2f}", f"{r.rate:,.0f}", f"{r.baseline_rate:,.0f}",
                  ratio, ", ".join(f"{k}={v}" for k, v in sorted(r.statuses.items())))
    return t if width is None else fit_table(t, width, NARROW_DROP)


def run_and_print(options: IngestOptions) -> list[RateRow]:
    """Run the benchmark and print the table (with the command line that produced it)."""
    console = Console()
    cmd = (f"pingan bench ingest --count {options.count} --concurrency {options.concurrency} "
           f"--alarm110-rows {options.alarm110_rows} --mediation-cases {options.mediation_cases} --seed {options.seed}")
    rows = run_ingest(options, progress=lambda m: console.log(m))
    console.print(render(rows, cmd, console.width))
    return rows
