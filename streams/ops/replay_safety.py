"""Pure decisions of the index replay: where to start, which records count, whether to swap.

Contract (no I/O; unit-tested in tests/unit/test_replay_safety.py):
- `StartPoint`: how an operator names the start of a replay — the beginning, an event time (the
  incident's own clock: ``max(last_seen, updated_at)``), a Kafka produce time, or explicit offsets.
  `parse_offsets("0:120,1:98")` / `parse_offsets("500")` (every partition) → partition → offset;
  malformed text is a `ValueError` with the text in the message.
- `event_time_of(incident)`: the event time an incident record is selected by.
- `build_meta(...)` / `is_complete(meta)`: what a replay records in the index mapping's ``_meta``
  (``pingan_build``); an index without that entry (built by the live index agent) is complete.
- `shrink_check(live_ids, new_ids)`: None when the new index is not smaller than the live one, else
  a `ShrinkDiff` (counts, a sample of ids that would disappear) — the replay refuses to swap on it
  unless forced.
"""
from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

BUILD_META = "pingan_build"


@dataclass(frozen=True, slots=True)
class StartPoint:
    """Where a replay starts: ``mode`` is beginning | event-time | produce-time | offsets."""

    mode: str = "beginning"
    ms: int | None = None
    offsets: Mapping[int, int] | None = None

    @property
    def covers_everything(self) -> bool:
        """True when the replay reads the whole retained topic (a complete build on its own)."""
        return self.mode == "beginning"

    def describe(self) -> str:
        if self.mode == "beginning":
            return "from the beginning"
        if self.mode == "offsets":
            offs = dict(self.offsets or {})
            every = offs.pop(-1, None)
            parts = ([f"offset {every} on every partition"] if every is not None else []) + \
                ([("offsets " + ",".join(f"{p}:{o}" for p, o in sorted(offs.items())))] if offs else [])
            return "from " + " and ".join(parts)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((self.ms or 0) / 1000))
        return f"from {self.mode} {when}"


def parse_offsets(text: str) -> dict[int, int]:
    """``"0:120,1:98"`` → {0: 120, 1: 98}; ``"500"`` → {-1: 500} (every partition)."""
    text = text.strip()
    try:
        if ":" not in text:
            return {-1: int(text)}
        out: dict[int, int] = {}
        for part in text.split(","):
            p, o = part.split(":")
            out[int(p)] = int(o)
        if any(o < 0 or p < 0 for p, o in out.items()):
            raise ValueError
        return out
    except ValueError:
        raise ValueError(f"offsets must look like 0:120,1:98 (partition:offset) or one number, not {text!r}") \
            from None


def offset_for(offsets: Mapping[int, int], partition: int) -> int | None:
    """The start offset of `partition` in parsed offsets (the ``-1`` entry applies to every partition)."""
    if partition in offsets:
        return offsets[partition]
    return offsets.get(-1)


def event_time_of(incident: Mapping[str, Any]) -> int:
    """The event time (UTC ms) an incident record is selected by: its latest event or update."""
    return max(int(incident.get("last_seen") or 0), int(incident.get("updated_at") or 0))


def build_meta(start: StartPoint, *, complete: bool, seeded_from: list[str] | None = None,
               topic: str = "", finished: bool = False) -> dict[str, Any]:
    """The ``_meta.pingan_build`` entry of a replayed index."""
    return {BUILD_META: {"complete": complete, "finished": finished, "start": start.describe(), "mode": start.mode,
                         "seeded_from": list(seeded_from or []), "topic": topic, "at": int(time.time() * 1000)}}


def is_complete(meta: Mapping[str, Any] | None) -> tuple[bool, str]:
    """(complete?, why) from an index's mapping ``_meta``; no build entry = built live = complete."""
    build = (meta or {}).get(BUILD_META)
    if not build:
        return True, "built by the live index agent"
    if not build.get("finished"):
        return False, f"an unfinished replay ({build.get('start')})"
    if not build.get("complete"):
        return False, f"a partial replay ({build.get('start')}, not seeded)"
    return True, f"a complete replay ({build.get('start')})"


@dataclass(frozen=True)
class ShrinkDiff:
    """The new index would have fewer documents than the live one."""

    live_index: str
    new_index: str
    live_count: int
    new_count: int
    missing_count: int
    missing_sample: list[str] = field(default_factory=list)
    added_count: int = 0

    def lines(self) -> list[str]:
        """Human-readable diff."""
        out = [f"{self.new_index} has {self.new_count} incident(s), the live {self.live_index} {self.live_count} "
               f"({self.new_count - self.live_count:+d})",
               f"{self.missing_count} incident(s) would disappear from search, {self.added_count} would appear"]
        out += [f"  - {i}" for i in self.missing_sample]
        if self.missing_count > len(self.missing_sample):
            out.append(f"  … and {self.missing_count - len(self.missing_sample)} more")
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shrink_check(live_index: str, live_ids: Collection[str], new_index: str, new_ids: Collection[str],
                 sample: int = 10) -> ShrinkDiff | None:
    """None when `new_ids` is at least as large as `live_ids`; else the diff (missing ids sorted)."""
    if len(new_ids) >= len(live_ids):
        return None
    new_set, live_set = set(new_ids), set(live_ids)
    missing = sorted(live_set - new_set)
    return ShrinkDiff(live_index, new_index, len(live_set), len(new_set), len(missing), missing[:sample],
                      len(new_set - live_set))
