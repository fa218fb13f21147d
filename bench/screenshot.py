"""The search page on real simulated data, in headless Chromium: the screenshot in docs/ and the
helpers the page's end-to-end tests share (tests/e2e/test_search_page.py, test_jurisdiction_shares.py).

What it does (each step is a function here):

1. ``pingan simulate`` one county day (seed 1) — the same data the e2e tests use;
2. computes the incidents offline with the pure pipeline (``connectors.ingest.files.iter_deliveries`` →
   ``Normalizer`` → ``CountyProcessor``), exactly what a worker would publish for that day;
3. indexes them into a throw-away index prefix through the real ``IncidentSink``;
4. starts ``pingan search serve`` (``streams.web.server.make_app``) on a free port with a
   credentials file for a village, a town and the county;
5. drives the page in Chromium through Playwright's Python API (the Debian ``/usr/bin/chromium``;
   Playwright's own browser download is not used): enters the county token, searches 纠纷, opens
   the linked dispute incident, and saves a screenshot;
6. deletes the index.

The operator page (issue 15) the same way: `operator_incidents` gives the day's incidents their
lifecycle at a wall clock (times shifted so that the last actionable incident opened 62 hours ago: some village deadlines
have passed — ``村级72小时未办结，自动上报镇级`` — others are due within hours), and
`capture_operator` saves ``docs/screenshot-queue.png`` (the work queue), ``docs/screenshot-map.png``
(the offline map with admin areas and incident markers) and ``docs/screenshot-escalation.png`` (an
incident with its escalation reason and deadline). `dispatch` drives 受理 → 分派 → 办结 on an open
incident (the e2e test of the dispatch flow).

Usage (needs Elasticsearch and Kafka, ``pingan infra up``; Chinese text needs fonts-noto-cjk)::

    python -m bench.screenshot [--out docs/screenshot-search.png] [--query 纠纷] [--operator]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from elasticsearch import AsyncElasticsearch

from bench.common import drop_indices
from bench.quality import run_folder
from connectors.elasticsearch.admin import IndexNames, ensure_incident_index
from connectors.elasticsearch.sink import IncidentSink
from infra.processes import ChildProcess, free_port, pingan_command, settings_env, simulate_folder
from streams.domain import lifecycle
from streams.domain.tiers import load_tier_rules
from streams.settings import Settings
from streams.web.auth import hash_token

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "screenshot-search.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: token → (user, admin code): a village (柒山村), its town (三江镇) and the county (汶川县).
CREDENTIALS: dict[str, tuple[str, str]] = {
    "e2e-village-qishan-token-0001": ("柒山村网格员", "513221107201"),
    "e2e-town-sanjiang-token-00001": ("三江镇综治中心", "513221107"),
    "e2e-county-wenchuan-token-001": ("汶川县综治中心", "513221"),
}
VILLAGE_TOKEN, TOWN_TOKEN, COUNTY_TOKEN = CREDENTIALS


def simulate_day(out: Path, seed: int = 1) -> Path:
    """One simulated county day in native formats (the `sim_day` fixture does the same)."""
    return simulate_folder(out, seed=seed)


@functools.lru_cache(maxsize=4)
def _offline(folder: str, secret: str) -> tuple[dict[str, Any], ...]:
    run = run_folder(Path(folder), secret=secret.encode("utf-8"))
    return tuple(inc for proc in run.processors.values() for inc in proc.state.live().values())


def offline_incidents(folder: Path, settings: Settings) -> list[dict[str, Any]]:
    """The live incidents the pure pipeline computes for a simulator folder (`bench.quality.run_folder`,
    cached per folder)."""
    return [dict(i) for i in _offline(str(Path(folder).resolve()), settings.person_key().decode())]


def index_incidents(settings: Settings, incidents: list[Mapping[str, Any]]) -> int:
    """Create ``<prefix>-incidents`` and index `incidents` through the real sink (refreshed)."""
    async def run() -> int:
        es = AsyncElasticsearch([settings.es_url])
        try:
            names = IndexNames(settings.es_index_prefix)
            await ensure_incident_index(es, names, "1s")
            sink = IncidentSink(es, names.alias, refresh=True)
            await sink.setup()
            indexed = 0
            for inc in incidents:
                if sink.add(inc):
                    indexed += (await sink.flush()).indexed
            indexed += (await sink.flush()).indexed
            return indexed
        finally:
            await es.close()

    return asyncio.run(run())


def drop_index(settings: Settings) -> None:
    """Delete the prefix's indices and template."""
    drop_indices(settings)


