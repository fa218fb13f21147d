"""Shared fixtures. Integration and e2e tests run against the real local stack (infra/).

`./run.sh test` starts the stack before pytest; the `stack` fixture makes `pytest` alone work too
(it starts the engines if they are not running, idempotently, and leaves them running).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infra.stack import Stack
from streams.ops.provision import provision_topics
from streams.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The environment's settings (``PINGAN_*``)."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    """Real Kafka + Elasticsearch, ready, with the catalogue provisioned."""
    Stack(settings).up(timeout_s=240)
    provision_topics(settings)
    yield settings


@pytest.fixture()
def unique() -> str:
    """A short unique suffix for test topics and indices."""
    return uuid.uuid4().hex[:10]
