"""`saga-console`: the read-only web console (see docs/app-contract.md). Its own script,
not a sub-command of `saga-service`: the service must not import the console
(tests/unit/app/test_layers.py), and the console needs none of the service's settings."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from saga_console.server import ConsoleSettings, serve

DESCRIPTION = """\
Serve the saga-stack console on $PORT: recent sagas and one saga's timeline through the
app's HTTP API at $CONSOLE_APP_URL (GET /sagas, /sagas/stats, /sagas/{id} only), and the
dashboards in $CONSOLE_DASHBOARDS_DIR drawn from $CONSOLE_PROMETHEUS_URL (/api/v1/query and
/api/v1/query_range only). Read-only: every other method is 405.
Also CONSOLE_STATIC_DIR, CONSOLE_NAMESPACE, CONSOLE_JOB, CONSOLE_REFRESH_SECONDS,
CONSOLE_UPSTREAM_TIMEOUT_SECONDS, HTTP_KEEP_ALIVE_SECONDS. Exit 2 on a bad setting.
"""


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="saga-console",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    try:
        settings = ConsoleSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        print(f"saga-console: bad configuration: {problems}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
