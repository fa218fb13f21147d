"""When a supervised process that exited is started again (pure: no clock, no processes).

Contract:
- ``backoff_s(policy, consecutive)`` = ``initial_backoff_s * multiplier ** (consecutive - 1)``,
  capped at ``max_backoff_s`` (``consecutive`` ≥ 1: how many quick exits in a row, this one included).
- ``on_exit(policy, state, mode=…, exit_code=…, died_at=…, uptime_s=…)`` decides what follows an
  exit and returns the new state inside the decision (errors are data, nothing raises):
  * `Finished` — the mode does not restart this exit (``"never"``, or ``"on-failure"`` and exit 0);
  * `GiveUp` — a crash loop: this exit makes ``crash_loop_exits`` exits within the last
    ``crash_loop_window_s`` seconds; ``reason`` says which process pattern, how many, the last code;
  * `Restart` — start again after ``backoff_s``. A run that lasted ``stable_after_s`` or longer
    resets the backoff (``consecutive`` starts over at 1).
- ``died_at`` is any monotonic time in seconds; the caller owns the clock.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

RestartMode = Literal["always", "on-failure", "never"]


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff, capped, and the crash-loop limit."""

    initial_backoff_s: float = 1.0
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    stable_after_s: float = 60.0
    crash_loop_exits: int = 5
    crash_loop_window_s: float = 120.0

    def __post_init__(self) -> None:
        problems = [msg for bad, msg in (
            (self.initial_backoff_s < 0, "initial_backoff_s < 0"),
            (self.multiplier < 1, "multiplier < 1"),
            (self.max_backoff_s < self.initial_backoff_s, "max_backoff_s < initial_backoff_s"),
            (self.crash_loop_exits < 1, "crash_loop_exits < 1"),
            (self.crash_loop_window_s <= 0, "crash_loop_window_s <= 0"),
        ) if bad]
        if problems:
            raise ValueError(f"invalid RestartPolicy: {', '.join(problems)}")


@dataclass(frozen=True)
class RestartState:
    """What the policy remembers about one process: restarts so far, quick exits in a row, the
    times of the exits still inside the crash-loop window."""

    restarts: int = 0
    consecutive: int = 0
    exits: tuple[float, ...] = ()


@dataclass(frozen=True)
class Restart:
    backoff_s: float
    state: RestartState


@dataclass(frozen=True)
class GiveUp:
    reason: str
    state: RestartState


@dataclass(frozen=True)
class Finished:
    state: RestartState


Decision = Restart | GiveUp | Finished


def backoff_s(policy: RestartPolicy, consecutive: int) -> float:
    """The delay before the restart that follows the ``consecutive``-th quick exit in a row."""
    exponent = max(0, consecutive - 1)
    # cap the exponent first: multiplier ** 10_000 would overflow a float
    value = policy.initial_backoff_s
    for _ in range(exponent):
        value *= policy.multiplier
        if value >= policy.max_backoff_s:
            return policy.max_backoff_s
    return min(value, policy.max_backoff_s)


def on_exit(policy: RestartPolicy, state: RestartState, *, mode: RestartMode, exit_code: int | None,
            died_at: float, uptime_s: float) -> Decision:
    """What follows one exit of a supervised process (see the module contract)."""
    if mode == "never" or (mode == "on-failure" and exit_code == 0):
        return Finished(state)
    exits = tuple(t for t in state.exits if died_at - t < policy.crash_loop_window_s) + (died_at,)
    consecutive = 1 if uptime_s >= policy.stable_after_s else state.consecutive + 1
    if len(exits) >= policy.crash_loop_exits:
        reason = (f"crash loop: {len(exits)} exits within {policy.crash_loop_window_s:.0f}s "
                  f"(last exit code {exit_code}, after {state.restarts} restarts)")
        return GiveUp(reason, RestartState(state.restarts, consecutive, exits))
    new = replace(state, restarts=state.restarts + 1, consecutive=consecutive, exits=exits)
    return Restart(backoff_s(policy, consecutive), new)
