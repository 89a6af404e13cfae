"""`saga-service loadgen`: an open-loop load generator for the order API.

Meant to run as a Kubernetes Job next to the app (it needs only HTTP access to the app's
Service; no database, Redis or Kafka settings):

1. waits until ``GET {target}/healthz/ready`` answers 200 (exit 3 when it never does);
2. sets the stock of its own SKUs (``PUT /stock/{run_id}-sku-N``), so runs never collide;
3. sends ``POST /orders`` on a fixed schedule, ``rate`` per second for ``duration`` seconds
   (after an optional warm-up at the same rate), whatever the responses: an open loop. At
   most ``concurrency`` requests are in flight; a send that cannot start within
   ``LATE_AFTER_SECONDS`` of its scheduled time counts as *late*;
4. polls ``GET /sagas/{saga_id}`` for (a sample of) the accepted orders until their saga
   is final (COMPLETED or COMPENSATED) or ``wait-seconds`` have passed, and reports the
   end-to-end saga latency (from the saga's own created_at/finished_at when the service
   returns them, else as observed by the load generator);
5. prints one JSON line per second while it runs, then the summary as the last line (and
   into ``--output``); the exit code says whether the run met its thresholds.

Everything above the "I/O" marker is pure and unit-tested (tests/unit/app/test_loadgen.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import re
import secrets
import signal
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import httpx

from saga_service import __version__

EXIT_OK = 0
EXIT_FAILED = 1  # the run finished but broke a threshold (errors, stuck sagas, a signal)
EXIT_USAGE = 2  # bad arguments / environment
EXIT_UNREACHABLE = 3  # the target never became ready, or its stock could not be set

LATE_AFTER_SECONDS = 0.025
POLL_INTERVAL_SECONDS = 0.5
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,39}$")
FINAL_SAGA_STATES = {"COMPLETED": "completed", "COMPENSATED": "compensated"}
FINAL_ORDER_STATUSES = {"CONFIRMED": "completed", "CANCELLED": "compensated"}

DESCRIPTION = """\
Open-loop load generator for the order API of a running saga service (its Service URL).
Sends POST /orders at --rate per second for --duration seconds whatever the answers,
with at most --concurrency requests in flight, then waits up to --wait-seconds for the
sagas to finish. Every option can also be set by the environment variable in brackets.

stdout: one JSON object per line. {"type": "start", ...} first, then one
{"type": "progress", ...} per second (offered, sent, late, accepted, errors by status,
in-flight, p50/p99 POST latency of that second; "pending" etc. while waiting), and the
{"type": "summary", ...} last (also written to --output). Messages go to stderr.

