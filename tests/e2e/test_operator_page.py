"""The operator page end to end in headless Chromium (issue 15): the work queue, an incident's
lifecycle, the dispatch flow 受理 → 分派 → 办结, live updates over /api/stream, the offline map.

The simulated county day is computed offline, given its lifecycle at the wall clock
(`bench.screenshot.operator_incidents`) and indexed; ``pingan search serve`` publishes each action to
the namespace's dispositions.v1. The correlate stage that applies dispositions is not wired on this
branch yet, so the test applies each disposition it reads back from Kafka with the pure pieces
(`bench.screenshot.apply_disposition`: lifecycle.summary_of / merge_dispositions / derive),
re-indexes the incident and publishes it to incidents.v1 — the page then updates from the stream.
"""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.screenshot import (
    COUNTY_TOKEN, CREDENTIALS, VILLAGE_TOKEN, apply_disposition, capture_operator, dispatch, drop_index,
    index_incidents, launch_chromium, login_operator, offline_incidents, open_from_queue, operator_incidents,
    search_server, write_credentials,
)
from connectors.ingest.producer import RecordProducer
from infra.processes import isolated_settings
from schemas.serde import default_store
from streams.domain.incidents import redirect
from streams.ops.provision import provision_topics
from streams.settings import Settings
from streams.web.jurisdiction import can_see
from tests.harness.kafka import read_topic
from tests.harness.leaks import delete_namespace
from tests.harness.peers import chromium_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Served:
    def __init__(self, base_url: str, settings: Settings, incidents: list[dict[str, Any]]) -> None:
        self.base_url, self.settings = base_url, settings
        self.incidents = {i["incident_id"]: i for i in incidents}


@pytest.fixture(scope="module")
def served(stack: Settings, sim_day: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    settings = isolated_settings(stack, registry=sim_day / "registry.csv",
                                 es_index_prefix=f"pingan-test-ops-{uuid.uuid4().hex[:8]}")
    work = tmp_path_factory.mktemp("operator-page")
    try:
        provision_topics(settings, only=["incidents.v1", "dispositions.v1", "audit-anchors.v1"])
        incidents = operator_incidents(offline_incidents(sim_day, settings), int(time.time() * 1000))
        assert index_incidents(settings, incidents) == len(incidents)
        with search_server(settings, write_credentials(work / "credentials.json"), work) as url:
            yield Served(url, settings, incidents)
    finally:
        drop_index(settings)
        delete_namespace(settings)


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1100}, locale="en-US",
                                  timezone_id="America/New_York")  # the page must not depend on either
    try:
        yield context.new_page()
    finally:
        context.close()


def _publish_incident(settings: Settings, incident: dict[str, Any]) -> None:
    async def run() -> None:
        producer = RecordProducer(settings.kafka_bootstrap)
        try:
            await producer.send(settings.topic("incidents.v1"), incident["incident_id"],
                                producer.encode("pingan.Incident", incident), timeout=10)
        finally:
            await producer.stop()
    asyncio.run(run())


def _publish_live(settings: Settings, *incidents: dict[str, Any]) -> None:
    """Publish incident records in order from another thread (Playwright's sync API runs an event
    loop in this one): the search server's live stream announces them to the page."""
    with ThreadPoolExecutor(1) as pool:
        for incident in incidents:
            pool.submit(_publish_incident, settings, incident).result()


def _queue_ids(page: Any) -> list[str]:
    return page.locator("#queue li.queue-item").evaluate_all("ls => ls.map(l => l.dataset.id)")


