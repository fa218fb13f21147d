"""`pingan replay index` on the real stack, after a live worker has indexed a simulated day.

- determinism: a replay from the beginning builds a new index whose documents equal the live
  index's, by sha256 of the canonical JSON of each ``_source`` per ``_id``; the alias moves to it;
- resumption: a replay stopped after its first batch and rerun gives the same documents;
- the alias swap: searches issued continuously during a replay never fail and never return zero;
- dry run and --from-timestamp (seeded from the current index);
- the loop: after the live worker caught up, centers' actions (accept, assign, resolve on real
  incidents) are published to dispositions.v1 and applied before the live hashes are taken, so the
  pipeline replay (which reads dispositions.v1 and clock.v1 too) must reproduce those states.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from itertools import islice
from dataclasses import dataclass
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from connectors.elasticsearch.admin import IndexNames
from connectors.ingest.files import iter_deliveries
from connectors.ingest.publish import publish_deliveries
from streams.ops.provision import provision_elasticsearch, provision_topics
from infra.processes import WorkerProcess, free_port, isolated_settings, wait_for
from tests.harness.leaks import delete_namespace
from streams.ops.replay import Checkpoint, checkpoint_path, end_offsets, group_offsets, replay_index
from streams.settings import Settings
from streams.worker.stages import LIFECYCLE_INPUTS, RAW_SOURCES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DELIVERIES = 650


@dataclass
class LiveDay:
    settings: Settings
    live_index: str
    live_hashes: dict[str, str]
    raw_records: int
    live_seconds: float
    incident_records: int
    metrics_text: str
    healthz: dict
    worker_log: Path
    dispositions: dict[str, str]  # incident_id -> the status its center actions gave it
    lifecycle_records: int  # records on dispositions.v1 and clock.v1 (inputs of the pipeline replay)


def doc_hashes(es: Elasticsearch, index: str) -> dict[str, str]:
    """_id → sha256 of the canonical JSON of its _source."""
    es.indices.refresh(index=index)
    out: dict[str, str] = {}
    resp = es.search(index=index, size=1000, scroll="1m", query={"match_all": {}}, sort=["_doc"])
    try:
        while resp["hits"]["hits"]:
            for h in resp["hits"]["hits"]:
                canon = json.dumps(h["_source"], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                out[h["_id"]] = hashlib.sha256(canon.encode()).hexdigest()
            resp = es.scroll(scroll_id=resp["_scroll_id"], scroll="1m")
    finally:
        es.clear_scroll(scroll_id=resp["_scroll_id"], ignore=(404,))
    return out


#: the center actions published on live incidents, and the status each sequence leaves
ACTIONS: tuple[tuple[tuple[tuple[str, dict[str, str]], ...], str], ...] = (
    ((("accept", {}),), "accepted"),
    ((("accept", {}), ("assign", {"assignee": "三江镇综治中心 网格员张某"})), "assigned"),
    ((("resolve", {"outcome": "已现场调解，双方和解"}),), "resolved"),
)


def publish_dispositions(settings: Settings, es: Elasticsearch) -> dict[str, str]:
    """Publish pingan.Disposition records (built as the API builds them) for a few open actionable
    incidents of the live index; returns incident_id → expected status."""
    from connectors.ingest.publish import make_producer
    from schemas.serde import default_store
    from streams.web.operations import ActionRequest, build_disposition, parse_action

    alias = IndexNames(settings.es_index_prefix).alias
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, size=len(ACTIONS), sort=[{"incident_id": "asc"}],
                     query={"bool": {"filter": [{"term": {"status": "open"}}, {"term": {"actionable": True}}]}},
                     )["hits"]["hits"]
    assert len(hits) == len(ACTIONS), "not enough open actionable incidents in the live index"
    store = default_store()
    producer = make_producer(settings)
    expected: dict[str, str] = {}
    try:
        now = int(time.time() * 1000)
        for n, (hit, (steps, status)) in enumerate(zip(hits, ACTIONS)):
            incident = hit["_source"]
            for k, (action, fields) in enumerate(steps):
                request = parse_action({"action": action, "request_id": f"e2e-{n}-{k}", **fields})
                assert isinstance(request, ActionRequest), request
                record = build_disposition(request, incident, "e2e-center", incident["county_code"], now + k)
                assert record["anchor_event_id"] == min(incident["event_ids"])
                producer.send(settings.topic("dispositions.v1"), key=record["incident_id"].encode(),
                              value=store.encode("pingan.Disposition", record)).get(30)
            expected[incident["incident_id"]] = status
    finally:
        producer.close()
    return expected


def indexed_statuses(es: Elasticsearch, settings: Settings, ids: list[str]) -> dict[str, str]:
    alias = IndexNames(settings.es_index_prefix).alias
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, size=len(ids), query={"ids": {"values": ids}})["hits"]["hits"]
    return {h["_id"]: h["_source"]["status"] for h in hits}


def alias_target(es: Elasticsearch, settings: Settings) -> list[str]:
    return sorted(es.indices.get_alias(name=IndexNames(settings.es_index_prefix).alias))


@pytest.fixture(scope="module")
def live_day(stack: Settings, sim_day: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDay]:
    """A simulated day published and indexed by one live worker, which is then stopped."""
    settings = isolated_settings(stack, registry=sim_day / "registry.csv",
                                 run_dir=tmp_path_factory.mktemp("replay-run"), worker_web_port=free_port(),
                                 log_json=True)
    provision_topics(settings)
    provision_elasticsearch(settings)
    # The first DELIVERIES deliveries of the day: the later flood burst grows one incident past Kafka's
    # 1 MB message limit (a live-pipeline issue reported separately), which is not what is tested here.
    report = publish_deliveries(settings, islice(iter_deliveries(sim_day), DELIVERIES))
    from connectors.ingest.publish import make_producer

    producer = make_producer(settings)  # one undecodable raw message: a normalize dead letter
    producer.send(settings.topic("raw.grid.v1"), key=b"bad", value=b"not avro").get(30)
    producer.close()
    worker = WorkerProcess(settings, 0, tmp_path_factory.mktemp("replay-logs")).start()
    es = Elasticsearch(settings.es_url)
    try:
        t0 = time.perf_counter()
        topics = [settings.topic(n) for n in (*RAW_SOURCES, "internal.events-by-county.v1")]
        topics += [settings.input_topic(n) for n in LIFECYCLE_INPUTS]

        def caught_up() -> bool:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise AssertionError(f"the live worker exited:\n{worker.log_tail()}")
            committed = group_offsets(settings, settings.app_id)
            ends = end_offsets(settings, [*topics, settings.topic("incidents.v1")])
            return bool(committed) and all(committed.get(k, 0) >= v for k, v in ends.items())

        try:
            wait_for(caught_up, 240, 1.0, "the live worker to consume every topic")
        except AssertionError:
            raise AssertionError(f"worker log:\n{worker.log_tail()}") from None
        live_seconds = time.perf_counter() - t0
        # the loop: centers act on real incidents; the worker applies it and the index shows it
        dispositions = publish_dispositions(settings, es)
        try:
            wait_for(lambda: indexed_statuses(es, settings, sorted(dispositions)) == dispositions, 120, 1.0,
                     "the index to show the centers' actions applied")
            wait_for(caught_up, 120, 1.0, "the live worker to consume the dispositions")
        except AssertionError:
            raise AssertionError(f"indexed: {indexed_statuses(es, settings, sorted(dispositions))}, expected "
                                 f"{dispositions}\nworker log:\n{worker.log_tail()}") from None
        lifecycle_records = sum(end_offsets(settings, [settings.input_topic(n) for n in LIFECYCLE_INPUTS]).values())
        base = f"http://127.0.0.1:{settings.worker_web_port}"
        metrics_text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        healthz = json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=10).read())
        worker.stop()
        live_index = alias_target(es, settings)[0]
        hashes = doc_hashes(es, live_index)
        # committed records: the topic is written in transactions, whose commit markers hold offsets too
        incident_records = committed_records(settings, settings.topic("incidents.v1"))
        assert len(hashes) > 50
        yield LiveDay(settings, live_index, hashes, report.records, live_seconds, incident_records, metrics_text,
                      healthz, worker.log_path, dispositions, lifecycle_records)
    finally:
        worker.stop()
        es.close()
        delete_namespace(settings)  # live and replay topics, groups, index versions



def committed_records(settings: Settings, topic: str) -> int:
    """How many records of `topic` a read_committed consumer reads (markers and aborted ones excluded)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000, isolation_level="read_committed")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return sum(1 for _ in consumer)
    finally:
        consumer.close()

