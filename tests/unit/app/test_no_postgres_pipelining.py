"""The app never pipelines PostgreSQL statements (app/src/saga_service/adapters/postgres/db.py).

PostgreSQL ends a transaction left idle by a frozen or cut-off process
(idle_in_transaction_session_timeout) only once it has answered a Sync. A backend left
between a pipeline's statements and its Sync keeps its row locks with no timeout at all,
and every saga of that SKU waits behind them: seen as a stalled integration run when an app
process was frozen mid-step. psycopg pipelines in `conn.pipeline()` and in `executemany()`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import saga_service

PACKAGE = Path(saga_service.__file__).parent
PIPELINING_CALLS = {"pipeline", "executemany"}


def _pipelining_calls(path: Path) -> list[str]:
    return [
        f"{path.name}:{node.lineno} .{node.func.attr}()"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in PIPELINING_CALLS
    ]


def test_the_scan_finds_pipelined_calls(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "async def f(conn):\n"
        "    async with conn.pipeline():\n"
        "        await conn.cursor().executemany('', [])\n"
    )
    assert sorted(_pipelining_calls(planted)) == [
        "planted.py:2 .pipeline()",
        "planted.py:3 .executemany()",
    ]


def test_no_module_of_the_app_pipelines() -> None:
    found = [call for path in sorted(PACKAGE.rglob("*.py")) for call in _pipelining_calls(path)]
    assert found == []
