"""Offline correlation quality on the simulator's default noisy run (seed 1, one day).

The project's targets: pairwise link precision >= 0.99 and recall >= 0.95 overall, measured by
`bench.quality.evaluate_folder` (translate -> normalize -> per-county processor -> evaluate against
truth.json), with no Kafka involved.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.quality import OfflineRun, evaluate_folder, evaluate_run, render, run_folder
from simulator.writer import generate


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quality") / "sim"
    generate(out, days=1, seed=1)
    return out


@pytest.fixture(scope="module")
def replay(sim: Path) -> OfflineRun:
    return run_folder(sim)


def test_default_noisy_run_meets_the_quality_targets(sim: Path, replay: OfflineRun) -> None:
    report = evaluate_run(replay, sim)
    overall = report.overall
    assert overall.pairwise.precision >= 0.99, overall
    assert overall.pairwise.recall >= 0.95, overall
    assert overall.bcubed.f1 >= 0.98, overall
    truth = json.loads((sim / "truth.json").read_text("utf-8"))
    assert overall.events == len({e["event_id"] for e in truth["events"]})
    # every ground-truth scenario is found whole
    for name in ("dispute_demolition", "river_rescue", "tourist_medical", "theft_vehicle", "crowd_gathering",
                 "flood"):
        assert report.per_scenario[name].pairwise.recall >= 0.95, (name, report.per_scenario[name])
    assert report.per_scenario["flood"].pairwise.precision >= 0.99


def test_every_truth_event_reaches_the_pipeline(sim: Path, replay: OfflineRun) -> None:
    run = replay
    truth = json.loads((sim / "truth.json").read_text("utf-8"))
    assert not run.rejected and not run.normalize_errors
    assert {e["event_id"] for e in truth["events"]} <= set(run.predicted())  # door ids agree too


def test_evaluate_folder_is_deterministic_and_renders(sim: Path, replay: OfflineRun) -> None:
    report = evaluate_folder(sim)
    assert report == evaluate_run(replay, sim)
    table = render(report)
    labels = list(table.columns[0].cells)
    assert labels[-1] == "overall" and set(labels[:-1]) == set(report.per_scenario)
    assert len(table.columns) == 11
