"""A campaign's order of faults, from a seed alone, so a failing run replays exactly.

Faults come in rounds: every round holds each chosen kind once, in an order shuffled by the
seed, so a short campaign covers every kind and a long one does not starve any. Each entry
also draws `choice`, the index (modulo the candidates present at that moment) of the pod or
node it acts on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Planned:
    index: int
    kind: str
    choice: int


def plan(kinds: Sequence[str], count: int, seed: int) -> list[Planned]:
    if not kinds:
        raise ValueError("a campaign needs at least one fault kind")
    if count < 1:
        raise ValueError(f"a campaign needs at least one fault, not {count}")
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < count:
        round_ = list(kinds)
        rng.shuffle(round_)
        order += round_
    return [Planned(i, kind, rng.randrange(1 << 16)) for i, kind in enumerate(order[:count])]
