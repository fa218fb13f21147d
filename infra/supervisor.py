"""Supervising the demo's child processes: restart the dead ones, report each death as data.

Contract: `Supervisor.start(name, args, env, mode)` starts ``pingan ARGS…`` (`start_command`: any
command line) as a `ChildProcess` logging to ``<log_dir>/<name>.log``. `poll()` never blocks: it reaps exited children, asks
`infra.restart_policy.on_exit` what follows, starts again those whose backoff has passed, and
returns one `ExitEvent` per exit seen (process, pid, exit code, restarts, backoff, decision).
A `GiveUp` event is the caller's cue to stop (the demo exits non-zero with its reason).
``status_path`` (optional) is rewritten as JSON after every change: name → pid, restarts, state.
`stop()` stops every child (SIGTERM to all, then wait, SIGKILL after the timeout).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.processes import ChildProcess, pingan_command
from infra.restart_policy import (Decision, GiveUp, Restart, RestartMode, RestartPolicy, RestartState,
                                  on_exit)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExitEvent:
    """One exit of a supervised process and what the policy decided."""

    name: str
    pid: int | None
    exit_code: int | None
    uptime_s: float
    decision: Decision

    def message(self) -> str:
        d = self.decision
        head = f"{self.name} (pid {self.pid}) exited with code {self.exit_code} after {self.uptime_s:.1f}s"
        if isinstance(d, Restart):
            return f"{head}: restart #{d.state.restarts} in {d.backoff_s:.1f}s"
        if isinstance(d, GiveUp):
            return f"{head}: GIVING UP — {d.reason}"
        return f"{head}: not restarted (finished)"


@dataclass
class _Entry:
    name: str
    cmd: list[str]
    env: dict[str, str]
    mode: RestartMode
    child: ChildProcess
    started_at: float
    state: RestartState = field(default_factory=RestartState)
    restart_at: float | None = None
    done: bool = False


class Supervisor:
    """Children started by the demo, restarted by `RestartPolicy` (thin wiring around it)."""

    def __init__(self, log_dir: Path, policy: RestartPolicy | None = None, *, status_path: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log_dir = log_dir
        self.policy = policy or RestartPolicy()
        self.status_path = status_path
        self.clock = clock
        self.entries: list[_Entry] = []

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str],
              mode: RestartMode = "always") -> ChildProcess:
        """Start ``pingan ARGS…`` under supervision."""
        return self.start_command(name, pingan_command(*args), env, mode)

    def start_command(self, name: str, cmd: Sequence[str], env: Mapping[str, str],
                      mode: RestartMode = "always") -> ChildProcess:
        """Start any command line under supervision (tests use small stand-ins)."""
        cmd = list(cmd)
        entry = _Entry(name, cmd, dict(env), mode, self._spawn(name, cmd, env), self.clock())
        self.entries.append(entry)
        self._write_status()
        return entry.child

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str]) -> ChildProcess:
        return ChildProcess(cmd, env, self.log_dir / f"{name}.log").start()

    def poll(self) -> list[ExitEvent]:
        """Reap exits, decide, restart what is due; never blocks."""
        events: list[ExitEvent] = []
        now = self.clock()
        for e in self.entries:
            if e.done:
                continue
            if e.restart_at is not None:
                if now >= e.restart_at:
                    e.child = self._spawn(e.name, e.cmd, e.env)
                    e.started_at, e.restart_at = now, None
                    log.warning("restarted %s (pid %s, restart #%d)", e.name, e.child.pid, e.state.restarts)
                    self._write_status()
                continue
            if e.child.alive():
                continue
            code = e.child.proc.returncode if e.child.proc is not None else None
            uptime = now - e.started_at
            decision = on_exit(self.policy, e.state, mode=e.mode, exit_code=code, died_at=now, uptime_s=uptime)
            e.state = decision.state
            if isinstance(decision, Restart):
                e.restart_at = now + decision.backoff_s
            else:
                e.done = True
            event = ExitEvent(e.name, e.child.pid, code, uptime, decision)
            (log.error if isinstance(decision, GiveUp) else log.warning)("%s", event.message())
            events.append(event)
            self._write_status()
        return events

    def status(self) -> dict[str, dict[str, object]]:
        """name → pid, restarts, state (running | backoff | exited)."""
        out: dict[str, dict[str, object]] = {}
        for e in self.entries:
            state = "backoff" if e.restart_at is not None else "running" if not e.done else "exited"
            out[e.name] = {"pid": e.child.pid, "restarts": e.state.restarts, "state": state}
        return out

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=2), encoding="utf-8")
        tmp.replace(self.status_path)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every child, then wait for all (SIGKILL after the timeout)."""
        for e in reversed(self.entries):
            e.child.terminate()
        deadline = self.clock() + timeout_s
        for e in self.entries:
            e.child.stop(deadline - self.clock())
            e.done = True
