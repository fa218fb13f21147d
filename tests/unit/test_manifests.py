"""The Kubernetes manifests under infra/k8s: schema-valid, consistent with the catalogue and settings.

No cluster: core kinds are validated against the Kubernetes JSON schemas shipped by
`kubernetes-validate` (strict: unknown fields fail); the operator kinds (Strimzi, KEDA, ECK) get
structural checks of the fields their documentation names as required or that the bus relies on.
Overlays are rendered by a small kustomize subset (resources, strategic-merge and JSON6902
`replace` patches, namespace) — and by `kubectl kustomize` as well when kubectl is installed.
"""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from infra.k8s import gen_topics, gen_users
from schemas.catalogue import TOPICS
from streams.settings import Settings
from infra.k8s.env import SECRET_ENV, cli_env, known_env

KNOWN_ENV = known_env()

K8S = Path(gen_topics.__file__).resolve().parent
K8S_VERSION = "1.30"  # oldest Kubernetes the manifests target
CORE_GROUPS = {"v1", "apps/v1", "batch/v1", "networking.k8s.io/v1", "policy/v1"}
OVERLAYS = sorted(gen_topics.OVERLAYS)


# ------------------------------------------------------------------ loading and rendering
def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def all_manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"
                  and "patch" not in p.name)


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


def _json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        assert op["op"] == "replace", f"renderer supports only replace ops, got {op}"
        *parents, leaf = [int(p) if p.isdigit() else p for p in op["path"].strip("/").split("/")]
        node: Any = doc
        for part in parents:
            node = node[part]
        assert (leaf in node) if isinstance(node, dict) else leaf < len(node), f"replace of a missing path {op}"
        node[leaf] = op["value"]


def render(folder: Path) -> list[dict[str, Any]]:
    """A kustomize subset: enough for our base and overlays (and it fails loudly otherwise)."""
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    allowed = {"apiVersion", "kind", "namespace", "resources", "patches", "labels"}
    assert set(kust) <= allowed, f"{folder}: unsupported kustomization keys {set(kust) - allowed}"
    docs: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        target = (folder / res).resolve()
        assert target.exists(), f"{folder}: missing resource {res}"
        docs.extend(render(target) if target.is_dir() else load(target))
    index = {_key(d): d for d in docs}
    assert len(index) == len(docs), f"{folder}: duplicate kind/name"
    for patch in kust.get("patches", []):
        if "path" in patch:
            for p in load(folder / patch["path"]):
                assert _key(p) in index, f"{folder}: patch for unknown {_key(p)}"
                merged = _merge(index[_key(p)], p)
                docs[docs.index(index[_key(p)])] = merged
                index[_key(p)] = merged
        else:
            t = patch["target"]
            doc = index[(t["kind"], t["name"])]
            assert doc["apiVersion"] == f"{t['group']}/{t['version']}" if t.get("group") else True
            _json6902(doc, yaml.safe_load(patch["patch"]))
    if kust.get("namespace"):
        for d in docs:
            d["metadata"]["namespace"] = kust["namespace"]
    return docs


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


WORKLOADS = ("Deployment", "StatefulSet", "Job")
SECRET_NAME = re.compile(r"passw|secret|token", re.IGNORECASE)  # env names that must come from a Secret


# ------------------------------------------------------------------ CRD structural checks
def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{doc['kind']}/{doc['metadata']['name']}: missing {dotted}"
        node = node[part]
    return node


# (apiVersion, kind) -> required field paths (from the Strimzi, KEDA and ECK API references)
CRD_REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): ("spec.kafka.version", "spec.kafka.metadataVersion",
                                            "spec.kafka.listeners", "spec.kafka.config", "spec.entityOperator"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): ("metadata.labels.strimzi.io/cluster", "spec.replicas",
                                                    "spec.roles", "spec.storage.type"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): ("metadata.labels.strimzi.io/cluster", "spec.topicName",
                                                 "spec.partitions", "spec.replicas", "spec.config"),
    ("keda.sh/v1alpha1", "ScaledObject"): ("spec.scaleTargetRef.name", "spec.triggers"),
    ("elasticsearch.k8s.elastic.co/v1", "Elasticsearch"): ("spec.version", "spec.nodeSets"),
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): ("metadata.labels.strimzi.io/cluster", "spec.authentication.type",
                                                "spec.authorization.acls"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ("spec.secretTargetRef",),
}


