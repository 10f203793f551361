"""The embedded online store's redis-server (the example project's default profile) through
the real CLI: a sync leaves its writes in the RDB file before it exits, a read-only ``fsql get``
leaves the file untouched, and neither leaves a redis-server behind."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import run
from tests.online.test_serving_hardening import embedded_servers


def test_sync_saves_get_does_not_and_no_server_outlives_them(example_dir: Path) -> None:
    rdb = example_dir / "target" / "shop-online.db"
    synced = run("sync", "--json", cwd=example_dir)
    assert synced.returncode == 0, synced.stderr
    assert sum(v["written"] for v in json.loads(synced.stdout)["views"]) > 0
    assert embedded_servers(example_dir) == []
    saved, stat = rdb.read_bytes(), rdb.stat()
    assert b"customer_profile" in saved  # the sync's keys are on disk once it exited

    reads = [run("get", "customer_profile", "-e", "customer_id=1", "--json", cwd=example_dir)
             for _ in range(2)]
    assert [r.returncode for r in reads] == [0, 0], reads[0].stderr
    assert reads[0].stdout == reads[1].stdout  # the second get restarted from the file
    assert embedded_servers(example_dir) == []
    assert (rdb.read_bytes(), rdb.stat().st_mtime_ns) == (saved, stat.st_mtime_ns)

    again = run("sync", "--json", cwd=example_dir)  # nothing new: nothing to write
    assert again.returncode == 0, again.stderr
    assert sum(v["written"] for v in json.loads(again.stdout)["views"]) == 0
    assert embedded_servers(example_dir) == []
