"""Real backing services for the integration tests, run as local processes.

Each ``start_*`` function is a context manager that starts one service (or a
group) on free loopback ports inside a work directory, waits until it really
answers its own protocol, yields a small description of it, and stops it again
by the process id it started (never by name).

Nothing here depends on pytest, so the same code backs the pytest fixtures in
``conftest.py`` and the developer CLI::

    python -m tests.integration.services up

which starts everything, prints the environment variables of the app contract
(docs/app-contract.md) and waits for Ctrl-C or SIGTERM.

The binaries come from ``ci/install-services.sh`` (Debian packages for
PostgreSQL, Redis and Java; Kafka's jars from Maven into a cache outside the
repository).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import dataclasses
import functools
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
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


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


@dataclasses.dataclass
class PostgresInstance(_Restartable):
    host: str
    port: int
    user: str
    password: str
    dbname: str
    superuser: str
    superuser_password: str
    data_dir: Path
    log_path: Path
    process: ManagedProcess = dataclasses.field(repr=False)
    startup_seconds: float = 0.0

    @property
    def dsn(self) -> str:
        """libpq key/value connection string for the app's role and database."""
        return (
            f"host={self.host} port={self.port} dbname={self.dbname} "
            f"user={self.user} password={self.password} sslmode=disable"
        )

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"

    @property
    def superuser_dsn(self) -> str:
        return (
            f"host={self.host} port={self.port} dbname=postgres "
            f"user={self.superuser} password={self.superuser_password} sslmode=disable"
        )

    def _ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.superuser_dsn, autocommit=True, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def _describe(self) -> str:
        return f"PostgreSQL on {self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_HOST": self.host,
            "DATABASE_PORT": str(self.port),
            "DATABASE_NAME": self.dbname,
            "DATABASE_USER": self.user,
            "DATABASE_PASSWORD": self.password,
            "DATABASE_SSLMODE": "disable",
        }


def postgres_bindir() -> Path:
    """Directory with initdb/postgres: $SAGA_PG_BINDIR, newest Debian one, or PATH."""
    override = os.environ.get("SAGA_PG_BINDIR")
    if override:
        return Path(override)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise MissingBinaryError(
        f"PostgreSQL server binaries (initdb, postgres) not found; {INSTALL_HINT}"
    )


