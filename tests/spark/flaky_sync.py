"""``python -m tests.spark.flaky_sync PROJECT_DIR``: ``fsql sync`` of the project (on a Spark
master that retries failed tasks, e.g. ``local[2,3]``) in which the first attempt of partition
0's task fails after writing its first batch, as an executor lost mid-task would. Prints the
sync's JSON result, plus the scopes (partition and attempt) of the task results the driver got,
as the last line. Used by test_sync_executors.py (the tests' shared session cannot retry)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsql
from fsql.engines.base import Task
from fsql.engines.spark.engine import SparkEngine


def flaky(writer: Any) -> Any:
    """``writer``, whose first attempt at partition 0 dies after its first batch."""

    def write(batches: Iterator[Any], task: Task) -> Any:
        def rows() -> Iterator[Any]:
            for i, batch in enumerate(batches):
                if (task.partition, task.attempt, i) == (0, 0, 1):
                    raise RuntimeError("executor lost (test)")
                yield batch

        return writer(rows(), task)

    return write


def main(root: str) -> None:
    seen: list[Any] = []
    original = SparkEngine.write_partitions

    def patched(self: SparkEngine, query: Any, batch_size: int, writer: Any) -> list[Any]:
        results: list[Any] = original(self, query, batch_size, flaky(writer))
        seen.extend(results)
        return results

    SparkEngine.write_partitions = patched
    result = fsql.Project(Path(root)).sync().to_json()
    result["scopes"] = sorted(task.scope for task in seen)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
