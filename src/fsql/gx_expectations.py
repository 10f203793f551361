"""The great-expectations expectations a data test may name, with the arguments each takes.

Known without importing great-expectations (seconds of start-up: pandas, scipy, pydantic
models), so ``fsql compile`` checks a declaration (``quality.check_declarations``) and only
``fsql test`` and the data tests gating build/sync import GX. ``tests/quality/
test_expectation_names.py`` compares this table with GX's registry, so it cannot drift: update
it when the great-expectations pin moves.
"""

from __future__ import annotations

#: the arguments every expectation takes (pydantic fields of GX's ``Expectation``)
COMMON: tuple[str, ...] = (
    "batch_id", "catch_exceptions", "description", "id", "meta", "notes", "rendered_content",
    "result_format", "severity", "windows")

#: expectation name (as written in YAML) -> its own arguments (beside ``COMMON``)
EXPECTATIONS: dict[str, tuple[str, ...]] = {
    "expect_column_distinct_values_to_be_in_set": (
        "column", "condition_parser", "row_condition", "value_set"),
    "expect_column_distinct_values_to_contain_set": (
        "column", "condition_parser", "row_condition", "value_set"),
    "expect_column_distinct_values_to_equal_set": (
        "column", "condition_parser", "row_condition", "value_set"),
    "expect_column_max_to_be_between": (
        "column", "condition_parser", "max_value", "min_value", "row_condition",
        "strict_max", "strict_min"),
    "expect_column_mean_to_be_between": (
        "column", "condition_parser", "max_value", "min_value", "row_condition",
        "strict_max", "strict_min"),
    "expect_column_median_to_be_between": (
        "column", "condition_parser", "max_value", "min_value", "row_condition",
        "strict_max", "strict_min"),
    "expect_column_min_to_be_between": (
        "column", "condition_parser", "max_value", "min_value", "row_condition",
        "strict_max", "strict_min"),
    "expect_column_most_common_value_to_be_in_set": (
        "column", "condition_parser", "row_condition", "ties_okay", "value_set"),
    "expect_column_pair_values_a_to_be_greater_than_b": (
        "column_A", "column_B", "condition_parser", "ignore_row_if", "mostly", "or_equal",
        "row_condition"),
    "expect_column_pair_values_to_be_equal": (
        "column_A", "column_B", "condition_parser", "ignore_row_if", "mostly",
        "row_condition"),
    "expect_column_pair_values_to_be_in_set": (
        "column_A", "column_B", "condition_parser", "ignore_row_if", "mostly",
        "row_condition", "value_pairs_set"),
    "expect_column_proportion_of_non_null_values_to_be_between": (
        "column", "condition_parser", "library_metadata", "max_value", "min_value",
        "row_condition", "strict_max", "strict_min"),
    "expect_column_proportion_of_unique_values_to_be_between": (
        "column", "condition_parser", "library_metadata", "max_value", "min_value",
        "row_condition", "strict_max", "strict_min"),
    "expect_column_quantile_values_to_be_between": (
        "allow_relative_error", "column", "condition_parser", "quantile_ranges",
        "row_condition"),
    "expect_column_stdev_to_be_between": (
        "column", "condition_parser", "max_value", "min_value", "row_condition",
        "strict_max", "strict_min"),
    "expect_column_sum_to_be_between": (
        "column", "condition_parser", "max_value", "min_value", "row_condition",
        "strict_max", "strict_min"),
    "expect_column_to_exist": ("column", "column_index"),
    "expect_column_type_to_be": ("column", "type_"),
    "expect_column_unique_value_count_to_be_between": (
        "column", "condition_parser", "library_metadata", "max_value", "min_value",
        "row_condition", "strict_max", "strict_min"),
    "expect_column_value_lengths_to_be_between": (
        "column", "condition_parser", "max_value", "min_value", "mostly", "row_condition",
        "strict_max", "strict_min"),
    "expect_column_value_lengths_to_equal": (
        "column", "condition_parser", "mostly", "row_condition", "value"),
    "expect_column_value_z_scores_to_be_less_than": (
        "column", "condition_parser", "double_sided", "mostly", "row_condition",
        "threshold"),
    "expect_column_values_to_be_between": (
        "column", "condition_parser", "max_value", "min_value", "mostly", "row_condition",
        "strict_max", "strict_min"),
    "expect_column_values_to_be_dateutil_parseable": (
        "column", "condition_parser", "library_metadata", "mostly", "row_condition"),
    "expect_column_values_to_be_decreasing": (
        "column", "condition_parser", "library_metadata", "mostly", "row_condition",
        "strictly"),
    "expect_column_values_to_be_in_set": (
        "column", "condition_parser", "mostly", "row_condition", "value_set"),
    "expect_column_values_to_be_in_type_list": (
        "column", "condition_parser", "mostly", "row_condition", "type_list"),
    "expect_column_values_to_be_increasing": (
        "column", "condition_parser", "library_metadata", "mostly", "row_condition",
        "strictly"),
    "expect_column_values_to_be_json_parseable": (
        "column", "condition_parser", "library_metadata", "mostly", "row_condition"),
    "expect_column_values_to_be_null": ("column", "condition_parser", "mostly", "row_condition"),
    "expect_column_values_to_be_of_type": (
        "column", "condition_parser", "mostly", "row_condition", "type_"),
    "expect_column_values_to_be_unique": ("column", "condition_parser", "mostly", "row_condition"),
    "expect_column_values_to_match_json_schema": (
        "column", "condition_parser", "json_schema", "library_metadata", "mostly",
        "row_condition"),
    "expect_column_values_to_match_like_pattern": (
        "column", "condition_parser", "escape", "like_pattern", "mostly", "row_condition"),
    "expect_column_values_to_match_like_pattern_list": (
        "column", "condition_parser", "escape", "like_pattern_list", "match_on", "mostly",
        "row_condition"),
    "expect_column_values_to_match_regex": (
        "column", "condition_parser", "mostly", "regex", "row_condition"),
    "expect_column_values_to_match_regex_list": (
        "column", "condition_parser", "match_on", "mostly", "regex_list", "row_condition"),
    "expect_column_values_to_match_strftime_format": (
        "column", "condition_parser", "mostly", "row_condition", "strftime_format"),
    "expect_column_values_to_not_be_in_set": (
        "column", "condition_parser", "mostly", "row_condition", "value_set"),
    "expect_column_values_to_not_be_null": (
        "column", "condition_parser", "mostly", "row_condition"),
    "expect_column_values_to_not_be_outliers": (
        "column", "condition_parser", "method", "mostly", "multiplier", "row_condition"),
    "expect_column_values_to_not_match_like_pattern": (
        "column", "condition_parser", "escape", "like_pattern", "mostly", "row_condition"),
    "expect_column_values_to_not_match_like_pattern_list": (
        "column", "condition_parser", "escape", "like_pattern_list", "mostly",
        "row_condition"),
    "expect_column_values_to_not_match_regex": (
        "column", "condition_parser", "mostly", "regex", "row_condition"),
    "expect_column_values_to_not_match_regex_list": (
        "column", "condition_parser", "mostly", "regex_list", "row_condition"),
    "expect_compound_columns_to_be_unique": (
        "column_list", "condition_parser", "ignore_row_if", "mostly", "row_condition"),
    "expect_multicolumn_sum_to_equal": (
        "column_list", "condition_parser", "ignore_row_if", "mostly", "row_condition",
        "sum_total"),
    "expect_multicolumn_values_to_be_equal": (
        "column_list", "condition_parser", "ignore_row_if", "mostly", "row_condition"),
    "expect_query_results_to_match_comparison": (
        "base_query", "comparison_data_source_name", "comparison_query", "mostly"),
    "expect_select_column_values_to_be_unique_within_record": (
        "column_list", "condition_parser", "ignore_row_if", "mostly", "row_condition"),
    "expect_table_column_count_to_be_between": ("max_value", "min_value"),
    "expect_table_column_count_to_equal": ("value",),
    "expect_table_columns_to_match_ordered_list": ("column_list",),
    "expect_table_columns_to_match_set": ("column_set", "exact_match"),
    "expect_table_row_count_to_be_between": (
        "condition_parser", "max_value", "min_value", "row_condition", "strict_max",
        "strict_min"),
    "expect_table_row_count_to_equal": ("condition_parser", "row_condition", "value"),
    "expect_table_row_count_to_equal_other_table": (
        "condition_parser", "other_table_name", "row_condition"),
}