_PG_DIR_PREFIX = "saga-pg-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_postgres_dirs() -> None:
    """Remove cluster dirs left by a test run that was SIGKILLed (its
    postgres died with it, see PR_SET_PDEATHSIG, but the files stay)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_PG_DIR_PREFIX}*"):
        try:
            owner = int((path / "owner.pid").read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            continue  # not ours or still being created
        if _pid_alive(owner):
            continue
        try:
            pm = (path / "data" / "postmaster.pid").read_text(encoding="utf-8")
            if _pid_alive(int(pm.splitlines()[0])):
                continue
        except (OSError, ValueError, IndexError):
            pass
        shutil.rmtree(path, ignore_errors=True)


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


@contextlib.contextmanager
def start_postgres(
    workdir: Path,
    *,
    user: str = "saga",
    password: str = "saga-test-password",
    dbname: str = "saga",
    max_connections: int = 200,
    extra_settings: dict[str, str] | None = None,
) -> Iterator[PostgresInstance]:
    """A fresh PostgreSQL cluster with role ``user`` owning database ``dbname``.

    PostgreSQL refuses to run as root, so when we are root the cluster runs as
    the ``postgres`` OS user in a directory it owns under the system temp dir
    (pytest's temp dirs are private to root); ``workdir`` then only gets a
    pointer file. The cluster directory is removed on exit.
    """
    import psycopg

    bindir = postgres_bindir()
    initdb = _require("initdb", [str(bindir)])
    postgres_bin = _require("postgres", [str(bindir)])
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    run_as: str | None = None
    if os.geteuid() == 0:
        run_as = "postgres"
        try:
            entry = pwd.getpwnam(run_as)
        except KeyError as exc:
            raise MissingBinaryError(f"OS user 'postgres' does not exist; {INSTALL_HINT}") from exc
        _remove_stale_postgres_dirs()
        base = Path(tempfile.mkdtemp(prefix=_PG_DIR_PREFIX))
        (base / "owner.pid").write_text(f"{os.getpid()}\n", encoding="utf-8")
        os.chown(base, entry.pw_uid, entry.pw_gid)
        (workdir / "postgres-dir.txt").write_text(f"{base}\n", encoding="utf-8")
    else:
        base = workdir / "postgres"
        base.mkdir(parents=True, exist_ok=True)
    data_dir = base / "data"
    log_path = base / "postgres.log"
    superuser = "postgres"
    superuser_password = secrets.token_hex(12)
    pwfile = base / "superuser.pw"
    pwfile.write_text(superuser_password + "\n", encoding="utf-8")
    pwfile.chmod(0o600)
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(base),
    }
    try:
        _run_checked(
            [
                initdb,
                "-D",
                str(data_dir),
                "-U",
                superuser,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            "initdb",
            user=run_as,
            env=env,
            cwd=str(base),
        )
        pwfile.unlink()

        def attempt() -> PostgresInstance:
            port = free_port()
            settings = {
                "listen_addresses": LOOPBACK,
                "port": str(port),
                "unix_socket_directories": str(base),
                "max_connections": str(max_connections),
                "shared_buffers": "128MB",
                "fsync": "on",
                "logging_collector": "off",
                "log_min_messages": "warning",
                "log_connections": "off",
            }
            settings.update(extra_settings or {})
            argv = [postgres_bin, "-D", str(data_dir)]
            for key, value in settings.items():
                argv += ["-c", f"{key}={value}"]
            # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for
            # every client to leave); SIGQUIT if our process dies.
            proc = ManagedProcess(
                "postgres",
                argv,
                log_path,
                cwd=base,
                env=env,
                user=run_as,
                stop_signal=signal.SIGINT,
                death_signal=signal.SIGQUIT,
            )
            started = time.monotonic()
            su_dsn = (
                f"host={LOOPBACK} port={port} dbname=postgres user={superuser} "
                f"password={superuser_password} sslmode=disable connect_timeout=2"
            )

            def ready() -> bool:
                with psycopg.connect(su_dsn, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return True

            try:
                wait_until(
                    ready,
                    timeout=POSTGRES_START_TIMEOUT,
                    what=f"PostgreSQL on {LOOPBACK}:{port}",
                    process=proc,
                )
            except BaseException:
                proc.stop()
                raise
            return PostgresInstance(
                host=LOOPBACK,
                port=port,
                user=user,
                password=password,
                dbname=dbname,
                superuser=superuser,
                superuser_password=superuser_password,
                data_dir=data_dir,
                log_path=log_path,
                process=proc,
                startup_seconds=time.monotonic() - started,
            )

        instance: PostgresInstance = _with_port_retries(attempt)
        try:
            from psycopg import sql

            with psycopg.connect(instance.superuser_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(user), sql.Literal(password)
                    )
                )
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(dbname), sql.Identifier(user)
                    )
                )
            yield instance
        finally:
            instance.process.stop()
    finally:
        if run_as is not None:
            # keep the server log with the caller's (pytest's) work dir
            with contextlib.suppress(OSError):
                shutil.copyfile(log_path, workdir / "postgres.log")
            shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------
# Redis, replicas and Sentinel
# --------------------------------------------------------------------------


@dataclasses.dataclass
class RedisInstance(_Restartable):
    host: str
    port: int
    password: str
    workdir: Path
    process: ManagedProcess = dataclasses.field(repr=False)
    replica_of: tuple[str, int] | None = None
    startup_seconds: float = 0.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client for this instance (caller closes it)."""
        import redis

        return redis.Redis(host=self.host, port=self.port, password=self.password, **kwargs)

    def _ready(self) -> bool:
        _redis_ping(self.host, self.port, self.password)
        return True

    def _describe(self) -> str:
        return f"Redis on {self.address}"

    def env(self) -> dict[str, str]:
        return {
            "REDIS_MODE": "standalone",
            "REDIS_HOST": self.host,
            "REDIS_PORT": str(self.port),
            "REDIS_PASSWORD": self.password,
            "REDIS_TLS": "false",
        }


def _no_retry() -> Any:
    """redis-py retries (with backoff) by default; readiness polling does its own."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _redis_ping(host: str, port: int, password: str | None, timeout: float = 1.0) -> dict[str, Any]:
    import redis

    client = redis.Redis(
        host=host,
        port=port,
        password=password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=_no_retry(),
    )
    try:
        client.ping()
        info: dict[str, Any] = client.info("replication")
        return info
    finally:
        client.close()


def _redis_quote(value: str) -> str:
    """A double-quoted redis.conf string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _launch_redis(
    workdir: Path,
    password: str,
    replica_of: tuple[str, int] | None,
    name: str,
    port: int | None = None,
) -> RedisInstance:
    redis_server = _require("redis-server")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "redis.conf"
    lines = [
        f"bind {LOOPBACK}",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        f'dir "{workdir}"',
        f'logfile "{workdir / "redis.log"}"',
        f'pidfile "{workdir / "redis.pid"}"',
        'save ""',
        "appendonly no",
        f"requirepass {_redis_quote(password)}",
        f"masterauth {_redis_quote(password)}",
        # the Sentinels may use replica-priority; leave the default 100
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
        "maxmemory-policy noeviction",
    ]
    if replica_of is not None:
        lines.append(f"replicaof {replica_of[0]} {replica_of[1]}")
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = ManagedProcess(
        name, [redis_server, str(conf)], workdir / "redis.stdout.log", cwd=workdir
    )
    started = time.monotonic()

    def ready() -> bool:
        info = _redis_ping(LOOPBACK, port, password)
        if replica_of is None:
            return True
        return info.get("master_link_status") == "up"

    try:
        wait_until(
            ready,
            timeout=REDIS_START_TIMEOUT,
            what=f"{name} on {LOOPBACK}:{port}" + (" linked to its master" if replica_of else ""),
            process=proc,
        )
    except ServiceError as exc:
        proc.stop()
        if "Address already in use" in _tail(workdir / "redis.log"):
            raise _PortInUse(str(exc)) from exc
        raise
    return RedisInstance(
        host=LOOPBACK,
        port=port,
        password=password,
        workdir=workdir,
        process=proc,
        replica_of=replica_of,
        startup_seconds=time.monotonic() - started,
    )


@contextlib.contextmanager
def start_redis(
    workdir: Path,
    password: str = "redis-test-password",
    replica_of: tuple[str, int] | RedisInstance | None = None,
) -> Iterator[RedisInstance]:
    """A redis-server with ``requirepass`` (and ``replicaof`` when given).

    For a replica, returns once its link to the master is up.
    """
    if isinstance(replica_of, RedisInstance):
        replica_of = (replica_of.host, replica_of.port)
    workdir = Path(workdir)
    instance: RedisInstance = _with_port_retries(
        lambda: _launch_redis(workdir, password, replica_of, "redis")
    )
    try:
        yield instance
    finally:
        instance.process.stop()


@dataclasses.dataclass
class SentinelInstance:
    host: str
    port: int
    workdir: Path
    process: ManagedProcess = dataclasses.field(repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclasses.dataclass
class SentinelGroup:
    """A Redis master, its replicas and the Sentinels that watch them."""

    master_name: str
    password: str
    sentinel_password: str | None
    servers: list[RedisInstance]
    sentinels: list[SentinelInstance]
    workdir: Path
    killed: list[RedisInstance] = dataclasses.field(default_factory=list)

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(s.host, s.port) for s in self.sentinels]

    @property
    def sentinel_nodes(self) -> str:
        """``host:port,...`` as REDIS_SENTINEL_NODES expects."""
        return ",".join(s.address for s in self.sentinels)

    def env(self) -> dict[str, str]:
        return {
            "REDIS_MODE": "sentinel",
            "REDIS_SENTINEL_NODES": self.sentinel_nodes,
            "REDIS_SENTINEL_MASTER": self.master_name,
            "REDIS_SENTINEL_PASSWORD": self.sentinel_password or "",
            "REDIS_PASSWORD": self.password,
            "REDIS_TLS": "false",
        }

    def _sentinel_client(self, sentinel: SentinelInstance) -> Any:
        import redis

        return redis.Redis(
            host=sentinel.host,
            port=sentinel.port,
            password=self.sentinel_password,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            decode_responses=True,
            retry=_no_retry(),
        )

    def reported_masters(self) -> list[tuple[str, int] | None]:
        """What each running Sentinel says the master is (None if it can't be asked)."""
        answers: list[tuple[str, int] | None] = []
        for sentinel in self.sentinels:
            if not sentinel.process.alive():
                answers.append(None)
                continue
            client = self._sentinel_client(sentinel)
            try:
                addr = client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                )
                answers.append((str(addr[0]), int(addr[1])) if addr else None)
            except Exception:
                answers.append(None)
            finally:
                client.close()
        return answers

    def current_master_address(self) -> tuple[str, int]:
        """The master address that a majority of Sentinels agree on."""
        answers = [a for a in self.reported_masters() if a is not None]
        if not answers:
            raise ServiceError("no Sentinel answered")
        best = max(set(answers), key=answers.count)
        if answers.count(best) * 2 <= len(self.sentinels):
            raise ServiceError(f"Sentinels disagree about the master: {answers}")
        return best

    def server_at(self, address: tuple[str, int]) -> RedisInstance:
        for server in self.servers:
            if (server.host, server.port) == address:
                return server
        raise ServiceError(f"no server of this group listens on {address}")

    @property
    def master(self) -> RedisInstance:
        return self.server_at(self.current_master_address())

    @property
    def replicas(self) -> list[RedisInstance]:
        master = self.master
        return [s for s in self.servers if s is not master and s.process.alive()]

    def _all_agree_on(self, address: tuple[str, int]) -> bool:
        live = [s for s in self.sentinels if s.process.alive()]
        answers = self.reported_masters()
        agreeing = sum(1 for a in answers if a == address)
        return agreeing == len(live)

    def _sentinel_view(
        self, sentinel: SentinelInstance
    ) -> tuple[dict[str, str], list[dict[str, str]]]:
        """(SENTINEL MASTER, SENTINEL REPLICAS) of one Sentinel as dicts."""

        def as_dict(raw: Any) -> dict[str, str]:
            if isinstance(raw, dict):
                return {str(k): str(v) for k, v in raw.items()}
            return {str(k): str(v) for k, v in zip(raw[::2], raw[1::2], strict=False)}

        client = self._sentinel_client(sentinel)
        try:
            master = as_dict(client.execute_command("SENTINEL", "MASTER", self.master_name))
            replicas = [
                as_dict(r) for r in client.execute_command("SENTINEL", "REPLICAS", self.master_name)
            ]
        finally:
            client.close()
        return master, replicas

    def is_stable(self) -> bool:
        """True when every running Sentinel names the same healthy master, sees
        every other running Sentinel, and sees every running replica linked;
        no failover in progress. Exceptions mean "no"."""
        live_sentinels = [s for s in self.sentinels if s.process.alive()]
        live_servers = [s for s in self.servers if s.process.alive()]
        master_addr: tuple[str, int] | None = None
        for sentinel in live_sentinels:
            master, replicas = self._sentinel_view(sentinel)
            addr = (master["ip"], int(master["port"]))
            if master_addr is None:
                master_addr = addr
            if addr != master_addr or master.get("flags") != "master":
                return False
            if int(master.get("num-other-sentinels", "0")) < len(live_sentinels) - 1:
                return False
            healthy = {
                (r["ip"], int(r["port"]))
                for r in replicas
                if r.get("flags") == "slave" and r.get("master-link-status") == "ok"
            }
            expected = {(s.host, s.port) for s in live_servers} - {addr}
            if not expected <= healthy:
                return False
        if master_addr is None:
            return False
        info = _redis_ping(master_addr[0], master_addr[1], self.password)
        return info.get("role") == "master"

    def wait_stable(self, timeout: float = SENTINEL_START_TIMEOUT) -> float:
        """Wait until is_stable(); returns the seconds that took."""
        return wait_until(
            self.is_stable,
            timeout=timeout,
            what="Sentinels to agree on a healthy master with all running replicas",
        )

    def kill_master(self, timeout: float = 60.0) -> float:
        """SIGKILL the current master; wait until every Sentinel names a new one
        and that server reports role master. Returns the seconds from the kill
        until then.

        First waits (untimed) until the group is stable, so a failover that is
        still finishing (or a replica that was just restarted and is not yet
        known to the Sentinels) does not make the next one fail.
        """
        self.wait_stable()
        old_address = self.current_master_address()
        old = self.server_at(old_address)
        started = time.monotonic()
        old.process.kill()
        self.killed.append(old)

        def promoted() -> bool:
            answers = [a for a in self.reported_masters() if a is not None]
            if not answers or any(a == old_address for a in answers):
                return False
            new = answers[0]
            if not self._all_agree_on(new):
                return False
            info = _redis_ping(new[0], new[1], self.password)
            return info.get("role") == "master"

        wait_until(promoted, timeout=timeout, what="Sentinel failover to a new master")
        return time.monotonic() - started

    def restart_killed(self, *, wait: bool = True) -> list[RedisInstance]:
        """Start every killed server again on its old port, as a replica of the
        current master; with ``wait``, also wait until every Sentinel sees it.
        Returns the restarted servers."""
        restarted: list[RedisInstance] = []
        master = self.current_master_address()
        for old in list(self.killed):
            # Sentinel rewrites the config of an old master it reconfigures;
            # start it as a replica of the current master directly.
            new = _launch_redis(old.workdir, self.password, master, old.process.name, port=old.port)
            self.servers[self.servers.index(old)] = new
            self.killed.remove(old)
            restarted.append(new)
        if wait and restarted:
            # Sentinels look for new replicas in the master's INFO only every
            # 10 s, then at the replica's own INFO: this can take ~20 s.
            self.wait_stable()
        return restarted

    def config_epoch(self) -> int:
        """Highest config epoch the running Sentinels report (+1 per failover)."""
        epochs = [
            int(self._sentinel_view(s)[0].get("config-epoch", "0"))
            for s in self.sentinels
            if s.process.alive()
        ]
        return max(epochs)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.process.stop()
        for server in self.servers:
            server.process.stop()


