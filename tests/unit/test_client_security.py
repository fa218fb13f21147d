"""Kafka TLS/SASL and Elasticsearch auth settings reach the clients (issue 14): read from the
environment by Settings only, validated together, turned into each client library's arguments."""
from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import certifi
import pytest
from pydantic import ValidationError

from connectors.ingest.producer import RecordProducer
from streams.settings import Settings
from streams.web.audit import KafkaAnchors
from streams.worker.app import broker_credentials, faust_config

SCRAM = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
         "kafka_sasl_username": "pingan-worker", "kafka_sasl_password": "s3cret-scram"}


def test_defaults_add_nothing() -> None:
    s = Settings()
    assert s.kafka_client_options() == {} and s.aiokafka_client_options() == {} and s.es_client_options() == {}
    assert broker_credentials(s) is None


def test_scram_over_tls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    ca = certifi.where()
    for key, value in {**SCRAM, "kafka_ssl_cafile": ca, "es_username": "pingan-search", "es_password": "es-pw",
                       "es_ca_certs": ca}.items():
        monkeypatch.setenv(f"PINGAN_{key.upper()}", value)
    s = Settings.from_env()
    assert s.kafka_client_options() == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                        "sasl_plain_username": "pingan-worker",
                                        "sasl_plain_password": "s3cret-scram", "ssl_cafile": ca}
    aio = s.aiokafka_client_options()
    assert "ssl_cafile" not in aio and isinstance(aio["ssl_context"], ssl.SSLContext)
    assert aio["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert s.es_client_options() == {"http_auth": ("pingan-search", "es-pw"), "ca_certs": ca}
    assert "s3cret-scram" not in repr(s) and "es-pw" not in repr(s)
    creds = broker_credentials(s)
    assert creds is not None and creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert faust_config(s, "memory://")["broker_credentials"].username == "pingan-worker"
    # a subprocess given these settings sees them again
    assert Settings(**{k[len("PINGAN_"):].lower(): v for k, v in s.as_env().items()}).kafka_client_options() \
        == s.kafka_client_options()


def test_tls_only() -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=Path(certifi.where()))
    assert set(s.aiokafka_client_options()) == {"security_protocol", "ssl_context"}
    assert broker_credentials(s).protocol.value == "SSL"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [
    {"kafka_security_protocol": "SASL_SSL"},
    {**SCRAM, "kafka_sasl_username": None},
    {"kafka_sasl_mechanism": "SCRAM-SHA-512"},
    {"kafka_ssl_cafile": "/tmp/ca.crt"},
    {"es_password": "x"},
    {"kafka_security_protocol": "TLS"},
])
def test_inconsistent_security_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_sasl_without_credentials_fails_where_a_client_is_built() -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512")  # the ConfigMap alone
    with pytest.raises(ValueError, match="PINGAN_KAFKA_SASL_USERNAME"):
        s.aiokafka_client_options()


def test_the_receivers_producer_and_the_audit_anchors_use_them() -> None:
    s = Settings(**SCRAM)
    seen: dict[str, Any] = {}

    class FakeProducer:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

        async def start(self) -> None:
            return None

    producer = RecordProducer.from_settings(s, producer_factory=FakeProducer)
    asyncio.run(producer.start())
    assert seen["security_protocol"] == "SASL_SSL" and seen["sasl_mechanism"] == "SCRAM-SHA-512"
    assert seen["sasl_plain_username"] == "pingan-worker" and isinstance(seen["ssl_context"], ssl.SSLContext)
    anchors = KafkaAnchors(s.kafka_bootstrap, "audit-anchors.v1", security=s.kafka_client_options())
    assert anchors.security["sasl_plain_password"] == "s3cret-scram"
