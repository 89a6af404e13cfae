"""The runtime settings file (SAGA_RUNTIME_CONFIG): what it may hold, how it is checked,
and how the watcher acts on a new content (applied whole, or refused whole)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from saga_service.reloader import RuntimeConfigWatcher, setting_values
from saga_service.settings import (
    RELOADABLE,
    RuntimeConfigError,
    Settings,
    load_runtime_config,
    with_runtime_config,
)

REQUIRED: dict[str, Any] = {
    "database_host": "db",
    "database_password": "secret",
    "redis_host": "redis",
    "kafka_bootstrap_servers": "kafka:9092",
}


def base(**values: Any) -> Settings:
    return Settings(**{**REQUIRED, **values})


def content(**values: Any) -> bytes:
    return json.dumps(values).encode()


def test_the_file_wins_over_the_environment_for_the_keys_it_names() -> None:
    env = base(log_level="WARNING", lock_ttl_ms=3000, database_pool_size=7)
    merged = with_runtime_config(env, content(LOG_LEVEL="DEBUG", SAGA_STEP_DELAY_MS=250))
    assert merged.log_level == "DEBUG"
    assert merged.saga_step_delay_ms == 250
    assert merged.lock_ttl_ms == 3000, "a key the file leaves out keeps the environment's value"
    assert merged.database_pool_size == 7
    assert merged.database_password.get_secret_value() == "secret"


def test_numbers_may_be_written_as_the_environment_writes_them() -> None:
    merged = with_runtime_config(base(), content(LOCK_TTL_MS="8000"))
    assert merged.lock_ttl_ms == 8000


@pytest.mark.parametrize(
    ("document", "keys", "text"),
    [
        (content(LOG_LEVEL="LOUD"), ["LOG_LEVEL"], "LOG_LEVEL: Input should be"),
        (content(LOCK_TTL_MS=10), ["LOCK_TTL_MS"], "LOCK_TTL_MS: Input should be greater"),
        (content(SAGA_STEP_DELAY_MS=-1), ["SAGA_STEP_DELAY_MS"], "SAGA_STEP_DELAY_MS"),
        (content(LOCK_ACQUIRE_TIMEOUT_MS="soon"), ["LOCK_ACQUIRE_TIMEOUT_MS"], "valid integer"),
        (content(LOCK_TTL_MS=True), ["LOCK_TTL_MS"], "string or a number"),
        (content(LOG_LEVEL=None), ["LOG_LEVEL"], "string or a number"),
        (content(DATABASE_POOL_SIZE=5), ["DATABASE_POOL_SIZE"], "not reloadable"),
        (content(LOG_LEVLE="DEBUG"), ["LOG_LEVLE"], "unknown setting"),
        (content(log_level="DEBUG"), ["log_level"], "upper case: LOG_LEVEL"),
        (b'{"LOG_LEVEL": "DEBUG",', [], "not valid JSON"),
        (b'["LOG_LEVEL"]', [], "not a JSON object"),
        (b"\xff\xfe", [], "not valid JSON"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, [], "nested too deeply", id="deeply nested"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(document: bytes, keys: list[str], text: str) -> None:
    with pytest.raises(RuntimeConfigError, match=text) as caught:
        with_runtime_config(base(), document)
    assert caught.value.keys == keys


def test_every_reloadable_setting_is_a_setting() -> None:
    assert set(RELOADABLE.values()) <= set(Settings.model_fields)
    assert all(name.lower() == field for name, field in RELOADABLE.items())


def test_at_start_the_file_is_read_and_its_content_kept(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(content(LOG_LEVEL="ERROR"))
    settings, read = load_runtime_config(base(saga_runtime_config=path))
    assert settings.log_level == "ERROR"
    assert read == path.read_bytes()
    assert load_runtime_config(base()) == (base(), None)
    with pytest.raises(RuntimeConfigError, match="SAGA_RUNTIME_CONFIG"):
        load_runtime_config(base(saga_runtime_config=tmp_path / "missing.json"))


class Applied:
    def __init__(self) -> None:
        self.seen: list[Settings] = []

    def __call__(self, settings: Settings) -> None:
        self.seen.append(settings)


def watcher(tmp_path: Path, env: Settings, first: bytes) -> tuple[RuntimeConfigWatcher, Applied]:
    path = tmp_path / "settings.json"
    path.write_bytes(first)
    current = with_runtime_config(env, first)
    applied = Applied()
    return (
        RuntimeConfigWatcher(path, base=env, current=current, content=first, apply=applied),
        applied,
    )


def test_the_watcher_applies_a_new_content_and_names_the_sources(tmp_path: Path) -> None:
    env = base(lock_ttl_ms=3000)
    w, applied = watcher(tmp_path, env, content(LOG_LEVEL="INFO"))
    w.check(content(LOG_LEVEL="INFO"))
    assert applied.seen == [], "the same content again changes nothing"

    w.check(content(LOG_LEVEL="DEBUG", SAGA_STEP_DELAY_MS=50))
    assert [setting_values(s)["LOG_LEVEL"] for s in applied.seen] == ["DEBUG"]
    assert setting_values(w.current)["SAGA_STEP_DELAY_MS"] == 50
    assert w.status == "applied"
    assert w.sources() == {
        "LOG_LEVEL": "file",
        "SAGA_STEP_DELAY_MS": "file",
        "LOCK_TTL_MS": "environment",
        "LOCK_ACQUIRE_TIMEOUT_MS": "default",
    }

    # A key taken out of the file falls back to the environment (or the default).
    w.check(content())
    assert setting_values(applied.seen[-1])["LOG_LEVEL"] == "INFO"
    assert setting_values(applied.seen[-1])["SAGA_STEP_DELAY_MS"] == 0


def test_a_bad_content_is_refused_whole_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w, applied = watcher(tmp_path, base(), content(LOG_LEVEL="WARNING", LOCK_TTL_MS=4000))
    caplog.set_level(logging.INFO, logger="saga_service.reloader")
    bad = content(LOG_LEVEL="DEBUG", LOCK_TTL_MS=1)
    w.check(bad)
    w.check(bad)
    w.check(content(LOG_LEVEL="LOUD", LOCK_TTL_MS=4000))
    assert applied.seen == []
    assert w.current.log_level == "WARNING", "a valid key of a refused file is not applied"
    assert w.status == "rejected"
    assert w.error is not None and w.error.startswith("LOG_LEVEL:")
    rejections = [r for r in caplog.records if r.getMessage().startswith("runtime config rejected")]
    assert [getattr(r, "key", None) for r in rejections] == ["LOCK_TTL_MS", "LOG_LEVEL"], (
        "one line per bad content seen, naming the key"
    )
    assert w.sources()["LOCK_TTL_MS"] == "file", "sources describe the settings in effect"

    w.check(content(LOG_LEVEL="ERROR", LOCK_TTL_MS=4000))
    # (through describe(): mypy keeps the narrowing of the asserts above)
    assert w.describe()["status"] == "applied" and w.describe()["error"] is None
    assert applied.seen[-1].log_level == "ERROR"


def test_a_missing_file_keeps_the_settings(tmp_path: Path) -> None:
    w, applied = watcher(tmp_path, base(), content(LOG_LEVEL="DEBUG"))
    w.check(None)
    assert w.status == "missing"
    assert applied.seen == []
    assert w.current.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("old", "new", "applied_before_the_line"),
    [
        ("INFO", "ERROR", 0),
        ("ERROR", "DEBUG", 1),
    ],
)
def test_a_level_change_is_announced_while_the_more_verbose_level_holds(
    tmp_path: Path, old: str, new: str, applied_before_the_line: int
) -> None:
    """Logged under the old level when it quietens the log, under the new one when it makes
    it louder: either way the line that says so is not filtered out."""
    applied: list[str] = []
    first = content(LOG_LEVEL=old)
    w = RuntimeConfigWatcher(
        tmp_path / "settings.json",
        base=base(),
        current=with_runtime_config(base(), first),
        content=first,
        apply=lambda s: applied.append(s.log_level),
    )
    at_line: list[int] = []

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "runtime setting changed":
                at_line.append(len(applied))

    logger = logging.getLogger("saga_service.reloader")
    spy = Spy()
    logger.addHandler(spy)
    # The watcher's apply is a stand-in here, so the logger's level is the test's to set.
    logger.setLevel(logging.INFO)
    try:
        w.check(content(LOG_LEVEL=new))
    finally:
        logger.removeHandler(spy)
        logger.setLevel(logging.NOTSET)
    assert applied == [new]
    assert at_line == [applied_before_the_line]
