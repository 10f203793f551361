"""Jinja rendering of models and feature views: template text -> SQL text plus what it uses.

The context is dbt's: ``ref('model')``, ``source('src', 'table')``, ``var('x', default)``,
``config(materialized='view'|'table')``, ``env_var('NAME', default)`` and every macro in
``macros/*.sql``. Undefined names are errors (``StrictUndefined``), reported with the template's
file and line. Templates run in Jinja's immutable sandbox: no attribute starting with ``_``
(so no ``__globals__``, ``__class__``, ``__subclasses__``), no unsafe ``str.format``, no
mutation of lists or dicts; a template cannot reach Python or run a command. ``env_var`` refuses
``FSQL_ENV_SECRET_*`` variables: rendered SQL is written to target/ and to the online store.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2
from sqlglot import exp

from fsql.config import env_var
from fsql.errors import ConfigError, DefinitionError, ErrorCollector, did_you_mean
from fsql.loader import ProjectSpec
from fsql.sandbox import Sandbox, SecurityError
from fsql.secrets import SECRET_ENV_PREFIX, is_secret_env

MATERIALIZATIONS = ("view", "table")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered template: its SQL text and the relations it referenced."""

    sql: str
    refs: tuple[str, ...]
    sources: tuple[str, ...]
    materialized: str | None


class _Loader(jinja2.DictLoader):
    """A DictLoader whose templates carry their project path as filename, so tracebacks and
    syntax errors point at the user's file."""

    def get_source(  # type: ignore[override]  # jinja's stub says the filename is None
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        source, _, uptodate = super().get_source(environment, template)
        return source, template, uptodate


class _Problem(Exception):
    """Raised from inside a template by a context function (unknown ref, bad config...)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass
class _Recorder:
    refs: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


class Renderer:
    """Renders every template of a project with one shared Jinja environment."""

    def __init__(self, spec: ProjectSpec, dialect: str,
                 relation_of: Callable[[str], str] | None = None) -> None:
        self.spec = spec
        self.dialect = dialect
        self._recorder = _Recorder()
        self._relation_of = relation_of or (lambda name: name)
        self._names = {**{k: "model" for k in spec.models}, **{k: "view" for k in spec.views}}
        loader = _Loader({**dict(spec.macros), **spec.templates})
        self.env = Sandbox(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )
        self.env.globals.update(ref=self._ref, source=self._source, var=self._var,
                                config=self._config, env_var=self._env_var)
        self._load_macros()

    def _load_macros(self) -> None:
        errors = ErrorCollector()
        defined: dict[str, str] = {}
        for path, _ in self.spec.macros:
            try:
                module = self.env.get_template(path).make_module()
            except Exception as err:  # noqa: BLE001 - any Jinja failure becomes a file error
                errors.add(self._definition_error(path, err))
                continue
            for name in dir(module):
                macro = getattr(module, name)
                if not isinstance(macro, jinja2.runtime.Macro):
                    continue
                if name in defined:
                    errors.add(DefinitionError(
                        path, f"macro '{name}' is also defined in {defined[name]}",
                        hint="macro names are global; rename one."))
                defined[name] = path
                self.env.globals[name] = macro
        errors.raise_if_any()

    # -- context functions --------------------------------------------------------------
    def _quoted(self, name: str) -> str:
        return exp.to_table(name, dialect=self.dialect).sql(self.dialect, identify=True)

    def _ref(self, name: str) -> str:
        if name not in self._names:
            known = ", ".join(sorted(self._names)) or "none"
            raise _Problem(f"ref('{name}') names no model or feature view",
                           hint=f"{did_you_mean(name, self._names)}known models and feature "
                           f"views: {known}.")
        self._recorder.refs.append(name)
        return self._quoted(self._relation_of(name))

    def _source(self, source_name: str, table_name: str) -> str:
        key = f"{source_name}.{table_name}"
        src = self.spec.sources.get(key)
        if src is None:
            known = ", ".join(sorted(self.spec.sources)) or "none"
            raise _Problem(f"source('{source_name}', '{table_name}') is not declared",
                           hint=f"{did_you_mean(key, self.spec.sources)}declare it under "
                           f"sources: in models/*.yml; known: {known}.")
        self._recorder.sources.append(key)
        return self._quoted(src.relation)

    def _var(self, name: str, default: Any = None) -> Any:
        if name in self.spec.config.vars:
            return self.spec.config.vars[name]
        if default is None:
            raise _Problem(f"var('{name}') is not set",
                           hint="add it under vars: in fsql_project.yml or give a default.")
        return default

    def _config(self, **kwargs: Any) -> str:
        for key, value in kwargs.items():
            if key != "materialized":
                raise _Problem(f"config() got unknown option '{key}'",
                               hint="supported: materialized='view' or 'table'.")
            if value not in MATERIALIZATIONS:
                raise _Problem(f"materialized must be 'view' or 'table', got {value!r}")
        self._recorder.config.update(kwargs)
        return ""

    def _env_var(self, name: str, default: str | None = None) -> str:
        if is_secret_env(str(name)):
            raise _Problem(f"env_var('{name}') is a secret ({SECRET_ENV_PREFIX}*) and cannot be "
                           "used in SQL: rendered SQL is written to target/ and the online store",
                           hint="secrets belong in profiles.yml (e.g. the online store's "
                           "password); use a non-secret variable here.")
        try:
            return env_var(name, default)
        except ConfigError as err:
            raise _Problem(str(err)) from None

    # -- rendering -----------------------------------------------------------------------
    def render(self, path: str) -> Rendered:
        """Render the template at ``path`` (relative to the project)."""
        self._recorder = _Recorder()
        try:
            sql = self.env.get_template(path).render()
        except Exception as err:  # noqa: BLE001 - any Jinja failure becomes a file error
            raise self._definition_error(path, err) from None
        rec = self._recorder
        return Rendered(sql, tuple(dict.fromkeys(rec.refs)), tuple(dict.fromkeys(rec.sources)),
                        rec.config.get("materialized"))

    def _definition_error(self, path: str, err: Exception) -> DefinitionError:
        """Locate ``err`` in the user's template or macro file and explain it."""
        where, line = path, None
        if isinstance(err, jinja2.TemplateSyntaxError):
            where, line = err.name or path, err.lineno
        else:
            for frame in traceback.extract_tb(err.__traceback__):
                if frame.filename in self.env.loader.mapping:  # type: ignore[union-attr]
                    where, line = frame.filename, frame.lineno
        if isinstance(err, _Problem):
            return DefinitionError(where, err.message, line=line, hint=err.hint)
        if isinstance(err, jinja2.UndefinedError):
            return DefinitionError(
                where, f"Jinja: {err.message}", line=line,
                hint="define the macro in macros/*.sql, or the variable under vars: in "
                "fsql_project.yml; check the spelling.")
        if isinstance(err, jinja2.TemplateSyntaxError):
            return DefinitionError(where, f"Jinja syntax error: {err.message}", line=line)
        if isinstance(err, SecurityError):
            return DefinitionError(
                where, f"unsafe template operation: {err}", line=line,
                hint="templates may call ref, source, var, config, env_var and macros, but not "
                "reach Python internals (attributes starting with '_', str.format on objects).")
        return DefinitionError(where, f"could not render template: {type(err).__name__}: {err}",
                               line=line)