def test_dispatch_flow(served: Served, page: Any) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    login_operator(page, served.base_url, COUNTY_TOKEN)
    queue_ids = _queue_ids(page)
    county = CREDENTIALS[COUNTY_TOKEN][1]
    expected = sorted((i for i in served.incidents.values()
                       if can_see(county, i) and i.get("actionable") and i["status"] not in ("resolved", "merged")),
                      key=lambda i: (i["deadline_at"] is None, i["deadline_at"] or 0))
    # the queue shows the first 100 (GET /api/queue's default size): the ones due soonest
    assert set(queue_ids) <= {i["incident_id"] for i in expected}
    assert len(queue_ids) == min(len(expected), 100) and len(queue_ids) > 10
    shown = [served.incidents[i]["deadline_at"] for i in queue_ids if served.incidents[i]["deadline_at"] is not None]
    rest = [i["deadline_at"] for i in expected if i["incident_id"] not in set(queue_ids) and i["deadline_at"]]
    assert not rest or not shown or max(shown) <= min(rest)
    deadlines = [served.incidents[i]["deadline_at"] for i in queue_ids]
    assert [d for d in deadlines if d is not None] == sorted(d for d in deadlines if d is not None)
    assert page.locator("#queue li.due-soon, #queue li.overdue").count() > 0
    target = next(i for i in queue_ids if served.incidents[i]["status"] == "open")
    open_from_queue(page, target)
    text = page.locator("#detail").inner_text()
    assert "待受理" in text and not re.search(r"\b(party|caller|applicant|reporter):", text)
    assert re.search(r"办理时限 \d{4}-\d{2}-\d{2} \d{2}:\d{2}", text)

    incident = dict(served.incidents[target])

    def apply(disposition_id: str) -> None:
        nonlocal incident
        records = [default_store().decode(m.value)[1] for m in
                   read_topic(served.settings.kafka_bootstrap, served.settings.topic("dispositions.v1"), idle_s=2)]
        record = next(r for r in records if r["disposition_id"] == disposition_id)
        assert record["incident_id"] == target and record["actor"] == CREDENTIALS[COUNTY_TOKEN][0]
        incident = apply_disposition(incident, record, int(time.time() * 1000))
        # Playwright's sync API runs an event loop in this thread: the asyncio I/O runs in another
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(index_incidents, served.settings, [incident]).result() == 1
            pool.submit(_publish_incident, served.settings, incident).result()

    ids = dispatch(page, "李某网格员", "双方达成调解协议，已履行", apply)
    assert len(set(ids)) == 3
    detail = page.locator("#detail").inner_text()
    assert "李某网格员" in detail and "双方达成调解协议" in detail
    assert [li for li in page.locator("#detail ol.dispositions li").all_inner_texts()][-1].find("办结") >= 0
    page.wait_for_function("([id]) => !document.querySelector(`#queue li[data-id='${id}']`)", arg=[target],
                           timeout=20_000)  # resolved: out of the queue
    assert all(u.startswith(served.base_url) for u in requests), [u for u in requests if not u.startswith(served.base_url)]


def test_typing_survives_a_live_refresh(served: Served, page: Any) -> None:
    """A live update of the open incident re-renders its panel: what the operator was typing (the
    action fields, the focused field and caret) and the action message stay; a submitted field is
    emptied for the next entry."""
    login_operator(page, served.base_url, COUNTY_TOKEN)
    target = [i for i in _queue_ids(page) if served.incidents[i]["status"] == "open"][-1]
    open_from_queue(page, target)
    page.click("#actions button[data-action=note]")  # nothing typed: the page refuses it itself
    page.wait_for_selector("#action-msg.error")
    page.fill("#assignee-input", "王某网格员")
    page.fill("#outcome-input", "已现场处置")
    page.select_option("#to-tier", "county")
    page.fill("#note-input", "请派出所协助")
    page.evaluate("document.getElementById('note-input').setSelectionRange(2, 4)")
    page.evaluate("document.getElementById('actions').dataset.before = 'refresh'")

    _publish_live(served.settings, dict(served.incidents[target]))  # the same record again: the panel reloads
    page.wait_for_function("() => { const a = document.getElementById('actions'); return a && !a.dataset.before; }",
                           timeout=20_000)

    assert page.input_value("#assignee-input") == "王某网格员"
    assert page.input_value("#outcome-input") == "已现场处置"
    assert page.input_value("#to-tier") == "county"
    assert page.input_value("#note-input") == "请派出所协助"
    assert page.evaluate("[document.activeElement.id, document.activeElement.selectionStart, "
                         "document.activeElement.selectionEnd]") == ["note-input", 2, 4]
    assert "请填写备注" in page.locator("#action-msg").inner_text()

    with page.expect_response(lambda r: r.url.endswith("/actions") and r.request.method == "POST") as info:
        page.click("#actions button[data-action=assign]")
    assert info.value.status == 202, info.value.text()
    assert info.value.request.post_data_json["assignee"] == "王某网格员"
    page.wait_for_function("() => document.getElementById('assignee-input').value === ''", timeout=10_000)
    assert page.input_value("#note-input") == "请派出所协助"  # only the submitted field is emptied
    assert "已提交" in page.locator("#action-msg").inner_text()


