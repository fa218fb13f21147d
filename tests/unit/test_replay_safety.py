"""Pure decisions of the index replay (streams/ops/replay_safety.py)."""
from __future__ import annotations

import pytest

from streams.ops.replay_safety import (StartPoint, build_meta, event_time_of, is_complete, offset_for, parse_offsets,
                                       shrink_check)


def test_parse_offsets() -> None:
    assert parse_offsets("0:120,1:98") == {0: 120, 1: 98}
    assert parse_offsets(" 500 ") == {-1: 500}
    assert offset_for({-1: 500, 2: 7}, 2) == 7 and offset_for({-1: 500}, 0) == 500 and offset_for({1: 3}, 0) is None
    for bad in ("0:x", "a", "0:1:2", "-1:5"):
        with pytest.raises(ValueError, match="partition:offset"):
            parse_offsets(bad)


def test_event_time_is_the_latest_change() -> None:
    assert event_time_of({"last_seen": 10, "updated_at": 30}) == 30
    assert event_time_of({"last_seen": 40, "updated_at": None}) == 40


def test_completeness_from_meta() -> None:
    assert is_complete(None) == (True, "built by the live index agent")
    start = StartPoint("offsets", offsets={-1: 5})
    assert not is_complete(build_meta(start, complete=False))[0]  # unfinished
    ok, why = is_complete(build_meta(start, complete=False, finished=True))
    assert not ok and "partial" in why and "offset 5" in why
    assert is_complete(build_meta(StartPoint(), complete=True, finished=True))[0]
    assert StartPoint("event-time", 0).describe() == "from event-time 1970-01-01T00:00:00Z"
    assert StartPoint("offsets", offsets={-1: 250}).describe() == "from offset 250 on every partition"
    assert StartPoint("offsets", offsets={0: 5, 1: 7}).describe() == "from offsets 0:5,1:7"


def test_shrink_check() -> None:
    assert shrink_check("v1", {"a", "b"}, "v2", {"a", "b", "c"}) is None
    diff = shrink_check("v1", {"a", "b", "c", "d"}, "v2", {"a", "x"}, sample=2)
    assert diff is not None and (diff.live_count, diff.new_count, diff.missing_count, diff.added_count) == (4, 2, 3, 1)
    assert diff.missing_sample == ["b", "c"]
    text = "\n".join(diff.lines())
    assert "(-2)" in text and "3 incident(s) would disappear" in text and "and 1 more" in text
