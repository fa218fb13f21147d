"""Ingest credentials of the tests: one file with a credential of every scheme the receivers take,
and the signed headers of a push (the senders' side: `connectors.sources.auth`)."""
from __future__ import annotations

from pathlib import Path

from connectors.sources.auth import signed_headers

HMAC_KEY_ID = "test-platforms"
HMAC_SECRET = "test-hmac-secret-0123456789abcdef"
DIGEST_USER = "admin"
DIGEST_PASSWORD = "test-isapi-password-0123"
DOOR_TOKEN = "test-door-token-0123456789"

CREDENTIALS_TOML = f"""
replay_window_s = 300

[[credential]]
key_id = "{HMAC_KEY_ID}"
scheme = "hmac"
secret = "{HMAC_SECRET}"
feeds = ["gb28181", "grid", "mediation", "door"]

[[credential]]
key_id = "{DIGEST_USER}"
scheme = "digest"
secret = "{DIGEST_PASSWORD}"
feeds = ["isapi", "door"]

[[credential]]
key_id = "door-vendor"
scheme = "token"
secret = "{DOOR_TOKEN}"
feeds = ["door"]
"""


def write_ingest_credentials(path: Path) -> Path:
    """Write the tests' ingest credentials file (TOML) at `path`; returns it."""
    path.write_text(CREDENTIALS_TOML, encoding="utf-8")
    path.chmod(0o600)
    return path


def signed(body: bytes, now_s: float | None = None) -> dict[str, str]:
    """HMAC headers of a push of `body` with the tests' platform key."""
    return signed_headers(HMAC_KEY_ID, HMAC_SECRET, body, now_s)