def _labels_get(doc: dict[str, Any], path: str) -> Any:
    if path.startswith("metadata.labels."):
        labels = doc["metadata"].get("labels", {})
        key = path[len("metadata.labels."):]
        assert key in labels, f"{_key(doc)}: missing label {key}"
        return labels[key]
    return _get(doc, path)


def check_crd(doc: dict[str, Any]) -> None:
    required = CRD_REQUIRED.get((doc["apiVersion"], doc["kind"]))
    assert required is not None, f"no check for {doc['apiVersion']} {doc['kind']}: add one"
    for path in required:
        _labels_get(doc, path)
    kind = doc["kind"]
    if kind == "Kafka":
        kafka = doc["spec"]["kafka"]
        assert kafka["version"].startswith("4.1.") and kafka["metadataVersion"].startswith("4.1-")
        assert all({"name", "port", "type", "tls"} <= set(lst) for lst in kafka["listeners"])
        # no plaintext listener: every listener is TLS with SCRAM-SHA-512, and ACLs are enforced
        for lst in kafka["listeners"]:
            assert lst["tls"] is True, f"plaintext listener {lst['name']}"
            assert lst.get("authentication", {}).get("type") == "scram-sha-512", f"{lst['name']}: SCRAM-SHA-512"
            assert lst.get("networkPolicyPeers"), f"{lst['name']}: restrict who reaches it"
        assert kafka["authorization"]["type"] == "simple"
        assert kafka["config"]["default.replication.factor"] == 3 and kafka["config"]["min.insync.replicas"] == 2
        assert kafka["config"]["offsets.topic.replication.factor"] == 3
        assert "zookeeper" not in doc["spec"]  # KRaft only
    elif kind == "KafkaNodePool":
        assert set(doc["spec"]["roles"]) == {"controller", "broker"} and doc["spec"]["replicas"] == 3
        vols = doc["spec"]["storage"]["volumes"]
        assert doc["spec"]["storage"]["type"] == "jbod" and any(v.get("kraftMetadata") == "shared" for v in vols)
    elif kind == "KafkaTopic":
        spec = doc["spec"]
        assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1 and spec["replicas"] == 3
        assert spec["config"]["min.insync.replicas"] == "2"
        assert all(isinstance(v, str) for v in spec["config"].values())
    elif kind == "KafkaUser":
        assert doc["spec"]["authentication"]["type"] == "scram-sha-512"
        assert doc["spec"]["authorization"]["type"] == "simple" and doc["spec"]["authorization"]["acls"]
        for acl in doc["spec"]["authorization"]["acls"]:
            assert acl["resource"]["type"] in {"topic", "group", "cluster", "transactionalId"} and acl["operations"]
            assert acl["resource"]["type"] == "cluster" or acl["resource"]["name"], "an empty name matches everything"
    elif kind == "TriggerAuthentication":
        assert {r["parameter"] for r in doc["spec"]["secretTargetRef"]} >= {"password", "ca"}
    elif kind == "ScaledObject":
        for trig in doc["spec"]["triggers"]:
            assert trig["type"] == "kafka"
            assert trig["metadata"].get("sasl") == "scram_sha512" and trig["metadata"].get("tls") == "enable"
            assert trig["authenticationRef"]["name"]
            assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= set(trig["metadata"])
            assert all(isinstance(v, str) for v in trig["metadata"].values()), "KEDA metadata values are strings"
        assert doc["spec"]["minReplicaCount"] <= doc["spec"]["maxReplicaCount"]
    elif kind == "Elasticsearch":
        assert doc["spec"]["version"] == "7.10.2"
        assert sum(ns["count"] for ns in doc["spec"]["nodeSets"]) == 3
        for ns in doc["spec"]["nodeSets"]:
            assert {"name", "count"} <= set(ns)
            for vct in ns.get("volumeClaimTemplates", []):
                assert vct["metadata"]["name"] == "elasticsearch-data"  # the name ECK mounts


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("path", all_manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_is_schema_valid(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc)
        if doc["apiVersion"] in CORE_GROUPS:
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.name} {_key(doc)}: {exc.message} at {list(exc.path)}")
        else:
            check_crd(doc)


