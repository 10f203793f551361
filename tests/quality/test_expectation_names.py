"""``fsql.gx_expectations`` (what ``fsql compile`` checks data tests against without importing
great-expectations) is exactly what GX's own registry offers."""

from __future__ import annotations

import re
import warnings

from fsql.gx_expectations import COMMON, EXPECTATIONS


def test_the_static_table_matches_the_registry_of_great_expectations() -> None:
    with warnings.catch_warnings():  # GX imports deprecated stdlib modules
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.expectations.registry import _registered_expectations

    def camel(name: str) -> str:
        return "".join(part.capitalize() for part in name.split("_"))

    # what quality._expectation accepts when GX is imported: a registered expect_... name whose
    # class gx.expectations exports, with the arguments (pydantic fields) of that class
    registry = {name: {f.alias for f in getattr(gx.expectations, camel(name)).__fields__.values()}
                for name in _registered_expectations
                if re.fullmatch(r"expect_[a-z0-9_]+", name)
                and hasattr(gx.expectations, camel(name))}
    static = {name: {*COMMON, *args} for name, args in EXPECTATIONS.items()}
    assert sorted(static) == sorted(registry)
    assert {n: sorted(a) for n, a in static.items()} == {n: sorted(a) for n, a in registry.items()}
