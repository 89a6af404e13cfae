"""Settings changed in a running process through its runtime file (SAGA_RUNTIME_CONFIG),
against real Postgres, Redis and Kafka: the same process (same PID) takes a new LOG_LEVEL
and SAGA_STEP_DELAY_MS, and refuses a bad file, naming the key, with every setting kept."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration import app_processes
from tests.integration.app_processes import AppProcess, AppStack, saga_service_argv, wait_for

pytestmark = pytest.mark.timeout(300)

app_stack = app_processes.app_stack
app_stack_factory = app_processes.app_stack_factory

# The app polls every 2 s; the rest is room for a loaded machine.
RELOAD_TIMEOUT = 20.0


def write_atomically(path: Path, settings: dict[str, Any] | str) -> None:
    """As the kubelet does: the app never reads a half-written file."""
    text = settings if isinstance(settings, str) else json.dumps(settings)
    staging = path.with_name(path.name + ".new")
    staging.write_text(text)
    os.replace(staging, path)


def config(app: AppProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(app.url + "/config", timeout=5.0).json()
    return body


def log_lines(app: AppProcess) -> list[dict[str, Any]]:
    lines = []
    for line in app.log().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def place_order(app: AppProcess, sku: str) -> str:
    with app.client() as client:
        response = client.post(
            "/orders",
            json={
                "customer_id": "reload",
                "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 100}],
            },
        )
    assert response.status_code == 202, response.text
    saga_id: str = response.json()["saga_id"]
    return saga_id


def step_gaps(saga: dict[str, Any]) -> list[float]:
    """Seconds from the saga's creation to its first step, and between its steps."""
    times = [datetime.fromisoformat(saga["created_at"])]
    times += [datetime.fromisoformat(step["at"]) for step in saga["steps"]]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


def test_a_running_process_takes_new_settings_from_its_file(app_stack: AppStack) -> None:
    path = app_stack.workdir / "runtime" / "settings.json"
    path.parent.mkdir(parents=True)
    write_atomically(path, {"LOG_LEVEL": "INFO", "SAGA_STEP_DELAY_MS": 0})
    (app,) = app_stack.start(1, SAGA_RUNTIME_CONFIG=str(path), LOCK_TTL_MS="2000")
    pid = app.pid

    first = config(app)
    assert first["settings"]["LOG_LEVEL"] == "INFO"
    assert first["sources"] == {
        "LOG_LEVEL": "file",
        "SAGA_STEP_DELAY_MS": "file",
        "LOCK_TTL_MS": "environment",
        "LOCK_ACQUIRE_TIMEOUT_MS": "environment",
    }
    assert first["file"]["status"] == "applied"

    app_stack.set_stock("RELOAD-1", 100)
    quick = app_stack.wait_saga(place_order(app, "RELOAD-1"))
    assert quick["state"] == "COMPLETED"
    assert not [line for line in log_lines(app) if line["level"] == "DEBUG"]

    write_atomically(path, {"LOG_LEVEL": "DEBUG", "SAGA_STEP_DELAY_MS": 400, "LOCK_TTL_MS": 3000})
    wait_for(
        lambda: (
            config(app)["settings"]
            == {
                "LOG_LEVEL": "DEBUG",
                "SAGA_STEP_DELAY_MS": 400,
                "LOCK_TTL_MS": 3000,
                "LOCK_ACQUIRE_TIMEOUT_MS": 5000,
            }
        ),
        RELOAD_TIMEOUT,
        "the new settings in effect",
    )
    assert app.pid == pid and app.process.alive(), "the same process, not a restarted one"
    assert config(app)["sources"]["LOCK_TTL_MS"] == "file"
    assert app.metric("saga_runtime_setting", {"name": "SAGA_STEP_DELAY_MS"}) == 400
    assert app.metric("saga_runtime_setting", {"name": "LOG_LEVEL"}) == 10
    assert app.metric("saga_runtime_config_reloads_total", {"outcome": "applied"}) == 1
    changes = {
        line["setting"]: (line["old"], line["new"])
        for line in log_lines(app)
        if line["msg"] == "runtime setting changed"
    }
    assert changes == {
        "LOG_LEVEL": ("INFO", "DEBUG"),
        "SAGA_STEP_DELAY_MS": (0, 400),
        "LOCK_TTL_MS": (2000, 3000),
    }

    # In effect, not just reported: each step now waits 400 ms first, and logs at DEBUG.
    slow_id = place_order(app, "RELOAD-1")
    slow = app_stack.wait_saga(slow_id)
    assert slow["state"] == "COMPLETED"
    gaps = step_gaps(slow)
    assert len(gaps) == 3 and min(gaps) >= 0.4, gaps
    starting = [
        line
        for line in log_lines(app)
        if line["msg"] == "saga step starting" and line.get("saga_id") == slow_id
    ]
    assert [line["step"] for line in starting] == [
        "reserve_stock",
        "charge_payment",
        "confirm_order",
    ]
    assert {line["level"] for line in starting} == {"DEBUG"}
    assert {line["step_delay_ms"] for line in starting} == {400}
    assert app.pid == pid


