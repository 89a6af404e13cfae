"""The run: readiness, the stock, the open-loop sends, the polls, over one httpx client;
SIGTERM/SIGINT end it early with the summary still printed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

from saga_loadgen import EXIT_UNREACHABLE
from saga_loadgen.options import Config
from saga_loadgen.recorder import (
    Recorder,
    Tracked,
    WaitStats,
    error_key,
    final_outcome,
    server_e2e_seconds,
    server_run_seconds,
)
from saga_loadgen.report import build_summary, dumps, fail_summary
from saga_loadgen.schedule import Planned, measured_seqs_to_poll, order_body, plan, planned_count
from saga_service import __version__

POLL_INTERVAL_SECONDS = 0.5


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
                stats.on_final(
                    outcome,
                    server_e2e_seconds(body),
                    self.now() - item.sent_at,
                    server_run_seconds(body),
                )

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


def warn(message: str, err: TextIO) -> None:
    print(f"saga-service loadgen: {message}", file=err, flush=True)


def request_headers(config: Config) -> dict[str, str]:
    headers = {"user-agent": f"saga-service-loadgen/{__version__}"}
    if config.host:
        headers["host"] = config.host
    # The app's own API_TOKENS list may be given as it is (one Secret for both): its first.
    first = (config.api_token or "").replace("\n", ",").split(",")[0].strip()
    if first:
        headers["authorization"] = f"Bearer {first}"
    return headers


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
        headers=request_headers(config),
        transport=transport,
    ) as client:
        try:
            await wait_until_ready(client, config.target, config.startup_timeout)
            await put_stock(client, config)
        except Unreachable as exc:
            warn(str(exc), err)
            return EXIT_UNREACHABLE
        per_sku = math.ceil(sum(1 for _ in plan(config)) / config.skus)
        if per_sku > config.stock:
            warn(
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
        warn(failure, err)
    print(dumps(summary), file=out, flush=True)
    return int(summary["exit_code"])