def test_dry_run_reports_partitions_and_writes_nothing(live_day: LiveDay) -> None:
    es = Elasticsearch(live_day.settings.es_url)
    try:
        before = sorted(es.indices.get(index=f"{live_day.settings.es_index_prefix}-incidents-*"))
        report = asyncio.run(replay_index(live_day.settings, dry_run=True))
        assert report.dry_run and report.total >= live_day.incident_records  # offsets: markers included
        assert [p.partition for p in report.plans] == [0, 1, 2]
        assert sorted(es.indices.get(index=f"{live_day.settings.es_index_prefix}-incidents-*")) == before
        future = asyncio.run(replay_index(live_day.settings, dry_run=True, from_ms=int(time.time() * 1000) + 3600_000))
        assert future.total == 0
    finally:
        es.close()


def test_replay_from_beginning_equals_live_index(live_day: LiveDay) -> None:
    es = Elasticsearch(live_day.settings.es_url)
    try:
        report = asyncio.run(replay_index(live_day.settings))
        assert report.completed and report.records == live_day.incident_records
        assert alias_target(es, live_day.settings) == [report.target_index] != [live_day.live_index]
        assert doc_hashes(es, report.target_index) == live_day.live_hashes
        print(f"\nlive pipeline: {live_day.raw_records} raw records in {live_day.live_seconds:.1f}s "
              f"({live_day.raw_records / live_day.live_seconds:.0f} raw/s, "
              f"{live_day.incident_records / live_day.live_seconds:.0f} incident records/s end to end); "
              f"replay index: {report.records} incident records in {report.seconds:.2f}s ({report.rate:.0f}/s)")
    finally:
        es.close()


