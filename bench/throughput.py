"""Throughput and end-to-end latency of the bus against fair bare baselines, on the real stack.

`pingan bench throughput` (see `streams.cli.bench`) runs everything below in one process and prints ONE
table; every number in it comes from the same run.

Method
- Payload (`bench.throughput_payload`): ``pingan simulate --seed S --scale N`` for one day, timed
  through the pure worker code, then for as many days as the pure pipeline needs for
  ``--min-seconds`` × 2 (fresh event ids every day). Every delivery is translated and encoded into
  raw single-object Avro records once, in memory, and run once through the pure code the worker runs
  (`NormalizeStage` → `CountyProcessor`, the worker's rules): that gives the events any prefix of the
  records yields and the incidents (id → version) and merged ids the index must end up with.
- Every variant runs in an isolated namespace of its own (topic prefix, consumer group / app id,
  index prefix), dropped afterwards (`bench.common`), and does at least ``--min-seconds`` of work:
  its record (or document) count is sized from the rate it (or, before its first run, its
  baseline or the pure code) showed, × 1.5; a run shorter than that is thrown away and run again
  larger. B3 and the pipeline read fresh records (a prefix of the payload): when they need more,
  more days are simulated and evaluated (up to 90; past that a short run is kept and marked short).
- Kafka variants run as subprocesses, started on empty topics; one warm-up record (a copy of an
  early record: a duplicate for the pipeline) proves they are assigned and warm; then the clock
  starts, every record is produced (acks awaited) and the clock stops when the output is complete:
  ``events.v1`` end offsets for B1 and the normalize agent; for B3 and the pipeline, realtime
  ``mget`` reads of the index (GET/mget are realtime, search is not): every expected incident at
  its expected ``_version`` (external versions = the incident's version), then every merged id
  gone. Start-up is not in the figures; no refresh is forced or waited for. A realtime GET of a
  document changed since the last refresh refreshes the shard, so the watch reads only the ids the
  last 200 records changed until they are done, then the whole set at most twice a second
  (`IndexWatch`); reading every id ten times a second had cost the measured node about a core.
- Index variants (B2, ours-sink) run in this process into a fresh index from the project template;
  they are complete when the bulk responses (per document) say so.
- The pure in-process pipeline runs in this process on the same records as the pipeline in that
  round, passes repeated until ``--min-seconds``.
- Rounds alternate the order inside each group (baseline first, then ours first, …); the table shows
  medians. CPU seconds per 1,000 items come from ``/proc/<pid>/stat`` (utime+stime) of the measured
  Python process (the subprocess, or this process for in-process variants), of Kafka and of
  Elasticsearch (their pid files under the run dir) — other work on the machine during the run
  lands in the Kafka/Elasticsearch figures too, and the producing/polling of this process is not
  counted anywhere.
- Flood: `bench.flood.measure_flood` (per-chunk seconds as one incident grows), when present.
- Latency: a fresh deployment as the tax row measures it (a correlate and an edge worker; one full
  worker with ``--only`` groups without it); records are produced at half its highest rate measured,
  the broker's ack time of each event is recorded, Elasticsearch is searched every 100 ms for the
  documents changed since the previous search (`SearchableWatch`: ``_seq_no`` above the last one
  seen, their ``event_ids`` from doc values; no forced refresh: "searchable" is what a user sees, so
  here search is right) and p50/p99 of searchable-minus-acked per event are reported. The probe
  runs `--latency-runs` times (3), each on fresh topics and a fresh index; the row is the run with
  the median p99 (one 20 s run's p99 spread 1.2–2.4 s on this machine at the same rate).

Variants (bare ones in `bench.throughput_bare`; "records" are raw records in, "docs" bulk documents)
- B1: bare aiokafka consume → `NormalizeStage` (fastavro decode + the worker's normalizer) → encode
  ``pingan.Event`` → ``events.v1`` (key event_id) and by-county (key county), dead letters; acks
  awaited, one commit per batch. Records repeated as needed (normalize does not deduplicate).
- ours normalize: the real Faust app (`streams.worker.app.build_app`) with only the normalize agent.
- B2: bare ``async_streaming_bulk`` whose actions are built in the timed loop with
  `incident_document` and external versions from the incident records (relabelled copies as needed).
- ours sink: `IncidentSink` over the same incident records, batched like the index agent.
- B3: B1's loop + per batch: the worker's `CountyProcessor` (dict stores) → ``links.v1``,
  ``incidents.v1`` (latest per incident), ``escalations.v1``, acks awaited → bulk of the incident
  documents into the templated index → commit. A prefix of fresh records (no repeats).
- pure: the same records → `NormalizeStage` → `CountyProcessor` → `incident_document`, no I/O.
- ours pipeline: the real worker (``python -m streams.cli worker run``: normalize, correlate, index).
- ours split: the same pipeline as deployed on more than one core: ``worker run --role correlate``
  (id 0) and ``--role edge`` (id 1) in one consumer group (streams/worker/app.py `ROLES`). The
  framework-tax row compares it with the pure code on one thread: the CPU columns say what the two
  processes spent.

No import-time side effects: everything happens in `run_throughput`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from rich.console import Console
from rich.table import Table

from bench.common import drop_indices_async, drop_kafka_namespace
from bench.profile import Profile, Sampler
from bench.tables import fit_table, number_column, text_column
from bench.throughput_bare import bulk, incident_actions, pure_pass
from bench.throughput_payload import Expected, Payload, RawRecord, prepare, prepare_days
from connectors.elasticsearch.admin import IndexNames, ensure_incident_index
from connectors.elasticsearch.client import async_client
from connectors.elasticsearch.sink import IncidentSink
from connectors.sources.devices import DeviceRegistry
from infra.processes import ChildProcess, free_ports, isolated_settings, pingan_command, settings_env
from infra.stack import Elasticsearch, Kafka
from schemas.catalogue import TOPICS
from schemas.serde import default_store
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.settings import Settings
from streams.worker.runtime import tuned_gc
from streams.worker.stages import RAW_SOURCES
from streams.worker.topology import BY_COUNTY, EVENTS, INCIDENTS

RAW_TOPICS: tuple[str, ...] = tuple(RAW_SOURCES)
LABELS: Mapping[str, str] = {
    "B1": "B1 bare aiokafka → NormalizeStage → produce",
    "normalize": "ours: normalize agent (Faust worker)",
    "B2": "B2 bare async_streaming_bulk, docs built in loop",
    "sink": "ours: IncidentSink",
    "B3": "B3 bare aiokafka → normalize → correlate → bulk, Kafka writes",
    "pure": "pure in-process normalize → correlate → documents",
    "pipeline": "ours: whole pipeline (Faust worker → ES)",
    "split": "ours: whole pipeline, roles split (correlate | edge)",
}
UNITS: Mapping[str, str] = {"B1": "records", "normalize": "records", "B2": "docs", "sink": "docs",
                            "B3": "records", "pure": "records", "pipeline": "records",
                            "split": "records"}
#: groups run together; odd rounds in this order (baselines first), even rounds reversed
GROUPS: tuple[tuple[str, ...], ...] = (("B1", "normalize"), ("B2", "sink"),
                                       ("B3", "pure", "pipeline", "split"))


@dataclass(frozen=True, slots=True)
class Ratio:
    """One target of issue 18: ours ÷ baseline (rates) ≥ target."""

    key: str
    label: str
    ours: str
    base: str
    target: float


RATIOS: tuple[Ratio, ...] = (
    Ratio("normalize/B1", "normalize agent ÷ B1", "normalize", "B1", 0.6),
    Ratio("sink/B2", "sink ÷ B2", "sink", "B2", 0.9),
    Ratio("pipeline/B3", "whole pipeline (one process) ÷ B3", "pipeline", "B3", 0.5),
    Ratio("split/pure", "framework tax: whole pipeline as deployed (correlate | edge) ÷ pure in-process",
          "split", "pure", 0.5),
)
#: ratios shown for information (no target of issue 18)
SCALING: tuple[Ratio, ...] = (
    Ratio("pipeline/pure", "one worker process (all agents) ÷ pure in-process", "pipeline", "pure", 0.0),
    Ratio("split/pipeline", "roles split (2 processes) ÷ one process", "split", "pipeline", 0.0),
)
FLOOD_TARGET = 1.5  # last chunk ÷ first chunk
LATENCY_TARGET_S = 1.5  # e2e p99 at half the measured maximum rate
WAIT_S = 300.0  # upper bound for any single wait (start-up, completion)
MARGIN = 1.5  # sizing margin over min_seconds (rates on a shared machine swing by that much between rounds)
MAX_DAYS = 90  # simulated days at most (B3 and the pipeline read fresh records)
#: variants that read fresh records (a prefix of the payload); pure runs on the pipeline's records
FRESH = frozenset({"B3", "pipeline", "pure", "split"})


# ------------------------------------------------------------------------------------------
# namespaces, processes, CPU


def isolated(base: Settings, run_dir: Path, registry: Path | None) -> Settings:
    """Settings with a topic prefix (``bench…``), app id (= consumer group) and index prefix
    (``pingan-bench-…``) of their own."""
    return isolated_settings(base, registry, topic_tag="bench", name="pingan-bench", run_dir=run_dir,
                             worker_web_port=free_ports(2), worker_id=0)


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process from /proc/<pid>/stat, in seconds (0.0 if unreadable)."""
    if not pid:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuProbe:
    """CPU-time snapshots of the measured Python process, Kafka and Elasticsearch."""

    kafka_pid: int | None
    es_pid: int | None

    def snapshot(self, python_pid: int | Sequence[int] | None) -> dict[str, float]:
        """CPU seconds so far: "python" (every measured process), "kafka", "es", and with more than
        one measured process each one's as "python.<i>" (i = worker id: 0 correlate, 1 edge)."""
        pids = python_pid if isinstance(python_pid, Sequence) else (python_pid,)
        each = [cpu_seconds(p) for p in pids]
        out = {"python": sum(each), "kafka": cpu_seconds(self.kafka_pid), "es": cpu_seconds(self.es_pid)}
        if len(each) > 1:
            out.update({f"python.{i}": c for i, c in enumerate(each)})
        return out


