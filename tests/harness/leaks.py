"""What the suite leaves in the shared stack, and deleting a test namespace.

The shared broker and Elasticsearch node are used by several developers and test runs at once, so
"new since the session started" is not enough to call an object ours. An object is *this
session's* when (1) its name has the shape test namespaces have (`TEST_NAME`: ``t<8 hex>.``
topic prefixes and ``pingan-test-<hex>`` app ids / index prefixes of
`infra.processes.isolated_settings`, ``test-…`` topics (``test-<12 hex>-`` of `tests.harness.kafka.unique_prefix`, ``test-stack-<hex>``),
``t-<hex>`` consumer groups), (2) it was not there when the session started, and (3) it carries a
hex tag that this pytest process generated (`SessionTags` records every `uuid.uuid4()` the
process makes; every test namespace is cut from one). Objects of the right shape created by
someone else's concurrent run fail (3) and are only reported as "not ours".

`delete_namespace(settings)` removes everything one `Settings` namespace can create: topics under
its topic prefix, topics and consumer groups of its Faust app id (``<app_id>-…-changelog``,
``<app_id>-__assignor-__leader``, replay app ids ``<app_id>-replay-…``), the indices, alias and
index template under its index prefix.
"""
from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.common import delete_groups
from streams.settings import Settings

#: Names test namespaces have (topics, consumer groups, indices, index templates).
TEST_NAME = re.compile(
    r"^(?:t[0-9a-f]{8}\.|test-|pingan-test-|t-[0-9a-f]{6})"
)
_HEX_RUN = re.compile(r"(?<![0-9a-f])[0-9a-f]{6,32}(?![0-9a-f])")


class SessionTags:
    """Every uuid4 hex this process generates (test namespaces are cut from them)."""

    def __init__(self) -> None:
        self.hexes: set[str] = set()
        self._real: Callable[[], uuid.UUID] | None = None

    def install(self) -> None:
        if self._real is not None:
            return
        real = self._real = uuid.uuid4

        def recording_uuid4() -> uuid.UUID:
            u = real()
            self.hexes.add(u.hex)
            return u

        uuid.uuid4 = recording_uuid4  # type: ignore[assignment]

    def uninstall(self) -> None:
        if self._real is not None:
            uuid.uuid4 = self._real  # type: ignore[assignment]
            self._real = None

    def owns(self, name: str) -> bool:
        """True when a hex run of `name` (≥ 6 chars) is the start of a uuid this process made."""
        runs = _HEX_RUN.findall(name)
        return any(h.startswith(run) for run in runs for h in list(self.hexes))


@dataclass
class StackObjects:
    """Names of the test-shaped objects in the shared stack (None: that part did not answer)."""

    topics: set[str] | None = None
    groups: set[str] | None = None
    indices: set[str] | None = None
    templates: set[str] | None = None
    errors: list[str] = field(default_factory=list)

    def kinds(self) -> dict[str, set[str] | None]:
        return {"topic": self.topics, "consumer group": self.groups, "index": self.indices,
                "index template": self.templates}


def _kafka_admin(bootstrap: str) -> Any:
    from kafka import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pingan-test-leakcheck",
                            request_timeout_ms=10000)


def _group_ids(admin: Any) -> list[str]:
    """Consumer group ids (kafka-python 3 gives dicts, 2.x gave tuples)."""
    return [g["group_id"] if isinstance(g, dict) else g[0] for g in admin.list_groups()]


def snapshot(bootstrap: str, es_url: str) -> StackObjects:
    """The test-shaped topics, groups, indices and templates that exist now."""
    out = StackObjects()
    try:
        admin = _kafka_admin(bootstrap)
        try:
            out.topics = {t for t in admin.list_topics() if TEST_NAME.match(t)}
            out.groups = {g for g in _group_ids(admin) if TEST_NAME.match(g)}
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - reported, the check says it could not look
        out.errors.append(f"Kafka at {bootstrap}: {exc!r}")
    try:
        from elasticsearch import Elasticsearch
        es = Elasticsearch(es_url, request_timeout=10)
        try:
            out.indices = {i["index"] for i in es.cat.indices(format="json") if TEST_NAME.match(i["index"])}
            tpl = es.indices.get_index_template()
            out.templates = {t["name"] for t in tpl.get("index_templates", []) if TEST_NAME.match(t["name"])}
        finally:
            es.close()
    except Exception as exc:  # noqa: BLE001
        out.errors.append(f"Elasticsearch at {es_url}: {exc!r}")
    return out


