"""The demo's restart policy (infra/restart_policy.py): backoff, its reset, crash loops, modes."""
from __future__ import annotations

import pytest

from infra.restart_policy import (Finished, GiveUp, Restart, RestartPolicy, RestartState, backoff_s,
                                  on_exit)

P = RestartPolicy(initial_backoff_s=1.0, multiplier=2.0, max_backoff_s=30.0, stable_after_s=60.0,
                  crash_loop_exits=5, crash_loop_window_s=120.0)


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(P, n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_s(P, 10_000) == 30.0  # no float overflow
    assert backoff_s(P, 0) == 1.0


def test_quick_exits_grow_the_backoff_and_count_restarts() -> None:
    state, t, delays = RestartState(), 0.0, []
    for _ in range(3):
        d = on_exit(P, state, mode="always", exit_code=-9, died_at=t, uptime_s=5.0)
        assert isinstance(d, Restart)
        delays.append(d.backoff_s)
        state, t = d.state, t + 10.0
    assert delays == [1.0, 2.0, 4.0] and state.restarts == 3 and state.consecutive == 3


def test_a_stable_run_resets_the_backoff() -> None:
    state = RestartState(restarts=4, consecutive=4, exits=(0.0,))
    d = on_exit(P, state, mode="always", exit_code=1, died_at=500.0, uptime_s=300.0)
    assert isinstance(d, Restart) and d.backoff_s == 1.0 and d.state.restarts == 5
    assert d.state.exits == (500.0,)  # the old exit left the window


def test_too_many_exits_in_the_window_give_up_with_the_reason() -> None:
    state = RestartState(restarts=4, consecutive=4, exits=(0.0, 10.0, 20.0, 30.0))
    d = on_exit(P, state, mode="always", exit_code=3, died_at=40.0, uptime_s=2.0)
    assert isinstance(d, GiveUp)
    assert "5 exits within 120s" in d.reason and "exit code 3" in d.reason and "4 restarts" in d.reason
    # the same number of exits spread beyond the window is no crash loop
    d = on_exit(P, state, mode="always", exit_code=3, died_at=125.0, uptime_s=2.0)
    assert isinstance(d, Restart) and d.state.exits == (10.0, 20.0, 30.0, 125.0)


def test_modes() -> None:
    s = RestartState()
    assert isinstance(on_exit(P, s, mode="never", exit_code=1, died_at=0.0, uptime_s=1.0), Finished)
    assert isinstance(on_exit(P, s, mode="on-failure", exit_code=0, died_at=0.0, uptime_s=1.0), Finished)
    assert isinstance(on_exit(P, s, mode="on-failure", exit_code=2, died_at=0.0, uptime_s=1.0), Restart)
    assert isinstance(on_exit(P, s, mode="always", exit_code=0, died_at=0.0, uptime_s=1.0), Restart)


def test_one_exit_allowed_gives_up_at_once() -> None:
    d = on_exit(RestartPolicy(crash_loop_exits=1), RestartState(), mode="always", exit_code=1, died_at=0.0,
                uptime_s=0.1)
    assert isinstance(d, GiveUp)


@pytest.mark.parametrize("kwargs", [{"multiplier": 0.5}, {"initial_backoff_s": -1.0},
                                    {"max_backoff_s": 0.1}, {"crash_loop_exits": 0}, {"crash_loop_window_s": 0}])
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid RestartPolicy"):
        RestartPolicy(**kwargs)
