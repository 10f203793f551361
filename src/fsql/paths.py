"""Where fsql writes its outputs: one folder per target, and the move from the old layout.

Everything fsql itself writes for a target lives under ``target/<target name>/`` (or the
profile target's ``target_path:``), so ``fsql -t prod build`` never touches dev's results::

    target/<name>/compiled/<kind>/<name>.sql     fsql compile / build
    target/<name>/manifest.json                  fsql compile / build
    target/<name>/run/build_manifest.json        the last successful build (fsql diff)
    target/<name>/training_sets/NAME.parquet     fsql build (and NAME.build.json beside it)
    target/<name>/test_results.json              fsql test
    target/<name>/test_failures/<test>.parquet   fsql test --store-failures
    target/<name>/logs/fsql.log                  every run (see ``fsql.runlog``)

Files the user places (a training set's ``output:``, the DuckDB and online store ``path:`` of
a profile) stay where the user put them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fsql.definitions import TrainingSet

TARGET_DIR = "target"
#: what earlier versions of fsql wrote straight under ``target/``, for every target at once
LEGACY_OUTPUTS = ("compiled", "manifest.json", "run", "training_sets", "test_results.json")
LEGACY_KEPT = "legacy"  # where a moved file goes when the new location already has one


@dataclass(frozen=True, slots=True)
class TargetPaths:
    """The output layout of one target."""

    project_root: Path
    base: Path  # target/<name>, or the profile's target_path

    @classmethod
    def of(cls, project_root: Path, target: str, target_path: str | None = None
           ) -> TargetPaths:
        base = Path(target_path) if target_path else Path(TARGET_DIR, target)
        return cls(project_root, project_root / base)

    @property
    def compiled(self) -> Path:
        return self.base / "compiled"

    @property
    def manifest(self) -> Path:
        return self.base / "manifest.json"

    @property
    def build_manifest(self) -> Path:
        """The manifest of this target's last successful ``fsql build``."""
        return self.base / "run" / "build_manifest.json"

    @property
    def test_results(self) -> Path:
        return self.base / "test_results.json"

    @property
    def test_failures(self) -> Path:
        """Where ``fsql test --store-failures`` writes the failing rows of each failed test."""
        return self.base / "test_failures"

    @property
    def training_sets(self) -> Path:
        return self.base / "training_sets"

    @property
    def log_file(self) -> Path:
        return self.base / "logs" / "fsql.log"

    def training_set(self, ts: TrainingSet) -> Path:
        """Where ``fsql build`` writes ``ts``: its ``output:`` (relative to the project), else
        ``training_sets/NAME.parquet`` of this target. Its build record is beside it."""
        if ts.output:
            return self.project_root / ts.output
        return self.training_sets / f"{ts.name}.parquet"


@dataclass(frozen=True, slots=True)
class Migration:
    """What ``migrate_legacy_layout`` moved."""

    moved: int
    kept_apart: int  # moved into ``legacy/`` because the new location had a file of that name
    into: Path

    def message(self) -> str:
        text = (f"fsql: moved {self.moved} file{'s' if self.moved != 1 else ''} of the old "
                f"shared target/ layout into {self.into}/ (outputs are per target now)")
        if self.kept_apart:
            verb = "was" if self.kept_apart == 1 else "were"
            text += (f"; {self.kept_apart} had a namesake there and {verb} kept apart in "
                     f"{self.into / LEGACY_KEPT}/")
        return text


def migrate_legacy_layout(paths: TargetPaths) -> Migration | None:
    """Move the outputs of the old shared layout (``target/training_sets/``, ``target/run/``,
    ``target/manifest.json``...) into ``paths`` (the current target), once: afterwards there is
    nothing left to move. Never overwrites: a file whose new location is taken goes to
    ``<target>/legacy/`` under its old relative path. None when there was nothing to move."""
    old_root = paths.project_root / TARGET_DIR
    if not old_root.is_dir() or paths.base.resolve() == old_root.resolve():
        return None
    moved = kept = 0
    for entry in LEGACY_OUTPUTS:
        old = old_root / entry
        if not old.exists() or _contains(old, paths.base):  # a target named like an output
            continue
        files = sorted(p for p in old.rglob("*") if p.is_file()) if old.is_dir() else [old]
        for file in files:
            relative = file.relative_to(old_root)
            destination = paths.base / relative
            if destination.exists():
                destination = _free(paths.base / LEGACY_KEPT / relative)
                kept += 1
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(file, destination)  # same file system: a rename, nothing copied
            except FileNotFoundError:  # another fsql process moved it first
                continue
            moved += 1
        if old.is_dir():
            _remove_empty(old)
    return Migration(moved, kept, paths.base) if moved else None


def _contains(folder: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _free(path: Path) -> Path:
    """``path``, or ``name.1.ext``, ``name.2.ext``... whichever does not exist yet."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}.{number}{path.suffix}")
    return candidate


def _remove_empty(folder: Path) -> None:
    for directory in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        _rmdir(directory)
    _rmdir(folder)


def _rmdir(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:  # not empty: something else lives there, leave it
        pass
