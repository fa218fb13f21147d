"""Starting our own processes with given settings: the environment that carries a Settings
object to a child, an isolated namespace for tests and benchmarks, and `pingan worker run`
subprocesses. Used by the demo, the benchmarks and the end-to-end tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from streams.settings import Settings

_ROOT = Path(__file__).resolve().parent.parent


def isolated_settings(base: Settings, registry: Path | None = None, **extra: object) -> Settings:
    """Settings whose topics, indices and consumer group no other test shares."""
    tag = uuid.uuid4().hex[:8]
    return Settings(**{**base.model_dump(), "topic_prefix": f"t{tag}.", "es_index_prefix": f"pingan-test-{tag}",
                       "app_id": f"pingan-test-{tag}", "registry_path": registry, "worker_web_port": 16066,
                       "deadline_check_s": 3600.0, **extra})


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess see these settings."""
    env = dict(os.environ)
    for key, value in settings.model_dump().items():
        if value is not None:
            env[f"PINGAN_{key.upper()}"] = str(value)
    return env


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


def pingan_command(*args: str) -> list[str]:
    """The command line of `pingan ARGS…` in this interpreter."""
    return [sys.executable, "-m", "streams.cli", *args]


class WorkerProcess(ChildProcess):
    """A `pingan worker run` subprocess with these settings and worker id."""

    def __init__(self, settings: Settings, worker_id: int, log_dir: Path) -> None:
        env = settings_env(settings)
        env["PINGAN_WORKER_ID"] = str(worker_id)
        super().__init__(pingan_command("worker", "run", "--loglevel", "info"), env,
                         log_dir / f"worker-{worker_id}.log")
        self.settings = settings
        self.worker_id = worker_id


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