class CpuWindow:
    """CPU seconds of one timed window (`start` … `stop`) for one Python process."""

    def __init__(self, probe: CpuProbe, pid: int | Sequence[int] | None) -> None:
        self.probe, self.pid = probe, pid
        self.before = probe.snapshot(pid)

    def stop(self) -> dict[str, float]:
        after = self.probe.snapshot(self.pid)
        return {k: after[k] - self.before[k] for k in after}


# ------------------------------------------------------------------------------------------
# Kafka and Elasticsearch helpers


class Offsets:
    """Sums end offsets of topics (one aiokafka consumer, no group)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: Any = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def total(self, topic: str, partitions: int) -> int:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        offsets = await asyncio.wait_for(self._consumer.end_offsets(tps), 10)
        return sum(offsets.values())


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a variant's outputs are: `observed` of `expected`, and in words."""

    expected: int
    observed: int
    text: str


class IndexWatch:
    """Completion of an index by realtime reads: every expected live id at (at least) its expected
    ``_version``, then every merged id absent. Ids confirmed at their final version are not read
    again (a version only grows).

    A realtime GET of a document changed since the last refresh makes Elasticsearch refresh the
    shard, so reading every pending id ten times a second loads the very node being measured
    (it cost the B3 and pipeline runs about one ES core). The watch therefore reads the
    ``tail`` ids (last changed by the final records) on every call, and the whole set only once
    the tail is done, then at most every `full_every` seconds until it is complete."""

    CHUNK = 2000

    def __init__(self, client: Any, index: str, expected: Expected, *, full_every: float = 0.5) -> None:
        self.client, self.index, self.expected = client, index, expected
        self.pending = dict(expected.live)
        self.present_gone = len(expected.gone)
        self.tail_live = {i: v for i, v in expected.live.items() if i in expected.tail}
        self.tail_gone = sorted(expected.gone & expected.tail)
        self.full_every, self._last_full = full_every, -float("inf")

    async def _versions(self, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for i in range(0, len(ids), self.CHUNK):
            resp = await self.client.mget(index=self.index, body={"ids": list(ids[i:i + self.CHUNK])}, _source=False)
            found.update({d["_id"]: int(d["_version"]) for d in resp["docs"] if d.get("found")})
        return found

    async def _tail_done(self) -> bool:
        if self.tail_live:
            found = await self._versions(list(self.tail_live))
            self.tail_live = {i: v for i, v in self.tail_live.items() if found.get(i, -1) < v}
            if self.tail_live:
                return False
        if self.tail_gone:
            self.tail_gone = sorted(await self._versions(self.tail_gone))
        return not self.tail_gone

    async def complete(self) -> bool:
        if not await self._tail_done() or time.monotonic() - self._last_full < self.full_every:
            return False
        self._last_full = time.monotonic()
        if self.pending:
            found = await self._versions(list(self.pending))
            for iid, version in found.items():
                if version >= self.pending[iid]:
                    del self.pending[iid]
            if self.pending:
                return False
        self.present_gone = len(await self._versions(sorted(self.expected.gone)))
        return self.present_gone == 0

    def progress(self) -> Progress:
        live, gone = len(self.expected.live), len(self.expected.gone)
        done = live - len(self.pending) + (gone - self.present_gone if not self.pending else 0)
        return Progress(live + gone, done, f"{live - len(self.pending)}/{live} incidents at their version, "
                                           f"{self.present_gone} of {gone} merged ids still present")


class SearchableWatch:
    """Which event ids a search of `index` (one shard) finds, read from the documents changed since
    the last poll, not by looking every pending id up.

    Each `poll()` searches the documents whose ``_seq_no`` is above the highest one it saw minus
    `margin` (sorted by ``_seq_no``, pages of `PAGE`), and returns the ``event_ids`` they hold. A
    document changed since is found again under its new ``_seq_no``; one whose change is not yet
    refreshed is found once it is. Searching the pending ids instead (a ``terms`` query over a few
    hundred ids, ten times a second) cost Elasticsearch ~45 ms of CPU per search, about a quarter of
    a core on the node being measured. The `margin` re-reads the last few documents in case a
    refresh exposes a later operation before an earlier one (the index agent writes one bulk at a
    time, so this is a safety net)."""

    PAGE = 2000

    def __init__(self, client: Any, index: str, *, margin: int = 16) -> None:
        self.client, self.index, self.margin = client, index, margin
        self.high = -1
        self.searches = 0

    async def check_single_shard(self) -> None:
        """`_seq_no` orders one shard's operations only: refuse an index of more shards."""
        settings = await self.client.indices.get_settings(index=self.index, name="index.number_of_shards")
        shards = {int(v["settings"]["index"]["number_of_shards"]) for v in settings.values()}
        if shards != {1}:
            raise RuntimeError(f"latency probe: {self.index} has {sorted(shards)} shards; it reads one shard's _seq_no")

    async def poll(self) -> set[str]:
        """The event ids of every document changed (and refreshed) since the last poll, and of the
        last `margin` operations before it."""
        found: set[str] = set()
        low = max(-1, self.high - self.margin)
        while True:
            resp = await self.client.search(
                index=self.index, size=self.PAGE, _source=False, seq_no_primary_term=True, track_total_hits=False,
                docvalue_fields=["event_ids"], sort=[{"_seq_no": "asc"}], query={"range": {"_seq_no": {"gt": low}}})
            self.searches += 1
            hits = resp["hits"]["hits"]
            for hit in hits:
                found.update((hit.get("fields") or {}).get("event_ids") or ())
                low = max(low, int(hit["_seq_no"]))
            self.high = max(self.high, low)
            if len(hits) < self.PAGE:
                return found


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, what: str, timeout: float = WAIT_S,
                     interval: float = 0.05, child: ChildProcess | WorkerGroup | None = None) -> None:
    """Poll an async predicate until true; fail with `what` (and the child's log) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if child is not None:
            child.check()
        try:
            if await predicate():
                return
        except (asyncio.TimeoutError, OSError, LookupError):
            pass
        except Exception as exc:  # noqa: BLE001 - transient client errors while topics/indices appear
            if type(exc).__name__ not in ("NotFoundError", "KafkaError", "UnknownTopicOrPartitionError",
                                          "KafkaTimeoutError", "ConnectionError", "TransportError"):
                raise
        if time.monotonic() > deadline:
            tail = f"\n{child.log_tail()}" if child else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        await asyncio.sleep(interval)


async def produce(producer: Any, settings: Settings, records: Sequence[RawRecord]) -> None:
    """Send records to their (prefixed) raw topics and wait for every ack."""
    futures = [await producer.send(settings.input_topic(r.topic), r.value, key=r.key) for r in records]
    await asyncio.gather(*futures)


async def wait_web(port: int, child: ChildProcess) -> None:
    """Wait for the worker's /pingan/metrics page."""
    await asyncio.to_thread(child.wait_healthy, f"http://127.0.0.1:{port}/pingan/metrics", WAIT_S, 0.5)