def _launch_sentinel(
    workdir: Path,
    index: int,
    master: RedisInstance,
    master_name: str,
    quorum: int,
    password: str,
    sentinel_password: str | None,
    down_after_ms: int,
    failover_timeout_ms: int,
) -> SentinelInstance:
    redis_sentinel = shutil.which("redis-sentinel")
    # redis-sentinel is redis-server started in sentinel mode
    argv_prefix = [redis_sentinel] if redis_sentinel else [_require("redis-server")]
    sdir = workdir / f"sentinel-{index}"
    sdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = sdir / "sentinel.conf"
    lines = [
        f"bind {LOOPBACK}",
        f"port {port}",
        "daemonize no",
        "protected-mode no",
        f'dir "{sdir}"',
        f'logfile "{sdir / "sentinel.log"}"',
        f"sentinel announce-ip {LOOPBACK}",
        "sentinel resolve-hostnames no",
        f"sentinel monitor {master_name} {master.host} {master.port} {quorum}",
        f"sentinel auth-pass {master_name} {_redis_quote(password)}",
        f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
        f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
        f"sentinel parallel-syncs {master_name} 1",
    ]
    if sentinel_password:
        lines += [
            f"requirepass {_redis_quote(sentinel_password)}",
            f"sentinel sentinel-pass {_redis_quote(sentinel_password)}",
        ]
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = [*argv_prefix, str(conf)]
    if not redis_sentinel:
        argv.append("--sentinel")
    proc = ManagedProcess(f"sentinel-{index}", argv, sdir / "sentinel.stdout.log", cwd=sdir)
    return SentinelInstance(host=LOOPBACK, port=port, workdir=sdir, process=proc)


