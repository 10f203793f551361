"""Reading users' files: UTF-8 text, and YAML that remembers where every key is.

Duplicate keys are rejected: PyYAML silently keeps the last of two equal keys; a feature
declared twice must instead be an error that points at both lines (dbt ``checked_load``).
Aliases are bounded: a document whose aliases (``*name``, ``<<: *name``) stand for more than
``MAX_ALIASED_NODES`` nodes in all is refused before it is built, so a kilobyte "billion laughs"
file fails at once instead of expanding into gigabytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fsql.errors import DefinitionError

MAX_ALIASED_NODES = 50_000


class Mapping(dict[str, Any]):
    """A YAML mapping that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    """A safe loader that counts what aliases expand to while composing (``_AliasBomb``)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.sizes: dict[int, int] = {}
        self.aliased = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if not self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
        node = super().compose_node(parent, index)
        self.aliased += _expanded_size(node, self.sizes)
        if self.aliased > MAX_ALIASED_NODES:
            raise _AliasBomb(line)
        return node


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """Nodes in ``node`` with every alias inside it expanded (memoized: anchors are shared)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = size
    return size


class _AliasBomb(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Mapping:
    own = {id(key_node) for key_node, _ in node.value}
    loader.flatten_mapping(node)  # merged (<<: *x) pairs first, then the mapping's own
    result = Mapping()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    merged: set[str] = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"keys must be strings, found {key!r}", key_node.start_mark
            )
        if id(key_node) not in own:
            merged.add(key)
        elif key in merged:
            merged.discard(key)  # a key written out overrides the merged one
        elif key in result:
            raise _DuplicateKey(key, result.key_lines[key], line)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: int, second: int) -> None:
        self.key, self.first, self.second = key, first, second


def _context(text: str, line: int) -> str:
    lines = text.splitlines()
    lo, hi = max(line - 2, 1), min(line + 1, len(lines))
    return "\n".join(f"  {n:>4} | {lines[n - 1]}" for n in range(lo, hi + 1))


def load_text(text: str, path: Path | str) -> Any:
    """Parse YAML ``text`` from ``path``; syntax errors become ``DefinitionError`` with a line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except _AliasBomb as bomb:
        raise DefinitionError(
            path, f"YAML aliases here expand to more than {MAX_ALIASED_NODES:,} values "
            "(an alias bomb?)", line=bomb.line,
            hint="write the values out or use fewer nested anchors (*name, <<: *name).",
        ) from None
    except _DuplicateKey as dup:
        raise DefinitionError(
            path,
            f"duplicate key '{dup.key}' (first defined on line {dup.first})",
            line=dup.second,
            hint="YAML keeps only one of them; remove or rename one.",
        ) from None
    except yaml.MarkedYAMLError as err:
        at_end = err.problem is not None and "end of stream" in err.problem
        mark = (err.context_mark if at_end else None) or err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        problem = err.problem or err.context or "invalid YAML"
        detail = f"\n{_context(text, line)}" if line else ""
        raise DefinitionError(
            path,
            f"invalid YAML: {problem}{detail}",
            line=line,
            hint="check indentation and quoting near this line.",
        ) from None
    except yaml.YAMLError as err:
        raise DefinitionError(path, f"invalid YAML: {err}") from None


def read_text(path: Path, display: Path | str | None = None) -> str:
    """A user's file as text; anything but UTF-8 is a ``DefinitionError`` with its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DefinitionError(
            display or path, f"is not UTF-8 text (byte 0x{data[err.start]:02x})", line=line,
            hint="save the file as UTF-8.") from None


def load_file(path: Path, display: Path | str | None = None) -> Any:
    """Read and parse a YAML file; ``display`` is the path shown in messages."""
    return load_text(read_text(path, display), display or path)
