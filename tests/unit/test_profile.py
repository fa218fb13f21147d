"""Deployment profiles: built-in defaults extended by a deployment's file, key by key."""
from __future__ import annotations

from pathlib import Path

import pytest

from connectors.sources import registry
from connectors.sources.profile import ProfileError, load_profile, load_profiles


def test_every_feed_has_a_builtin_profile() -> None:
    for feed in registry.feeds():
        profile = load_profile(feed)
        assert profile.feed == feed and profile.sources and profile.sources[0].endswith(f"{feed}/profile.toml")


def test_override_extends_builtin(tmp_path: Path) -> None:
    (tmp_path / "grid.toml").write_text(
        'classify.result = [["调解成功", "agreement"]]\n'
        '[aliases]\nreport_id = ["事件编号", "reportId"]\n'
        '[codes.category]\n"矛盾纠纷" = "01"\n'
        '[synonyms.status]\n"已办结" = "closed"\n', encoding="utf-8")
    profile = load_profile("grid", tmp_path)
    names = profile.aliases("report_id", "reportId", "id")
    assert names[0] == "事件编号" and names.count("reportId") == 1 and names[-1] == "id"
    assert profile.table("category")["矛盾纠纷"] == "01"
    assert profile.synonyms("status")["已办结"] == "closed"
    assert profile.classifier("result") == (("调解成功", "agreement"),)
    assert profile.sources[-1] == str(tmp_path / "grid.toml")


def test_override_list_goes_first_without_duplicates(tmp_path: Path) -> None:
    (tmp_path / "alarm110.toml").write_text('[aliases]\nlongitude = ["JD", "ZDDWJD"]\n', encoding="utf-8")
    merged = load_profile("alarm110", tmp_path)
    assert merged.aliases("longitude", "ZDDWJD")[0] == "JD"
    assert merged.aliases("longitude", "ZDDWJD").count("ZDDWJD") == 1


def test_bad_files_name_themselves(tmp_path: Path) -> None:
    (tmp_path / "door.toml").write_text("aliases = [", encoding="utf-8")
    with pytest.raises(ProfileError, match="door.toml"):
        load_profile("door", tmp_path)
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles(["door"], tmp_path / "missing")


def test_context_carries_profiles(tmp_path: Path) -> None:
    (tmp_path / "mediation.toml").write_text('[synonyms.result]\n"成功" = "agreement"\n', encoding="utf-8")
    ctx = registry.context(profile_dir=tmp_path)
    assert ctx.profile("mediation").synonyms("result")["成功"] == "agreement"
    assert ctx.profile("grid").feed == "grid"