exit codes: 0 thresholds met; 1 error ratio above --max-error-ratio, more than
--max-stuck sagas not final, or stopped by SIGTERM/SIGINT; 2 bad options;
3 target unreachable or not ready within --startup-timeout, or stock could not be set.
"""


class ConfigError(ValueError):
    """An option (or its environment variable) has a value we cannot use."""


# --- options ------------------------------------------------------------------------------


def _number(text: str, *, minimum: float, inclusive: bool = True) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    if value < minimum or (value == minimum and not inclusive):
        raise ValueError(f"must be {'>=' if inclusive else '>'} {minimum:g}, got {text!r}")
    return value


def _integer(text: str, *, minimum: int, maximum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None
    if not minimum <= value <= maximum:
        raise ValueError(f"must be within {minimum}..{maximum}, got {text!r}")
    return value


def _positive(text: str) -> float:
    return _number(text, minimum=0, inclusive=False)


def _non_negative(text: str) -> float:
    return _number(text, minimum=0)


def _ratio(text: str) -> float:
    value = _number(text, minimum=0)
    if value > 1:
        raise ValueError(f"must be within 0..1, got {text!r}")
    return value


def _url(text: str) -> str:
    url = text.strip().rstrip("/")
    problem = f"must be an http:// or https:// URL with a host, got {text!r}"
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(problem)
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        host = ""
    if not host:
        raise ValueError(problem)
    return url


def _run_id(text: str) -> str:
    if not RUN_ID_PATTERN.match(text):
        raise ValueError(
            f"must be 1-40 characters of letters, digits, '.', '_', ':', '-' "
            f"(starting with a letter or digit), got {text!r}"
        )
    return text


@dataclasses.dataclass(frozen=True)
class Option:
    flag: str
    parse: Callable[[str], Any]
    default: str | None
    help: str
    metavar: str = "N"
    shown_default: str | None = None  # for --help, when `default` is None

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def env(self) -> str:
        return "LOADGEN_" + self.dest.upper()


OPTIONS: tuple[Option, ...] = (
    Option("--target", _url, None, "base URL of the app (required), e.g. "
           "http://saga-saga-stack:8080", "URL"),
    Option("--rate", _positive, "10", "orders per second (open loop)", "PER_S"),
    Option("--duration", _positive, "60", "seconds of measured load", "SECONDS"),
    Option("--warmup", _non_negative, "0", "seconds of load at the same rate before the "
           "measured part; counted apart, not polled", "SECONDS"),
    Option("--concurrency", lambda t: _integer(t, minimum=1, maximum=10_000), "64",
           "most POST requests in flight; a send that waits for a slot may become late"),
    Option("--skus", lambda t: _integer(t, minimum=1, maximum=10_000), "10",
           "SKUs of this run (orders take 1 unit of each in turn)"),
    Option("--stock", lambda t: _integer(t, minimum=0, maximum=1_000_000_000), "1000000",
           "units of stock PUT for each SKU first"),
    Option("--decline-ratio", _ratio, "0", "share of orders whose customer_id begins with "
           "'decline' (payment declined, saga compensated), spread evenly", "0..1"),
    Option("--wait-seconds", _non_negative, "60", "after sending, poll sagas until final or "
           "this many seconds (0: do not poll)", "SECONDS"),
    Option("--poll-sample", lambda t: _integer(t, minimum=0, maximum=10_000_000), "1000",
           "poll the sagas of this many of the measured orders, evenly spread (0: all)"),
    Option("--max-error-ratio", _ratio, "0.01", "fail when (errors + unsent) / offered "
           "is above this", "0..1"),
    Option("--max-stuck", lambda t: _integer(t, minimum=0, maximum=10_000_000), "0",
           "fail when more polled sagas than this are not final after --wait-seconds"),
    Option("--request-timeout", _positive, "10", "timeout of each HTTP request", "SECONDS"),
    Option("--startup-timeout", _non_negative, "30", "wait this long for "
           "/healthz/ready = 200 before giving up (exit 3)", "SECONDS"),
    Option("--run-id", _run_id, None, "prefix of this run's SKUs and customer ids", "ID",
           "lg-<8 random hex digits>"),
    Option("--output", str, None, "also write the summary (JSON) to this file", "PATH"),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Config:
    target: str
    rate: float
    duration: float
    warmup: float
    concurrency: int
    skus: int
    stock: int
    decline_ratio: float
    wait_seconds: float
    poll_sample: int
    max_error_ratio: float
    max_stuck: int
    request_timeout: float
    startup_timeout: float
    run_id: str
    output: str | None

    @property
    def planned_orders(self) -> int:
        return planned_count(self.rate, self.duration)

    def sku_names(self) -> list[str]:
        return [f"{self.run_id}-sku-{n}" for n in range(self.skus)]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The loadgen options, each with its LOADGEN_* environment variable and default."""
    for option in OPTIONS:
        default = option.default if option.default is not None else option.shown_default
        parser.add_argument(
            option.flag,
            dest=option.dest,
            metavar=option.metavar,
            default=None,
            help=f"{option.help} [{option.env}; default {default}]"
            if default
            else f"{option.help} [{option.env}]",
        )


def resolve_config(
    values: Mapping[str, Any],
    env: Mapping[str, str],
    new_run_id: Callable[[], str] = lambda: f"lg-{secrets.token_hex(4)}",
) -> Config:
    """Flags first, then LOADGEN_* variables, then defaults; every value checked."""
    resolved: dict[str, Any] = {}
    problems: list[str] = []
    for option in OPTIONS:
        raw = values.get(option.dest)
        source = option.flag
        if raw is None and env.get(option.env, "") != "":
            raw, source = env[option.env], option.env
        if raw is None:
            raw, source = option.default, f"{option.flag} (default)"
        if raw is None:
            resolved[option.dest] = None
            continue
        try:
            resolved[option.dest] = option.parse(str(raw))
        except ValueError as exc:
            problems.append(f"{source}: {exc}")
    if problems:
        raise ConfigError("; ".join(problems))
    if resolved["target"] is None:
        raise ConfigError("--target (or LOADGEN_TARGET) is required, e.g. http://app:8080")
    if resolved["run_id"] is None:
        resolved["run_id"] = new_run_id()
    config = Config(**resolved)
    if config.planned_orders < 1:
        raise ConfigError(
            f"--rate {config.rate:g} for --duration {config.duration:g}s sends no order"
        )
    return config


