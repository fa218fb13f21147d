"""Who may push to the receivers: per-source credentials, request signing and its verification (pure).

Contract
--------
* `load_credentials(path)` reads the ingest credentials file (TOML ``.toml``, else JSON; format in
  README "Ingest credentials")::

      replay_window_s = 300            # optional: accepted clock skew / replay memory of signatures
      realm = "pingan"                 # optional: HTTP Digest realm of the ISAPI routes

      [[credential]]
      key_id = "grid-app"              # hmac: X-Pingan-Key-Id; digest/basic: the user name
      scheme = "hmac"                  # hmac | token | digest | basic
      secret = "…"                     # HMAC key / bearer token / password
      feeds = ["grid"]                 # the feeds (routes) this credential may push to

  `parse_credentials(mapping)` does the same from parsed data; both raise `CredentialsError`
  (a ValueError naming the entry and the field) on anything malformed — a broken file must not start.
* Schemes (what a push carries):
  - ``hmac``: headers ``X-Pingan-Key-Id``, ``X-Pingan-Timestamp`` (Unix seconds) and
    ``X-Pingan-Signature`` = hex HMAC-SHA256(secret, timestamp + "\\n" + body) (`sign`,
    `signed_headers`); the timestamp must be within ``replay_window_s`` of the receiver's clock and
    a signature is accepted once (`Authenticator.settle`). A sender that may re-send the same body
    within one second adds ``X-Pingan-Nonce`` (up to 64 characters); the signed text is then
    timestamp + "\\n" + nonce + "\\n" + body;
  - ``token``: ``Authorization: Bearer <secret>`` (or ``X-Pingan-Token``), for vendors that cannot sign;
  - ``digest``: RFC 2617 HTTP Digest (MD5, qop=auth) as Hikvision ISAPI cameras send it; the
    receiver answers a challenge (`Verdict.challenge` → ``WWW-Authenticate``) with a nonce it issued;
    a nonce expires after ``nonce_ttl_s`` and each (nonce, nc) is accepted once;
  - ``basic``: ``Authorization: Basic`` user:password (cameras configured for Basic only).
* `Authenticator.verify(feed, method, uri, headers, body)` → `Verdict` (errors are data: ``ok``
  False with a machine ``reason`` and a human ``detail``; never raises). A feed no credential names
  refuses every push (``no-credential``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from connectors.sources.gb28181.sip import digest_response, make_challenge, parse_digest_params, verify_digest

SCHEMES: Final = frozenset({"hmac", "token", "digest", "basic"})
HEADER_KEY_ID: Final = "X-Pingan-Key-Id"
HEADER_TIMESTAMP: Final = "X-Pingan-Timestamp"
HEADER_SIGNATURE: Final = "X-Pingan-Signature"
HEADER_TOKEN: Final = "X-Pingan-Token"
HEADER_NONCE: Final = "X-Pingan-Nonce"
DEFAULT_REPLAY_WINDOW_S: Final = 300
DEFAULT_REALM: Final = "pingan"


class CredentialsError(ValueError):
    """The ingest credentials file is missing, unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class Credential:
    """One sender's credential: its id, scheme, secret and the feeds it may push to."""

    key_id: str
    scheme: str
    secret: str = field(repr=False)
    feeds: frozenset[str]


@dataclass(frozen=True, slots=True)
class Credentials:
    """Every credential of the receivers, with the replay window and the digest realm."""

    entries: tuple[Credential, ...] = ()
    replay_window_s: int = DEFAULT_REPLAY_WINDOW_S
    realm: str = DEFAULT_REALM

    def for_feed(self, feed: str, scheme: str | None = None) -> tuple[Credential, ...]:
        """Credentials allowed to push to `feed` (of `scheme` when given)."""
        return tuple(c for c in self.entries if feed in c.feeds and (scheme is None or c.scheme == scheme))

    def by_key_id(self, key_id: str, scheme: str) -> Credential | None:
        """The credential with this id and scheme, or None."""
        return next((c for c in self.entries if c.key_id == key_id and c.scheme == scheme), None)


