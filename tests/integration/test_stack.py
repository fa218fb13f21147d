"""The local stack itself: Kafka round trip, Elasticsearch CJK search, restart, port conflicts."""
from __future__ import annotations

import socket
import time
import uuid

import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from infra.stack import Stack, StackError, port_open
from streams.settings import Settings
from tests.harness.leaks import delete_objects

pytestmark = pytest.mark.integration


def _roundtrip(settings: Settings, topic: str, values: list[bytes]) -> list[bytes]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    for i, v in enumerate(values):
        producer.send(topic, v, key=str(i % 2).encode()).get(timeout=20)
    producer.close()
    group = f"t-{uuid.uuid4().hex[:6]}"
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=8000, group_id=group)
    got = [m.value for m in consumer]
    consumer.close()
    delete_objects(settings.kafka_bootstrap, settings.es_url, groups=[group])
    return got


def test_kafka_avro_roundtrip(stack: Settings, unique: str) -> None:
    from schemas.serde import default_store

    from schemas.examples import example

    store = default_store()
    name = "pingan.raw.CameraAlarm"
    record = example(name)
    payloads = [store.encode(name, record) for _ in range(3)]
    topic = f"test-stack-{unique}"
    try:
        got = _roundtrip(stack, topic, payloads)
    finally:
        delete_objects(stack.kafka_bootstrap, stack.es_url, topics=[topic])
    assert sorted(got) == sorted(payloads)
    decoded_name, decoded = store.decode(got[0])
    assert decoded_name == name
    assert decoded["device_id"] == record["device_id"]


def test_catalogue_topics_provisioned(stack: Settings) -> None:
    from schemas.catalogue import TOPICS

    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    try:
        described = {d["name"]: d for d in admin.describe_topics([stack.topic(t.name) for t in TOPICS])}
    finally:
        admin.close()
    for t in TOPICS:
        assert len(described[stack.topic(t.name)]["partitions"]) >= t.partitions


def test_elasticsearch_cjk_search(stack: Settings, unique: str) -> None:
    es = Elasticsearch(stack.es_url)
    index = f"pingan-test-cjk-{unique}"
    es.indices.create(index=index, mappings={"properties": {"text": {"type": "text", "analyzer": "cjk"}}})
    try:
        es.index(index=index, id="1", document={"text": "三江镇柒山村村民因房屋拆迁补偿发生邻里纠纷"}, refresh="wait_for")
        es.index(index=index, id="2", document={"text": "映秀镇游客突发疾病请求救助"}, refresh="wait_for")
        hits = es.search(index=index, query={"match": {"text": "拆迁纠纷"}})["hits"]["hits"]
        assert [h["_id"] for h in hits] == ["1"]
        assert es.info()["version"]["number"] == "7.10.2"
    finally:
        es.indices.delete(index=index)
        es.close()


def test_port_taken_gives_clear_error(tmp_path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        settings = Settings(run_dir=tmp_path / "run", kafka_port=port, kafka_controller_port=port + 1,
                            kafka_bootstrap=f"127.0.0.1:{port}", es_manage=False)
        with pytest.raises(StackError, match=f"port {port}.*taken"):
            Stack(settings).up(timeout_s=10)


@pytest.mark.slow
def test_restart_keeps_data(stack: Settings, unique: str) -> None:
    """down → no Java process of ours; up again → the topic written before is still there."""
    topic = f"test-restart-{unique}"
    assert _roundtrip(stack, topic, [b"before"]) == [b"before"]
    st = Stack(stack)
    st.down()
    assert not port_open(stack.kafka_port) and not port_open(stack.es_http_port)
    assert all(not s.running for s in st.status())
    t0 = time.monotonic()
    st.up(timeout_s=240)
    assert time.monotonic() - t0 < 240
    consumer = KafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=8000, group_id=f"t-{unique}-2")
    try:
        assert [m.value for m in consumer] == [b"before"]
    finally:
        consumer.close()
        delete_objects(stack.kafka_bootstrap, stack.es_url, topics=[topic], groups=[f"t-{unique}-2"])
