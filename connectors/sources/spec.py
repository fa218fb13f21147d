"""The source registry's entry: everything the bus knows about one native feed, in one place.

Contract: a `SourceSpec` is plain, frozen data plus pure functions. Receivers, the file importer,
the 110 poller, dead-letter re-drive, the normalize stage and the kind tables all read a feed's
facts from its spec (`connectors/sources/<feed>/spec.py`), collected by
`connectors.sources.registry.SOURCES`; nothing else keeps a per-feed table.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.sources.common import TranslateResult
from connectors.sources.devices import DeviceRegistry
from connectors.sources.profile import Profile, builtin_profile
from schemas.catalogue import topic as catalogue_topic
from streams.domain.normalize import Mapper


@dataclass(frozen=True, slots=True)
class Payload:
    """One delivery as it arrived: bytes, their content type, when, and from which peer."""

    body: bytes
    content_type: str | None
    received_at_ms: int
    peer_ip: str | None = None


@dataclass(frozen=True)
class SourceContext:
    """What translate may read besides the payload: the device registry and the deployment's
    profiles (read-only; a payload can change neither)."""

    devices: DeviceRegistry = field(default_factory=DeviceRegistry)
    profiles: Mapping[str, Profile] = field(default_factory=dict)

    def profile(self, feed: str) -> Profile:
        """The feed's profile (its built-in defaults when the context was given none)."""
        found = self.profiles.get(feed)
        return found if found is not None else builtin_profile(feed)


#: A delivery → records or rejections (never raises).
Translate = Callable[[Payload, SourceContext], TranslateResult]
#: Table rows (an export or a database batch) → records or rejections (never raises).
TranslateRows = Callable[[Sequence[Mapping[str, Any]], int, str, SourceContext], TranslateResult]
#: An export file's bytes and name → its rows (raises TranslateError on an unreadable file).
ReadTable = Callable[[bytes, str], list[dict[str, Any]]]


@dataclass(frozen=True)
class SourceSpec:
    """One native feed.

    - `feed`: the feed's name and folder (``gb28181``); dead letters of its deliveries name it.
    - `source`: the canonical `Event.source` its records become (both camera feeds are ``camera``).
    - `topic`: the raw topic (catalogue name); its value schema and key field come from the catalogue.
    - `required`: raw-record fields without which normalize dead-letters a record.
    - `mapper`: raw record → `Draft` (the normalize step of this source).
    - `translate`: a delivery (HTTP push body, file, re-driven dead letter) → raw records.
    - `route`: the receiver's HTTP path, or None when the feed is not pushed over HTTP.
    - `content_type`: what the feed sends when a delivery names nothing.
    - `sender_retries`: the sender honours 429/503 + Retry-After (else it never re-sends: keep
      what was acknowledged, never answer 503 while the spool can store).
    - `translate_rows` / `read_table`: tabular feeds (exports, database rows).
    """

    feed: str
    source: str
    title: str
    topic: str
    required: tuple[str, ...]
    mapper: Mapper
    translate: Translate
    route: str | None = None
    content_type: str | None = None
    sender_retries: bool = False
    translate_rows: TranslateRows | None = None
    read_table: ReadTable | None = None

    @property
    def schema(self) -> str:
        """Full Avro name of the raw records (from the catalogue)."""
        return catalogue_topic(self.topic).value_schema

    @property
    def key_field(self) -> str:
        """The record field that is the raw topic's message key (from the catalogue)."""
        return catalogue_topic(self.topic).key
