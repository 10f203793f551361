"""Per-target outputs, the move from the old shared layout, and the per-target log file, through
the real `fsql` command."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from tests.cli.test_cli import FSQL
from tests.redis_server import RedisServer

SECRET = "s3cr3t-Pa55word-" + uuid.uuid4().hex[:8]


def fsql(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSQL, "--project-dir", str(root), *args], capture_output=True,
                          text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp", **env})


def two_targets(root: Path, url: str, prod_extra: str = "") -> None:
    namespace = "test-" + uuid.uuid4().hex[:12]
    (root / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n"
        f"    dev:\n      online: {{type: redis, url: {url}, namespace: {namespace}-dev}}\n"
        f"    prod:\n      online: {{type: redis, url: {url}, namespace: {namespace}-prod}}\n"
        f"{prod_extra}")


def test_targets_keep_their_own_outputs_and_diff_within_a_target(
        example_dir: Path, redis_server: RedisServer) -> None:
    two_targets(example_dir, redis_server.url)
    dev, prod = example_dir / "target" / "dev", example_dir / "target" / "prod"
    assert fsql(example_dir, "build", "-s", "churn_training").returncode == 0
    dev_set = dev / "training_sets" / "churn_training.parquet"
    dev_files = {p: (p.read_bytes(), p.stat().st_mtime_ns)
                 for p in (dev_set, dev / "training_sets" / "churn_training.build.json",
                           dev / "run" / "build_manifest.json", dev / "manifest.json")}

    view = example_dir / "features" / "customer_product.yml"
    view.write_text(view.read_text().replace("ttl: 180d", "ttl: 90d"))
    built = fsql(example_dir, "-t", "prod", "build", "-s", "churn_training")
    assert built.returncode == 0, built.stderr

    # prod wrote its own files and left every dev output as it was
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in dev_files} == dev_files
    record = json.loads((prod / "training_sets" / "churn_training.build.json").read_text())
    assert record["target"] == "prod"
    assert (prod / "run" / "build_manifest.json").is_file()
    assert not (example_dir / "target" / "training_sets").exists()

    # each target's diff compares with its own last build
    changed = json.loads(fsql(example_dir, "diff", "--json").stdout)["build"]
    assert [(c["object"], c["what"]) for c in changed] == [("view:customer_product", "ttl")]
    assert json.loads(fsql(example_dir, "-t", "prod", "diff", "--json").stdout)["build"] == []


def test_target_path_in_the_profile(example_dir: Path, redis_server: RedisServer) -> None:
    two_targets(example_dir, redis_server.url, "      target_path: out/production\n")
    result = fsql(example_dir, "-t", "prod", "compile")
    assert result.returncode == 0, result.stderr
    out = example_dir / "out" / "production"
    assert "-> " in result.stdout
    assert (out / "manifest.json").is_file()
    assert (out / "compiled" / "training_set" / "churn_training.sql").is_file()
    assert (out / "logs" / "fsql.log").is_file()
    assert not (example_dir / "target" / "prod").exists()

    two_targets(example_dir, redis_server.url, "      target_path: [a, b]\n")
    bad = fsql(example_dir, "-t", "prod", "compile")
    assert bad.returncode == 2
    assert "target 'prod' target_path must be a folder" in bad.stderr


def old_layout(root: Path) -> dict[str, bytes]:
    """A project as earlier fsql versions left it: a build's outputs straight under target/.
    Returns the moved files' contents by their path relative to target/."""
    assert fsql(root, "build", "-s", "churn_training").returncode == 0
    new = root / "target" / "dev"
    shutil.rmtree(new / "logs")
    (new / "test_results.json").write_text("[]\n")
    for entry in list(new.iterdir()):
        entry.rename(root / "target" / entry.name)
    new.rmdir()
    return {p.relative_to(root / "target").as_posix(): p.read_bytes()
            for p in (root / "target").rglob("*")
            if p.is_file() and not p.name.endswith(".duckdb")}


def test_old_layout_is_moved_into_the_target_once(example_dir: Path) -> None:
    before = old_layout(example_dir)
    assert {"manifest.json", "test_results.json", "run/build_manifest.json",
            "training_sets/churn_training.parquet",
            "training_sets/churn_training.build.json"} <= set(before)

    first = fsql(example_dir, "ls")
    assert first.returncode == 0, first.stderr
    notes = [line for line in first.stderr.splitlines() if "moved" in line]
    assert notes == [f"fsql: moved {len(before)} files of the old shared target/ layout into "
                     f"{example_dir / 'target' / 'dev'}/ (outputs are per target now)"]
    dev = example_dir / "target" / "dev"
    assert {k: (dev / k).read_bytes() for k in before} == before  # moved whole
    for entry in ("training_sets", "run", "compiled", "manifest.json", "test_results.json"):
        assert not (example_dir / "target" / entry).exists()
    assert (example_dir / "target" / "shop.duckdb").is_file()  # the user's database stays
    assert "moved" in (dev / "logs" / "fsql.log").read_text()

    second = fsql(example_dir, "ls")
    assert second.returncode == 0 and "moved" not in second.stderr


def test_old_file_with_a_namesake_is_kept_apart(example_dir: Path) -> None:
    before = old_layout(example_dir)
    taken = example_dir / "target" / "dev" / "training_sets" / "churn_training.parquet"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"newer")

    result = fsql(example_dir, "ls")
    assert result.returncode == 0, result.stderr
    assert "1 had a namesake there and was kept apart in" in result.stderr
    assert taken.read_bytes() == b"newer"  # never overwritten
    kept = example_dir / "target" / "dev" / "legacy" / "training_sets" / "churn_training.parquet"
    assert kept.read_bytes() == before["training_sets/churn_training.parquet"]


def test_log_file_records_runs_and_never_a_secret(example_dir: Path,
                                                  redis_server: RedisServer) -> None:
    (example_dir / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev:\n"
        f"      online:\n        type: redis\n        url: {redis_server.url}\n"
        "        password: \"{{ env_var('FSQL_ENV_SECRET_REDIS') }}\"\n")
    env = {"FSQL_ENV_SECRET_REDIS": SECRET}
    assert fsql(example_dir, "compile", **env).returncode == 0
    failed = fsql(example_dir, "build", "-s", f"nothing_named_{SECRET}", **env)
    assert failed.returncode == 2

    log = (example_dir / "target" / "dev" / "logs" / "fsql.log").read_text()
    assert SECRET not in log
    starts = re.findall(r"INFO fsql: start: fsql --project-dir \S+ (.*) \(cwd", log)
    assert starts == ["compile", "build -s nothing_named_***"]
    assert re.search(r"INFO fsql: end: ok, exit code 0, \d+\.\d\ds wall", log)
    assert re.search(r"ERROR fsql: .*matches nothing", log)
    assert re.search(r"INFO fsql: end: failed, exit code 2, \d+\.\d\ds wall", log)


def test_log_file_records_what_sync_wrote(example_dir: Path, redis_server: RedisServer) -> None:
    two_targets(example_dir, redis_server.url)
    synced = fsql(example_dir, "-t", "prod", "sync", "-s", "customer_profile")
    assert synced.returncode == 0, synced.stderr
    log = (example_dir / "target" / "prod" / "logs" / "fsql.log").read_text()
    assert re.search(r"INFO fsql.project: sync customer_profile \(full\): \d+ entities, "
                     r"\d+ written, 0 unchanged, 0 stale, 0 dropped, watermark \S+", log), log
    assert not (example_dir / "target" / "dev").exists()
