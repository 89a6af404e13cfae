"""When each order is sent and what it carries. The loop is open: the schedule follows
from the options alone, never from the answers."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from saga_loadgen.options import Config


def planned_count(rate: float, seconds: float) -> int:
    """Sends at 0, 1/rate, 2/rate, ... strictly before `seconds`."""
    return max(0, math.floor(rate * seconds + 1e-9))


def schedule(rate: float, seconds: float, start: float = 0.0) -> Iterator[float]:
    """Send offsets (seconds from the run's start) for `rate` per second over `seconds`."""
    return (start + i / rate for i in range(planned_count(rate, seconds)))


class Planned(NamedTuple):
    seq: int  # unique in the run (customer ids)
    offset: float  # seconds from the start of sending
    warmup: bool


def plan(config: Config) -> Iterator[Planned]:
    """The warm-up's sends, then the measured ones; generated, so a long run costs no memory."""
    warmup = planned_count(config.rate, config.warmup)
    for seq, offset in enumerate(schedule(config.rate, config.warmup)):
        yield Planned(seq, offset, True)
    for seq, offset in enumerate(schedule(config.rate, config.duration, config.warmup), warmup):
        yield Planned(seq, offset, False)


def measured_seqs_to_poll(config: Config) -> set[int]:
    """The seqs of the measured orders whose sagas are polled (--poll-sample, evenly spread)."""
    first = planned_count(config.rate, config.warmup)
    return {first + i for i in pick_sample(config.planned_orders, config.poll_sample)}


def second_of(offset: float) -> int:
    """The second [n, n + 1) a scheduled offset falls in (i / rate is never a hair short)."""
    return math.floor(offset + 1e-9)


def per_second_counts(offsets: Iterable[float]) -> Counter[int]:
    return Counter(second_of(t) for t in offsets)


def is_declined(index: int, ratio: float) -> bool:
    """Exactly floor(n * ratio) of the first n orders, spread evenly."""
    return math.floor((index + 1) * ratio + 1e-9) > math.floor(index * ratio + 1e-9)


def order_body(config: Config, index: int) -> dict[str, Any]:
    customer = f"{config.run_id}-c{index}"
    if is_declined(index, config.decline_ratio):
        customer = f"decline-{customer}"
    sku = f"{config.run_id}-sku-{index % config.skus}"
    return {
        "customer_id": customer,
        "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 100}],
    }


def pick_sample(count: int, size: int) -> list[int]:
    """`size` indices of range(count), evenly spread; all of them when size is 0 or >= count."""
    if size == 0 or size >= count:
        return list(range(count))
    return [i * count // size for i in range(size)]
