"""The source registry: every native feed the bus takes, each declared once in its folder.

Contract: `SOURCES` lists one `SourceSpec` per feed, in a fixed order. Everything per-feed that
receivers, importers, the poller, dead-letter re-drive and the normalize stage need is read from
here (`feed()`, `for_schema()`, `for_topic()`, `mappers()`); adding a feed means adding its folder
(translate, codes, spec), its Avro schema and catalogue topic, its tests, and one line below.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from connectors.sources.alarm110.spec import SPEC as ALARM110
from connectors.sources.devices import DeviceRegistry
from connectors.sources.door.spec import SPEC as DOOR
from connectors.sources.gb28181.spec import SPEC as GB28181
from connectors.sources.grid.spec import SPEC as GRID
from connectors.sources.isapi.spec import SPEC as ISAPI
from connectors.sources.mediation.spec import SPEC as MEDIATION
from connectors.sources.profile import load_profiles
from connectors.sources.spec import SourceContext, SourceSpec
from streams.domain.normalize import Mapper, Normalizer
from streams.settings import Settings

SOURCES: tuple[SourceSpec, ...] = (GB28181, ISAPI, GRID, ALARM110, MEDIATION, DOOR)

_BY_FEED: Mapping[str, SourceSpec] = MappingProxyType({s.feed: s for s in SOURCES})


def feed(name: str) -> SourceSpec:
    """The spec of a feed (``gb28181``, ``isapi``, ``grid``, ``alarm110``, ``mediation``, ``door``)."""
    try:
        return _BY_FEED[name]
    except KeyError:
        raise KeyError(f"unknown feed {name!r}; known: {', '.join(_BY_FEED)}") from None


def feeds() -> tuple[str, ...]:
    """Every feed name, in registry order."""
    return tuple(_BY_FEED)


def pushed() -> tuple[SourceSpec, ...]:
    """The feeds the receiver takes over HTTP (those with a route)."""
    return tuple(s for s in SOURCES if s.route)


def canonical_sources() -> tuple[str, ...]:
    """The canonical `Event.source` names, in registry order (each once)."""
    return tuple(dict.fromkeys(s.source for s in SOURCES))


def source_of_feed(name: str) -> str:
    """The canonical source of a feed; an unknown name is returned as it is."""
    spec = _BY_FEED.get(name)
    return spec.source if spec is not None else name


def for_schema(schema: str) -> SourceSpec | None:
    """The first spec whose raw records have this Avro full name (camera feeds share one)."""
    return next((s for s in SOURCES if s.schema == schema), None)


def for_topic(topic: str) -> SourceSpec | None:
    """The first spec whose raw topic (catalogue name) is `topic`."""
    return next((s for s in SOURCES if s.topic == topic), None)


def raw_topics() -> tuple[str, ...]:
    """The raw topics (catalogue names), each once, in registry order."""
    return tuple(dict.fromkeys(s.topic for s in SOURCES))


def mappers() -> dict[str, Mapper]:
    """Canonical source → its record mapper (the normalize step of each source)."""
    out: dict[str, Mapper] = {}
    for s in SOURCES:
        if out.setdefault(s.source, s.mapper) is not s.mapper:
            raise ValueError(f"source {s.source!r} has two mappers (feeds of one source share one)")
    return out


def normalizer(secret: bytes, timezone: str, devices: DeviceRegistry | None = None) -> Normalizer:
    """A `Normalizer` for every registered source."""
    return Normalizer(secret, timezone, devices, mappers=mappers())


def context(devices: DeviceRegistry | None = None, profile_dir: Path | None = None) -> SourceContext:
    """What translate reads besides the payload: the device registry and every feed's profile
    (built-in defaults extended by ``profile_dir/<feed>.toml``)."""
    return SourceContext(devices if devices is not None else DeviceRegistry(),
                         MappingProxyType(load_profiles(feeds(), profile_dir)))


def context_from_settings(settings: Settings) -> SourceContext:
    """`context()` for a deployment: its device registry CSV and its profile folder."""
    devices = DeviceRegistry.from_csv(settings.registry_path) if settings.registry_path is not None else None
    return context(devices, settings.profile_dir)
