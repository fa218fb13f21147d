"""The pipeline under test, against what it must produce: the expected incidents of a simulated
day (the pure pipeline offline, `bench.quality.run_folder`), publishing, worker subprocesses, and
"does the index hold exactly the expected incidents" with diagnostics when it does not.

Every fault test runs in its own namespace and compares the final index with `offline_incidents`
for the same day: equal sets of incidents with equal event sets means nothing was lost and
nothing was duplicated."""
from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from bench.quality import run_folder
from connectors.ingest.files import Delivery
from connectors.ingest.publish import PublishReport, publish_deliveries
from infra.processes import WorkerProcess, http_json
from streams.ops.replay import end_offsets, group_offsets
from streams.settings import Settings


def offline_incidents(folder: Path, secret: bytes) -> dict[str, frozenset[str]]:
    """id → event ids of the live incidents of the pure pipeline (bench.quality.run_folder)."""
    run = run_folder(folder, secret=secret)
    return {iid: frozenset(inc["event_ids"]) for proc in run.processors.values()
            for iid, inc in proc.state.live().items()}


def chunks(items: list[Any], n: int) -> list[list[Any]]:
    """`items` in n nearly equal consecutive chunks."""
    size = -(-len(items) // n)
    return [items[i:i + size] for i in range(0, len(items), size)]


def publish(settings: Settings, deliveries: Iterable[Delivery]) -> PublishReport:
    """Publish translated deliveries into the settings' raw topics."""
    return publish_deliveries(settings, deliveries)


def indexed_incidents(es_url: str, alias: str) -> dict[str, frozenset[str]] | None:
    """id → event ids of every document in the alias (None when Elasticsearch does not answer)."""
    es = Elasticsearch(es_url, request_timeout=10)
    try:
        es.indices.refresh(index=alias)
        resp = es.search(index=alias, size=10000, _source=["event_ids"], query={"match_all": {}},
                         track_total_hits=True)
        hits = resp["hits"]["hits"]
        assert resp["hits"]["total"]["value"] == len(hits)
        return {h["_id"]: frozenset(h["_source"]["event_ids"]) for h in hits}
    except AssertionError:
        raise
    except Exception:  # noqa: BLE001 - not reachable / alias missing: "nothing yet"
        return None
    finally:
        es.close()


def diff(got: dict[str, frozenset[str]] | None, expected: dict[str, frozenset[str]]) -> str:
    got = got or {}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted(i for i in set(got) & set(expected) if got[i] != expected[i])
    lost_events = set().union(*expected.values()) - set().union(*got.values()) if got else set()
    return (f"{len(got)} indexed vs {len(expected)} expected; missing {len(missing)} {missing[:5]}, "
            f"extra {len(extra)} {extra[:5]}, differing {len(changed)} "
            f"{[(i, sorted(expected[i] ^ got[i])[:4]) for i in changed[:3]]}, events lost {len(lost_events)}")


def wait_for_index(settings: Settings, expected: dict[str, frozenset[str]], workers: list[WorkerProcess],
                   timeout_s: float = 240.0, settle_s: float = 4.0, stall_s: float = 75.0) -> dict[str, frozenset[str]]:
    """Wait until the index equals `expected`, then check it stays so for `settle_s` (no late writes).

    Fails early when the index has not changed for `stall_s` (longer than a consumer-group session
    timeout, so a rebalance after a kill is not mistaken for a stall)."""
    alias = f"{settings.es_index_prefix}-incidents"
    deadline = time.monotonic() + timeout_s
    got = None
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        got = indexed_incidents(settings.es_url, alias)
        if got != last:
            last, since = got, time.monotonic()
        elif got and time.monotonic() - since > stall_s:
            break  # nothing changed for stall_s: the pipeline is idle, waiting longer will not help
        if got == expected:
            time.sleep(settle_s)
            got = indexed_incidents(settings.es_url, alias)
            assert got == expected, f"index changed after it matched: {diff(got, expected)}"
            return got
        for w in workers:
            if w.proc is not None and w.proc.poll() is not None:
                raise AssertionError(f"worker {w.worker_id} exited ({w.proc.returncode}):\n{w.log_tail(60)}")
        time.sleep(2)
    raise AssertionError(f"index never matched the offline incidents: {diff(got, expected)}\n"
                         f"{lag_report(settings)}\n{stacks(settings, workers)}")


def stacks(settings: Settings, workers: Iterable[WorkerProcess], limit: int = 20_000) -> str:
    """Each live worker's metrics, log tail and the stack of every thread and asyncio task (mode's
    Worker answers SIGUSR1 with them, in its log): what a stalled worker was waiting on."""
    workers = list(workers)
    sizes = {}
    for w in workers:
        if w.proc is not None and w.proc.poll() is None:
            sizes[w.worker_id] = w.log_path.stat().st_size if w.log_path.exists() else 0
            w.proc.send_signal(signal.SIGUSR1)
    time.sleep(1.5)
    out = []
    for w in workers:
        fetch = http_json(f"http://127.0.0.1:{settings.worker_web_port + w.worker_id}/pingan/debug/fetch")
        out.append(f"--- worker {w.worker_id}: {worker_metrics(settings, w.worker_id)} (log: {w.log_path})\n"
                   f"fetch state: {json.dumps(fetch, sort_keys=True)}\n{w.log_tail(40)}")
        if w.worker_id in sizes:
            with open(w.log_path, "rb") as f:
                f.seek(sizes[w.worker_id])
                out.append(f"--- worker {w.worker_id} stacks (SIGUSR1):\n"
                           f"{f.read(limit).decode(errors='replace')}")
    return "\n".join(out)


def lag_report(settings: Settings) -> str:
    """The worker group's committed offset against the log end, for every partition that lags."""
    try:
        committed = group_offsets(settings, settings.app_id)
        ends = end_offsets(settings, sorted({topic for topic, _ in committed}))
    except Exception as exc:  # noqa: BLE001 - a diagnostic only
        return f"lag report unavailable: {exc!r}"
    lagging = sorted(f"{topic}[{part}] committed {off} end {ends.get((topic, part))}"
                     for (topic, part), off in committed.items() if off != ends.get((topic, part)))
    return f"group {settings.app_id}: {len(committed)} partitions committed; lagging: {lagging or 'none'}"


def worker_metrics(settings: Settings, worker_id: int = 0) -> dict[str, int] | None:
    """The worker's /pingan/metrics JSON (None while it does not serve)."""
    return http_json(f"http://127.0.0.1:{settings.worker_web_port + worker_id}/pingan/metrics")


class Workers(list):
    """Worker subprocesses of one test; all stopped at teardown."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir

    def start(self, settings: Settings, worker_id: int = 0, role: str | None = None) -> WorkerProcess:
        w = WorkerProcess(settings, worker_id, self.log_dir, role).start()
        self.append(w)
        return w




def worker_log(w: WorkerProcess) -> str:
    """The worker's whole log."""
    try:
        return w.log_path.read_text(errors="replace")
    except OSError:
        return ""
