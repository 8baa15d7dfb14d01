"""Real Redis topologies on loopback for the tests and benchmarks: a 3-primary cluster,
and a primary + replica watched by 3 Sentinels.

Each server is a ``redis-server`` subprocess on a free high port of 127.0.0.1 with
its files in a temporary directory, stopped (and the directory removed) by `stop`.
Nothing is persisted (``--save ""``, no AOF) except the cluster's node files, which
let a restarted cluster node keep its slots.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

__all__ = ["ClusterServers", "SentinelServers", "SingleServer", "redis_server_binary"]

_READY = b"Ready to accept connections"
_STARTUP = 20.0
"""Seconds a topology may take to come up before the fixture gives up."""


def redis_server_binary() -> str | None:
    """``redis-server`` on PATH, or None."""
    return shutil.which("redis-server")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int, *, bus: bool = False) -> list[int]:
    """``count`` free ports in 20000-29999 (and, with ``bus``, port + 10000 free too)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 30000)
        if port not in ports and _free(port) and (not bus or _free(port + 10000)):
            ports.append(port)
    return ports


def _wait_until(check: object, what: str, timeout: float = _STARTUP) -> None:
    """Poll ``check()`` until true (start-up only: servers announce no event we can await)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.ConnectionError, redis.ResponseError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _Server:
    """One redis-server subprocess."""

    def __init__(
        self, binary: str, directory: Path, port: int, arguments: list[str], ready: bytes = _READY
    ) -> None:
        self.ready = ready
        self.binary = binary
        self.directory = directory
        self.port = port
        self.arguments = arguments
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.directory / f"{self.port}.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [self.binary, *self.arguments],
                cwd=self.directory,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        _wait_until(lambda: self.ready in log.read_bytes(), f"redis-server on {self.port}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)


class _Topology:
    def __init__(self) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.binary = binary
        self.directory = Path(tempfile.mkdtemp(prefix="act-redis-"))
        self.servers: list[_Server] = []

    def _server(self, port: int, *arguments: str) -> _Server:
        server = _Server(
            self.binary,
            self.directory,
            port,
            [
                *arguments,
                *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--daemonize", "no", "--dir", str(self.directory)),
            ],
        )
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class SingleServer(_Topology):
    """One standalone redis-server, started like the cluster's nodes (for comparisons).

    Example::

        single = SingleServer()
        try:
            limiter = RedisRateLimiter(single.url, "api", 100)
        finally:
            single.stop()
    """

    def __init__(self) -> None:
        super().__init__()
        try:
            self._server(_free_ports(1)[0]).start()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[0].port}/0"


class ClusterServers(_Topology):
    """Three primaries, no replicas, every slot covered.

    Example::

        cluster = ClusterServers()
        try:
            limiter = RedisRateLimiter(cluster.url, "api", 100)
        finally:
            cluster.stop()
    """

    def __init__(self) -> None:
        super().__init__()
        try:
            for port in _free_ports(3, bus=True):
                self._server(
                    port,
                    *("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"),
                    *("--cluster-config-file", f"nodes-{port}.conf"),
                ).start()
            subprocess.run(
                [
                    shutil.which("redis-cli") or "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{server.port}" for server in self.servers),
                    *("--cluster-replicas", "0", "--cluster-yes"),
                ],
                check=True,
                capture_output=True,
                timeout=_STARTUP,
            )
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    def wait_until_ok(self) -> None:
        """Until every node reports the cluster up with all slots served."""

        def ok() -> bool:
            for server in self.servers:
                with server.client() as client:
                    if client.cluster("INFO").get("cluster_state") != "ok":  # type: ignore[no-untyped-call]
                        return False
            return True

        _wait_until(ok, "cluster_state:ok")

    def server_of(self, port: int) -> _Server:
        return next(server for server in self.servers if server.port == port)


class SentinelServers(_Topology):
    """A primary and ``replicas`` replicas under service ``"primary"``, watched by 3
    Sentinels (quorum 2, down after 1 s).

    ``min_replicas_to_write``: the data servers' ``min-replicas-to-write`` (with
    ``min-replicas-max-lag 1``), 0 for Redis's default (off).

    Example::

        group = SentinelServers()
        try:
            limiter = RedisRateLimiter(group.url, "api", 100)
            group.failover()
        finally:
            group.stop()
    """

    service = "primary"

    def __init__(self, replicas: int = 1, min_replicas_to_write: int = 0) -> None:
        super().__init__()
        try:
            ports = _free_ports(4 + replicas)
            self.data_ports = ports[: 1 + replicas]
            self.sentinel_ports = ports[1 + replicas :]
            primary = self.data_ports[0]
            safety = ("--min-replicas-to-write", str(min_replicas_to_write))
            safety += ("--min-replicas-max-lag", "1")
            self._server(primary, *safety).start()
            for port in self.data_ports[1:]:
                self._server(port, *safety, "--replicaof", "127.0.0.1", str(primary)).start()
            for port in self.sentinel_ports:
                config = self.directory / f"sentinel-{port}.conf"
                config.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {primary} 2\n"
                    f"sentinel down-after-milliseconds {self.service} 1000\n"
                    f"sentinel failover-timeout {self.service} 4000\n"
                )
                server = _Server(
                    self.binary,
                    self.directory,
                    port,
                    [str(config), "--sentinel"],
                    ready=b"+monitor master",
                )
                self.servers.append(server)
                server.start()
            self.wait_until_settled()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[0], socket_timeout=5)

    def primary_port(self) -> int:
        with self.sentinel() as client:
            _, port = client.sentinel_get_master_addr_by_name(self.service)  # type: ignore[no-untyped-call]
        return int(port)

    def wait_until_settled(self) -> None:
        """Until every Sentinel names the same primary, which sees every replica in
        sync, and every replica follows it."""
        primary = self.primary_port()
        replicas = [port for port in self.data_ports if port != primary]

        def settled() -> bool:
            for port in self.sentinel_ports:
                with redis.Redis(port=port, socket_timeout=5) as client:
                    _, named = client.sentinel_get_master_addr_by_name(self.service)  # type: ignore[no-untyped-call]
                    if int(named) != primary:
                        return False
                    known = {
                        int(entry["port"])
                        for entry in client.sentinel_slaves(self.service)  # type: ignore[no-untyped-call]
                        if "s_down" not in entry["flags"]
                    }
                    if not set(replicas) <= known:
                        return False
            for replica in replicas:
                with redis.Redis(port=replica, socket_timeout=5) as client:
                    info = client.info("replication")
                    if info.get("role") != "slave" or int(info.get("master_port", 0)) != primary:
                        return False
                    if info.get("master_link_status") != "up":
                        return False
            with redis.Redis(port=primary, socket_timeout=5) as client:
                connected = int(client.info("replication").get("connected_slaves", 0))
                return connected == len(replicas)

        _wait_until(settled, "the Sentinel group to settle", timeout=60.0)

    def failover(self) -> tuple[int, int]:
        """Force a failover (``SENTINEL FAILOVER``); return (old, new) primary ports
        once Sentinels name the new one. `wait_until_settled` waits for the rest."""
        old = self.primary_port()
        with self.sentinel() as client:
            client.execute_command("SENTINEL", "FAILOVER", self.service)
        _wait_until(lambda: self.primary_port() != old, "the failover", timeout=30.0)
        return old, self.primary_port()


def skip_or_fail_without_redis_server() -> str | None:
    """The reason to skip when redis-server is missing (raises under CI=true)."""
    if redis_server_binary() is not None:
        return None
    message = "redis-server is not on PATH"
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{message}; CI requires it (see .ci/run)")
    return message
