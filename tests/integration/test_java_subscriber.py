"""The Java subscriber (examples/java-subscriber: Avro 1.12 + kafka-clients from Maven Central) against
the real Kafka and the schema store: it decodes every downstream topic, including records written with
a released schema it does not bundle (v1) and with a schema newer than its bundled copy, both fetched by
fingerprint from GET /schemas/{fingerprint}; and avro-maven-plugin code generation over every schema
compiles. The Python subscriber beside it (examples/python-subscriber) reads the same records.

Maven runs offline (`-o`) when ~/.m2 holds everything, else online once (then it is cached)."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.processes import free_port, isolated_settings
from schemas.catalogue import DOWNSTREAM_TOPICS, topic
from schemas.examples import example
from schemas.loader import RELEASED_DIR, SCHEMA_DIR
from schemas.registry import fingerprint_hex, fingerprint_long
from schemas.serde import SchemaStore, default_store
from streams.settings import Settings
from tests.harness.leaks import delete_namespace

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
PROJECT = ROOT / "examples" / "java-subscriber"
JAR = PROJECT / "target" / "pingan-subscriber.jar"


def mvn(*args: str, timeout: float = 900) -> None:
    """`mvn -q -B -o ARGS` in the example, falling back to online when the offline cache lacks something."""
    if shutil.which("mvn") is None or shutil.which("java") is None:
        pytest.skip("Java and Maven are needed (run.sh checks them)")
    for offline in (["-o"], []):
        res = subprocess.run(["mvn", "-q", "-B", *offline, *args], cwd=PROJECT, capture_output=True, text=True,
                             timeout=timeout)
        if res.returncode == 0:
            return
    raise AssertionError(f"mvn {' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}")


@pytest.fixture(scope="module")
def jar() -> Path:
    mvn("package")
    assert JAR.exists()
    return JAR


def test_codegen_over_every_schema_compiles(tmp_path: Path) -> None:
    """avro-maven-plugin (the example's `codegen` profile) generates a class per schema and they compile."""
    mvn("-Pcodegen", "generate-sources", "compile")
    generated = PROJECT / "target" / "generated-sources" / "avro"
    names = {p.stem for p in generated.rglob("*.java")}
    assert names == {p.stem for p in SCHEMA_DIR.glob("*.avsc")}
    classes = PROJECT / "target" / "classes"
    assert (classes / "pingan" / "Incident.class").exists() and (classes / "pingan" / "raw" / "MediationCase.class").exists()
    incident = (generated / "pingan" / "Incident.java").read_text(encoding="utf-8")
    assert "java.time.Instant first_seen" in incident  # timestamp-millis reaches Java as an instant


def newer_store(tmp_path: Path) -> SchemaStore:
    """The current schemas with one more Incident field (a default: old readers skip it)."""
    cur = tmp_path / "newer"
    shutil.copytree(SCHEMA_DIR, cur, ignore=shutil.ignore_patterns("*.py", "released", "__pycache__"))
    path = cur / "Incident.avsc"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["fields"].append({"name": "hotline_ticket", "type": ["null", "string"], "default": None,
                           "doc": "A field of a future release."})
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return SchemaStore(cur, RELEASED_DIR)


@pytest.fixture
def schema_server(stack: Settings, request: pytest.FixtureRequest) -> Iterator[tuple[Settings, str]]:
    """An isolated namespace (provisioned: topics + published schemas) and the schema routes over HTTP."""
    from aiohttp import web

    from streams.ops.provision import provision_topics
    from streams.web.schema_routes import SchemaSource, make_schema_app

    settings = isolated_settings(stack)
    request.addfinalizer(lambda: delete_namespace(settings))
    provision_topics(settings, only=list(DOWNSTREAM_TOPICS))
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_schema_app(SchemaSource.from_settings(settings)))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield settings, f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_java_subscriber_decodes_every_downstream_topic(jar: Path, schema_server: tuple[Settings, str],
                                                        tmp_path: Path) -> None:
    from connectors.ingest.publish import make_producer
    from connectors.ingest.schema_topic import publish_schemas

    settings, url = schema_server
    store = default_store()
    newer = newer_store(tmp_path)
    v1 = SchemaStore(RELEASED_DIR / "v1", None)
    sends: list[tuple[str, str, bytes]] = []
    for name in DOWNSTREAM_TOPICS:
        t = topic(name)
        rec = example(t.value_schema)
        sends.append((name, t.key_bytes(rec).decode(), store.encode(t.value_schema, rec)))
    # an incident written by an older bus (release v1, which the example does not bundle)
    v1_fields = {f["name"] for f in v1.schema("Incident")["fields"]}
    old = {k: v for k, v in example("Incident").items() if k in v1_fields}
    summary_fields = {f["name"] for f in v1.schema("EventSummary")["fields"]}
    old["events"] = [{k: v for k, v in e.items() if k in summary_fields} for e in old["events"]]
    link_fields = {f["name"] for f in v1.schema("Link")["fields"]}
    old["links"] = [{k: v for k, v in lk.items() if k in link_fields} for lk in old["links"]]
    sends.append(("incidents.v1", "inc-old", v1.encode("Incident", {**old, "incident_id": "inc-old"})))
    # an incident written by a newer bus: its schema is published before it is written
    publish_schemas(settings, newer)
    newest = {**example("Incident"), "incident_id": "inc-new", "hotline_ticket": "12345-678"}
    sends.append(("incidents.v1", "inc-new", newer.encode("Incident", newest)))
    producer = make_producer(settings)
    for name, key, value in sends:
        producer.send(settings.topic(name), key=key.encode(), value=value).get(30)
    producer.close()

    res = subprocess.run(["java", "-jar", str(jar), "--bootstrap", settings.kafka_bootstrap, "--schema-store", url,
                          "--prefix", settings.topic_prefix, "--timeout-s", "60"],
                         capture_output=True, text=True, encoding="utf-8", timeout=180)
    lines = [line.split("\t") for line in res.stdout.splitlines()]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert not [line for line in lines if line[0] == "ERR"]
    recs = {(r[1].removeprefix(settings.topic_prefix), r[4]): r for r in lines if r[0] == "REC"}
    assert len(recs) == len(sends) == len([r for r in lines if r[0] == "REC"])
    assert lines[-1] == ["DONE", str(len(sends)), "0", "2"]
    for name, key, value in sends:
        rec = recs[(name, key)]
        fp = value[2:10]
        assert (rec[6], int(rec[7])) == (fingerprint_hex(fp), fingerprint_long(fp))  # both notations agree
        assert rec[5] == topic(name).value_schema
    for name in DOWNSTREAM_TOPICS:  # written with the released schema the example bundles: byte-identical again
        key = topic(name).key_bytes(example(topic(name).value_schema)).decode()
        assert recs[(name, key)][8:10] == ["bundled", "yes"], recs[(name, key)][:10]
    assert recs[("incidents.v1", "inc-old")][8] == "fetched"
    new = recs[("incidents.v1", "inc-new")]
    assert new[8] == "fetched" and new[6] == fingerprint_hex(newer.fingerprint("Incident"))
    assert '"incident_id": "inc-new"' in new[10] and "hotline_ticket" not in new[10]  # resolved to the reader

    # the Python subscriber beside it reads the same records the same way
    py = subprocess.run([sys.executable, str(ROOT / "examples" / "python-subscriber" / "subscriber.py"),
                         "--bootstrap", settings.kafka_bootstrap, "--schema-store", url,
                         "--prefix", settings.topic_prefix, "--timeout-s", "60"],
                        capture_output=True, text=True, encoding="utf-8", timeout=180)
    assert py.returncode == 0, py.stdout[-3000:] + py.stderr[-3000:]
    py_lines = [line.split("\t") for line in py.stdout.splitlines()]
    assert py_lines[-1] == ["DONE", str(len(sends)), "0", "2"]
    py_recs = {(r[1].removeprefix(settings.topic_prefix), r[4]): r for r in py_lines if r[0] == "REC"}
    assert {k: r[6:9] for k, r in py_recs.items()} == {k: r[6:9] for k, r in recs.items()}
    assert json.loads(py_recs[("incidents.v1", "inc-new")][9])["incident_id"] == "inc-new"

    # the endpoint answers both notations and lists versions
    fp = newer.fingerprint("Incident")
    for text in (fingerprint_hex(fp), str(fingerprint_long(fp))):
        with urllib.request.urlopen(f"{url}/schemas/{text}") as resp:
            assert resp.headers["X-Avro-Fingerprint"] == fingerprint_hex(fp)
            assert resp.headers["X-Schema-Release"] == "unreleased"
            assert json.loads(resp.read())["name"] == "Incident"
    with urllib.request.urlopen(f"{url}/schemas/Incident/versions") as resp:
        versions = json.loads(resp.read())
    assert [v["release"] for v in versions] == ["v1", "v2", "unreleased"]