@contextlib.contextmanager
def start_redis_sentinel_group(
    workdir: Path,
    password: str = "redis-test-password",
    replicas: int = 1,
    sentinels: int = 3,
    master_name: str = "mymaster",
    *,
    sentinel_password: str | None = None,
    down_after_ms: int = 2000,
    failover_timeout_ms: int = 3000,
) -> Iterator[SentinelGroup]:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels (quorum = majority).

    Fast failover: ``down_after_ms`` 2000 (a failover then takes ~3.5 s). With
    1000 (~2.6 s) about one failover in ten was followed by a spurious second
    one on this 2-core machine: right after switching master, a Sentinel's new
    link may not see a PONG within 1 s.

    Returns once every replica is linked and every Sentinel knows the master,
    all replicas and all other Sentinels, so a failover can happen at once.
    """
    workdir = Path(workdir)
    group = SentinelGroup(
        master_name=master_name,
        password=password,
        sentinel_password=sentinel_password,
        servers=[],
        sentinels=[],
        workdir=workdir,
    )
    try:
        master = _with_port_retries(
            lambda: _launch_redis(workdir / "redis-0", password, None, "redis-0")
        )
        group.servers.append(master)
        for i in range(1, replicas + 1):
            group.servers.append(
                _with_port_retries(
                    functools.partial(
                        _launch_redis,
                        workdir / f"redis-{i}",
                        password,
                        (master.host, master.port),
                        f"redis-{i}",
                    )
                )
            )
        quorum = sentinels // 2 + 1
        for i in range(sentinels):
            group.sentinels.append(
                _launch_sentinel(
                    workdir,
                    i,
                    master,
                    master_name,
                    quorum,
                    password,
                    sentinel_password,
                    down_after_ms,
                    failover_timeout_ms,
                )
            )

        wait_until(
            group.is_stable,
            timeout=SENTINEL_START_TIMEOUT,
            what=f"{sentinels} Sentinels to discover the master, "
            f"{replicas} replica(s) and each other",
        )
        for sentinel in group.sentinels:
            sentinel.process.check_alive()
        yield group
    finally:
        group.stop()


# --------------------------------------------------------------------------
# Kafka (KRaft, one combined broker + controller)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class KafkaInstance(_Restartable):
    host: str
    port: int
    controller_port: int
    cluster_id: str
    workdir: Path
    process: ManagedProcess = dataclasses.field(repr=False)
    startup_seconds: float = 0.0
    sasl_port: int | None = None
    sasl_users: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    start_timeout: float = KAFKA_START_TIMEOUT

    @property
    def bootstrap_servers(self) -> str:
        """The PLAINTEXT listener."""
        return f"{self.host}:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512);
        only when started with ``sasl_users``."""
        if self.sasl_port is None:
            raise ServiceError("this Kafka was started without sasl_users")
        return f"{self.host}:{self.sasl_port}"

    def sasl_env(self, username: str, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """App-contract variables for the SASL_PLAINTEXT listener as ``username``."""
        if mechanism not in KAFKA_SASL_MECHANISMS:
            raise ValueError(f"mechanism must be one of {KAFKA_SASL_MECHANISMS}")
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl_bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": username,
            "KAFKA_SASL_PASSWORD": self.sasl_users[username],
        }

    def _ready(self) -> bool:
        brokers, controller = kafka_metadata(self.host, self.port)
        return 1 in brokers and controller >= 0

    def _describe(self) -> str:
        return f"Kafka on {self.bootstrap_servers}"

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        }


KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kafka_libs_dir() -> Path:
    """The jars fetched by ci/install-services.sh ($SAGA_KAFKA_LIBS overrides;
    $KAFKA_VERSION overrides ci/versions.sh, as in the script)."""
    override = os.environ.get("SAGA_KAFKA_LIBS")
    if override:
        libs = Path(override)
    else:
        version = os.environ.get("KAFKA_VERSION") or read_versions()["KAFKA_VERSION"]
        libs = cache_dir() / f"kafka-{version}" / "libs"
    if not libs.is_dir() or not any(libs.glob("kafka_*.jar")):
        raise MissingBinaryError(f"Kafka jars not found in {libs}; {INSTALL_HINT}")
    return libs


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return _require("java")


def new_kafka_cluster_id() -> str:
    """A random cluster id in Kafka's own format (url-safe base64 of 16 bytes)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like options
            return text


_LOG4J2_PROPERTIES = """\
# Written by tests/integration/services.py for a test broker.
status = warn
name = saga-test-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.kafkaapache.name = org.apache.kafka
logger.kafkaapache.level = INFO
logger.requests.name = kafka.request.logger
logger.requests.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> tuple[list[int], int]:
    """One real Kafka Metadata request (v4, no topics) over a raw socket.

    Returns (broker node ids, controller id). Using the wire protocol here
    keeps the readiness check synchronous and free of event loops.
    """

    def string(value: str) -> bytes:
        raw = value.encode()
        return struct.pack(">h", len(raw)) + raw

    correlation_id = 4242
    # request header v1: api_key=3 (Metadata), api_version=4, correlation id, client id
    header = struct.pack(">hhi", 3, 4, correlation_id) + string("saga-readiness")
    # body v4: topics = empty array (brokers only), allow_auto_topic_creation = false
    body = struct.pack(">i", 0) + struct.pack(">b", 0)
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)

        def recv_exact(n: int) -> bytes:
            chunks = b""
            while len(chunks) < n:
                chunk = sock.recv(n - len(chunks))
                if not chunk:
                    raise ConnectionError("Kafka closed the connection")
                chunks += chunk
            return chunks

        (size,) = struct.unpack(">i", recv_exact(4))
        data = recv_exact(size)
    offset = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values

    def take_string() -> str | None:
        nonlocal offset
        (length,) = take(">h")
        if length < 0:
            return None
        value = data[offset : offset + length].decode()
        offset += length
        return value

    (got_correlation,) = take(">i")
    if got_correlation != correlation_id:
        raise ConnectionError(f"unexpected correlation id {got_correlation}")
    take(">i")  # throttle_time_ms
    (count,) = take(">i")
    brokers: list[int] = []
    for _ in range(count):
        (node_id,) = take(">i")
        take_string()  # host
        take(">i")  # port
        take_string()  # rack
        brokers.append(node_id)
    take_string()  # cluster id
    (controller_id,) = take(">i")
    return brokers, controller_id


