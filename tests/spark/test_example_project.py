"""The repository's example project on Spark: the same feature files, only the target changes
(the ``spark`` output of the repository's profiles.yml), and every training set is identical
to DuckDB's, type for type and value for value (float sums to rounding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

import fsql
from tests.example import REPO, copy_example


def test_example_project_builds_the_same_training_sets_on_spark(spark: Any, tmp_path: Path
                                                                ) -> None:
    root = copy_example(tmp_path / "shop")
    (root / "profiles.yml").write_text((REPO / "profiles.yml").read_text())
    on_duck = fsql.Project(root, target="dev").build()
    on_spark = fsql.Project(root, target="spark").build()
    assert [t.name for t in on_spark.training_sets] == [t.name for t in on_duck.training_sets]
    assert len(on_spark.training_sets) == 2
    for built, reference in zip(on_spark.training_sets, on_duck.training_sets, strict=True):
        assert built.output.is_dir() and reference.output.is_file()
        got, wanted = pq.read_table(built.output), pq.read_table(reference.output)
        assert got.num_rows == wanted.num_rows > 1000
        assert got.schema.types == wanted.schema.types
        # float sums add the same numbers in another order: equal to rounding (README rule 9);
        # integers, strings, booleans and times exactly
        pd.testing.assert_frame_equal(got.to_pandas(), wanted.to_pandas(), check_exact=False,
                                      rtol=1e-12, atol=0)
