"""Publishing a Parquet output that is a directory (what Spark writes): renames only, the old
output gone afterwards, nothing left beside it."""

from __future__ import annotations

from pathlib import Path

from fsql.build import _remove, _rename_over


def _dir(path: Path, *names: str) -> Path:
    path.mkdir()
    for name in names:
        (path / name).write_text(name)
    return path


def test_directory_replaces_directory(tmp_path: Path) -> None:
    final = _dir(tmp_path / "ts.parquet", "part-0.parquet", "part-1.parquet")
    new = _dir(tmp_path / ".ts.parquet.1.tmp", "part-9.parquet")
    _rename_over(new, final)
    assert sorted(p.name for p in final.iterdir()) == ["part-9.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts.parquet"]


def test_directory_replaces_file_and_file_replaces_directory(tmp_path: Path) -> None:
    final = tmp_path / "ts.parquet"
    final.write_text("duckdb file")
    _rename_over(_dir(tmp_path / "new", "part-0.parquet"), final)
    assert final.is_dir()
    single = tmp_path / "single"
    single.write_text("again a file")
    _rename_over(single, final)
    assert final.read_text() == "again a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts.parquet"]


def test_first_publish_and_remove(tmp_path: Path) -> None:
    final = tmp_path / "ts.parquet"
    _rename_over(_dir(tmp_path / "new", "a"), final)
    assert (final / "a").read_text() == "a"
    _remove(final)
    _remove(tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []
