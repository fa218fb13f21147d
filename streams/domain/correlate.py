"""Correlation: which canonical events (docs/contracts.md) belong to the same incident.

Contracts
- ``index_keys(event, rules)`` keys an event is stored under; ``probe_keys(event, rules)`` keys
  it looks up; ``blocking_keys(event, rules)`` their sorted union. Invariant: whenever
  ``score_pair`` could link a and b, ``probe_keys(b) & index_keys(a)`` is non-empty (and vice
  versa), so blocking never hides a pair the rules would link.
  Key forms: ``p:<person or vehicle key>``, ``g:<h3 res-7 cell>:<60-min bucket>`` (fine level),
  ``a:<h3 res-5 cell>:<12-h bucket>`` (area level, disaster kinds), ``n:<h3 res-6 cell>:<bucket>``
  (near level, disaster kinds) and ``np:…`` (its partner kinds: camera alarms; partners probe only
  ``n:``, hubs probe ``n:`` and ``np:``), ``e:<own event id>``,
  ``r:<related event id>``. Scale-out partitions by county code (``partition_key``); events of
  different counties never link.
- ``score_pair(a, b, rules) -> LinkDecision | None``: evidence gates of the kind-pair rule, then
  noisy-OR score >= ``min_score``. Deterministic; symmetric in (a, b).
- ``LinkDecision.as_link()`` is a ``pingan.Link`` dict: link_id = sha1("min|max")[:20],
  event_a < event_b, created_at = max(occurred_at) (never wall-clock).
- ``CandidateIndex(rules, store)``: ``add(event) -> list[Link]`` against events seen before,
  over an injectable ``MutableMapping[str, list]`` (a dict in tests, a Faust table in the
  agent). Values are always re-assigned, never mutated in place, so a changelog-backed table
  sees every change.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, MutableMapping, Sequence

import h3

from . import admin
from .geo import haversine_m
from .ids import link_id
from .rules import BlockingLevel, CorrelationRules, PairRule

Event = Mapping[str, Any]

_WATERMARK_KEY = "~watermark"
#: candidate sides `CandidateIndex` keeps (`CandidateIndex._side_of`); the whole memo is dropped when full
_SIDES_MAX = 8192
_LEVEL_PREFIX = {"fine": "g", "area": "a", "near": "n"}
_KEY_KINDS = ("id", "phone", "plate", "name_village")
_KEY_REASONS = {"id": "同一身份证号", "phone": "同一手机号", "plate": "同一车牌", "name_village": "同名同村"}


# ----------------------------------------------------------------------------- event accessors

def _loc(event: Event) -> Mapping[str, Any]:
    return event.get("location") or {}


def county_of(event: Event) -> str | None:
    """County code of an event (location.county_code, else the first 6 digits of admin_code)."""
    loc = _loc(event)
    code = loc.get("admin_code") or ""
    return loc.get("county_code") or admin.prefix(code, admin.COUNTY) or code or None


def partition_key(event: Event) -> str:
    """The key to repartition events by before correlation: the county code ("" if unknown)."""
    return county_of(event) or ""


def _town(event: Event) -> str | None:
    loc = _loc(event)
    return loc.get("town_code") or admin.prefix(loc.get("admin_code"), admin.TOWN)


def _village(event: Event) -> str | None:
    loc = _loc(event)
    return loc.get("village_code") or admin.prefix(loc.get("admin_code"), admin.VILLAGE)


def entity_keys(event: Event) -> set[str]:
    """All pseudonymous person keys and vehicle keys of an event (``kind:hex``)."""
    keys = {k for p in event.get("persons") or () for k in p.get("keys") or ()}
    keys |= {v["key"] for v in event.get("vehicles") or () if v.get("key")}
    return keys


def _related(event: Event) -> set[str]:
    return set((event.get("refs") or {}).get("related_ids") or ())


def _latlon(event: Event) -> tuple[float, float] | None:
    loc = _loc(event)
    lat, lon = loc.get("lat"), loc.get("lon")
    if lat is None or lon is None:
        return None
    return float(lat), float(lon)


# Memos of two pure H3 functions (bounded, process-wide like `re`'s pattern cache): cameras and
# door controllers report from fixed points, so the same few thousand cells recur per level.
@lru_cache(maxsize=1 << 16)
def _latlng_cell(lat: float, lon: float, res: int) -> str:
    """``h3.latlng_to_cell``."""
    return h3.latlng_to_cell(lat, lon, res)


@lru_cache(maxsize=1 << 16)
def _disk(cell: str, ring: int) -> tuple[str, ...]:
    """``sorted(h3.grid_disk(cell, ring))``."""
    return tuple(sorted(h3.grid_disk(cell, ring)))


def _cell(event: Event, res: int) -> str | None:
    ll = _latlon(event)
    if ll is not None:
        return _latlng_cell(ll[0], ll[1], res)
    cell = _loc(event).get("geo_cell")
    if cell and h3.is_valid_cell(cell) and h3.get_resolution(cell) >= res:
        return h3.cell_to_parent(cell, res)
    return None


# ----------------------------------------------------------------------------- blocking keys

def _level_keys(event: Event, level: BlockingLevel, probe: bool) -> Sequence[str]:
    role = level.role(event.get("kind") or "")
    if role is None:
        return ()
    cell = _cell(event, level.h3_resolution)
    if cell is None:
        return ()
    bucket = int(event["occurred_at"]) // (level.bucket_minutes * 60_000)
    prefix = _LEVEL_PREFIX.get(level.name, level.name)
    hub, partner = prefix, prefix + "p"
    if not probe:
        return [f"{hub if role == 'hub' else partner}:{cell}:{bucket}"]
    # hubs look up hubs and partners; partners look up hubs only
    spaces = (hub, partner) if role == "hub" and level.partners else (hub,)
    return _probe_cells(spaces, cell, level.ring, bucket)


@lru_cache(maxsize=1 << 12)
def _probe_cells(spaces: tuple[str, ...], cell: str, ring: int, bucket: int) -> tuple[str, ...]:
    """The probe keys of one level: every space x the ring's cells x the adjacent buckets (memoized
    like `_disk`: the events of one place and hour probe the same keys)."""
    cells = _disk(cell, ring)
    return tuple(f"{sp}:{c}:{b}" for sp in spaces for c in cells for b in (bucket - 1, bucket, bucket + 1))


def index_keys(event: Event, rules: CorrelationRules) -> list[str]:
    """Keys the event is stored under: entity keys, own cell x own bucket per level, e:/r: refs."""
    keys = {f"p:{k}" for k in entity_keys(event)}
    for level in rules.levels:
        keys.update(_level_keys(event, level, probe=False))
    keys.add(f"e:{event['event_id']}")
    keys.update(f"r:{r}" for r in _related(event))
    return sorted(keys)


def probe_keys(event: Event, rules: CorrelationRules) -> list[str]:
    """Keys the event looks up: entity keys, ring cells x adjacent buckets, refs both ways."""
    keys = {f"p:{k}" for k in entity_keys(event)}
    for level in rules.levels:
        keys.update(_level_keys(event, level, probe=True))
    keys.add(f"r:{event['event_id']}")
    keys.update(f"e:{r}" for r in _related(event))
    keys.update(f"r:{r}" for r in _related(event))
    return sorted(keys)


def blocking_keys(event: Event, rules: CorrelationRules) -> list[str]:
    """All blocking keys of an event (stored and probed), sorted."""
    return sorted(set(index_keys(event, rules)) | set(probe_keys(event, rules)))


# ----------------------------------------------------------------------------- scoring

@dataclass(frozen=True, slots=True)
class LinkDecision:
    """A decided link between two events; ``as_link()`` gives the pingan.Link dict."""

    event_a: str
    event_b: str
    score: float
    reasons: tuple[str, ...]
    rule: str
    county_code: str
    created_at: int

    @property
    def link_id(self) -> str:
        """sha1("min|max")[:20]."""
        return link_id(self.event_a, self.event_b)

    def as_link(self) -> dict[str, Any]:
        """The Link record of docs/contracts.md."""
        return {
            "link_id": self.link_id, "event_a": self.event_a, "event_b": self.event_b,
            "score": self.score, "reasons": list(self.reasons), "rule": self.rule,
            "county_code": self.county_code, "created_at": self.created_at,
            "rules_version": "",  # the processor stamps the version of the rules in force
        }


def _fmt_distance(m: float) -> str:
    return f"{round(m)}米" if m < 1000 else f"{m / 1000:.1f}公里"


def _fmt_gap(minutes: float) -> str:
    if minutes < 120:
        return f"{round(minutes)}分钟"
    if minutes < 48 * 60:
        return f"{round(minutes / 60)}小时"
    return f"{round(minutes / 1440)}天"


def _closeness(weight: float, value: float, limit: float) -> float:
    """Full weight at 0, half weight at the limit, nothing beyond it."""
    if limit <= 0 or value > limit:
        return 0.0
    return weight * (1.0 - 0.5 * value / limit)


def _shared_by_kind(keys_a: set[str], keys_b: set[str]) -> dict[str, bool]:
    kinds = {k.split(":", 1)[0] for k in keys_a & keys_b}
    return {k: k in kinds for k in _KEY_KINDS}


@dataclass(frozen=True, slots=True)
class _Side:
    """What scoring reads of one event, computed once: the new event of `CandidateIndex.add` is
    scored against every candidate of its keys (tens to hundreds), and a candidate of a dense
    burst is scored by every later event of the burst (`CandidateIndex.add` keeps its side)."""

    event: Event
    event_id: str
    county: str | None
    kind: str
    at: int
    related: set[str]
    keys: set[str]
    latlon: tuple[float, float] | None
    address: Any
    village: str | None
    town: str | None


def _side(event: Event) -> _Side:
    return _Side(event, event["event_id"], county_of(event), event.get("kind") or "other",
                 int(event["occurred_at"]), _related(event), entity_keys(event), _latlon(event),
                 _loc(event).get("address"), _village(event), _town(event))


def score_pair(a: Event, b: Event, rules: CorrelationRules) -> LinkDecision | None:
    """Decide whether two events are the same incident; None when they must not link.

    Gates (any one suffices, then score >= rule.min_score):
      explicit reference (GLJJDBH) - always; shared id/phone/plate key within max_gap_minutes;
      name_village key with the same address (within max_gap_minutes) or within the
      [name_village] distance and gap; location-only (rule.location_only) within both
      loc_distance_m and loc_gap_minutes (when a coordinate is missing: the same address within
      loc_gap_minutes).
    Events of different counties never link.
    """
    return _score(_side(a), _side(b), rules)


def _cannot_link(sa: _Side, b: Mapping[str, Any], rules: CorrelationRules) -> bool:
    """True only when `_score(sa, _side(b), rules)` is certainly None, from what is cheap to read: no
    reference either way, the place gate shut (time), and the key gates shut (time, or `b` has no
    person or vehicle key). Most candidates of the geo-time keys are camera alarms near in place
    and far in time; this turns them away without building their key and reference sets."""
    rule = rules.rule_for(sa.kind, b.get("kind") or "other")
    gap = abs(sa.at - int(b["occurred_at"])) / 60_000
    if rule.location_only and gap <= rule.loc_gap_minutes:
        return False
    related = (b.get("refs") or {}).get("related_ids")
    if related or (sa.related and b["event_id"] in sa.related):
        return False
    if rule.link and gap <= rule.max_gap_minutes and (b.get("persons") or b.get("vehicles")):
        return False
    return True


def _score(sa: _Side, sb: _Side, rules: CorrelationRules) -> LinkDecision | None:
    """`score_pair` of two events' sides (`_side`)."""
    ida, idb = sa.event_id, sb.event_id
    if ida == idb:
        return None
    ca, cb = sa.county, sb.county
    if ca and cb and ca != cb:
        return None
    rule: PairRule = rules.rule_for(sa.kind, sb.kind)
    w = rules.weights
    at_b = sb.at
    gap = abs(sa.at - at_b) / 60_000
    ra, rb = sa.related, sb.related
    refs = ({idb} & ra) | ({ida} & rb) | (ra & rb)
    if not refs:  # cheap exits first: every other gate needs the rule to link within its windows
        window = max(rule.max_gap_minutes, rule.loc_gap_minutes if rule.location_only else 0)
        if not rule.link or gap > window:
            return None
    shared = _shared_by_kind(sa.keys, sb.keys)
    if not refs and not (
        (gap <= rule.max_gap_minutes and any(shared.values()))  # a key gate (strong or weak) may pass
        or (rule.location_only and gap <= rule.loc_gap_minutes)  # the place gate may pass
    ):
        return None  # the same answer as the gates below, without the distance and place work
    la, lb = sa.latlon, sb.latlon
    dist = haversine_m(*la, *lb) if la and lb else None
    addr_a, addr_b = sa.address, sb.address
    same_addr = bool(addr_a) and addr_a == addr_b
    va, vb, ta, tb = sa.village, sb.village, sa.town, sb.town
    same_village = bool(va) and va == vb
    same_town = bool(ta) and ta == tb

    strong = (shared["id"] or shared["phone"] or shared["plate"]) and gap <= rule.max_gap_minutes
    weak = shared["name_village"] and gap <= rule.max_gap_minutes and (
        same_addr or (
            dist is not None and dist <= rules.name_village_max_distance_m
            and gap <= rules.name_village_max_gap_minutes
        )
    )
    # place alone: the distance when both points are known (a shared coarse address such as a
    # village group "克枯村3组" spans hundreds of metres and must not override it, and blocking only
    # guarantees meetings by distance), else the same normalized address
    loc_only = rule.location_only and gap <= rule.loc_gap_minutes and (
        dist <= rule.loc_distance_m if dist is not None else same_addr
    )
    if not refs and not (rule.link and (strong or weak or loc_only)):
        return None

    reasons: list[str] = []
    factors: list[float] = []
    if refs:
        factors.append(w["related"])
        reasons.append("110关联警情单" if all(r.startswith("alarm110:") for r in refs) else "关联事件编号")
    for kind in _KEY_KINDS:
        if shared[kind]:
            factors.append(w[kind])
            reasons.append(_KEY_REASONS[kind])
    # location-only pairs are scored against their tight windows, the others against the rule's
    near = loc_only and not (strong or weak or refs)
    d_limit = rule.loc_distance_m if near else rule.max_distance_m
    t_limit = rule.loc_gap_minutes if near else rule.max_gap_minutes
    if dist is not None:
        factors.append(_closeness(w["proximity"], dist, d_limit))
        reasons.append(f"相距{_fmt_distance(dist)}、间隔{_fmt_gap(gap)}")
    else:
        reasons.append(f"间隔{_fmt_gap(gap)}")
    factors.append(_closeness(w["time"], gap, t_limit))
    if same_addr:
        factors.append(w["same_address"])
        reasons.append(f"同一地址 {addr_a}")
    if same_village:
        factors.append(w["same_village"])
        reasons.append("同村")
    elif same_town:
        factors.append(w["same_town"])
        reasons.append("同镇")
    miss = 1.0
    for f in factors:
        miss *= 1.0 - f
    score = round(1.0 - miss, 4)
    if not refs and score < rule.min_score:
        return None
    lo, hi = sorted((ida, idb))
    return LinkDecision(
        event_a=lo, event_b=hi, score=score, reasons=tuple(reasons),
        rule="explicit_reference" if refs and not rule.link else rule.name,
        county_code=ca or cb or "", created_at=max(sa.at, at_b),
    )