def test_queue_keeps_its_place_on_a_live_update(served: Served, page: Any) -> None:
    """Every live update reloads the work queue: the operator's scroll position in it and the
    focused entry stay where they were."""
    login_operator(page, served.base_url, COUNTY_TOKEN)
    page.wait_for_function("() => { const q = document.getElementById('queue'); "
                           "return q.scrollHeight > q.clientHeight + 400; }", timeout=10_000)
    queue_ids = _queue_ids(page)
    focused = queue_ids[6]
    page.focus(f"#queue li[data-id='{focused}']")
    page.evaluate("document.getElementById('queue').scrollTop = 300")
    page.evaluate("document.querySelector('#queue li').dataset.before = 'update'")

    _publish_live(served.settings, dict(served.incidents[queue_ids[0]]))  # any incident of the jurisdiction
    page.wait_for_function("() => { const li = document.querySelector('#queue li'); return li && !li.dataset.before; }",
                           timeout=20_000)

    assert abs(page.evaluate("document.getElementById('queue').scrollTop") - 300) <= 1
    assert page.evaluate("document.activeElement.dataset.id") == focused


def test_open_incident_follows_a_merge(served: Served, page: Any) -> None:
    """The incident on screen is merged into another (its redirect record on incidents.v1): the
    panel moves to the surviving incident, says so, and keeps what the operator was typing."""
    login_operator(page, served.base_url, COUNTY_TOKEN)
    opens = [i for i in _queue_ids(page) if served.incidents[i]["status"] == "open"]
    gone, survivor = opens[1], opens[2]
    open_from_queue(page, gone)
    page.fill("#note-input", "合并前录入的备注")

    record = dict(served.incidents[gone])
    # the live stream learns the incident's area, then its merge
    _publish_live(served.settings, record, redirect(record, survivor, int(record["version"]) + 1))
    page.wait_for_selector("#merge-note", timeout=20_000)

    note = page.locator("#merge-note").inner_text()
    assert gone in note and "合并" in note
    assert f"编号 {survivor}" in page.locator("#detail").inner_text()
    assert page.input_value("#note-input") == "合并前录入的备注"


def test_village_cannot_act_on_town_incident_and_map_renders_offline(served: Served, page: Any) -> None:
    login_operator(page, served.base_url, VILLAGE_TOKEN)
    assert "离线" in page.locator("#map-mode").inner_text()
    assert page.locator("#map .area-label").count() > 0
    assert page.locator("#map path.incident-marker").count() > 0
    village = CREDENTIALS[VILLAGE_TOKEN][1]
    town_owned = [i for i in served.incidents.values() if can_see(village, i) and i.get("actionable")
                  and i["tier"] != "village" and i["status"] == "open"]
    if town_owned:
        open_from_queue(page, town_owned[0]["incident_id"])
        page.fill("#note-input", "村级补充情况")
        with page.expect_response(lambda r: r.url.endswith("/actions")) as info:
            page.click("#actions button[data-action=note]")
        assert info.value.status == 403
        page.wait_for_selector("#action-msg.error")
        assert "无权" in page.locator("#action-msg").inner_text()


def test_operator_screenshots(served: Served, browser: Any, tmp_path: Path) -> None:
    escalated = next(i["incident_id"] for i in served.incidents.values()
                     if i["status"] != "resolved" and any(s["reason_code"] == "deadline"
                                                          for s in i.get("escalation_history") or []))
    info = capture_operator(served.base_url, tmp_path, escalated, browser=browser)
    for name in ("screenshot-queue.png", "screenshot-map.png", "screenshot-escalation.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert info["markers"] > 0 and "村级72小时未办结，自动上报镇级" in info["escalation"]