# --- schedule and the orders ----------------------------------------------------------------


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


# --- statistics -------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of values sorted ascending; None when empty."""
    if not sorted_values:
        return None
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def latency_summary(values: Iterable[float]) -> dict[str, Any]:
    """count, min/mean/p50/p90/p99/max in milliseconds (None when there are no values)."""
    ordered = sorted(values)
    mean = sum(ordered) / len(ordered) if ordered else None
    return {
        "count": len(ordered),
        "min": _ms(ordered[0] if ordered else None),
        "mean": _ms(mean),
        "p50": _ms(percentile(ordered, 50)),
        "p90": _ms(percentile(ordered, 90)),
        "p99": _ms(percentile(ordered, 99)),
        "max": _ms(ordered[-1] if ordered else None),
    }


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
            "p50_ms": _ms(percentile(latencies, 50)),
            "p99_ms": _ms(percentile(latencies, 99)),
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


@dataclasses.dataclass
class WaitStats:
    tracked: int = 0
    completed: int = 0
    compensated: int = 0
    poll_errors: int = 0
    waited: float = 0.0
    e2e: list[float] = dataclasses.field(default_factory=list)
    server_timed: int = 0

    @property
    def stuck(self) -> int:
        return self.tracked - self.completed - self.compensated

    def on_final(self, outcome: str, server_seconds: float | None, client_seconds: float) -> None:
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


def _phase_dict(stats: PhaseStats, seconds: float, start: float) -> dict[str, Any]:
    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - start, 3)

    return {
        "offered": stats.offered,
        "sent": stats.sent,
        "unsent": stats.unsent,
        "late": stats.late,
        "max_lag_ms": _ms(stats.max_lag),
        "first_send_s": rel(stats.first_send),
        "last_send_s": rel(stats.last_send),
        "accepted": stats.accepted,
        "errors": stats.error_count,
        "errors_by_status": dict(sorted(stats.errors.items())),
        "error_ratio": round(stats.error_ratio, 6),
        "achieved_rate": round(stats.sent / seconds, 3) if seconds else None,
        "post_latency_ms": latency_summary(stats.latencies),
    }


def evaluate(
    config: Config, load: PhaseStats, wait: WaitStats | None, interrupted: bool
) -> list[str]:
    """Why the run failed (empty: it met its thresholds)."""
    failures = []
    if interrupted:
        failures.append("stopped by a signal before the end")
    if load.error_ratio > config.max_error_ratio:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(load.errors.items())) or "none"
        failures.append(
            f"error ratio {load.error_ratio:.4f} above --max-error-ratio "
            f"{config.max_error_ratio:g}: {load.error_count} errors ({detail}) and "
            f"{load.unsent} unsent of {load.offered} offered"
        )
    if wait is not None and wait.stuck > config.max_stuck:
        failures.append(
            f"{wait.stuck} of {wait.tracked} polled sagas not final after "
            f"{config.wait_seconds:g}s (--max-stuck {config.max_stuck})"
        )
    return failures


def build_summary(
    config: Config,
    recorder: Recorder,
    wait: WaitStats | None,
    *,
    started_at: str,
    elapsed: float,
    interrupted: bool = False,
) -> dict[str, Any]:
    """The final JSON object; ``ok``/``exit_code``/``failures`` say whether the run passed."""
    failures = evaluate(config, recorder.load, wait, interrupted)
    load = _phase_dict(recorder.load, config.duration, start=config.warmup)
    summary: dict[str, Any] = {
        "type": "summary",
        "ok": not failures,
        "exit_code": EXIT_FAILED if failures else EXIT_OK,
        "failures": failures,
        "run_id": config.run_id,
        "target": config.target,
        "started_at": started_at,
        "elapsed_s": round(elapsed, 3),
        "late_after_ms": _ms(LATE_AFTER_SECONDS),
        **load,
        "warmup": _phase_dict(recorder.warmup, config.warmup, start=0.0) if config.warmup else None,
        "sagas": wait.as_dict() if wait is not None else None,
        "config": config.as_dict(),
    }
    return summary


def fail_summary(summary: dict[str, Any], failure: str) -> dict[str, Any]:
    return {
        **summary,
        "ok": False,
        "exit_code": EXIT_FAILED,
        "failures": [*summary["failures"], failure],
    }


def dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


# --- I/O ------------------------------------------------------------------------------------


class Unreachable(RuntimeError):
    """The target did not become usable (exit 3)."""


