"""10,000 malformed inputs over HTTP: every one is a 4xx with a reason and exactly one dead letter.

Inputs (deterministic: hypothesis with ``derandomize=True``) are
* hypothesis mutations of the fixture payloads (byte flips, truncation, deleted/duplicated slices,
  inserted bytes, a field value replaced by junk) sent to their own endpoint or to another one,
  under the right content type or a wrong one;
* random bytes, to any endpoint under any content type;
* XML attacks: billion laughs / quadratic blow-up entity bombs, external entities (file and URL),
  external DTDs, parameter entities — wrapped as GB/T 28181 ``Notify`` and ISAPI alerts;
* truncated and broken multipart bodies (cut anywhere, wrong/missing boundary, no XML part).

Only inputs the pure translate functions reject outright (no record, no dropped heartbeat; or the
translator *raises*, which is kept because the receiver must still answer 4xx) are sent, so each
must be answered 400 with ``{"error","reason"}`` and produce exactly one dead letter. The receivers
run as a `pingan connectors run` subprocess: it must still answer /healthz 200 afterwards.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings as hsettings, strategies as st

from infra.processes import ConnectorsProcess, isolated_settings
from tests.harness.kafka import delete_topics
from connectors.ingest.receiver import ROUTES, Payload, default_translators
from connectors.sources.devices import DeviceRegistry
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_INPUTS = 10_000
CONCURRENCY = 24
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REGISTRY = FIXTURES / "isapi" / "devices.csv"
SOURCE_OF_DIR = {"gb28181": "gb28181", "isapi": "isapi", "grid": "grid", "door": "door", "mediation": "mediation"}
CONTENT_TYPES = ("application/xml", "Application/MANSCDP+xml", "text/xml; charset=GB2312", "application/json",
                 "application/json; charset=utf-8", "multipart/form-data; boundary=MIME_boundary",
                 "multipart/form-data", "multipart/mixed; boundary=x", "image/jpeg", "text/plain",
                 "application/octet-stream", "text/csv", "application/x-www-form-urlencoded", None)

Case = tuple[str, str | None, bytes]  # (source, content type, body)


def fixture_seeds() -> list[Case]:
    """Every fixture payload with its endpoint and declared content type."""
    import json

    seeds: list[Case] = []
    for d, source in SOURCE_OF_DIR.items():
        folder = FIXTURES / d
        manifest = json.loads((folder / "manifest.json").read_text()) if (folder / "manifest.json").exists() else {}
        for f in sorted(folder.iterdir()):
            if f.name in ("manifest.json", "devices.csv") or f.suffix in (".csv", ".xlsx", ".jpg"):
                continue
            if d == "gb28181" and f.name.startswith("sip_"):
                continue
            ctype = manifest.get(f.name, {}).get("content_type") or (
                "Application/MANSCDP+xml" if d == "gb28181" else
                "application/json" if f.suffix == ".json" else "application/xml")
            if f.suffix == ".bin" and not ctype.startswith("multipart"):
                ctype = "multipart/form-data; boundary=MIME_boundary"
            seeds.append((source, ctype, f.read_bytes()))
    return seeds


def xml_attacks() -> list[Case]:
    """Entity bombs, external entities and DTDs as camera payloads."""
    def laughs(depth: int, width: int) -> str:
        ents = ['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * width}">'
                                         for i in range(1, depth)]
        return f"<!DOCTYPE Notify [{''.join(ents)}]>", f"&l{depth - 1};"

    out: list[Case] = []
    doctypes: list[tuple[str, str]] = [laughs(d, w) for d in (3, 6, 10) for w in (5, 10)]
    doctypes.append((f'<!DOCTYPE Notify [<!ENTITY a "{"x" * 50_000}">]>', "&a;" * 200))  # quadratic blow-up
    for target in ("file:///etc/passwd", "http://127.0.0.1:1/evil", "file:///dev/random"):
        doctypes.append((f'<!DOCTYPE Notify [<!ENTITY xxe SYSTEM "{target}">]>', "&xxe;"))
        doctypes.append((f'<!DOCTYPE Notify SYSTEM "{target}">', "x"))
        doctypes.append((f'<!DOCTYPE Notify [<!ENTITY % p SYSTEM "{target}"> %p;]>', "x"))
    for dt, ref in doctypes:
        notify = (f'<?xml version="1.0" encoding="UTF-8"?>{dt}<Notify><CmdType>Alarm</CmdType><SN>1</SN>'
                  f'<DeviceID>51322110001320000123</DeviceID><AlarmPriority>1</AlarmPriority><AlarmMethod>5'
                  f'</AlarmMethod><AlarmTime>2026-07-14T16:23:32</AlarmTime><AlarmDescription>{ref}'
                  f'</AlarmDescription></Notify>').encode()
        alert = (f'<?xml version="1.0"?>{dt.replace("Notify", "EventNotificationAlert")}<EventNotificationAlert>'
                 f'<ipAddress>10.51.32.17</ipAddress><macAddress>44:19:b6:0a:11:02</macAddress><channelID>1'
                 f'</channelID><dateTime>2026-07-14T16:25:10+08:00</dateTime><activePostCount>1</activePostCount>'
                 f'<eventType>VMD</eventType><eventState>active</eventState><eventDescription>{ref}'
                 f'</eventDescription></EventNotificationAlert>').encode()
        out += [("gb28181", "Application/MANSCDP+xml", notify), ("isapi", "application/xml", alert),
                ("door", "application/xml", alert)]
        boundary = "MIME_boundary"
        mp = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"MoveDetection.xml\"\r\n"
              f"Content-Type: application/xml\r\n\r\n").encode() + alert + f"\r\n--{boundary}--\r\n".encode()
        out.append(("isapi", f"multipart/form-data; boundary={boundary}", mp))
    return out


# --------------------------------------------------------------------------------------------
# hypothesis strategies
# --------------------------------------------------------------------------------------------

def mutations(seeds: list[Case]) -> st.SearchStrategy[Case]:
    """A fixture, mutated 1-4 times, maybe re-addressed and re-labelled."""
    def apply(body: bytes, op: tuple[str, int, int, bytes]) -> bytes:
        kind, a, b, junk = op
        if not body:
            return junk
        i, j = sorted((a % (len(body) + 1), b % (len(body) + 1)))
        if kind == "truncate":
            return body[:i]
        if kind == "flip":
            return body[:i] + bytes([body[i % len(body)] ^ (1 + b % 255)]) + body[i + 1:]
        if kind == "delete":
            return body[:i] + body[j:]
        if kind == "insert":
            return body[:i] + junk + body[i:]
        if kind == "duplicate":
            return body[:j] + body[i:j] + body[j:]
        if kind == "replace_value":  # a value between '>' and '<' or ':' and ',' becomes junk
            k = body.find(b">", i)
            m = body.find(b"<", k + 1) if k >= 0 else -1
            if k >= 0 and m > k:
                return body[:k + 1] + junk + body[m:]
            k = body.find(b":", i)
            m = body.find(b",", k + 1) if k >= 0 else -1
            return body[:k + 1] + junk + body[m:] if k >= 0 and m > k else body + junk
        return body

    op = st.tuples(st.sampled_from(("truncate", "flip", "delete", "insert", "duplicate", "replace_value")),
                   st.integers(0, 1 << 16), st.integers(0, 1 << 16),
                   st.one_of(st.binary(max_size=24), st.sampled_from((b"", b"\x00", b"\xff\xfe", b"null", b"-1",
                                                                      b"<", b"]]>", b"{", b'"', b"9" * 40,
                                                                      "岷江".encode("gbk")))))
    return st.builds(
        lambda seed, ops, retarget, retype: (
            retarget or seed[0], (retype if retype != "keep" else seed[1]),
            _fold(seed[2], ops, apply)),
        st.sampled_from(seeds), st.lists(op, min_size=1, max_size=4),
        st.one_of(st.none(), st.none(), st.sampled_from(sorted(ROUTES))),
        st.one_of(st.just("keep"), st.just("keep"), st.sampled_from(CONTENT_TYPES)))


def _fold(body: bytes, ops: list[Any], apply: Callable[[bytes, Any], bytes]) -> bytes:
    for op in ops:
        body = apply(body, op)
    return body


def random_bytes() -> st.SearchStrategy[Case]:
    """Random bytes to a random endpoint under a random content type."""
    return st.tuples(st.sampled_from(sorted(ROUTES)), st.sampled_from(CONTENT_TYPES), st.binary(max_size=512))


def broken_multipart(seeds: list[Case]) -> st.SearchStrategy[Case]:
    """Multipart fixtures cut anywhere, with a wrong boundary, or without a closing delimiter."""
    mps = [c for c in seeds if c[2].startswith(b"--")] or [seeds[0]]

    def breakit(case: Case, cut: int, how: str) -> Case:
        source, ctype, body = case
        if how == "truncate":
            return source, ctype, body[: cut % max(1, len(body))]
        if how == "boundary":
            return source, "multipart/form-data; boundary=not-the-boundary", body
        if how == "no_boundary_param":
            return source, "multipart/form-data", body
        return source, ctype, body.replace(b"--\r\n", b"\r\n").replace(b"--\n", b"\n")[: max(1, len(body) - 2)]

    return st.builds(breakit, st.sampled_from(mps), st.integers(0, 1 << 16),
                     st.sampled_from(("truncate", "truncate", "boundary", "no_boundary_param", "unterminated")))


def hypothesis_cases(strategy: st.SearchStrategy[Case], n: int) -> list[Case]:
    """Draw ``n`` examples of ``strategy`` (derandomized: the same list every run)."""
    out: list[Case] = []

    @hsettings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
               suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(case: Case) -> None:
        out.append(case)

    collect()
    return out


def is_rejected(translators: dict[str, Any], case: Case) -> bool:
    """True when the pure translator turns the input into nothing but a rejection (or raises)."""
    source, ctype, body = case
    try:
        res = translators[source](Payload(body, ctype, 0, "127.0.0.1"))
    except Exception:  # noqa: BLE001 - kept: the receiver must still answer 4xx, never 5xx
        return True
    return not res.records and not res.dropped and bool(res.rejected)


def malformed_inputs(n: int) -> tuple[list[Case], Counter[str]]:
    """``n`` rejected inputs: XML attacks, then hypothesis mutations / random bytes / broken multipart."""
    translators = default_translators(DeviceRegistry.from_csv(REGISTRY))
    seeds = fixture_seeds()
    kinds: Counter[str] = Counter()
    out: list[Case] = []

    def take(kind: str, cases: list[Case]) -> None:
        for c in cases:
            if len(out) < n and is_rejected(translators, c):
                out.append(c)
                kinds[kind] += 1

    take("xml-attack", xml_attacks())
    take("fixture-bad", [c for c in seeds])
    take("broken-multipart", hypothesis_cases(broken_multipart(seeds), 600))
    take("random-bytes", hypothesis_cases(random_bytes(), 1500))
    budget = 0
    while len(out) < n and budget < 6:
        take("mutation", hypothesis_cases(mutations(seeds), int((n - len(out)) * 1.6) + 100))
        budget += 1
    rng = random.Random(1)
    while len(out) < n:  # top up (never needed in practice): random bytes with a fixed seed
        take("random-bytes", [(rng.choice(sorted(ROUTES)), rng.choice(CONTENT_TYPES),
                               rng.randbytes(rng.randrange(1, 300)))])
    return out, kinds


# --------------------------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------------------------

@pytest.fixture()
def receivers(stack: Settings, tmp_path: Path) -> Iterator[tuple[ConnectorsProcess, Settings]]:
    """`pingan connectors run` on an isolated prefix (topics deleted afterwards)."""
    from streams.ops.provision import provision_topics
    from schemas.catalogue import TOPICS

    s = isolated_settings(stack, run_dir=tmp_path / "run", dev_mode=True)  # malformed input, not auth: open receiver
    provision_topics(s)
    proc = ConnectorsProcess(s, registry=REGISTRY, log_path=tmp_path / "connectors.log").start()
    try:
        yield proc, s
    finally:
        proc.stop()
        delete_topics([s.topic(t.name) for t in TOPICS])


async def post_cases(url: str, cases: list[Case]) -> list[tuple[int, Any]]:
    """POST every case (bounded concurrency); (status, JSON body or text) in input order."""
    out: list[tuple[int, Any]] = [(0, None)] * len(cases)
    sem = asyncio.Semaphore(CONCURRENCY)
    conn = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def one(i: int, case: Case) -> None:
            source, ctype, body = case
            headers = {"Content-Type": ctype} if ctype else {"Content-Type": ""}
            async with sem:
                try:
                    async with session.post(url + ROUTES[source], data=body, headers=headers) as r:
                        text = await r.text(errors="replace")
                        try:
                            import json

                            out[i] = (r.status, json.loads(text))
                        except ValueError:
                            out[i] = (r.status, text)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    out[i] = (-1, f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(i, c) for i, c in enumerate(cases)))
    return out


def test_ten_thousand_malformed_inputs(receivers: tuple[ConnectorsProcess, Settings]) -> None:
    from schemas.serde import default_store
    from tests.harness.kafka import read_topic

    proc, settings = receivers
    t0 = time.monotonic()
    cases, kinds = malformed_inputs(N_INPUTS)
    t_gen = time.monotonic() - t0
    assert len(cases) == N_INPUTS
    assert kinds["xml-attack"] >= 30 and kinds["mutation"] > 5000 and kinds["random-bytes"] > 500, kinds
    assert kinds["broken-multipart"] > 50, kinds
    assert set(c[0] for c in cases) == set(ROUTES)

    t1 = time.monotonic()
    answers = asyncio.run(post_cases(proc.url, cases))
    t_post = time.monotonic() - t1
    statuses = Counter(s for s, _ in answers)
    bad = [(cases[i][:2], cases[i][2][:80], a) for i, a in enumerate(answers)
           if not (400 <= a[0] < 500 and isinstance(a[1], dict) and a[1].get("error") and a[1].get("reason"))]
    assert not bad, (statuses, bad[:5])
    assert proc.alive(), proc.log_tail()
    health = proc.healthz()
    assert health is not None and health["status"] == "ok" and health["kafka"] == "ok", health

    # exactly one dead letter per input, each with stage, error class and reason
    deadline = time.monotonic() + 60
    letters: list[Any] = []
    while time.monotonic() < deadline:
        letters = read_topic(settings.kafka_bootstrap, settings.topic("deadletters.v1"), idle_s=3)
        if len(letters) >= N_INPUTS:
            break
    assert len(letters) == N_INPUTS, (len(letters), statuses)
    store = default_store()
    by_source: Counter[str] = Counter()
    for m in letters:
        name, dl = store.decode(m.value)
        assert name == "pingan.DeadLetter"
        assert dl["stage"] == "translate" and dl["error_class"] and dl["reason"] and dl["error_type"], dl
        by_source[dl["source"]] += 1
    assert by_source == Counter(c[0] for c in cases)
    # every raw topic stayed empty
    for t in ("raw.camera.v1", "raw.grid.v1", "raw.mediation.v1", "raw.door.v1"):
        assert read_topic(settings.kafka_bootstrap, settings.topic(t), idle_s=1) == [], t
    metrics = proc.metrics()
    assert "pingan_receiver_dead_letters_lost_total" not in metrics or all(
        line.endswith(" 0.0") for line in metrics.splitlines() if line.startswith("pingan_receiver_dead_letters_lost"))
    print(f"fuzz: {dict(kinds)}; statuses {dict(statuses)}; generated in {t_gen:.1f}s, posted in {t_post:.1f}s "
          f"({N_INPUTS / t_post:.0f}/s)")
