"""Correlation rules as a coverage table: a stance for every pair of kinds, each limit explained."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from streams.domain.correlate import score_pair
from streams.domain.kinds import KINDS
from streams.domain.rules import DEFAULT_RULES_PATH, LIMIT_FIELDS, LOC_LIMIT_FIELDS, load_rules, parse_rules

RULES = load_rules()
T0 = 1_719_792_000_000
MIN = 60_000
DOC_PATH = Path(__file__).parents[2] / "docs" / "correlation.md"


def _doc() -> dict:
    doc = tomllib.loads(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    doc["pair"] = [dict(p) for p in doc["pair"]]
    return doc


def _rule(doc: dict, name: str) -> dict:
    return next(p for p in doc["pair"] if p["name"] == name)


def _pairs(kinds=KINDS) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(kinds) for b in kinds[i:]]


def test_every_pair_of_kinds_has_exactly_one_explicit_stance():
    pairs = _pairs()
    assert len(pairs) == len(KINDS) * (len(KINDS) + 1) // 2 == 153
    table = RULES.stances()
    assert [(a, b) for a, b, _ in table] == pairs
    for a, b, rule in table:
        named = [p.name for p in RULES.pairs if p.names_exactly(a, b)]
        assert named == [rule.name], (a, b, named)   # the stance is the explicit rule, not "*"
        assert "*" not in rule.a | rule.b
    never = {(a, b) for a, b, r in table if not r.link}
    assert ("help", "device") in never and ("vehicle_sighting", "person_sighting") in never
    # help requests have a stance with camera alarms, sightings and grid kinds alike
    assert RULES.rule_for("help", "intrusion").name == "help_x_camera"
    assert RULES.rule_for("medical", "intrusion").name == "help_x_camera"
    assert RULES.rule_for("rescue", "intrusion").name == "emergency_x_camera"
    assert RULES.rule_for("help", "person_sighting").name == "sighting_x_any"
    assert RULES.rule_for("help", "medical").name == "help_x_emergency"


def test_every_limit_says_what_it_is_derived_from_and_every_never_says_why():
    for rule in RULES.pairs:
        why = rule.reasons
        if not rule.link:
            assert set(why) == {"never"} and len(why["never"]) > 20, rule.name
            continue
        need = set(LIMIT_FIELDS) | (set(LOC_LIMIT_FIELDS) if rule.location_only else set())
        assert set(why) == need, rule.name
        assert all(len(v) > 20 for v in why.values()), rule.name


def test_a_new_kind_without_a_stance_fails_to_load_naming_its_pairs():
    with pytest.raises(ValueError, match=r"18 kind pair\(s\) have no stance.*dispute x drone.*other x drone, drone x drone"):
        parse_rules(_doc(), kinds=(*KINDS, "drone"))


def test_a_pair_dropped_from_its_rule_fails_to_load():
    doc = _doc()
    _rule(doc, "help_x_camera")["a"] = ["medical"]
    with pytest.raises(ValueError, match=r"no stance.*help x intrusion"):
        parse_rules(doc)


def test_a_wildcard_is_no_stance():
    doc = _doc()
    doc["pair"] = [p for p in doc["pair"] if p["name"] != "device_x_any"]
    doc["pair"].append({"name": "device_any", "a": ["device"], "b": ["*"], "link": False,
                        "why": {"never": "a wildcard never states a stance for a vocabulary pair"}})
    with pytest.raises(ValueError, match=r"13 kind pair\(s\) have no stance"):
        parse_rules(doc)


def test_two_stances_for_one_pair_or_an_unknown_kind_fail_to_load():
    doc = _doc()
    _rule(doc, "emergency_x_camera")["a"].append("help")
    with pytest.raises(ValueError, match=r"help x intrusion has more than one stance"):
        parse_rules(doc)
    doc = _doc()
    _rule(doc, "help_x_camera")["a"] = ["help", "medcal"]
    with pytest.raises(ValueError, match=r"unknown kind\(s\) \['medcal'\]"):
        parse_rules(doc)


def test_a_limit_or_a_never_without_its_why_fails_to_load():
    doc = _doc()
    del _rule(doc, "help_x_camera")["why"]["loc_distance_m"]
    with pytest.raises(ValueError, match=r"help_x_camera: missing why.loc_distance_m"):
        parse_rules(doc)
    doc = _doc()
    del _rule(doc, "device_x_any")["why"]
    with pytest.raises(ValueError, match=r"device_x_any: missing why.never"):
        parse_rules(doc)
    doc = _doc()
    _rule(doc, "dispute_history")["why"]["loc_gap_minutes"] = "not a location rule"
    with pytest.raises(ValueError, match=r"why.loc_gap_minutes does not apply"):
        parse_rules(doc)


def _ev(eid, kind, t, lat, lon, keys=()):
    return {"event_id": eid, "kind": kind, "occurred_at": t,
            "location": {"lat": lat, "lon": lon, "county_code": "513221", "address": "威州镇岷江路88号",
                         "admin_code": "513221100201", "village_code": "513221100201"},
            "persons": [{"keys": list(keys)}] if keys else [], "vehicles": [], "refs": {"related_ids": []}}


@pytest.mark.parametrize("pair", [(a, b) for a, b, r in RULES.stances() if not r.link])
def test_pairs_marked_never_do_not_link_even_at_one_spot_with_one_person(pair):
    a, b = pair
    key = "id:" + "ab" * 16
    x = _ev("grid:n1", a, T0, 31.48, 103.59, keys=[key])
    y = _ev("isapi:n2", b, T0 + MIN, 31.48, 103.59, keys=[key])
    assert score_pair(x, y, RULES) is None and score_pair(y, x, RULES) is None
    # only an explicit reference links them
    y_ref = {**y, "refs": {"related_ids": ["grid:n1"]}}
    assert score_pair(x, y_ref, RULES).rule == "explicit_reference"


def render_coverage_table(rules=RULES, kinds=KINDS) -> str:
    """The kind x kind matrix of docs/correlation.md (rule numbers; N = never)."""
    order = {p.name: i for i, p in enumerate((p for p in rules.pairs if "*" not in p.a | p.b), start=1)}
    abbrev = {k: k[:4] for k in kinds}
    lines = ["| | " + " | ".join(abbrev[k] for k in kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for a in kinds:
        cells = []
        for b in kinds:
            r = rules.rule_for(a, b)
            cells.append(f"N{order[r.name]}" if not r.link else
                         (f"**{order[r.name]}**" if r.location_only else str(order[r.name])))
        lines.append(f"| {abbrev[a]} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| # | rule | stance | pairs | keys: window, scale | place+time: gap, distance |")
    lines.append("|---|---|---|---|---|---|")
    for p in rules.pairs:
        if p.name not in order:
            continue
        n = sum(1 for _a, _b, r in rules.stances(kinds) if r.name == p.name)
        stance = "never" if not p.link else ("place+time or keys" if p.location_only else "keys only")
        keys = "—" if not p.link else f"{p.max_gap_minutes:g} min, {p.max_distance_m:g} m"
        place = f"{p.loc_gap_minutes:g} min, {p.loc_distance_m:g} m" if p.link and p.location_only else "—"
        lines.append(f"| {order[p.name]} | `{p.name}` | {stance} | {n} | {keys} | {place} |")
    return "\n".join(lines)


def test_the_coverage_table_in_the_docs_is_current():
    text = DOC_PATH.read_text(encoding="utf-8")
    table = render_coverage_table()
    assert table in text, "docs/correlation.md is stale; replace its table with:\n" + table
