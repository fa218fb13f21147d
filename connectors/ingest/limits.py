"""Record size limits of the broker, checked before a record is acknowledged (pure: no Kafka import).

Contract
--------
* ``SizeLimits.limit(topic)`` is the largest record batch Kafka takes on ``topic``: the topic's
  ``max.message.bytes`` (the broker's ``message.max.bytes`` when the topic was not described), never
  above the producer's ``max_request_size``. ``SizeLimits.discovered`` says whether the numbers came
  from the broker (``limits_from_configs``) or are Kafka's defaults (``default_limits``).
* ``record_size(key, value)`` over-estimates what one record costs inside a batch on its own (v2
  batch header, per-record varints, ``SAFETY_MARGIN``); ``fits`` / ``check`` compare it with the limit.
  A record that fits here is never refused by the broker for its size.
* ``value_budget(topic, key, envelope)`` is how many more bytes a value built around ``envelope``
  bytes may take on ``topic`` (0 when even the envelope does not fit).
* ``digest(raw)`` gives the sha256 hex and length of a body (what a truncated dead letter carries).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: Kafka's default ``message.max.bytes`` / ``max.message.bytes`` (1 MiB + 12).
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: v2 record batch header (magic 2).
RECORD_BATCH_OVERHEAD = 61
#: upper bound of one record's framing inside a batch (length, attributes, timestamp and offset
#: deltas, key and value lengths, header count: varints of at most 5–10 bytes each).
RECORD_OVERHEAD = 40
#: slack for what the estimate does not model (producer-side accounting differences).
SAFETY_MARGIN = 1024


def record_size(key: bytes | None, value: bytes) -> int:
    """Upper bound of the bytes one record takes as a batch of its own."""
    return RECORD_BATCH_OVERHEAD + RECORD_OVERHEAD + SAFETY_MARGIN + len(key or b"") + len(value)


def digest(raw: bytes) -> tuple[str, int]:
    """(sha256 hex, length) of ``raw``."""
    return hashlib.sha256(raw).hexdigest(), len(raw)


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """Largest batch Kafka takes per topic (see the module contract)."""

    default_bytes: int = KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    per_topic: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    max_request_size: int | None = None
    discovered: bool = False

    def limit(self, topic: str) -> int:
        """Bytes a batch of ``topic`` may take (topic config, else broker default; capped by the producer)."""
        n = self.per_topic.get(topic, self.default_bytes)
        return n if self.max_request_size is None else min(n, self.max_request_size)

    def fits(self, topic: str, key: bytes | None, value: bytes) -> bool:
        """True when the record alone is within ``limit(topic)``."""
        return record_size(key, value) <= self.limit(topic)

    def check(self, topic: str, key: bytes | None, value: bytes) -> str | None:
        """None when the record fits; else the reason (sizes and the limit) as text."""
        if self.fits(topic, key, value):
            return None
        return (f"record for {topic} is {len(value)} bytes (key {len(key or b'')}); Kafka takes at most "
                f"{self.limit(topic)} bytes per batch on it ({'discovered' if self.discovered else 'default'} limit)")

    def value_budget(self, topic: str, key: bytes | None, envelope: int) -> int:
        """Bytes left for variable content once ``envelope`` value bytes are spent (never negative)."""
        return max(0, self.limit(topic) - record_size(key, b"") - envelope)


def default_limits(max_request_size: int | None = None) -> SizeLimits:
    """Kafka's default limit (used until the broker's real limits are known)."""
    return SizeLimits(KAFKA_DEFAULT_MAX_MESSAGE_BYTES, MappingProxyType({}), max_request_size, False)


def limits_from_configs(broker_max: int | None, topic_max: Mapping[str, int | None],
                        max_request_size: int | None) -> SizeLimits:
    """Limits from described configs: ``message.max.bytes`` of the broker and ``max.message.bytes``
    per topic (None: not described, the broker's value applies)."""
    default = broker_max if broker_max and broker_max > 0 else KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    per_topic = {t: n for t, n in topic_max.items() if n is not None and n > 0}
    return SizeLimits(default, MappingProxyType(per_topic), max_request_size, True)
