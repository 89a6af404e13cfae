"""The summary, the run's last JSON line, and the thresholds that decide its exit code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from saga_loadgen import EXIT_FAILED, EXIT_OK
from saga_loadgen.options import Config
from saga_loadgen.recorder import LATE_AFTER_SECONDS, PhaseStats, Recorder, WaitStats
from saga_loadgen.stats import latency_summary, ms


def _phase_dict(stats: PhaseStats, seconds: float, start: float) -> dict[str, Any]:
    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - start, 3)

    return {
        "offered": stats.offered,
        "sent": stats.sent,
        "unsent": stats.unsent,
        "late": stats.late,
        "max_lag_ms": ms(stats.max_lag),
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
        "late_after_ms": ms(LATE_AFTER_SECONDS),
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
