"""Fault-injection harness: private engines, worker subprocesses and "did the index come out right".

Every fault test runs in its own namespace (topic prefix, index prefix, app id, run dir for the
workers' RocksDB stores) and compares the final index with what the pure pipeline computes offline
for the same simulated day (`offline_incidents`): equal sets of incidents with equal event sets
means nothing was lost and nothing was duplicated.

Destructive tests never touch the shared engines: `private_kafka`, `private_es` and
`KafkaCluster` start their own Java processes under the test's tmp dir (the Maven classpath is
copied from the shared run dir, so no re-resolution), and stop them at teardown, whatever happened.
"""
from __future__ import annotations

import json
import signal
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.ingest.files import Delivery, iter_deliveries
from connectors.ingest.publish import PublishReport, publish_deliveries
from infra.stack import Elasticsearch as EsEngine
from infra.stack import Kafka as KafkaEngine
from infra.stack import StackError, _pom_digest, classpath, java_binary, kafka_cluster_id, port_open
from streams.settings import Settings
from tests.e2e.conftest import WorkerProcess, isolated_settings, settings_env, wait_for  # noqa: F401 - re-exported

SEED = 2  # a smaller day than the e2e test's (≈1,100 deliveries)


# --------------------------------------------------------------------------------------------
# ports and run dirs
# --------------------------------------------------------------------------------------------

def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not port_open(port)


def free_ports(n: int, lo: int = 21000, hi: int = 29000, *, consecutive: bool = False) -> list[int]:
    """n ports on 127.0.0.1 that nothing listens on (random start to avoid clashing with parallel runs)."""
    import random

    start = random.randrange(lo, hi)
    out: list[int] = []
    for i in range(hi - lo):
        p = lo + (start - lo + i) % (hi - lo)
        if consecutive:
            if all(_bindable(p + k) for k in range(n)):
                return list(range(p, p + n))
            continue
        if _bindable(p):
            out.append(p)
            if len(out) == n:
                return out
    raise RuntimeError(f"no {n} free ports in {lo}-{hi}")


def private_run_dir(base: Settings, path: Path) -> Path:
    """A run dir for private engines, with the shared run dir's resolved classpaths (no Maven run)."""
    path.mkdir(parents=True, exist_ok=True)
    src = base.run_dir / "classpath"
    if src.is_dir():
        shutil.copytree(src, path / "classpath", dirs_exist_ok=True)
    return path


def fault_settings(base: Settings, sim_day: Path, run_dir: Path, **extra: object) -> Settings:
    """Isolated settings for one fault test: own namespace, own worker run dir, free worker web ports."""
    web = free_ports(4, 16100, 16900, consecutive=True)[0]
    return isolated_settings(base, registry=sim_day / "registry.csv", run_dir=run_dir, worker_web_port=web, **extra)


# --------------------------------------------------------------------------------------------
# private engines
# --------------------------------------------------------------------------------------------

def private_kafka_settings(base: Settings, run_dir: Path, **extra: object) -> Settings:
    kport, cport = free_ports(2)
    return Settings(**{**base.model_dump(), "run_dir": run_dir, "kafka_port": kport, "kafka_controller_port": cport,
                       "kafka_bootstrap": f"127.0.0.1:{kport}", "kafka_heap": "256m", **extra})


def private_es_settings(base: Settings, run_dir: Path, **extra: object) -> Settings:
    http = free_ports(1, 9270, 9299)[0]
    transport = free_ports(1, 9370, 9399)[0]
    return Settings(**{**base.model_dump(), "run_dir": run_dir, "es_http_port": http, "es_transport_port": transport,
                       "es_url": f"http://127.0.0.1:{http}", "es_heap": "384m", **extra})


def start_engine(engine: Any, timeout_s: float = 120.0) -> float:
    t0 = time.monotonic()
    engine.start(java_binary())
    engine.wait_ready(timeout_s)
    return time.monotonic() - t0


@pytest.fixture()
def private_kafka(settings: Settings, tmp_path: Path) -> Iterator[KafkaEngine]:
    """A single-node KRaft broker of our own (256 MB heap), stopped at teardown."""
    s = private_kafka_settings(settings, private_run_dir(settings, tmp_path / "pk"))
    engine = KafkaEngine(s)
    try:
        start_engine(engine)
        yield engine
    finally:
        engine.kill()
        engine.stop()


