"""Bearer-token credentials bound to an admin code.

Contract: a credentials source maps a token to ``{"user": …, "admin_code": …}``. Sources: a JSON
or TOML file (``{"tokens": {token: {...}}}`` or the mapping at top level; a key may be the clear
token or ``sha256:<hex of the token>`` so the file need not hold clear tokens), or the JSON mapping
itself — `credentials_from_settings` reads ``settings.search_credentials`` (a file path,
``PINGAN_SEARCH_CREDENTIALS``) else ``settings.search_tokens`` (``PINGAN_SEARCH_TOKENS``); this module
reads no environment. Only SHA-256 digests of tokens are kept in memory; lookups compare digests.
Tokens must be at least 16 characters; admin codes must be 2/4/6/9/12 digits.

`FailureLimiter` counts failed-token attempts per client address in a sliding window
(``Settings.auth_fail_limit`` per ``auth_fail_window_s``); once a client reaches the limit every
request it makes is refused (the server answers 429 with ``Retry-After``) until its oldest failure
leaves the window — a valid token does not lift the block, so the block cannot be used as an
oracle. Behind a proxy all clients share the proxy's address: put the limit at the proxy too.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
import tomllib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.domain import admin
from streams.settings import Settings

MIN_TOKEN_LEN = 16
MAX_TRACKED_CLIENTS = 10_000


class CredentialsError(ValueError):
    """The credentials source is malformed."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user name and the admin code their credential is bound to."""

    user: str
    admin_code: str


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token (what a credentials file may store as ``sha256:<hex>``)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Credentials:
    """Immutable token-digest → `Principal` table."""

    __slots__ = ("_by_digest",)

    def __init__(self, by_digest: Mapping[str, Principal]) -> None:
        self._by_digest = dict(by_digest)

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        return f"Credentials({len(self)} tokens)"

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> "Credentials":
        """Build from ``{token | "sha256:<hex>": {"user": str, "admin_code": str}}`` (or under ``tokens``)."""
        table = mapping.get("tokens", mapping) if isinstance(mapping, Mapping) else None
        if not isinstance(table, Mapping):
            raise CredentialsError("credentials must be a mapping of token → {user, admin_code}")
        out: dict[str, Principal] = {}
        for key, entry in table.items():
            if not isinstance(entry, Mapping):
                raise CredentialsError("each credential needs {user, admin_code}")
            user, code = entry.get("user"), str(entry.get("admin_code", ""))
            if not isinstance(user, str) or not user.strip():
                raise CredentialsError("credential without user")
            if not admin.is_code(code):
                raise CredentialsError(f"credential for {user!r}: invalid admin_code {code!r}")
            key = str(key)
            if key.startswith("sha256:"):
                digest = key[7:].lower()
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise CredentialsError(f"credential for {user!r}: malformed sha256 digest")
            else:
                if len(key) < MIN_TOKEN_LEN:
                    raise CredentialsError(f"credential for {user!r}: token shorter than {MIN_TOKEN_LEN}")
                digest = hash_token(key)
            out[digest] = Principal(user.strip(), code)
        return cls(out)

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal for `token`, or None when it is missing or unknown."""
        if not token:
            return None
        digest = hash_token(token)
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None


def load_credentials_file(path: Path) -> Credentials:
    """Read a ``.json`` or ``.toml`` credentials file."""
    data = path.read_bytes()
    try:
        parsed = tomllib.loads(data.decode("utf-8")) if path.suffix.lower() == ".toml" else json.loads(data)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise CredentialsError(f"{path}: {exc}") from exc
    return Credentials.from_mapping(parsed)


def load_credentials(path: Path | None = None, tokens: str | None = None) -> Credentials:
    """Credentials from the file `path`, else from `tokens` (the JSON mapping itself)."""
    if path is not None:
        return load_credentials_file(path)
    if tokens:
        try:
            return Credentials.from_mapping(json.loads(tokens))
        except ValueError as exc:
            raise CredentialsError(f"search_tokens (PINGAN_SEARCH_TOKENS): {exc}") from exc
    raise CredentialsError("no credentials: pass a file or set PINGAN_SEARCH_CREDENTIALS / PINGAN_SEARCH_TOKENS")


def credentials_from_settings(settings: Settings, path: Path | None = None) -> Credentials:
    """Credentials from `path` (a CLI option), else ``settings.search_credentials``, else ``settings.search_tokens``."""
    return load_credentials(path or settings.search_credentials, settings.search_tokens)


class FailureLimiter:
    """Failed-token attempts per client address in a sliding window (see the module contract)."""

    def __init__(self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_TRACKED_CLIENTS) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("auth_fail_limit must be >= 1 and auth_fail_window_s > 0")
        self.limit, self.window_s, self._clock, self._max_clients = int(limit), float(window_s), clock, max_clients
        self._failures: dict[str, deque[float]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> "FailureLimiter":
        return cls(settings.auth_fail_limit, settings.auth_fail_window_s)

    def _window(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until `client` may try again, or None when it is not blocked."""
        now = self._clock()
        times = self._window(client, now)
        if times is None or len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window_s - now))

    def failed(self, client: str) -> None:
        """Count one failed attempt of `client`."""
        now = self._clock()
        if client not in self._failures and len(self._failures) >= self._max_clients:
            for other in list(self._failures):  # forget expired clients before growing
                self._window(other, now)
            if len(self._failures) >= self._max_clients:
                self._failures.pop(next(iter(self._failures)))
        times = self._window(client, now) or self._failures.setdefault(client, deque())
        times.append(now)
        if len(times) > self.limit:
            times.popleft()
