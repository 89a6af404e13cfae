"""What a run saw: sends and answers per second (the progress lines) and per phase (the
summary), and the outcomes of the sagas it polled."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import httpx

from saga_loadgen.schedule import Planned, second_of
from saga_loadgen.stats import latency_summary, ms, percentile

LATE_AFTER_SECONDS = 0.025
FINAL_SAGA_STATES = {"COMPLETED": "completed", "COMPENSATED": "compensated"}
FINAL_ORDER_STATUSES = {"CONFIRMED": "completed", "CANCELLED": "compensated"}


def error_key(status: int | None = None, exc: BaseException | None = None) -> str | None:
    """None for an accepted order (202); else what went wrong: the HTTP status as text, or
    timeout / connect / transport / bad_response / cancelled."""
    if exc is not None:
        if isinstance(exc, httpx.TimeoutException):
            return "timeout"
        if isinstance(exc, httpx.ConnectError):
            return "connect"
        if isinstance(exc, httpx.HTTPError):
            return "transport"
        if isinstance(exc, asyncio.CancelledError):
            return "cancelled"
        return "bad_response"
    if status == 202:
        return None
    return str(status)


@dataclasses.dataclass
class Bucket:
    """What happened during one second of the run."""

    sent: int = 0
    late: int = 0
    accepted: int = 0
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    latencies: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PhaseStats:
    """Totals of the warm-up or of the measured load."""

    offered: int = 0
    sent: int = 0
    late: int = 0
    max_lag: float = 0.0
    first_send: float | None = None  # seconds from the start of sending
    last_send: float | None = None
    accepted: int = 0
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    # array of C doubles: 8 bytes per order, so long runs stay small
    latencies: array[float] = dataclasses.field(default_factory=lambda: array("d"))

    @property
    def unsent(self) -> int:
        return self.offered - self.sent

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_ratio(self) -> float:
        return (self.error_count + self.unsent) / self.offered if self.offered else 0.0


class Recorder:
    """Counts sends and responses per second (progress lines) and per phase (summary).
    Times are seconds from the start of sending; pure, the caller passes the clock."""

    def __init__(self, planned: Iterable[Planned], warmup_seconds: float, load_seconds: float):
        self.offered_per_second: Counter[int] = Counter()
        self.warmup_seconds = warmup_seconds
        self.load_seconds = load_seconds
        self.buckets: dict[int, Bucket] = {}
        self.warmup = PhaseStats()
        self.load = PhaseStats()
        for p in planned:
            self.offered_per_second[second_of(p.offset)] += 1
            self.phase(p.warmup).offered += 1
        self.next_second = 0  # first second whose progress line is not out yet

    def _bucket(self, t: float) -> Bucket:
        return self.buckets.setdefault(max(0, math.floor(t)), Bucket())

    def phase(self, warmup: bool) -> PhaseStats:
        return self.warmup if warmup else self.load

    def on_sent(self, t: float, lag: float, warmup: bool) -> None:
        late = lag > LATE_AFTER_SECONDS
        bucket, stats = self._bucket(t), self.phase(warmup)
        bucket.sent += 1
        stats.sent += 1
        if late:
            bucket.late += 1
            stats.late += 1
        stats.max_lag = max(stats.max_lag, lag)
        if stats.first_send is None:
            stats.first_send = t
        stats.last_send = t

    def on_response(self, t: float, latency: float, error: str | None, warmup: bool) -> None:
        bucket, stats = self._bucket(t), self.phase(warmup)
        if error is None:
            bucket.accepted += 1
            stats.accepted += 1
        else:
            bucket.errors[error] += 1
            stats.errors[error] += 1
        bucket.latencies.append(latency)
        stats.latencies.append(latency)

    def phase_name(self, second: int) -> str:
        if second < self.warmup_seconds:
            return "warmup"
        if second < self.warmup_seconds + self.load_seconds:
            return "load"
        return "drain"

    def progress_line(self, second: int, in_flight: int) -> dict[str, Any]:
        """The line for second [second, second + 1), emitted once it is over."""
        bucket = self.buckets.pop(second, Bucket())
        latencies = sorted(bucket.latencies)
        return {
            "type": "progress",
            "t": second + 1,
            "phase": self.phase_name(second),
            "offered": self.offered_per_second.get(second, 0),
            "sent": bucket.sent,
            "late": bucket.late,
            "accepted": bucket.accepted,
            "errors": dict(sorted(bucket.errors.items())),
            "in_flight": in_flight,
            "p50_ms": ms(percentile(latencies, 50)),
            "p99_ms": ms(percentile(latencies, 99)),
        }

    def due_lines(self, now: float, in_flight: int, final: bool = False) -> list[dict[str, Any]]:
        """Lines of the seconds that are over at `now` (with `final`, also the partial one)."""
        end = math.ceil(now) if final else math.floor(now)
        if final:
            end = max(end, max(self.buckets, default=-1) + 1)
        lines = []
        while self.next_second < end:
            lines.append(self.progress_line(self.next_second, in_flight))
            self.next_second += 1
        return lines


class Tracked(NamedTuple):
    seq: int
    order_id: str
    saga_id: str
    sent_at: float  # seconds from the start of sending


def final_outcome(body: Mapping[str, Any]) -> str | None:
    """ "completed" / "compensated" once a saga (or its order) is final, else None."""
    state = body.get("state")
    if isinstance(state, str) and state in FINAL_SAGA_STATES:
        return FINAL_SAGA_STATES[state]
    status = body.get("order_status", body.get("status"))
    if isinstance(status, str) and status in FINAL_ORDER_STATUSES:
        return FINAL_ORDER_STATUSES[status]
    return None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def server_e2e_seconds(body: Mapping[str, Any]) -> float | None:
    """finished_at - created_at of a final saga, when the service reports both."""
    created, finished = _timestamp(body.get("created_at")), _timestamp(body.get("finished_at"))
    if created is None or finished is None or finished < created:
        return None
    return (finished - created).total_seconds()


def server_run_seconds(body: Mapping[str, Any]) -> float | None:
    """finished_at - the first step's time of a final saga: how long it ran once started,
    without the time it waited to start (under overload, on the starts topic)."""
    steps = body.get("steps")
    finished = _timestamp(body.get("finished_at"))
    if not isinstance(steps, list) or finished is None:
        return None
    times = [_timestamp(s.get("at")) for s in steps if isinstance(s, Mapping)]
    known = [t for t in times if t is not None]
    if not known or min(known) > finished:
        return None
    return (finished - min(known)).total_seconds()


@dataclasses.dataclass
class WaitStats:
    tracked: int = 0
    completed: int = 0
    compensated: int = 0
    poll_errors: int = 0
    waited: float = 0.0
    e2e: list[float] = dataclasses.field(default_factory=list)
    server_timed: int = 0
    run: list[float] = dataclasses.field(default_factory=list)

    @property
    def stuck(self) -> int:
        return self.tracked - self.completed - self.compensated

    def on_final(
        self,
        outcome: str,
        server_seconds: float | None,
        client_seconds: float,
        run_seconds: float | None = None,
    ) -> None:
        if run_seconds is not None:
            self.run.append(run_seconds)
        if outcome == "completed":
            self.completed += 1
        else:
            self.compensated += 1
        if server_seconds is not None:
            self.server_timed += 1
            self.e2e.append(server_seconds)
        else:
            self.e2e.append(client_seconds)

    def e2e_source(self) -> str | None:
        finished = self.completed + self.compensated
        if finished == 0:
            return None
        if self.server_timed == finished:
            return "server"
        return "client" if self.server_timed == 0 else "mixed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "tracked": self.tracked,
            "completed": self.completed,
            "compensated": self.compensated,
            "stuck": self.stuck,
            "poll_errors": self.poll_errors,
            "waited_s": round(self.waited, 3),
            "e2e_latency_ms": latency_summary(self.e2e),
            "e2e_latency_source": self.e2e_source(),
            # first step -> final state, of the sagas whose steps the service reported
            "run_latency_ms": latency_summary(self.run),
        }

    def progress_line(self, t: float) -> dict[str, Any]:
        return {
            "type": "progress",
            "t": round(t, 1),
            "phase": "wait",
            "pending": self.stuck,
            "completed": self.completed,
            "compensated": self.compensated,
            "poll_errors": self.poll_errors,
        }