# ------------------------------------------------------------------------------------------
# measurements and the shared context


@dataclass
class Measurement:
    """One timed run of one variant."""

    variant: str
    round: int
    items: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds during the timed window: python, kafka, es
    short: bool = False  # shorter than min_seconds (B3/pipeline out of fresh records)
    expected: int = 0  # outputs the run had to complete (events, index entries, documents)
    observed: int = 0  # outputs seen complete when the clock stopped
    check: str = ""  # what completion verified, in words

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def cpu_per_1k(self, what: str) -> float:
        return 1000.0 * self.cpu[what] / self.items if self.items else 0.0


@dataclass
class Context:
    """Everything the variants share, and the size each variant runs at next."""

    base: Settings
    payload: Payload
    run_dir: Path
    registry: Path
    es: Any
    probe: CpuProbe
    log: Callable[[str], None]
    min_seconds: float
    producer: Any = None
    offsets: Any = None
    namespaces: list[tuple[Settings, list[str]]] = field(default_factory=list)
    seed: int = 1
    scale: float = 1.0
    max_days: int = MAX_DAYS
    wanted: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    ran: dict[tuple[str, int], int] = field(default_factory=dict)  # (variant, round) → items of its kept run
    #: write py-spy profiles of every timed window's processes here (``--profile``); None: do not
    profile_dir: Path | None = None
    profiles: list[Profile] = field(default_factory=list)

    def sampler(self, label: str, pid: int | Sequence[int] | None) -> Sampler | None:
        """A started py-spy sampler of `pid` (each of them) for a timed window, if profiling."""
        if self.profile_dir is None or not pid:
            return None
        return Sampler(self.profile_dir, label, [pid] if isinstance(pid, int) else list(pid)).start()

    def profiled(self, sampler: Sampler | None) -> None:
        """Stop `sampler`; keep and log its summaries."""
        if sampler is None:
            return
        for prof in sampler.stop():
            self.profiles.append(prof)
            self.log(prof.text(12))

    # -- sizing --------------------------------------------------------------------------------
    def fresh(self, variant: str) -> bool:
        """B3, the pipeline (and pure, on the pipeline's records) read fresh records only: a prefix
        of the payload, which grows (more simulated days) when a run needs more."""
        return variant in FRESH

    def desired(self, variant: str) -> int:
        """Items wanted for the next run: from the variant's own last rate, else its baseline's (an
        upper bound), else the pure code's calibration; the pure row takes the pipeline's records."""
        if variant == "pure":
            variant = "pipeline"
        if variant in self.wanted:
            return self.wanted[variant]
        cal = self.payload.calibration
        guess = {"B1": lambda: cal.rate(correlate=False), "B3": lambda: cal.rate(correlate=True),
                 "normalize": lambda: self.rates.get("B1") or cal.rate(correlate=False),
                 "B2": lambda: 1000.0, "sink": lambda: self.rates.get("B2") or 1000.0,
                 "pipeline": lambda: 0.5 * (self.rates.get("B3") or cal.rate(correlate=True)),
                 "split": lambda: 1.5 * (self.rates.get("pipeline")
                                             or 0.5 * (self.rates.get("B3") or cal.rate(correlate=True)))}[variant]()
        return math.ceil(self.min_seconds * MARGIN * guess)

    def size(self, variant: str) -> int:
        """`desired`, within what the payload holds for the fresh-record variants."""
        n = self.desired(variant)
        if self.fresh(variant):
            return min(self.payload.n, max(self.payload.warm_index + 1, n))
        return max(1, n)

    def learn(self, m: Measurement) -> bool:
        """Remember the rate and the next size; True when the run was long enough."""
        self.rates[m.variant] = m.rate
        if m.variant != "pure":
            self.wanted[m.variant] = math.ceil(m.items * MARGIN * self.min_seconds / max(m.seconds, 1e-3))
        return m.seconds >= self.min_seconds

    def can_grow(self, variant: str, items: int) -> bool:
        """Would a rerun be larger? (Not when a fresh-record variant has every day it may have.)"""
        if self.desired(variant) <= items:
            return False
        return not self.fresh(variant) or items < self.payload.n or self.payload.days < self.max_days

    async def ensure_records(self, variant: str) -> None:
        """Simulate more days when a fresh-record variant wants more records than the payload has."""
        need = self.desired(variant)
        if not self.fresh(variant) or need <= self.payload.n or not 0 < self.payload.days < self.max_days:
            return
        per_day = self.payload.n / self.payload.days
        days = min(self.max_days, max(self.payload.days + 1, math.ceil(1.25 * need / per_day)))
        self.log(f"{variant} wants {need} fresh records, the payload has {self.payload.n}: simulating {days} days")
        self.payload = await asyncio.to_thread(prepare_days, self.run_dir, self.base, seed=self.seed,
                                               scale=self.scale, days=days)
        self.registry = self.payload.folder / "registry.csv"
        self.log(f"payload: {self.payload.days} day(s), {self.payload.n} raw records")

    # -- namespaces and clients ------------------------------------------------------------------
    def namespace(self, groups_suffixes: Sequence[str] = ("",)) -> Settings:
        ns = isolated(self.base, self.run_dir, self.registry)
        self.namespaces.append((ns, [ns.app_id + s for s in groups_suffixes]))
        return ns

    async def start_clients(self) -> None:
        """A producer and an offsets reader for the current variant (see `stop_clients`)."""
        await self.stop_clients()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.base.kafka_bootstrap, acks="all",
                                         enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024,
                                         client_id="pingan-bench")
        await self.producer.start()
        self.offsets = Offsets(self.base.kafka_bootstrap)
        await self.offsets.start()

    async def stop_clients(self) -> None:
        """Stop the variant's clients: one that still knows a deleted topic asks for its metadata
        and the broker re-creates it (auto.create.topics.enable)."""
        producer, offsets, self.producer, self.offsets = self.producer, self.offsets, None, None
        if offsets is not None:
            await offsets.stop()
        if producer is not None:
            await producer.stop()

    async def cleanup(self, ns: Settings) -> None:
        """Drop the namespace: topics, consumer groups, indices."""
        await self.stop_clients()
        for s, groups in list(self.namespaces):
            if s is ns:
                await asyncio.to_thread(drop_kafka_namespace, s, groups)
                await drop_indices_async(self.es, s)
                self.namespaces.remove((s, groups))


# ------------------------------------------------------------------------------------------
# the Kafka variants (subprocesses)


