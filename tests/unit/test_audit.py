"""Hash-chained audit log: appends, survives restarts, detects edits, deletions and reordering."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from streams.web.audit import GENESIS, AuditLog, verify_chain


def _write(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.record(user=f"u{i}", admin_code="513221107", action="search", filter={"q": f"纠纷{i}"}, result_count=i)


def test_chain_links_each_line_to_the_previous(tmp_path: Path) -> None:
    path = tmp_path / "a" / "audit.jsonl"
    log = AuditLog(path, clock_ms=lambda: 1_700_000_000_000)
    _write(log, 3)
    lines = path.read_bytes().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert recs[0]["prev"] == GENESIS
    assert recs[1]["prev"] == hashlib.sha256(lines[0]).hexdigest()
    assert recs[2]["prev"] == hashlib.sha256(lines[1]).hexdigest()
    assert recs[0]["user"] == "u0" and recs[0]["filter"] == {"q": "纠纷0"} and recs[2]["result_count"] == 2
    assert recs[0]["at"] == 1_700_000_000_000 and recs[0]["admin_code"] == "513221107"
    assert verify_chain(path).ok and verify_chain(path).lines == 3


def test_chain_continues_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(path), 2)
    _write(AuditLog(path), 2, start=2)  # a new process appends
    check = verify_chain(path)
    assert check.ok and check.lines == 4
    assert [json.loads(x)["seq"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]


def test_edit_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(path), 4)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"result_count":1', '"result_count":0')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    check = verify_chain(path)
    assert not check.ok and check.first_bad_line == 3  # line 3's prev no longer matches line 2


def test_deletion_and_reorder_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(path), 4)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], lines[2], lines[3]]) + "\n", encoding="utf-8")
    assert verify_chain(path).first_bad_line == 2
    path.write_text("\n".join([lines[1], lines[0], lines[2], lines[3]]) + "\n", encoding="utf-8")
    assert verify_chain(path).first_bad_line == 1
    path.write_text("\n".join(lines[1:]) + "\n", encoding="utf-8")  # head cut off
    assert not verify_chain(path).ok


def test_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(path), 1)
    assert path.stat().st_mode & 0o077 == 0
