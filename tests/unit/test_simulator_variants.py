"""`pingan simulate --variants`: the same day as another county's systems export it must give the
same canonical events (nothing lost to other column names, names for codes, result sentences or
GCJ-02 coordinates), read through the folder's own deployment profiles."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.quality import run_folder
from infra.processes import simulate_folder
from streams.domain.geo import haversine_m

SEED = 5
SCALE = 0.2


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = simulate_folder(tmp_path_factory.mktemp("base") / "sim", seed=SEED, scale=SCALE)
    variant = simulate_folder(tmp_path_factory.mktemp("variant") / "sim", seed=SEED, scale=SCALE, variants=True)
    return base, variant


def test_variant_files_really_differ(pair: tuple[Path, Path]) -> None:
    base, variant = pair
    assert (variant / "alarm110" / "jjd.csv").read_text(encoding="utf-8").startswith("JCJBH,")
    assert "调处结果" in (variant / "mediation" / "cases.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    first = json.loads((variant / "grid" / "reports.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert "eventId" in first and "category" not in first and "eventTypeName" in first
    manifest = json.loads((variant / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["profiles"] == "profiles" and (variant / "profiles" / "alarm110.toml").is_file()
    assert (base / "truth.json").read_bytes() == (variant / "truth.json").read_bytes()


def test_variants_give_the_same_events(pair: tuple[Path, Path]) -> None:
    base, variant = (run_folder(p) for p in pair)
    assert not variant.rejected and not variant.normalize_errors
    assert variant.records == base.records and set(variant.events) == set(base.events)
    for eid, a in base.events.items():
        b = variant.events[eid]
        for key in ("kind", "severity", "persons", "vehicles", "text", "occurred_at", "quality"):
            assert a[key] == b[key], (eid, key)
        for key in ("admin_code", "village_code", "address"):
            assert a["location"][key] == b["location"][key], (eid, key)
        assert a["refs"]["related_ids"] == b["refs"]["related_ids"]
        if a["location"]["lat"] is not None:  # GCJ-02 in, WGS-84 out: the same point within 5 m
            assert haversine_m(a["location"]["lat"], a["location"]["lon"],
                               b["location"]["lat"], b["location"]["lon"]) < 5, eid
    assert variant.predicted() == base.predicted()
