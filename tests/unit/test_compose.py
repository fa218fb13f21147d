"""docker-compose.yml (single host): real settings only, pinned images and ports, no secrets.

Docker is not run here; the file is parsed and checked against the Settings model and the CLI.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.k8s.env import SECRET_ENV, known_env
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
PINNED = re.compile(r"^[\w./-]+:\d+(\.\d+)+[\w.-]*$")  # name:<numeric version>, never latest
SECRET_REF = re.compile(r"^\$\{PINGAN_[A-Z_]+:\?[^}]+\}$")  # ${VAR:?message}: required, from .env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_services_present_and_images_pinned(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "elasticsearch", "worker", "receivers", "search"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.0"
    assert services["elasticsearch"]["image"] == "docker.elastic.co/elasticsearch/elasticsearch-oss:7.10.2"
    for name, svc in services.items():
        assert PINNED.match(svc["image"]), f"{name}: image {svc['image']!r} is not pinned to a version"
        if "build" in svc:
            assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_kafka_is_kraft_and_es_single_node(compose: dict[str, Any]) -> None:
    kafka = _env(compose["services"]["kafka"])
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(kafka["KAFKA_NODE_ID"] + "@")
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    es = _env(compose["services"]["elasticsearch"])
    assert es["discovery.type"] == "single-node" and "-Xmx" in es["ES_JAVA_OPTS"]


def test_every_pingan_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    known = known_env()
    bus = [n for n, s in compose["services"].items() if s["image"].startswith("pingan-bus:")]
    assert set(bus) >= {"worker", "receivers", "search", "provision"}
    for name in bus:
        env = _env(compose["services"][name])
        pingan = {k for k in env if k.startswith("PINGAN_")}
        assert pingan <= known, f"{name}: unknown variables {pingan - known}"
        # it is a valid Settings environment (types parse), pointing at the compose services
        s = Settings(**{k[7:].lower(): v for k, v in env.items() if k[7:].lower() in Settings.model_fields
                        and not v.startswith("${")})
        assert s.kafka_bootstrap == "kafka:9092" and s.es_url == "http://elasticsearch:9200"
        assert not s.kafka_manage and not s.es_manage
        assert s.replication_factor == 1  # one broker
        for key in pingan & SECRET_ENV:
            assert SECRET_REF.match(env[key]), f"{name}: {key} must come from .env, not a literal"
    assert "PINGAN_PERSON_KEY_SECRET" in _env(compose["services"]["worker"])
    assert "PINGAN_SEARCH_TOKENS" in _env(compose["services"]["search"])


def test_ports_are_pinned_and_match_settings(compose: dict[str, Any]) -> None:
    defaults = Settings()
    published: dict[str, list[str]] = {n: s.get("ports", []) for n, s in compose["services"].items()}
    for name, ports in published.items():
        for p in ports:
            assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+(/udp)?", p), f"{name}: {p!r} must bind 127.0.0.1 explicitly"
    container = {n: {int(p.split(":")[2].split("/")[0]) for p in ps} for n, ps in published.items()}
    assert defaults.receiver_port in container["receivers"]
    assert defaults.search_port in container["search"]
    assert 9092 in container["kafka"] and 9200 in container["elasticsearch"]
    assert "127.0.0.1:19092:9092" in published["kafka"]  # same host port as the local launcher


def test_commands_bind_all_interfaces_inside_containers(compose: dict[str, Any]) -> None:
    svc = compose["services"]
    assert svc["worker"]["command"][:2] == ["worker", "run"]
    assert svc["receivers"]["command"][:2] == ["connectors", "run"]
    assert svc["search"]["command"][:2] == ["search", "serve"]
    for name in ("receivers", "search"):
        cmd = svc[name]["command"]
        assert cmd[cmd.index("--host") + 1] == "0.0.0.0", f"{name} would listen on the container's loopback"
    for name in ("worker", "receivers", "search"):
        deps = svc[name]["depends_on"]
        assert deps["provision"]["condition"] == "service_completed_successfully"
    prov = svc["provision"]["depends_on"]
    assert prov["kafka"]["condition"] == prov["elasticsearch"]["condition"] == "service_healthy"


def test_state_lives_on_named_volumes(compose: dict[str, Any]) -> None:
    svc = compose["services"]
    run_dir = _env(svc["worker"])["PINGAN_RUN_DIR"]
    for name in ("worker", "receivers", "search"):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc[name]["volumes"]}
        assert mounts.get(run_dir) in compose["volumes"], f"{name}: {run_dir} must be a named volume"


def test_dockerfile_pins_base_and_runs_pingan() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert froms and all(PINNED.match(f.split(" ")[0]) for f in froms)
    assert 'ENTRYPOINT ["pingan"]' in text and "USER 10001" in text
    assert re.search(r"pip install \.\s*$", text, flags=re.M)  # the pinned pyproject, not ad-hoc packages