def make_link(a: Event, b: Event, rules: CorrelationRules) -> dict[str, Any] | None:
    """``score_pair`` as a Link dict (or None)."""
    decision = score_pair(a, b, rules)
    return decision.as_link() if decision else None


# ----------------------------------------------------------------------------- candidate index

def slim(event: Event) -> dict[str, Any]:
    """The part of an event that scoring needs (what the candidate index stores)."""
    loc = _loc(event)
    return {
        "event_id": event["event_id"], "kind": event.get("kind"), "occurred_at": int(event["occurred_at"]),
        "location": {k: loc.get(k) for k in (
            "lat", "lon", "admin_code", "county_code", "town_code", "village_code", "address", "geo_cell",
        )},
        "persons": [{"keys": sorted(p.get("keys") or ())} for p in event.get("persons") or ()],
        "vehicles": [{"key": v["key"]} for v in event.get("vehicles") or () if v.get("key")],
        "refs": {"related_ids": sorted(_related(event))},
    }


def _occurred_at(entry: Mapping[str, Any]) -> int:
    return int(entry["occurred_at"])


def _entry_order(entry: Mapping[str, Any]) -> tuple[int, str]:
    """The order of a candidate list: event time, then event id."""
    return int(entry["occurred_at"]), str(entry["event_id"])