def parse_credentials(data: Mapping[str, Any], *, known_feeds: Iterable[str] | None = None) -> Credentials:
    """Credentials from parsed TOML/JSON (see module contract); `CredentialsError` when malformed."""
    feeds_known = frozenset(known_feeds) if known_feeds is not None else None
    raw = data.get("credential", [])
    if not isinstance(raw, list):
        raise CredentialsError("`credential` must be a list of tables ([[credential]])")
    entries: list[Credential] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(raw, start=1):
        where = f"credential #{i}"
        if not isinstance(item, Mapping):
            raise CredentialsError(f"{where}: must be a table")
        key_id, scheme, secret = item.get("key_id"), item.get("scheme"), item.get("secret")
        feeds = item.get("feeds")
        if not isinstance(key_id, str) or not key_id.strip() or any(ch in key_id for ch in '":\r\n'):
            raise CredentialsError(f"{where}: key_id must be a non-empty string without quotes, ':' or line breaks")
        where = f"credential {key_id!r}"
        if scheme not in SCHEMES:
            raise CredentialsError(f"{where}: scheme {scheme!r} not in {sorted(SCHEMES)}")
        if not isinstance(secret, str) or len(secret) < 8:
            raise CredentialsError(f"{where}: secret must be a string of at least 8 characters")
        if not isinstance(feeds, list) or not feeds or not all(isinstance(f, str) for f in feeds):
            raise CredentialsError(f"{where}: feeds must be a non-empty list of feed names")
        if feeds_known is not None and not set(feeds) <= feeds_known:
            raise CredentialsError(f"{where}: unknown feed(s) {sorted(set(feeds) - feeds_known)}; "
                                   f"pushed feeds are {sorted(feeds_known)}")
        if (key_id, scheme) in seen:
            raise CredentialsError(f"{where}: duplicate key_id for scheme {scheme}")
        seen.add((key_id, scheme))
        entries.append(Credential(key_id, scheme, secret, frozenset(feeds)))
    window = data.get("replay_window_s", DEFAULT_REPLAY_WINDOW_S)
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 3600:
        raise CredentialsError("replay_window_s must be an integer between 1 and 3600")
    realm = data.get("realm", DEFAULT_REALM)
    if not isinstance(realm, str) or not realm or any(ch in realm for ch in '"\\\r\n'):
        raise CredentialsError("realm must be a non-empty string without quotes, backslashes or line breaks")
    return Credentials(tuple(entries), window, realm)


def load_credentials(path: Path, *, known_feeds: Iterable[str] | None = None) -> Credentials:
    """Credentials from a ``.toml`` (else JSON) file; `CredentialsError` names the file on failure."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"ingest credentials {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise CredentialsError(f"ingest credentials {path}: the top level must be a table/object")
    try:
        return parse_credentials(data, known_feeds=known_feeds)
    except CredentialsError as exc:
        raise CredentialsError(f"ingest credentials {path}: {exc}") from None


# --------------------------------------------------------------------------- signing (senders)
def sign(secret: str | bytes, timestamp: str, body: bytes, nonce: str | None = None) -> str:
    """Hex HMAC-SHA256 of ``timestamp + "\\n" + body`` (with a nonce: ``timestamp + "\\n" + nonce +
    "\\n" + body``) under `secret`."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    head = timestamp if nonce is None else f"{timestamp}\n{nonce}"
    return hmac.new(key, head.encode("utf-8") + b"\n" + body, hashlib.sha256).hexdigest()


def signed_headers(key_id: str, secret: str | bytes, body: bytes, now_s: float | None = None,
                   *, nonce: str | None = None) -> dict[str, str]:
    """The ``X-Pingan-*`` headers of an HMAC-signed push of `body` (the nonce header when given)."""
    ts = str(int(time.time() if now_s is None else now_s))
    out = {HEADER_KEY_ID: key_id, HEADER_TIMESTAMP: ts, HEADER_SIGNATURE: sign(secret, ts, body, nonce)}
    if nonce is not None:
        out[HEADER_NONCE] = nonce
    return out


def basic_header(user: str, password: str) -> str:
    """``Authorization`` value of HTTP Basic."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")


def digest_header(challenge: str, user: str, password: str, method: str, uri: str,
                  *, nc: int = 1, cnonce: str | None = None) -> str:
    """``Authorization`` value answering a ``WWW-Authenticate: Digest`` challenge (qop=auth when offered)."""
    p = parse_digest_params(challenge)
    realm, nonce = p.get("realm", ""), p.get("nonce", "")
    qop = "auth" if "auth" in [q.strip() for q in p.get("qop", "").split(",")] else None
    cnonce = cnonce or secrets.token_hex(8)
    ncs = f"{nc:08x}"
    resp = digest_response(user, realm, password, method, uri, nonce, qop=qop, nc=ncs, cnonce=cnonce)
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
             f'response="{resp}"', "algorithm=MD5"]
    if qop:
        parts += [f"qop={qop}", f"nc={ncs}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------- verification (receiver)
@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of one verification. ``reason``: a short machine code (metrics label), ``detail``:
    the human sentence; ``challenge``: a ``WWW-Authenticate`` value to send with the 401."""

    ok: bool
    reason: str = "ok"
    detail: str = ""
    key_id: str | None = None
    challenge: str | None = None
    replay_key: tuple[str, str] | None = None


