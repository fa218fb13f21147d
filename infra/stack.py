"""The local stack: one Apache Kafka broker (KRaft, combined mode) and one Elasticsearch node.

Both run as plain `java -cp` processes from artifacts that Maven resolves from Maven Central
(versions pinned once, in ``infra/maven/pom.xml``), bound to 127.0.0.1, with bounded heaps, and
with everything they write under ``settings.run_dir``::

    .run/
      classpath/{kafka,elasticsearch}.txt   resolved classpaths (keyed by the POM's hash)
      kafka/{config,data,logs}/  kafka.pid
      elasticsearch/node_1/{config,data,logs}/  elasticsearch.pid

`Stack.up()` is idempotent (a running engine of ours is left alone), waits for readiness and
reports how long it took; `Stack.down()` stops both and leaves no Java process of ours behind.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from streams.settings import Settings

MAVEN_DIR = Path(__file__).resolve().parent / "maven"
ENGINES = ("kafka", "elasticsearch")


class StackError(RuntimeError):
    """A stack operation failed for a reason the operator can act on (message says which)."""


@dataclass(frozen=True)
class EngineStatus:
    """What `status` reports for one engine."""

    name: str
    pid: int | None
    running: bool
    ready: bool
    ports: tuple[int, ...]
    rss_mb: float | None
    detail: str


# --------------------------------------------------------------------------------------------
# prerequisites and classpaths
# --------------------------------------------------------------------------------------------

def kafka_cluster_id() -> str:
    """A random KRaft cluster id: URL-safe base64 of a UUID, never starting with "-".

    Kafka's own `Uuid.randomUuid()` redraws such ids too: the storage tool's argument parser
    would read "-…" as an option ("argument --cluster-id/-t: expected one argument")."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def java_binary() -> str:
    """Path of a Java ≥ 17 (``JAVA_HOME`` first, then ``PATH``), or a StackError saying what is missing."""
    home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(home) / "bin" / "java")] if home else []
    found = shutil.which("java")
    if found:
        candidates.append(found)
    for java in candidates:
        if not Path(java).exists():
            continue
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
        m = re.search(r'version "(\d+)', out)
        if m and int(m.group(1)) >= 17:
            return java
        raise StackError(f"Java 17 or newer is required; {java} reports: {out.splitlines()[0] if out else '?'}")
    raise StackError("Java is not installed: install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`) "
                     "or set JAVA_HOME")


