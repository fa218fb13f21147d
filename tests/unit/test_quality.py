"""Quality metrics on small hand-computed examples."""
from __future__ import annotations

import pytest

from streams.domain.quality import bcubed, evaluate, pairwise


def test_perfect_prediction():
    truth = {"a": "T1", "b": "T1", "c": "T2"}
    pred = {"a": "x", "b": "x", "c": "y"}
    r = evaluate(truth, pred)
    assert r.overall.pairwise.f1 == 1.0 and r.overall.bcubed.f1 == 1.0


def test_hand_computed_split_and_merge():
    # truth: {a,b,c} {d,e}; predicted: {a,b} {c,d,e}
    truth = {"a": "T1", "b": "T1", "c": "T1", "d": "T2", "e": "T2"}
    pred = {"a": "P1", "b": "P1", "c": "P2", "d": "P2", "e": "P2"}
    pw = pairwise(truth, pred)
    # true pairs: ab ac bc de (4); predicted: ab cd ce de (4); correct: ab de (2)
    assert pw.precision == pytest.approx(0.5) and pw.recall == pytest.approx(0.5)
    assert pw.f1 == pytest.approx(0.5)
    b3 = bcubed(truth, pred)
    # precision: a 2/2, b 2/2, c 1/3, d 2/3, e 2/3 -> (1+1+1/3+2/3+2/3)/5 = 11/15
    # recall:    a 2/3, b 2/3, c 1/3, d 2/2, e 2/2 -> (2/3+2/3+1/3+1+1)/5 = 11/15
    assert b3.precision == pytest.approx(11 / 15) and b3.recall == pytest.approx(11 / 15)


def test_all_singletons_predicted():
    truth = {"a": "T", "b": "T", "c": "T"}
    pred = {"a": "1", "b": "2", "c": "3"}
    r = evaluate(truth, pred).overall
    assert r.pairwise.precision == 1.0 and r.pairwise.recall == 0.0 and r.pairwise.f1 == 0.0
    assert r.bcubed.precision == 1.0 and r.bcubed.recall == pytest.approx(1 / 3)
    assert (r.true_pairs, r.predicted_pairs, r.correct_pairs) == (3, 0, 0)


def test_missing_events_are_singletons():
    truth = {"a": "T", "b": "T"}
    pred = {"a": "P", "z": "P"}  # b dropped, z invented and merged with a
    r = evaluate(truth, pred).overall
    assert r.events == 3
    assert r.pairwise.precision == 0.0 and r.pairwise.recall == 0.0
    # bcubed precision: a 1/2, b 1/1, z 1/2 ; recall: a 1/2, b 1/2, z 1/1
    assert r.bcubed.precision == pytest.approx(2 / 3) and r.bcubed.recall == pytest.approx(2 / 3)


def test_per_scenario_counts_cross_scenario_false_merge():
    # scenario river: {r1,r2}; background: {b1}, {b2}; prediction merges r1,r2,b1
    truth = {"r1": "T1", "r2": "T1", "b1": "B1", "b2": "B2"}
    pred = {"r1": "P", "r2": "P", "b1": "P", "b2": "Q"}
    scen = {"T1": "river", "B1": "background", "B2": "background"}
    r = evaluate(truth, pred, scen)
    river = r.per_scenario["river"]
    # pairs touching river events: predicted r1r2 r1b1 r2b1 (3), true r1r2 (1), correct 1
    assert river.pairwise.precision == pytest.approx(1 / 3) and river.pairwise.recall == 1.0
    assert river.bcubed.precision == pytest.approx(2 / 3) and river.bcubed.recall == 1.0
    bg = r.per_scenario["background"]
    # pairs touching background: predicted r1b1 r2b1 (2), true none, correct 0
    assert bg.pairwise.precision == 0.0 and bg.pairwise.recall == 1.0
    # bcubed precision: b1 1/3, b2 1/1 -> 2/3
    assert bg.bcubed.precision == pytest.approx(2 / 3) and bg.events == 2
    assert r.overall.pairwise.precision == pytest.approx(1 / 3)
