"""Applies the runtime settings file (SAGA_RUNTIME_CONFIG) to the running process.

The file is read every POLL_SECONDS and compared by content: Kubernetes updates a
ConfigMap volume by pointing a symlink (`..data`) at a new directory, so the file's own
mtime says nothing, and a content check also covers editors that keep the mtime. A new
content is checked whole with the environment's rules before anything is applied; a bad
one is logged (naming the keys) and counted, and the settings in effect stay as they were.
Write the file atomically (a rename), as the kubelet does: a half-written file is refused
like any bad one, and taken on the next poll once complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from saga_service.observability import metrics
from saga_service.settings import (
    RELOADABLE,
    RuntimeConfigError,
    Settings,
    parse_runtime_config,
    with_runtime_config,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0

Status = Literal["applied", "rejected", "missing"]


def setting_values(settings: Settings) -> dict[str, Any]:
    """The RELOADABLE settings of `settings`, by environment name."""
    return {name: getattr(settings, field) for name, field in RELOADABLE.items()}


def export_metrics(settings: Settings) -> None:
    for name, value in setting_values(settings).items():
        number = logging.getLevelName(value) if name == "LOG_LEVEL" else value
        metrics.RUNTIME_SETTING.labels(name).set(number)


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:16]


class RuntimeConfigWatcher:
    """Holds what the file said last and what is in effect; `apply` receives each new
    valid Settings (the environment's, with the file's values on top)."""

    def __init__(
        self,
        path: Path,
        *,
        base: Settings,
        current: Settings,
        content: bytes | None,
        apply: Callable[[Settings], None],
        interval: float = POLL_SECONDS,
    ) -> None:
        """`current` is in effect, built from `base` and the file's `content` at start-up."""
        self.path = path
        self.base = base
        self.current = current
        self.apply = apply
        self.interval = interval
        self.status: Status = "applied" if content is not None else "missing"
        self.error: str | None = None
        self._seen = content
        self._applied_fields: set[str] = set()
        self.applied_digest: str | None = None
        if content is not None:
            self._applied_fields = _fields_of(content)
            self.applied_digest = _digest(content)

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.interval)
            if stopping.is_set():
                return
            try:
                content = await asyncio.to_thread(self._read)
            except OSError as exc:
                # Unreadable for now (permissions, a volume being remounted): keep going.
                self._reject(None, [], f"cannot read the file: {exc}")
                continue
            self.check(content)

    def check(self, content: bytes | None) -> None:
        """Act on the file's content as just read (None: the file is gone)."""
        if content == self._seen:
            return
        self._seen = content
        if content is None:
            self.status, self.error = "missing", "the file is gone; keeping the settings"
            log.warning(
                "runtime config file missing; settings in effect kept",
                extra={"path": str(self.path)},
            )
            return
        try:
            new = with_runtime_config(self.base, content)
        except RuntimeConfigError as exc:
            self._reject(content, exc.keys, str(exc))
            return
        self._apply(new, content)

    def _reject(self, content: bytes | None, keys: list[str], problem: str) -> None:
        if self.status == "rejected" and self.error == problem:
            return
        self.status, self.error = "rejected", problem
        metrics.RUNTIME_CONFIG_RELOADS.labels("rejected").inc()
        log.error(
            "runtime config rejected; settings in effect kept",
            extra={
                "path": str(self.path),
                "key": ",".join(keys) or "(file)",
                "error": problem,
                "content_sha256": _digest(content) if content is not None else "",
            },
        )

    def _apply(self, new: Settings, content: bytes) -> None:
        old = setting_values(self.current)
        changes = {
            name: (old[name], value)
            for name, value in setting_values(new).items()
            if old[name] != value
        }
        # A change towards fewer log lines is logged before it applies, one towards more
        # after: either way the lines that announce it are kept.
        quieter = logging.getLevelName(new.log_level) > logging.getLevelName(self.current.log_level)
        if quieter:
            self._log_changes(changes)
        self.current = new
        self.apply(new)
        export_metrics(new)
        self.status, self.error = "applied", None
        self._applied_fields = _fields_of(content)
        self.applied_digest = _digest(content)
        metrics.RUNTIME_CONFIG_RELOADS.labels("applied").inc()
        if not quieter:
            self._log_changes(changes)
        if not changes:
            log.info(
                "runtime config read; nothing changed", extra={"content_sha256": _digest(content)}
            )

    def _log_changes(self, changes: dict[str, tuple[Any, Any]]) -> None:
        for name, (old, new) in changes.items():
            log.info(
                "runtime setting changed",
                extra={"setting": name, "old": old, "new": new, "path": str(self.path)},
            )

    def sources(self) -> dict[str, str]:
        """Where each RELOADABLE setting in effect comes from: file, environment or default."""
        return {
            name: _source(field, self._applied_fields, self.base)
            for name, field in RELOADABLE.items()
        }

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "status": self.status,
            "error": self.error,
            "applied_sha256": self.applied_digest,
        }


def _fields_of(content: bytes) -> set[str]:
    try:
        return set(parse_runtime_config(content))
    except RuntimeConfigError:
        return set()


def _source(field: str, in_file: set[str], base: Settings) -> str:
    if field in in_file:
        return "file"
    return "environment" if field in base.model_fields_set else "default"
