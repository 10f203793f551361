"""Reads a project directory into an immutable ``ProjectSpec``. File I/O and nothing else.

Layout (dbt-like):

    fsql_project.yml          name, profile, vars
    profiles.yml              targets (see config.py)
    models/*.sql              SQL models; models/*.yml: ``sources:`` and ``models:`` properties
    macros/*.sql              Jinja macros available to every template
    features/*.yml            ``entities:``, ``feature_view:`` (with features/<stem>.sql beside it)
                              and ``training_sets:``
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fsql.config import ProjectConfig
from fsql.definitions import (
    Entity,
    FeatureView,
    Model,
    ModelProperties,
    OnDemandView,
    Source,
    TrainingSet,
    read_list,
    sources_from_raw,
)
from fsql.errors import DefinitionError, ErrorCollector
from fsql.yamlio import Mapping, load_file, read_text

FEATURE_KEYS = ("entities", "feature_view", "training_sets", "on_demand_view")
MODEL_KEYS = ("sources", "models")


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    """Everything declared in a project, validated per file but not yet rendered."""

    config: ProjectConfig
    entities: MappingProxyType[str, Entity]
    views: MappingProxyType[str, FeatureView]
    models: MappingProxyType[str, Model]
    sources: MappingProxyType[str, Source]
    training_sets: MappingProxyType[str, TrainingSet]
    templates: MappingProxyType[str, str]  # sql path (relative) -> template text
    macros: tuple[tuple[str, str], ...]  # (relative path, text)
    #: on-demand views (``on_demand_view:``), and each one bound: inputs resolved, expressions
    #: checked and compiled (``fsql.ondemand``)
    on_demand: MappingProxyType[str, OnDemandView] = field(
        default_factory=lambda: MappingProxyType({}))
    on_demand_bound: MappingProxyType[str, Any] = field(
        default_factory=lambda: MappingProxyType({}))

    @property
    def root(self) -> Path:
        return self.config.root


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _files(root: Path, folder: str, suffixes: tuple[str, ...]) -> list[Path]:
    base = root / folder
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and p.suffix in suffixes)


class _Registry:
    """Name -> definition with duplicate detection that names both files."""

    def __init__(self, kind: str, errors: ErrorCollector) -> None:
        self.kind, self.errors = kind, errors
        self.items: dict[str, Any] = {}
        self.at: dict[str, tuple[str, int | None]] = {}  # name -> (file, line)

    def where(self, name: str) -> str:
        """``path:line`` (or just the path) of a registered name, for messages."""
        path, line = self.at[name]
        return f"{path}:{line}" if line else path

    def add(self, name: str, item: Any, path: str, line: int | None) -> None:
        if name in self.items:
            self.errors.add(DefinitionError(
                path, f"{self.kind} '{name}' is defined twice: here and in {self.where(name)}",
                line=line, hint="rename or remove one of them.",
            ))
            return
        self.items[name] = item
        self.at[name] = (path, line)


def load_project(config: ProjectConfig) -> ProjectSpec:
    """Load every definition under ``config.root``; raise all problems at once."""
    root = config.root
    errors = ErrorCollector()
    entities = _Registry("entity", errors)
    relations = _Registry("model or feature view", errors)  # one namespace in the engine
    sources = _Registry("source table", errors)
    training = _Registry("training set", errors)
    templates: dict[str, str] = {}
    model_props: dict[str, ModelProperties] = {}

    for path in _files(root, "features", (".yml", ".yaml")):
        rel = _rel(root, path)
        try:
            raw = _load_mapping(path, rel, FEATURE_KEYS)
            for ent in read_list(raw.get("entities"), "entities", rel,
                                 Entity.from_raw,
                                 raw.line_of("entities")):
                entities.add(ent.name, ent, rel, ent.line)
            for ts in read_list(raw.get("training_sets"), "training_sets", rel,
                                TrainingSet.from_raw,
                                raw.line_of("training_sets")):
                training.add(ts.name, ts, rel, ts.line)
            if "on_demand_view" in raw:
                if "feature_view" in raw:
                    raise DefinitionError(
                        rel, "a file declares either a feature_view or an on_demand_view",
                        line=raw.line_of("on_demand_view"),
                        hint="move the on-demand view to a file of its own.")
                odv = OnDemandView.from_raw(raw["on_demand_view"], rel, path.stem)
                relations.add(odv.name, odv, rel, odv.line)
            if "feature_view" in raw:
                sql = path.with_suffix(".sql")
                if not sql.is_file():
                    raise DefinitionError(
                        rel, f"feature view has no SQL file: expected {_rel(root, sql)}",
                        line=raw.line_of("feature_view"),
                        hint="put the view's SELECT in a .sql file with the same name.",
                    )
                view = FeatureView.from_raw(raw["feature_view"], rel, _rel(root, sql), path.stem)
                relations.add(view.name, view, rel, view.line)
                templates[view.sql_path] = read_text(sql, view.sql_path)
        except DefinitionError as err:
            errors.add(err)

    for path in _files(root, "models", (".yml", ".yaml")):
        rel = _rel(root, path)
        try:
            raw = _load_mapping(path, rel, MODEL_KEYS)
            for group in read_list(raw.get("sources"), "sources", rel,
                                   sources_from_raw,
                                   raw.line_of("sources")):
                for src in group:
                    sources.add(src.name, src, rel, src.line)
            for props in read_list(raw.get("models"), "models", rel,
                                   ModelProperties.from_raw,
                                   raw.line_of("models")):
                model_props[props.name] = props
        except DefinitionError as err:
            errors.add(err)

    for path in _files(root, "models", (".sql",)):
        rel = _rel(root, path)
        found = model_props.pop(path.stem, None)
        model = Model(path.stem, rel, found.description if found else "",
                      found.tags if found else (), found.tests if found else ())
        relations.add(model.name, model, rel, None)
        try:
            templates[rel] = read_text(path, rel)
        except DefinitionError as err:
            errors.add(err)
    for props in model_props.values():
        errors.add(DefinitionError(
            props.path, f"properties for model '{props.name}' but models/{props.name}.sql "
            "does not exist", line=props.line, hint="fix the name or add the SQL file.",
        ))

    for name, ts in training.items.items():
        if name in relations.items:
            errors.add(DefinitionError(
                ts.path, f"training set '{name}' has the same name as the "
                f"{'feature view' if isinstance(relations.items[name], FeatureView) else 'model'}"
                f" in {relations.where(name)}", line=ts.line,
                hint="the engine publishes both under that name; rename one."))
    for src in sources.items.values():
        if src.relation in relations.items:
            where, line = relations.at[src.relation]
            errors.add(DefinitionError(
                where, f"'{src.relation}' is the engine's name for source {src.name} "
                f"({sources.where(src.name)}); a model or view of that name would replace it",
                line=line,
                hint="rename the model or view."))
    macros = []
    for path in _files(root, "macros", (".sql",)):
        try:
            macros.append((_rel(root, path), read_text(path, _rel(root, path))))
        except DefinitionError as err:
            errors.add(err)
    errors.raise_if_any()
    views = {k: v for k, v in relations.items.items() if isinstance(v, FeatureView)}
    on_demand = {k: v for k, v in relations.items.items() if isinstance(v, OnDemandView)}
    bound: dict[str, Any] = {}
    if on_demand:
        from fsql.ondemand import bind

        for name, odv in on_demand.items():
            try:
                bound[name] = bind(odv, views)
            except DefinitionError as err:
                errors.add(err)
        errors.raise_if_any()
    return ProjectSpec(
        config=config,
        entities=MappingProxyType(entities.items),
        views=MappingProxyType(views),
        models=MappingProxyType({k: v for k, v in relations.items.items()
                                 if isinstance(v, Model)}),
        sources=MappingProxyType(sources.items),
        training_sets=MappingProxyType(training.items),
        templates=MappingProxyType(templates),
        macros=tuple(macros),
        on_demand=MappingProxyType(on_demand),
        on_demand_bound=MappingProxyType(bound),
    )


def _load_mapping(path: Path, rel: str, allowed: tuple[str, ...]) -> Mapping:
    raw = load_file(path, rel)
    if raw is None:
        empty = Mapping()
        empty.key_lines = {}
        return empty
    if not isinstance(raw, Mapping):
        raise DefinitionError(rel, "expected a mapping at the top of the file", line=1,
                              hint=f"top-level keys: {', '.join(allowed)}.")
    for key in raw:
        if key not in allowed:
            raise DefinitionError(rel, f"unknown top-level key '{key}'", line=raw.line_of(key),
                                  hint=f"allowed here: {', '.join(allowed)}.")
    return raw
