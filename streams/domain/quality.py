"""Linking quality against ground truth: pairwise and B-cubed precision / recall / F1.

Contract: ``evaluate(truth, predicted, scenarios=None) -> QualityReport``.
- ``truth``: event_id → true incident id; ``predicted``: event_id → predicted incident id.
  The universe is the union of both key sets; an event missing from one side is a singleton
  there (a dropped event costs recall, an invented one costs precision).
- Pairwise: P = |same-pred ∩ same-truth pairs| / |same-pred pairs|, R = … / |same-truth pairs|.
- B-cubed: per event e, P(e) = |pred(e) ∩ truth(e)| / |pred(e)|, R(e) = … / |truth(e)|, averaged.
- Per scenario (``scenarios``: true incident id → scenario name; unmapped → "unlabelled"):
  pairwise counts pairs with at least one event of the scenario, B-cubed averages over the
  scenario's events; clusters are always the global ones, so a false merge with another
  scenario's events lowers this scenario's precision.
- Empty denominators score 1.0 (nothing to get wrong); F1 is the harmonic mean (0 if both 0).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Mapping

UNLABELLED = "unlabelled"


@dataclass(frozen=True, slots=True)
class PRF:
    """Precision, recall and F1."""

    precision: float
    recall: float
    f1: float

    @classmethod
    def of(cls, precision: float, recall: float) -> "PRF":
        """Build from precision and recall."""
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        return cls(precision, recall, f1)


@dataclass(frozen=True, slots=True)
class Scores:
    """Pairwise and B-cubed scores over a set of events."""

    pairwise: PRF
    bcubed: PRF
    events: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Overall scores and scores per scenario."""

    overall: Scores
    per_scenario: Mapping[str, Scores] = field(default_factory=dict)


def _ratio(num: float, den: float) -> float:
    return 1.0 if den == 0 else num / den


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _scores(events: list[str], t: Mapping[str, str], p: Mapping[str, str],
            t_size: Counter, p_size: Counter, both: Counter) -> Scores:
    chosen = set(events)
    # pairs touching the chosen events: all pairs inside clusters minus pairs with no chosen end
    def touching(cluster_of: Mapping[str, str], size: Counter) -> int:
        inside = Counter(cluster_of[e] for e in chosen)
        return sum(_pairs(size[c]) - _pairs(size[c] - inside[c]) for c in inside)
    inside_both = Counter((t[e], p[e]) for e in chosen)
    correct = sum(_pairs(both[c]) - _pairs(both[c] - inside_both[c]) for c in inside_both)
    true_pairs, pred_pairs = touching(t, t_size), touching(p, p_size)
    if events:
        bp = sum(both[(t[e], p[e])] / p_size[p[e]] for e in events) / len(events)
        br = sum(both[(t[e], p[e])] / t_size[t[e]] for e in events) / len(events)
    else:
        bp = br = 1.0
    return Scores(
        pairwise=PRF.of(_ratio(correct, pred_pairs), _ratio(correct, true_pairs)),
        bcubed=PRF.of(bp, br), events=len(events),
        true_pairs=true_pairs, predicted_pairs=pred_pairs, correct_pairs=correct,
    )


def evaluate(truth: Mapping[str, str], predicted: Mapping[str, str],
             scenarios: Mapping[str, str] | None = None) -> QualityReport:
    """Pairwise and B-cubed P/R/F1 overall and per scenario (see module docstring)."""
    universe = sorted(set(truth) | set(predicted))
    # missing side -> singleton cluster named after the event (prefixed so it cannot collide)
    t = {e: ("t", truth[e]) if e in truth else ("s", e) for e in universe}
    p = {e: ("t", predicted[e]) if e in predicted else ("s", e) for e in universe}
    t_size, p_size = Counter(t.values()), Counter(p.values())
    both = Counter((t[e], p[e]) for e in universe)
    overall = _scores(universe, t, p, t_size, p_size, both)  # type: ignore[arg-type]
    per: dict[str, list[str]] = defaultdict(list)
    for e in universe:
        label = scenarios.get(truth[e], UNLABELLED) if scenarios is not None and e in truth else UNLABELLED
        per[label].append(e)
    per_scores = (
        {name: _scores(evs, t, p, t_size, p_size, both) for name, evs in sorted(per.items())}  # type: ignore[arg-type]
        if scenarios is not None else {}
    )
    return QualityReport(overall=overall, per_scenario=per_scores)


def pairwise(truth: Mapping[str, str], predicted: Mapping[str, str]) -> PRF:
    """Overall pairwise P/R/F1."""
    return evaluate(truth, predicted).overall.pairwise


def bcubed(truth: Mapping[str, str], predicted: Mapping[str, str]) -> PRF:
    """Overall B-cubed P/R/F1."""
    return evaluate(truth, predicted).overall.bcubed