def leftovers(before: StackObjects, after: StackObjects, tags: SessionTags) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(ours, not ours): test-shaped objects new since `before`, split by whether this session made them."""
    ours: dict[str, list[str]] = {}
    others: dict[str, list[str]] = {}
    b, a = before.kinds(), after.kinds()
    for kind, now in a.items():
        if now is None:
            continue
        new = sorted(now - (b[kind] or set()))
        mine = [n for n in new if tags.owns(n)]
        if mine:
            ours[kind] = mine
        if len(new) > len(mine):
            others[kind] = [n for n in new if n not in mine]
    return ours, others


def delete_objects(bootstrap: str, es_url: str, *, topics: Iterable[str] = (), groups: Iterable[str] = (),
                   indices: Iterable[str] = (), templates: Iterable[str] = ()) -> None:
    """Best-effort deletion of named objects (missing ones are fine)."""
    topics, groups, indices, templates = list(topics), list(groups), list(indices), list(templates)
    if topics or groups:
        try:
            admin = _kafka_admin(bootstrap)
        except Exception:  # noqa: BLE001 - cleanup only
            admin = None
        if admin is not None:
            try:
                if topics:
                    try:
                        admin.delete_topics(topics, timeout_ms=30000)
                    except Exception:  # noqa: BLE001 - some already gone
                        for t in topics:
                            try:
                                admin.delete_topics([t], timeout_ms=30000)
                            except Exception:  # noqa: BLE001
                                pass
                delete_groups(admin, groups, timeout_s=75.0)  # a killed worker's session
            finally:
                admin.close()
    if indices or templates:
        try:
            from elasticsearch import Elasticsearch
            es = Elasticsearch(es_url, request_timeout=30)
        except Exception:  # noqa: BLE001
            return
        try:
            for i in indices:
                try:
                    es.indices.delete(index=i, ignore_unavailable=True)
                except Exception:  # noqa: BLE001
                    pass
            for t in templates:
                try:
                    es.indices.delete_index_template(name=t)
                except Exception:  # noqa: BLE001
                    pass
        finally:
            es.close()


def namespace_objects(settings: Settings, *, kafka: bool = True, es: bool = True) -> StackObjects:
    """Everything that exists now under one namespace's topic prefix, app id and index prefix."""
    topic_prefix, app_id, index_prefix = settings.topic_prefix or "", settings.app_id, settings.es_index_prefix
    out = StackObjects(topics=set(), groups=set(), indices=set(), templates=set())
    if kafka:
        _kafka_namespace(settings, topic_prefix, app_id, out)
    if es:
        _es_namespace(settings, index_prefix, out)
    return out


def _kafka_namespace(settings: Settings, topic_prefix: str, app_id: str, out: StackObjects) -> None:
    try:
        admin = _kafka_admin(settings.kafka_bootstrap)
        try:
            for t in admin.list_topics():
                if (topic_prefix and t.startswith(topic_prefix)) or t.startswith(app_id + "-"):
                    out.topics.add(t)  # type: ignore[union-attr]
            for g in _group_ids(admin):
                if g == app_id or g.startswith(app_id + "-") or (topic_prefix and g.startswith(topic_prefix)):
                    out.groups.add(g)  # type: ignore[union-attr]
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001
        out.errors.append(repr(exc))


def _es_namespace(settings: Settings, index_prefix: str, out: StackObjects) -> None:
    try:
        from elasticsearch import Elasticsearch
        es = Elasticsearch(settings.es_url, request_timeout=10)
        try:
            out.indices = {i["index"] for i in es.cat.indices(index=f"{index_prefix}-*", format="json")}
            tpl = es.indices.get_index_template(name=f"{index_prefix}-*")
            out.templates = {t["name"] for t in tpl.get("index_templates", [])}
        except Exception as exc:  # noqa: BLE001 - none yet
            out.errors.append(repr(exc))
        finally:
            es.close()
    except Exception as exc:  # noqa: BLE001
        out.errors.append(repr(exc))


def delete_namespace(settings: Settings, *, kafka: bool = True, es: bool = True,
                     shared: frozenset[str] = frozenset({"pingan-bus", "pingan"})) -> None:
    """Delete the topics, groups, indices and index template of a test namespace (best effort).

    `kafka` / `es` False leave that engine alone (a private engine that is already stopped).
    Refuses a namespace that is not a test namespace (the shared defaults, an empty prefix)."""
    if settings.app_id in shared or settings.es_index_prefix in shared or not settings.topic_prefix:
        raise ValueError(f"not a test namespace: app_id={settings.app_id!r} "
                         f"index prefix={settings.es_index_prefix!r} topic prefix={settings.topic_prefix!r}")
    objs = namespace_objects(settings, kafka=kafka, es=es)
    delete_objects(settings.kafka_bootstrap, settings.es_url, topics=objs.topics or (), groups=objs.groups or (),
                   indices=objs.indices or (), templates=objs.templates or ())


_TRACKED: list[Settings] = []


def track(settings: Settings) -> Settings:
    """Remember a namespace for `delete_tracked` (fault tests make theirs inside the test body)."""
    _TRACKED.append(settings)
    return settings


def delete_tracked(shared: Settings) -> None:
    """Delete every tracked namespace on the engines it shares with `shared` (private ones are gone)."""
    while _TRACKED:
        s = _TRACKED.pop()
        kafka, es = s.kafka_bootstrap == shared.kafka_bootstrap, s.es_url == shared.es_url
        if kafka or es:
            delete_namespace(s, kafka=kafka, es=es)


def delete_index_prefix(es_url: str, index_prefix: str) -> None:
    """Delete the indices and index templates under one test index prefix (``pingan-test-…``)."""
    if not TEST_NAME.match(index_prefix):
        raise ValueError(f"not a test index prefix: {index_prefix!r}")
    try:
        from elasticsearch import Elasticsearch
        es = Elasticsearch(es_url, request_timeout=30)
    except Exception:  # noqa: BLE001
        return
    try:
        try:
            es.indices.delete(index=f"{index_prefix}-*", ignore_unavailable=True, expand_wildcards="all")
        except Exception:  # noqa: BLE001
            pass
        try:
            for t in es.indices.get_index_template(name=f"{index_prefix}-*").get("index_templates", []):
                es.indices.delete_index_template(name=t["name"])
        except Exception:  # noqa: BLE001 - none
            pass
    finally:
        es.close()


def wait_gone(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    """Poll `check` until it is true (topic deletion in Kafka is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