async def wait_until_ready(client: httpx.AsyncClient, target: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    problem = "no attempt"
    reached = False
    while True:
        try:
            response = await client.get("/healthz/ready", timeout=min(5.0, max(timeout, 1.0)))
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            reached = True
            if response.status_code == 200:
                return
            problem = f"/healthz/ready answered {response.status_code} {response.text[:300]}"
        if time.monotonic() >= deadline:
            what = "not ready" if reached else "unreachable"
            raise Unreachable(f"target {target} {what} after {timeout:g}s: {problem}")
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


async def put_stock(client: httpx.AsyncClient, config: Config) -> None:
    semaphore = asyncio.Semaphore(min(config.concurrency, 16))

    async def one(sku: str) -> None:
        async with semaphore:
            problem = ""
            for attempt in range(3):
                try:
                    response = await client.put(f"/stock/{sku}", json={"quantity": config.stock})
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        return
                    problem = f"HTTP {response.status_code} {response.text[:300]}"
                    if response.status_code < 500:
                        break
                await asyncio.sleep(0.5 * (attempt + 1))
            raise Unreachable(f"could not set the stock of {sku}: {problem}")

    await asyncio.gather(*(one(sku) for sku in config.sku_names()))


class _Run:
    def __init__(self, config: Config, client: httpx.AsyncClient, out: TextIO) -> None:
        self.config = config
        self.client = client
        self.out = out
        self.recorder = Recorder(plan(config), config.warmup, config.duration)
        # Only the orders to poll are remembered (memory stays bounded by --poll-sample).
        self.to_poll = measured_seqs_to_poll(config)
        self.tracked: list[Tracked] = []
        self.in_flight: set[asyncio.Task[None]] = set()
        self.stop = asyncio.Event()
        self.start = 0.0

    def emit(self, obj: Mapping[str, Any]) -> None:
        print(dumps(obj), file=self.out, flush=True)

    def now(self) -> float:
        # Not loop.time(): uvloop's is cached per loop iteration, in whole milliseconds.
        return time.perf_counter() - self.start

    async def post(self, item: Planned, sent_at: float, semaphore: asyncio.Semaphore) -> None:
        error: str | None = "cancelled"
        saga: tuple[str, str] | None = None
        try:
            try:
                response = await self.client.post("/orders", json=order_body(self.config, item.seq))
                error = error_key(response.status_code)
                if error is None:
                    body = response.json()
                    saga = (str(body["order_id"]), str(body["saga_id"]))
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                error = error_key(exc=exc)
        finally:
            semaphore.release()
            done = self.now()
            self.recorder.on_response(done, done - sent_at, error, item.warmup)
        if saga is not None and item.seq in self.to_poll:
            self.tracked.append(Tracked(item.seq, saga[0], saga[1], sent_at))

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.recorder.next_second + 1 - self.now()))
            for line in self.recorder.due_lines(self.now(), len(self.in_flight)):
                self.emit(line)

    async def send_all(self) -> None:
        semaphore = asyncio.Semaphore(self.config.concurrency)
        end_of_schedule = self.config.warmup + self.config.duration
        give_up_at = end_of_schedule + self.config.request_timeout
        for item in plan(self.config):
            # A loop, not one sleep: uvloop's timers run on its cached millisecond
            # clock, so a single sleep can wake a little before the offset.
            while (delay := item.offset - self.now()) > 0:  # noqa: ASYNC110 (a deadline, not an event)
                await asyncio.sleep(delay)
            if self.stop.is_set():
                return
            if semaphore.locked():
                try:
                    await asyncio.wait_for(semaphore.acquire(), max(0.0, give_up_at - self.now()))
                except TimeoutError:
                    return  # the rest stays unsent
            else:
                await semaphore.acquire()
            sent_at = self.now()
            self.recorder.on_sent(sent_at, sent_at - item.offset, item.warmup)
            task = asyncio.create_task(self.post(item, sent_at, semaphore))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)

    async def drain(self) -> None:
        """Wait for the requests in flight (2 s at most once a signal came); cancel the rest."""
        give_up = time.perf_counter() + self.config.request_timeout * 2 + 5
        stopping_since: float | None = None
        while self.in_flight:
            now = time.perf_counter()
            if self.stop.is_set():
                stopping_since = stopping_since or now
                give_up = min(give_up, stopping_since + 2.0)
            if now >= give_up:
                break
            await asyncio.wait(set(self.in_flight), timeout=min(0.25, give_up - now))
        leftover = set(self.in_flight)
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover)

    async def poll(self) -> WaitStats:
        stats = WaitStats(tracked=len(self.tracked))
        pending = {t.saga_id: t for t in self.tracked}
        began = time.perf_counter()
        deadline = began + self.config.wait_seconds
        semaphore = asyncio.Semaphore(self.config.concurrency)
        last_line = began

        async def check(item: Tracked) -> None:
            async with semaphore:
                try:
                    response = await self.client.get(f"/sagas/{item.saga_id}")
                    body = response.json() if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError):
                    body = None
            if not isinstance(body, dict):
                stats.poll_errors += 1
                return
            outcome = final_outcome(body)
            if outcome is not None and item.saga_id in pending:
                del pending[item.saga_id]
                stats.on_final(outcome, server_e2e_seconds(body), self.now() - item.sent_at)

        while pending and not self.stop.is_set():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            tasks = [asyncio.create_task(check(item)) for item in list(pending.values())]
            _, late = await asyncio.wait(tasks, timeout=remaining)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
            if time.perf_counter() - last_line >= 1.0 or not pending:
                last_line = time.perf_counter()
                self.emit(stats.progress_line(self.now()))
            if pending:
                pause = min(POLL_INTERVAL_SECONDS, deadline - time.perf_counter())
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), pause)
        stats.waited = time.perf_counter() - began
        return stats

    async def execute(self) -> dict[str, Any]:
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.start = time.perf_counter()
        ticker = asyncio.create_task(self.ticker())
        try:
            await self.send_all()
            await self.drain()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        for line in self.recorder.due_lines(self.now(), len(self.in_flight), final=True):
            self.emit(line)
        polling = self.config.wait_seconds > 0 and not self.stop.is_set()
        wait = await self.poll() if polling else None
        return build_summary(
            self.config,
            self.recorder,
            wait,
            started_at=started_at,
            elapsed=self.now(),
            interrupted=self.stop.is_set(),
        )


