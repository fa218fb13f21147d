"""Audit tampering against the real broker: the search audit log anchors its chain head on a
throw-away ``test-<uuid>-audit-anchors.v1`` topic, and ``pingan search verify-audit`` (the CLI, with
the key from ``PINGAN_AUDIT_KEY``) detects a cut-off tail, a record deleted and the chain
recomputed with plain SHA-256, with a guessed key and even with the real key, and an edited line."""
from __future__ import annotations

import hashlib
import hmac
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli.search import app as search_app
from streams.web.audit import ANCHOR_TOPIC, AuditLog, KafkaAnchors
from tests.harness.kafka import BOOTSTRAP, create_topics, delete_topics, require_kafka, unique_prefix
from tests.unit.test_audit import rechain  # what a tamperer does after deleting a line

pytestmark = pytest.mark.integration

KEY = "integration-audit-key-" + "5" * 32
RECORDS, EVERY = 25, 10  # anchors at 10, 20 and on close at 25


@pytest.fixture(scope="module")
def anchored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A 25-record log whose anchors are on a fresh prefixed topic; yields (log, prefix)."""
    require_kafka()
    prefix = unique_prefix()
    topics = create_topics(prefix, [ANCHOR_TOPIC])
    try:
        path = tmp_path_factory.mktemp("audit") / "search-audit.jsonl"
        log = AuditLog(path, key=KEY, anchors=KafkaAnchors(BOOTSTRAP, prefix + ANCHOR_TOPIC), anchor_every=EVERY)
        for i in range(RECORDS):
            log.record(user="三江镇综治中心", admin_code="513221107", action="search",
                       filter={"q": f"纠纷{i}"}, result_count=i)
        log.close()
        yield path, prefix
    finally:
        delete_topics(topics)


def _verify(path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch, key: str = KEY) -> tuple[int, str]:
    monkeypatch.setenv("PINGAN_AUDIT_KEY", key)
    monkeypatch.setenv("PINGAN_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("PINGAN_KAFKA_BOOTSTRAP", BOOTSTRAP)
    result = CliRunner().invoke(search_app, ["verify-audit", str(path)])
    return result.exit_code, result.output


def _copy(path: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    target = tmp_path / path.name
    shutil.copy(path, target)
    return target, target.read_text(encoding="utf-8").splitlines()


def _put(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_untouched_log_verifies_with_its_anchors(anchored: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    path, prefix = anchored
    code, out = _verify(path, prefix, monkeypatch)
    assert code == 0 and "OK: 25 lines" in out and "3 anchors" in out, out
    code, out = _verify(path, prefix, monkeypatch, key="not-the-audit-key-000000000000")
    assert code == 1 and "HMAC" in out


def test_truncating_the_last_lines_is_detected(anchored: tuple[Path, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path, lines = _copy(anchored[0], tmp_path)
    _put(path, lines[:-3])
    code, out = _verify(path, anchored[1], monkeypatch)
    assert code == 1 and "truncated" in out and "25" in out, out


def test_delete_and_recompute_with_plain_sha256_is_detected(anchored: tuple[Path, str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path, lines = _copy(anchored[0], tmp_path)
    _put(path, rechain(lines[:4] + lines[5:], lambda b: hashlib.sha256(b).hexdigest()))
    code, out = _verify(path, anchored[1], monkeypatch)
    assert code == 1 and "line 1" in out and "HMAC" in out, out


def test_delete_and_recompute_without_the_key_is_detected(anchored: tuple[Path, str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path, lines = _copy(anchored[0], tmp_path)
    guess = b"dev-only-person-key-secret-change-me"
    _put(path, rechain(lines[:4] + lines[5:], lambda b: hmac.new(guess, b, hashlib.sha256).hexdigest()))
    code, out = _verify(path, anchored[1], monkeypatch)
    assert code == 1 and "HMAC" in out, out


def test_delete_and_recompute_with_the_key_is_caught_by_the_anchors(anchored: tuple[Path, str], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path, lines = _copy(anchored[0], tmp_path)
    _put(path, rechain(lines[:4] + lines[5:], lambda b: hmac.new(KEY.encode(), b, hashlib.sha256).hexdigest()))
    code, out = _verify(path, anchored[1], monkeypatch)
    assert code == 1 and ("differs from its anchor" in out or "truncated" in out), out


def test_an_edited_line_is_detected(anchored: tuple[Path, str], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path, lines = _copy(anchored[0], tmp_path)
    lines[6] = lines[6].replace('"result_count":6', '"result_count":0')
    _put(path, lines)
    code, out = _verify(path, anchored[1], monkeypatch)
    assert code == 1 and "line 7" in out, out


def test_without_the_anchor_topic_verify_refuses_to_say_ok(anchored: tuple[Path, str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _verify(anchored[0], unique_prefix(), monkeypatch)  # a prefix whose topic does not exist
    assert code == 1 and "CANNOT VERIFY" in out, out


def test_a_missing_anchor_topic_is_an_error_not_auto_created(tmp_path: Path) -> None:
    require_kafka()
    from kafka import KafkaAdminClient

    topic = unique_prefix() + ANCHOR_TOPIC
    sink = KafkaAnchors(BOOTSTRAP, topic, timeout_s=2.0)
    log = AuditLog(tmp_path / "audit.jsonl", key=KEY, anchors=sink, anchor_every=1)
    log.record(user="u", admin_code="513221", action="search", filter={}, result_count=0)  # returns at once
    log.close()
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()
    assert sink.failures == 1
