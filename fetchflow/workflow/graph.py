"""Step dependencies: cycles (with their path) and a stable topological order."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator, Mapping, Sequence

__all__ = ["cycle_text", "downstream_of", "find_cycles", "topological_order"]


def find_cycles(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle per group of steps that depend on each other, as a path that returns to
    its start (``a, b, a``), read in the direction data flows.

    Each group (a strongly connected component) gives its shortest cycle through its first
    step in file order; fixing it shows the next one, if the group holds more. So a tangle
    of 10 000 steps is one problem found in linear time, not one per loop in it. Every walk
    keeps its own stack: a chain or cycle of any length is fine.

    Args:
        edges: ``{step: [steps it depends on]}``, in file order.
    """
    position = {node: index for index, node in enumerate(edges)}
    cycles: list[list[str]] = []
    for group in _strongly_connected(edges):
        first = min(group, key=position.__getitem__)
        if len(group) == 1 and first not in edges[first]:
            continue  # a step alone, not depending on itself
        path = _shortest_cycle(edges, first, set(group))
        ordered = list(reversed(path))  # producer first
        cycles.append([*ordered, ordered[0]])
    cycles.sort(key=lambda cycle: min(position[node] for node in cycle))
    return cycles


def _strongly_connected(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The strongly connected components (Tarjan's algorithm, with an explicit stack)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        todo: list[tuple[str, Iterator[str]]] = [(root, iter(edges[root]))]
        while todo:
            node, upstreams = todo[-1]
            upstream = next(upstreams, None)
            if upstream is None:
                todo.pop()
                if todo:
                    parent = todo[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group: list[str] = []
                    while not group or group[-1] != node:
                        group.append(stack.pop())
                        on_stack.discard(group[-1])
                    groups.append(group)
            elif upstream not in edges:
                continue
            elif upstream not in index:
                index[upstream] = low[upstream] = len(index)
                stack.append(upstream)
                on_stack.add(upstream)
                todo.append((upstream, iter(edges[upstream])))
            elif upstream in on_stack:
                low[node] = min(low[node], index[upstream])
    return groups


def _shortest_cycle(edges: Mapping[str, Sequence[str]], start: str, group: set[str]) -> list[str]:
    """The shortest path ``start, ...`` along dependencies, inside ``group``, whose last
    step depends on ``start`` (a breadth-first search)."""
    came_from: dict[str, str] = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for upstream in edges[node]:
            if upstream == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return list(reversed(path))
            if upstream in group and upstream not in came_from:
                came_from[upstream] = node
                queue.append(upstream)
    return [start]  # not reached: every step of a group is on a cycle through ``start``


def topological_order(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """Steps so that each comes after its dependencies; ties keep file order.

    Args:
        edges: ``{step: [steps it depends on]}``, acyclic, in file order.
    """
    position = {node: index for index, node in enumerate(edges)}
    remaining = {node: {up for up in ups if up in edges} for node, ups in edges.items()}
    dependents: dict[str, list[str]] = {node: [] for node in edges}
    for node, ups in remaining.items():
        for up in ups:
            dependents[up].append(node)
    # A heap of file positions: the ready step that comes first in the file runs first.
    ready = [position[node] for node, ups in remaining.items() if not ups]
    heapq.heapify(ready)
    nodes = list(edges)
    order: list[str] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for child in dependents[node]:
            remaining[child].discard(node)
            if not remaining[child]:
                heapq.heappush(ready, position[child])
    return order


def downstream_of(edges: Mapping[str, Sequence[str]], start: str) -> list[str]:
    """Every step that depends on ``start``, directly or not, in file order."""
    dependents: dict[str, list[str]] = {node: [] for node in edges}
    for node, ups in edges.items():
        for up in ups:
            if up in dependents:
                dependents[up].append(node)
    found: set[str] = set()
    todo = [start]
    while todo:
        for child in dependents.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return [node for node in edges if node in found]


def cycle_text(cycle: Sequence[str], keep: int = 3) -> str:
    """A cycle's path as a message shows it: ``a -> b -> a``, its middle left out when long.

    ``s2 -> s3 -> s4 -> ... (9995 more) ... -> s10000 -> s1 -> s2``: the first and last
    ``keep`` names stay, so the path still reads as returning to its start; a path of up to
    ``4 * keep`` names is shown whole.
    """
    if len(cycle) <= 4 * keep:
        return " -> ".join(cycle)
    left_out = len(cycle) - 2 * keep
    return " -> ".join([*cycle[:keep], f"... ({left_out} more) ...", *cycle[-keep:]])
