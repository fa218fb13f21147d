"""Starting our own processes with given settings: the environment that carries a Settings
object to a child, an isolated namespace for tests and benchmarks, free ports, `pingan simulate`,
and `pingan worker run` / `pingan connectors run` subprocesses. Used by the demo, the benchmarks
and the end-to-end tests."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from streams.settings import Settings

_ROOT = Path(__file__).resolve().parent.parent


def isolated_settings(base: Settings, registry: Path | None = None, *, topic_tag: str = "t",
                      name: str = "pingan-test", **extra: object) -> Settings:
    """Settings whose topics, indices and consumer group no other test (or benchmark) shares:
    topic prefix ``<topic_tag><random>.``, index prefix and app id ``<name>-<random>``."""
    tag = uuid.uuid4().hex[:8]
    return Settings(**{**base.model_dump(), "topic_prefix": f"{topic_tag}{tag}.", "es_index_prefix": f"{name}-{tag}",
                       "app_id": f"{name}-{tag}", "registry_path": registry, "worker_web_port": 16066,
                       "deadline_check_s": 3600.0, **extra})


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that was free a moment ago (TCP by default, UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int, attempts: int = 100) -> int:
    """The first of `count` consecutive TCP ports on 127.0.0.1 that were all free a moment ago
    (workers of one host take ``worker_web_port + worker_id``)."""
    for _ in range(attempts):
        first = free_port()
        socks: list[socket.socket] = []
        try:
            for port in range(first + 1, first + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise OSError(f"no {count} consecutive free ports on 127.0.0.1 after {attempts} attempts")


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess see these settings."""
    return {**os.environ, **settings.as_env()}


class ChildProcess:
    """A subprocess in its own session (process group) writing to a log file.

    The one way the demo, the benchmarks and the tests start and stop our own processes:
    `stop` sends SIGTERM to the group and SIGKILL after a timeout, so nothing is left behind."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str] | None, log_path: Path) -> None:
        self.cmd = list(cmd)
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "ChildProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(_ROOT))
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise (with the log tail) if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{' '.join(self.cmd[2:5])} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def _signal(self, sig: int) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        """SIGTERM the group without waiting (see `stop`)."""
        if self.alive():
            self._signal(signal.SIGTERM)

    def kill9(self) -> None:
        """SIGKILL the group at once (fault tests) and reap it."""
        assert self.proc is not None
        self._signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the group, SIGKILL it after `timeout_s`; returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        self.terminate()
        try:
            self.proc.wait(max(0.1, timeout_s))
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)
        return self.proc.returncode

    def log_tail(self, n: int = 40) -> str:
        """Last lines of the log file."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_healthy(self, url: str, timeout_s: float, interval_s: float = 0.3) -> None:
        """Wait until GET `url` answers 200; raise (with the log tail, the process stopped) if the
        process exits first or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(self.cmd[2:5])} exited ({self.proc.returncode}) during start-up:\n"
                                   f"{self.log_tail()}")
            if http_json(url) is not None:
                return
            time.sleep(interval_s)
        self.stop()
        raise RuntimeError(f"{' '.join(self.cmd[2:5])} not healthy after {timeout_s:.0f}s:\n{self.log_tail()}")


def http_json(url: str, timeout_s: float = 2.0) -> Any:
    """The JSON of GET `url` when it answers 200 (``{}`` for a non-JSON body), else None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback
            if resp.status != 200:
                return None
            body = resp.read()
    except Exception:  # noqa: BLE001 - not up (yet), or degraded
        return None
    try:
        return json.loads(body)
    except ValueError:
        return {}


def pingan_command(*args: str) -> list[str]:
    """The command line of `pingan ARGS…` in this interpreter."""
    return [sys.executable, "-m", "streams.cli", *args]


def simulate_folder(out: Path, *, seed: int = 1, days: int = 1, scale: float | None = None,
                    variants: bool = False) -> Path:
    """``pingan simulate --out OUT --days D --seed S [--scale N] [--variants] --quiet`` (a subprocess, like an
    operator)."""
    args = ["simulate", "--out", str(out), "--days", str(days), "--seed", str(seed)]
    if scale is not None:
        args += ["--scale", str(scale)]
    if variants:
        args.append("--variants")
    subprocess.run(pingan_command(*args, "--quiet"), check=True, capture_output=True, cwd=str(_ROOT))
    return out


class WorkerProcess(ChildProcess):
    """A `pingan worker run` subprocess with these settings and worker id."""

    def __init__(self, settings: Settings, worker_id: int, log_dir: Path, role: str | None = None) -> None:
        env = settings_env(settings)
        env["PINGAN_WORKER_ID"] = str(worker_id)
        if role is not None:
            env["PINGAN_WORKER_ROLE"] = role
        super().__init__(pingan_command("worker", "run", "--loglevel", "info"), env,
                         log_dir / f"worker-{worker_id}.log")
        self.settings = settings
        self.worker_id = worker_id


class ConnectorsProcess(ChildProcess):
    """`pingan connectors run` (no SIP listener) as a subprocess with the given settings.

    ``settings`` travel through ``PINGAN_*`` (topic prefix, Kafka, run dir for the spool and the
    110 cursor); the HTTP port, registry and 110 URL are options."""

    def __init__(self, settings: Settings, *, registry: Path, log_path: Path, port: int | None = None,
                 alarm110_url: str | None = None, alarm110_interval: float = 0.5,
                 extra_args: Sequence[str] = ()) -> None:
        self.settings = settings
        self.registry = registry
        self.port = port or free_port()
        self.alarm110_url = alarm110_url
        self.alarm110_interval = alarm110_interval
        self.extra_args = list(extra_args)
        env = settings_env(settings)
        env.pop("PINGAN_DEVICE_REGISTRY", None)
        env.pop("PINGAN_ALARM110_URL", None)
        super().__init__(self.command(), env, log_path)

    @property
    def url(self) -> str:
        """Base URL of the receivers."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line started."""
        cmd = pingan_command("connectors", "run", "--port", str(self.port), "--no-sip",
                             "--registry", str(self.registry), "--log-level", "WARNING")
        if self.alarm110_url:
            cmd += ["--alarm110-url", self.alarm110_url, "--alarm110-interval", str(self.alarm110_interval)]
        return cmd + self.extra_args

    def start(self, timeout_s: float = 60.0) -> "ConnectorsProcess":
        """Start and wait until /healthz answers 200."""
        super().start()
        self.wait_healthy(self.url + "/healthz", timeout_s)
        return self

    def healthz(self) -> dict[str, Any] | None:
        """The /healthz JSON when it answers 200, else None."""
        return http_json(self.url + "/healthz")

    def metrics(self) -> str:
        """The /metrics text."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:  # noqa: S310 - loopback
            return resp.read().decode()

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (then SIGKILL) the process group; returns the exit code."""
        return super().stop(timeout_s)


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 1.0,
             what: str = "condition") -> Any:
    """Poll until predicate() is truthy; return its value or fail with `what`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")
