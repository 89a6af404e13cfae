"""The campaign schedule: the same seed gives the same faults, every kind comes once per
round, and bad requests are refused."""

from __future__ import annotations

import pytest

from tests.chaos.faults import KINDS
from tests.chaos.schedule import plan

KIND_NAMES = list(KINDS)


def test_the_same_seed_replays_the_same_schedule() -> None:
    assert plan(KIND_NAMES, 40, seed=7) == plan(KIND_NAMES, 40, seed=7)
    assert plan(KIND_NAMES, 40, seed=7) != plan(KIND_NAMES, 40, seed=8)


def test_every_round_holds_each_kind_once() -> None:
    schedule = plan(KIND_NAMES, 3 * len(KIND_NAMES) + 2, seed=11)
    rounds = [
        schedule[i : i + len(KIND_NAMES)] for i in range(0, 3 * len(KIND_NAMES), len(KIND_NAMES))
    ]
    for round_ in rounds:
        assert sorted(p.kind for p in round_) == sorted(KIND_NAMES)
    assert [p.index for p in schedule] == list(range(len(schedule)))


def test_a_short_campaign_of_one_round_covers_every_kind() -> None:
    assert {p.kind for p in plan(KIND_NAMES, len(KIND_NAMES), seed=1)} == set(KIND_NAMES)


@pytest.mark.parametrize(
    ("kinds", "count", "message"),
    [([], 3, "at least one fault kind"), (["app-kill"], 0, "at least one fault")],
)
def test_bad_requests_are_refused(kinds: list[str], count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(kinds, count, seed=1)
