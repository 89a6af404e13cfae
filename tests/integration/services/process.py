"""Process supervision shared by every service: start a child, wait until it
answers, stop it by the process id we started (never by name), and retry on
another port when the bind(0) trick loses its race.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[3]
VERSIONS_FILE = REPO_ROOT / "ci" / "versions.sh"
INSTALL_HINT = "run ci/install-services.sh"
LOOPBACK = "127.0.0.1"

# How long each service may take to become ready. Generous on purpose: CI runs
# on 2 cores that may be busy compiling something else at the same time.
POSTGRES_START_TIMEOUT = float(os.environ.get("SAGA_POSTGRES_START_TIMEOUT", "60"))
REDIS_START_TIMEOUT = float(os.environ.get("SAGA_REDIS_START_TIMEOUT", "30"))
SENTINEL_START_TIMEOUT = float(os.environ.get("SAGA_SENTINEL_START_TIMEOUT", "45"))
KAFKA_START_TIMEOUT = float(os.environ.get("SAGA_KAFKA_START_TIMEOUT", "120"))
STOP_TIMEOUT = 30.0
PORT_ATTEMPTS = 3  # a free port found by bind(0) may be taken before the service binds it


_T = TypeVar("_T")


class ServiceError(RuntimeError):
    """A service could not be started or did not become ready."""


class MissingBinaryError(ServiceError):
    """A program or the Kafka jars are not installed."""


class _PortInUse(ServiceError):
    """The service lost the race for its port; the caller retries on another."""


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The KEY=value lines of ci/versions.sh (quotes stripped)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def cache_dir() -> Path:
    default = Path(os.environ.get("HOME", "/root")) / ".cache" / "saga-stack"
    return Path(os.environ.get("SAGA_STACK_CACHE", str(default)))


def _require(program: str, extra_dirs: Sequence[str] = ()) -> str:
    for directory in extra_dirs:
        candidate = Path(directory) / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(program)
    if found is None:
        raise MissingBinaryError(f"'{program}' not found on PATH; {INSTALL_HINT}")
    return found


def _set_parent_death_signal(sig: int) -> Callable[[], None]:
    """preexec_fn: the child gets ``sig`` if the process that started it dies.

    That keeps a crashed or killed test run from leaving servers behind. The
    setting survives exec; CPython runs preexec_fn after switching user, so
    it survives that too.
    """

    def apply() -> None:
        # best effort, Linux only
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG

    return apply


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One child process that we started; stopped by its own PID only.

    ``start()`` may be called again after ``stop()``/``kill()`` to run the
    same command line once more (same ports, same data).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        death_signal: int = signal.SIGKILL,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.user = user
        self.stop_signal = stop_signal
        self.death_signal = death_signal
        self._log: Any = None
        self.popen: subprocess.Popen[bytes]
        self.start()

    def start(self) -> None:
        if getattr(self, "popen", None) is not None and self.alive():
            raise ServiceError(f"{self.name} (pid {self.pid}) is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(self.cwd) if self.cwd else None,
            env=self.env,
            start_new_session=True,  # Ctrl-C in a terminal reaches only us
            preexec_fn=_set_parent_death_signal(self.death_signal),
            **kwargs,
        )

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            log = _tail(self.log_path)
            if "Address already in use" in log or "address already in use" in log.lower():
                raise _PortInUse(f"{self.name}: port already in use")
            raise ServiceError(
                f"{self.name} exited with code {code} before it was ready "
                f"(log {self.log_path}):\n{log}"
            )

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits until the process is gone."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.popen.wait()
        self._close_log()

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing (a hang)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop (the service's own shutdown signal), SIGKILL after
        ``timeout``. Idempotent."""
        try:
            if self.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGCONT)  # in case it was paused
                    os.kill(self.pid, self.stop_signal)
                try:
                    self.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.kill()
            else:
                self.popen.wait()
        finally:
            self._close_log()


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: ManagedProcess | None = None,
    interval: float = 0.05,
    max_interval: float = 0.5,
) -> float:
    """Poll ``condition`` until it is true; return the seconds it took.

    Raises ServiceError on timeout, or at once if ``process`` has exited.
    Exceptions from ``condition`` count as "not yet".
    """
    start = time.monotonic()
    deadline = start + timeout
    last_error: BaseException | None = None
    while True:
        if process is not None:
            process.check_alive()
        try:
            if condition():
                return time.monotonic() - start
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            log = f"\nlog {process.log_path}:\n{_tail(process.log_path)}" if process else ""
            raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{log}")
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)


def _with_port_retries(start: Callable[[], _T]) -> _T:
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return start()
        except _PortInUse:
            if attempt == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


class _Restartable:
    """Stop/start helpers for fault tests, shared by the instance types."""

    process: ManagedProcess
    start_timeout: float = 60.0

    def _ready(self) -> bool:
        raise NotImplementedError

    def _describe(self) -> str:
        return self.process.name

    def stop(self) -> None:
        """Graceful stop; the instance can be started again with start()."""
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.process.kill()

    def start(self) -> float:
        """Start the stopped/killed process again (same port and data) and
        wait until it answers; returns the seconds that took."""
        self.process.start()
        return wait_until(
            self._ready,
            timeout=self.start_timeout,
            what=f"{self._describe()} to come back",
            process=self.process,
        )

    @contextlib.contextmanager
    def stopped(self, *, kill: bool = False) -> Iterator[None]:
        """``with instance.stopped(): ...`` - down inside, back up (and ready) after."""
        if kill:
            self.kill()
        else:
            self.stop()
        try:
            yield
        finally:
            self.start()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP inside (connections hang instead of failing), SIGCONT after."""
        self.process.pause()
        try:
            yield
        finally:
            self.process.resume()


def _run_checked(argv: Sequence[str], what: str, user: str | None = None, **kwargs: Any) -> None:
    extra: dict[str, Any] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        extra.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
    result = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        **extra,
        **kwargs,
    )
    if result.returncode != 0:
        raise ServiceError(
            f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