@contextlib.contextmanager
def _signals_stop(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT end the run early (summary still printed) instead of killing it."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")


def _warn(message: str, err: TextIO) -> None:
    print(f"saga-service loadgen: {message}", file=err, flush=True)


async def run(
    config: Config,
    out: TextIO | None = None,
    err: TextIO | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """The whole run; returns the exit code. `transport` replaces the network (unit tests)."""
    out = out or sys.stdout
    err = err or sys.stderr
    limits = httpx.Limits(
        max_connections=config.concurrency, max_keepalive_connections=config.concurrency
    )
    async with httpx.AsyncClient(
        base_url=config.target,
        timeout=httpx.Timeout(config.request_timeout),
        limits=limits,
        headers={"user-agent": f"saga-service-loadgen/{__version__}"},
        transport=transport,
    ) as client:
        try:
            await wait_until_ready(client, config.target, config.startup_timeout)
            await put_stock(client, config)
        except Unreachable as exc:
            _warn(str(exc), err)
            return EXIT_UNREACHABLE
        per_sku = math.ceil(sum(1 for _ in plan(config)) / config.skus)
        if per_sku > config.stock:
            _warn(
                f"up to {per_sku} orders per SKU but --stock {config.stock}: "
                "orders beyond the stock are compensated (out of stock)",
                err,
            )
        the_run = _Run(config, client, out)
        the_run.emit(
            {
                "type": "start",
                "run_id": config.run_id,
                "target": config.target,
                "planned": config.planned_orders,
                "warmup_planned": planned_count(config.rate, config.warmup),
                "skus": config.sku_names()[:3] + (["..."] if config.skus > 3 else []),
                "version": __version__,
            }
        )
        with _signals_stop(the_run.stop):
            summary = await the_run.execute()
    if config.output:
        try:
            await asyncio.to_thread(write_summary, Path(config.output), summary)
        except OSError as exc:
            summary = fail_summary(summary, f"could not write --output {config.output}: {exc}")
    for failure in summary["failures"]:
        _warn(failure, err)
    print(dumps(summary), file=out, flush=True)
    return int(summary["exit_code"])


def main(
    values: Mapping[str, Any],
    env: Mapping[str, str],
    run_loop: Callable[[Coroutine[Any, Any, int]], int],
) -> int:
    """`saga-service loadgen`: resolve the options, then run on the loop `run_loop` makes."""
    try:
        config = resolve_config(values, env)
    except ConfigError as exc:
        _warn(str(exc), sys.stderr)
        return EXIT_USAGE
    return run_loop(run(config))
