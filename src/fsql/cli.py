"""The ``fsql`` command line: a thin skin over ``fsql.Project``.

Exit codes (for cron and CI):

    0  success
    1  an fsql error not covered below
    2  bad input: project definitions, profiles, command-line arguments or requests
    3  the engine failed while running valid SQL
    4  the online store is unreachable or failed (or holds data of another definition)
    5  a check failed: data tests, a freshness SLA, online/offline skew
    70 internal error: a bug in fsql (shown with its traceback)
    75 another `fsql sync` holds the lock, or another fsql process holds the DuckDB file:
       nothing was done, try again later
    128+N  stopped by signal N (129 SIGHUP, 130 SIGINT, 143 SIGTERM) after cleaning up
"""

from __future__ import annotations

import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fsql import output
from fsql.errors import FsqlError, RequestError
from fsql.secrets import redact

if TYPE_CHECKING:
    from types import FrameType

    from fsql.project import Project

INTERNAL_ERROR = 70


app = typer.Typer(
    name="fsql",
    rich_markup_mode="markdown",
    help="SQL-first feature platform: declare features once in SQL + YAML, build "
    "point-in-time-correct training sets on DuckDB.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Options shared by every command (set by the app callback)."""

    project_dir: Path
    profiles_dir: Path | None
    target: str | None
    debug: bool
    vars: dict[str, Any] | None = None

    def project(self) -> Project:
        from fsql import runlog
        from fsql.project import Project

        project = Project(self.project_dir, target=self.target, profiles_dir=self.profiles_dir,
                          vars=self.vars)
        runlog.attach(project.target.paths.log_file)
        return project


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SelectOption = Annotated[list[str] | None, typer.Option(
    "--select", "-s", metavar="SELECTOR",
    help="Node selector: NAME, +NAME / 2+NAME (with all / two levels upstream), NAME+ / "
    "NAME+1 (downstream), tag:X, view:X, model:X, training_set:X, state:modified (changed "
    "since this target's last build). A comma intersects "
    "(tag:a,tag:b); spaces or repeats unite. Default: everything.")]
ExcludeOption = Annotated[list[str] | None, typer.Option(
    "--exclude", metavar="SELECTOR",
    help="Leave out the nodes these selectors match (same syntax as --select).")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        output.stdout.print(f"fsql {version('fsql')}")
        raise typer.Exit()


def _vars(text: str | None) -> dict[str, Any] | None:
    """``--vars '{k: v}'``: a YAML (or JSON) mapping with string keys."""
    if text is None:
        return None
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        detail = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RequestError(f"--vars is not valid YAML/JSON ({detail}); "
                           "write a mapping such as --vars '{label_horizon_days: 14}'") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise RequestError(f"--vars must be a mapping of names to values, such as "
                           f"--vars '{{label_horizon_days: 14}}', not {text!r}")
    return value


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.find_object(Settings)
    assert settings is not None, "the app callback always sets Settings"
    return settings


@app.callback()
def _root(
    ctx: typer.Context,
    project_dir: Annotated[Path, typer.Option(
        "--project-dir", envvar="FSQL_PROJECT_DIR", metavar="DIR",
        help="Project directory (holding fsql_project.yml).")] = Path("."),
    profiles_dir: Annotated[Path | None, typer.Option(
        "--profiles-dir", envvar="FSQL_PROFILES_DIR", metavar="DIR",
        help="Directory of profiles.yml (default: the project directory).")] = None,
    target: Annotated[str | None, typer.Option(
        "--target", "-t", envvar="FSQL_TARGET", metavar="TARGET",
        help="Target in profiles.yml (default: the profile's 'target').")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    variables: Annotated[str | None, typer.Option(
        "--vars", metavar="YAML", help="YAML/JSON mapping replacing vars of fsql_project.yml, e.g. "
        "'{label_horizon_days: 14}'.")] = None,
    _show_version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the fsql version and exit.")] = False,
) -> None:
    ctx.obj = Settings(project_dir, profiles_dir, target, debug, _vars(variables))
    # serve replaces these while its HTTP server runs (graceful stop, SIGHUP reloads); they
    # cover its start-up, so a signal then still stops the embedded redis-server it started
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)


class Terminated(BaseException):
    """SIGTERM, SIGHUP or SIGINT asked fsql to stop. Raised in the main thread (not an
    ``Exception``, so nothing on the way mistakes it for an error to handle) so that every
    ``finally`` runs: the sync lock is released, temporary files are removed, transactions
    roll back. The process then exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


_stopped_by: list[int] = []  # the stop signal received, if any


def _stop(signum: int, frame: FrameType | None) -> None:
    for other in STOP_SIGNALS:  # a second signal must not interrupt the clean-up
        signal.signal(other, signal.SIG_IGN)
    _stopped_by.append(signum)
    raise Terminated(signum)


@app.command()
def init(directory: Annotated[Path, typer.Argument(
    help="Where to create the project (new or empty; default: here).")] = Path(".")) -> None:
    """Create a small working project (card payments: entities, sources, a model, two feature
    views, a training set, dev and prod targets, sample data) that fsql build builds at once."""
    from fsql.scaffold import init as scaffold

    made = scaffold(directory)
    for path in made.files:
        output.stdout.print(f"  created {path.relative_to(made.root)}", markup=False)
    where = "" if directory == Path(".") else f"cd {directory} && "
    output.stdout.print(f"Created project '{made.name}' in {made.root}. Next: {where}fsql build",
                        markup=False)


@app.command()
def compile(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Validate the whole project and render all SQL to target/TARGET/ (reads no data).

    Writes target/TARGET/compiled/KIND/NAME.sql and target/TARGET/manifest.json, like dbt
    (or under the profile target's target_path).
    """
    from fsql.compile import manifest

    opened = _settings(ctx).project()
    project = opened.compile(write=True)
    if as_json:
        output.print_json(manifest(project))
        return
    kinds: dict[str, int] = {}
    for node in project.nodes.values():
        kinds[node.kind] = kinds.get(node.kind, 0) + 1
    kinds["training_set"] = len(project.training_sets)
    summary = ", ".join(output.plural(n, k.replace("_", " ")) for k, n in kinds.items())
    output.stdout.print(f"Compiled {summary} -> {output.shown_path(opened.paths.base)}")


@app.command()
def build(ctx: typer.Context, select: SelectOption = None, exclude: ExcludeOption = None,
          as_json: JsonOption = False,
          no_test: Annotated[bool, typer.Option(
              "--no-test", help="Skip the data tests that normally gate publishing.")] = False,
          ) -> None:
    """Materialize models and feature views, then write point-in-time training sets.

    Each training set becomes a Parquet file (default
    target/TARGET/training_sets/NAME.parquet), a build record beside it (NAME.build.json:
    compiled SQL, definition hashes, row counts, time range) and a DuckDB view over the file.
    Selected nodes are always built with everything upstream of them. The data tests of
    everything built must pass first (exit 5 otherwise). A failed build leaves previous
    outputs untouched.
    """
    project = _settings(ctx).project()
    with output.step_bar(enabled=not as_json) as bar:
        result = project.build(select or [], progress=bar, test=not no_test,
                               exclude=exclude or [])
    for warning in result.warnings:
        output.stderr.print(f"Warning: {warning}", markup=False)
    if as_json:
        output.print_json({**result.to_json(), **output.wall_time_json()})
        return
    output.table("Training sets", ["name", "rows", "columns", "seconds", "output"],
                 [(t.name, f"{t.rows:,}", t.columns, f"{t.seconds:.2f}",
                   output.shown_path(t.output))
                  for t in result.training_sets])
    output.stdout.print(f"Built {output.plural(len(result.relations), 'relation')} and "
                        f"{output.plural(len(result.training_sets), 'training set')} in "
                        f"{output.wall_time()}")


@app.command()
def test(ctx: typer.Context, select: SelectOption = None, exclude: ExcludeOption = None,
         as_json: JsonOption = False,
         store_failures: Annotated[bool, typer.Option(
             "--store-failures", help="Write the failing rows of each failed test to "
             "target/TARGET/test_failures/TEST.parquet (replaced on each run).")] = False,
         ) -> None:
    """Run the data tests declared in the YAML (great-expectations); exit 5 on any failure.

    A failure shows the keys (entity join keys, event time) of up to 5 failing rows and their
    count. Tests with `severity: warn` print WARN and do not fail. Results are also written to
    target/TARGET/test_results.json; with -s only the tested objects' results are replaced
    there.
    """
    from fsql.errors import CheckFailed

    with output.step_bar(enabled=not as_json) as bar:
        results = _settings(ctx).project().test(select or [], exclude or [], progress=bar,
                                                store_failures=store_failures)
    if as_json:
        output.print_json([r.to_json() for r in results])
    else:
        output.table("Data tests", ["status", "test", "object", "failing", "failing keys",
                                    "examples / message"],
                     [(r.status.upper(), r.test, r.object, r.failing, r.keys_text(),
                       r.message or ", ".join(map(repr, r.examples))) for r in results])
        for r in results:
            if r.failures_file:
                output.stdout.print(f"Failing rows of {r.test} on {r.object}: "
                                    f"{output.shown_path(Path(r.failures_file))}",
                                    markup=False)
    bad = [r for r in results if r.blocking]
    warned = sum(r.status == "warn" for r in results)
    if bad:
        raise CheckFailed(f"{len(bad)} of {output.plural(len(results), 'data test')} did "
                          "not pass")
    if not as_json:
        every = "All " if len(results) > 1 and not warned else ""
        passed = output.plural(len(results) - warned, "data test")
        output.stdout.print((f"{passed} passed, {warned} warned" if warned
                             else f"{every}{passed} passed")
                            + f" in {output.wall_time()}")


@app.command()
def freshness(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Check each view's freshness SLA (YAML `freshness: 26h`); exit 5 on a breach.

    Data age is now minus the newest event time in the view; for online views the last
    successful sync must also be younger than the SLA.
    """
    from fsql.errors import CheckFailed

    results = _settings(ctx).project().freshness()
    if as_json:
        output.print_json([r.to_json() for r in results])
    else:
        output.table("Freshness", ["view", "sla", "newest event", "data age", "last sync",
                                   "sync age", "future-dated", "status"],
                     [(r.view, output.duration(r.sla_seconds), r.newest_event,
                       output.duration(r.data_age), r.last_sync, output.duration(r.sync_age),
                       f"{r.future_dated:,}",
                       ("BREACH: " + r.reason) if r.breached else "ok") for r in results])
    breached = [r.view for r in results if r.breached]
    if breached:
        raise CheckFailed(f"freshness SLA breached: {', '.join(breached)}")


@app.command()
def verify(
    ctx: typer.Context,
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    sample: Annotated[int, typer.Option(metavar="N",
                                        help="Entities to check per online view.")] = 1000,
    check_all: Annotated[bool, typer.Option("--all", help="Check every entity.")] = False,
    seed: Annotated[int | None, typer.Option(
        metavar="N",
        help="Seed of the sample, to repeat an earlier run's (each run prints its seed; "
        "default: a new one each run).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check training-serving skew: online values vs the training path, exit 5 on mismatch.

    For each online view, reads sampled entities from the online store and recomputes their
    values with the point-in-time join as of the view's last sync (rows known at its
    watermark). Floats compare with a relative tolerance of 1e-9; types must match exactly;
    the stored event (and created) timestamps must equal the training path's. A value that
    cannot be decoded counts as a mismatch. A training set built with another definition of an
    online view than the one online fails the check too (rebuild and retrain).
    """
    from fsql.errors import CheckFailed

    checks = _settings(ctx).project().verify(select or [], None if check_all else sample, seed,
                                             exclude or [])
    if as_json:
        output.print_json([c.to_json() for c in checks])
    else:
        output.table("Online vs offline", ["view", "as of", "seed", "entities", "matched",
                                           "mismatched", "expired since sync"],
                     [(c.view, c.as_of, "all" if c.seed is None else c.seed, c.entities,
                       c.matched, c.mismatched, c.expired_since_sync) for c in checks])
        for c in checks:
            for e in c.examples:
                output.stdout.print(f"  {c.view} {e['entity']} {e['feature']}: online "
                                    f"{e['online']!r} != expected {e['expected']!r}",
                                    markup=False)
            for ts in c.stale_training_sets:
                output.stdout.print(f"  training set {ts} was built with another definition "
                                    f"of {c.view} than the online one: rebuild and retrain",
                                    markup=False)
    bad = [c.view for c in checks if c.mismatched]
    stale = sorted({f"{ts} ({c.view})" for c in checks for ts in c.stale_training_sets})
    if bad or stale:
        raise CheckFailed("; ".join(
            ([f"online values differ from the training path in: {', '.join(bad)}"] if bad
             else []) + ([f"training sets built with other definitions than the online "
                          f"ones: {', '.join(stale)}"] if stale else [])))


@app.command()
def diff(
    ctx: typer.Context,
    fail_on_breaking: Annotated[bool, typer.Option(
        "--fail-on-breaking", help="Exit 5 when a change is breaking (for CI).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Compare the definitions with the last build and the last sync of each online view.

    Lists added, removed and changed views, features, models and training sets (SQL, type,
    ttl, key changes). Breaking changes — a removed or retyped feature still used, changed
    keys, a feature whose computation changed (sqlglot column lineage through upstream
    models) — are flagged with the training sets and online views they affect.
    """
    from fsql.errors import CheckFailed

    result = _settings(ctx).project().diff()
    if as_json:
        output.print_json({k: [c.to_json() for c in v] for k, v in result.items()})
    else:
        if not result:
            output.stdout.print("Nothing to compare with yet: run fsql build or fsql sync.")
        for baseline, changes in result.items():
            title = "Since the last build" if baseline == "build" else "Since the last sync"
            if not changes:
                output.stdout.print(f"{title}: no changes")
                continue
            output.table(title, ["change", "object", "what", "detail", "breaking", "affects"],
                         [(c.kind, c.object, c.what, c.detail, "BREAKING" if c.breaking
                           else "", ", ".join(c.affects)) for c in changes])
    broken = [c for v in result.values() for c in v if c.breaking]
    if broken and fail_on_breaking:
        raise CheckFailed(output.plural(len(broken), "breaking change"))


@app.command()
def sync(
    ctx: typer.Context,
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    full_refresh: Annotated[bool, typer.Option(
        "--full-refresh", help="Rewrite each view's online data from scratch (atomically).")]
    = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Compute what would be written; write nothing.")] = False,
    no_test: Annotated[bool, typer.Option(
        "--no-test", help="Skip the views' data tests that normally gate the sync.")] = False,
    allow_drop: Annotated[bool, typer.Option(
        "--allow-drop", help="Let a full refresh drop more than max_drop of a view's "
        "entities.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the latest row per entity of every online feature view to the online store.

    Incremental by default (only entities with rows newer than the stored watermark), safe to
    run from cron: a lock keeps runs from overlapping (exit 75 when held), an interrupted run
    loses nothing, a late row never replaces a newer value, and a run whose writes the store
    lost (restore, failover, flush, eviction) fails with exit 4 instead of publishing them.
    Data tests gate the sync (exit 5), and so does a full refresh dropping too many entities.
    """
    project = _settings(ctx).project()
    with output.step_bar(enabled=not as_json) as bar:
        result = project.sync(select or [], full_refresh=full_refresh, dry_run=dry_run,
                              progress=bar, test=not no_test, allow_drop=allow_drop,
                              warn=lambda text: output.stderr.print(f"Warning: {text}",
                                                                    markup=False),
                              exclude=exclude or [])
    if as_json:
        output.print_json({**result.to_json(), **output.wall_time_json()})
        return
    output.table(f"Sync as of {result.as_of}" + (" (dry run)" if dry_run else ""),
                 ["view", "mode", "entities", "written", "unchanged", "stale", "dropped",
                  "watermark", "seconds"],
                 [(v.view, v.mode, f"{v.entities:,}", f"{v.written:,}", f"{v.unchanged:,}",
                   f"{v.stale:,}", f"{v.dropped:,}", v.watermark, f"{v.seconds:.2f}")
                  for v in result.views])
    for v in result.views:
        if v.full_reason and v.full_reason != "--full-refresh":
            output.stdout.print(f"  {v.view}: full refresh because {v.full_reason}")
        if v.future_dated:
            output.stdout.print(f"  {v.view}: {v.future_dated:,} future-dated rows (time after "
                                "as_of): synced, but they never move the watermark")
    output.stdout.print(f"{'Would sync' if dry_run else 'Synced'} "
                        f"{output.plural(len(result.views), 'view')} in "
                        f"{output.wall_time()}")


@app.command()
def get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(
        metavar="NAME",
        help="A training set (feature service), a view, or comma-separated view.feature names.")],
    entity: Annotated[list[str], typer.Option(
        "--entity", "-e", metavar="KEY=VALUE",
        help="One entity as KEY=VALUE[,KEY=VALUE]; quote a value that "
        'holds a comma: name="a,b". Repeat for more entities.')],
    as_json: JsonOption = False,
    request: Annotated[list[str] | None, typer.Option(
        "--request", "-r", metavar="FIELD=VALUE",
        help="A request field of on-demand features as FIELD=VALUE (the "
        "value is parsed by the field's type); repeat it once per entity for several.")] = None,
) -> None:
    """Read features for some entities from the online store. For a training set, warns
    (DEFINITION_CHANGED) when an online view's definition differs from the one it was built
    with."""
    from fsql.serve import DEFINITION_CHANGED

    project = _settings(ctx).project()
    columns: dict[str, list[str]] = {}
    for i, item in enumerate(entity):
        for key, value in entity_pairs(item):
            columns.setdefault(key, [""] * i).append(value)
    request_data: dict[str, list[str]] = {}
    for item in request or []:
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            raise RequestError(f"--request takes FIELD=VALUE, not {item!r}")
        request_data.setdefault(field.strip(), []).append(value)
    service = project.online_service()  # loads the definitions (once)
    try:
        features: str | list[str] = (name if name in service.spec.training_sets
                                     else name.split(","))
        result = service.get(features, columns, from_text=True,
                             request_data=request_data or None)
    finally:
        service.store.close()
    if result.definition_changed:
        output.stderr.print(f"warning: {DEFINITION_CHANGED}: training set '{name}' was built "
                            "with other definitions of: " + ", ".join(result.definition_changed)
                            + " (the online values may be computed differently; rebuild and "
                            "retrain)")
    if as_json:
        output.print_json(result.to_json())
        return
    names = [*result.entities, *result.values]
    rows = [[*[result.entities[k][i] for k in result.entities],
             *[_cell(result.values[f][i], result.statuses[f][i]) for f in result.values]]
            for i in range(len(entity))]
    output.table(None, names, rows)


#: one KEY=VALUE pair of ``--entity`` and the comma after it; a value in double quotes may
#: hold commas, equals signs and "" (one literal quote), as in CSV
_PAIR = re.compile(r'([^=,"]+)=(?:"((?:[^"]|"")*)"|([^,"]*))(,|$)')


def entity_pairs(item: str) -> list[tuple[str, str]]:
    """``customer_id=1,name="a,b"`` -> ``[("customer_id", "1"), ("name", "a,b")]``."""
    pairs, position = [], 0
    while True:
        match = _PAIR.match(item, position)
        if match is None:
            raise RequestError(
                f"--entity '{item}': cannot read it from character {position + 1}; write "
                'KEY=VALUE[,KEY=VALUE], quoting a value that holds a comma: name="a,b" '
                '(a quote inside quotes is written "")')
        key, quoted, plain, comma = match.groups()
        pairs.append((key, plain if quoted is None else quoted.replace('""', '"')))
        position = match.end()
        if not comma:
            return pairs


def _cell(value: Any, status: str) -> Any:
    return value if status == "PRESENT" else f"({status.lower()})"


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
    max_entities: Annotated[int, typer.Option(
        metavar="N", help="Largest number of entities one request may ask for.", min=1)] = 1000,
    max_features: Annotated[int, typer.Option(
        metavar="N", help="Largest number of feature names one request may list.", min=1)]
    = 1000,
    max_body_bytes: Annotated[int, typer.Option(
        metavar="BYTES", help="Largest request body, in bytes (larger: 413).", min=1)]
    = 1 << 20,
    read_timeout: Annotated[float, typer.Option(
        metavar="SECONDS", help="Seconds a request body may take to arrive (slower: 408).",
        min=0.01)] = 10.0,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Refuse (409) a training set whose online views' definitions differ "
        "from the ones it was built with.")] = False,
    workers: Annotated[int, typer.Option(
        metavar="N", help="Worker processes answering on the port (one per core to use).",
        min=1)] = 1,
) -> None:
    """Serve online features over HTTP: POST /get-online-features, GET /health, /metrics
    (Prometheus), /openapi.json. Definitions are reloaded when project files change and on
    SIGHUP; SIGTERM/SIGINT stop (every worker, gracefully)."""
    import contextlib

    from fsql.workers import shared_metrics_dir

    with shared_metrics_dir() if workers > 1 else contextlib.nullcontext():
        _serve(ctx, host, port, max_entities, max_features, max_body_bytes, read_timeout,
               strict, workers)


def _serve(ctx: typer.Context, host: str, port: int, max_entities: int, max_features: int,
           max_body_bytes: int, read_timeout: float, strict: bool, workers: int) -> None:
    from fsql.http import Limits, Reloader, create_app, run_server  # after the metrics dir

    project = _settings(ctx).project()
    service = project.online_service(max_entities=max_entities, max_features=max_features)
    reloader = Reloader(project.root, project.load)
    output.stderr.print(f"fsql serving {service.store.where} on http://{host}:{port}"
                        + (f" ({workers} workers)" if workers > 1 else ""))
    try:
        run_server(create_app(service, Limits(max_body_bytes, read_timeout), reloader, strict),
                   host=host, port=port, on_hangup=reloader.request,
                   headers_timeout=read_timeout, workers=workers)
    finally:
        service.close()


@app.command("ls")
def list_(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(
        "--kind", "-k", metavar="KIND",
        help="Only one kind: views, on_demand_views, features, entities, "
        "training_sets, models, sources.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List feature views, on-demand views, features, entities, training sets, models and
    sources."""
    from fsql.listing import DURATIONS, listing

    sections = listing(_settings(ctx).project().load(), kind)
    if as_json:
        output.print_json(sections)
        return
    for title, rows in sections.items():
        if rows:
            output.table(title.replace("_", " "), list(rows[0]),
                         [[output.duration(v) if k in DURATIONS else v for k, v in r.items()]
                          for r in rows])


@app.command()
def show(ctx: typer.Context, name: Annotated[str, typer.Argument(
    metavar="NAME", help="A feature view, on-demand view, model, training set, source "
    "(src.table), VIEW.FEATURE or entity:NAME.")],
         limit: Annotated[int | None, typer.Option(
             "--limit", "-n", min=1, metavar="N", help="Preview this many rows of a model, "
             "view, source or training set instead (computed now; nothing is written).")]
         = None,
         as_json: JsonOption = False) -> None:
    """Show one definition, its compiled SQL and what uses it; or preview rows (--limit)."""
    from rich.syntax import Syntax

    from fsql.listing import describe, describe_uncompiled

    project = _settings(ctx).project()
    if limit is not None:
        rows = project.preview(name, limit)
        if as_json:
            output.print_json(rows)
        else:
            output.table(f"{name} (first {limit} rows)", rows["columns"],
                         [list(r.values()) for r in rows["rows"]])
        return
    info = (describe_uncompiled(project.load(), name)
            or describe(project.compile(write=False), name))
    if as_json:
        output.print_json(info)
        return
    sql = info.pop("compiled_sql", None)
    output.table(f"{info['kind']} {info['name']}", ["property", "value"],
                 [(k, _plain(v)) for k, v in info.items()])
    if sql is not None:
        output.stdout.print(Syntax(sql, "sql", word_wrap=True))


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k}: {v}" for k, v in value.items())
    return output.human(value)


def main() -> None:
    """Entry point: every run is logged to the target's log file (``fsql.runlog``)."""
    from fsql import runlog

    runlog.begin(sys.argv[1:])
    try:
        _main()
    except SystemExit as done:  # every way out: click and the boundary below both exit
        runlog.finish(done.code, done.__context__, traceback=done.code == INTERNAL_ERROR)
        raise
    except BaseException as err:  # --debug re-raises
        runlog.finish(1, err, traceback=True)
        raise


def _main() -> None:
    """The one error boundary of the CLI."""
    debug = "--debug" in sys.argv
    try:
        app()  # standalone: usage errors exit 2 with typer's own message
    except (Terminated, Exception) as err:
        if _stopped_by:  # whatever it became on the way out (DuckDB: "Query interrupted")
            name = signal.Signals(_stopped_by[0]).name
            output.error(f"interrupted by {name}; the run was stopped cleanly and published "
                         "nothing partial (run it again)")
            sys.exit(128 + _stopped_by[0])
        if not isinstance(err, FsqlError):
            import traceback

            sys.stderr.write(redact(traceback.format_exc()))
            output.error("internal error in fsql (a bug): please report it with the traceback "
                         "above")
            sys.exit(INTERNAL_ERROR)
        if debug:
            raise
        output.error(str(err))
        sys.exit(err.exit_code)