def test_interrupted_replay_resumes_to_the_same_index(live_day: LiveDay) -> None:
    settings = live_day.settings
    es = Elasticsearch(settings.es_url)
    try:
        before = alias_target(es, settings)
        first = asyncio.run(replay_index(settings, max_batches=1, batch_size=100))
        assert not first.completed and first.batches == 1 and first.records == 100
        cp = Checkpoint.load(checkpoint_path(settings))
        assert cp is not None and not cp.done and cp.target_index == first.target_index and cp.records == 100
        assert alias_target(es, settings) == before  # nothing swapped yet
        second = asyncio.run(replay_index(settings, batch_size=100))
        assert second.resumed and second.completed and second.target_index == first.target_index
        assert first.records + second.records == live_day.incident_records
        assert alias_target(es, settings) == [first.target_index]
        assert doc_hashes(es, first.target_index) == live_day.live_hashes
    finally:
        es.close()


def test_searches_never_fail_or_come_back_empty_during_the_swap(live_day: LiveDay) -> None:
    settings = live_day.settings
    alias = IndexNames(settings.es_index_prefix).alias
    stop = threading.Event()
    totals: list[int] = []
    errors: list[BaseException] = []

    def search() -> None:
        client = Elasticsearch(settings.es_url)
        try:
            while not stop.is_set():
                try:
                    resp = client.search(index=alias, size=1, query={"match_all": {}}, track_total_hits=True)
                    totals.append(resp["hits"]["total"]["value"])
                except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                    errors.append(exc)
        finally:
            client.close()

    thread = threading.Thread(target=search, daemon=True)
    thread.start()
    try:
        report = asyncio.run(replay_index(settings, batch_size=200))
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(10)
    assert report.completed
    assert not errors, errors[:3]
    assert len(totals) > 20 and min(totals) == max(totals) == len(live_day.live_hashes)