def day_records(folder: Path, secret: bytes) -> list[tuple[str, str, bytes]]:
    """What the pipeline writes on the downstream topics for a simulated day, in order, encoded as the
    worker encodes it: (topic, key, value). The pure pipeline (as bench.quality.run_folder) stands in
    for the worker; the records and their encoding are the same."""
    from connectors.ingest.files import iter_deliveries
    from connectors.sources.devices import DeviceRegistry
    from connectors.sources.registry import normalizer as make_normalizer
    from streams.domain.correlate import partition_key
    from streams.domain.pipeline import CountyProcessor
    from streams.domain.rules import load_rules
    from streams.settings import DEFAULT_TIMEZONE

    store = default_store()
    registry = DeviceRegistry.from_csv(folder / "registry.csv")
    normalizer = make_normalizer(secret, DEFAULT_TIMEZONE, registry)
    rules = load_rules()
    processors: dict[str, CountyProcessor] = {}
    out: list[tuple[str, str, bytes]] = []

    def emit(name: str, rec: dict) -> None:
        t = topic(name)
        out.append((name, t.key_bytes(rec).decode(), store.encode(t.value_schema, rec)))

    for delivery in iter_deliveries(folder, registry):
        for record in delivery.result.records:
            try:
                event = normalizer.normalize(delivery.source, record)
            except Exception:  # noqa: BLE001 - a dead letter in the real pipeline
                continue
            emit("events.v1", event)
            county = partition_key(event)
            proc = processors.setdefault(county, CountyProcessor(rules=rules))
            step = proc.process(event)
            for link in step.links:
                emit("links.v1", link)
            for inc in step.incidents:
                emit("incidents.v1", inc)
            for esc in step.escalations:
                emit("escalations.v1", esc)
    return out


