"""Correlation rules: typed, validated view of ``correlation_rules.toml``.

Contract: ``load_rules(path=None) -> CorrelationRules`` reads the TOML (default: the file next to
this module) and raises ``ValueError`` when a rule is malformed, a location-only window is not
covered by a blocking level (so blocking can never silently miss a pair the rules would link), or
the rules do not state a stance for every pair of kinds:
- coverage: every unordered pair of ``kinds`` (default ``streams.domain.kinds.KINDS``, same-kind
  pairs included) is named by exactly one rule with both kinds listed explicitly (a ``"*"``
  wildcard is no stance; it only serves kinds outside the vocabulary), and rules name no kind
  outside the vocabulary. So a new kind cannot be added silently.
- reasons: a linking rule carries ``why.<field>`` for each limit in force (``max_gap_minutes``,
  ``max_distance_m``, and ``loc_gap_minutes``/``loc_distance_m`` when ``location_only``); a rule
  with ``link = false`` (a "never") carries ``why.never``. Its numbers may then be omitted.
``CorrelationRules.rule_for(kind_a, kind_b)`` returns the most specific kind-pair rule;
``CorrelationRules.stances(kinds)`` the coverage table (one row per unordered pair).
Pure: no I/O except the explicit file read in ``load_rules``.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import h3

from .kinds import KINDS

DEFAULT_RULES_PATH = Path(__file__).with_name("correlation_rules.toml")
# blocking levels: "fine" is [blocking] itself (every kind), the others are optional sub-tables
LEVEL_NAMES = ("fine", "area", "near")
WILDCARD = "*"
NEVER = "never"
#: the limits a linking rule must explain (``why.<field>``); the loc_* ones only when location_only
LIMIT_FIELDS = ("max_gap_minutes", "max_distance_m")
LOC_LIMIT_FIELDS = ("loc_gap_minutes", "loc_distance_m")


@dataclass(frozen=True, slots=True)
class BlockingLevel:
    """One geo x time blocking level: H3 resolution, neighbour ring, bucket size, kinds using it.

    ``kinds`` (hubs) store under and probe the level's own keys, so hubs meet hubs. ``partners``
    store under a separate partner namespace and probe only the hub keys; hubs probe the partner
    namespace too. So a hub meets a partner whichever arrives first, partners never meet each
    other at this level (a burst of camera alarms neither costs pairwise work here nor evicts
    the hub entries they are looking for).
    """

    name: str
    h3_resolution: int
    ring: int
    bucket_minutes: int
    kinds: frozenset[str]          # {"*"} = every kind
    guarantee_m: float             # pairs closer than this (and <= bucket apart) always meet
    partners: frozenset[str] = frozenset()

    def applies_to(self, kind: str) -> bool:
        """Whether events of this kind store/probe keys of this level (as hub or partner)."""
        return self.role(kind) is not None

    def role(self, kind: str) -> str | None:
        """"hub", "partner" or None for events of this kind at this level."""
        if WILDCARD in self.kinds or kind in self.kinds:
            return "hub"
        if kind in self.partners:
            return "partner"
        return None

    def connects(self, kind_a: str, kind_b: str) -> bool:
        """Whether events of these two kinds meet at this level (in either arrival order)."""
        ra, rb = self.role(kind_a), self.role(kind_b)
        return (ra == "hub" and rb is not None) or (rb == "hub" and ra is not None)


@dataclass(frozen=True, slots=True)
class PairRule:
    """Thresholds for one unordered pair of kind sets (see the TOML for field meanings)."""

    name: str
    a: frozenset[str]
    b: frozenset[str]
    max_gap_minutes: float
    max_distance_m: float
    min_score: float
    link: bool = True
    location_only: bool = False
    loc_gap_minutes: float = 0.0
    loc_distance_m: float = 0.0
    order: int = 0
    why: tuple[tuple[str, str], ...] = ()   # (field or "never", what it is derived from)

    @property
    def reasons(self) -> dict[str, str]:
        """``why`` as a mapping: limit field (or ``"never"``) → what it is derived from."""
        return dict(self.why)

    def names_exactly(self, kind_a: str, kind_b: str) -> bool:
        """Whether the rule lists both kinds explicitly (no wildcard), in either order."""
        return (kind_a in self.a and kind_b in self.b) or (kind_b in self.a and kind_a in self.b)

    def specificity(self, kind_a: str, kind_b: str) -> int | None:
        """2 exact/exact, 1 one wildcard, 0 both wildcards; None when the rule does not match."""
        best: int | None = None
        for x, y in ((kind_a, kind_b), (kind_b, kind_a)):
            sa = 1 if x in self.a else (0 if WILDCARD in self.a else None)
            sb = 1 if y in self.b else (0 if WILDCARD in self.b else None)
            if sa is not None and sb is not None:
                best = max(best if best is not None else -1, sa + sb)
        return best


@dataclass(frozen=True, slots=True)
class CorrelationRules:
    """All correlation settings: blocking levels, evidence weights, kind-pair rules."""

    levels: tuple[BlockingLevel, ...]
    lateness_minutes: int
    max_per_key: int
    weights: Mapping[str, float]
    pairs: tuple[PairRule, ...]
    name_village_max_distance_m: float = 300.0
    name_village_max_gap_minutes: float = 1440.0
    _chosen: dict = field(default_factory=dict, compare=False, repr=False)   # rule_for memo

    @property
    def max_window_minutes(self) -> float:
        """The longest time window any rule can link over."""
        return max(
            [p.max_gap_minutes for p in self.pairs if p.link]
            + [p.loc_gap_minutes for p in self.pairs if p.link and p.location_only]
        )

    @property
    def retention_ms(self) -> int:
        """How long the candidate index keeps an entry behind the event-time watermark."""
        return int((self.max_window_minutes + self.lateness_minutes) * 60_000)

    def rule_for(self, kind_a: str, kind_b: str) -> PairRule:
        """The most specific rule for the unordered kind pair; ties: first listed wins."""
        memo = self._chosen.get((kind_a, kind_b))
        if memo is not None:
            return memo
        best: tuple[int, int] | None = None
        chosen: PairRule | None = None
        for rule in self.pairs:
            s = rule.specificity(kind_a, kind_b)
            if s is None:
                continue
            cand = (s, -rule.order)
            if best is None or cand > best:
                best, chosen = cand, rule
        if chosen is None:  # validated at load: a "*" x "*" rule exists
            raise LookupError(f"no rule for {kind_a} x {kind_b}")
        self._chosen[(kind_a, kind_b)] = chosen
        return chosen

    def stances(self, kinds: Iterable[str] = KINDS) -> list[tuple[str, str, PairRule]]:
        """The coverage table: (kind_a, kind_b, rule) for every unordered pair of ``kinds``."""
        ks = list(kinds)
        return [(a, b, self.rule_for(a, b)) for i, a in enumerate(ks) for b in ks[i:]]


def _level(name: str, raw: Mapping[str, Any], factor: float, kinds: frozenset[str],
           partners: frozenset[str] = frozenset()) -> BlockingLevel:
    res = int(raw["h3_resolution"])
    ring = int(raw.get("ring", 1))
    if not 0 <= res <= 15 or ring < 1:
        raise ValueError(f"blocking level {name}: bad resolution/ring")
    edge = h3.average_hexagon_edge_length(res, "m")
    # Cells not within ring k of each other are at least k edge lengths apart (regular tiling).
    if kinds & partners:
        raise ValueError(f"blocking level {name}: kinds {sorted(kinds & partners)} are both hub and partner")
    return BlockingLevel(name, res, ring, int(raw["bucket_minutes"]), kinds, factor * edge * ring, partners)


def _why(name: str, raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ValueError(f"rule {name}: why must be a table of field = reason")
    return tuple(sorted((str(k), str(v)) for k, v in raw.items()))


def parse_rules(doc: Mapping[str, Any], kinds: Iterable[str] = KINDS) -> CorrelationRules:
    """Build and validate rules from an already parsed TOML document.

    ``kinds`` is the vocabulary whose every pair needs a stance (default: ``KINDS``).
    """
    blk = doc["blocking"]
    factor = float(blk.get("guarantee_factor", 0.9))
    levels = [_level("fine", blk, factor, frozenset({WILDCARD}))]
    for name in LEVEL_NAMES[1:]:
        if name in blk:
            raw = blk[name]
            levels.append(_level(name, raw, factor, frozenset(raw["kinds"]), frozenset(raw.get("partner_kinds", ()))))
    pairs = []
    for i, p in enumerate(doc.get("pair", [])):
        link = bool(p.get("link", True))

        def num(key: str, default: float, p: Mapping[str, Any] = p, link: bool = link) -> float:
            # a linking rule needs every number; a "never" rule links nothing and may omit them
            return float(p[key]) if link or key in p else default

        rule = PairRule(
            name=str(p["name"]), a=frozenset(p["a"]), b=frozenset(p["b"]),
            max_gap_minutes=num("max_gap_minutes", 0.0), max_distance_m=num("max_distance_m", 0.0),
            min_score=num("min_score", 1.0), link=link,
            location_only=bool(p.get("location_only", False)),
            loc_gap_minutes=float(p.get("loc_gap_minutes", 0)),
            loc_distance_m=float(p.get("loc_distance_m", 0)), order=i, why=_why(str(p["name"]), p.get("why")),
        )
        if not 0.0 <= rule.min_score <= 1.0:
            raise ValueError(f"rule {rule.name}: min_score outside [0, 1]")
        pairs.append(rule)
    rules = CorrelationRules(
        levels=tuple(levels), lateness_minutes=int(blk.get("lateness_minutes", 0)),
        max_per_key=int(blk.get("max_per_key", 200)),
        weights={k: float(v) for k, v in doc["weights"].items()}, pairs=tuple(pairs),
        name_village_max_distance_m=float(doc.get("name_village", {}).get("max_distance_m", 300)),
        name_village_max_gap_minutes=float(doc.get("name_village", {}).get("max_gap_minutes", 1440)),
    )
    _validate(rules)
    _validate_reasons(rules)
    _validate_coverage(rules, tuple(kinds))
    return rules


def _validate_reasons(rules: CorrelationRules) -> None:
    """Every limit in force says what it is derived from; every never says why."""
    for p in rules.pairs:
        why = p.reasons
        if p.link:
            need = LIMIT_FIELDS + (LOC_LIMIT_FIELDS if p.location_only else ())
        else:
            need = (NEVER,)
        missing = [f for f in need if not why.get(f, "").strip()]
        if missing:
            raise ValueError(f"rule {p.name}: missing why." + ", why.".join(missing)
                             + (" (a never rule says why it never links)" if not p.link
                                else " (say what each limit is derived from)"))
        extra = sorted(set(why) - set(need))
        if extra:
            raise ValueError(f"rule {p.name}: why.{', why.'.join(extra)} does not apply to this rule"
                             f" (expected why.{', why.'.join(need)})")


def _validate_coverage(rules: CorrelationRules, kinds: tuple[str, ...]) -> None:
    """Every unordered pair of kinds has exactly one explicit stance; rules name known kinds only."""
    known = set(kinds) | {WILDCARD}
    for p in rules.pairs:
        unknown = sorted((p.a | p.b) - known)
        if unknown:
            raise ValueError(f"rule {p.name}: unknown kind(s) {unknown} (vocabulary: streams.domain.kinds.KINDS)")
    missing: list[str] = []
    for i, ka in enumerate(kinds):
        for kb in kinds[i:]:
            named = [p.name for p in rules.pairs if p.names_exactly(ka, kb)]
            if len(named) > 1:
                raise ValueError(f"kind pair {ka} x {kb} has more than one stance: rules {named}")
            if not named:
                missing.append(f"{ka} x {kb}")
    if missing:
        raise ValueError(
            f"{len(missing)} kind pair(s) have no stance in the correlation rules: {', '.join(missing)}."
            " Add each to a [[pair]] rule (with why.<limit> for its limits) or to a never rule"
            " (link = false, why.never); a \"*\" wildcard does not count"
        )


def _validate(rules: CorrelationRules) -> None:
    if not any(WILDCARD in p.a and WILDCARD in p.b for p in rules.pairs):
        raise ValueError('a default "*" x "*" rule is required')
    names = [p.name for p in rules.pairs]
    if len(set(names)) != len(names):
        raise ValueError("rule names must be unique")
    for p in rules.pairs:
        if not (p.link and p.location_only):
            continue
        covered = any(
            p.loc_gap_minutes <= lv.bucket_minutes and p.loc_distance_m <= lv.guarantee_m
            and all(lv.connects(ka, kb) for ka in p.a - {WILDCARD} for kb in p.b - {WILDCARD})
            and all(lv.role(k) == "hub" for k in (p.a | p.b) - {WILDCARD} if WILDCARD in (p.a | p.b))
            and (WILDCARD not in (p.a | p.b) or WILDCARD in lv.kinds)
            for lv in rules.levels
        )
        if not covered:
            raise ValueError(
                f"rule {p.name}: location-only window ({p.loc_gap_minutes} min, {p.loc_distance_m} m)"
                " is not covered by any blocking level"
            )


def load_rules(path: str | Path | None = None) -> CorrelationRules:
    """Read and validate the correlation rules TOML (default: correlation_rules.toml here)."""
    with open(path or DEFAULT_RULES_PATH, "rb") as fh:
        return parse_rules(tomllib.load(fh))
