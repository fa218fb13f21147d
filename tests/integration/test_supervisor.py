"""The demo's supervisor with small real subprocesses (no Kafka, no Elasticsearch): a SIGKILLed
child is restarted after its backoff, a crash-looping one is given up with the reason, a finished
`on-failure` child stays finished."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from infra.processes import wait_for
from infra.restart_policy import Finished, GiveUp, Restart, RestartPolicy
from infra.supervisor import ExitEvent, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def _collect(sup: Supervisor, until: float, events: list[ExitEvent]) -> None:
    while time.monotonic() < until:
        events.extend(sup.poll())
        time.sleep(0.05)


def test_sigkilled_child_is_restarted_and_crash_loop_is_given_up(tmp_path: Path) -> None:
    policy = RestartPolicy(initial_backoff_s=0.2, multiplier=2.0, max_backoff_s=1.0, stable_after_s=30.0,
                           crash_loop_exits=3, crash_loop_window_s=30.0)
    sup = Supervisor(tmp_path, policy, status_path=tmp_path / "supervisor.json")
    events: list[ExitEvent] = []
    try:
        worker = sup.start_command("worker", SLEEPER, os.environ)
        sup.start_command("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"], os.environ)
        sup.start_command("oneshot", [sys.executable, "-c", "pass"], os.environ, mode="on-failure")
        first_pid = worker.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        _collect(sup, time.monotonic() + 1.0, events)
        wait_for(lambda: (events.extend(sup.poll()) or
                          json.loads((tmp_path / "supervisor.json").read_text())["worker"]["state"] == "running"),
                 5, 0.05, "worker restarted")
        status = json.loads((tmp_path / "supervisor.json").read_text())
        assert status["worker"]["restarts"] == 1 and status["worker"]["pid"] != first_pid
        assert sup.entries[0].child.alive()
        killed = [e for e in events if e.name == "worker"]
        assert len(killed) == 1 and killed[0].exit_code == -signal.SIGKILL
        assert isinstance(killed[0].decision, Restart) and "restart #1 in 0.2s" in killed[0].message()
        # what poll() returns is kept: the give-up often comes while this waits (a slow machine)
        wait_for(lambda: (events.extend(sup.poll()) or any(isinstance(e.decision, GiveUp) for e in events)),
                 10, 0.05, "give-up")
        crasher = [e for e in events if e.name == "crasher"]
        assert [type(e.decision) for e in crasher] == [Restart, Restart, GiveUp]
        assert [e.decision.backoff_s for e in crasher[:2]] == [0.2, 0.4]  # type: ignore[union-attr]
        assert "crash loop: 3 exits" in crasher[-1].message() and "exit code 3" in crasher[-1].message()
        oneshot = [e for e in events if e.name == "oneshot"]
        assert len(oneshot) == 1 and isinstance(oneshot[0].decision, Finished)
        assert sup.entries[0].child.alive()  # the others' fate does not touch the worker
    finally:
        sup.stop(5)
    assert not any(e.child.alive() for e in sup.entries)
