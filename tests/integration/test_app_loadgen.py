"""`saga-service loadgen` (the real command, as the chart's Job runs it) against a real
`saga-service serve` on real Postgres, Redis and Kafka."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration import app_processes, services
from tests.integration.app_processes import AppStack, saga_service_argv

pytestmark = pytest.mark.timeout(300)

# Fixtures of app_processes, made visible to this module.
app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

RATE, DURATION, SKUS, STOCK = 20, 3, 4, 1000
DECLINE_RATIO = 0.1  # every 10th order is declined: 6 of 60


def run_loadgen(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]], float]:
    """Run the command; its stdout must be JSON lines (all of them)."""
    started = time.monotonic()
    proc = subprocess.run(
        saga_service_argv("loadgen", *args),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.monotonic() - started
    lines = []
    for number, line in enumerate(proc.stdout.splitlines(), 1):
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"stdout line {number} is not JSON: {line!r}\nstderr: {proc.stderr}")
    return proc, lines, elapsed


def test_loadgen_sends_its_schedule_and_every_saga_finishes(
    app_stack: AppStack, tmp_path: Path
) -> None:
    (app,) = app_stack.start(1)
    output = tmp_path / "results" / "summary.json"
    proc, lines, elapsed = run_loadgen(
        "--rate", str(RATE), "--duration", str(DURATION), "--concurrency", "16",
        "--skus", str(SKUS), "--stock", str(STOCK), "--decline-ratio", str(DECLINE_RATIO),
        "--wait-seconds", "90", "--poll-sample", "0", "--run-id", "it-lg",
        "--output", str(output),
        env={"LOADGEN_TARGET": app.url},  # the Job's way: from the environment
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stderr}\n{proc.stdout[-3000:]}"

    summary = lines[-1]
    assert lines[0]["type"] == "start" and lines[0]["planned"] == RATE * DURATION
    assert summary["type"] == "summary"
    assert json.loads(output.read_text()) == summary
    assert summary["ok"] is True and summary["failures"] == [] and summary["exit_code"] == 0

    planned = RATE * DURATION
    assert summary["offered"] == summary["sent"] == summary["accepted"] == planned
    assert summary["errors"] == 0 and summary["errors_by_status"] == {}
    assert summary["unsent"] == 0 and summary["error_ratio"] == 0
    # Sent on schedule: 0, 1/RATE, ..., (planned - 1)/RATE, each within a short lag.
    assert summary["first_send_s"] < 0.5
    assert (planned - 1) / RATE <= summary["last_send_s"] < DURATION + 0.5
    assert summary["post_latency_ms"]["count"] == planned

    sagas = summary["sagas"]
    declined = round(planned * DECLINE_RATIO)
    assert sagas["tracked"] == planned and sagas["stuck"] == 0
    assert (sagas["completed"], sagas["compensated"]) == (planned - declined, declined)
    assert sagas["e2e_latency_source"] == "server"
    assert sagas["e2e_latency_ms"]["count"] == planned
    assert 0 < sagas["e2e_latency_ms"]["p50"] <= sagas["e2e_latency_ms"]["p99"]

    progress = [line for line in lines if line["type"] == "progress"]
    sending = [line for line in progress if line["phase"] in ("load", "drain")]
    assert [line["t"] for line in sending] == list(range(1, len(sending) + 1))
    assert sum(line["sent"] for line in sending) == planned
    assert sum(line["offered"] for line in sending) == planned
    assert sum(line["accepted"] for line in sending) == planned
    assert all(line["errors"] == {} for line in sending)
    assert all(line["offered"] == RATE for line in sending[:DURATION])
    assert all(line["p50_ms"] is not None for line in sending[:DURATION])
    assert progress[-1]["phase"] == "wait" and progress[-1]["pending"] == 0

    # The service agrees: every saga is final, the declined ones compensated, stock balanced.
    states = {
        r["state"]: r["n"]
        for r in app_stack.query("SELECT state, count(*) AS n FROM sagas GROUP BY state")
    }
    assert states == {"COMPLETED": planned - declined, "COMPENSATED": declined}
    levels = [httpx.get(f"{app.url}/stock/it-lg-sku-{n}", timeout=5).json() for n in range(SKUS)]
    assert sum(level["available"] for level in levels) == SKUS * STOCK - (planned - declined)
    assert all(level["reserved"] == 0 for level in levels)
    assert app.metric("saga_started_total") == planned
    print(f"loadgen run: {elapsed:.1f}s wall, e2e p50 {sagas['e2e_latency_ms']['p50']} ms")


def test_loadgen_exits_3_when_the_target_is_unreachable() -> None:
    target = f"http://127.0.0.1:{services.free_port()}"
    proc, lines, elapsed = run_loadgen(
        "--target", target, "--rate", "5", "--duration", "1", "--startup-timeout", "1"
    )
    assert proc.returncode == 3
    assert lines == []
    assert f"saga-service loadgen: target {target} unreachable after 1s" in proc.stderr
    assert elapsed < 30


def test_loadgen_refuses_bad_options_with_exit_2() -> None:
    proc, _, _ = run_loadgen("--rate", "-1", env={"LOADGEN_TARGET": "http://x:1"})
    assert proc.returncode == 2
    assert "--rate: must be > 0" in proc.stderr


def test_sigterm_stops_the_run_and_still_prints_the_summary(app_stack: AppStack) -> None:
    (app,) = app_stack.start(1)
    proc = subprocess.Popen(
        saga_service_argv("loadgen", "--target", app.url, "--rate", "10", "--duration", "60"),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # printed once the stock is set
        assert first["type"] == "start"
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summary = json.loads(out.splitlines()[-1])
    assert proc.returncode == 1, err
    assert summary["failures"][0] == "stopped by a signal before the end"
    assert 5 <= summary["sent"] < 60 and summary["unsent"] == 600 - summary["sent"]
    assert summary["errors"] == 0 and summary["sagas"] is None
    assert "stopped by a signal" in err
