"""YAML -> plain data plus a source map, so every later error can say file:line:col.

PyYAML's composer (libyaml when available) gives nodes with marks; we build the Python
values ourselves so that duplicate keys are reported instead of silently overwritten, and so
that every key and value keeps its position. Anchors, aliases and merge keys (``<<: *base``)
work as in any YAML file.

Aliases are bounded: a file whose aliases, expanded, would add more than
:data:`~fetchflow.workflow.yaml_aliases.MAX_ALIAS_VALUES` values or its text limit (a "billion
laughs") is refused before anything walks the data, at the field that holds the bomb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fetchflow.errors import Problem
from fetchflow.workflow.nesting import MAX_DEPTH, too_deep
from fetchflow.workflow.yaml_aliases import MAX_ALIAS_TEXT, MAX_ALIAS_VALUES, alias_bomb
from fetchflow.workflow.yaml_slips import brace_hint, is_braced_template, syntax_problem

__all__ = [
    "DataPath",
    "Loaded",
    "SourceMap",
    "Span",
    "load_yaml",
    "path_text",
]

DataPath = tuple[str | int, ...]
"""Where a value sits in the loaded document: ``("steps", 0, "prompt")``."""

_Composer: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Span:
    """A 1-based position in a file."""

    line: int
    column: int


@dataclass
class SourceMap:
    """Positions of the keys and values of one loaded YAML file.

    Attributes:
        file: The file name used in messages.
        lines: The file's lines, to place references precisely inside long values.
        keys: Where the key of a mapping entry stands.
        values: Where a value starts.
        block_scalars: Values written as ``|`` or ``>`` blocks (their text starts one line
            below the value's mark).
    """

    file: str
    lines: list[str] = field(default_factory=list)
    keys: dict[DataPath, Span] = field(default_factory=dict)
    values: dict[DataPath, Span] = field(default_factory=dict)
    block_scalars: set[DataPath] = field(default_factory=set)

    def key(self, path: DataPath) -> Span:
        """Where the key of ``path`` stands, or the nearest known position above it."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            span = self.keys.get(prefix) or self.values.get(prefix)
            if span is not None:
                return span
        return Span(1, 1)

    def value(self, path: DataPath) -> Span:
        """Where the value of ``path`` starts, or the nearest known position above it."""
        return self.values.get(path) or self.key(path)

    def text_position(self, path: DataPath, text_line: int, needle: str, after: int = 0) -> Span:
        """Position of ``needle`` on line ``text_line`` (1-based) of the string at ``path``.

        Used to point at a template reference inside a multi-line prompt: the search starts
        at the value (not at its key) or at column ``after`` when that is further. Falls back
        to the value's start when the text cannot be found (folded or escaped scalars).
        """
        start = self.value(path)
        offset = text_line - 1 + (1 if path in self.block_scalars else 0)
        line_no = start.line + offset
        if 1 <= line_no <= len(self.lines):
            line = self.lines[line_no - 1]
            begin = max(start.column - 1 if offset == 0 else 0, after - 1, 0)
            if not needle and offset > 0:  # the line itself: where its text starts
                return Span(line_no, len(line) - len(line.lstrip()) + 1)
            found = line.find(needle, begin)
            if found >= 0:
                return Span(line_no, found + 1)
        return start if offset == 0 else Span(line_no, start.column)


@dataclass
class Loaded:
    """The result of loading one file: its data, positions and the problems found."""

    data: object
    source: SourceMap
    problems: list[Problem]


def path_text(path: DataPath) -> str:
    """``("images", 0, "url")`` -> ``images.0.url``."""
    return ".".join(str(part) for part in path)


def _span(mark: yaml.Mark) -> Span:
    return Span(mark.line + 1, mark.column + 1)


class _Builder:
    """Turns composed nodes into Python values, recording positions and duplicates."""

    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self._scalars = SafeConstructor()
        self._building: set[int] = set()
        self.endless = False  # an alias inside its own anchor: the data is unusable
        self._built: dict[int, object] = {}

    def problem(self, span: Span, message: str, hint: str, field: str | None = None) -> None:
        self.problems.append(
            Problem(
                message=message,
                hint=hint,
                file=self.source.file,
                line=span.line,
                column=span.column,
                field=field,
            )
        )

    def build(self, node: Node, path: DataPath) -> object:
        self.source.values.setdefault(path, _span(node.start_mark))
        if isinstance(node, MappingNode | SequenceNode):
            key = id(node)
            if key in self._building:
                self.endless = True
                self.problem(
                    _span(node.start_mark),
                    "an alias refers to the anchor it is inside of (the value would be endless)",
                    "anchor a value that does not contain the alias",
                    field=path_text(path) or None,
                )
                return None
            if key in self._built:  # an alias: the same value again, built once
                return self._built[key]
            self._building.add(key)
            try:
                if isinstance(node, MappingNode):
                    value: object = self._mapping(node, path)
                else:
                    value = [
                        self.build(item, (*path, index)) for index, item in enumerate(node.value)
                    ]
            finally:
                self._building.discard(key)
            self._built[key] = value
            return value
        if isinstance(node, ScalarNode) and node.style in ("|", ">"):
            self.source.block_scalars.add(path)
        try:
            return self._scalars.construct_object(node, deep=True)
        except ConstructorError as error:
            self.problem(
                _span(node.start_mark),
                f"cannot read this value: {error.problem}",
                "remove the YAML tag or quote the value",
                field=path_text(path) or None,
            )
            return None

    def _mapping(self, node: MappingNode, path: DataPath) -> object:
        if is_braced_template(node):
            # ``key: {{ a.output }}`` unquoted: YAML reads a mapping whose key is a mapping.
            start, end = node.start_mark, node.end_mark
            lines = self.source.lines[start.line : end.line + 1]
            written = " ".join(
                (line[: end.column] if number == end.line else line)[
                    start.column if number == start.line else 0 :
                ].strip()
                for number, line in enumerate(lines, start.line)
            )
            self.problem(
                _span(node.start_mark),
                f"{written} is read as a YAML mapping, not as a template",
                brace_hint(written),
                field=path_text(path) or None,
            )
            return written
        result: dict[str, object] = {}
        seen: dict[str, Span] = {}
        merged: list[tuple[Node, Node]] = []
        own: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value_node))
            else:
                own.append((key_node, value_node))
        for key_node, value_node in merged:
            key = self._key(key_node, path)
            if key is not None and key not in result:
                result[key] = self.build(value_node, (*path, key))
        for key_node, value_node in own:
            key = self._key(key_node, path)
            if key is None:
                continue
            key_span = _span(key_node.start_mark)
            if key in seen:
                first = seen[key]
                self.problem(
                    key_span,
                    f'duplicate key "{key}" (first at line {first.line})',
                    f'keep one "{key}": YAML would silently use only the last one',
                    field=path_text((*path, key)),
                )
                continue
            seen[key] = key_span
            self.source.keys[(*path, key)] = key_span
            self.source.values.pop((*path, key), None)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _merge_sources(self, node: Node) -> list[tuple[Node, Node]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        pairs: list[tuple[Node, Node]] = []
        for source in sources:
            if isinstance(source, MappingNode):
                pairs.extend(source.value)
            else:
                self.problem(
                    _span(source.start_mark),
                    "a merge key (<<:) needs a mapping or a list of mappings",
                    "merge an anchored mapping: <<: *defaults",
                )
        return pairs

    def _key(self, node: Node, path: DataPath) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:str":
            return str(node.value)
        shown = (
            repr(node.value)
            if isinstance(node, ScalarNode)
            else ("a list" if isinstance(node, SequenceNode) else "a mapping")
        )
        self.problem(
            _span(node.start_mark),
            f"keys must be plain names, got {shown}",
            "write the key as a name, e.g. prompt:",
            field=path_text(path) or None,
        )
        return None


def load_yaml(text: str, file: str) -> Loaded:
    """Parse one YAML document, keeping positions and reporting duplicate keys.

    Args:
        text: The file's content.
        file: The name to use in messages.

    Returns:
        The data (``None`` for an empty file), its source map, and the problems found.
        A syntax error is a single problem and no data.
    """
    source = SourceMap(file=file, lines=text.splitlines())
    try:
        node = yaml.compose(text, Loader=_Composer)
    except yaml.MarkedYAMLError as error:
        return Loaded(None, source, [syntax_problem(error, text, file)])
    except yaml.YAMLError as error:  # composer errors without a mark
        return Loaded(
            None,
            source,
            [Problem(message=f"YAML error: {error}", hint="check the file is YAML", file=file)],
        )
    if node is None:
        return Loaded(None, source, [])
    deep = too_deep(node)
    if deep is not None:  # refused before anything below walks it by recursion
        path, deep_node = deep
        span = _span(deep_node.start_mark)
        problem = Problem(
            message=f"values nested more than {MAX_DEPTH} levels deep "
            "(lists and mappings inside each other)",
            hint="flatten this value: a workflow needs a few levels at most",
            file=file,
            line=span.line,
            column=span.column,
            field=path_text(path[:3]) or None,
        )
        return Loaded(None, source, [problem])
    bomb = alias_bomb(node)
    if bomb is not None:
        path, mark = bomb
        span = _span(mark)
        problem = Problem(
            message=f"aliases expand this value past the limit of {MAX_ALIAS_VALUES} "
            f'added values or {MAX_ALIAS_TEXT} added characters (an alias bomb, "billion laughs")',
            hint="write the value out, or repeat a smaller anchor fewer times",
            file=file,
            line=span.line,
            column=span.column,
            field=path_text(path) or None,
        )
        return Loaded(None, source, [problem])
    builder = _Builder(source)
    data = builder.build(node, ())
    return Loaded(None if builder.endless else data, source, builder.problems)