def _py(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


async def _timed_kafka_run(ctx: Context, ns: Settings, child: ChildProcess | WorkerGroup, variant: str, rnd: int,
                           records: Sequence[RawRecord], done: Callable[[], Awaitable[bool]],
                           warm: Callable[[], Awaitable[bool]], check: Callable[[], Progress]) -> Measurement:
    """Warm-up record → wait → start the clock → produce `records` → wait for `done`."""
    await produce(ctx.producer, ns, [ctx.payload.warmup])
    await wait_until(warm, what=f"{variant}: the warm-up record's output", child=child, interval=0.2)
    window = CpuWindow(ctx.probe, child.pid)
    sampler = ctx.sampler(f"{variant}-{rnd}", child.pid)
    t0 = time.perf_counter()
    try:
        await produce(ctx.producer, ns, records)
        try:
            await wait_until(done, what=f"{variant}: complete output", child=child, interval=0.1)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{check().text}") from None
        seconds = time.perf_counter() - t0
    finally:
        ctx.profiled(sampler)
    done = check()
    return Measurement(variant, rnd, len(records), seconds, window.stop(), expected=done.expected,
                       observed=done.observed, check=done.text)


async def _events_run(ctx: Context, rnd: int, variant: str, child_of: Callable[[Settings], ChildProcess],
                      groups: Sequence[str], only: Sequence[str] | None) -> Measurement:
    """B1 / normalize: `size` records (the payload repeated) until ``events.v1`` holds their events."""
    ns = ctx.namespace(groups)
    try:
        await ctx.start_clients()
        await asyncio.to_thread(provision_topics, ns, only=only)
        child = child_of(ns).start()
        try:
            if variant == "normalize":
                await wait_web(ns.worker_web_port, child)
            n = ctx.size(variant)
            expected = 1 + ctx.payload.events_in(n)  # the warm-up record's event, then n records'
            parts = {t.name: t.partitions for t in TOPICS}[EVENTS]
            seen = [0]

            async def count(k: int) -> bool:
                seen[0] = await ctx.offsets.total(ns.topic(EVENTS), parts)
                return seen[0] >= k

            return await _timed_kafka_run(ctx, ns, child, variant, rnd, ctx.payload.repeated(n),
                                          lambda: count(expected), lambda: count(1),
                                          lambda: Progress(expected, seen[0], f"events.v1 holds {seen[0]} of {expected}"))
        finally:
            child.stop()
    finally:
        await ctx.cleanup(ns)


async def run_b1(ctx: Context, rnd: int) -> Measurement:
    """B1: bare consume → NormalizeStage → produce events / by-county / dead letters."""
    return await _events_run(ctx, rnd, "B1", lambda ns: ChildProcess(
        _py("bench.throughput_bare", "b1", ns.app_id + "-b1"), settings_env(ns), ctx.run_dir / f"b1-{rnd}.log"),
        ("-b1",), None)


async def run_normalize(ctx: Context, rnd: int) -> Measurement:
    """Ours: the real Faust app with only the normalize agent."""
    return await _events_run(ctx, rnd, "normalize", lambda ns: ChildProcess(
        _py("bench.throughput_bare", "normalize_worker"), settings_env(ns), ctx.run_dir / f"normalize-{rnd}.log"),
        ("",), None)


async def _index_run(ctx: Context, rnd: int, variant: str, child_of: Callable[[Settings], ChildProcess | WorkerGroup],
                     groups: Sequence[str]) -> Measurement:
    """B3 / pipeline: a prefix of fresh records until the index holds exactly its incidents."""
    ns = ctx.namespace(groups)
    try:
        await ctx.start_clients()
        await asyncio.to_thread(provision_topics, ns)
        await asyncio.to_thread(provision_elasticsearch, ns)
        alias = IndexNames(ns.es_index_prefix).alias
        child = child_of(ns).start()
        try:
            if isinstance(child, WorkerGroup):
                await child.wait_assigned(ns.worker_web_port)
            n = ctx.size(variant)
            watch = IndexWatch(ctx.es, alias, ctx.payload.expected(n))
            warm = IndexWatch(ctx.es, alias, Expected(1, 1, {ctx.payload.warm_incident: 0}, frozenset()))
            return await _timed_kafka_run(ctx, ns, child, variant, rnd, ctx.payload.records[:n], watch.complete,
                                          warm.complete, watch.progress)
        finally:
            child.stop()
    finally:
        await ctx.cleanup(ns)


async def run_b3(ctx: Context, rnd: int) -> Measurement:
    """B3: bare aiokafka → normalize → correlate → Kafka writes → bulk into the templated index."""
    return await _index_run(ctx, rnd, "B3", lambda ns: ChildProcess(
        _py("bench.throughput_bare", "b3", ns.app_id + "-b3"), settings_env(ns), ctx.run_dir / f"b3-{rnd}.log"),
        ("-b3",))


async def run_pipeline(ctx: Context, rnd: int) -> Measurement:
    """Ours: the real worker (normalize, correlate, index)."""
    return await _workers_run(ctx, rnd, "pipeline", 1)


async def run_split(ctx: Context, rnd: int) -> Measurement:
    """Ours as deployed on more than one core: a ``correlate`` worker (id 0: the county-serial stage
    and its tables) and an ``edge`` worker (id 1: normalize and index), one consumer group."""
    return await _index_run(ctx, rnd, "split", lambda ns: split_workers(ns, ctx.run_dir / f"split-{rnd}"), ("",))


async def _workers_run(ctx: Context, rnd: int, variant: str, count: int) -> Measurement:
    """`_index_run` with `count` worker processes (worker ids 0…), timed once every one has partitions."""
    return await _index_run(ctx, rnd, variant, lambda ns: WorkerGroup([
        _worker(ns.model_copy(update={"worker_id": i}), ctx.run_dir / f"{variant}-{rnd}-{i}.log")
        for i in range(count)]), ("",))


def _worker(ns: Settings, log_path: Path) -> ChildProcess:
    return ChildProcess(pingan_command("worker", "run", "--loglevel", "warning"), settings_env(ns), log_path)


def split_workers(ns: Settings, log_prefix: Path) -> "WorkerGroup":
    """A correlate worker (id 0) and an edge worker (id 1) of one consumer group."""
    return WorkerGroup([_worker(ns.model_copy(update={"worker_id": i, "worker_role": role}),
                                Path(f"{log_prefix}-{role}.log")) for i, role in enumerate(("correlate", "edge"))])


class WorkerGroup:
    """Worker processes of one app started, checked and stopped together (`ChildProcess`'s interface
    as `_index_run` uses it; ``pid`` is every process's, for the CPU window)."""

    def __init__(self, children: Sequence[ChildProcess]) -> None:
        self.children = list(children)

    def start(self) -> "WorkerGroup":
        for c in self.children:
            c.start()
        return self

    @property
    def pid(self) -> list[int]:
        return [c.pid for c in self.children if c.pid]

    def check(self) -> None:
        for c in self.children:
            c.check()

    def stop(self) -> None:
        for c in self.children:
            c.terminate()
        for c in self.children:
            c.stop()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(f"[worker {i}]\n{c.log_tail(n)}" for i, c in enumerate(self.children))

    async def wait_assigned(self, base_port: int) -> None:
        """Every worker's /healthz reports partitions assigned (the group has settled with all of
        them in it: no rebalance lands inside the timed window)."""
        deadline = time.monotonic() + WAIT_S
        for i, c in enumerate(self.children):
            await wait_web(base_port + i, c)
        while time.monotonic() < deadline:
            self.check()
            counts = await asyncio.gather(*(asyncio.to_thread(_assigned, base_port + i)
                                            for i in range(len(self.children))))
            if all(counts):
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"workers not all assigned after {WAIT_S:.0f} s\n{self.log_tail()}")


