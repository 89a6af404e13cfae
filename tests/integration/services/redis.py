"""Redis: a standalone server (optionally a replica), and a Sentinel group
(master, replicas, Sentinels) for failover tests."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.integration.services.process import (
    LOOPBACK,
    REDIS_START_TIMEOUT,
    SENTINEL_START_TIMEOUT,
    ManagedProcess,
    ServiceError,
    _PortInUse,
    _require,
    _Restartable,
    _tail,
    _with_port_retries,
    free_port,
    wait_until,
)
from tests.integration.services.tls import ServerCertificate


@dataclasses.dataclass
class RedisInstance(_Restartable):
    host: str
    port: int
    password: str
    workdir: Path
    process: ManagedProcess = dataclasses.field(repr=False)
    replica_of: tuple[str, int] | None = None
    startup_seconds: float = 0.0
    # With a CA the server speaks TLS only (tls-port, port 0); acl_users are its ACL users.
    ca_file: Path | None = None
    acl_users: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client for this instance (caller closes it)."""
        import redis

        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            **_tls_kwargs(self.ca_file),
            **kwargs,
        )

    def _ready(self) -> bool:
        _redis_ping(self.host, self.port, self.password, ca_file=self.ca_file)
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

    def app_env(self, username: str) -> dict[str, str]:
        """App-contract variables as ACL user ``username`` (TLS when started with it)."""
        env = {**self.env(), "REDIS_USERNAME": username, "REDIS_PASSWORD": self.acl_users[username]}
        if self.ca_file is not None:
            env |= {"REDIS_TLS": "true", "REDIS_TLS_CA_FILE": str(self.ca_file)}
        return env


# The app's user in the chart's bundled Redis (redis.auth.acl.clientUsername).
APP_REDIS_USER = "saga"


@functools.cache
def app_acl_rules() -> str:
    """What the chart's bundled Redis lets the app's user do (its keys, no administration),
    read from the chart itself so that the app is tested under the rules it is deployed with."""
    from tests.unit.helm import one, render

    objects = render(values={"jobs.enabled": True})
    script = one(objects, "ConfigMap", "saga-redis")["data"]["start-redis.sh"]
    found = re.search(rf'"user {APP_REDIS_USER} on >\$REDIS_CLIENT_PASSWORD ([^"]+)"', script)
    if found is None:
        raise ServiceError(f"the chart's start-redis.sh defines no app user {APP_REDIS_USER!r}")
    return found.group(1)


def _tls_kwargs(ca_file: Path | None) -> dict[str, Any]:
    if ca_file is None:
        return {}
    return {"ssl": True, "ssl_ca_certs": str(ca_file)}


def _no_retry() -> Any:
    """redis-py retries (with backoff) by default; readiness polling does its own."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _redis_ping(
    host: str,
    port: int,
    password: str | None,
    timeout: float = 1.0,
    ca_file: Path | None = None,
) -> dict[str, Any]:
    import redis

    client = redis.Redis(
        host=host,
        port=port,
        password=password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=_no_retry(),
        **_tls_kwargs(ca_file),
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


def _wait_started(
    proc: ManagedProcess, ready: Callable[[], bool], timeout: float, what: str, log: Path
) -> None:
    """Waits for `ready`; a process that lost its port (Redis and Sentinel say so in their own
    log file, not on stdout) is stopped and raises _PortInUse, so the caller can retry."""
    try:
        wait_until(ready, timeout=timeout, what=what, process=proc)
    except ServiceError as exc:
        proc.stop()
        if "Address already in use" in _tail(log):
            raise _PortInUse(str(exc)) from exc
        raise


def _launch_redis(
    workdir: Path,
    password: str,
    replica_of: tuple[str, int] | None,
    name: str,
    port: int | None = None,
    tls: ServerCertificate | None = None,
    ca_file: Path | None = None,
    acl_users: dict[str, str] | None = None,
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
    if tls is not None:
        if ca_file is None:
            raise ValueError("tls needs the ca_file that signed it")
        # TLS only, as a managed Redis with in-transit encryption: no plaintext port.
        lines[1] = "port 0"
        lines += [
            f"tls-port {port}",
            f'tls-cert-file "{tls.cert}"',
            f'tls-key-file "{tls.key}"',
            f'tls-ca-cert-file "{ca_file}"',
            # Clients prove who they are with a password, not a certificate.
            "tls-auth-clients no",
        ]
    for user, user_password in (acl_users or {}).items():
        lines.append(f"user {user} on >{user_password} {app_acl_rules()}")
    if replica_of is not None:
        lines.append(f"replicaof {replica_of[0]} {replica_of[1]}")
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = ManagedProcess(
        name, [redis_server, str(conf)], workdir / "redis.stdout.log", cwd=workdir
    )
    started = time.monotonic()

    def ready() -> bool:
        info = _redis_ping(LOOPBACK, port, password, ca_file=ca_file if tls else None)
        if replica_of is None:
            return True
        return info.get("master_link_status") == "up"

    _wait_started(
        proc,
        ready,
        REDIS_START_TIMEOUT,
        f"{name} on {LOOPBACK}:{port}" + (" linked to its master" if replica_of else ""),
        workdir / "redis.log",
    )
    return RedisInstance(
        host=LOOPBACK,
        port=port,
        password=password,
        workdir=workdir,
        process=proc,
        replica_of=replica_of,
        startup_seconds=time.monotonic() - started,
        ca_file=ca_file if tls else None,
        acl_users=dict(acl_users or {}),
    )


@contextlib.contextmanager
def start_redis(
    workdir: Path,
    password: str = "redis-test-password",
    replica_of: tuple[str, int] | RedisInstance | None = None,
    tls: ServerCertificate | None = None,
    ca_file: Path | None = None,
    acl_users: dict[str, str] | None = None,
) -> Iterator[RedisInstance]:
    """A redis-server with ``requirepass`` (and ``replicaof`` when given).

    With ``tls`` (a certificate signed by ``ca_file``) it listens with TLS only, as a
    managed Redis with in-transit encryption; ``acl_users`` ({name: password}) get
    the chart's app rules (see ``app_env(name)``). ``password`` stays the default user's.

    For a replica, returns once its link to the master is up.
    """
    if isinstance(replica_of, RedisInstance):
        replica_of = (replica_of.host, replica_of.port)
    workdir = Path(workdir)
    instance: RedisInstance = _with_port_retries(
        lambda: _launch_redis(
            workdir, password, replica_of, "redis", tls=tls, ca_file=ca_file, acl_users=acl_users
        )
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

    def answers() -> bool:
        _redis_ping(LOOPBACK, port, sentinel_password)
        return True

    # Waited on one by one so that a port taken between free_port() and the bind is seen
    # and retried on another port.
    _wait_started(
        proc, answers, SENTINEL_START_TIMEOUT, f"sentinel-{index} on {LOOPBACK}:{port}",
        sdir / "sentinel.log",
    )  # fmt: skip
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
                _with_port_retries(
                    functools.partial(
                        _launch_sentinel,
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
