"""The options of a run: each a flag, a LOADGEN_* environment variable and a default,
resolved in that order and every value checked (ConfigError names the flag or variable)."""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from saga_loadgen.schedule import planned_count

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,39}$")


class ConfigError(ValueError):
    """An option (or its environment variable) has a value we cannot use."""


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


HOST_PATTERN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def _host(text: str) -> str:
    host = text.strip().lower()
    if not HOST_PATTERN.match(host):
        raise ValueError(f"must be a DNS host name, got {text!r}")
    return host


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
    Option("--host", _host, None, "the Host header (and nothing else) to send, e.g. the "
           "route's host name when --target is an ingress controller", "NAME",
           "the target's"),
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
    Option("--api-token", str, None, "bearer token for the writes (one of the app's "
           "API_TOKENS); prefer LOADGEN_API_TOKEN, since a flag shows in the process list",
           "TOKEN", "none: no Authorization header"),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Config:
    target: str
    host: str | None
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
    # Never printed: left out of repr and of the summary.
    api_token: str | None = dataclasses.field(default=None, repr=False)

    @property
    def planned_orders(self) -> int:
        return planned_count(self.rate, self.duration)

    def sku_names(self) -> list[str]:
        return [f"{self.run_id}-sku-{n}" for n in range(self.skus)]

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "api_token"}


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