def _metrics(port: int) -> dict[str, Any]:
    """The worker's /pingan/metrics counters ({} when unreadable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/pingan/metrics", timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except (OSError, ValueError):
        return {}


def correlate_window(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """What a correlate worker did between two /pingan/metrics readings: batches, mean batch
    seconds, checkpoints, mean checkpoint seconds, the longest checkpoint since it started, and its
    garbage collections: full ones, seconds in all of them, the longest pause since it started."""
    def d(name: str) -> float:
        return float(after.get(name) or 0) - float(before.get(name) or 0)

    batches, checkpoints = d("correlate_batches"), d("checkpoints")
    return {"batches": batches, "batch_s": d("correlate_seconds") / batches if batches else 0.0,
            "batch_max_s": float(after.get("correlate_seconds_max") or 0),
            "wait_s": d("correlate_wait_seconds") / batches if batches else 0.0,
            "wait_max_s": float(after.get("correlate_wait_seconds_max") or 0),
            "checkpoints": checkpoints, "checkpoint_s": d("checkpoint_seconds") / checkpoints if checkpoints else 0.0,
            "checkpoint_max_s": float(after.get("checkpoint_seconds_max") or 0),
            "gc_full": d("gc_full_collections"), "gc_s": d("gc_seconds"), "gc_max_s": float(after.get("gc_seconds_max") or 0),
            "loop_stalls": d("loop_stalls"), "loop_lag_max_s": float(after.get("loop_lag_seconds_max") or 0)}


def _assigned(port: int) -> int:
    """Partitions assigned to the worker whose web port is `port` (0 when unknown)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503 while not ready: the body still says why
        body = json.loads(exc.read() or b"{}")
    except OSError:
        return 0
    return int((body.get("kafka") or {}).get("assigned_partitions") or 0)


# ------------------------------------------------------------------------------------------
# the in-process variants


