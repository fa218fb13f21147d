"""Minimal pure SIP (RFC 3261) message parser/builder and RFC 2617 MD5 digest helpers.

Enough for a GB/T 28181 platform peer: parse REGISTER/MESSAGE requests and responses (compact
header forms understood), answer them with the mandatory copied headers, and challenge/verify
digest credentials. No sockets, no clocks, no randomness: nonces and tags come from the caller
or are derived deterministically.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

#: RFC 3261 §7.3.3 compact forms (plus a few common extension ones).
COMPACT_FORMS: Final[Mapping[str, str]] = {
    "i": "Call-ID", "f": "From", "t": "To", "v": "Via", "l": "Content-Length",
    "c": "Content-Type", "m": "Contact", "s": "Subject", "k": "Supported", "e": "Content-Encoding",
    "o": "Event", "u": "Allow-Events", "r": "Refer-To",
}

_CANONICAL: Final[Mapping[str, str]] = {
    name.lower(): name for name in (
        "Call-ID", "CSeq", "From", "To", "Via", "Content-Length", "Content-Type", "Contact",
        "Max-Forwards", "User-Agent", "Expires", "WWW-Authenticate", "Authorization", "Subject",
        "Supported", "Content-Encoding", "Event", "Allow-Events", "Refer-To", "Date", "Allow",
        "Proxy-Authenticate", "Proxy-Authorization", "Server", "Record-Route", "Route",
    )
}

MAX_MESSAGE_BYTES: Final = 65535


class SipParseError(ValueError):
    """The bytes are not a well-formed SIP message."""


def canonical_header(name: str) -> str:
    """Canonical spelling of a header name (compact forms expanded, case normalised)."""
    stripped = name.strip()
    lower = stripped.lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    if lower in _CANONICAL:
        return _CANONICAL[lower]
    return "-".join(part.capitalize() for part in stripped.split("-"))


@dataclass(frozen=True, slots=True)
class Headers:
    """Ordered, case-insensitive, multi-valued header list (names stored canonical)."""

    items: tuple[tuple[str, str], ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of a header (compact or full name, any case)."""
        wanted = canonical_header(name).lower()
        for key, value in self.items:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header in order."""
        wanted = canonical_header(name).lower()
        return [value for key, value in self.items if key.lower() == wanted]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class SipMessage:
    """A parsed SIP request (`method`, `uri` set) or response (`status`, `reason` set)."""

    method: str | None
    uri: str | None
    status: int | None
    reason: str | None
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def is_request(self) -> bool:
        """True for requests, False for responses."""
        return self.method is not None

    @property
    def call_id(self) -> str | None:
        """The Call-ID header."""
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str] | None:
        """(sequence number, method) from CSeq, None if absent/invalid."""
        value = self.headers.get("CSeq")
        match = re.fullmatch(r"\s*(\d+)\s+([A-Za-z]+)\s*", value or "")
        return (int(match.group(1)), match.group(2).upper()) if match else None


_REQUEST_LINE = re.compile(r"^([A-Za-z]+) (\S+) (SIP/2\.0)$")
_STATUS_LINE = re.compile(r"^(SIP/2\.0) (\d{3}) ?(.*)$")


def parse_sip(data: bytes) -> SipMessage:
    """Parse one SIP message (request or response). Raises SipParseError when malformed.

    Header folding (continuation lines) is unfolded; compact names are expanded; the body is cut
    to Content-Length when given (a body shorter than Content-Length is an error)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"SIP message is {len(data)} bytes, limit {MAX_MESSAGE_BYTES}")
    data = data.lstrip(b"\r\n")
    sep = data.find(b"\r\n\r\n")
    sep_len = 4
    if sep < 0:
        sep, sep_len = data.find(b"\n\n"), 2
    if sep < 0:
        head, body = data, b""
    else:
        head, body = data[:sep], data[sep + sep_len:]
    try:
        head_text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("SIP header section is not UTF-8") from None
    lines = re.split(r"\r?\n", head_text)
    if not lines or not lines[0].strip():
        raise SipParseError("empty SIP message")
    start = lines[0].strip()
    method = uri = reason = None
    status: int | None = None
    if match := _REQUEST_LINE.match(start):
        method, uri, version = match.group(1).upper(), match.group(2), match.group(3)
    elif match := _STATUS_LINE.match(start):
        version, status, reason = match.group(1), int(match.group(2)), match.group(3).strip()
        if not 100 <= status <= 699:
            raise SipParseError(f"SIP status {status} out of range 100-699")
    else:
        raise SipParseError(f"not a SIP start line: {start[:80]!r}")
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            if not items:
                raise SipParseError("continuation line before any header")
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}")
            continue
        if ":" not in line:
            raise SipParseError(f"malformed header line {line[:80]!r}")
        name, value = line.split(":", 1)
        if not name.strip() or not re.fullmatch(r"[A-Za-z0-9!%*_+`'~.\-]+", name.strip()):
            raise SipParseError(f"malformed header name {name[:40]!r}")
        items.append((canonical_header(name), value.strip()))
    headers = Headers(tuple(items))
    length_text = headers.get("Content-Length")
    if length_text is not None:
        if not length_text.isdigit():
            raise SipParseError(f"Content-Length {length_text!r} is not a number")
        length = int(length_text)
        if length > len(body):
            raise SipParseError(f"body is {len(body)} bytes, Content-Length says {length}")
        body = body[:length]
    return SipMessage(method, uri, status, reason, headers, body, version)


