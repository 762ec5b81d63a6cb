"""Step dependencies: cycles (with their path) and a stable topological order."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence

__all__ = ["cycle_text", "downstream_of", "find_cycles", "topological_order"]


def find_cycles(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every distinct cycle, each as a path that returns to its start (``a, b, a``).

    The walk keeps its own stack, so a chain or cycle of any length is fine (a recursive
    walk stops at Python's recursion limit, about a thousand steps).

    Args:
        edges: ``{step: [steps it depends on]}``, in file order.
    """
    done: set[str] = set()
    on_path: dict[str, int] = {}  # step -> its place on the current path
    path: list[str] = []
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for root in edges:
        if root in done:
            continue
        todo: list[tuple[str, Iterator[str]]] = [(root, iter(edges[root]))]
        on_path[root] = 0
        path.append(root)
        while todo:
            node, upstreams = todo[-1]
            upstream = next(upstreams, None)
            if upstream is None:
                todo.pop()
                path.pop()
                del on_path[node]
                done.add(node)
            elif upstream in on_path:
                cycle = path[on_path[upstream] :]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    # Read it in the direction data flows: producer first.
                    ordered = list(reversed(cycle))
                    cycles.append([*ordered, ordered[0]])
            elif upstream in edges and upstream not in done:
                on_path[upstream] = len(path)
                path.append(upstream)
                todo.append((upstream, iter(edges[upstream])))
    return cycles


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
