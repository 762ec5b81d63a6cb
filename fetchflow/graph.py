"""Step dependencies: cycles (with their path) and a stable topological order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["downstream_of", "find_cycles", "topological_order"]


def find_cycles(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every distinct cycle, each as a path that returns to its start (``a, b, a``).

    Args:
        edges: ``{step: [steps it depends on]}``, in file order.
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for upstream in edges.get(node, ()):
            if upstream not in edges:
                continue
            if state.get(upstream) == 1:
                cycle = stack[stack.index(upstream) :]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    # Read it in the direction data flows: producer first.
                    ordered = list(reversed(cycle))
                    cycles.append([*ordered, ordered[0]])
            elif upstream not in state:
                visit(upstream)
        stack.pop()
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node)
    return cycles


def topological_order(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """Steps so that each comes after its dependencies; ties keep file order.

    Args:
        edges: ``{step: [steps it depends on]}``, acyclic, in file order.
    """
    position = {node: index for index, node in enumerate(edges)}
    remaining = {node: {up for up in ups if up in edges} for node, ups in edges.items()}
    order: list[str] = []
    ready = sorted((n for n, ups in remaining.items() if not ups), key=position.__getitem__)
    dependents: dict[str, list[str]] = {node: [] for node in edges}
    for node, ups in remaining.items():
        for up in ups:
            dependents[up].append(node)
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in dependents[node]:
            remaining[child].discard(node)
            if not remaining[child]:
                ready.append(child)
                ready.sort(key=position.__getitem__)
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
