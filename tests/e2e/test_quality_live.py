"""`pingan bench quality` through the real pipeline meets the correlation targets."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.quality_live import evaluate_live
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_live_quality_meets_targets_and_equals_offline(stack: Settings, sim_day: Path) -> None:
    live = evaluate_live(stack, sim_day, timeout_s=400)
    assert live.equals_offline
    assert live.report.overall.pairwise.precision >= 0.99
    assert live.report.overall.pairwise.recall >= 0.95
    assert live.report.overall.bcubed.f1 >= 0.98
    for name, scores in live.report.per_scenario.items():
        if name != "background":
            assert scores.pairwise.recall >= 0.95, name