def test_the_validator_really_rejects_bad_manifests() -> None:
    good = load(K8S / "base" / "search.yaml")[1]
    kubernetes_validate.validate(good, K8S_VERSION, strict=True)
    bad = copy.deepcopy(good)
    bad["spec"]["template"]["spec"]["containers"][0]["envFrm"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = copy.deepcopy(good)
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    topic = load(K8S / "overlays" / "county" / "topics.yaml")[0]
    del topic["spec"]["partitions"]
    with pytest.raises(AssertionError):
        check_crd(topic)


def test_generated_topics_are_current_and_match_the_catalogue() -> None:
    assert gen_topics.stale() == [], "infra/k8s/overlays/*/topics.yaml are stale: run `python -m infra.k8s.gen_topics`"
    assert gen_topics.main(["--check"]) == 0
    for overlay, prefix in gen_topics.OVERLAYS.items():
        docs = load(gen_topics.target(overlay))
        assert [d["spec"]["topicName"] for d in docs] == [prefix + t.name for t in TOPICS]
        for doc, t in zip(docs, TOPICS):
            assert doc["spec"]["partitions"] == t.partitions
            assert {k: v for k, v in doc["spec"]["config"].items() if k != "min.insync.replicas"} == dict(t.config)
            assert doc["metadata"]["annotations"]["pingan.io/key"] == t.key
            assert doc["metadata"]["labels"]["strimzi.io/cluster"] == gen_topics.CLUSTER


def test_check_mode_detects_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen_topics, "target", lambda overlay: tmp_path / f"{overlay}.yaml")
    assert gen_topics.main(["--check"]) == 1
    assert gen_topics.main([]) == 0 and gen_topics.main(["--check"]) == 0
    (tmp_path / "county.yaml").write_text("# edited\n", encoding="utf-8")
    assert gen_topics.stale() == [tmp_path / "county.yaml"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_consistent_with_settings_and_catalogue(rendered: dict[str, Any], overlay: str) -> None:
    docs = rendered[overlay]
    settings_cm = one(docs, "ConfigMap", "pingan-settings")["data"]
    env = {k: str(v) for k, v in settings_cm.items()}
    # the ConfigMap is a valid Settings environment
    s = Settings(**{k[len("PINGAN_"):].lower(): v for k, v in env.items()
                    if k[len("PINGAN_"):].lower() in Settings.model_fields})
    prefix = gen_topics.OVERLAYS[overlay]
    assert s.topic_prefix == prefix
    assert s.replication_factor == 3 and not s.kafka_manage and not s.es_manage
    ns = docs[0]["metadata"]["namespace"]
    assert all(d["metadata"].get("namespace") == ns for d in docs)
    # Kafka bootstrap is the Strimzi bootstrap Service of the Kafka resource
    kafka = by_kind(docs, "Kafka")
    assert len(kafka) == 1
    (listener,) = kafka[0]["spec"]["kafka"]["listeners"]
    assert s.kafka_bootstrap == f"{kafka[0]['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    assert s.kafka_security_protocol == "SASL_SSL" and s.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert s.kafka_ssl_cafile is not None and s.es_url.startswith("https://") and s.es_ca_certs is not None
    pools = by_kind(docs, "KafkaNodePool")
    assert pools and all(p["metadata"]["labels"]["strimzi.io/cluster"] == kafka[0]["metadata"]["name"] for p in pools)
    # topics: every catalogue topic, under this overlay's prefix, for this Kafka cluster
    topics = {d["spec"]["topicName"]: d for d in by_kind(docs, "KafkaTopic")}
    assert set(topics) == {s.topic(t.name) for t in TOPICS}
    # KEDA: the Faust consumer group is the app id; triggers name real topics; FQDN bootstrap. The
    # correlate StatefulSet scales on the by-county lag, the edge Deployment on raw and incidents lag;
    # each workload runs the role whose input its triggers measure.
    roles = {"pingan-worker": ("StatefulSet", "correlate", {s.topic("internal.events-by-county.v1")}),
             "pingan-edge": ("Deployment", "edge", {s.topic("raw.camera.v1"), s.topic("incidents.v1")})}
    for name, (kind, role, trigger_topics) in roles.items():
        so = one(docs, "ScaledObject", name)
        target = one(docs, so["spec"]["scaleTargetRef"]["kind"], so["spec"]["scaleTargetRef"]["name"])
        assert target["kind"] == kind and target["metadata"]["name"] == name
        (container,) = containers(target)
        assert _env(container)["PINGAN_WORKER_ROLE"]["value"] == role
        partitions = []
        for trig in so["spec"]["triggers"]:
            meta = trig["metadata"]
            assert meta["consumerGroup"] == s.app_id
            assert meta["topic"] in topics
            partitions.append(topics[meta["topic"]]["spec"]["partitions"])
            assert meta["bootstrapServers"] == \
                f"{kafka[0]['metadata']['name']}-kafka-bootstrap.{ns}.svc:{listener['port']}"
            auth = one(docs, "TriggerAuthentication", trig["authenticationRef"]["name"])
            assert any(r["name"] in {u["metadata"]["name"] for u in by_kind(docs, "KafkaUser")}
                       for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "password")
        assert {t["metadata"]["topic"] for t in so["spec"]["triggers"]} == trigger_topics
        assert so["spec"]["maxReplicaCount"] <= max(partitions), "replicas beyond the partitions would sit idle"
    # every county served is a 6-digit code within the deployment's area
    counties = [c for c in s.counties.split(",") if c]
    assert counties and all(len(c) == 6 and c.isdigit() for c in counties)
    assert len({c[:4] for c in counties}) == 1


def test_prefecture_isolates_topics_group_and_index(rendered: dict[str, Any]) -> None:
    cms = {o: one(rendered[o], "ConfigMap", "pingan-settings")["data"] for o in OVERLAYS}
    county, pref = cms["county"], cms["prefecture"]
    assert pref["PINGAN_TOPIC_PREFIX"] == "5132." and county["PINGAN_TOPIC_PREFIX"] == ""
    for key in ("PINGAN_APP_ID", "PINGAN_ES_INDEX_PREFIX"):  # changelog topics and indices do not collide
        assert pref[key] != county[key] and "5132" in pref[key]
    assert len(pref["PINGAN_COUNTIES"].split(",")) == 13
    assert all(c.startswith("5132") for c in pref["PINGAN_COUNTIES"].split(","))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_env_secrets_resources_and_probes(rendered: dict[str, Any], overlay: str) -> None:
    docs = rendered[overlay]
    cm_keys = set(one(docs, "ConfigMap", "pingan-settings")["data"])
    assert cm_keys <= KNOWN_ENV, f"unknown PINGAN_* keys: {cm_keys - KNOWN_ENV}"
    assert not cm_keys & SECRET_ENV, "secrets must not be in the ConfigMap"
    secret = one(docs, "Secret", "pingan-secrets")
    for value in secret["stringData"].values():
        assert "CHANGE-ME" in value or value == '{"tokens": {}}', "only placeholders may be committed"
    secret_keys = set(secret["stringData"])
    kafka_users = {u["metadata"]["name"] for u in by_kind(docs, "KafkaUser")}
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    assert {_key(d)[1] for d in workloads} >= {"pingan-worker", "pingan-receivers", "pingan-search", "pingan-es"}
    for wl in workloads:
        for c in containers(wl):
            assert ":" in c["image"] and not c["image"].endswith(":latest"), f"{c['name']}: pin the image"
            res = c.get("resources", {})
            if c["name"] != "vm-max-map-count":
                assert {"cpu", "memory"} <= set(res.get("requests", {})), f"{c['name']}: requests"
                assert "memory" in res.get("limits", {}), f"{c['name']}: memory limit"
            for e in c.get("env", []):
                if e["name"].startswith("PINGAN_"):
                    assert e["name"] in KNOWN_ENV, e["name"]
                if e["name"] == "PINGAN_KAFKA_SASL_PASSWORD":  # the User Operator's Secret of the KafkaUser
                    ref = e["valueFrom"]["secretKeyRef"]
                    assert "value" not in e and ref["key"] == "password" and ref["name"] in kafka_users
                elif e["name"] in SECRET_ENV or SECRET_NAME.search(e["name"]):
                    ref = e["valueFrom"]["secretKeyRef"]
                    assert "value" not in e and ref["name"] == "pingan-secrets" and ref["key"] in secret_keys, \
                        f"{c['name']}: {e['name']} must come from the Secret"
    # receivers and search: httpGet /healthz on their port; worker: exec probe (web binds 127.0.0.1)
    settings = Settings(**{k[len("PINGAN_"):].lower(): v for k, v in
                           one(docs, "ConfigMap", "pingan-settings")["data"].items()})
    ports = {"pingan-receivers": settings.receiver_port, "pingan-search": settings.search_port}
    for name, port in ports.items():
        c = one(docs, "StatefulSet", name)["spec"]["template"]["spec"]["containers"][0]
        probe = c["readinessProbe"]["httpGet"]
        assert probe == {"path": "/healthz", "port": port}
        assert any(p["containerPort"] == port for p in c["ports"])
        assert not any(a.startswith(("--port", "--sip-port", "--registry")) for a in c.get("args", [])), \
            f"{name}: ports and the registry come from the settings (ConfigMap), not from arguments"
    receivers = one(docs, "StatefulSet", "pingan-receivers")["spec"]["template"]["spec"]["containers"][0]
    assert {"containerPort": settings.sip_port, "name": "sip", "protocol": "UDP"} in receivers["ports"]
    assert settings.registry_path is not None and any(
        str(settings.registry_path).startswith(m["mountPath"]) for m in receivers["volumeMounts"])
    worker = one(docs, "StatefulSet", "pingan-worker")
    wc = worker["spec"]["template"]["spec"]["containers"][0]
    assert wc["args"][:2] == ["worker", "run"]
    assert f":{Settings().worker_web_port}/" in " ".join(wc["livenessProbe"]["exec"]["command"])
    # stateful parts keep their state on per-replica volumes mounted at PINGAN_RUN_DIR
    run_dir = one(docs, "ConfigMap", "pingan-settings")["data"]["PINGAN_RUN_DIR"]
    for name in ("pingan-worker", "pingan-receivers", "pingan-search"):
        sts = one(docs, "StatefulSet", name)
        vct = {v["metadata"]["name"] for v in sts["spec"]["volumeClaimTemplates"]}
        mounts = {m["mountPath"]: m["name"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        assert mounts.get(run_dir) in vct, f"{name}: {run_dir} must be on a persistent volume"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_existing_pods_and_ports(rendered: dict[str, Any], overlay: str) -> None:
    docs = rendered[overlay]
    pods = [(d["spec"]["template"]["metadata"]["labels"], d) for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    for svc in by_kind(docs, "Service"):
        sel = svc["spec"]["selector"]
        matches = [d for labels, d in pods if sel.items() <= labels.items()]
        assert matches, f"Service {svc['metadata']['name']} selects no pods"
        cports = {p["containerPort"] for d in matches for c in containers(d) for p in c.get("ports", [])}
        for p in svc["spec"].get("ports", []):
            assert p.get("targetPort", p["port"]) in cports, f"{svc['metadata']['name']}:{p['port']}"
    for sts in by_kind(docs, "StatefulSet"):
        assert any(s["metadata"]["name"] == sts["spec"]["serviceName"] for s in by_kind(docs, "Service"))


def test_base_lists_every_base_file() -> None:
    kust = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubectl_kustomize_renders_the_same(rendered: dict[str, Any], overlay: str) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    ours = {_key(d): d for d in rendered[overlay]}
    theirs = {_key(d): d for d in docs}
    assert set(ours) == set(theirs)
    for key, doc in theirs.items():
        doc["metadata"].get("labels", {}).pop("app.kubernetes.io/instance", None)
        if key[0] in ("ConfigMap", "ScaledObject", "KafkaTopic"):
            mine = ours[key]
            field = "data" if key[0] == "ConfigMap" else "spec"
            assert doc[field] == mine[field], key


def test_known_env_is_the_settings_one_name_each() -> None:
    # every variable a deployment sets is a Settings field; the CLI options read no environment
    assert cli_env() == frozenset(), "CLI options must default from Settings, not from an envvar"
    assert {"PINGAN_REGISTRY_PATH", "PINGAN_SIP_PORT", "PINGAN_SIP_PASSWORD", "PINGAN_ALARM110_URL",
            "PINGAN_SEARCH_TOKENS", "PINGAN_SEARCH_CREDENTIALS", "PINGAN_TIMEZONE"} <= KNOWN_ENV
    assert "PINGAN_KAFKA_BOOTSTRAP" in KNOWN_ENV and "PINGAN_NOT_A_SETTING" not in KNOWN_ENV
    assert "PINGAN_DEVICE_REGISTRY" not in KNOWN_ENV  # the deprecated alias of PINGAN_REGISTRY_PATH
    assert SECRET_ENV == {"PINGAN_PERSON_KEY_SECRET", "PINGAN_SIP_PASSWORD", "PINGAN_SEARCH_TOKENS",
                          "PINGAN_ALARM110_URL", "PINGAN_AUDIT_KEY", "PINGAN_KAFKA_SASL_PASSWORD", "PINGAN_ES_PASSWORD"}


# ------------------------------------------------------------------ issue 14: who reaches Kafka and Elasticsearch
def _env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def _pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    return doc["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"selector form not checked here: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_names(peers: list[dict[str, Any]]) -> set[str]:
    """app.kubernetes.io/name of same-namespace pod peers; namespace peers as 'ns:<name>'."""
    out = set()
    for p in peers:
        if "namespaceSelector" in p:
            out.add("ns:" + p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
        elif "podSelector" in p:
            out.add(p["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
        else:
            out.add("ipBlock:" + p["ipBlock"]["cidr"])
    return out


def _allowed(policies: list[dict[str, Any]], labels: dict[str, str], port: int) -> set[str]:
    """Who may reach pods with these labels on this port, over every policy that selects them."""
    who: set[str] = set()
    for pol in policies:
        if not _selects(pol["spec"]["podSelector"], labels):
            continue
        for rule in pol["spec"].get("ingress", []):
            if any(p["port"] == port for p in rule.get("ports", [])):
                who |= _peer_names(rule.get("from", []))
    return who


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_restrict_kafka_and_elasticsearch(rendered: dict[str, Any], overlay: str) -> None:
    docs = rendered[overlay]
    policies = by_kind(docs, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny and deny[0]["spec"]["policyTypes"] == ["Ingress"], "default-deny ingress for the namespace"
    # every workload is covered by an ingress policy
    for wl in (d for d in docs if d["kind"] in WORKLOADS):
        assert any(_selects(p["spec"]["podSelector"], _pod_labels(wl)) and "Ingress" in p["spec"]["policyTypes"]
                   for p in policies), f"{_key(wl)} is covered by no NetworkPolicy"
    # every Service port is allowed from somewhere (else default-deny makes it dead)
    for svc in by_kind(docs, "Service"):
        for port in svc["spec"].get("ports", []):
            pods = [d for d in docs if d["kind"] in WORKLOADS and _selects({"matchLabels": svc["spec"]["selector"]},
                                                                          _pod_labels(d))]
            assert any(_allowed(policies, _pod_labels(d), port.get("targetPort", port["port"])) for d in pods), \
                f"Service {svc['metadata']['name']}:{port['port']} is reachable from nowhere"
    es = _pod_labels(one(docs, "StatefulSet", "pingan-es"))
    assert _allowed(policies, es, 9200) == {"pingan-worker", "pingan-search", "pingan-init-index",
                                            "pingan-es-users", "pingan-ops"}
    assert _allowed(policies, es, 9300) == {"pingan-es"}
    search = _pod_labels(one(docs, "StatefulSet", "pingan-search"))
    assert _allowed(policies, search, 8080) == {"ns:ingress-nginx"}
    # Kafka: Strimzi generates the listener's policy from networkPolicyPeers
    (listener,) = by_kind(docs, "Kafka")[0]["spec"]["kafka"]["listeners"]
    assert _peer_names(listener["networkPolicyPeers"]) == {"pingan-worker", "pingan-receivers", "pingan-search",
                                                          "pingan-ops", "ns:keda"}
    assert not any(p["spec"]["podSelector"].get("matchLabels", {}).get("strimzi.io/cluster") for p in policies), \
        "NetworkPolicies add up: an extra Kafka policy would widen what networkPolicyPeers allow"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clients_authenticate_with_their_own_users(rendered: dict[str, Any], overlay: str) -> None:
    docs = rendered[overlay]
    cm = one(docs, "ConfigMap", "pingan-settings")["data"]
    users = {u["metadata"]["name"]: u for u in by_kind(docs, "KafkaUser")}
    topics = {d["spec"]["topicName"] for d in by_kind(docs, "KafkaTopic")}
    kafka_clients = {}
    for wl in (d for d in docs if d["kind"] in WORKLOADS):
        volumes = {v["name"]: v for v in wl["spec"]["template"]["spec"].get("volumes", [])}
        for c in containers(wl):
            env = _env(c)
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if "PINGAN_KAFKA_SASL_USERNAME" in env:
                user = env["PINGAN_KAFKA_SASL_USERNAME"]["value"]
                assert user in users and env["PINGAN_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == user
                kafka_clients[wl["metadata"]["name"]] = user
                vol = volumes[mounts[str(Path(cm["PINGAN_KAFKA_SSL_CAFILE"]).parent)]]
                assert vol["secret"]["secretName"] == "pingan-cluster-ca-cert"
            if "PINGAN_ES_USERNAME" in env:
                assert "secretKeyRef" in env["PINGAN_ES_PASSWORD"]["valueFrom"]
                vol = volumes[mounts[str(Path(cm["PINGAN_ES_CA_CERTS"]).parent)]]
                assert vol["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the CA only, not the key"
    # both worker roles are members of the one consumer group: the edge Deployment is the worker's user
    assert kafka_clients == {"pingan-worker": "pingan-worker", "pingan-edge": "pingan-worker",
                             "pingan-receivers": "pingan-receivers", "pingan-search": "pingan-search"}
    # ACLs name only this overlay's topics; the worker's group is the app id
    for user in users.values():
        for acl in user["spec"]["authorization"]["acls"]:
            res = acl["resource"]
            if res["type"] == "topic" and res["patternType"] == "literal":
                assert res["name"] in topics, res
    worker_groups = [a["resource"]["name"] for a in users["pingan-worker"]["spec"]["authorization"]["acls"]
                     if a["resource"]["type"] == "group"]
    assert worker_groups == [cm["PINGAN_APP_ID"]] == [gen_users.APP_IDS[overlay]]
    receiver_topics = {a["resource"]["name"] for a in users["pingan-receivers"]["spec"]["authorization"]["acls"]
                       if a["resource"]["type"] == "topic"}
    prefix = gen_topics.OVERLAYS[overlay]
    assert receiver_topics == {prefix + t.name for t in TOPICS if t.name.startswith("raw.")} | {prefix + "deadletters.v1"}
    assert all(set(a["operations"]) <= {"Write", "Describe", "IdempotentWrite"}
               for a in users["pingan-receivers"]["spec"]["authorization"]["acls"])
    search_acls = users["pingan-search"]["spec"]["authorization"]["acls"]
    assert {a["resource"].get("name") for a in search_acls if a["resource"]["type"] == "topic"} == \
        {prefix + "audit-anchors.v1", prefix + "dispositions.v1", prefix + "incidents.v1"}
    # the page only reads incidents; it writes anchors and centers' actions
    assert all("Write" not in a["operations"] for a in search_acls if a["resource"].get("name") == prefix + "incidents.v1")


def _literal_passwords(node: Any, where: str) -> Iterator[str]:
    if isinstance(node, dict):
        if "name" in node and "value" in node and isinstance(node["name"], str) and SECRET_NAME.search(node["name"]):
            yield f"{where}: env {node['name']} has a literal value"
        for k, v in node.items():
            if isinstance(k, str) and re.search(r"passw|token", k, re.IGNORECASE) and isinstance(v, (str, int)):
                yield f"{where}: {k} is a literal"
            yield from _literal_passwords(v, where)
    elif isinstance(node, list):
        for item in node:
            yield from _literal_passwords(item, where)


def test_no_literal_password_in_any_manifest() -> None:
    found = []
    for path in all_manifest_files():
        for doc in load(path):
            if doc["kind"] == "Secret":  # placeholders only (checked above)
                continue
            found += list(_literal_passwords(doc, f"{path.name} {_key(doc)}"))
    assert found == []
    assert list(_literal_passwords({"env": [{"name": "ES_PASSWORD", "value": "x"}]}, "probe")), "the check bites"
    assert list(_literal_passwords({"spec": {"auth": {"password": "x"}}}, "probe"))


def test_generated_kafka_users_are_current() -> None:
    assert gen_users.stale() == [], "run `python -m infra.k8s.gen_users`"
    assert gen_users.main(["--check"]) == 0
    with pytest.raises(ValueError):
        gen_users.acl_plan("someone", "", "pingan-bus")
