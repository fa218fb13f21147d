"""Private engines for destructive tests, and free ports: a broker, an Elasticsearch node or a
multi-node KRaft cluster of the test's own, under its tmp dir (the Maven classpath is copied
from the shared run dir, so no re-resolution). The engines themselves are `infra.stack`'s."""
from __future__ import annotations

import random
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient

from infra.processes import isolated_settings, wait_for
from infra.stack import Elasticsearch as EsEngine
from infra.stack import Kafka as KafkaEngine
from infra.stack import _pom_digest, java_binary, kafka_cluster_id, port_open
from streams.settings import Settings
from tests.harness.leaks import track

__all__ = ["EsEngine", "KafkaEngine", "KafkaCluster", "KafkaNode", "fault_settings", "free_ports",
           "private_es_settings", "private_kafka_settings", "private_run_dir", "start_engine"]


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
    """Isolated settings for one fault test: own namespace, own worker run dir, free worker web ports.

    The namespace is tracked (`tests.harness.leaks.track`): faults/conftest.py deletes it from the
    shared engines after the test."""
    web = free_ports(4, 16100, 16900, consecutive=True)[0]
    return track(isolated_settings(base, registry=sim_day / "registry.csv", run_dir=run_dir, worker_web_port=web,
                                   **extra))


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
    """Start a private engine and wait until it is ready; returns the seconds it took."""
    t0 = time.monotonic()
    engine.start(java_binary())
    engine.wait_ready(timeout_s)
    return time.monotonic() - t0


class KafkaNode(KafkaEngine):
    """One node (broker + controller) of a multi-node KRaft cluster on loopback.

    Home is ``run_dir/kafka-<id>``; the quorum lists every node's controller port; storage is
    formatted with the cluster's shared id; replication defaults are the cluster's. Everything else
    (configuration files, storage format, start, readiness) is `infra.stack.Kafka`'s.
    """

    def __init__(self, settings: Settings, node_id: int, voters: str, cluster_id: str, rf: int, min_isr: int) -> None:
        self.name = f"kafka-{node_id}"
        super().__init__(settings)
        self.node_id, self.voters, self.cluster_id, self.rf, self.min_isr = node_id, voters, cluster_id, rf, min_isr
        cache, digest = settings.run_dir / "classpath", _pom_digest()  # the classpath is keyed by engine name
        src, dst = cache / f"kafka-{digest}.txt", cache / f"{self.name}-{digest}.txt"
        if src.exists() and not dst.exists():
            shutil.copyfile(src, dst)

    def server_properties(self) -> dict[str, str]:
        return {**super().server_properties(),
                "node.id": str(self.node_id),
                "controller.quorum.voters": self.voters,
                "default.replication.factor": str(self.rf),
                "min.insync.replicas": str(self.min_isr),
                "offsets.topic.replication.factor": str(self.rf),
                "transaction.state.log.replication.factor": str(self.rf),
                "transaction.state.log.min.isr": str(self.min_isr),
                "share.coordinator.state.topic.replication.factor": str(self.rf),
                "share.coordinator.state.topic.min.isr": str(self.min_isr),
                "unclean.leader.election.enable": "false",
                "log.segment.bytes": str(16 * 1024 * 1024)}

    def storage_cluster_id(self) -> str:
        return self.cluster_id

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


