"""`saga-service loadgen`: the pure parts (options, schedule, statistics, progress lines,
summary) and, over httpx's in-memory transport, the run's wiring and exit codes."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import saga_loadgen
from saga_loadgen import cli as loadgen_cli
from saga_loadgen import options, recorder, report, runner, schedule, stats
from saga_service.domain.order import validate_sku
from saga_service.entrypoints import cli

ENV = {"LOADGEN_TARGET": "http://saga-saga-stack:8080"}


def config(**overrides: Any) -> options.Config:
    values = {"run_id": "run1", **{k: str(v) for k, v in overrides.items()}}
    return options.resolve_config(values, ENV)


# --- options --------------------------------------------------------------------------------


def test_defaults_env_and_flags_in_that_order() -> None:
    c = options.resolve_config({}, ENV, new_run_id=lambda: "lg-fixed")
    assert (c.target, c.rate, c.duration, c.warmup, c.concurrency) == (
        "http://saga-saga-stack:8080", 10.0, 60.0, 0.0, 64
    )  # fmt: skip
    assert (c.skus, c.stock, c.wait_seconds, c.poll_sample) == (10, 1_000_000, 60.0, 1000)
    assert (c.max_error_ratio, c.max_stuck, c.run_id, c.output) == (0.01, 0, "lg-fixed", None)
    env = {**ENV, "LOADGEN_RATE": "25", "LOADGEN_DURATION": "5", "LOADGEN_OUTPUT": "/tmp/s.json"}
    c = options.resolve_config({"rate": "40"}, env)
    assert (c.rate, c.duration, c.output) == (40.0, 5.0, "/tmp/s.json")
    assert options.resolve_config({}, {**ENV, "LOADGEN_RATE": ""}).rate == 10.0  # empty = unset


def test_every_option_has_a_flag_and_an_env_var() -> None:
    dests = {o.dest for o in options.OPTIONS}
    assert dests == set(options.Config.__dataclass_fields__)
    assert all(o.env == "LOADGEN_" + o.flag[2:].replace("-", "_").upper() for o in options.OPTIONS)


def test_generated_run_id_is_valid_and_unique() -> None:
    ids = {options.resolve_config({}, ENV).run_id for _ in range(20)}
    assert len(ids) == 20
    assert all(options.RUN_ID_PATTERN.match(i) for i in ids)


@pytest.mark.parametrize(
    ("values", "env", "message"),
    [
        ({}, {}, "--target (or LOADGEN_TARGET) is required"),
        ({"target": "saga:8080"}, {}, "--target: must be an http:// or https:// URL"),
        ({}, {"LOADGEN_TARGET": "ftp://x"}, "LOADGEN_TARGET: must be an http"),
        ({"rate": "0"}, ENV, "--rate: must be > 0"),
        ({"rate": "fast"}, ENV, "--rate: not a number: 'fast'"),
        ({"rate": "nan"}, ENV, "--rate: not a finite number"),
        ({}, {**ENV, "LOADGEN_DURATION": "-1"}, "LOADGEN_DURATION: must be > 0"),
        ({"concurrency": "0"}, ENV, "--concurrency: must be within 1..10000"),
        ({"concurrency": "2.5"}, ENV, "--concurrency: not an integer"),
        ({"stock": "2000000000"}, ENV, "--stock: must be within 0..1000000000"),
        ({"max_error_ratio": "1.5"}, ENV, "--max-error-ratio: must be within 0..1"),
        ({"decline_ratio": "-0.1"}, ENV, "--decline-ratio: must be >= 0"),
        ({"run_id": "has space"}, ENV, "--run-id: must be 1-40 characters"),
        ({"host": "saga.localhost:8080"}, ENV, "--host: must be a DNS host name"),
        ({}, {**ENV, "LOADGEN_HOST": "-x.example"}, "LOADGEN_HOST: must be a DNS host name"),
        ({"rate": "0.1", "duration": "5"}, ENV, "sends no order"),
    ],
)
def test_bad_values_are_refused_naming_the_flag_or_variable(
    values: dict[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(options.ConfigError, match=re.escape(message)):
        options.resolve_config(values, env)


def test_all_bad_values_reported_at_once() -> None:
    with pytest.raises(options.ConfigError) as info:
        options.resolve_config({"rate": "x"}, {**ENV, "LOADGEN_SKUS": "0"})
    assert "--rate" in str(info.value) and "LOADGEN_SKUS" in str(info.value)


def test_target_is_normalised() -> None:
    assert config(target="http://app:8080/").target == "http://app:8080"
    assert config(target=" https://x.example/api/ ").target == "https://x.example/api"


def test_cli_wires_the_subcommand_without_service_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("LOADGEN_TARGET", "DATABASE_HOST", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["loadgen", "--rate", "5"]) == saga_loadgen.EXIT_USAGE
    assert "--target (or LOADGEN_TARGET) is required" in capsys.readouterr().err

    args = cli._build_parser().parse_args(["loadgen", "--target", "http://a:1", "--rate", "7"])
    assert args.command == "loadgen"
    assert options.resolve_config(vars(args), {}).rate == 7.0

    started: list[options.Config] = []

    def fake_loop(coro: Any) -> int:
        started.append(coro.cr_frame.f_locals["config"])
        coro.close()
        return 0

    assert loadgen_cli.main({"target": "http://a:1"}, {"LOADGEN_RATE": "3"}, fake_loop) == 0
    assert started[0].rate == 3.0


# --- schedule and orders --------------------------------------------------------------------


def test_schedule_is_evenly_spaced_within_the_duration() -> None:
    offsets = list(schedule.schedule(20, 3))
    assert len(offsets) == 60
    assert offsets[0] == 0 and offsets[-1] == pytest.approx(2.95)
    assert all(b - a == pytest.approx(0.05) for a, b in itertools.pairwise(offsets))
    assert schedule.planned_count(2.5, 3) == 7  # 0, 0.4, ..., 2.4 (2.8 would be 7.5 sends in)
    assert schedule.planned_count(0.1, 30) == 3  # float error does not lose the last send
    assert schedule.planned_count(3, 1 / 3 * 10) == 10
    assert schedule.planned_count(10, 0.09) == 0
    assert list(schedule.schedule(4, 1, start=2.0)) == [2.0, 2.25, 2.5, 2.75]


def test_plan_puts_warmup_first_and_numbers_every_order() -> None:
    planned = list(schedule.plan(config(rate=10, duration=2, warmup=1)))
    assert [p.seq for p in planned] == list(range(30))
    assert sum(p.warmup for p in planned) == 10
    assert all(p.offset < 1 for p in planned if p.warmup)
    assert next(p.offset for p in planned if not p.warmup) == 1.0
    assert max(p.offset for p in planned) < 3
    polled = schedule.measured_seqs_to_poll(config(rate=10, duration=2, warmup=1, poll_sample=4))
    assert polled == {10, 15, 20, 25}  # measured orders only, evenly spread
    assert len(schedule.measured_seqs_to_poll(config(rate=10, duration=2, poll_sample=0))) == 20


def test_offered_per_second() -> None:
    assert schedule.per_second_counts(schedule.schedule(2.5, 2)) == {0: 3, 1: 2}
    assert sum(schedule.per_second_counts(schedule.schedule(7, 10)).values()) == 70


def test_declines_are_exact_and_spread() -> None:
    assert [i for i in range(100) if schedule.is_declined(i, 0.1)] == list(range(9, 100, 10))
    assert not any(schedule.is_declined(i, 0) for i in range(100))
    assert all(schedule.is_declined(i, 1) for i in range(100))
    assert sum(schedule.is_declined(i, 1 / 3) for i in range(300)) == 100


def test_order_bodies_are_valid_for_the_api() -> None:
    c = config(skus=3, decline_ratio=0.5)
    bodies = [schedule.order_body(c, i) for i in range(6)]
    assert [b["items"][0]["sku"] for b in bodies] == [f"run1-sku-{i % 3}" for i in range(6)]
    assert [b["customer_id"].startswith("decline-") for b in bodies] == [False, True] * 3
    assert len({b["customer_id"] for b in bodies}) == 6
    for body in bodies:
        (item,) = body["items"]
        assert validate_sku(item["sku"]) and item["quantity"] == 1
    assert c.sku_names() == ["run1-sku-0", "run1-sku-1", "run1-sku-2"]
    # the longest run id and the most SKUs still make valid SKU names
    assert validate_sku(config(run_id="r" * 40, skus=10_000).sku_names()[-1])


def test_sample_is_even_and_distinct() -> None:
    assert schedule.pick_sample(5, 0) == [0, 1, 2, 3, 4]
    assert schedule.pick_sample(5, 9) == [0, 1, 2, 3, 4]
    assert schedule.pick_sample(100, 4) == [0, 25, 50, 75]
    sample = schedule.pick_sample(1001, 1000)
    assert len(set(sample)) == 1000 and sample == sorted(sample)
    assert schedule.pick_sample(0, 10) == []


# --- statistics -----------------------------------------------------------------------------


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile(values, 0) == 1
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([1.0, 2.0], 50) == 1.0
    assert stats.percentile([], 50) is None


def test_latency_summary_in_milliseconds() -> None:
    s = stats.latency_summary([0.003, 0.001, 0.002, 0.010])
    assert s == {"count": 4, "min": 1.0, "mean": 4.0, "p50": 2.0, "p90": 10.0, "p99": 10.0,
                 "max": 10.0}  # fmt: skip
    assert stats.latency_summary([]) == {
        "count": 0, "min": None, "mean": None, "p50": None, "p90": None, "p99": None, "max": None
    }  # fmt: skip


def test_error_keys() -> None:
    request = httpx.Request("POST", "http://x/orders")
    assert recorder.error_key(202) is None
    assert recorder.error_key(503) == "503"
    assert recorder.error_key(201) == "201"
    assert recorder.error_key(exc=httpx.ConnectTimeout("t", request=request)) == "timeout"
    assert recorder.error_key(exc=httpx.ReadTimeout("t", request=request)) == "timeout"
    assert recorder.error_key(exc=httpx.ConnectError("refused", request=request)) == "connect"
    assert recorder.error_key(exc=httpx.RemoteProtocolError("eof", request=request)) == "transport"
    assert recorder.error_key(exc=ValueError("not json")) == "bad_response"
    assert recorder.error_key(exc=asyncio.CancelledError()) == "cancelled"


def test_recorder_buckets_per_second_and_phase() -> None:
    planned = list(schedule.plan(config(rate=4, duration=2, warmup=1)))  # 4 warm-up + 8 measured
    rec = recorder.Recorder(planned, warmup_seconds=1, load_seconds=2)
    assert (rec.warmup.offered, rec.load.offered) == (4, 8)
    for p in planned:
        lag = 0.2 if p.seq == 5 else 0.001
        rec.on_sent(p.offset + lag, lag, p.warmup)
        status = 503 if p.seq in (6, 7) else 202
        rec.on_response(
            p.offset + lag + 0.1, 0.1 + p.seq / 1000, recorder.error_key(status), p.warmup
        )

    assert rec.due_lines(0.99, in_flight=3) == []
    (first,) = rec.due_lines(1.0, in_flight=3)
    assert first == {
        "type": "progress", "t": 1, "phase": "warmup", "offered": 4, "sent": 4, "late": 0,
        "accepted": 4, "errors": {}, "in_flight": 3, "p50_ms": 101.0, "p99_ms": 103.0,
    }  # fmt: skip
    rest = rec.due_lines(3.2, in_flight=0, final=True)
    assert [line["t"] for line in rest] == [2, 3, 4]
    assert [line["phase"] for line in rest] == ["load", "load", "drain"]
    assert rest[0]["late"] == 1 and rest[0]["errors"] == {"503": 2}
    assert rest[-1]["offered"] == 0 and rest[-1]["sent"] == 0
    assert sum(line["sent"] for line in [first, *rest]) == 12
    assert sum(line["accepted"] for line in [first, *rest]) == 10
    assert rec.due_lines(3.2, in_flight=0, final=True) == []  # every second exactly once

    load = rec.load
    assert (load.sent, load.accepted, load.error_count, load.late, load.unsent) == (8, 6, 2, 1, 0)
    assert load.error_ratio == pytest.approx(2 / 8)
    assert load.max_lag == pytest.approx(0.2)
    assert load.first_send == pytest.approx(1.001) and load.last_send == pytest.approx(2.751)


def test_recorder_final_flush_covers_late_buckets() -> None:
    rec = recorder.Recorder(
        schedule.plan(config(rate=1, duration=1)), warmup_seconds=0, load_seconds=1
    )
    rec.on_sent(0.0, 0.0, False)
    rec.on_response(4.5, 4.5, "timeout", False)
    lines = rec.due_lines(4.6, in_flight=0, final=True)
    assert [line["t"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines[-1]["errors"] == {"timeout": 1}


def test_final_outcomes_and_server_latency() -> None:
    assert recorder.final_outcome({"state": "COMPLETED"}) == "completed"
    assert recorder.final_outcome({"state": "COMPENSATED"}) == "compensated"
    assert recorder.final_outcome({"state": "CHARGING_PAYMENT", "order_status": "PENDING"}) is None
    assert recorder.final_outcome({"status": "CANCELLED"}) == "compensated"  # an order-shaped body
    assert recorder.final_outcome({"state": "RELEASING_STOCK"}) is None
    created = datetime(2026, 1, 2, 3, 4, 5, 100_000, tzinfo=UTC)
    body = {
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "finished_at": (created + timedelta(milliseconds=250)).isoformat(),
    }
    assert recorder.server_e2e_seconds(body) == pytest.approx(0.25)
    assert (
        recorder.server_e2e_seconds({"created_at": body["created_at"], "finished_at": None}) is None
    )
    assert recorder.server_e2e_seconds({"created_at": "yesterday", "finished_at": "now"}) is None
    reversed_times = {"created_at": body["finished_at"], "finished_at": body["created_at"]}
    assert recorder.server_e2e_seconds(reversed_times) is None


def test_run_latency_starts_at_the_first_step() -> None:
    first = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = {
        "created_at": (first - timedelta(seconds=30)).isoformat(),  # waited 30 s to start
        "finished_at": (first + timedelta(milliseconds=400)).isoformat(),
        "steps": [
            {"step": "charge_payment", "at": (first + timedelta(milliseconds=200)).isoformat()},
            {"step": "reserve_stock", "at": first.isoformat()},
        ],
    }
    assert recorder.server_run_seconds(body) == pytest.approx(0.4)
    assert recorder.server_run_seconds({**body, "steps": []}) is None
    assert recorder.server_run_seconds({**body, "finished_at": None}) is None
    assert recorder.server_run_seconds({**body, "steps": "none"}) is None


def test_wait_stats() -> None:
    wait = recorder.WaitStats(tracked=4)
    assert wait.e2e_source() is None and wait.stuck == 4
    wait.on_final("completed", 0.5, 0.9)
    wait.on_final("compensated", 0.7, 1.0)
    assert wait.e2e_source() == "server"
    wait.on_final("completed", None, 2.0, 0.25)
    assert wait.e2e_source() == "mixed"
    d = wait.as_dict()
    assert (d["completed"], d["compensated"], d["stuck"]) == (2, 1, 1)
    assert d["e2e_latency_ms"]["max"] == 2000.0
    assert d["run_latency_ms"]["max"] == 250.0
    assert wait.progress_line(12.34)["pending"] == 1
    only_client = recorder.WaitStats(tracked=1)
    only_client.on_final("completed", None, 0.3)
    assert only_client.e2e_source() == "client"


# --- summary and thresholds -----------------------------------------------------------------


def recorded(c: options.Config, errors: dict[int, int], unsent: int = 0) -> recorder.Recorder:
    """A recorder where order i got status errors.get(i, 202), all on time."""
    planned = list(schedule.plan(c))
    rec = recorder.Recorder(planned, c.warmup, c.duration)
    for p in planned[: len(planned) - unsent]:
        rec.on_sent(p.offset, 0.0, p.warmup)
        rec.on_response(p.offset + 0.01, 0.01, recorder.error_key(errors.get(p.seq, 202)), p.warmup)
    return rec


def test_summary_of_a_clean_run() -> None:
    c = config(rate=10, duration=2, wait_seconds=30)
    wait = recorder.WaitStats(tracked=20)
    for i in range(20):
        wait.on_final("completed" if i % 10 else "compensated", 0.2, 0.3)
    summary = report.build_summary(
        c, recorded(c, {}), wait, started_at="2026-01-01T00:00:00+00:00", elapsed=2.5
    )
    assert summary["ok"] is True and summary["exit_code"] == 0 and summary["failures"] == []
    assert (summary["offered"], summary["sent"], summary["accepted"]) == (20, 20, 20)
    assert (summary["errors"], summary["unsent"], summary["error_ratio"]) == (0, 0, 0)
    assert summary["achieved_rate"] == 10.0
    assert summary["first_send_s"] == 0 and summary["last_send_s"] == pytest.approx(1.9)
    assert summary["post_latency_ms"]["p99"] == 10.0
    assert summary["sagas"]["completed"] == 18 and summary["sagas"]["compensated"] == 2
    assert summary["warmup"] is None
    assert summary["config"]["rate"] == 10.0
    assert json.loads(report.dumps(summary)) == summary


def test_error_ratio_threshold() -> None:
    c = config(rate=50, duration=2, max_error_ratio=0.01, wait_seconds=0)
    at_limit = report.build_summary(c, recorded(c, {3: 503}), None, started_at="", elapsed=2)
    assert at_limit["ok"] is True and at_limit["error_ratio"] == 0.01
    assert at_limit["errors_by_status"] == {"503": 1} and at_limit["sagas"] is None
    over = report.build_summary(c, recorded(c, {3: 503, 4: 422}), None, started_at="", elapsed=2)
    assert over["ok"] is False and over["exit_code"] == saga_loadgen.EXIT_FAILED
    (failure,) = over["failures"]
    assert "error ratio 0.0200 above --max-error-ratio 0.01" in failure
    assert "422: 1, 503: 1" in failure
    unsent = report.build_summary(c, recorded(c, {}, unsent=2), None, started_at="", elapsed=2)
    assert unsent["unsent"] == 2 and unsent["ok"] is False


def test_stuck_sagas_and_signals_fail_the_run() -> None:
    c = config(rate=10, duration=1, max_stuck=1)
    wait = recorder.WaitStats(tracked=10, completed=8)
    summary = report.build_summary(c, recorded(c, {}), wait, started_at="", elapsed=1)
    assert summary["failures"] == ["2 of 10 polled sagas not final after 60s (--max-stuck 1)"]
    wait.completed = 9
    assert report.build_summary(c, recorded(c, {}), wait, started_at="", elapsed=1)["ok"]
    stopped = report.build_summary(
        c, recorded(c, {}), wait, started_at="", elapsed=1, interrupted=True
    )
    assert stopped["failures"] == ["stopped by a signal before the end"]
    failed = report.fail_summary(summary, "disk full")
    assert failed["failures"][-1] == "disk full" and failed["exit_code"] == 1


def test_warmup_is_reported_apart() -> None:
    c = config(rate=10, duration=1, warmup=1, wait_seconds=0)
    summary = report.build_summary(c, recorded(c, {0: 503}), None, started_at="", elapsed=2)
    assert summary["warmup"]["sent"] == 10 and summary["warmup"]["errors"] == 1
    assert summary["sent"] == 10 and summary["errors"] == 0 and summary["ok"]
    assert summary["first_send_s"] == 0.0  # measured from the end of the warm-up


# --- the run, over an in-memory transport ---------------------------------------------------


class FakeService:
    """Answers like the reference service; sagas finish after `polls_to_finish` polls."""

    def __init__(self, order_status: int = 202, ready: int = 200, polls_to_finish: int = 1):
        self.order_status = order_status
        self.ready = ready
        self.polls_to_finish = polls_to_finish
        self.stock: dict[str, int] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/healthz/ready":
            return httpx.Response(self.ready, json={"status": "x"})
        if request.method == "PUT" and path.startswith("/stock/"):
            self.stock[path.rsplit("/", 1)[1]] = json.loads(request.content)["quantity"]
            return httpx.Response(200, json={})
        if request.method == "POST" and path == "/orders":
            if self.order_status != 202:
                return httpx.Response(self.order_status, json={"error": "unavailable"})
            saga_id = str(uuid.uuid4())
            self.orders[saga_id] = json.loads(request.content)
            return httpx.Response(
                202, json={"order_id": str(uuid.uuid4()), "saga_id": saga_id, "status": "PENDING"}
            )
        if request.method == "GET" and path.startswith("/sagas/"):
            saga_id = path.rsplit("/", 1)[1]
            self.polls[saga_id] = self.polls.get(saga_id, 0) + 1
            if self.polls[saga_id] < self.polls_to_finish:
                return httpx.Response(200, json={"state": "CHARGING_PAYMENT"})
            declined = self.orders[saga_id]["customer_id"].startswith("decline")
            now = datetime.now(UTC)
            return httpx.Response(
                200,
                json={
                    "state": "COMPENSATED" if declined else "COMPLETED",
                    "created_at": (now - timedelta(milliseconds=40)).isoformat(),
                    "finished_at": now.isoformat(),
                },
            )
        return httpx.Response(404, json={"error": "not_found"})


def run(
    c: options.Config, service: Callable[[httpx.Request], httpx.Response]
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = asyncio.run(runner.run(c, out, err, transport=httpx.MockTransport(service)))
    return code, out.getvalue(), err.getvalue()


def test_run_sends_the_schedule_and_waits_for_the_sagas(tmp_path: Path) -> None:
    service = FakeService(polls_to_finish=2)
    c = config(rate=40, duration=1, skus=3, stock=5, decline_ratio=0.25, poll_sample=0,
               wait_seconds=10, output=tmp_path / "out" / "summary.json")  # fmt: skip
    code, out, err = run(c, service)
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]
    assert code == 0, err
    assert lines[0]["type"] == "start" and lines[0]["planned"] == 40
    assert summary["type"] == "summary" and summary["ok"] is True
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    assert (summary["sent"], summary["accepted"], summary["errors"]) == (40, 40, 0)
    assert summary["last_send_s"] < 1.0
    assert summary["sagas"]["completed"] == 30 and summary["sagas"]["compensated"] == 10
    assert summary["sagas"]["stuck"] == 0 and summary["sagas"]["e2e_latency_source"] == "server"
    assert summary["sagas"]["e2e_latency_ms"]["p50"] == pytest.approx(40, abs=1)
    assert service.stock == {"run1-sku-0": 5, "run1-sku-1": 5, "run1-sku-2": 5}
    assert "orders beyond the stock are compensated" in err  # 14 orders per SKU, stock 5
    progress = [line for line in lines if line["type"] == "progress"]
    sending = [line for line in progress if line["phase"] != "wait"]
    assert sum(line["sent"] for line in sending) == 40
    assert sum(line["offered"] for line in sending) == 40
    assert [line["t"] for line in sending] == list(range(1, len(sending) + 1))
    assert any(line["phase"] == "wait" for line in progress)


def test_run_fails_on_errors_and_exits_3_when_unreachable() -> None:
    code, out, err = run(config(rate=20, duration=0.5, wait_seconds=0), FakeService(503))
    summary = json.loads(out.splitlines()[-1])
    assert code == saga_loadgen.EXIT_FAILED and summary["errors_by_status"] == {"503": 10}
    assert "error ratio 1.0000 above --max-error-ratio" in err

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    code, out, err = run(config(startup_timeout=0), refuse)
    assert code == saga_loadgen.EXIT_UNREACHABLE and out == ""
    assert "target http://saga-saga-stack:8080 unreachable after 0s: ConnectError" in err

    code, out, err = run(config(startup_timeout=0), FakeService(ready=503))
    assert (
        code == saga_loadgen.EXIT_UNREACHABLE
        and "not ready after 0s: /healthz/ready answered 503" in err
    )


def test_run_reports_stuck_sagas() -> None:
    c = config(rate=20, duration=0.5, wait_seconds=1, poll_sample=4)
    code, out, _ = run(c, FakeService(polls_to_finish=10**6))
    summary = json.loads(out.splitlines()[-1])
    assert code == saga_loadgen.EXIT_FAILED
    assert summary["sagas"]["tracked"] == 4 and summary["sagas"]["stuck"] == 4
    assert 1 <= summary["sagas"]["waited_s"] < 2
    assert math.isclose(summary["error_ratio"], 0)


def test_the_api_token_goes_in_the_authorization_header_and_nowhere_else() -> None:
    token = "t" * 40
    resolved = options.resolve_config(
        {"target": "http://app:8080"}, {"LOADGEN_API_TOKEN": token}, lambda: "lg-1"
    )
    assert runner.request_headers(resolved)["authorization"] == f"Bearer {token}"
    assert token not in repr(resolved)
    assert "api_token" not in resolved.as_dict()
    listed = options.resolve_config(
        {"target": "http://app:8080"}, {"LOADGEN_API_TOKEN": f"{token}\n{'u' * 40}\n"}
    )
    assert runner.request_headers(listed)["authorization"] == f"Bearer {token}"
    untokened = options.resolve_config({"target": "http://app:8080"}, {}, lambda: "lg-1")
    assert "authorization" not in runner.request_headers(untokened)


def test_the_host_names_the_route_on_every_request_to_the_target() -> None:
    """Through an ingress controller: the requests go to --target and name --host."""
    seen: list[tuple[str, str]] = []
    service = FakeService()

    def through_ingress(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers["host"]))
        return service(request)

    c = config(target="http://traefik.saga-ingress.svc", host="saga.localhost", rate=10,
               duration=1, wait_seconds=5)  # fmt: skip
    code, _, _ = run(c, through_ingress)
    assert code == 0
    assert seen and set(seen) == {("traefik.saga-ingress.svc", "saga.localhost")}
    plain = config()
    assert plain.host is None and "host" not in runner.request_headers(plain)
