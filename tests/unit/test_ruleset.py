"""Rules as deployment data (streams/domain/ruleset.py) and their version on links and incidents."""
from __future__ import annotations

from pathlib import Path

import pytest

from schemas.serde import default_store
from streams.domain.pipeline import CountyProcessor
from streams.domain.ruleset import BUILT_IN, RulesError, load_ruleset, rules_version

TIER = BUILT_IN["tier_rules.toml"]
CORR = BUILT_IN["correlation_rules.toml"]


def test_built_ins_are_the_default_and_the_version_is_content() -> None:
    rs = load_ruleset(None)
    assert rs.version == rules_version({"correlation_rules.toml": CORR.read_bytes(), "tier_rules.toml": TIER.read_bytes()})
    assert rs.version.startswith("r") and len(rs.version) == 13
    assert all(v.startswith("built-in: ") for v in rs.files.values())


def test_a_deployment_file_replaces_its_built_in(tmp_path: Path) -> None:
    text = TIER.read_text(encoding="utf-8").replace("count = 3", "count = 2", 1)
    assert text != TIER.read_text(encoding="utf-8")
    (tmp_path / "tier_rules.toml").write_text(text, encoding="utf-8")
    rs = load_ruleset(tmp_path)
    assert rs.tiers.recurrence_count == 2 and rs.version != load_ruleset(None).version
    assert rs.files["tier_rules.toml"] == str(tmp_path / "tier_rules.toml")
    assert rs.files["correlation_rules.toml"].startswith("built-in")
    (tmp_path / "correlation_rules.toml").write_bytes(CORR.read_bytes())  # a copy of the built-in file
    assert load_ruleset(tmp_path).version == rs.version  # the version is the content, not where it was read


@pytest.mark.parametrize(("name", "content", "message"), [
    ("tier_rules.toml", "tiers = [", "TOML syntax error"),
    ("tier_rules.toml", 'tiers = ["village"]\n', "missing key 'base_tier'"),
    ("tier_ruls.toml", "", "unknown rule file(s) tier_ruls.toml"),
])
def test_invalid_rules_are_one_clear_error(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(RulesError) as err:  # the message is checked below (it holds regex characters)
        load_ruleset(tmp_path)
    assert message in str(err.value) and str(tmp_path) in str(err.value)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="does not exist"):
        load_ruleset(tmp_path / "nope")


def test_links_and_incidents_carry_the_rules_version() -> None:
    from tests.unit.test_lifecycle import T0, WANG, ev  # noqa: PLC0415 - the lifecycle tests' event factory

    rs = load_ruleset(None)
    proc = CountyProcessor(rules=rs.correlation, tier_rules=rs.tiers, rules_version=rs.version)
    links, incidents = [], []
    for event in (ev("grid:g1", "dispute", T0, keys=[WANG]), ev("alarm110:a1", "dispute", T0 + 60_000, keys=[WANG])):
        out = proc.process(event)
        links += out.links
        incidents += out.incidents
    assert links and incidents
    assert {x["rules_version"] for x in links} == {rs.version} == {x["rules_version"] for x in incidents}
    store = default_store()
    assert store.decode(store.encode("pingan.Incident", incidents[-1]))[1]["rules_version"] == rs.version
    assert all(link.get("rules_version") == rs.version for inc in incidents for link in inc.get("links") or ())
