"""Row identity of a feature view on DuckDB, for late materialization.

A point-in-time join sorts every row it carries. When a view's rows can be named by one
BIGINT that stays the same for the whole statement, the join carries only keys, times and
that number, and the chosen rows' features are fetched afterwards by a hash join on it (the
spill of a larger-than-memory build then holds no feature values).

DuckDB gives such a number for two kinds of view, each a plain projection (columns,
expressions, a ``WHERE``) of one source:

* a Parquet source (a local file or glob): the ``file_index`` and ``file_row_number`` virtual
  columns of ``read_parquet``, packed as ``file_index << 40 | file_row_number``. The view is
  then read twice in one statement, so its files must not change in between: the engine
  checks that they did not (``reread_files``);
* a source declared as a table of the project's database: its ``rowid``.

Anything else (joins, aggregates, windows, ``DISTINCT``, ``LIMIT``, ``UNNEST``, subqueries,
volatile functions such as ``random()``, models, CSV files) has no identity, and the view is
joined with its features as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlglot import exp

from fsql.pit import ROW_IDENTITY

#: what a view's query may not hold: it would change, multiply or merge rows, or give a row
#: other values in the second read of the same statement
_NOT_ROW_WISE = (exp.AggFunc, exp.Window, exp.Subquery, exp.Exists, exp.Unnest, exp.Explode,
                 exp.Rand, exp.Randn, exp.Uuid, exp.Lateral, exp.Join)
_VOLATILE = frozenset({"random", "uuid", "gen_random_uuid", "nextval", "setseed", "unnest"})
#: clauses of a SELECT that change which rows it returns
_ROW_CLAUSES = ("joins", "laterals", "group", "having", "qualify", "distinct", "limit",
                "offset", "with_", "with", "windows", "sample", "pivots")
#: the bits of a Parquet row number (files of up to 2**40 rows, globs of up to 2**23 files)
_ROW_BITS = 40
#: columns DuckDB would resolve to a virtual column were the source or view not to have them
_VIRTUAL = frozenset({"file_index", "file_row_number", "filename", "rowid"})


def identified(query: exp.Query, sources: Mapping[str, tuple[exp.Query, tuple[str, ...]]]
               ) -> exp.Select | None:
    """``query`` with one more column, ``ROW_IDENTITY``, or None when its rows have none.

    ``sources`` maps each source's relation name to its query and its column names."""
    if not isinstance(query, exp.Select) or any(query.args.get(c) for c in _ROW_CLAUSES):
        return None
    from_ = query.args.get("from_")
    table = from_.this if from_ is not None else None
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        return None
    if table.args.get("db") or table.args.get("catalog") or table.name not in sources:
        return None
    for node in query.walk():
        if isinstance(node, _NOT_ROW_WISE):
            return None
        if isinstance(node, exp.Anonymous) and node.name.lower() in _VOLATILE:
            return None
    source_query, source_columns = sources[table.name]
    taken = {c.lower() for c in source_columns} | {e.alias_or_name.lower()
                                                   for e in query.expressions}
    if taken & _VIRTUAL or ROW_IDENTITY in taken:
        return None
    base = _base(source_query)
    if base is None:
        return None
    relation, identity = base
    alias = table.alias_or_name
    rows = query.copy()
    rows.set("from_", exp.From(this=relation))
    relation.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
    column = identity(alias)
    return rows.select(exp.alias_(column, ROW_IDENTITY, quoted=True), copy=False)


def _base(source: exp.Query) -> tuple[exp.Expr, Callable[[str], exp.Expr]] | None:
    """What a source reads (``SELECT * FROM <it>``) and how its rows are numbered."""
    if not isinstance(source, exp.Select) or len(source.expressions) != 1 \
            or not isinstance(source.expressions[0], exp.Star) \
            or any(source.args.get(c) for c in (*_ROW_CLAUSES, "where")):
        return None
    from_ = source.args.get("from_")
    read = from_.this if from_ is not None else None
    if isinstance(read, exp.ReadParquet) and _local_path(read) is not None:
        return exp.Table(this=read.copy()), _parquet_row
    if isinstance(read, exp.Table) and isinstance(read.this, exp.Identifier):
        return read.copy(), _table_row
    return None


def _parquet_row(alias: str) -> exp.Expr:
    index = exp.cast(exp.column("file_index", table=alias, quoted=True), exp.DataType.build(
        "BIGINT"))
    return exp.BitwiseOr(
        this=exp.paren(exp.BitwiseLeftShift(this=index, expression=exp.Literal.number(
            _ROW_BITS))),
        expression=exp.column("file_row_number", table=alias, quoted=True))


def _table_row(alias: str) -> exp.Expr:
    return exp.column("rowid", table=alias, quoted=True)


def _local_path(read: exp.ReadParquet) -> str | None:
    """The file or glob a ``read_parquet`` call reads, if it is one local path (its files'
    states can be checked: ``reread_files``)."""
    (path, *rest) = read.expressions or [None]
    if rest or not isinstance(path, exp.Literal) or not path.is_string or "://" in path.this:
        return None
    return str(path.this)


def reread_files(statement: exp.Expr) -> tuple[str, ...]:
    """The local files or globs ``statement`` reads more than once, as late materialization
    does. The two reads must see the same files: the engine fails a statement during which
    one of them changed (``DuckDBEngine``)."""
    paths = [_local_path(read) for read in statement.find_all(exp.ReadParquet)]
    return tuple(sorted({p for p in paths if p is not None and paths.count(p) > 1}))