def _fail(reason: str, detail: str, challenge: str | None = None, key_id: str | None = None) -> Verdict:
    return Verdict(False, reason, detail, key_id, challenge)


class _Expiring:
    """Bounded set of keys with expiry (oldest evicted first when full)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[Any, float] = OrderedDict()

    def prune(self, now: float) -> None:
        while self._items:
            key, expiry = next(iter(self._items.items()))
            if expiry > now:
                break
            self._items.popitem(last=False)

    def get(self, key: Any, now: float) -> float | None:
        expiry = self._items.get(key)
        return expiry if expiry is not None and expiry > now else None

    def add(self, key: Any, expiry: float) -> None:
        self._items[key] = expiry
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def discard(self, key: Any) -> None:
        self._items.pop(key, None)


class Authenticator:
    """Verifies pushes against `Credentials` (see module contract). Keeps, in memory and bounded,
    the HMAC signatures seen within the replay window and the digest nonces it issued; a receiver
    process has one. `clock` (seconds) and `nonce_factory` are injectable for tests."""

    def __init__(self, credentials: Credentials, *, clock: Callable[[], float] = time.time,
                 nonce_factory: Callable[[], str] = lambda: secrets.token_hex(16),
                 nonce_ttl_s: float = 300.0, max_entries: int = 100_000) -> None:
        self.credentials = credentials
        self.clock = clock
        self.nonce_factory = nonce_factory
        self.nonce_ttl_s = nonce_ttl_s
        self._signatures = _Expiring(max_entries)
        self._nonces = _Expiring(max_entries)
        self._nonce_counts = _Expiring(max_entries)

    def verify(self, feed: str, method: str, uri: str, headers: Mapping[str, str], body: bytes) -> Verdict:
        """Is this push (its feed, method, request URI, headers, body) from a credential of the feed?

        Never raises: header values a scheme cannot parse (non-ASCII, undecodable bytes that arrive
        as surrogates, bad base64) are a "malformed" failure like any other refusal."""
        try:
            return self._verify(feed, method, uri, headers, body)
        except (ValueError, TypeError) as exc:  # UnicodeError and binascii.Error are ValueErrors
            return _fail("malformed", f"credentials in the request headers cannot be read ({type(exc).__name__})")

    def _verify(self, feed: str, method: str, uri: str, headers: Mapping[str, str], body: bytes) -> Verdict:
        h = {k.lower(): v for k, v in headers.items()}
        creds = self.credentials.for_feed(feed)
        if not creds:
            return _fail("no-credential", f"no credential in the ingest credentials may push to {feed!r}")
        schemes = {c.scheme for c in creds}
        auth = h.get("authorization", "").strip()
        lower = auth.lower()
        if "hmac" in schemes and h.get(HEADER_SIGNATURE.lower()):
            return self._hmac(feed, h, body)
        if "token" in schemes and (lower.startswith("bearer ") or h.get(HEADER_TOKEN.lower())):
            return self._token(feed, auth[7:].strip() if lower.startswith("bearer ") else h[HEADER_TOKEN.lower()])
        if "digest" in schemes and lower.startswith("digest "):
            return self._digest(feed, method, uri, auth)
        if "basic" in schemes and lower.startswith("basic "):
            return self._basic(feed, auth[6:].strip())
        if "digest" in schemes:  # the first leg of the Digest handshake, not (yet) a failure
            return _fail("challenge", f"{feed} pushes must authenticate ({', '.join(sorted(schemes))}); "
                                      "answer the Digest challenge", self._challenge())
        return _fail("missing", f"{feed} pushes must authenticate ({', '.join(sorted(schemes))})")

    def settle(self, verdict: Verdict, kept: bool) -> None:
        """After the push was answered: a signature whose payload was kept (2xx/400) stays spent;
        one whose payload was not (429/503/5xx) is released so the sender may re-send it as is."""
        if verdict.replay_key is not None and not kept:
            self._signatures.discard(verdict.replay_key)

    # ------------------------------------------------------------------ schemes
    def _hmac(self, feed: str, h: Mapping[str, str], body: bytes) -> Verdict:
        key_id = h.get(HEADER_KEY_ID.lower(), "")
        ts = h.get(HEADER_TIMESTAMP.lower(), "")
        sig = h.get(HEADER_SIGNATURE.lower(), "").strip().lower().removeprefix("sha256=")
        cred = self.credentials.by_key_id(key_id, "hmac") if key_id else None
        if cred is None:
            return _fail("unknown-key", f"{HEADER_KEY_ID} {key_id[:64]!r} is not an HMAC key of the receivers")
        if feed not in cred.feeds:
            return _fail("feed-not-allowed", f"key {key_id!r} may not push to {feed!r}", key_id=key_id)
        if not (ts.isascii() and ts.isdigit()) or len(ts) > 12:
            return _fail("bad-timestamp", f"{HEADER_TIMESTAMP} must be Unix seconds", key_id=key_id)
        now = self.clock()
        window = self.credentials.replay_window_s
        if abs(now - int(ts)) > window:
            return _fail("stale", f"timestamp {ts} is more than {window} s from the receiver's clock", key_id=key_id)
        nonce = h.get(HEADER_NONCE.lower())
        if nonce is not None and not 0 < len(nonce) <= 64:
            return _fail("bad-nonce", f"{HEADER_NONCE} must have 1 to 64 characters", key_id=key_id)
        if not (sig.isascii() and hmac.compare_digest(sign(cred.secret, ts, body, nonce), sig)):
            return _fail("bad-signature", "signature does not match the body and timestamp", key_id=key_id)
        replay_key = (key_id, sig)
        self._signatures.prune(now)
        if self._signatures.get(replay_key, now) is not None:
            return _fail("replayed", "this signed request was already received", key_id=key_id)
        self._signatures.add(replay_key, int(ts) + window + 1)
        return Verdict(True, key_id=key_id, replay_key=replay_key)

    def _token(self, feed: str, token: str) -> Verdict:
        for cred in self.credentials.for_feed(feed, "token"):
            if hmac.compare_digest(cred.secret.encode("utf-8"), token.encode("utf-8", "surrogateescape")):
                return Verdict(True, key_id=cred.key_id)
        return _fail("bad-token", f"the token is not one of {feed}'s")

    def _basic(self, feed: str, encoded: str) -> Verdict:
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text handed to b64decode
            return _fail("malformed", "Basic credentials are not base64 user:password")
        cred = self.credentials.by_key_id(user, "basic")
        if cred is None or feed not in cred.feeds or not hmac.compare_digest(
                cred.secret.encode("utf-8"), password.encode("utf-8")):
            return _fail("bad-password", f"user or password not valid for {feed}", key_id=user or None)
        return Verdict(True, key_id=user)

    def _challenge(self, *, stale: bool = False) -> str:
        nonce = self.nonce_factory()
        now = self.clock()
        self._nonces.prune(now)
        self._nonces.add(nonce, now + self.nonce_ttl_s)
        return make_challenge(self.credentials.realm, nonce, qop="auth", stale=stale)

    def _digest(self, feed: str, method: str, uri: str, auth: str) -> Verdict:
        p = parse_digest_params(auth)
        user, nonce = p.get("username", ""), p.get("nonce", "")
        cred = self.credentials.by_key_id(user, "digest") if user else None
        if cred is None or feed not in cred.feeds:
            return _fail("bad-password", f"user {user[:64]!r} may not push to {feed!r}", self._challenge(),
                         key_id=user or None)
        now = self.clock()
        if self._nonces.get(nonce, now) is None:
            return _fail("stale-nonce", "digest nonce unknown or expired; answer the new challenge",
                         self._challenge(stale=True), key_id=user)
        if p.get("uri") != uri:
            return _fail("bad-digest", "digest uri does not match the request", self._challenge(), key_id=user)
        if not verify_digest(auth, method, cred.secret, self.credentials.realm, nonce=nonce):
            return _fail("bad-password", f"digest response not valid for user {user!r}", self._challenge(),
                         key_id=user)
        count_key = (nonce, p.get("nc"), p.get("cnonce"))
        if p.get("qop") is None:
            self._nonces.discard(nonce)  # without qop a nonce is good for one request
        elif self._nonce_counts.get(count_key, now) is not None:
            return _fail("replayed", "this digest (nonce, nc) was already used", self._challenge(), key_id=user)
        else:
            self._nonce_counts.prune(now)
            self._nonce_counts.add(count_key, now + self.nonce_ttl_s)
        return Verdict(True, key_id=user)
