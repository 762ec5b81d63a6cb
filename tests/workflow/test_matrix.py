"""Step matrices, the pure part: combinations, their count, axis rules, output length."""

from __future__ import annotations

import pytest

from fetchflow.step import OutputLength
from fetchflow.workflow.matrix import (
    MAX_COMBINATIONS,
    MatrixMode,
    axis_problem,
    combination_count,
    combination_label,
    combinations,
    combinations_problem,
    describe_matrix,
    matrix_output_length,
    rendered_axis_problem,
)


def test_product_is_itertools_product_of_the_axes_as_written() -> None:
    axes = {"product": ["mug", "tote"], "style": ["ink", "oil", "clay"]}

    found = combinations(axes, "product")

    assert [(c["product"], c["style"]) for c in found] == [
        ("mug", "ink"),
        ("mug", "oil"),
        ("mug", "clay"),
        ("tote", "ink"),
        ("tote", "oil"),
        ("tote", "clay"),
    ]
    assert [list(c) for c in found] == [["product", "style"]] * 6  # axis order kept
    assert combination_count({"product": 2, "style": 3}, "product") == 6


def test_zip_pairs_the_values_item_by_item() -> None:
    axes = {"product": ["mug", "tote"], "size": [{"w": 1}, {"w": 2}]}

    assert combinations(axes, "zip") == [
        {"product": "mug", "size": {"w": 1}},
        {"product": "tote", "size": {"w": 2}},
    ]
    assert combination_count({"product": 2, "size": 2}, "zip") == 2


@pytest.mark.parametrize(
    ("axis", "value", "expected"),
    [
        ("style", ["ink"], None),
        ("style", "<< inputs.styles >>", None),
        ("style", [], "a matrix axis needs at least one value, got an empty list"),
        ("style", "ink", 'a matrix axis is a list of values, got "ink"'),
        ("style", {"a": 1}, 'a matrix axis is a list of values, got {"a": 1}'),
        ("2nd", ["x"], "matrix axis name '2nd' is not an identifier"),
    ],
    ids=["list", "template", "empty", "text", "mapping", "name"],
)
def test_axis_rules(axis: str, value: object, expected: str | None) -> None:
    problem = axis_problem(axis, value)

    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem[1].startswith(expected)
        assert problem[0] == axis


def test_a_bad_name_gets_a_fixed_one() -> None:
    assert axis_problem("2nd", ["x"]) == (
        "2nd",
        "matrix axis name '2nd' is not an identifier (letters, digits, _); templates read "
        "it as matrix.<name>",
        "rename it to _2nd",
    )


def test_rendered_axes_say_what_they_were_rendered_from() -> None:
    assert rendered_axis_problem("p", "mug", "<< inputs.p >>") == (
        "p",
        "a matrix axis is a list of values, got \"mug\" (rendered from '<< inputs.p >>')",
        "make the template give a list, e.g. an input of type list",
    )
    assert rendered_axis_problem("p", ["mug"], "<< inputs.p >>") is None


def test_zip_needs_equal_lengths_and_product_a_bounded_count() -> None:
    unequal = combinations_problem({"a": [1, 2], "b": [1]}, "zip")
    assert unequal is not None and unequal[0] == "b"
    assert "a has 2, b has 1" in unequal[1]
    assert combinations_problem({"a": [1, 2], "b": [3, 4]}, "zip") is None

    side = int(MAX_COMBINATIONS**0.5)
    values = list(range(side + 1))  # each value once: a repeated one is its own problem
    assert combinations_problem({"a": values[:side], "b": values[:side]}, "product") is None
    over = combinations_problem({"a": values[:side], "b": values}, "product")
    assert over is not None and over[0] == "a"
    assert (
        over[1] == f"the matrix makes {side * (side + 1)} combinations (a 16 × b 17), more than 256"
    )


