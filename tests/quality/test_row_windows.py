"""The trailing-window guard (issue 8, failure 1): an online latest-row view whose feature is a
time window evaluated at each row is refused at compile, naming the file and the feature, with
aggregations as the fix; ``row_window: true`` lets a deliberate one through."""

from __future__ import annotations

from pathlib import Path

import pytest

import fsql
from fsql.errors import DefinitionError, ProjectErrors
from tests.conftest import MakeProject
from tests.quality.test_diff_lineage import cards_project, edit, fsql_cli

YML = "features/card_activity.yml"
SQL = "features/card_activity.sql"


@pytest.fixture
def cards(make_project: MakeProject) -> fsql.Project:
    return cards_project(make_project)


def errors(project: fsql.Project) -> list[DefinitionError]:
    with pytest.raises((DefinitionError, ProjectErrors)) as info:
        project.compile(write=False)
    err = info.value
    return list(err.errors) if isinstance(err, ProjectErrors) else [err]  # type: ignore[list-item]


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_issues_spend_1h_is_refused(cards: fsql.Project) -> None:
    # the issue's trial: a rolling spend written as a RANGE window (a named WINDOW here)
    edit(cards.root / YML, "      row_window: true\n", "")
    found = errors(cards)
    assert [(e.path, e.line) for e in found] == [
        (YML, line_of(cards.root / YML, "name: spend_1h")),
        (YML, line_of(cards.root / YML, "name: count_1h"))]
    message = str(found[0])
    assert "feature 'spend_1h' of online view 'card_activity' is a time window" in message
    assert "INTERVAL '1' HOUR PRECEDING" in message and "aggregations:" in message
    result = fsql_cli(cards.root, "compile")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_an_inline_window_is_refused_and_other_frames_are_not(cards: fsql.Project) -> None:
    edit(cards.root / YML, "      row_window: true\n", "")
    edit(cards.root / SQL, "count(*) OVER w AS count_1h",
         "count(*) OVER (PARTITION BY card_id ORDER BY ts ROWS 9 PRECEDING) AS count_1h")
    edit(cards.root / SQL, "CAST({{ spend('amount') }} OVER w AS DOUBLE)",
         "CAST(sum(amount) OVER (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL 2 "
         "HOUR PRECEDING AND CURRENT ROW) AS DOUBLE)")
    assert [e.line for e in errors(cards)] == [line_of(cards.root / YML, "name: spend_1h")]
    # a running total means the same at the row and later: accepted
    edit(cards.root / SQL, "RANGE BETWEEN INTERVAL 2 HOUR PRECEDING AND CURRENT ROW",
         "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW")
    cards.compile(write=False)


def test_offline_views_and_opt_outs_compile(cards: fsql.Project) -> None:
    cards.compile(write=False)  # row_window: true on both
    edit(cards.root / YML, "      row_window: true\n", "")
    edit(cards.root / YML, "online: true", "online: false")
    cards.compile(write=False)  # training reads it at the row's time, as defined
