"""`pingan simulate --send`: replay the simulated county to running receivers, paced and bounded.

HTTP feeds are POSTed with aiohttp to the receiver paths of docs/native-formats.md, authenticated
like the real senders with the receivers' ingest credentials (`PushAuth`: HMAC-signed, token, or
HTTP Digest/Basic answering the receiver's challenge, whichever the file gives the feed; no
credentials: unsigned, for a dev-mode receiver); 110 rows are inserted into the alarm desk's JJD
table through SQLAlchemy (any URL: sqlite, postgresql …).
Generation is continuous: background days follow each other with fresh ids until
`rate × minutes` deliveries have been made, then the sender stops by itself.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import aiohttp

from connectors.sources.auth import Credential, Credentials, basic_header, digest_header, signed_headers

from .formats import ALARM110_COLUMNS, alarm110_row, http_request
from .model import build_world
from .scenarios import Builder, event_stream
from .writer import Delivery, deliveries

# enough background days for any bounded run; generation is lazy, so this costs nothing
_HORIZON_DAYS = 100_000


def delivery_stream(seed: int, scale: float) -> Iterator[Delivery]:
    """Endless (lazily generated) deliveries: scenarios, then day after day of fresh background."""
    return deliveries(event_stream(Builder(build_world(seed)), _HORIZON_DAYS, scale))


@dataclass
class SendLog:
    """What happened to every delivery of a `send` run (for ``--report``): feed, native id, whether it
    was the simulator's duplicate delivery, the endpoint and the status (HTTP code or DB outcome)."""

    entries: list[tuple[str, str, bool, str, str]] = field(default_factory=list)

    def add(self, d: Delivery, endpoint: str, status: str) -> None:
        """Record one delivery's outcome."""
        self.entries.append((d.event.feed, d.event.native_id, d.duplicate, endpoint, status))

    def to_json(self, counts: Counter[tuple[str, str]], **meta: Any) -> dict[str, Any]:
        """The report: counts per endpoint and status, per feed and status, duplicates, and the native ids
        per feed and status (in delivery order, duplicates appear twice)."""
        by_feed: dict[str, Counter[str]] = {}
        ids: dict[str, dict[str, list[str]]] = {}
        dups: Counter[str] = Counter()
        for feed, native_id, dup, _endpoint, status in self.entries:
            by_feed.setdefault(feed, Counter())[status] += 1
            ids.setdefault(feed, {}).setdefault(status, []).append(native_id)
            if dup:
                dups[feed] += 1
        return {
            **meta,
            "total": sum(counts.values()),
            "counts": [{"endpoint": ep, "status": st, "count": n} for (ep, st), n in sorted(counts.items())],
            "by_feed": {f: dict(c) for f, c in sorted(by_feed.items())},
            "duplicates": dict(dups),
            "native_ids": ids,
        }

    def write(self, path: Path, counts: Counter[tuple[str, str]], **meta: Any) -> None:
        """Write :meth:`to_json` to ``path`` (UTF-8 JSON)."""
        path.write_text(json.dumps(self.to_json(counts, **meta), ensure_ascii=False, indent=1), encoding="utf-8")


_PREFERENCE = ("hmac", "token", "digest", "basic")