def test_labels_and_descriptions() -> None:
    assert combination_label({"product": "mug", "n": 2, "on": True}) == "product=mug n=2 on=true"
    assert describe_matrix({"a": [1, 2, 3], "b": [1, 2]}, "product") == (
        "6 combinations (a 3 × b 2)"
    )
    assert describe_matrix({"a": [1, 2], "b": [1, 2]}, "zip") == "2 combinations (a 2 zip b 2)"
    assert describe_matrix({"a": "<< inputs.a >>", "b": [1]}, "product") == (
        "combinations known when it runs (a (a template) × b 1)"
    )


@pytest.mark.parametrize(
    ("per", "count", "list_output", "expected"),
    [
        (OutputLength(2, ("count",), 2), 6, True, OutputLength(12, ("matrix", "count"), 12)),
        (None, 6, False, OutputLength(6, ("matrix",), 6)),
        (None, 6, True, None),
        (
            OutputLength(None, ("count",), 10),
            3,
            True,
            OutputLength(None, ("matrix", "count"), 30),
        ),
        (OutputLength(1, ("count",), 1), None, True, OutputLength(None, ("matrix", "count"), 256)),
    ],
    ids=["counted", "one-per-combination", "unknown", "templated-count", "templated-axis"],
)
def test_output_length_is_count_times_one_combination(
    per: OutputLength | None, count: int | None, list_output: bool, expected: OutputLength | None
) -> None:
    assert matrix_output_length(per, count, list_output) == expected


def test_refs_list_the_axes_and_the_joined_output() -> None:
    from pathlib import Path

    from fetchflow.registry import StepRegistry
    from fetchflow.workflow.checking import check_file
    from fetchflow.workflow.refs import plan_refs

    grid = Path(__file__).resolve().parents[1] / "data" / "matrix" / "grid.yaml"
    plan = check_file(grid, StepRegistry.from_entry_points())
    hero, _, index = plan_refs(plan)

    axes = [ref for ref in hero.refs if ref.root == "matrix"]
    assert [(ref.path, ref.type, ref.description) for ref in axes] == [
        (
            "matrix.product",
            "string",
            'This combination\'s product: one of "mug", "tote", "poster".',
        ),
        (
            "matrix.style",
            "string",
            'This combination\'s style: one of "watercolor", "studio photo".',
        ),
    ]
    listed = {ref.path: ref for ref in index.refs}
    assert listed["hero.output"].items == "6"
    assert listed["pairs.output"].items == "2"
    assert "hero.output.N.matrix" in listed
    assert not any(ref.root == "matrix" for ref in index.refs)  # no matrix of its own


def test_a_combination_with_an_asset_record_is_labelled_by_its_file_name() -> None:
    record = {"file_name": "base-2.png", "sha256": "ab" * 32, "file_url": "https://x/y?sig=z"}
    assert combination_label({"img": record, "light": "warm"}) == "img=base-2.png light=warm"


@pytest.mark.parametrize(
    ("axes", "mode", "expected"),
    [
        pytest.param(
            {"style": ["ink", "ink", "oil"], "n": [1, 2]},
            "product",
            (
                "style",
                '"ink" is listed twice in style, so every combination with it would be made '
                "(and paid for) twice",
                "list each value of style once",
            ),
            id="product-repeated-value",
        ),
        pytest.param(
            {"a": [1, 1, 2], "b": ["x", "x", "y"]},
            "zip",
            (
                "b",
                'matrix_mode zip pairs a=1, b="x" twice, so that combination would be made '
                "(and paid for) twice",
                "change one of the two pairs, or remove one",
            ),
            id="zip-repeated-pair",
        ),
        pytest.param({"a": [1, 1, 2], "b": ["x", "y", "y"]}, "zip", None, id="zip-pairs-differ"),
        pytest.param({"d": [{"k": 1}, {"k": 2}]}, "product", None, id="distinct-mappings"),
    ],
)
def test_a_combination_made_twice_is_a_problem(
    axes: dict[str, list[object]], mode: MatrixMode, expected: object
) -> None:
    assert combinations_problem(axes, mode) == expected
