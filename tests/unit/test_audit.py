"""HMAC-chained audit log with anchors: appends, survives restarts, and verify detects an edit, a
deletion, a reorder, a cut-off tail, a chain recomputed with plain SHA-256 or with a wrong key, and
a forged anchor. Denied requests are recorded with rate-limited detail."""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.web.audit import (
    GENESIS, Anchor, AuditError, AuditLog, DeniedRecorder, FileAnchors, dev_key, record_mac, verify_chain,
)

KEY = b"unit-test-audit-key-0123456789abcdef"


def _write(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.record(user=f"u{i}", admin_code="513221107", action="search", filter={"q": f"纠纷{i}"}, result_count=i)


def _log(tmp_path: Path, n: int, every: int = 5) -> tuple[Path, FileAnchors]:
    path, anchors = tmp_path / "log" / "audit.jsonl", FileAnchors(tmp_path / "anchors")
    log = AuditLog(path, key=KEY, anchors=anchors, anchor_every=every)
    _write(log, n)
    log.close()
    return path, anchors


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _put(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def rechain(lines: list[str], mac: Callable[[bytes], str]) -> list[str]:
    """What a tamperer does after deleting a line: renumber, relink and re-MAC every line."""
    out, prev = [], GENESIS
    for seq, line in enumerate(lines, start=1):
        rec = json.loads(line)
        rec.update(seq=seq, prev=prev)
        rec.pop("mac")
        rec["mac"] = mac(json.dumps(rec, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode())
        prev = rec["mac"]
        out.append(json.dumps(rec, ensure_ascii=False, sort_keys=True, separators=(",", ":")))
    return out


def test_each_line_is_keyed_and_linked(tmp_path: Path) -> None:
    path = tmp_path / "a" / "audit.jsonl"
    log = AuditLog(path, key=KEY, clock_ms=lambda: 1_700_000_000_000)
    _write(log, 3)
    recs = [json.loads(x) for x in _lines(path)]
    assert [r["seq"] for r in recs] == [1, 2, 3] and len({r["log"] for r in recs}) == 1
    assert recs[0]["prev"] == GENESIS and recs[1]["prev"] == recs[0]["mac"] and recs[2]["prev"] == recs[1]["mac"]
    assert all(r["mac"] == record_mac(KEY, r) for r in recs)
    assert recs[0]["user"] == "u0" and recs[0]["filter"] == {"q": "纠纷0"} and recs[2]["result_count"] == 2
    assert recs[0]["at"] == 1_700_000_000_000 and recs[0]["admin_code"] == "513221107"
    assert verify_chain(path, KEY).ok and verify_chain(path, KEY).lines == 3
    assert not verify_chain(path, b"another-key").ok


def test_chain_continues_across_restarts_and_refuses_another_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(path, key=KEY), 2)
    _write(AuditLog(path, key=KEY), 2, start=2)  # a new process appends
    check = verify_chain(path, KEY)
    assert check.ok and check.lines == 4
    assert [json.loads(x)["seq"] for x in _lines(path)] == [1, 2, 3, 4]
    with pytest.raises(AuditError, match="does not verify"):
        AuditLog(path, key=b"wrong-key").check_head()


def test_anchors_every_n_and_on_close(tmp_path: Path) -> None:
    path, anchors = _log(tmp_path, 12, every=5)
    log_id = json.loads(_lines(path)[0])["log"]
    got = anchors.anchors(log_id)
    assert [a.seq for a in got] == [5, 10, 12] and all(a.valid(KEY) for a in got)
    assert got[-1].mac == json.loads(_lines(path)[-1])["mac"]
    check = verify_chain(path, KEY, anchors)
    assert check.ok and check.anchors == 3 and check.lines == 12


def test_edit_is_detected(tmp_path: Path) -> None:
    path, anchors = _log(tmp_path, 4)
    lines = _lines(path)
    lines[1] = lines[1].replace('"result_count":1', '"result_count":0')
    _put(path, lines)
    check = verify_chain(path, KEY, anchors)
    assert not check.ok and check.first_bad_line == 2 and "HMAC" in check.reason


def test_truncating_the_last_lines_is_detected(tmp_path: Path) -> None:
    path, anchors = _log(tmp_path, 10, every=5)
    _put(path, _lines(path)[:8])  # the chain of the remaining lines is intact
    assert verify_chain(path, KEY).ok  # without anchors it cannot be seen …
    check = verify_chain(path, KEY, anchors)  # … with them it is
    assert not check.ok and "truncated" in check.reason and "10" in check.reason


def test_delete_and_recompute_with_plain_sha256_is_detected(tmp_path: Path) -> None:
    path, anchors = _log(tmp_path, 6)
    lines = _lines(path)
    _put(path, rechain(lines[:2] + lines[3:], lambda b: hashlib.sha256(b).hexdigest()))
    check = verify_chain(path, KEY, anchors)
    assert not check.ok and check.first_bad_line == 1 and "HMAC" in check.reason


def test_delete_and_recompute_without_the_key_is_detected(tmp_path: Path) -> None:
    path, anchors = _log(tmp_path, 6)
    lines = _lines(path)
    guess = b"dev-only-guess"
    _put(path, rechain(lines[:2] + lines[3:], lambda b: hmac.new(guess, b, hashlib.sha256).hexdigest()))
    assert not verify_chain(path, KEY, anchors).ok


def test_delete_and_recompute_with_the_key_is_caught_by_the_anchors(tmp_path: Path) -> None:
    # an insider with the key can rewrite the chain, but not the anchors kept outside the log
    path, anchors = _log(tmp_path, 10, every=5)
    lines = _lines(path)
    _put(path, rechain(lines[:2] + lines[3:], lambda b: hmac.new(KEY, b, hashlib.sha256).hexdigest()))
    check = verify_chain(path, KEY, anchors)
    assert not check.ok and ("rewritten" in check.reason or "truncated" in check.reason)


def test_deletion_reorder_and_head_cut_detected(tmp_path: Path) -> None:
    path, anchors = _log(tmp_path, 4)
    lines = _lines(path)
    _put(path, [lines[0], lines[2], lines[3]])
    assert verify_chain(path, KEY, anchors).first_bad_line == 2
    _put(path, [lines[1], lines[0], lines[2], lines[3]])
    assert verify_chain(path, KEY, anchors).first_bad_line == 1
    _put(path, lines[1:])
    assert not verify_chain(path, KEY, anchors).ok


def test_a_forged_anchor_is_rejected(tmp_path: Path) -> None:
    path, anchors = _log(tmp_path, 3)
    log_id = json.loads(_lines(path)[0])["log"]
    real = anchors.anchors(log_id)[-1]
    anchors.publish(Anchor(log_id, 2, json.loads(_lines(path)[1])["mac"], real.anchored_at + 1, "00" * 32))
    check = verify_chain(path, KEY, anchors)
    assert not check.ok and "forged" in check.reason


def test_legacy_unkeyed_lines_fail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _put(path, [json.dumps({"seq": 1, "prev": GENESIS, "user": "u"})])
    assert not verify_chain(path, KEY).ok
    with pytest.raises(AuditError):
        AuditLog(path, key=KEY).check_head()


def test_file_is_private_and_dev_key_is_stable(tmp_path: Path) -> None:
    path, _ = _log(tmp_path, 1)
    assert path.stat().st_mode & 0o077 == 0
    key = dev_key(tmp_path / "run")
    assert key == dev_key(tmp_path / "run") and len(key) == 64
    assert (tmp_path / "run" / "secrets" / "audit.key").stat().st_mode & 0o077 == 0


def test_denied_requests_keep_one_full_record_per_client_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    now = [100.0]
    rec = DeniedRecorder(AuditLog(path, key=KEY), 1.0, clock=lambda: now[0])
    detail = {"method": "GET", "path": "/api/incidents", "reason": "unknown token"}
    assert rec.record("10.0.0.1", user="", admin_code="", action="search", status=401, detail=detail)
    for _ in range(5):
        assert not rec.record("10.0.0.1", user="", admin_code="", action="search", status=401, detail=detail)
    assert not rec.record("10.0.0.1", user="", admin_code="", action="search", status=429, detail=detail)
    assert rec.record("10.0.0.2", user="", admin_code="", action="stats", status=401, detail=detail)
    now[0] += 1.5
    assert rec.record("10.0.0.1", user="", admin_code="", action="search", status=429, detail=detail)
    rec.record("10.0.0.1", user="", admin_code="", action="search", status=429, detail=detail)
    rec.close()  # the open count is written
    recs = [json.loads(x) for x in _lines(path)]
    assert [(r["action"], r["status"], r["filter"]["client"]) for r in recs] == [
        ("search", 401, "10.0.0.1"), ("stats", 401, "10.0.0.2"), ("search", 429, "10.0.0.1"),
        ("denied-summary", 429, "10.0.0.1")]
    assert recs[2]["filter"]["suppressed"] == {"401": 5, "429": 1}
    assert recs[3]["filter"]["suppressed"] == {"429": 1}
    assert verify_chain(path, KEY).ok
