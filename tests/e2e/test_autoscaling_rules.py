"""The checks the autoscaling e2e test applies to the HPA's steps, on known sequences (no cluster).

They must accept what the real controller did and reject what the chart's behaviour forbids,
or the e2e test could neither pass nor fail for the right reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.autoscaling import Step, behaviour_violations, scale_down_periods, scale_up_limit

#: The chart's default behaviour (charts/fraud-detection/values.yaml) as the API server stores it.
CHART_BEHAVIOR: dict[str, Any] = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15},
            {"type": "Pods", "value": 4, "periodSeconds": 15},
        ],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 30,
        "selectPolicy": "Min",
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
    },
}


def steps(*points: tuple[float, int]) -> list[Step]:
    """Steps from ``(seconds, replicas)`` pairs."""
    return [Step(at, replicas) for at, replicas in points]


def test_accepts_what_kube_controller_manager_did() -> None:
    """Measured on the kwok cluster (test_cluster.py, 2026-12-01): 2 -> 6 -> 9 -> 10, load
    dropped at +75 s, then 10 -> 4 (the period began at 9: one pod was added 45 s before)
    and 4 -> 2 one period later."""
    measured = steps((0, 2), (14.7, 6), (29.7, 9), (59.7, 10), (104.8, 4), (164.8, 2))
    assert behaviour_violations(measured, CHART_BEHAVIOR, slack=5) == []


@pytest.mark.parametrize(
    ("sequence", "violation"),
    [
        # Straight to maxReplicas: from 2, at most max(2 * 2, 2 + 4) = 6 per 15 s.
        (steps((0, 2), (15, 10)), "2 -> 10: scale-up rules allow 6"),
        # Two steps within one period: the second is limited by the replicas at its start.
        (steps((0, 2), (15, 6), (20, 12)), "6 -> 12: scale-up rules allow 6"),
        # Half of 10 per minute: not straight to 2.
        (steps((0, 10), (60, 2)), "10 -> 2: scale-down rules allow 5"),
        # The second halving only a period after the first.
        (steps((0, 10), (60, 5), (75, 2)), "5 -> 2: scale-down rules allow 5"),
    ],
)
def test_rejects_steps_beyond_the_behaviour(sequence: list[Step], violation: str) -> None:
    assert behaviour_violations(sequence, CHART_BEHAVIOR, slack=5) == [violation]


def test_select_policy_decides_between_policies() -> None:
    rules = CHART_BEHAVIOR["scaleUp"]
    assert scale_up_limit(rules, lambda _period: 2) == 6  # Max: the Pods policy (+4) wins
    assert scale_up_limit(rules, lambda _period: 6) == 12  # Max: the Percent policy wins
    assert scale_up_limit({**rules, "selectPolicy": "Min"}, lambda _period: 6) == 10
    assert scale_up_limit({**rules, "selectPolicy": "Disabled"}, lambda _period: 6) == 6


def test_scale_down_periods_from_max_to_min() -> None:
    assert scale_down_periods(CHART_BEHAVIOR, 10, 2) == 2  # 10 -> 5 -> 2
    with pytest.raises(ValueError, match="never go below"):
        scale_down_periods({"scaleDown": {"policies": []}}, 10, 2)
