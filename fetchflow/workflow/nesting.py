"""How deep a YAML document's values go: bounded before anything walks them.

Everything after loading walks values by recursion (the loader's builder, pydantic, template
rendering, JSON), and Python's recursion stops at about a thousand frames. So a document
whose lists and mappings sit more than :data:`MAX_DEPTH` levels inside each other is refused
as it is loaded, with the place where it goes too deep. No workflow needs more than a few
levels.
"""

from __future__ import annotations

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MAX_DEPTH", "too_deep", "value_depth"]

MAX_DEPTH = 100
"""How many lists and mappings may sit inside each other, the document's own mapping
included."""


def _children(node: Node) -> list[tuple[str | int, Node]]:
    if isinstance(node, SequenceNode):
        return list(enumerate(node.value))
    if isinstance(node, MappingNode):
        return [
            (str(key.value) if isinstance(key, ScalarNode) else "?", value)
            for key, value in node.value
        ]
    return []


def _heights(root: Node) -> dict[int, int]:
    """How many collections deep each collection node goes (itself included), by ``id``.

    Each node is measured once, so an alias costs nothing more; an alias inside its own
    anchor counts as nothing (the loader reports it).
    """
    heights: dict[int, int] = {}
    entered: set[int] = set()
    todo: list[tuple[Node, bool]] = [(root, False)]
    while todo:
        node, children_done = todo.pop()
        if children_done:
            heights[id(node)] = 1 + max(
                (heights.get(id(child), 0) for _, child in _children(node)), default=0
            )
        elif isinstance(node, MappingNode | SequenceNode) and id(node) not in entered:
            # Entered once: a node met again (an alias) is measured by then, or is being
            # measured, when the alias is inside its own anchor; that one counts as nothing.
            entered.add(id(node))
            todo.append((node, True))
            todo.extend((child, False) for _, child in reversed(_children(node)))
    return heights


def too_deep(root: Node, limit: int = MAX_DEPTH) -> tuple[tuple[str | int, ...], Node] | None:
    """The first collection (in file order) that sits deeper than ``limit``, or None.

    Aliases count as the value they repeat, so nesting built by aliases counts too. The walk
    keeps its own stack, so it cannot itself hit the recursion limit.

    Returns:
        The path to the first collection past the limit, and its node.
    """
    heights = _heights(root)
    if heights.get(id(root), 0) <= limit:
        return None
    node = root
    path: tuple[str | int, ...] = ()
    while len(path) < limit:
        depth = len(path) + 1  # where node's children sit
        name, node = next(
            (name, child)
            for name, child in _children(node)
            if depth + heights.get(id(child), 0) > limit
        )
        path = (*path, name)
    return path, node


def value_depth(value: object) -> int:
    """How many lists and mappings sit inside each other in ``value`` (0 for a scalar).

    For values that do not come from a YAML file (``--input`` JSON); a loop, not recursion.
    """
    deepest = 0
    todo: list[tuple[object, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            todo.extend((child, depth + 1) for child in item)
    return deepest
