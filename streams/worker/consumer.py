"""Moved: the consumer and the app classes live in streams/worker/engine.py (the Faust engine room).

Only the names older importers used are re-exported here; new code imports `streams.worker.engine`.
"""
from streams.worker.engine import (  # noqa: F401 - re-exports
    COMMIT_BARRIER_S,
    PinganFaustApp,
    SafeOffsetsConsumer,
    SafeOffsetsTransport,
    TrackedTable,
    committable_offset,
)
