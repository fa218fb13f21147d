"""Pure signing and verification of receiver pushes (connectors/sources/auth.py): HMAC with a replay
window, tokens, HTTP Digest (as ISAPI cameras answer a challenge) and Basic; the credentials file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.sources.auth import (
    Authenticator,
    Credentials,
    CredentialsError,
    basic_header,
    digest_header,
    load_credentials,
    parse_credentials,
    sign,
    signed_headers,
)

BODY = '{"reportId": "WG1", "description": "柒山村"}'.encode()
TOML = """
replay_window_s = 300
realm = "pingan-test"

[[credential]]
key_id = "grid-app"
scheme = "hmac"
secret = "grid-secret-0123456789"
feeds = ["grid", "mediation"]

[[credential]]
key_id = "door-vendor"
scheme = "token"
secret = "door-token-0123456789"
feeds = ["door"]

[[credential]]
key_id = "admin"
scheme = "digest"
secret = "isapi-password-01"
feeds = ["isapi", "door"]

[[credential]]
key_id = "basic-cam"
scheme = "basic"
secret = "basic-password-01"
feeds = ["isapi"]
"""


class Clock:
    def __init__(self, now: float = 1_784_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def creds(tmp_path: Path) -> Credentials:
    path = tmp_path / "ingest.toml"
    path.write_text(TOML, encoding="utf-8")
    return load_credentials(path, known_feeds=["grid", "mediation", "door", "isapi", "gb28181"])


def test_credentials_file_toml_and_json_agree(tmp_path: Path, creds: Credentials) -> None:
    import tomllib

    path = tmp_path / "ingest.json"
    path.write_text(json.dumps(tomllib.loads(TOML)), encoding="utf-8")
    assert load_credentials(path) == creds
    assert creds.replay_window_s == 300 and creds.realm == "pingan-test"
    assert [c.key_id for c in creds.for_feed("door")] == ["door-vendor", "admin"]
    assert "grid-secret" not in repr(creds)


@pytest.mark.parametrize("entry, message", [
    ({"key_id": "a", "scheme": "rsa", "secret": "0123456789", "feeds": ["grid"]}, "scheme"),
    ({"key_id": "a", "scheme": "hmac", "secret": "short", "feeds": ["grid"]}, "at least 8"),
    ({"key_id": "a", "scheme": "hmac", "secret": "0123456789", "feeds": []}, "feeds"),
    ({"key_id": "a", "scheme": "hmac", "secret": "0123456789", "feeds": ["nope"]}, "unknown feed"),
    ({"key_id": "", "scheme": "hmac", "secret": "0123456789", "feeds": ["grid"]}, "key_id"),
])
def test_malformed_credentials_are_refused_with_the_entry_named(entry: dict[str, object], message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        parse_credentials({"credential": [entry]}, known_feeds=["grid"])


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="missing.toml"):
        load_credentials(tmp_path / "missing.toml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CredentialsError, match="bad.json"):
        load_credentials(bad)


def test_hmac_signature_is_over_timestamp_and_body() -> None:
    h = signed_headers("grid-app", "grid-secret-0123456789", BODY, now_s=1_784_000_000)
    assert h["X-Pingan-Timestamp"] == "1784000000"
    assert h["X-Pingan-Signature"] == sign("grid-secret-0123456789", "1784000000", BODY)
    assert sign("grid-secret-0123456789", "1784000000", BODY + b" ") != h["X-Pingan-Signature"]
    assert len(h["X-Pingan-Signature"]) == 64


def test_hmac_verification_accepts_once_and_refuses_tampering(creds: Credentials) -> None:
    clock = Clock()
    auth = Authenticator(creds, clock=clock)
    h = signed_headers("grid-app", "grid-secret-0123456789", BODY, now_s=clock.now)
    ok = auth.verify("grid", "POST", "/grid/reports", h, BODY)
    assert ok.ok and ok.key_id == "grid-app"
    auth.settle(ok, kept=True)
    assert auth.verify("grid", "POST", "/grid/reports", h, BODY).reason == "replayed"
    assert auth.verify("grid", "POST", "/grid/reports", h, BODY + b"x").reason == "bad-signature"
    assert auth.verify("door", "POST", "/door/events", h, BODY).reason == "challenge"  # door takes no hmac: digest, token
    assert auth.verify("gb28181", "POST", "/gb28181/alarm", h, BODY).reason == "no-credential"
    other = signed_headers("nobody", "grid-secret-0123456789", BODY, now_s=clock.now)
    assert auth.verify("grid", "POST", "/grid/reports", other, BODY).reason == "unknown-key"
    assert auth.verify("grid", "POST", "/grid/reports", {}, BODY).reason == "missing"


def test_hmac_outside_the_window_is_stale_and_a_released_signature_may_be_resent(creds: Credentials) -> None:
    clock = Clock()
    auth = Authenticator(creds, clock=clock)
    old = signed_headers("grid-app", "grid-secret-0123456789", BODY, now_s=clock.now - 301)
    assert auth.verify("grid", "POST", "/grid/reports", old, BODY).reason == "stale"
    ahead = signed_headers("grid-app", "grid-secret-0123456789", BODY, now_s=clock.now + 301)
    assert auth.verify("grid", "POST", "/grid/reports", ahead, BODY).reason == "stale"
    h = signed_headers("grid-app", "grid-secret-0123456789", BODY, now_s=clock.now)
    first = auth.verify("grid", "POST", "/grid/reports", h, BODY)
    auth.settle(first, kept=False)  # answered 429/503: the sender re-sends the same request
    assert auth.verify("grid", "POST", "/grid/reports", h, BODY).ok
    bad_ts = {**h, "X-Pingan-Timestamp": "yesterday"}
    assert auth.verify("grid", "POST", "/grid/reports", bad_ts, BODY).reason == "bad-timestamp"


def test_a_nonce_lets_the_same_body_be_sent_twice_in_one_second(creds: Credentials) -> None:
    clock = Clock()
    auth = Authenticator(creds, clock=clock)
    a = signed_headers("grid-app", "grid-secret-0123456789", BODY, now_s=clock.now, nonce="n1")
    b = signed_headers("grid-app", "grid-secret-0123456789", BODY, now_s=clock.now, nonce="n2")
    assert a["X-Pingan-Signature"] != b["X-Pingan-Signature"]
    assert auth.verify("grid", "POST", "/grid/reports", a, BODY).ok
    assert auth.verify("grid", "POST", "/grid/reports", b, BODY).ok
    assert auth.verify("grid", "POST", "/grid/reports", a, BODY).reason == "replayed"
    swapped = {**a, "X-Pingan-Nonce": "n3"}  # the nonce is signed
    assert auth.verify("grid", "POST", "/grid/reports", swapped, BODY).reason == "bad-signature"


def test_token(creds: Credentials) -> None:
    auth = Authenticator(creds)
    assert auth.verify("door", "POST", "/door/events", {"Authorization": "Bearer door-token-0123456789"}, BODY).ok
    assert auth.verify("door", "POST", "/door/events", {"X-Pingan-Token": "door-token-0123456789"}, BODY).ok
    assert auth.verify("door", "POST", "/door/events", {"Authorization": "Bearer wrong"}, BODY).reason == "bad-token"


def test_digest_challenge_response_as_an_isapi_camera_does(creds: Credentials) -> None:
    clock = Clock()
    nonces = iter(f"nonce{i:04d}" for i in range(100))
    auth = Authenticator(creds, clock=clock, nonce_factory=lambda: next(nonces), nonce_ttl_s=60)
    first = auth.verify("isapi", "POST", "/isapi/alert", {}, BODY)
    assert not first.ok and first.challenge and 'realm="pingan-test"' in first.challenge and "qop" in first.challenge
    header = digest_header(first.challenge, "admin", "isapi-password-01", "POST", "/isapi/alert", cnonce="c1")
    assert auth.verify("isapi", "POST", "/isapi/alert", {"authorization": header}, BODY).ok
    # the same nonce count again is a replay; the next count is fine
    assert auth.verify("isapi", "POST", "/isapi/alert", {"authorization": header}, BODY).reason == "replayed"
    nxt = digest_header(first.challenge, "admin", "isapi-password-01", "POST", "/isapi/alert", nc=2, cnonce="c1")
    assert auth.verify("isapi", "POST", "/isapi/alert", {"authorization": nxt}, BODY).ok
    wrong = digest_header(first.challenge, "admin", "not-it", "POST", "/isapi/alert")
    refused = auth.verify("isapi", "POST", "/isapi/alert", {"authorization": wrong}, BODY)
    assert refused.reason == "bad-password" and refused.challenge
    other_uri = digest_header(first.challenge, "admin", "isapi-password-01", "POST", "/grid/reports", nc=3)
    assert auth.verify("isapi", "POST", "/isapi/alert", {"authorization": other_uri}, BODY).reason == "bad-digest"
    invented = digest_header('Digest realm="pingan-test", nonce="mine", qop="auth"', "admin",
                             "isapi-password-01", "POST", "/isapi/alert")
    assert auth.verify("isapi", "POST", "/isapi/alert", {"authorization": invented}, BODY).reason == "stale-nonce"
    clock.now += 61
    late = digest_header(first.challenge, "admin", "isapi-password-01", "POST", "/isapi/alert", nc=4)
    assert auth.verify("isapi", "POST", "/isapi/alert", {"authorization": late}, BODY).reason == "stale-nonce"


def test_basic(creds: Credentials) -> None:
    auth = Authenticator(creds)
    assert auth.verify("isapi", "POST", "/isapi/alert", {"Authorization": basic_header("basic-cam",
                                                                                     "basic-password-01")}, BODY).ok
    assert auth.verify("isapi", "POST", "/isapi/alert",
                       {"Authorization": basic_header("basic-cam", "nope")}, BODY).reason == "bad-password"
    assert auth.verify("isapi", "POST", "/isapi/alert", {"Authorization": "Basic !!!"}, BODY).reason == "malformed"


@pytest.mark.parametrize("feed, headers", [
    # raw header bytes that are not UTF-8 reach the app as surrogates
    ("door", {"Authorization": "Bearer \udcff\udcfe"}),
    ("door", {"X-Pingan-Token": "\udcff"}),
    ("isapi", {"Authorization": "Basic é"}),
    ("isapi", {"Authorization": "Basic \udcff=="}),
    ("grid", {"X-Pingan-Key-Id": "grid-app", "X-Pingan-Timestamp": "1784000000", "X-Pingan-Signature": "é" * 64}),
    ("grid", {"X-Pingan-Key-Id": "grid-app", "X-Pingan-Timestamp": "²", "X-Pingan-Signature": "a" * 64}),
    ("grid", {"X-Pingan-Key-Id": "grid-app", "X-Pingan-Timestamp": "1784000000", "X-Pingan-Nonce": "\udcff",
              "X-Pingan-Signature": "a" * 64}),
    ("isapi", {"Authorization": 'Digest username="\udcff", realm="x", nonce="n", uri="/", response="r"'}),
])
def test_unreadable_credentials_are_a_refusal_not_an_exception(creds: Credentials, feed: str,
                                                               headers: dict[str, str]) -> None:
    verdict = Authenticator(creds, clock=Clock()).verify(feed, "POST", "/ingest", headers, BODY)
    assert not verdict.ok and verdict.reason in {"malformed", "bad-token", "bad-timestamp", "bad-signature",
                                                "bad-password", "unknown-key", "bad-digest", "stale"}