def _relabelled(incidents: Sequence[Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    """`n` incident records: the payload's live incidents, then copies under ids ``<id>~k``."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        k, inc = divmod(i, len(incidents))
        src = incidents[inc]
        out.append({**src, "incident_id": f"{src['incident_id']}~{k}"} if k else dict(src))
    return out


async def _docs_run(ctx: Context, rnd: int, variant: str,
                    load: Callable[[Settings, str, list[dict[str, Any]]], Awaitable[int]]) -> Measurement:
    ns = ctx.namespace(())
    names = IndexNames(ns.es_index_prefix)
    try:
        await ensure_incident_index(ctx.es, names, ns.es_refresh_interval)
        incidents = _relabelled(ctx.payload.incidents, ctx.size(variant))
        window = CpuWindow(ctx.probe, os.getpid())
        t0 = time.perf_counter()
        written = await load(ns, names.alias, incidents)
        seconds = time.perf_counter() - t0
        cpu = window.stop()
        if written != len(incidents):
            raise RuntimeError(f"{variant} wrote {written} of {len(incidents)} documents")
        return Measurement(variant, rnd, written, seconds, cpu, expected=len(incidents), observed=written,
                           check=f"bulk responses: {written} of {len(incidents)} indexed")
    finally:
        await ctx.cleanup(ns)


async def run_b2(ctx: Context, rnd: int) -> Measurement:
    """B2: bare async_streaming_bulk; actions built lazily (in the timed loop) from the records."""
    async def load(ns: Settings, alias: str, incidents: list[dict[str, Any]]) -> int:
        return await bulk(ctx.es, incident_actions(incidents, alias), ns.sink_chunk_size)

    return await _docs_run(ctx, rnd, "B2", load)


async def run_sink(ctx: Context, rnd: int) -> Measurement:
    """Ours: IncidentSink over the same incident records, batched like the index agent."""
    async def load(ns: Settings, alias: str, incidents: list[dict[str, Any]]) -> int:
        sink = IncidentSink(ctx.es, alias, batch_size=ns.sink_batch_size, chunk_size=ns.sink_chunk_size)
        await sink.setup()
        indexed = 0
        for offset, inc in enumerate(incidents):
            if sink.add(inc, topic="incidents.v1", partition=0, offset=offset):
                indexed += (await sink.flush()).indexed
        return indexed + (await sink.stop()).indexed

    return await _docs_run(ctx, rnd, "sink", load)


async def run_pure(ctx: Context, rnd: int) -> Measurement:
    """The pure in-process pipeline on the pipeline's records, repeated until min_seconds."""
    await ctx.stop_clients()
    # the same records as the pipeline's run in this round (when it ran first: what it will run)
    n = ctx.ran.get(("pipeline", rnd)) or ctx.size("pure")
    records = ctx.payload.records[:n]
    registry = DeviceRegistry.from_csv(ctx.registry)
    window = CpuWindow(ctx.probe, os.getpid())
    seconds, passes, events = 0.0, 0, 0
    while seconds < ctx.min_seconds or passes == 0:
        made, took = pure_pass(records, ctx.base, registry)
        events += made
        seconds += took
        passes += 1
    expected = passes * ctx.payload.events_in(n)
    return Measurement("pure", rnd, passes * n, seconds, window.stop(), expected=expected, observed=events,
                       check=f"{passes} pass(es) of {n} records: {events} of {expected} events")


RUNNERS: Mapping[str, Callable[[Context, int], Awaitable[Measurement]]] = {
    "B1": run_b1, "normalize": run_normalize, "B2": run_b2, "sink": run_sink, "B3": run_b3, "pure": run_pure,
    "pipeline": run_pipeline, "split": run_split}


async def measure(ctx: Context, variant: str, rnd: int, attempts: int = 3) -> Measurement:
    """Run a variant; a run shorter than min_seconds is thrown away and run again larger (a run
    that cannot be larger is kept and marked short)."""
    for attempt in range(1, attempts + 1):
        await ctx.ensure_records(variant)
        m = await RUNNERS[variant](ctx, rnd)
        if ctx.learn(m) or attempt == attempts or not ctx.can_grow(variant, m.items):
            m.short = m.seconds < ctx.min_seconds
            ctx.ran[(variant, rnd)] = m.items
            return m
        ctx.log(f"round {rnd} {variant}: {m.items} {UNITS[variant]} took {m.seconds:.1f} s < {ctx.min_seconds:.0f} s; "
                f"again with {ctx.desired(variant)}")
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------
# latency


@dataclass
class Latency:
    """End-to-end latency: broker ack of an event → its incident searchable."""

    rate: float
    seconds: float
    produced: int
    measured: int
    missing: int
    p50: float
    p99: float
    max: float
    refresh_interval: str
    target_s: float = LATENCY_TARGET_S
    deployment: str = "pipeline"  # the variant measured: "split" (correlate | edge) or "pipeline"
    #: stage → (p50, p99, events): where the time goes, from the Kafka timestamps of each event's
    #: first by-county record and first incidents.v1 record (`stage_latencies`)
    stages: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    #: CPU seconds over the probe's window: the worker processes ("python"), Kafka, Elasticsearch,
    #: and this benchmark process ("probe": the producer and the searches that time each event)
    cpu: dict[str, float] = field(default_factory=dict)
    #: the correlate worker over the window (its /pingan/metrics): batches, seconds per batch,
    #: checkpoints, mean and longest checkpoint seconds, full GCs and GC seconds (longest: since start)
    correlate: dict[str, float] = field(default_factory=dict)
    #: the edge worker (split only) over the window: its event-loop lag (`loop_stalls`, `loop_lag_max_s`)
    edge: dict[str, float] = field(default_factory=dict)
    #: (start s, events, p50, p99) per `SLICE_S` of ack time (`latency_slices`): a tail spread over
    #: the window is the steady state, one held by a slice or two is a stall or a warm-up
    slices: list[tuple[float, int, float, float]] = field(default_factory=list)


SLICE_S = 5.0


def latency_slices(acked: Mapping[str, float], seen: Mapping[str, float],
                   slice_s: float = SLICE_S) -> list[tuple[float, int, float, float]]:
    """(start s from the first ack, events, p50, p99) of the events acked in each `slice_s` window."""
    if not acked:
        return []
    t0 = min(acked.values())
    groups: dict[int, list[float]] = {}
    for eid, at in acked.items():
        if eid in seen:
            groups.setdefault(int((at - t0) // slice_s), []).append(seen[eid] - at)
    return [(k * slice_s, len(v), percentile(v, 50), percentile(v, 99)) for k, v in sorted(groups.items())]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))]


def median_run(runs: Sequence[Latency]) -> Latency:
    """The run with the median p99 (the higher middle one of an even count: the row errs high)."""
    if not runs:
        raise ValueError("no latency run")
    return sorted(runs, key=lambda r: r.p99)[len(runs) // 2]


async def run_latency(ctx: Context, rate: float, duration: float, *, split: bool = False,
                      poll_s: float = 0.1) -> Latency:
    """Produce at `rate` for `duration` s into a warm worker (with `split`: a correlate and an edge
    worker, `split_workers`); time each event until searchable."""
    ns = ctx.namespace()
    alias = IndexNames(ns.es_index_prefix).alias
    n = max(1, min(ctx.payload.n, math.ceil(rate * duration)))
    records = ctx.payload.records[:n]
    try:
        await ctx.start_clients()
        await asyncio.to_thread(provision_topics, ns)
        await asyncio.to_thread(provision_elasticsearch, ns)
        child: ChildProcess | WorkerGroup = (split_workers(ns, ctx.run_dir / "latency") if split
                                             else _worker(ns, ctx.run_dir / "latency.log")).start()
        try:
            if isinstance(child, WorkerGroup):
                await child.wait_assigned(ns.worker_web_port)
            else:
                await wait_web(ns.worker_web_port, child)
            await produce(ctx.producer, ns, [ctx.payload.warmup])
            warm = IndexWatch(ctx.es, alias, Expected(1, 1, {ctx.payload.warm_incident: 0}, frozenset()))
            await wait_until(warm.complete, what="latency: warm-up incident", child=child, interval=0.2)
            skip = ctx.payload.warmup.event_id
            acked: dict[str, float] = {}
            seen: dict[str, float] = {}
            producing = True

            def on_ack(eid: str) -> Callable[[asyncio.Future[Any]], None]:
                def done(fut: asyncio.Future[Any]) -> None:
                    if not fut.cancelled() and fut.exception() is None:
                        acked.setdefault(eid, time.time())
                return done

            async def producer_task() -> float:
                nonlocal producing
                futures = []
                t0 = time.monotonic()
                sent = 0
                while sent < n:
                    due = min(n, int((time.monotonic() - t0) * rate) + 1)
                    for r in records[sent:due]:
                        fut = await ctx.producer.send(ns.input_topic(r.topic), r.value, key=r.key)
                        if r.event_id and r.event_id != skip:
                            fut.add_done_callback(on_ack(r.event_id))
                        futures.append(fut)
                    sent = due
                    await asyncio.sleep(0.01)
                await asyncio.gather(*futures)
                producing = False
                return time.monotonic() - t0

            watch = SearchableWatch(ctx.es, alias)
            await watch.check_single_shard()

            async def poll_task() -> None:
                want = {r.event_id for r in records if r.event_id and r.event_id != skip}
                deadline: float | None = None
                while True:
                    child.check()
                    if not producing:
                        if len(seen) >= len(want):
                            return
                        deadline = deadline or time.monotonic() + 60.0
                        if time.monotonic() > deadline:
                            return
                    found = await watch.poll()
                    now = time.time()
                    for eid in found:
                        if eid in want and eid not in seen:
                            seen[eid] = now
                    await asyncio.sleep(poll_s)

            sampler = ctx.sampler(f"latency-{'split' if split else 'pipeline'}", child.pid)
            window, probe_cpu, t_window = CpuWindow(ctx.probe, child.pid), time.process_time(), time.monotonic()
            counters = await asyncio.to_thread(_metrics, ns.worker_web_port)  # worker 0: correlate
            edge_counters = await asyncio.to_thread(_metrics, ns.worker_web_port + 1) if split else {}
            try:
                poller = asyncio.create_task(poll_task())
                seconds = await producer_task()
                await poller
            finally:
                ctx.profiled(sampler)
            cpu = {**window.stop(), "probe": time.process_time() - probe_cpu, "wall": time.monotonic() - t_window}
            correlate = correlate_window(counters, await asyncio.to_thread(_metrics, ns.worker_web_port))
            edge = ({k: v for k, v in correlate_window(
                edge_counters, await asyncio.to_thread(_metrics, ns.worker_web_port + 1)).items()
                if k.startswith(("loop_", "gc_"))} if split else {})
            lat = [seen[e] - acked[e] for e in seen if e in acked]
            stamps = {name: await read_stamps(ns, name) for name in (BY_COUNTY, INCIDENTS)}
            return Latency(rate, seconds, n, len(lat), len(acked) - len(lat), percentile(lat, 50),
                           percentile(lat, 99), max(lat) if lat else float("nan"), ns.es_refresh_interval,
                           stages=stage_latencies(acked, stamps[BY_COUNTY], stamps[INCIDENTS], seen),
                           deployment="split" if split else "pipeline", cpu=cpu, correlate=correlate,
                           edge=edge, slices=latency_slices(acked, seen))
        finally:
            child.stop()
    finally:
        await ctx.cleanup(ns)


async def read_stamps(ns: Settings, name: str) -> dict[str, float]:
    """event_id → Kafka timestamp (s) of the first committed record of topic `name` that carries it
    (a pingan.Event's id, or any of a pingan.Incident's ``event_ids``). The timestamp is the
    worker's, set when it sent the record (inside its transaction, before the commit)."""
    store = default_store()
    consumer = AIOKafkaConsumer(ns.topic(name), bootstrap_servers=ns.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level="read_committed",
                                **ns.aiokafka_client_options())
    await consumer.start()
    first: dict[str, float] = {}
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            for messages in batch.values():
                for m in messages:
                    try:
                        schema, rec = store.decode(m.value)
                    except Exception:  # noqa: BLE001 - ticks and actions share the by-county topic
                        continue
                    ids = [rec["event_id"]] if schema == "pingan.Event" else rec.get("event_ids") or ()
                    for eid in ids:
                        first.setdefault(eid, m.timestamp / 1000.0)
    finally:
        await consumer.stop()
    return first


def stage_latencies(acked: Mapping[str, float], by_county: Mapping[str, float], incidents: Mapping[str, float],
                    searchable: Mapping[str, float]) -> dict[str, tuple[float, float, int]]:
    """(p50, p99, events) per stage: ack → by-county record sent (normalize), → incidents.v1 record
    sent (correlate), → searchable (the checkpoint commit, the index agent, the refresh, the 100 ms
    search poll). Events missing a timestamp are left out of that stage."""
    spans = {"normalize": (acked, by_county), "correlate": (by_county, incidents),
             "commit + index + refresh": (incidents, searchable)}
    out: dict[str, tuple[float, float, int]] = {}
    for stage, (a, b) in spans.items():
        d = [b[e] - a[e] for e in acked if e in a and e in b]
        out[stage] = (percentile(d, 50), percentile(d, 99), len(d))
    return out


# ------------------------------------------------------------------------------------------
# flood


@dataclass
class Flood:
    """`bench.flood.measure_flood`: seconds per consecutive chunk as one incident grows."""

    events: int
    chunk: int
    chunk_seconds: list[float]
    ratio: float
    target: float = FLOOD_TARGET


def run_flood(events: int, chunk: int) -> Flood | str:
    """The flood row: a `Flood`, or why there is none."""
    try:
        from bench.flood import measure_flood  # written by the domain side of issue 18
    except ImportError:
        return "n/a (bench.flood missing)"
    res = measure_flood(events=events, chunk=chunk)
    return Flood(events, chunk, [float(s) for s in res.chunk_seconds], float(res.ratio))


# ------------------------------------------------------------------------------------------
# orchestration and report


@dataclass
class Options:
    """What `pingan bench throughput` was asked to do."""

    scale: float = 3.0
    rounds: int = 3
    seed: int = 1
    min_seconds: float = 15.0
    latency_seconds: float = 20.0
    #: latency probe runs (each on fresh topics and a fresh index); the row shows the run with the
    #: median p99 (the higher middle one for an even count)
    latency_runs: int = 3
    #: how often the latency probe searches for the events it waits for (each event's latency is
    #: overstated by at most this much; the searches load the node being measured)
    latency_poll_s: float = 0.1
    flood_events: int = 5000
    flood_chunk: int = 1000
    json_path: Path | None = None
    #: py-spy profiles of each timed window's processes go here (raw collapsed stacks + summary.txt)
    profile_dir: Path | None = None
    #: run only the groups (of `GROUPS`) holding one of these variants (empty: every group)
    groups: frozenset[str] = frozenset()
    keep_dir: bool = False


@dataclass
class Result:
    """Everything measured in one run."""

    options: dict[str, Any]
    machine: dict[str, Any]
    payload: dict[str, Any]
    runs: list[Measurement]
    latency: Latency | None
    flood: Flood | str | None = None
    #: p99 of every latency probe run, in run order (`latency` is the median one)
    latency_p99s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    def runs_of(self, variant: str) -> list[Measurement]:
        return [m for m in self.runs if m.variant == variant]

    def median(self, variant: str, attr: Callable[[Measurement], float]) -> float:
        values = [attr(m) for m in self.runs_of(variant)]
        return statistics.median(values) if values else 0.0

    def median_rate(self, variant: str) -> float:
        return self.median(variant, lambda m: m.rate)

    def ratio(self, r: Ratio) -> float:
        base = self.median_rate(r.base)
        return self.median_rate(r.ours) / base if base else 0.0

    def ratios(self) -> dict[str, dict[str, Any]]:
        return {r.key: {"label": r.label, "ratio": self.ratio(r), "target": r.target,
                        "met": self.ratio(r) >= r.target} for r in RATIOS} | {
            r.key: {"label": r.label, "ratio": self.ratio(r), "target": None, "met": None} for r in SCALING}

    def summary(self) -> dict[str, Any]:
        return {variant: {
            "label": LABELS[variant], "unit": UNITS[variant],
            "items_per_round": [m.items for m in self.runs_of(variant)],
            "median_seconds": self.median(variant, lambda m: m.seconds),
            "median_rate_per_s": self.median_rate(variant),
            "cpu_s_per_1k": {w: self.median(variant, lambda m, w=w: m.cpu_per_1k(w)) for w in ("python", "kafka", "es")},
            "rates_per_round": [round(m.rate, 1) for m in self.runs_of(variant)],
            "short_runs": sum(m.short for m in self.runs_of(variant)),
        } for variant in LABELS}

    def to_json(self) -> dict[str, Any]:
        flood = asdict(self.flood) if isinstance(self.flood, Flood) else self.flood
        if isinstance(self.flood, Flood):
            flood["met"] = self.flood.ratio <= self.flood.target
        return {"options": self.options, "machine": self.machine, "payload": self.payload,
                "summary": self.summary(), "ratios": self.ratios(),
                "runs": [asdict(m) | {"rate": m.rate} for m in self.runs],
                "latency": None if self.latency is None else asdict(self.latency) | {
                    "met": self.latency.p99 <= self.latency.target_s, "p99_per_run": self.latency_p99s},
                "flood": flood, "failures": self.failures, "wall_seconds": self.wall_seconds}


#: columns left out first when the terminal is narrow
NARROW_DROP = ("Kafka CPU", "ES CPU", "py CPU", "items", "target")
_COLUMNS = ("items", "s", "rate/s", "py CPU", "Kafka CPU", "ES CPU", "ratio", "target")


def _verdict(met: bool) -> str:
    return "[green]yes" if met else "[red]no"


def _variant_row(table: Table, result: Result, variant: str) -> None:
    runs = result.runs_of(variant)
    if not runs:
        table.add_row(LABELS[variant], "", "", "0", "", "", "", "", "", "[red]FAILED", style="red")
        return
    short = sum(m.short for m in runs)
    items = result.median(variant, lambda x: x.items)
    table.add_row(LABELS[variant] + (f" [yellow]({short} run(s) < min s)" if short else ""),
                  f"{items:,.0f} {UNITS[variant]}", f"{result.median(variant, lambda x: x.seconds):.1f}",
                  f"{result.median_rate(variant):,.0f}",
                  *(f"{result.median(variant, lambda x, w=w: x.cpu_per_1k(w)):.3f}" for w in ("python", "kafka", "es")),
                  "", "", "")


def _ratio_row(table: Table, result: Result, r: Ratio) -> None:
    if not (result.runs_of(r.ours) and result.runs_of(r.base)):
        table.add_row(f"→ {r.label}", "", "", "", "", "", "", "", f"≥ {r.target:.1f}", "[red]FAILED", style="red")
        return
    ratio = result.ratio(r)
    if not r.target:  # for information: no target
        table.add_row(f"→ {r.label}", "", "", f"{result.median_rate(r.ours):,.0f} / {result.median_rate(r.base):,.0f}",
                      "", "", "", f"{ratio:.2f}", "—", "")
        return
    table.add_row(f"→ {r.label}", "", "", f"{result.median_rate(r.ours):,.0f} / {result.median_rate(r.base):,.0f}",
                  "", "", "", f"{ratio:.2f}", f"≥ {r.target:.1f}", _verdict(ratio >= r.target), style="bold")


def render(result: Result, width: int | None = None) -> Table:
    """The one table: medians per variant, each ratio beside its target, then flood and latency
    (fitted to `width` when given: the CPU columns go first)."""
    m, o, p = result.machine, result.options, result.payload
    table = Table(title=f"Ping'an Bus throughput — scale {o['scale']}, {p['days']} day(s), {o['rounds']} round(s), "
                        f"medians, ≥ {o['min_seconds']:.0f} s per run; {m['cores']} cores, {m['python']}",
                  caption=f"{p['raw_records']} raw records → {p['events']} events → {p['incidents']} live incidents; "
                          f"s = median seconds; CPU = CPU s per 1,000 items (py = the measured process); "
                          f"wall {result.wall_seconds:.0f} s")
    text_column(table, "variant")
    for col in _COLUMNS:
        number_column(table, col)
    table.add_column("ok", justify="center", no_wrap=True)
    for group in GROUPS:
        if not any(result.runs_of(v) for v in group):
            continue  # not asked for (--only)
        for variant in group:
            _variant_row(table, result, variant)
        for r in (*RATIOS, *SCALING):
            if r.ours in group and r.base in group:
                _ratio_row(table, result, r)
        table.add_section()
    flood = result.flood
    if isinstance(flood, Flood):
        first, last = flood.chunk_seconds[0], flood.chunk_seconds[-1]
        table.add_row(f"flood: last ÷ first {flood.chunk:,} events of one incident growing to {flood.events:,}",
                      f"{flood.events:,} events", f"{last:.2f}", f"{first:.2f} → {last:.2f} s", "", "", "",
                      f"{flood.ratio:.2f}", f"≤ {flood.target:.1f}", _verdict(flood.ratio <= flood.target), style="bold")
    elif flood is not None:
        table.add_row(f"flood: {flood}", "", "", "", "", "", "", "", f"≤ {FLOOD_TARGET:.1f}", "")
    lat = result.latency
    if lat is None and o.get("latency_seconds"):
        table.add_row("end-to-end latency", "", "", "", "", "", "", "", "", "[red]FAILED", style="red")
    if lat is not None:
        table.add_row(f"end-to-end latency p50 (ack → searchable, refresh {lat.refresh_interval})",
                      f"{lat.measured} events", f"{lat.p50:.2f}", f"{lat.rate:,.0f}", "", "", "", "", "", "")
        runs = (f"median of {len(result.latency_p99s)} runs: "
                + ", ".join(f"{p:.2f}" for p in result.latency_p99s) + "; " if len(result.latency_p99s) > 1 else "")
        table.add_row(f"end-to-end latency p99 at half the max {lat.deployment} rate ({runs}max {lat.max:.2f} s, "
                      f"{lat.missing} not seen)", f"{lat.measured} events", f"{lat.p99:.2f}", f"{lat.rate:,.0f}",
                      "", "", "", "", f"≤ {lat.target_s:.1f} s", _verdict(lat.p99 <= lat.target_s), style="bold")
        for stage, (p50, p99, count) in lat.stages.items():
            table.add_row(f"  latency stage: {stage} (p50 / p99)", f"{count} events", f"{p50:.2f} / {p99:.2f}",
                          "", "", "", "", "", "", "")
    return table if width is None else fit_table(table, width, NARROW_DROP, fold_min=24)


async def _rounds(ctx: Context, opts: Options, failures: list[str]) -> list[Measurement]:
    runs: list[Measurement] = []
    groups = [g for g in GROUPS if not opts.groups or any(v in opts.groups for v in g)]
    for rnd in range(1, opts.rounds + 1):
        for group in groups:
            for variant in (group if rnd % 2 else group[::-1]):
                try:
                    m = await measure(ctx, variant, rnd)
                except Exception as exc:  # noqa: BLE001 - a failed variant is a result; go on
                    failures.append(f"round {rnd} {variant}: {type(exc).__name__}: {str(exc)[:2000]}")
                    ctx.log(f"[red]round {rnd} {variant} FAILED[/red]: {failures[-1]}")
                    continue
                runs.append(m)
                ctx.log(f"round {rnd} {variant:9s} {m.items} {UNITS[variant]} in {m.seconds:.1f} s = {m.rate:,.0f}/s "
                        f"(py {m.cpu['python']:.1f} s"
                        + "".join(f", {k} {v:.1f} s" for k, v in m.cpu.items() if k.startswith("python."))
                        + f", kafka {m.cpu['kafka']:.1f} s, es {m.cpu['es']:.1f} s; "
                        f"{m.check})")
    return runs


async def run_throughput(opts: Options, *, settings: Settings | None = None,
                         log: Callable[[str], None] = lambda s: None) -> Result:
    """Run every variant `opts.rounds` times (alternating order), then flood and latency."""
    started = time.perf_counter()
    base = settings or Settings.from_env()
    work = Path(tempfile.mkdtemp(prefix="pingan-bench-"))
    log(f"workdir {work}")
    ctx: Context | None = None
    es = async_client(base, timeout=60)
    gc_settings = contextlib.ExitStack()
    try:
        payload = await asyncio.to_thread(prepare, work, base, seed=opts.seed, scale=opts.scale,
                                          min_seconds=opts.min_seconds, log=log)
        log(f"payload: {payload.days} day(s), {payload.n} raw records, {payload.events} events, "
            f"{len(payload.incidents)} live incidents")
        # the worker's interpreter settings for what runs in this process (pure, B2, sink, flood);
        # the payload is frozen with the rest of this heap, so the pure run does not scan it
        gc_settings.enter_context(tuned_gc(base))
        probe = CpuProbe(Kafka(base).pid(), Elasticsearch(base).pid())
        ctx = Context(base, payload, work, payload.folder / "registry.csv", es, probe, log, opts.min_seconds,
                      seed=opts.seed, scale=opts.scale, profile_dir=opts.profile_dir)
        failures: list[str] = []
        runs = await _rounds(ctx, opts, failures)
        payload = ctx.payload  # more days may have been simulated on the way
        flood: Flood | str | None = None
        if opts.flood_events > 0:
            try:
                flood = await asyncio.to_thread(run_flood, opts.flood_events, opts.flood_chunk)
            except Exception as exc:  # noqa: BLE001
                failures.append(f"flood: {type(exc).__name__}: {str(exc)[:2000]}")
                flood = "FAILED"
            log(f"flood: {flood}")
        latency = None
        latency_p99s: list[float] = []
        # the deployment of the tax row (roles split) when it ran, else the one-process worker
        deployed = "split" if any(m.variant == "split" for m in runs) else "pipeline"
        rates = [m.rate for m in runs if m.variant == deployed]
        if opts.latency_seconds > 0 and rates:
            try:
                probes = []
                for i in range(opts.latency_runs):
                    probe_run = await run_latency(ctx, max(rates) / 2.0, opts.latency_seconds,
                                                  split=deployed == "split", poll_s=opts.latency_poll_s)
                    probes.append(probe_run)
                    log(f"latency run {i + 1}/{opts.latency_runs} @ {probe_run.rate:,.0f}/s: "
                        f"p50 {probe_run.p50:.2f} s, p99 {probe_run.p99:.2f} s; CPU s "
                        + ", ".join(f"{k} {v:.1f}" for k, v in probe_run.cpu.items()) + "; correlate worker "
                        + ", ".join(f"{k} {v:.3f}" for k, v in probe_run.correlate.items())
                        + ("; edge worker " + ", ".join(f"{k} {v:.3f}" for k, v in probe_run.edge.items())
                           if probe_run.edge else "")
                        + "; p50/p99 per " + f"{SLICE_S:.0f} s of ack time: "
                        + ", ".join(f"{t:.0f}s {p50:.2f}/{p99:.2f}" for t, _n, p50, p99 in probe_run.slices))
                latency_p99s = [p.p99 for p in probes]
                latency = median_run(probes)
            except Exception as exc:  # noqa: BLE001
                failures.append(f"latency: {type(exc).__name__}: {str(exc)[:2000]}")
                log(f"[red]latency FAILED[/red]: {failures[-1]}")
        result = Result(
            options={"scale": opts.scale, "rounds": opts.rounds, "seed": opts.seed, "min_seconds": opts.min_seconds,
                     "latency_seconds": opts.latency_seconds, "latency_runs": opts.latency_runs,
                     "flood_events": opts.flood_events,
                     "flood_chunk": opts.flood_chunk, "only": sorted(opts.groups)},
            machine={"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                     "loadavg_at_end": os.getloadavg()},
            payload={"days": payload.days, "raw_records": payload.n, "events": payload.events,
                     "incidents": len(payload.incidents), "pure_calibration": asdict(payload.calibration)},
            runs=runs, latency=latency, flood=flood, failures=failures, latency_p99s=latency_p99s)
        result.wall_seconds = time.perf_counter() - started
        return result
    finally:
        if ctx is not None and ctx.profiles and opts.profile_dir is not None:
            (opts.profile_dir / "summary.txt").write_text("\n\n".join(p.text(40) for p in ctx.profiles) + "\n",
                                                          encoding="utf-8")
        if ctx is not None:
            for ns, _groups in list(ctx.namespaces):
                try:
                    await ctx.cleanup(ns)
                except Exception as exc:  # noqa: BLE001 - best effort; report and go on
                    log(f"cleanup of {ns.topic_prefix} failed: {exc}")
            await ctx.stop_clients()
        await es.close()
        gc_settings.close()
        if not opts.keep_dir:
            shutil.rmtree(work, ignore_errors=True)


def run_and_print(opts: Options, console: Console | None = None) -> Result:
    """Run the benchmark, print the table, write the JSON if asked."""
    console = console or Console()
    err = Console(stderr=True, style="dim")
    result = asyncio.run(run_throughput(opts, log=err.print))
    console.print(render(result, console.width))
    for failure in result.failures:
        err.print(f"[red]{failure}")
    if opts.json_path is not None:
        opts.json_path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str),
                                  encoding="utf-8")
    return result
