"""Comparing incident sets for a rule-change preview (streams/ops/rules_diff.py)."""
from __future__ import annotations

import pytest

from streams.ops.rules_diff import compare, parse_since


def inc(iid: str, events: list[str], tier: str = "village", last_seen: int = 100, links=(), **kw) -> dict:
    return {"incident_id": iid, "event_ids": events, "tier": tier, "last_seen": last_seen, "status": "open",
            "kind": "dispute", "links": list(links), "escalated": False, "rules_version": kw.pop("rv", "r1"), **kw}


def link(a: str, b: str, *reasons: str) -> dict:
    return {"link_id": f"{a}~{b}", "event_a": a, "event_b": b, "reasons": list(reasons), "rule": "x"}


def test_split_merge_retier_new_gone_and_link_reasons() -> None:
    live = {"A": inc("A", ["e1", "e2"], links=[link("e1", "e2", "同一身份证号密钥")]),
            "B": inc("B", ["e3"]), "C": inc("C", ["e4"]), "D": inc("D", ["e5"], tier="village"),
            "G": inc("G", ["e6"]), "M": {"incident_id": "M", "status": "merged", "event_ids": ["e1"]}}
    shadow = {"S1": inc("S1", ["e1"], rv="r2"), "S2": inc("S2", ["e2"], rv="r2"),
              "S3": inc("S3", ["e3", "e4"], rv="r2", links=[link("e3", "e4", "相距45米、间隔1分钟")]),
              "S4": inc("S4", ["e5"], tier="town", escalated=True, rv="r2"), "S5": inc("S5", ["e7"], rv="r2")}
    d = compare(live, shadow)
    assert d.counts() == {"split": 1, "merged": 1, "retiered": 1, "new": 1, "gone": 1, "link_reasons": 2}
    assert d.split[0] == {"live": "A", "shadow": ["S1", "S2"], "events": 2}
    assert d.merged[0]["live"] == ["B", "C"] and d.retiered[0]["shadow_tier"] == "town"
    assert d.rules_version_live == ["r1"] and d.rules_version_shadow == ["r2"]
    text = "\n".join(d.lines())
    assert "split 1, merged 1, re-tiered 1" in text and "village → town" in text and "(no link)" in text
    assert compare(live, live).changed is False and compare(live, live).unchanged == 5


def test_since_window() -> None:
    live = {"A": inc("A", ["e1"], last_seen=10), "B": inc("B", ["e2"], last_seen=100)}
    shadow = {"A": inc("A", ["e1"], tier="town", last_seen=10), "B": inc("B", ["e2"], last_seen=100)}
    assert compare(live, shadow).counts()["retiered"] == 1
    assert compare(live, shadow, since_ms=50).counts()["retiered"] == 0


def test_parse_since() -> None:
    assert parse_since("7d") == 7 * 86_400_000 and parse_since("36h") == 36 * 3_600_000 and parse_since("90m") == 5_400_000
    with pytest.raises(ValueError, match="7d"):
        parse_since("week")
