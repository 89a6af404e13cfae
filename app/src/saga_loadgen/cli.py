"""The `loadgen` sub-command of `saga-service`: its options and help, and its exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from saga_loadgen import EXIT_USAGE
from saga_loadgen.options import OPTIONS, ConfigError, resolve_config
from saga_loadgen.runner import run, warn

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


def main(
    values: Mapping[str, Any],
    env: Mapping[str, str],
    run_loop: Callable[[Coroutine[Any, Any, int]], int],
) -> int:
    """`saga-service loadgen`: resolve the options, then run on the loop `run_loop` makes."""
    try:
        config = resolve_config(values, env)
    except ConfigError as exc:
        warn(str(exc), sys.stderr)
        return EXIT_USAGE
    return run_loop(run(config))
