"""SIGTERM stops a replay command the way Ctrl-C does: the main task is cancelled, nothing else is hit."""
from __future__ import annotations

import asyncio
import gc
import os
import signal
import warnings

import pytest

from streams.cli.replay import _interruptible


def test_sigterm_cancels_the_main_task_instead_of_raising_inside_another_task() -> None:
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

    # a `pingan replay` started from a terminal has Python's own SIGINT handler, and only then does
    # asyncio.run install its runner's. pytest may start without it: a shell starts a background
    # job (`… &`, as CI was run) with SIGINT ignored and Python keeps SIG_IGN (seen in CI: the
    # helper got KeyboardInterrupt once asyncio.run left it alone); that is not the state under test
    ambient = signal.getsignal(signal.SIGINT)
    if ambient is not signal.default_int_handler:
        warnings.warn(f"SIGINT was handled by {ambient!r} when this test started (inherited from the "
                      f"shell, or left by an earlier test)", stacklevel=1)
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
