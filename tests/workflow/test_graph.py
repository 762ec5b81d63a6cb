"""Step dependencies: cycles with their path, topological order, downstream steps."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pytest

from fetchflow.workflow.graph import cycle_text, downstream_of, find_cycles, topological_order

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


# -- deep graphs: every walk is iterative ----------------------------------------------------

DEEP = 10_000


def _chain(length: int, *, consumer_first: bool = False) -> dict[str, list[str]]:
    """``s1 <- s2 <- ... <- sN`` (each step reads the one before)."""
    edges = {f"s{i}": [f"s{i - 1}"] if i > 1 else [] for i in range(1, length + 1)}
    return dict(reversed(edges.items())) if consumer_first else edges


def _ring(length: int) -> dict[str, list[str]]:
    """``s1 <- s2 <- ... <- sN <- s1``."""
    return {f"s{i}": [f"s{i - 1 if i > 1 else length}"] for i in range(1, length + 1)}


@pytest.mark.parametrize("consumer_first", [False, True], ids=["producer-first", "consumer-first"])
def test_a_deep_chain_has_no_cycle_and_a_full_order(consumer_first: bool) -> None:
    edges = _chain(DEEP, consumer_first=consumer_first)

    assert find_cycles(edges) == []
    assert topological_order(edges) == [f"s{i}" for i in range(1, DEEP + 1)]
    assert downstream_of(edges, "s1") == [sid for sid in edges if sid != "s1"]


def test_a_deep_cycle_is_found_whole() -> None:
    cycles = find_cycles(_ring(DEEP))

    assert len(cycles) == 1
    assert cycles[0] == [*(f"s{i}" for i in range(2, DEEP + 1)), "s1", "s2"]


def test_a_wide_graph_orders_in_file_order() -> None:
    edges: dict[str, list[str]] = {"root": [], **{f"s{i}": ["root"] for i in range(DEEP)}}

    assert topological_order(edges) == list(edges)


@pytest.mark.parametrize(
    ("cycle", "text"),
    [
        pytest.param(["a", "a"], "a -> a", id="self-loop"),
        pytest.param(["b", "a", "b"], "b -> a -> b", id="short-whole"),
        pytest.param(
            [*(f"s{i}" for i in range(1, 12)), "s1"],
            "s1 -> s2 -> s3 -> s4 -> s5 -> s6 -> s7 -> s8 -> s9 -> s10 -> s11 -> s1",
            id="eleven-steps-whole",
        ),
        pytest.param(
            [*(f"s{i}" for i in range(1, 13)), "s1"],
            "s1 -> s2 -> s3 -> ... (7 more) ... -> s11 -> s12 -> s1",
            id="twelve-steps-shortened",
        ),
        pytest.param(
            [*(f"s{i}" for i in range(2, DEEP + 1)), "s1", "s2"],
            "s2 -> s3 -> s4 -> ... (9995 more) ... -> s10000 -> s1 -> s2",
            id="ten-thousand",
        ),
    ],
)
def test_cycle_text_leaves_out_the_middle_of_a_long_cycle(cycle: list[str], text: str) -> None:
    assert cycle_text(cycle) == text


def test_a_tangle_is_one_cycle_found_in_linear_time() -> None:
    # s1 <- s2 <- ... <- sN, and every step also needs s1: N - 1 loops through s1. Listing
    # each (as the first search did) took 20 s and 4 GB for 10 000 steps.
    edges = {f"s{i}": [f"s{i + 1}"] if i < DEEP else [] for i in range(1, DEEP + 1)}
    for i in range(2, DEEP + 1):
        edges[f"s{i}"].append("s1")
    started = time.monotonic()

    cycles = find_cycles(edges)

    assert cycles == [["s2", "s1", "s2"]]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("edges", "cycles"),
    [
        pytest.param(
            {"a": ["b", "c"], "b": ["a"], "c": ["a"]}, [["b", "a", "b"]], id="figure-eight"
        ),
        pytest.param(
            {"a": ["b"], "b": ["c"], "c": ["a", "b"]},
            [["c", "b", "a", "c"]],
            id="shortest-through-the-first-step",
        ),
        pytest.param(
            {"x": ["b"], "a": ["b"], "b": ["a"]}, [["b", "a", "b"]], id="entered-from-outside"
        ),
    ],
)
def test_one_cycle_per_group_of_steps(edges: Edges, cycles: list[list[str]]) -> None:
    assert find_cycles(edges) == cycles
