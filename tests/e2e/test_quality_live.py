"""`pingan bench quality` through the real pipeline meets the correlation targets."""
from __future__ import annotations

from pathlib import Path

import pytest

import bench.quality_live as quality_live
from bench.quality_live import evaluate_live
from infra.processes import isolated_settings
from streams.settings import Settings
from tests.harness.leaks import delete_tracked, track

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_live_quality_meets_targets_and_equals_offline(stack: Settings, sim_day: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # evaluate_live drops its topics and indices but not the worker's group and Faust internal
    # topics (…-changelog, …-__assignor-__leader): track its namespace and delete all of it
    monkeypatch.setattr(quality_live, "isolated_settings", lambda *a, **k: track(isolated_settings(*a, **k)))
    try:
        live = evaluate_live(stack, sim_day, timeout_s=400)
    finally:
        delete_tracked(stack)
    assert live.equals_offline
    assert live.report.overall.pairwise.precision >= 0.99
    assert live.report.overall.pairwise.recall >= 0.95
    assert live.report.overall.bcubed.f1 >= 0.98
    for name, scores in live.report.per_scenario.items():
        if name != "background":
            assert scores.pairwise.recall >= 0.95, name
