"""PLACEHOLDER until h-spark-pit's branch is merged (the integrator takes theirs): Spark's
point-in-time strategy, ``UnionWindowJoin``. This stand-in refuses every training set plan
with a clear error, so compile, build of models and views, and everything else run."""

from __future__ import annotations

from sqlglot import exp

from fsql.errors import EngineError
from fsql.pit import PitPlan, PitStrategy


class UnionWindowJoin(PitStrategy):
    """Placeholder: raises; the real strategy unions spine and view rows and takes the last
    row per entity over a window."""

    def query(self, plan: PitPlan) -> exp.Select:
        raise EngineError("point-in-time joins on Spark are not available in this build "
                          "(fsql.engines.spark.pit is a placeholder); use the duckdb engine "
                          "for training sets")