def test_a_bad_file_is_refused_naming_the_key_and_the_settings_stay(
    app_stack: AppStack,
) -> None:
    path = app_stack.workdir / "settings.json"
    good = {"LOG_LEVEL": "DEBUG", "SAGA_STEP_DELAY_MS": 50}
    write_atomically(path, good)
    (app,) = app_stack.start(1, SAGA_RUNTIME_CONFIG=str(path))
    pid = app.pid
    in_effect = config(app)["settings"]
    assert in_effect["LOG_LEVEL"] == "DEBUG"

    def rejected_lines() -> list[dict[str, Any]]:
        return [
            line for line in log_lines(app) if line["msg"].startswith("runtime config rejected")
        ]

    # A valid key beside a bad one: the file is refused whole.
    write_atomically(path, {"LOG_LEVEL": "LOUD", "SAGA_STEP_DELAY_MS": 0})
    wait_for(lambda: config(app)["file"]["status"] == "rejected", RELOAD_TIMEOUT, "a refusal")
    refusal = config(app)
    assert refusal["settings"] == in_effect
    assert refusal["file"]["error"].startswith("LOG_LEVEL:")
    (line,) = rejected_lines()
    assert line["level"] == "ERROR" and line["key"] == "LOG_LEVEL"
    assert app.metric("saga_runtime_config_reloads_total", {"outcome": "rejected"}) == 1

    # A setting that needs a restart, then a file that is not JSON.
    write_atomically(path, {"DATABASE_POOL_SIZE": 3})
    wait_for(lambda: len(rejected_lines()) == 2, RELOAD_TIMEOUT, "the second refusal")
    assert rejected_lines()[-1]["key"] == "DATABASE_POOL_SIZE"
    assert "not reloadable" in rejected_lines()[-1]["error"]
    write_atomically(path, '{"LOG_LEVEL": "INFO",')
    wait_for(lambda: len(rejected_lines()) == 3, RELOAD_TIMEOUT, "the third refusal")
    assert "not valid JSON" in rejected_lines()[-1]["error"]
    assert config(app)["settings"] == in_effect
    assert app.pid == pid and app.process.alive()
    assert app.ready()

    # Mended, it applies.
    write_atomically(path, {**good, "LOG_LEVEL": "WARNING"})
    wait_for(lambda: config(app)["settings"]["LOG_LEVEL"] == "WARNING", RELOAD_TIMEOUT, "the mend")
    mended = config(app)["file"]
    assert (mended["status"], mended["error"]) == ("applied", None)
    assert app.pid == pid


def test_a_bad_file_at_start_is_a_bad_configuration(app_stack: AppStack) -> None:
    path = app_stack.workdir / "settings.json"
    write_atomically(path, {"LOCK_ACQUIRE_TIMEOUT_MS": 1})
    result = subprocess.run(
        saga_service_argv("serve"),
        env={**app_stack.env, "SAGA_RUNTIME_CONFIG": str(path), "PORT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "LOCK_ACQUIRE_TIMEOUT_MS" in result.stderr
    assert str(path) in result.stderr