@pytest.fixture()
def private_es(settings: Settings, tmp_path: Path) -> Iterator[EsEngine]:
    """An Elasticsearch 7.10.2 node of our own (384 MB heap), stopped at teardown."""
    s = private_es_settings(settings, private_run_dir(settings, tmp_path / "pes"))
    engine = EsEngine(s)
    try:
        start_engine(engine, 180)
        yield engine
    finally:
        engine.kill()
        engine.stop()


class KafkaNode(KafkaEngine):
    """One node (broker + controller) of a multi-node KRaft cluster on loopback.

    Home is ``run_dir/kafka-<id>``; the quorum lists every node's controller port; storage is
    formatted with the cluster's shared id; replication defaults are the cluster's.
    """

    def __init__(self, settings: Settings, node_id: int, voters: str, cluster_id: str, rf: int, min_isr: int) -> None:
        self.name = f"kafka-{node_id}"
        super().__init__(settings)
        self.node_id, self.voters, self.cluster_id, self.rf, self.min_isr = node_id, voters, cluster_id, rf, min_isr
        cache, digest = settings.run_dir / "classpath", _pom_digest()  # the classpath is keyed by engine name
        src, dst = cache / f"kafka-{digest}.txt", cache / f"{self.name}-{digest}.txt"
        if src.exists() and not dst.exists():
            shutil.copyfile(src, dst)

    def prepare(self) -> None:
        s = self.settings
        cfg, data, logs = self.home / "config", self.home / "data", self.home / "logs"
        for d in (cfg, data, logs):
            d.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "3",
            "default.replication.factor": str(self.rf),
            "min.insync.replicas": str(self.min_isr),
            "offsets.topic.replication.factor": str(self.rf),
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": str(self.rf),
            "transaction.state.log.min.isr": str(self.min_isr),
            "share.coordinator.state.topic.replication.factor": str(self.rf),
            "share.coordinator.state.topic.min.isr": str(self.min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "unclean.leader.election.enable": "false",
            "log.segment.bytes": str(16 * 1024 * 1024),
        }
        (cfg / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (cfg / "log4j2.properties").write_text(
            "status = warn\nappender.file.type = File\nappender.file.name = FILE\n"
            f"appender.file.fileName = {logs / 'server.log'}\n"
            "appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.file.ref = FILE\n"
            "logger.state.name = state.change.logger\nlogger.state.level = WARN\n")
        if not (data / "meta.properties").exists():
            proc = subprocess.run(
                [java_binary(), "-cp", classpath(s, "kafka"), f"-Dlog4j2.configurationFile={cfg / 'log4j2.properties'}",
                 "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(cfg / "server.properties"),
                 "--ignore-formatted"], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise StackError(f"{self.name}: storage format failed: {proc.stdout}{proc.stderr}")

    def ready(self) -> bool:
        return port_open(self.settings.kafka_port)


class KafkaCluster:
    """n KRaft nodes (combined broker+controller), static quorum, one cluster id, replication rf."""

    def __init__(self, base: Settings, run_dir: Path, n: int = 3, rf: int = 3, min_isr: int = 2,
                 heap: str = "256m") -> None:
        ports = free_ports(2 * n)
        self.cluster_id = kafka_cluster_id()
        voters = ",".join(f"{i + 1}@127.0.0.1:{ports[2 * i + 1]}" for i in range(n))
        self.nodes: list[KafkaNode] = []
        for i in range(n):
            s = Settings(**{**base.model_dump(), "run_dir": run_dir, "kafka_port": ports[2 * i],
                            "kafka_controller_port": ports[2 * i + 1], "kafka_heap": heap})
            self.nodes.append(KafkaNode(s, i + 1, voters, self.cluster_id, rf, min_isr))
        self.bootstrap = ",".join(f"127.0.0.1:{node.settings.kafka_port}" for node in self.nodes)

    def start(self, timeout_s: float = 180.0) -> float:
        t0 = time.monotonic()
        java = java_binary()
        for node in self.nodes:
            node.prepare()  # format all before any starts (the quorum needs every voter formatted)
        for node in self.nodes:
            node.start(java)
        for node in self.nodes:
            node.wait_ready(timeout_s)
        wait_for(lambda: self.brokers() == len(self.nodes), timeout_s, 1.0, "every broker registered")
        return time.monotonic() - t0

    def brokers(self) -> int:
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        except Exception:  # noqa: BLE001 - not up yet
            return 0
        try:
            return len(admin.describe_cluster().get("brokers") or [])
        except Exception:  # noqa: BLE001
            return 0
        finally:
            admin.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
            node.stop()


# --------------------------------------------------------------------------------------------
# the simulated day, the expected incidents, the index
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sim_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated county day (seed 2) in native formats with truth.json."""
    out = tmp_path_factory.mktemp("fault-day")
    subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--out", str(out), "--days", "1",
                    "--seed", str(SEED), "--quiet"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def day_deliveries(sim_day: Path) -> list[Delivery]:
    """The day's translated deliveries, in delivery order (publish them in chunks)."""
    return list(iter_deliveries(sim_day))


@pytest.fixture(scope="session")
def expected_incidents(sim_day: Path, settings: Settings) -> dict[str, frozenset[str]]:
    """Live incidents (id → event ids) of the pure pipeline over the day."""
    return offline_incidents(sim_day, settings.person_key_secret.encode())


def offline_incidents(folder: Path, secret: bytes) -> dict[str, frozenset[str]]:
    """id → event ids of the live incidents of the pure pipeline (bench.quality.run_folder)."""
    from bench.quality import run_folder

    run = run_folder(folder, secret=secret)
    return {iid: frozenset(inc["event_ids"]) for proc in run.processors.values()
            for iid, inc in proc.state.live().items()}


def chunks(items: list[Any], n: int) -> list[list[Any]]:
    size = -(-len(items) // n)
    return [items[i:i + size] for i in range(0, len(items), size)]


def publish(settings: Settings, deliveries: Iterable[Delivery]) -> PublishReport:
    return publish_deliveries(settings, deliveries)


def indexed_incidents(es_url: str, alias: str) -> dict[str, frozenset[str]] | None:
    """id → event ids of every document in the alias (None when Elasticsearch does not answer)."""
    from elasticsearch import Elasticsearch

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
    for w in workers:  # mode's Worker answers SIGUSR1 with every thread's and task's stack, in its log
        if w.proc is not None and w.proc.poll() is None:
            w.proc.send_signal(signal.SIGUSR1)
    time.sleep(1.0)
    tails = "\n".join(f"--- worker {w.worker_id}: {worker_metrics(settings, w.worker_id)} (log: {w.log_path})\n"
                      f"{w.log_tail(40)}" for w in workers)
    raise AssertionError(f"index never matched the offline incidents: {diff(got, expected)}\n"
                         f"{lag_report(settings)}\n{tails}")


def lag_report(settings: Settings) -> str:
    """The worker group's committed offset against the log end, for every partition that lags."""
    from streams.ops.replay import end_offsets, group_offsets

    try:
        committed = group_offsets(settings, settings.app_id)
        ends = end_offsets(settings, sorted({topic for topic, _ in committed}))
    except Exception as exc:  # noqa: BLE001 - a diagnostic only
        return f"lag report unavailable: {exc!r}"
    lagging = sorted(f"{topic}[{part}] committed {off} end {ends.get((topic, part))}"
                     for (topic, part), off in committed.items() if off != ends.get((topic, part)))
    return f"group {settings.app_id}: {len(committed)} partitions committed; lagging: {lagging or 'none'}"


def worker_metrics(settings: Settings, worker_id: int = 0) -> dict[str, int] | None:
    url = f"http://127.0.0.1:{settings.worker_web_port + worker_id}/pingan/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
            return json.load(resp)
    except Exception:  # noqa: BLE001 - not serving (yet)
        return None


def read_topic(bootstrap: str, topic: str, idle_s: float = 5.0) -> list[Any]:
    """Every message of a topic from the beginning (stops after idle_s without new messages)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=int(idle_s * 1000))
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return list(consumer)
    finally:
        consumer.close()


class Workers(list):
    """Worker subprocesses of one test; all stopped at teardown."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir

    def start(self, settings: Settings, worker_id: int = 0) -> WorkerProcess:
        w = WorkerProcess(settings, worker_id, self.log_dir).start()
        self.append(w)
        return w


@pytest.fixture()
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    for w in started:
        w.stop()


def worker_log(w: WorkerProcess) -> str:
    try:
        return w.log_path.read_text(errors="replace")
    except OSError:
        return ""
