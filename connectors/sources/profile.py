"""Deployment profiles: what varies between counties' and vendors' systems, as data.

Contract: `load_profiles(override_dir)` returns one `Profile` per feed: the feed's built-in defaults
(`connectors/sources/<feed>/profile.toml`) extended by the deployment's `<override_dir>/<feed>.toml`
when present. Extending means: tables (``[aliases]``, ``[codes.*]``, ``[synonyms.*]`` …) are merged
key by key with the deployment's value winning; a list value in the deployment file is put before
the built-in list (its aliases are tried first), duplicates removed. Nothing here reads the
environment; `Settings.profile_dir` (``PINGAN_PROFILE_DIR``) names the override folder.

Keys a feed's translate reads (each feed documents its own in its profile.toml):
- ``aliases.<field>``: native names accepted for a record field, most specific first;
- ``codes.<table>``: native code or name → canonical value (both directions are accepted);
- ``synonyms.<field>``: enum wording variants → the canonical enum value;
- ``classify.<field>``: ordered ``[keyword, value]`` pairs for free text (first hit wins);
- ``coord_system``: the coordinate system of the feed's coordinates (WGS84, GCJ02, BD09);
- feed-specific scalars (``cursor`` for the 110 poller, …).
"""
from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

_SOURCES_DIR = Path(__file__).resolve().parent


class ProfileError(ValueError):
    """A profile file that cannot be read or has a value of the wrong shape (names file and key)."""


@dataclass(frozen=True)
class Profile:
    """The merged profile of one feed (read-only)."""

    feed: str
    data: Mapping[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # the files it was read from, built-in first

    def get(self, key: str, default: Any = None) -> Any:
        """A top-level value (dotted keys reach into tables: ``"codes.category"``)."""
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def aliases(self, name: str, *builtin: str) -> tuple[str, ...]:
        """Native names for a record field: the profile's, then `builtin`, without duplicates."""
        names = self.get(f"aliases.{name}", ())
        if isinstance(names, str):
            names = (names,)
        return tuple(dict.fromkeys([*names, *builtin]))

    def table(self, name: str) -> Mapping[str, str]:
        """A code/name table (``codes.<name>``) with its keys as given (case kept)."""
        t = self.get(f"codes.{name}", {})
        return MappingProxyType({str(k): str(v) for k, v in t.items()}) if isinstance(t, Mapping) else MappingProxyType({})

    def synonyms(self, name: str) -> Mapping[str, str]:
        """Enum wording variants (``synonyms.<name>``), keys lower-cased and stripped."""
        t = self.get(f"synonyms.{name}", {})
        if not isinstance(t, Mapping):
            return MappingProxyType({})
        return MappingProxyType({str(k).strip().lower(): str(v) for k, v in t.items()})

    def classifier(self, name: str) -> tuple[tuple[str, str], ...]:
        """Ordered (keyword, value) pairs for free text (``classify.<name>``)."""
        rows = self.get(f"classify.{name}", [])
        out: list[tuple[str, str]] = []
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, (list, tuple)) and len(row) == 2:
                out.append((str(row[0]), str(row[1])))
        return tuple(out)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(old, value)
        elif isinstance(old, list) and isinstance(value, list) and all(isinstance(v, str) for v in value + old):
            out[key] = list(dict.fromkeys([*value, *old]))
        else:
            out[key] = value
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ProfileError(f"{path}: cannot be read ({exc})") from exc


def builtin_profile_path(feed: str) -> Path:
    """The built-in profile of a feed (it may not exist: then the feed has no variants yet)."""
    return _SOURCES_DIR / feed / "profile.toml"


def load_profile(feed: str, override_dir: Path | None = None) -> Profile:
    """Built-in defaults of `feed`, extended by ``override_dir/<feed>.toml`` when present."""
    data: dict[str, Any] = {}
    sources: list[str] = []
    builtin = builtin_profile_path(feed)
    if builtin.is_file():
        data = _read(builtin)
        sources.append(str(builtin))
    if override_dir is not None:
        over = Path(override_dir) / f"{feed}.toml"
        if over.is_file():
            data = _merge(data, _read(over))
            sources.append(str(over))
    return Profile(feed, MappingProxyType(data), tuple(sources))


@lru_cache(maxsize=None)
def builtin_profile(feed: str) -> Profile:
    """The feed's built-in defaults alone, read once (a `Profile` is read-only, so it is shared)."""
    return load_profile(feed)


def load_profiles(feeds: Iterable[str], override_dir: Path | None = None) -> dict[str, Profile]:
    """One merged profile per feed; a missing override folder is an error (a typo must not pass)."""
    if override_dir is not None and not Path(override_dir).is_dir():
        raise ProfileError(f"profile folder {override_dir} does not exist (PINGAN_PROFILE_DIR)")
    return {feed: load_profile(feed, override_dir) for feed in feeds}
