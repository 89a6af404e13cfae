"""PostgreSQL: a fresh cluster per call, with the app's role and database."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.integration.services.process import (
    INSTALL_HINT,
    LOOPBACK,
    POSTGRES_START_TIMEOUT,
    ManagedProcess,
    MissingBinaryError,
    _require,
    _Restartable,
    _run_checked,
    _with_port_retries,
    free_port,
    wait_until,
)
from tests.integration.services.tls import ServerCertificate


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
    # With a certificate the server speaks TLS only (hostssl); ca_file is what signed it.
    ca_file: Path | None = None

    @property
    def sslmode(self) -> str:
        """What the harness' own connections use (the app's is in env())."""
        return "disable" if self.ca_file is None else "require"

    @property
    def dsn(self) -> str:
        """libpq key/value connection string for the app's role and database."""
        return (
            f"host={self.host} port={self.port} dbname={self.dbname} "
            f"user={self.user} password={self.password} sslmode={self.sslmode}"
        )

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"

    @property
    def superuser_dsn(self) -> str:
        return (
            f"host={self.host} port={self.port} dbname=postgres "
            f"user={self.superuser} password={self.superuser_password} sslmode={self.sslmode}"
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
            **(
                {"DATABASE_SSLMODE": "disable"}
                if self.ca_file is None
                else {"DATABASE_SSLMODE": "verify-full", "DATABASE_SSLROOTCERT": str(self.ca_file)}
            ),
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


@contextlib.contextmanager
def start_postgres(
    workdir: Path,
    *,
    user: str = "saga",
    password: str = "saga-test-password",
    dbname: str = "saga",
    max_connections: int = 200,
    extra_settings: dict[str, str] | None = None,
    tls: ServerCertificate | None = None,
    ca_file: Path | None = None,
) -> Iterator[PostgresInstance]:
    """A fresh PostgreSQL cluster with role ``user`` owning database ``dbname``.

    With ``tls`` (a certificate signed by ``ca_file``) it plays a managed database: TCP
    clients must use TLS and a scram-sha-256 password (``hostssl`` lines only, so a
    plaintext client is refused by pg_hba), as the app's env() says with verify-full.

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
        tls_settings: dict[str, str] = {}
        if tls is not None:
            if ca_file is None:
                raise ValueError("tls needs the ca_file that signed it")
            owned = tls.give_to(run_as, base / "tls") if run_as is not None else tls
            tls_settings = {
                "ssl": "on",
                "ssl_cert_file": str(owned.cert),
                "ssl_key_file": str(owned.key),
                "ssl_min_protocol_version": "TLSv1.2",
            }
            # No `host` line: a client without TLS meets "no pg_hba.conf entry ... no
            # encryption", as on a managed server that forces TLS.
            hba = data_dir / "pg_hba.conf"
            hba.write_text(
                f"local all all scram-sha-256\nhostssl all all {LOOPBACK}/32 scram-sha-256\n",
                encoding="utf-8",
            )
        sslmode = "disable" if tls is None else "require"

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
            settings.update(tls_settings)
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
                f"password={superuser_password} sslmode={sslmode} connect_timeout=2"
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
                ca_file=ca_file if tls is not None else None,
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
