"""Dead-letter state, prefixes and patches (streams/ops/dlq_state.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.serde import default_store
from streams.ops.dlq_state import (Journal, PatchError, PrefixError, apply_patch, collapse, entry, fingerprint, fold,
                                   merge_patch, resolve_prefix)


def test_prefixes() -> None:
    ids = ["3f9c0a1b22aa", "3f9c0a1b33bb", "77aa0000"]
    assert resolve_prefix("77", ids) == "77aa0000" and resolve_prefix("3F9C0A1B22", ids) == "3f9c0a1b22aa"
    with pytest.raises(PrefixError, match="ambiguous"):
        resolve_prefix("3f9c", ids)
    with pytest.raises(PrefixError, match="no dead letter"):
        resolve_prefix("ff", ids)


def test_fold_keeps_history_and_the_edited_body(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.jsonl")
    j.append(entry("a", "redrive", "failed-again", "still bad", at_ms=1),
             entry("a", "edit", "failed-again", body=b'{"x": 1}', content_type="application/json", at_ms=2),
             entry("a", "redrive", "resolved", "1 record", at_ms=3), entry("b", "resolve", "resolved", at_ms=4))
    with open(j.path, "a", encoding="utf-8") as fh:
        fh.write('{"id": "torn')  # a crash mid-line
    st = j.states()
    assert st["a"].state == "resolved" and st["a"].attempts == 2 and st["a"].body == b'{"x": 1}'
    assert [h["action"] for h in st["a"].history] == ["redrive", "edit", "redrive"]
    assert st["b"].state == "resolved"
    with pytest.raises(ValueError):
        entry("a", "x", "done")


def test_collapse_one_letter_per_failure() -> None:
    fp = fingerprint("grid", "normalize", b"raw")
    states = fold([entry("a", "redrive", "re-driven", at_ms=100)])
    groups = collapse([("a", fp, 50, None), ("a", fp, 60, None), ("c", fingerprint("grid", "normalize", b"x"), 70, None),
                       ("b", fp, 150, None), ("d", "other", 160, "c")], states)
    assert [(g.id, g.copies, g.state.state) for g in groups] == [("a", ["b"], "failed-again"), ("c", ["d"], "new")]
    assert "dead-lettered again as b" in groups[0].derived


def test_patches() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": 5}) == \
        {"a": 1, "b": {"d": 3, "e": 4}, "f": 5}
    assert json.loads(apply_patch(b'{"reportId": null}', {"reportId": "G1"})) == {"reportId": "G1"}
    with pytest.raises(PatchError, match="--body FILE"):
        apply_patch(b"<Notify/>", {"x": 1})
    store = default_store()
    from schemas.examples import example

    raw = store.encode("pingan.Incident", example("pingan.Incident"))
    patched = apply_patch(raw, {"tier": "town"}, decode=store.decode, encode=store.encode)
    assert store.decode(patched)[1]["tier"] == "town"
    with pytest.raises(PatchError, match="does not fit"):
        apply_patch(raw, {"severity": "high"}, decode=store.decode, encode=store.encode)
