"""Index template, settings and mappings for the incident indices (pure, no I/O).

Contract: `incident_template(prefix, refresh_interval)` is the body of a composable index
template (``PUT _index_template/<name>``) for ``<prefix>-incidents-*``. Every versioned index
``<prefix>-incidents-v000001`` … gets one shard and no replicas locally, ids/codes as keywords,
epoch-millis dates, ``geo_point`` locations and Chinese text analysed with the built-in ``cjk``
bigram analyzer (plus a ``.uni`` unigram subfield for one-character queries and a ``.raw``
keyword where exact values are useful). Source text is kept in ``_source`` and stored.
"""
from __future__ import annotations

from typing import Any

TEMPLATE_VERSION = 3
"""Bump when the mappings change; an index built from an older template needs a replay.

3: the incident lifecycle (``actionable``, ``status`` values of Incident v2, ``deadline_at``,
``escalated``, ``escalation_history``, ``assignee``, ``dispositions`` …; `LIFECYCLE_MAPPINGS`) —
additions only; the operator queue needs them (a template-2 index answers an empty queue until
replayed).

2: ``views`` (per town/village view of the incident from its visible events) and
``events.severity`` added — additions only, a template-1 index stays readable; town and village
credentials need the replayed index (``pingan replay index``) to see incidents.

3: ``events.person_keys``/``vehicle_keys`` (each event's own keys), ``views.person_keys``/
``vehicle_keys`` (the keys of the events an area sees: a town or village looks keys up there) and
``views.status`` — additions only (`ensure_incident_index` puts them on the live index); documents
indexed before carry none of them, so a town or village lookup finds them after a replay."""

# A custom analyzer equal to the built-in `cjk` one but also emitting unigrams, so a
# one-character query ("火", "偷") still matches. Built from built-in filters only.
_ANALYSIS: dict[str, Any] = {
    "filter": {
        "pingan_cjk_bigram_uni": {"type": "cjk_bigram", "output_unigrams": True},
    },
    "analyzer": {
        "pingan_cjk_uni": {
            "type": "custom",
            "tokenizer": "standard",
            "filter": ["cjk_width", "lowercase", "pingan_cjk_bigram_uni"],
        },
    },
}

_DATE: dict[str, Any] = {"type": "date", "format": "epoch_millis"}
_KW: dict[str, Any] = {"type": "keyword"}


def _text(raw: bool = False, store: bool = True) -> dict[str, Any]:
    """A `cjk`-analysed text field with a unigram subfield (and optionally `.raw` keyword)."""
    fields: dict[str, Any] = {"uni": {"type": "text", "analyzer": "pingan_cjk_uni"}}
    if raw:
        fields["raw"] = {"type": "keyword", "ignore_above": 512}
    return {"type": "text", "analyzer": "cjk", "store": store, "fields": fields}


#: Incident fields repeated in each area view (``views``: the incident as a town or village sees it).
VIEW_FIELDS = ("kind", "severity", "tier", "status", "admin_code", "first_seen", "last_seen", "updated_at",
               "version", "event_count", "person_keys", "vehicle_keys")


_NOT_INDEXED: dict[str, Any] = {"type": "keyword", "index": False, "doc_values": False}

#: Lifecycle fields (template 3): queue filters/sorts on actionable, status, deadline_at, tier, severity.
LIFECYCLE_MAPPINGS: dict[str, Any] = {
    "actionable": {"type": "boolean"},
    "watch_hits": _KW,
    "escalated": {"type": "boolean"},
    "escalation_history": {"type": "object", "properties": {
        "from_tier": _KW, "to_tier": _KW, "reason_code": _KW, "reason": _NOT_INDEXED, "at": _DATE}},
    "opened_at": _DATE,
    "deadline_at": _DATE,
    "accepted_by": _KW,
    "assignee": _KW,
    "resolved_at": _DATE,
    "outcome": _NOT_INDEXED,
    "dispositions": {"type": "object", "properties": {
        "disposition_id": _KW, "action": _KW, "actor": _KW, "actor_admin_code": _KW, "at": _DATE,
        "assignee": _KW, "outcome": _NOT_INDEXED, "note": _NOT_INDEXED, "to_tier": _KW, "origin": _KW}},
}


def incident_mappings() -> dict[str, Any]:
    """Mappings of an incident document (see `connectors.elasticsearch.documents`)."""
    mappings = _incident_mappings()
    props = mappings["properties"]
    props.update(LIFECYCLE_MAPPINGS)
    props["views"] = {"type": "nested", "properties": {"area": _KW, **{k: props[k] for k in VIEW_FIELDS}}}
    return mappings


def _incident_mappings() -> dict[str, Any]:
    return {
        "dynamic": "strict",
        "_meta": {"template_version": TEMPLATE_VERSION},
        "properties": {
            "incident_id": _KW,
            "status": _KW,
            "merged_into": _KW,
            "kind": _KW,
            "severity": {"type": "integer"},
            "tier": _KW,
            "admin_code": _KW,
            "admin_path": _KW,
            "county_code": _KW,
            "town_codes": _KW,
            "village_codes": _KW,
            "first_seen": _DATE,
            "last_seen": _DATE,
            "updated_at": _DATE,
            "version": {"type": "long"},
            "event_count": {"type": "integer"},
            "event_ids": _KW,
            "sources": _KW,
            "event_kinds": _KW,
            "location": {"type": "geo_point"},
            "event_locations": {"type": "geo_point"},
            "person_keys": _KW,
            "vehicle_keys": _KW,
            "search_text": _text(store=False),
            "events": {
                "type": "nested",
                "properties": {
                    "event_id": _KW,
                    "source": _KW,
                    "kind": _KW,
                    "occurred_at": _DATE,
                    "text": _text(raw=True),
                    "location": {"type": "geo_point"},
                    "lat": {"type": "double", "index": False},
                    "lon": {"type": "double", "index": False},
                    "admin_code": _KW,
                    "severity": {"type": "integer"},
                    "persons": {"type": "keyword", "index": False},
                    "person_keys": _KW,
                    "vehicle_keys": _KW,
                    "quality": {"type": "object", "properties": {
                        "field": _KW, "reason": {"type": "keyword", "index": False}}},
                },
            },
            "links": {
                "type": "object",
                "properties": {
                    "link_id": _KW,
                    "event_a": _KW,
                    "event_b": _KW,
                    "score": {"type": "float"},
                    "reasons": _text(raw=True),
                    "rule": _KW,
                    "county_code": _KW,
                    "created_at": _DATE,
                },
            },
        },
    }


def index_settings(refresh_interval: str = "1s", shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """Index settings: shard/replica counts, refresh interval and the analysis chain."""
    return {
        "number_of_shards": shards,
        "number_of_replicas": replicas,
        "refresh_interval": refresh_interval,
        "analysis": _ANALYSIS,
    }


def incident_index_pattern(prefix: str) -> str:
    """``<prefix>-incidents-*``: the pattern the template applies to."""
    return f"{prefix}-incidents-*"


def incident_template(
    prefix: str,
    refresh_interval: str = "1s",
    *,
    shards: int = 1,
    replicas: int = 0,
    priority: int = 200,
) -> dict[str, Any]:
    """Body of the composable index template for ``<prefix>-incidents-*``."""
    return {
        "index_patterns": [incident_index_pattern(prefix)],
        "priority": priority,
        "version": TEMPLATE_VERSION,
        "_meta": {"description": "平安总线 incidents (alias in front of versioned indices)"},
        "template": {
            "settings": index_settings(refresh_interval, shards, replicas),
            "mappings": incident_mappings(),
        },
    }