def test_java_subscriber_decodes_a_simulated_day(jar: Path, schema_server: tuple[Settings, str],
                                                 tmp_path: Path) -> None:
    """Every record of the four pipeline output topics after a simulated day decodes in Java."""
    from kafka import KafkaProducer

    from infra.processes import simulate_folder

    settings, url = schema_server
    sends = day_records(simulate_folder(tmp_path / "day", seed=1), settings.person_key_secret.encode())
    counts = {name: sum(1 for n, _, _ in sends if n == name) for name in DOWNSTREAM_TOPICS}
    assert counts["events.v1"] > 500 and counts["incidents.v1"] > 100 and counts["links.v1"] > 50
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20)
    for name, key, value in sends:
        producer.send(settings.topic(name), key=key.encode(), value=value)
    producer.flush(60)
    producer.close()
    res = subprocess.run(["java", "-jar", str(jar), "--bootstrap", settings.kafka_bootstrap, "--schema-store", url,
                          "--prefix", settings.topic_prefix, "--timeout-s", "120"],
                         capture_output=True, text=True, encoding="utf-8", timeout=300)
    tail = res.stdout.splitlines()[-1:] + res.stderr.splitlines()[-20:]
    assert res.returncode == 0, "\n".join(line for line in res.stdout.splitlines() if line.startswith("ERR"))[:3000] or tail
    assert res.stdout.splitlines()[-1] == f"DONE\t{len(sends)}\t0\t0", tail
    same = [line.split("\t")[9] for line in res.stdout.splitlines() if line.startswith("REC")]
    assert len(same) == len(sends) and set(same) == {"yes"}  # re-encoded byte for byte
