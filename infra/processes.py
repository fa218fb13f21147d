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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.settings import Settings


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


class WorkerProcess:
    """A `pingan worker run` subprocess with its log file."""

    def __init__(self, settings: Settings, worker_id: int, log_dir: Path) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.log_path = log_dir / f"worker-{worker_id}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        env = settings_env(self.settings)
        env["PINGAN_WORKER_ID"] = str(self.worker_id)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "run", "--loglevel", "info"],
                                     env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


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
