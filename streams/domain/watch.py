"""Watch lists: plates, ID numbers and phones a county watches for (stolen vehicles, wanted persons).

Contract
- ``parse_watchlists(text, keyer) -> dict[str, str]``: the TOML text of a watch-list file —
  ``[[list]]`` tables with ``name`` and any of ``plates``, ``id_numbers``, ``phones`` — to
  pseudonymous key → list name, with `streams.domain.identity.PersonKeyer` (the keys normalize
  puts on events: ``plate:…``, ``id:…``, ``phone:…``), so clear identifiers are read once here and
  never kept. A key on several lists maps to the first list name in sort order (deterministic).
  An unparseable file, a list without a name, an unknown field or a value that does not normalize
  (``川UA12`` is no plate) raises `WatchlistError` with the list and the value masked: a watch
  list that silently watches less is worse than a worker that refuses to start.
- An event with a watched key opens an incident (``watch_hits`` = ``["watch:<name>"]``), see
  `streams.domain.lifecycle.opens`. The worker reads the file once at start (Settings
  ``watchlist_path``); a replay with another list gives other incidents.
"""
from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from streams.domain.identity import PersonKeyer, mask_id_shaped, mask_phone_shaped

FIELDS: Mapping[str, str] = {"plates": "plate", "id_numbers": "id", "phones": "phone"}


class WatchlistError(ValueError):
    """A watch-list file that cannot be used as written."""


def _masked(field: str, value: str) -> str:
    if field == "id_numbers":
        return mask_id_shaped(value)
    if field == "phones":
        return mask_phone_shaped(value)
    return value[:2] + "*" * max(len(value) - 3, 1) + value[-1:] if len(value) > 3 else "*" * len(value)


def parse_watchlists(text: str, keyer: PersonKeyer) -> dict[str, str]:
    """Key → watch-list name from the TOML text of a watch-list file (see module contract)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WatchlistError(f"watch list is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"list"})
    if unknown:
        raise WatchlistError(f"watch list: unknown top-level keys {unknown} (expected [[list]] tables)")
    lists = data.get("list") or []
    if not isinstance(lists, list):
        raise WatchlistError("watch list: `list` must be an array of tables ([[list]])")
    key_of: Mapping[str, Callable[[str | None], str | None]] = {
        "plates": keyer.plate_key, "id_numbers": keyer.id_key, "phones": keyer.phone_key}
    out: dict[str, str] = {}
    for n, entry in enumerate(lists, start=1):
        if not isinstance(entry, Mapping):
            raise WatchlistError(f"watch list #{n}: not a table")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise WatchlistError(f"watch list #{n}: needs a name")
        name = name.strip()
        extra = sorted(set(entry) - {"name", "description", *FIELDS})
        if extra:
            raise WatchlistError(f"watch list {name!r}: unknown fields {extra} (known: {', '.join(FIELDS)})")
        for field in FIELDS:
            values: Any = entry.get(field) or []
            if not isinstance(values, list):
                raise WatchlistError(f"watch list {name!r}: {field} must be a list of strings")
            for value in values:
                key = key_of[field](str(value)) if isinstance(value, (str, int)) else None
                if key is None:
                    raise WatchlistError(f"watch list {name!r}: {field} entry {_masked(field, str(value))!r} "
                                         "is not valid")
                if key not in out or name < out[key]:
                    out[key] = name
    return dict(sorted(out.items()))