def write_credentials(path: Path, credentials: Mapping[str, tuple[str, str]] = CREDENTIALS) -> Path:
    """A JSON credentials file (only SHA-256 digests of the tokens, as auth.py allows)."""
    data = {"tokens": {f"sha256:{hash_token(t)}": {"user": u, "admin_code": c} for t, (u, c) in credentials.items()}}
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


@contextlib.contextmanager
def search_server(settings: Settings, credentials_file: Path, workdir: Path,
                  timeout_s: float = 30) -> Iterator[str]:
    """``pingan search serve`` on a free port; yields its base URL, stops it at exit."""
    port = free_port()
    server = ChildProcess(pingan_command("search", "serve", "--host", "127.0.0.1", "--port", str(port),
                                         "--credentials", str(credentials_file),
                                         "--audit-log", str(workdir / "search-audit.jsonl")),
                          settings_env(settings), workdir / "search-server.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_healthy(base + "/healthz", timeout_s, 0.2)
        yield base
    finally:
        server.stop(10)


def launch_chromium(playwright: Any) -> Any:
    """Headless Debian Chromium through Playwright (no download)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def login(page: Any, base_url: str, token: str) -> None:
    """Open the page, enter the token, wait for the first result list and the stats."""
    page.goto(base_url + "/")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")
    page.wait_for_selector("#total:text-matches('共 \\\\d+ 条')")
    page.wait_for_selector("#stats table")


def search(page: Any, query: str) -> dict[str, Any]:
    """Type `query`, submit, and return the API answer the page rendered."""
    page.fill("input[name=q]", query)
    with page.expect_response(lambda r: "/api/incidents?" in r.url and r.request.method == "GET") as info:
        page.click("#search-form button[type=submit]")
    data = info.value.json()
    page.wait_for_function("([n]) => document.getElementById('total').textContent === '共 ' + n + ' 条'",
                           arg=[data["total"]])
    # not "networkidle": the live stream (/api/stream) keeps a connection open
    page.wait_for_selector("#stats table")
    return data


def open_incident(page: Any, snippet_text: str) -> dict[str, Any]:
    """Click the result whose text contains `snippet_text`; return the detail the page rendered."""
    with page.expect_response(lambda r: "/api/incidents/" in r.url) as info:
        page.locator("#results li", has_text=snippet_text).first.click()
    detail = info.value.json()
    page.wait_for_selector("#detail h3:has-text('关联理由')")
    return detail


def capture(base_url: str, out: Path, *, token: str = COUNTY_TOKEN, query: str = "纠纷",
            open_text: str = "王某学", browser: Any = None) -> dict[str, Any]:
    """The documentation screenshot: county credential, a search with results, one incident open.

    Launches Chromium unless a Playwright `browser` is given (a test's own)."""
    if browser is None:
        from playwright.sync_api import sync_playwright  # optional: only the screenshot needs it

        with sync_playwright() as pw:
            own = launch_chromium(pw)
            try:
                return capture(base_url, out, token=token, query=query, open_text=open_text, browser=own)
            finally:
                own.close()
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, device_scale_factor=1,
                                  locale="zh-CN", timezone_id="Asia/Shanghai")
    try:
        page = context.new_page()
        login(page, base_url, token)
        results = search(page, query)
        detail = open_incident(page, open_text)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        return {"total": results["total"], "incident_id": detail["incident_id"], "links": len(detail["links"])}
    finally:
        context.close()


HOUR_MS = 3_600_000
OPENED_H = 62  # the last actionable incident opened this many hours before the wall clock


def shift_times(incident: Mapping[str, Any], delta_ms: int) -> dict[str, Any]:
    """The incident with every event/link/incident time moved by `delta_ms`."""
    def mv(v: Any) -> Any:
        return None if v is None else int(v) + delta_ms

    out = dict(incident)
    for k in ("first_seen", "last_seen", "updated_at", "opening_at"):
        if k in out:
            out[k] = mv(out[k])
    out["events"] = [dict(e, occurred_at=mv(e.get("occurred_at"))) for e in incident.get("events") or []]
    out["links"] = [dict(lk, created_at=mv(lk.get("created_at"))) for lk in incident.get("links") or []]
    out["dispositions"] = [dict(d, at=mv(d.get("at"))) for d in incident.get("dispositions") or []]
    if out.get("recurrence"):
        out["recurrence"] = dict(out["recurrence"], at=mv(out["recurrence"].get("at")))
    return out


def with_lifecycle(incident: Mapping[str, Any], clock_ms: int) -> dict[str, Any]:
    """The incident with its lifecycle fields derived by the pure `streams.domain.lifecycle` at
    `clock_ms` (what the correlate stage computes once it applies dispositions)."""
    rules = load_tier_rules()
    inc = dict(incident)
    inc.setdefault("actionable", any(lifecycle.opens(e, rules) for e in inc.get("events") or []))
    inc.setdefault("dispositions", [])
    return {**inc, **lifecycle.derive(inc, rules, clock_ms)}


def operator_incidents(incidents: list[Mapping[str, Any]], now_ms: int) -> list[dict[str, Any]]:
    """The incidents shifted so that the last actionable one opened `OPENED_H` hours before
    `now_ms`, with their lifecycle at `now_ms`; incidents that would then lie in the future are left out."""
    rules = load_tier_rules()
    opening = [int(i["first_seen"]) for i in incidents
               if any(lifecycle.opens(e, rules) for e in i.get("events") or [])]
    delta = now_ms - OPENED_H * HOUR_MS - max(opening or [int(i["first_seen"]) for i in incidents])
    shifted = (shift_times(i, delta) for i in incidents)
    return [with_lifecycle(i, now_ms) for i in shifted if int(i["last_seen"]) <= now_ms]


def apply_disposition(incident: Mapping[str, Any], disposition: Mapping[str, Any], clock_ms: int) -> dict[str, Any]:
    """The incident after one pingan.Disposition (pure pieces: summary_of, merge, derive), version+1."""
    inc = dict(incident)
    inc["dispositions"] = lifecycle.merge_dispositions(inc.get("dispositions") or [],
                                                       [lifecycle.summary_of(disposition)])
    inc["version"] = int(inc.get("version") or 0) + 1
    inc["updated_at"] = max(int(inc.get("updated_at") or 0), int(disposition["at"]))
    return {**inc, **lifecycle.derive(inc, load_tier_rules(), clock_ms)}


def login_operator(page: Any, base_url: str, token: str) -> None:
    """Log in and wait for the queue, the map's areas and the live stream."""
    login(page, base_url, token)
    page.wait_for_selector("#queue li")
    page.wait_for_selector("#map .area-label")
    page.wait_for_selector("#live-status.on", timeout=20_000)


def open_from_queue(page: Any, incident_id: str) -> None:
    """Open a queue entry and wait for its lifecycle block."""
    page.locator(f"#queue li[data-id='{incident_id}']").click()
    page.wait_for_selector("#detail dl.lifecycle")


def dispatch(page: Any, assignee: str, outcome: str, apply: Any = None) -> list[str]:
    """受理 → 分派 → 办结 on the open incident; `apply(disposition_id)` makes the action take
    effect (a worker, or the test applying it) before the page is expected to show the new status.
    Returns the disposition ids."""
    ids: list[str] = []
    steps = [("accept", None, None, "已受理"), ("assign", "#assignee-input", assignee, "已分派"),
             ("resolve", "#outcome-input", outcome, "已办结")]
    for action, field, value, shown in steps:
        if field:
            page.fill(field, value)
        with page.expect_response(lambda r: r.url.endswith("/actions") and r.request.method == "POST") as info:
            page.click(f"#actions button[data-action={action}]")
        assert info.value.status == 202, info.value.text()
        ids.append(info.value.json()["disposition_id"])
        if apply is not None:
            apply(ids[-1])
        page.wait_for_function("([s]) => (document.getElementById('status-name') || {}).textContent === s",
                               arg=[shown], timeout=20_000)
    return ids


def capture_operator(base_url: str, outdir: Path, escalated_id: str, *, token: str = COUNTY_TOKEN,
                     browser: Any = None) -> dict[str, Any]:
    """docs/screenshot-queue.png, -map.png and -escalation.png (county credential)."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            own = launch_chromium(pw)
            try:
                return capture_operator(base_url, outdir, escalated_id, token=token, browser=own)
            finally:
                own.close()
    context = browser.new_context(viewport={"width": 1600, "height": 1100}, device_scale_factor=1,
                                  locale="zh-CN", timezone_id="Asia/Shanghai")
    try:
        page = context.new_page()
        login_operator(page, base_url, token)
        outdir.mkdir(parents=True, exist_ok=True)
        page.locator("#queue-panel").screenshot(path=str(outdir / "screenshot-queue.png"))
        markers = page.locator("#map path.incident-marker").count()
        page.locator("#map").screenshot(path=str(outdir / "screenshot-map.png"))
        open_from_queue(page, escalated_id)
        page.wait_for_selector("#detail .escalations li")
        page.screenshot(path=str(outdir / "screenshot-escalation.png"))
        return {"queue": page.locator("#queue li.queue-item").count(), "markers": markers,
                "escalation": page.locator("#detail .escalations").inner_text()}
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--query", default="纠纷")
    parser.add_argument("--open", dest="open_text", default="王某学", help="text of the result to open")
    parser.add_argument("--operator", action="store_true",
                        help="the operator page instead: docs/screenshot-queue.png, -map.png, -escalation.png "
                             "(next to --out)")
    args = parser.parse_args(argv)
    base = Settings.from_env()
    settings = Settings(**{**base.model_dump(), "es_index_prefix": f"pingan-shot-{uuid.uuid4().hex[:8]}"})
    with tempfile.TemporaryDirectory(prefix="pingan-shot-") as tmp:
        work = Path(tmp)
        folder = simulate_day(work / "day")
        incidents = offline_incidents(folder, settings)
        if args.operator:
            import time

            incidents = operator_incidents(incidents, int(time.time() * 1000))
        try:
            indexed = index_incidents(settings, incidents)
            creds = write_credentials(work / "credentials.json")
            with search_server(settings, creds, work) as url:
                # (the operator data is time-shifted and cut at the wall clock: the search shot uses the plain day)
                info = {"total": "-", "incident_id": "-", "links": "-"} if args.operator else \
                    capture(url, args.out, query=args.query, open_text=args.open_text)
                if args.operator:
                    escalated = next(i["incident_id"] for i in incidents
                                     if i.get("escalation_history") and i["status"] != "resolved"
                                     and any(s["reason_code"] == "deadline" for s in i["escalation_history"]))
                    shots = capture_operator(url, args.out.parent, escalated)
                    print(f"operator page: {shots['queue']} queued, {shots['markers']} markers, "
                          f"escalation: {shots['escalation']!r}")
        finally:
            drop_index(settings)
    print(f"{indexed} incidents indexed; {args.query!r}: {info['total']} results; "
          f"opened {info['incident_id']} ({info['links']} links) → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