def _launch_kafka(
    workdir: Path,
    libs: Path,
    java: str,
    heap: tuple[str, str],
    sasl_users: dict[str, str] | None = None,
) -> KafkaInstance:
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    sasl_port: int | None = None
    if sasl_users:
        sasl_port = free_port()
        while sasl_port in (port, controller_port):
            sasl_port = free_port()
    cluster_id = new_kafka_cluster_id()
    data_dir = workdir / "data"
    logs_dir = workdir / "logs"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "1",
        "delete.topic.enable": "true",
    }
    scram_args: list[str] = []
    if sasl_users and sasl_port is not None:
        settings["listeners"] += f",SASL_PLAINTEXT://{LOOPBACK}:{sasl_port}"
        settings["advertised.listeners"] += f",SASL_PLAINTEXT://{LOOPBACK}:{sasl_port}"
        settings["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        settings["sasl.enabled.mechanisms"] = ",".join(KAFKA_SASL_MECHANISMS)
        prefix = "listener.name.sasl_plaintext"
        plain_users = " ".join(f"user_{name}={_jaas_quote(pw)}" for name, pw in sasl_users.items())
        settings[f"{prefix}.plain.sasl.jaas.config"] = (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        )
        for mechanism in ("scram-sha-256", "scram-sha-512"):
            settings[f"{prefix}.{mechanism}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
        # SCRAM credentials live in the metadata log: written at format time
        for name, pw in sasl_users.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                scram_args += [
                    "--add-scram",
                    f"{mechanism}=[name={name},password={_jaas_quote(pw)}]",
                ]
    server_properties = workdir / "server.properties"
    server_properties.write_text(
        "".join(f"{k}={v}\n" for k, v in settings.items()), encoding="utf-8"
    )
    log4j = workdir / "log4j2.properties"
    log4j.write_text(_LOG4J2_PROPERTIES.format(log_file=logs_dir / "server.log"), encoding="utf-8")
    classpath = str(libs / "*")
    jvm_common = [
        java,
        f"-Xmx{heap[0]}",
        f"-Xms{heap[1]}",
        "-XX:+UseSerialGC",
        *os.environ.get("SAGA_KAFKA_JVM_OPTS", "").split(),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        classpath,
    ]
    env = dict(os.environ)
    env.pop("KAFKA_OPTS", None)
    env.pop("KAFKA_HEAP_OPTS", None)
    _run_checked(
        [
            *jvm_common[:2],
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(server_properties),
            "--ignore-formatted",
            *scram_args,
        ],
        "kafka storage format",
        env=env,
    )
    proc = ManagedProcess(
        "kafka",
        [*jvm_common, "kafka.Kafka", str(server_properties)],
        logs_dir / "stdout.log",
        cwd=workdir,
        env=env,
        death_signal=signal.SIGKILL,
    )
    started = time.monotonic()

    def ready() -> bool:
        brokers, controller = kafka_metadata(LOOPBACK, port)
        return 1 in brokers and controller >= 0

    try:
        wait_until(
            ready,
            timeout=KAFKA_START_TIMEOUT,
            what=f"Kafka metadata on {LOOPBACK}:{port}",
            process=proc,
            max_interval=0.25,
        )
    except ServiceError as exc:
        proc.stop()
        log = _tail(logs_dir / "server.log", 200)
        if "Address already in use" in log or "BindException" in log:
            raise _PortInUse(str(exc)) from exc
        raise ServiceError(f"{exc}\nserver.log:\n{_tail(logs_dir / 'server.log')}") from exc
    return KafkaInstance(
        host=LOOPBACK,
        port=port,
        controller_port=controller_port,
        cluster_id=cluster_id,
        workdir=workdir,
        process=proc,
        startup_seconds=time.monotonic() - started,
        sasl_port=sasl_port,
        sasl_users=dict(sasl_users or {}),
    )


@contextlib.contextmanager
def start_kafka(
    workdir: Path,
    *,
    heap_max: str = "512m",
    heap_initial: str = "256m",
    sasl_users: dict[str, str] | None = None,
) -> Iterator[KafkaInstance]:
    """A single-node KRaft Kafka (combined broker + controller), PLAINTEXT on loopback.

    With ``sasl_users`` ({name: password}) there is also a SASL_PLAINTEXT
    listener accepting those users with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
    (see ``sasl_bootstrap_servers`` and ``sasl_env()``).
    """
    libs = kafka_libs_dir()
    java = java_binary()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    instance: KafkaInstance = _with_port_retries(
        lambda: _launch_kafka(workdir, libs, java, (heap_max, heap_initial), sasl_users)
    )
    try:
        yield instance
    finally:
        instance.process.stop()


# --------------------------------------------------------------------------
# environment for the app, and the developer CLI
# --------------------------------------------------------------------------


def app_env(
    *,
    postgres: PostgresInstance | None = None,
    redis: RedisInstance | None = None,
    sentinel_group: SentinelGroup | None = None,
    kafka: KafkaInstance | None = None,
) -> dict[str, str]:
    """The app-contract variables (docs/app-contract.md) for these services.

    With both ``redis`` and ``sentinel_group``, the Sentinel group wins.
    """
    env: dict[str, str] = {}
    if postgres is not None:
        env.update(postgres.env())
    if redis is not None:
        env.update(redis.env())
    if sentinel_group is not None:
        env.update(sentinel_group.env())
    if kafka is not None:
        env.update(kafka.env())
    return env


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _cmd_up(args: argparse.Namespace) -> int:
    wanted = set(args.only.split(",")) if args.only else {"postgres", "redis", "sentinel", "kafka"}
    unknown = wanted - {"postgres", "redis", "sentinel", "kafka"}
    if unknown:
        print(f"unknown service(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    keep = args.workdir is not None
    base = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="saga-services-"))
    base.mkdir(parents=True, exist_ok=True)
    timings: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            pg = rd = sg = kf = None
            if "postgres" in wanted:
                t0 = time.monotonic()
                pg = stack.enter_context(start_postgres(base / "postgres"))
                timings.append(f"postgres {time.monotonic() - t0:.1f}s")
            if "redis" in wanted:
                t0 = time.monotonic()
                rd = stack.enter_context(start_redis(base / "redis", args.redis_password))
                timings.append(f"redis {time.monotonic() - t0:.1f}s")
            if "sentinel" in wanted:
                t0 = time.monotonic()
                sg = stack.enter_context(
                    start_redis_sentinel_group(base / "sentinel", args.redis_password)
                )
                timings.append(f"sentinel group {time.monotonic() - t0:.1f}s")
            if "kafka" in wanted:
                t0 = time.monotonic()
                sasl_users = dict(u.split(":", 1) for u in args.kafka_sasl_user)
                kf = stack.enter_context(start_kafka(base / "kafka", sasl_users=sasl_users))
                timings.append(f"kafka {time.monotonic() - t0:.1f}s")
            print(f"# services up in {base} ({', '.join(timings)})")
            env = app_env(postgres=pg, redis=rd, kafka=kf)
            for key, value in env.items():
                print(f"export {key}={_shell_quote(value)}")
            if sg is not None:
                print("# Redis through Sentinel instead of standalone:")
                for key, value in sg.env().items():
                    print(f"# export {key}={_shell_quote(value)}")
            if kf is not None and kf.sasl_users:
                user = next(iter(kf.sasl_users))
                print("# Kafka over SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512):")
                for key, value in kf.sasl_env(user).items():
                    print(f"# export {key}={_shell_quote(value)}")
            print("# Ctrl-C or SIGTERM stops everything.", flush=True)
            while not stop.wait(1.0):
                for proc in _processes(pg, rd, sg, kf):
                    if not proc.alive():
                        print(
                            f"# {proc.name} (pid {proc.pid}) exited; stopping",
                            file=sys.stderr,
                        )
                        stop.set()
            print("# stopping ...", file=sys.stderr, flush=True)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def _processes(
    pg: PostgresInstance | None,
    rd: RedisInstance | None,
    sg: SentinelGroup | None,
    kf: KafkaInstance | None,
) -> list[ManagedProcess]:
    procs: list[ManagedProcess] = []
    if pg:
        procs.append(pg.process)
    if rd:
        procs.append(rd.process)
    if sg:
        procs += [s.process for s in sg.servers if s not in sg.killed]
        procs += [s.process for s in sg.sentinels]
    if kf:
        procs.append(kf.process)
    return procs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.integration.services",
        description="Run the integration-test services "
        "(PostgreSQL, Redis, Sentinel, Kafka) locally.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the services, print their env vars, wait for Ctrl-C")
    up.add_argument(
        "--only",
        help="comma-separated subset of postgres,redis,sentinel,kafka (default: all)",
    )
    up.add_argument("--workdir", help="keep data here instead of a temp dir removed on exit")
    up.add_argument("--redis-password", default="redis-test-password")
    up.add_argument(
        "--kafka-sasl-user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="add a SASL_PLAINTEXT listener with this user (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.command == "up" and any(":" not in u for u in args.kafka_sasl_user):
        parser.error("--kafka-sasl-user takes NAME:PASSWORD")
    if args.command == "up":
        return _cmd_up(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
