"""Background tasks of a process and which of them died: a process whose relay, consumer or
worker loop is gone still answers HTTP but does no work, so /healthz/live reports the dead
ones and the kubelet restarts the process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundTasks:
    """Mixed into the objects that own a process' loops (the service's runtime, the worker)."""

    _tasks: list[asyncio.Task[Any]]
    dead_tasks: list[str]

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.dead_tasks.append(task.get_name())
            log.error(
                "background task died",
                extra={"task": task.get_name(), "error": repr(task.exception())},
            )
