"""Task attempts' write counters (``TaskLock``) and their fold into the run's counters
(``OnlineStore.fold``), on a real redis-server and a real 3-master Redis Cluster: a fold moves
exactly what the task was acknowledged, refuses a task counter that lost writes, and a refused
fold leaves the run's counters as they were, so nothing publishes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import fsql
from fsql.online.base import Batch, OnlineStore, TaskLock, WriteCounts
from fsql.online.keys import INT_KEY, ViewLayout
from tests.conftest import MakeProject, online_profile


@pytest.fixture
def store(make_project: MakeProject, store_url: str) -> Iterator[OnlineStore]:
    project = make_project({"profiles.yml": online_profile("test", store_url)})
    opened = project.store()
    yield opened
    opened.close()


def batch(first: int, n: int) -> Batch:
    return Batch([str(i) for i in range(first, first + n)],
                 [b"v%d" % i for i in range(first, first + n)], None)


def counter(store: OnlineStore, key: str) -> int:
    return int(store.client.get(key) or 0)


def test_a_fold_moves_a_tasks_counts_and_refuses_lost_writes(store: OnlineStore) -> None:
    layout = ViewLayout(store.config.namespace, "v", ("id",), (INT_KEY,), ())
    with store.locked() as lock:
        tasks = [TaskLock(store, lock.value, lock.state, f":p{p}:a0") for p in range(2)]
        for number, task in enumerate(tasks):
            for start in range(0, 300, 100):
                store.write(layout, "g1", batch(number * 1000 + start, 100), WriteCounts(),
                            task, guarded=False)
        # each task counted its own writes, in its own keys (one per master on a cluster)
        assert all(sum(t.counts.values()) == 300 for t in tasks)
        assert not set(tasks[0].counts) & set(tasks[1].counts)
        assert all(counter(store, k) == n for t in tasks for k, n in t.counts.items())

        store.fold(lock, ":p0:a0", dict(tasks[0].counts))
        assert lock.acknowledged == 300
        assert all(counter(store, k) == 0 for k in tasks[0].counts)  # deleted
        assert all(counter(store, k) == n for k, n in lock.counts.items())

        # the second task's writes on one server were lost (a restore, a failover...)
        lost = next(iter(tasks[1].counts))
        store.client.set(lost, tasks[1].counts[lost] - 1)
        with pytest.raises(fsql.OnlineStoreError, match="lost writes"):
            store.fold(lock, ":p1:a0", dict(tasks[1].counts))
        # so the run cannot publish: its counters no longer match what it acknowledged
        with pytest.raises(fsql.OnlineStoreError, match="lost writes"):
            store.set_meta(layout, {"watermark": "1"}, lock)
