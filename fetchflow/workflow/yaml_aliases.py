"""How much aliases add to a YAML document, so an alias bomb is refused before it is read.

A "billion laughs" is a few anchors, each a list of aliases to the one before: under 1 KB of
YAML that expands to 10**9 values. The composed nodes share each anchor, so they are cheap;
whatever walks the built data (checks, JSON, templates) pays for every expansion. A document
whose aliases, expanded, add more than :data:`MAX_ALIAS_VALUES` values or
:data:`MAX_ALIAS_TEXT` characters is refused, at the field that holds the bomb.
"""

from __future__ import annotations

from yaml import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MAX_ALIAS_TEXT", "MAX_ALIAS_VALUES", "alias_bomb"]

MAX_ALIAS_VALUES = 1_000_000
"""How many values (list items, mapping entries, scalars) aliases may add to a file when
they are expanded. Merge keys in a large workflow add tens of thousands."""
MAX_ALIAS_TEXT = 10_000_000
"""How many characters of scalar text aliases may add to a file when they are expanded."""


def alias_bomb(root: Node) -> tuple[tuple[str | int, ...], Mark] | None:
    """The path and position of the field where aliases add too much, or None.

    ``root`` must be nested at most a few hundred levels (the loader checks it first).
    """
    return _Expansion(root).culprit(root)


class _Expansion:
    """What aliases add to a document: its size with every alias expanded, less its size as
    written (each node measured once, so a bomb costs no more to measure than to read)."""

    def __init__(self, root: Node) -> None:
        self._expanded: dict[int, tuple[int, int]] = {}
        self._written: dict[int, tuple[int, int]] = {}
        self._active: set[int] = set()
        self._measure_written(root)

    def _children(self, node: Node) -> list[Node]:
        if isinstance(node, MappingNode):
            return [part for pair in node.value for part in pair]
        return list(node.value) if isinstance(node, SequenceNode) else []

    def _measure_written(self, node: Node) -> tuple[int, int]:
        """Size as written, in document order: an anchor counts its content where it is
        defined, each alias to it counts one value."""
        if id(node) in self._written:
            return 1, 0
        self._written[id(node)] = (1, 0)  # an alias inside its own anchor counts as one
        values, chars = 1, len(str(node.value)) if isinstance(node, ScalarNode) else 0
        for child in self._children(node):
            child_values, child_chars = self._measure_written(child)
            values += child_values
            chars += child_chars
        self._written[id(node)] = (values, chars)
        return values, chars

    def size(self, node: Node) -> tuple[int, int]:
        """``(values, characters)`` of ``node`` with every alias inside it expanded."""
        key = id(node)
        known = self._expanded.get(key)
        if known is not None:
            return known
        if isinstance(node, ScalarNode):
            return 1, len(str(node.value))
        if key in self._active:  # an endless alias: the builder reports it
            return 1, 0
        self._active.add(key)
        values, chars = 1, 0
        for child in self._children(node):
            child_values, child_chars = self.size(child)
            values += child_values
            chars += child_chars
        self._active.discard(key)
        self._expanded[key] = (values, chars)
        return values, chars

    def too_big(self, node: Node) -> bool:
        """Whether aliases add more than the limits to ``node``."""
        values, chars = self.size(node)
        written_values, written_chars = self._written.get(id(node), (1, 0))
        return values - written_values > MAX_ALIAS_VALUES or chars - written_chars > MAX_ALIAS_TEXT

    def culprit(self, root: Node) -> tuple[tuple[str | int, ...], Mark] | None:
        """Where an oversized document grows too big, or None when it is within the limits.

        That is the first oversized mapping entry, going down through oversized mappings
        (and the mappings in lists, such as steps), whose value is not itself a mapping of
        oversized entries: the field that holds the bomb, not a list deep inside it.
        """
        if not self.too_big(root):
            return None
        node, mark = root, root.start_mark
        path: tuple[str | int, ...] = ()
        while True:
            entries: list[tuple[str | int, Mark, Node]]
            if isinstance(node, MappingNode):
                entries = [
                    (
                        str(key.value) if isinstance(key, ScalarNode) else "?",
                        key.start_mark,
                        value,
                    )
                    for key, value in node.value
                ]
            elif isinstance(node, SequenceNode):
                entries = [
                    (index, item.start_mark, item)
                    for index, item in enumerate(node.value)
                    if isinstance(item, MappingNode)
                ]
            else:
                break
            over = next((entry for entry in entries if self.too_big(entry[2])), None)
            if over is None:
                break
            name, mark, node = over
            path = (*path, name)
        return path, mark