def _tag_for(request: SipMessage) -> str:
    seed = f"{request.call_id}|{request.headers.get('From')}".encode("utf-8", "surrogatepass")
    return hashlib.sha1(seed).hexdigest()[:10]


def build_response(request: SipMessage, status: int, reason: str,
                   extra_headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None, *,
                   to_tag: str | None = None, body: bytes = b"", content_type: str | None = None) -> bytes:
    """Build the response bytes to `request` (RFC 3261 §8.2.6).

    Copies every Via (in order), From, To, Call-ID and CSeq; adds a To tag for non-100 responses
    when the request's To has none (`to_tag`, or a deterministic tag from Call-ID and From);
    appends `extra_headers` (e.g. WWW-Authenticate, Expires, Date) and Content-Length."""
    if not request.is_request:
        raise ValueError("can only respond to a request")
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} out of range 100-699")
    lines = [f"SIP/2.0 {status} {reason}"]
    for via in request.headers.get_all("Via"):
        lines.append(f"Via: {via}")
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            raise ValueError(f"request lacks mandatory header {name}")
        if name == "To" and status != 100 and not re.search(r";\s*tag=", value, re.IGNORECASE):
            value = f"{value};tag={to_tag or _tag_for(request)}"
        lines.append(f"{name}: {value}")
    extras = extra_headers.items() if isinstance(extra_headers, Mapping) else (extra_headers or ())
    for name, value in extras:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError("header names/values must not contain CR or LF")
        lines.append(f"{canonical_header(name)}: {value}")
    if body and content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


# --- RFC 2617 digest (MD5) -----------------------------------------------------------------------

def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def make_challenge(realm: str, nonce: str, *, qop: str | None = None, opaque: str | None = None,
                   stale: bool = False) -> str:
    """Value of a `WWW-Authenticate` header: `Digest realm="…", nonce="…", algorithm=MD5[, qop="auth"]`."""
    for name, value in (("realm", realm), ("nonce", nonce), ("opaque", opaque or "")):
        if '"' in value or "\\" in value or "\r" in value or "\n" in value:
            raise ValueError(f"{name} must not contain quotes, backslashes or line breaks")
    parts = [f'Digest realm="{realm}"', f'nonce="{nonce}"', "algorithm=MD5"]
    if qop:
        parts.append(f'qop="{qop}"')
    if opaque:
        parts.append(f'opaque="{opaque}"')
    if stale:
        parts.append("stale=TRUE")
    return ", ".join(parts)


_PARAM = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


def parse_digest_params(header: str) -> dict[str, str]:
    """Parameters of a `Digest …` Authorization/WWW-Authenticate value (keys lower-case).

    Returns {} when the scheme is not Digest or the value is malformed."""
    text = (header or "").strip()
    if not text[:7].lower() == "digest " and text.lower() != "digest":
        return {}
    rest = text[7:]
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if not match or match.end() == pos:
            return {}
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
        pos = match.end()
    return params


def digest_response(username: str, realm: str, password: str, method: str, uri: str, nonce: str,
                    *, qop: str | None = None, nc: str | None = None, cnonce: str | None = None) -> str:
    """The RFC 2617 MD5 `response` value a client sends (qop None or "auth")."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method.upper()}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


def verify_digest(authorization_header: str, method: str, password: str, realm: str, *,
                  nonce: str | None = None, username: str | None = None) -> bool:
    """True when the Authorization header carries a valid MD5 digest for `password` in `realm`.

    When `nonce`/`username` are given they must match too (nonce freshness is the caller's job:
    pass the nonce you issued). Only algorithm MD5 and qop absent or "auth" are accepted."""
    params = parse_digest_params(authorization_header)
    required = ("username", "realm", "nonce", "uri", "response")
    if not params or any(k not in params for k in required):
        return False
    if params["realm"] != realm:
        return False
    if nonce is not None and params["nonce"] != nonce:
        return False
    if username is not None and params["username"] != username:
        return False
    if params.get("algorithm", "MD5").upper() != "MD5":
        return False
    qop = params.get("qop")
    if qop is not None:
        if qop.lower() != "auth" or "nc" not in params or "cnonce" not in params:
            return False
        if not re.fullmatch(r"[0-9a-fA-F]{8}", params["nc"]):
            return False
    expected = digest_response(params["username"], realm, password, method, params["uri"],
                               params["nonce"], qop=qop, nc=params.get("nc"), cnonce=params.get("cnonce"))
    return hmac.compare_digest(expected, params["response"].lower())