class PushAuth:
    """Authenticates pushes as the real senders do, with one credential per feed from `Credentials`
    (the first of hmac, token, digest, basic). Digest: the receiver's last challenge per path is
    reused with an increasing nonce count; a 401 fetches a fresh one and the push is re-sent once."""

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self._challenges: dict[str, tuple[str, int]] = {}

    def credential(self, feed: str) -> Credential | None:
        """The credential used for `feed` (None: unauthenticated)."""
        if self.credentials is None:
            return None
        for scheme in _PREFERENCE:
            found = self.credentials.for_feed(feed, scheme)
            if found:
                return found[0]
        return None

    def headers(self, feed: str, path: str, body: bytes) -> dict[str, str]:
        """Authentication headers of one push (digest: from the cached challenge, if any)."""
        cred = self.credential(feed)
        if cred is None:
            return {}
        if cred.scheme == "hmac":
            return signed_headers(cred.key_id, cred.secret, body, nonce=secrets.token_hex(8))  # re-sends differ
        if cred.scheme == "token":
            return {"Authorization": f"Bearer {cred.secret}"}
        if cred.scheme == "basic":
            return {"Authorization": basic_header(cred.key_id, cred.secret)}
        cached = self._challenges.get(path)
        if cached is None:
            return {}
        challenge, nc = cached
        self._challenges[path] = (challenge, nc + 1)
        return {"Authorization": digest_header(challenge, cred.key_id, cred.secret, "POST", path, nc=nc + 1)}

    def challenged(self, path: str, www_authenticate: str | None) -> bool:
        """Remember a digest challenge; True when the push should be re-sent with it."""
        if not www_authenticate or not www_authenticate.lower().startswith("digest"):
            return False
        self._challenges[path] = (www_authenticate, 0)
        return True

    async def post(self, session: aiohttp.ClientSession, url: str, feed: str, path: str, body: bytes,
                   ctype: str) -> int:
        """POST one push (answering one digest challenge); returns the final HTTP status."""
        for attempt in range(2):
            headers = {"Content-Type": ctype, **self.headers(feed, path, body)}
            async with session.post(url + path, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 401 and attempt == 0 and self.credential(feed) is not None \
                        and self.challenged(path, resp.headers.get("WWW-Authenticate")):
                    continue
                return resp.status
        return 401


class Alarm110Sink:
    """Inserts JJD rows into a SQLAlchemy database (table created if missing)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.engine = sa.create_engine(url)
        meta = sa.MetaData()
        self.table = sa.Table("JJD", meta, *[
            sa.Column(c, sa.String(64 if c != "BJNR" else 2000), primary_key=(c == "JJDBH"))
            for c in ALARM110_COLUMNS])
        meta.create_all(self.engine)

    def insert(self, row: dict[str, str]) -> str:
        """Insert one row; returns a status label."""
        try:
            with self.engine.begin() as conn:
                conn.execute(self.table.insert().values(**row))
            return "inserted"
        except self._sa.exc.IntegrityError:
            return "duplicate-key"

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()


async def send(url: str, rate: float, minutes: float, *, seed: int = 1, scale: float = 1.0,
               alarm110_db: str | None = None, concurrency: int = 32, progress: bool = True,
               timeout_s: float = 10.0, log: SendLog | None = None,
               credentials: Credentials | None = None) -> Counter[tuple[str, str]]:
    """Send `rate × minutes × 60` deliveries at `rate` per second; count (endpoint, status).
    Pushes are authenticated with `credentials` (`PushAuth`; None: unauthenticated).

    With ``log``, every delivery's feed, native id, duplicate flag and outcome is also recorded there."""
    total = max(1, int(rate * minutes * 60))
    counts: Counter[tuple[str, str]] = Counter()
    sink = Alarm110Sink(alarm110_db) if alarm110_db else None
    db_lock = asyncio.Lock()
    sem = asyncio.Semaphore(concurrency)
    base = url.rstrip("/")
    auth = PushAuth(credentials)
    prog: Any
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        prog = Progress(TextColumn("[bold]sending"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    else:
        prog = nullcontext()

    async def one(session: aiohttp.ClientSession, d: Delivery, advance: Any) -> None:
        try:
            ev = d.event
            if ev.feed == "alarm110":
                if sink is None:
                    counts[("db:JJD", "skipped (no --alarm110-db)")] += 1
                    return
                row = dict(zip(ALARM110_COLUMNS, alarm110_row(ev.payload)))
                async with db_lock:
                    status = await asyncio.to_thread(sink.insert, row)
                counts[("db:JJD", status)] += 1
                if log is not None:
                    log.add(d, "db:JJD", status)
                return
            path, ctype, body = http_request(ev)
            try:
                status = str(await auth.post(session, base, ev.feed, path, body, ctype))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = f"error:{type(exc).__name__}"
            counts[(path, status)] += 1
            if log is not None:
                log.add(d, path, status)
        finally:
            sem.release()
            advance()

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        with prog:
            task_id = prog.add_task("send", total=total) if progress else None

            def advance() -> None:
                if progress:
                    prog.advance(task_id)

            async with aiohttp.ClientSession(timeout=timeout) as session:
                tasks: set[asyncio.Task[None]] = set()
                start = time.monotonic()
                for i, d in enumerate(islice(delivery_stream(seed, scale), total)):
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await sem.acquire()
                    task = asyncio.create_task(one(session, d, advance))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
    finally:
        if sink is not None:
            sink.close()
    return counts
