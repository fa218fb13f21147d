"""SIGTERM stops a replay command the way Ctrl-C does: the main task is cancelled, nothing else is hit."""
from __future__ import annotations

import asyncio
import gc
import os
import signal

import pytest

from streams.cli.replay import _interruptible


@pytest.mark.parametrize("inherited", [signal.default_int_handler, signal.SIG_IGN], ids=["from-terminal", "background-job"])
def test_sigterm_cancels_the_main_task_instead_of_raising_inside_another_task(inherited: object) -> None:
    """The signal arrives while a helper task runs (as an aiohttp write did in CI): that task must see a
    cancellation, not a KeyboardInterrupt of its own, and no task may be left with an unretrieved exception."""
    old = signal.getsignal(signal.SIGTERM)
    seen: list[type[BaseException]] = []
    unretrieved: list[dict] = []
    cleaned_up: list[bool] = []

    async def helper() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs right here, inside this task's step
            await asyncio.sleep(5)
        except BaseException as exc:
            seen.append(type(exc))
            raise

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unretrieved.append(ctx))
        task = asyncio.create_task(helper())
        try:
            await asyncio.sleep(5)
        finally:
            cleaned_up.append(True)  # where the replay saves its checkpoint
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # a replay started from a terminal has Python's own SIGINT handler; one started as a background
    # job of a shell (`pingan replay index … &`, nohup'd scripts) inherits SIGINT ignored (SIG_IGN),
    # and asyncio.run then installs no handler of its own: `_interruptible` must restore Python's
    ambient = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, inherited)
    try:
        _interruptible()
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(main())
        gc.collect()
    finally:
        signal.signal(signal.SIGTERM, old)
        if ambient is not None:
            signal.signal(signal.SIGINT, ambient)
    assert seen == [asyncio.CancelledError]
    assert cleaned_up == [True]
    assert unretrieved == []


def test_sigterm_outside_an_event_loop_raises_keyboard_interrupt() -> None:
    old = signal.getsignal(signal.SIGTERM)
    try:
        _interruptible()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                pass
    finally:
        signal.signal(signal.SIGTERM, old)