def maven_binary() -> str:
    """Path of `mvn`, or a StackError telling how to get it."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("Maven is not installed: install it (e.g. `apt-get install maven`); it resolves the pinned "
                         "Kafka and Elasticsearch artifacts from Maven Central")
    return mvn


def _pom_digest() -> str:
    h = hashlib.sha256()
    for pom in sorted(MAVEN_DIR.rglob("pom.xml")):
        h.update(pom.read_bytes())
    return h.hexdigest()[:16]


def classpath(settings: Settings, engine: str) -> str:
    """The resolved classpath of an engine, resolving with Maven on first use (cached by POM hash)."""
    cache = settings.run_dir / "classpath"
    digest = _pom_digest()
    target = cache / f"{engine}-{digest}.txt"
    if target.exists():
        return target.read_text().strip()
    cache.mkdir(parents=True, exist_ok=True)
    mvn = maven_binary()
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(MAVEN_DIR / "pom.xml"), "dependency:build-classpath",
         "-Dmdep.outputFile=classpath.txt"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"Maven could not resolve the engines (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
                         f"{proc.stderr[-2000:]}")
    for name in ENGINES:
        text = (MAVEN_DIR / name / "classpath.txt").read_text().strip()
        (cache / f"{name}-{digest}.txt").write_text(text)
    return target.read_text().strip()


def engine_versions() -> dict[str, str]:
    """The pinned versions, read from the parent POM (the one place they are set)."""
    text = (MAVEN_DIR / "pom.xml").read_text()
    out: dict[str, str] = {}
    for key in ("kafka.version", "es.runner.version", "log4j.version"):
        m = re.search(rf"<{re.escape(key)}>([^<]+)</{re.escape(key)}>", text)
        if m:
            out[key] = m.group(1)
    return out


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------

def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _our_java_pids(run_dir: Path) -> list[int]:
    """Java processes whose command line points into our run directory (ours, whatever the pid files say)."""
    marker = str(run_dir.resolve())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "java" in cmd and marker in cmd and int(proc.name) != os.getpid():
            pids.append(int(proc.name))
    return pids


# --------------------------------------------------------------------------------------------
# engines
# --------------------------------------------------------------------------------------------

class _Engine:
    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.run_dir / self.name
        self.pid_file = self.home / f"{self.name}.pid"
        self.log_file = self.home / "logs" / f"{self.name}.out"

    # --- to override
    def ports(self) -> tuple[int, ...]:
        raise NotImplementedError

    def prepare(self) -> None:
        raise NotImplementedError

    def command(self, java: str, cp: str) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    # --- shared
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def start(self, java: str) -> None:
        """Start the engine unless it already runs; fail clearly when a port is taken by someone else."""
        if self.pid() is not None:
            return
        taken = [p for p in self.ports() if port_open(p)]
        if taken:
            raise StackError(f"{self.name}: port {', '.join(map(str, taken))} on 127.0.0.1 is taken by another "
                             f"process; stop it or set PINGAN_* ports (see README)")
        cp = classpath(self.settings, self.name)
        self.prepare()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(self.command(java, cp), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.home, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(f"{self.name} exited during start-up; see {self.log_file}:\n{self._tail()}")
            if self.ready():
                return
            time.sleep(0.5)
        raise StackError(f"{self.name} not ready after {timeout_s:.0f}s; see {self.log_file}:\n{self._tail()}")

    def _tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the process group, then SIGKILL after timeout; remove the pid file."""
        pid = self.pid()
        if pid is not None:
            _terminate(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the engine at once (fault tests)."""
        pid = self.pid()
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(pid, 10)

    def status(self) -> EngineStatus:
        pid = self.pid()
        running = pid is not None
        ready = running and self.ready()
        return EngineStatus(self.name, pid, running, ready, self.ports(), _rss_mb(pid) if pid else None,
                            "ready" if ready else ("starting or unhealthy" if running else "stopped"))


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.2)
    return not _pid_alive(pid)


def _terminate(pid: int, timeout_s: float) -> None:
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        if _wait_gone(pid, wait):
            return


class Kafka(_Engine):
    """Apache Kafka in KRaft combined mode (broker + controller, node id 1)."""

    name = "kafka"

    def ports(self) -> tuple[int, ...]:
        return (self.settings.kafka_port, self.settings.kafka_controller_port)

    def server_properties(self) -> dict[str, str]:
        """The broker's server.properties (a cluster node overrides the node id, quorum and replication)."""
        s = self.settings
        data = self.home / "data"
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.check.interval.ms": "60000",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }

    def storage_cluster_id(self) -> str:
        """The cluster id the storage is formatted with (a new one; a cluster node shares its cluster's)."""
        return kafka_cluster_id()

    def prepare(self) -> None:
        s = self.settings
        cfg = self.home / "config"
        data = self.home / "data"
        cfg.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        props = self.server_properties()
        (cfg / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (cfg / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.file.type = RollingFile\nappender.file.name = FILE\n"
            f"appender.file.fileName = {self.home / 'logs' / 'server.log'}\n"
            f"appender.file.filePattern = {self.home / 'logs' / 'server.log.%i'}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "appender.file.policies.type = Policies\n"
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy\n"
            "appender.file.policies.size.size = 20MB\n"
            "appender.file.strategy.type = DefaultRolloverStrategy\nappender.file.strategy.max = 3\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.file.ref = FILE\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = INFO\n"
            "logger.state.name = state.change.logger\nlogger.state.level = WARN\n"
        )
        if not (data / "meta.properties").exists():
            cluster_id = self.storage_cluster_id()
            java = java_binary()
            cp = classpath(s, self.name)
            proc = subprocess.run(
                [java, "-cp", cp, f"-Dlog4j2.configurationFile={cfg / 'log4j2.properties'}",
                 "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(cfg / "server.properties"),
                 "--ignore-formatted"],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise StackError(f"{self.name} storage format failed: {proc.stdout}{proc.stderr}")

    def command(self, java: str, cp: str) -> list[str]:
        h = self.settings.kafka_heap
        return [java, f"-Xms{h}", f"-Xmx{h}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.home / 'logs'}",
                f"-Dlog4j2.configurationFile={self.home / 'config' / 'log4j2.properties'}",
                "-cp", cp, "kafka.Kafka", str(self.home / "config" / "server.properties")]

    def ready(self) -> bool:
        """Metadata answers: the broker lists itself and its topics."""
        if not port_open(self.settings.kafka_port):
            return False
        try:
            from kafka import KafkaAdminClient  # local import: only the ready check needs a client

            admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{self.settings.kafka_port}",
                                     request_timeout_ms=3000)
            try:
                admin.list_topics()
                return bool(admin.describe_cluster().get("brokers"))
            finally:
                admin.close()
        except Exception:  # noqa: BLE001 - readiness probe: any failure means "not ready yet"
            return False


class Elasticsearch(_Engine):
    """Elasticsearch 7.10.2 embedded by org.codelibs elasticsearch-cluster-runner (one node)."""

    name = "elasticsearch"

    def ports(self) -> tuple[int, ...]:
        return (self.settings.es_http_port, self.settings.es_transport_port)

    def prepare(self) -> None:
        s = self.settings
        if not 9201 <= s.es_http_port <= 9299:
            raise StackError("the embedded Elasticsearch runner only accepts HTTP ports 9201-9299 "
                             f"(PINGAN_ES_HTTP_PORT={s.es_http_port})")
        cfg = self.home / "node_1" / "config"
        cfg.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        # The runner keeps an existing elasticsearch.yml; it sets http.port itself (= base + 1).
        (cfg / "elasticsearch.yml").write_text(
            "network.host: 127.0.0.1\n"
            f"transport.port: {s.es_transport_port}\n"
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
            "action.auto_create_index: true\n"
            "indices.memory.index_buffer_size: 20%\n"
            "thread_pool.write.queue_size: 1000\n"
        )

    def command(self, java: str, cp: str) -> list[str]:
        h = self.settings.es_heap
        tmp = self.home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return [java, f"-Xms{h}", f"-Xmx{h}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                "-Des.distribution.flavor=default", "-Des.distribution.type=tar",
                "-Dlog4j2.formatMsgNoLookups=true", "-Dio.netty.noUnsafe=true",
                "-Dio.netty.recycler.maxCapacityPerThread=0", f"-Djava.io.tmpdir={tmp}",
                f"-Djna.tmpdir={tmp}", "-Dfile.encoding=UTF-8",
                "-cp", cp, "org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner",
                "-basePath", str(self.home), "-numOfNode", "1",
                "-baseHttpPort", str(s_port_base(self.settings)), "-clusterName", "pingan",
                "-indexStoreType", "niofs"]

    def ready(self) -> bool:
        """Cluster health is at least yellow."""
        url = f"http://127.0.0.1:{self.settings.es_http_port}/_cluster/health?wait_for_status=yellow&timeout=1s"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - loopback only
                return json.load(resp).get("status") in ("yellow", "green")
        except (urllib.error.URLError, OSError, ValueError):
            return False


def s_port_base(settings: Settings) -> int:
    """The runner's ``-baseHttpPort``: node 1 listens on base + 1."""
    return settings.es_http_port - 1


# --------------------------------------------------------------------------------------------
# the stack
# --------------------------------------------------------------------------------------------

class Stack:
    """The managed local engines for one settings object."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kafka = Kafka(settings)
        self.elasticsearch = Elasticsearch(settings)

    def engines(self) -> list[_Engine]:
        out: list[_Engine] = []
        if self.settings.kafka_manage:
            out.append(self.kafka)
        if self.settings.es_manage:
            out.append(self.elasticsearch)
        return out

    def up(self, timeout_s: float = 180.0) -> float:
        """Start (if needed) and wait for readiness of every managed engine; return seconds taken."""
        t0 = time.monotonic()
        java = java_binary()
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        for engine in self.engines():
            engine.start(java)
        for engine in self.engines():
            engine.wait_ready(timeout_s)
        return time.monotonic() - t0

    def down(self) -> None:
        """Stop every engine of ours, including strays whose pid file was lost."""
        for engine in (self.elasticsearch, self.kafka):
            engine.stop()
        if self.settings.run_dir.exists():
            for pid in _our_java_pids(self.settings.run_dir):
                _terminate(pid, 15)

    def status(self) -> list[EngineStatus]:
        return [e.status() for e in (self.kafka, self.elasticsearch)]