def test_replay_from_timestamp_is_seeded_from_the_current_index(live_day: LiveDay) -> None:
    settings = live_day.settings
    es = Elasticsearch(settings.es_url)
    try:
        # the middle of the incidents topic in log-append time
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
        tp = TopicPartition(settings.topic("incidents.v1"), 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek(tp, end // 2)
        rec = None
        for _ in range(20):
            records = [r for batch in consumer.poll(1000).values() for r in batch]
            if records:
                rec = records[0]
                break
        consumer.close()
        assert rec is not None
        report = asyncio.run(replay_index(settings, from_ms=rec.timestamp))
        assert report.completed and 0 < report.records < live_day.incident_records
        assert doc_hashes(es, report.target_index) == live_day.live_hashes
    finally:
        es.close()


def test_worker_metrics_healthz_and_json_logs(live_day: LiveDay) -> None:
    """The live worker's /metrics (Prometheus), /healthz and PINGAN_LOG_JSON=1 logs."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for fam in text_string_to_metric_families(live_day.metrics_text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    by_name: dict[str, float] = {}
    for (name, _labels), value in samples.items():
        by_name[name] = by_name.get(name, 0) + value
    assert by_name["pingan_events_in_total"] >= live_day.raw_records
    assert samples[("pingan_events_in_total", (("source", "grid"), ("stage", "normalize")))] > 0
    assert samples[("pingan_events_out_total", (("source", "incidents"), ("stage", "correlate")))] == \
        live_day.incident_records
    assert samples[("pingan_dead_letters_total", (("error_type", "DecodeError"), ("source", "grid"),
                                                  ("stage", "normalize")))] == 1
    assert by_name["pingan_bulk_seconds_count"] >= 1 and by_name["pingan_links_total"] > 0
    lag = {k: v for k, v in samples.items() if k[0] == "pingan_consumer_lag"}
    assert len(lag) >= 5 + 6 and all(v == 0 for v in lag.values())  # every partition, caught up
    assert live_day.healthz["status"] == "ok", live_day.healthz
    assert live_day.healthz["elasticsearch"]["ok"] and live_day.healthz["tables"]["completed"]
    assert live_day.healthz["kafka"]["assigned_partitions"] >= 11
    lines = [line for line in live_day.worker_log.read_text(errors="replace").splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line)["level"] for line in lines[:50])


def test_pipeline_replay_rebuilds_the_same_index_from_the_raw_topics(live_day: LiveDay) -> None:
    """`replay pipeline`: new app id and output prefix, raw topics from the live prefix, new index, swap."""
    from streams.ops.replay import replay_pipeline

    settings = live_day.settings
    es = Elasticsearch(settings.es_url)
    try:
        report = replay_pipeline(settings, timeout_s=180, poll_s=1.0)
        assert report.target_prefix.startswith(settings.topic_prefix + "replay")
        assert live_day.lifecycle_records >= 4  # the centers' actions (and any recorded clock ticks)
        assert report.app_id != settings.app_id
        assert report.raw_records == live_day.raw_records + 1 + live_day.lifecycle_records
        assert report.index is not None and report.index.completed
        assert report.index.topic == f"{report.target_prefix}incidents.v1"
        assert alias_target(es, settings) == [report.index.target_index]
        replayed = doc_hashes(es, report.index.target_index)
        if replayed != live_day.live_hashes:
            raise AssertionError(describe_difference(es, live_day.live_index, report.index.target_index))
        assert indexed_statuses(es, settings, sorted(live_day.dispositions)) == live_day.dispositions
        print(f"\nreplay pipeline: {report.raw_records} raw records in {report.seconds_pipeline:.1f}s "
              f"({report.rate:.0f}/s incl. worker start), then {report.index.records} incident records indexed "
              f"in {report.index.seconds:.2f}s")
    finally:
        es.close()


def describe_difference(es: Elasticsearch, live: str, replayed: str, limit: int = 20) -> str:
    """Which documents and which top-level fields differ between two indices (for the failure)."""
    def sources(index: str) -> dict[str, dict]:
        es.indices.refresh(index=index)
        out: dict[str, dict] = {}
        resp = es.search(index=index, size=1000, scroll="1m", query={"match_all": {}}, sort=["_doc"])
        try:
            while resp["hits"]["hits"]:
                out.update({h["_id"]: h["_source"] for h in resp["hits"]["hits"]})
                resp = es.scroll(scroll_id=resp["_scroll_id"], scroll="1m")
        finally:
            es.clear_scroll(scroll_id=resp["_scroll_id"], ignore=(404,))
        return out

    a, b = sources(live), sources(replayed)
    lines = [f"only live: {sorted(set(a) - set(b))[:limit]}", f"only replay: {sorted(set(b) - set(a))[:limit]}"]
    differing = [k for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    lines.append(f"{len(differing)} documents differ")
    for k in differing[:limit]:
        fields = sorted(f for f in set(a[k]) | set(b[k]) if a[k].get(f) != b[k].get(f))
        lines.append(f"{k}: " + "; ".join(f"{f}: live={json.dumps(a[k].get(f), ensure_ascii=False)[:200]} "
                                          f"replay={json.dumps(b[k].get(f), ensure_ascii=False)[:200]}"
                                          for f in fields))
    return "\n".join(lines)
