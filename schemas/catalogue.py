"""The one topic catalogue: infra provisioning, streams, connectors and tests all read it.

Contract:
- ``TOPICS`` lists exactly the topics of ``docs/contracts.md``; names are the catalogue names
  (``Settings.topic(name)`` applies the optional deployment prefix).
- ``Topic.key`` is the *field of the value record* whose value, UTF-8 encoded, is the message key
  (``Topic.key_bytes(record)``). ``value_schema`` is the full Avro name (``pingan.Event``).
- ``Topic.config`` is the Kafka topic configuration to create the topic with (strings).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DAY_MS = 24 * 3600 * 1000
SCHEMAS_TOPIC = "schemas.v1"
#: topics read by systems outside the bus: their schemas are released (schemas/released/vN) and gated FULL
DOWNSTREAM_TOPICS: tuple[str, ...] = ("events.v1", "links.v1", "incidents.v1", "incident-members.v1", "escalations.v1",
                                       "dispositions.v1")


@dataclass(frozen=True, slots=True)
class Topic:
    """A Kafka topic of the bus: name, key field, value schema, partitions, config, guarantees."""

    name: str
    key: str
    value_schema: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    description: str = ""
    guarantees: str = ""

    @property
    def compacted(self) -> bool:
        """True when the topic uses log compaction."""
        return "compact" in self.config.get("cleanup.policy", "")

    def key_bytes(self, record: Mapping[str, Any]) -> bytes:
        """The message key for ``record``: its ``key`` field (dotted for nested), UTF-8 encoded."""
        value: Any = record
        for part in self.key.split("."):
            value = value[part] if isinstance(value, Mapping) else None
        if not isinstance(value, str) or not value:
            raise ValueError(f"{self.name}: key field {self.key!r} must be a non-empty string, got {value!r}")
        return value.encode("utf-8")


def _delete(days: int) -> Mapping[str, str]:
    return MappingProxyType({"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)})


_AT_LEAST_ONCE_SOURCE = (
    "At-least-once: the connector produces with acks=all and an idempotent producer, and advances its "
    "cursor (or acknowledges the sender) only after Kafka confirms; a re-delivered payload has the same "
    "native_id, so consumers deduplicate by it."
)
_DETERMINISTIC = (
    "At-least-once processing with deterministic ids: a replay or a retry produces the same record with "
    "the same id, so keyed consumers are effectively exactly-once."
)

TOPICS: tuple[Topic, ...] = (
    Topic("raw.camera.v1", "device_id", "pingan.raw.CameraAlarm", 6, _delete(7),
          "Camera alarms (GB/T 28181, Hikvision ISAPI) as received; clear identifiers.",
          _AT_LEAST_ONCE_SOURCE + " Per-device order is kept (keyed by device_id)."),
    Topic("raw.grid.v1", "report_id", "pingan.raw.GridReport", 3, _delete(30),
          "Grid-worker reports as received; clear identifiers.", _AT_LEAST_ONCE_SOURCE),
    Topic("raw.alarm110.v1", "jjdbh", "pingan.raw.Alarm110", 3, _delete(30),
          "110 alarm desk call sheets as polled; clear identifiers.", _AT_LEAST_ONCE_SOURCE),
    Topic("raw.mediation.v1", "case_no", "pingan.raw.MediationCase", 3, _delete(365),
          "People's mediation cases as imported; clear identifiers.", _AT_LEAST_ONCE_SOURCE),
    Topic("raw.door.v1", "device_id", "pingan.raw.DoorAccess", 3, _delete(7),
          "Smart-community door access records as received; clear identifiers.",
          _AT_LEAST_ONCE_SOURCE + " Per-device order is kept (keyed by device_id)."),
    Topic("events.v1", "event_id", "pingan.Event", 6, _delete(30),
          "Canonical events: UTC times, WGS-84, simplified text, pseudonymous person keys and masked "
          "display forms only (no clear identifiers).",
          _DETERMINISTIC + " event_id = source:native_id."),
    Topic("internal.events-by-county.v1", "location.county_code", "pingan.Event", 3, _delete(30),
          "Internal: the canonical events again, keyed by county code so that correlation and incident "
          "state for one county live in one partition (the unit of scale-out). Not for downstream use.",
          _DETERMINISTIC + " Written by the normalize stage together with events.v1."),
    Topic("links.v1", "county_code", "pingan.Link", 3, _delete(30),
          "Scored links between two events with their reasons; keyed by the 6-digit county code so one "
          "county's incidents are built in one partition.",
          _DETERMINISTIC + " link_id is derived from the event pair."),
    Topic("incidents.v1", "incident_id", "pingan.Incident", 3,
          MappingProxyType({"cleanup.policy": "compact"}),
          "Current state of every incident (compacted: the latest record per incident_id is kept). A merged "
          "incident gets a final record with status=merged and merged_into set.",
          _DETERMINISTIC + " Each update carries a higher version; read the latest per key."),
    Topic("incident-members.v1", "event_id", "pingan.IncidentMember", 3,
          MappingProxyType({"cleanup.policy": "compact"}),
          "Which incident each event joined (compacted: one record per event_id). An incident record lists at "
          "most 1,000 member ids (tier_rules.toml [incidents] listed_event_ids); this topic has them all: "
          "follow incident_id through the merged_into of incidents.v1's redirect records to the live incident.",
          _DETERMINISTIC + " Written in the same transaction as the incident records of the event's step."),
    Topic("escalations.v1", "incident_id", "pingan.Escalation", 3, _delete(90),
          "Incidents moving to a higher tier (village -> town -> county), for the town and county centers.",
          _DETERMINISTIC + " escalation_id is derived from incident, target tier and reason; deduplicate by it."),
    Topic("dispositions.v1", "incident_id", "pingan.Disposition", 3, _delete(3650),
          "Centers' actions on incidents (accept, assign, note, resolve, reopen, escalate), from the search "
          "API; applied by the correlate stage to the incident's state (a replay re-applies them).",
          "At least once from the API (202 only after Kafka acknowledged); disposition_id is deterministic "
          "(incident, action, actor, request_id), so a retried request is applied once."),
    Topic("clock.v1", "county_code", "pingan.ClockTick", 3, _delete(3650),
          "The county clock when a county is quiet: a worker's tick (wall time minus a grace period), "
          "read by the correlate stage like an event so deadlines pass even without new events; a "
          "pipeline replay re-reads it, so deadline escalations are reproduced.",
          "Ticks are idempotent (the clock only moves forward); duplicates from several workers are harmless."),
    Topic("schemas.v1", "fingerprint", "pingan.SchemaEntry", 1, MappingProxyType({"cleanup.policy": "compact"}),
          "The schema store: every schema version the bus may write (pingan.SchemaEntry, the self-contained schema "
          "JSON keyed by its fingerprint in wire notation), published by provisioning before any writer starts. "
          "Writers refuse to start while a schema they write is missing here. Also served read-only over HTTP: "
          "GET /schemas/{fingerprint} and GET /schemas/{name}/versions on the search server.",
          "Compacted, one record per fingerprint; republishing is idempotent (same key, same bytes). A schema is "
          "published before the first record written with it, so a subscriber that reads this topic (or asks the "
          "HTTP endpoint) after meeting an unknown fingerprint always finds it."),
    Topic("deadletters.v1", "source", "pingan.DeadLetter", 3, _delete(30),
          "Inputs that could not be processed, with the raw bytes, origin topic/partition/offset, stage, "
          "error class and reason; re-drivable.",
          "Written before the failing input's offset is committed, so no input is lost; dead_letter_id is "
          "deterministic, so a retried failure yields the same id."),
    Topic("audit-anchors.v1", "log_id", "pingan.AuditAnchor", 1, _delete(3650),
          "The head (sequence number, HMAC, time) of each search audit log's HMAC chain, every N records "
          "and when the server stops: kept outside the log so `pingan search verify-audit` detects a "
          "truncated log or a rewritten chain. Not compacted: verify-audit takes the highest anchored "
          "sequence, so a replayed old anchor cannot hide a truncation.",
          "Best effort from the search server (a failed publish is logged, the request is not failed); "
          "anchors carry their own HMAC, so one cannot be forged without the audit key."),
)

_BY_NAME: Mapping[str, Topic] = MappingProxyType({t.name: t for t in TOPICS})


def topic(name: str) -> Topic:
    """The catalogue entry of a topic name; ``KeyError`` naming the known topics otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(_BY_NAME)}") from None


def by_schema(schema_name: str) -> tuple[Topic, ...]:
    """Topics whose value schema is ``schema_name`` (full name ``pingan.Event`` or short ``Event``)."""
    return tuple(t for t in TOPICS if schema_name in (t.value_schema, t.value_schema.rsplit(".", 1)[-1]))
