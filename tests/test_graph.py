"""Step dependencies: cycles with their path, topological order, downstream steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from fetchflow.graph import downstream_of, find_cycles, topological_order

Edges = Mapping[str, Sequence[str]]


@pytest.mark.parametrize(
    ("edges", "cycles"),
    [
        pytest.param({"a": [], "b": ["a"]}, [], id="no-cycle"),
        pytest.param({"a": ["a"]}, [["a", "a"]], id="self-loop"),
        pytest.param({"a": ["b"], "b": ["a"]}, [["b", "a", "b"]], id="two-steps"),
        pytest.param(
            {"a": ["b"], "b": ["c"], "c": ["a"]}, [["c", "b", "a", "c"]], id="three-steps"
        ),
        pytest.param(
            {"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"], "e": ["a"]},
            [["b", "a", "b"], ["d", "c", "d"]],
            id="two-separate-cycles",
        ),
        pytest.param({"a": ["ghost"]}, [], id="unknown-upstream-ignored"),
    ],
)
def test_find_cycles_reads_in_the_direction_data_flows(
    edges: Edges, cycles: list[list[str]]
) -> None:
    assert find_cycles(edges) == cycles


@pytest.mark.parametrize(
    ("edges", "order"),
    [
        pytest.param(
            {"a": [], "b": [], "c": []}, ["a", "b", "c"], id="independent-keep-file-order"
        ),
        pytest.param({"c": ["a", "b"], "a": [], "b": []}, ["a", "b", "c"], id="after-upstream"),
        pytest.param(
            {"d": ["b"], "b": [], "a": [], "c": ["a"]},
            ["b", "d", "a", "c"],
            id="ready-in-file-order",
        ),
        pytest.param({"a": ["ghost"], "b": []}, ["a", "b"], id="unknown-upstream-ignored"),
    ],
)
def test_topological_order(edges: Edges, order: list[str]) -> None:
    assert topological_order(edges) == order


def test_topological_order_puts_every_step_after_its_upstream() -> None:
    edges = {"e": ["d"], "d": ["b", "c"], "c": ["a"], "b": ["a"], "a": []}

    order = topological_order(edges)

    assert sorted(order) == sorted(edges)
    for step, upstream in edges.items():
        assert all(order.index(up) < order.index(step) for up in upstream)


@pytest.mark.parametrize(
    ("start", "downstream"),
    [
        pytest.param("a", ["b", "c", "d"], id="transitive"),
        pytest.param("b", ["d"], id="direct"),
        pytest.param("d", [], id="leaf"),
        pytest.param("ghost", [], id="unknown"),
    ],
)
def test_downstream_of(start: str, downstream: list[str]) -> None:
    edges = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}

    assert downstream_of(edges, start) == downstream