class CandidateIndex:
    """Recent events per blocking key over an injectable mapping; ``add`` returns new links.

    Out-of-order and late events link as long as their neighbours are still retained: entries
    are kept until the event-time watermark (highest occurred_at seen, stored in the mapping
    under ``~watermark`` so it survives recovery) passes them by ``rules.retention_ms``; each key
    keeps at most ``rules.max_per_key`` entries (newest by event time).
    """

    def __init__(self, rules: CorrelationRules, store: MutableMapping[str, list] | None = None) -> None:
        self.rules = rules
        self.store: MutableMapping[str, list] = {} if store is None else store
        self._sides: dict[int, _Side] = {}  # `_side_of`

    @property
    def watermark(self) -> int | None:
        """Highest event time seen (epoch ms), or None before the first event."""
        wm = self.store.get(_WATERMARK_KEY)
        return int(wm[0]) if wm else None

    def add(self, event: Event) -> list[dict[str, Any]]:
        """Index an event and return Links to previously indexed events, sorted by link_id.

        Idempotent per event_id: re-adding replaces the stored entry and returns the same links.
        """
        ts = int(event["occurred_at"])
        wm = max(ts, self.watermark or ts)
        if wm != self.watermark:
            self.store[_WATERMARK_KEY] = [wm]
        horizon = wm - self.rules.retention_ms
        own = event["event_id"]
        candidates: dict[str, Mapping[str, Any]] = {}
        for key in probe_keys(event, self.rules):
            for entry in self.store.get(key) or ():
                if entry["event_id"] != own and entry["occurred_at"] >= horizon:
                    candidates.setdefault(entry["event_id"], entry)
        probe, rules = _side(event), self.rules
        links = [d.as_link() for d in (_score(probe, self._side_of(candidates[c]), rules) for c in sorted(candidates)
                                       if not _cannot_link(probe, candidates[c], rules)) if d]
        entry = slim(event)
        for key in index_keys(event, self.rules):
            stored = self.store.get(key) or []
            # every list is stored sorted by (occurred_at, event_id) (`_put` of this method and
            # `expire` keep the order), so the expired entries lead it and the new one is inserted
            # in place: O(log n) key calls instead of a filter and a sort of up to max_per_key
            kept = stored[bisect_left(stored, horizon, key=_occurred_at):]
            if any(e["event_id"] == own for e in kept):  # re-added: replaced, not duplicated
                kept = [e for e in kept if e["event_id"] != own]
            if ts < horizon:
                # too late to be found by anyone: do not store it
                if len(kept) != len(stored):
                    self._put(key, kept)
                continue
            insort(kept, entry, key=_entry_order)
            self._put(key, kept[-self.rules.max_per_key:])
        return sorted(links, key=lambda lk: lk["link_id"])

    def _side_of(self, entry: Mapping[str, Any]) -> _Side:
        """`_side(entry)`, kept per stored entry object: in a dense burst (a flood of calls from
        one place) every new event scores the same recent entries again. Keyed by the entry's
        identity with a reference held (so the id is not reused while kept), at most
        `_SIDES_MAX` kept. A cache, never state: entries are never mutated in place, and a miss
        (an entry read back from the store as a new object) recomputes."""
        hit = self._sides.get(id(entry))
        if hit is not None and hit.event is entry:
            return hit
        side = _side(entry)
        if len(self._sides) >= _SIDES_MAX:
            self._sides.clear()
        self._sides[id(entry)] = side
        return side

    def _put(self, key: str, entries: list) -> None:
        if entries:
            self.store[key] = entries
        elif key in self.store:
            del self.store[key]

    def expire(self, now_ms: int | None = None) -> int:
        """Drop entries older than the retention horizon (and keys left empty); returns how many.

        Call it periodically (e.g. from an agent timer): geo keys embed their time bucket, so
        old buckets are otherwise never touched again.
        """
        wm = now_ms if now_ms is not None else self.watermark
        if wm is None:
            return 0
        horizon = wm - self.rules.retention_ms
        removed = 0
        for key in [k for k in self.store if k != _WATERMARK_KEY]:
            entries = list(self.store.get(key) or ())
            kept = [e for e in entries if e["occurred_at"] >= horizon]
            removed += len(entries) - len(kept)
            if len(kept) != len(entries):
                self._put(key, kept)
        return removed

    def __len__(self) -> int:
        return sum(1 for k in self.store if k != _WATERMARK_KEY)


def links_for(events: Iterable[Event], rules: CorrelationRules) -> list[dict[str, Any]]:
    """Batch helper: all links among ``events`` via a fresh in-memory CandidateIndex."""
    index = CandidateIndex(rules)
    out: dict[str, dict[str, Any]] = {}
    for ev in events:
        for lk in index.add(ev):
            out[lk["link_id"]] = lk
    return [out[k] for k in sorted(out)]
