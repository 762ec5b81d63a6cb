"""The grid of a step's images, read from the records' matrix values (pure)."""

from __future__ import annotations

import pytest

from fetchflow.matrix_grid import (
    MAX_CELL_IMAGES,
    MAX_ROWS,
    Grid,
    is_contact_sheet,
    plan_grid,
    value_text,
)

PRODUCTS, STYLES = ["mug", "tote", "cap"], ["watercolor", "studio photo"]
CARTESIAN = [{"product": p, "style": s} for p in PRODUCTS for s in STYLES]


@pytest.mark.parametrize(
    ("matrices", "expected"),
    [
        pytest.param(
            CARTESIAN,
            Grid(
                "product \\ style",
                ("mug", "tote", "cap"),
                ("watercolor", "studio photo"),
                (((0,), (1,)), ((2,), (3,)), ((4,), (5,))),
                1,
                0,
            ),
            id="two-axes-rows-then-columns",
        ),
        pytest.param(
            CARTESIAN[:3] + CARTESIAN[4:],
            Grid(
                "product \\ style",
                ("mug", "tote", "cap"),
                ("watercolor", "studio photo"),
                (((0,), (1,)), ((2,), ()), ((3,), (4,))),
                1,
                0,
            ),
            id="a-failed-combination-is-an-empty-cell",
        ),
        pytest.param(
            [{"style": "a"}, {"style": "b"}, {"style": "a"}, {"style": "b"}],
            Grid("style", ("",), ("a", "b"), (((0, 2), (1, 3)),), 2, 0),
            id="one-axis-one-row-count-2-side-by-side",
        ),
        pytest.param(
            [{"a": a, "b": True, "c": c} for a in (1, 2) for c in ("x", "y")],
            Grid(
                "a, b \\ c",
                ("a=1, b=true", "a=2, b=true"),
                ("x", "y"),
                (((0,), (1,)), ((2,), (3,))),
                1,
                0,
            ),
            id="three-axes-rows-are-combinations",
        ),
        pytest.param(
            [{"product": "mug", "style": "ink"}, {"product": "tote", "style": "oil"}],
            Grid(
                "product + style",
                ("",),
                ("product=mug, style=ink", "product=tote, style=oil"),
                (((0,), (1,)),),
                1,
                0,
            ),
            id="zipped-axes-one-row-of-pairs",
        ),
        pytest.param(
            [{}, {}, {}],
            Grid("#", ("",), ("1", "2", "3"), (((0,), (1,), (2,)),), 1, 0),
            id="no-matrix-numbered-side-by-side",
        ),
    ],
)
def test_layout(matrices: list[dict[str, object]], expected: Grid) -> None:
    assert plan_grid(matrices) == expected


def test_many_variations_wrap_in_rows_that_say_what_they_hold() -> None:
    grid = plan_grid([{}] * 23)
    assert grid.row_labels == ("1–10", "11–20", "21–23")
    assert grid.column_labels == tuple(str(n) for n in range(1, 11))
    assert grid.cells[2][:4] == ((20,), (21,), (22,), ())
    assert (grid.shown, grid.left_out) == (23, 0)


def test_large_grids_are_bounded_and_say_what_they_leave_out() -> None:
    matrices = [{"row": r, "column": c} for r in range(20) for c in range(30)]
    grid = plan_grid(matrices)
    assert len(grid.row_labels) == MAX_ROWS
    assert len(grid.column_labels) == MAX_CELL_IMAGES
    assert grid.shown == MAX_ROWS * MAX_CELL_IMAGES
    assert grid.left_out == 600 - grid.shown
    wide = plan_grid([{"s": s} for s in range(20) for _ in range(6)])  # count 6 per value
    assert wide.per_cell == 4 and len(wide.column_labels) == MAX_CELL_IMAGES // 4
    assert wide.left_out == 120 - 3 * 4


def test_a_contact_sheet_is_told_by_its_provenance_kind() -> None:
    assert is_contact_sheet({"provenance": {"kind": "contact_sheet"}})
    assert not is_contact_sheet({"provenance": {"seed": "1"}})
    assert not is_contact_sheet({})


def test_a_value_whose_combinations_all_made_nothing_keeps_its_column_empty() -> None:
    # style=a/b × thing=cat/forbidden: both "forbidden" images were blocked and skipped.
    every = [{"style": s, "thing": t} for s in ("a", "b") for t in ("cat", "forbidden")]
    made = [every[0], every[2]]

    grid = plan_grid(made, every)

    assert grid == Grid(
        "style \\ thing", ("a", "b"), ("cat", "forbidden"), (((0,), ()), ((1,), ())), 1, 0
    )
    assert plan_grid([], every).cells == (((), ()), ((), ()))


def test_an_asset_record_as_axis_value_is_labelled_by_its_file_name() -> None:
    records = [
        {"file_name": f"base-{n}.png", "sha256": f"{n}" * 64, "file_url": f"file:///x/{n}.png"}
        for n in (1, 2)
    ]
    matrices = [{"img": r, "light": light} for r in records for light in ("warm", "cold")]

    grid = plan_grid(matrices)

    assert grid.row_labels == ("base-1.png", "base-2.png")
    assert value_text({"file_name": "a.png", "n": 1}) == '{"file_name":"a.png","n":1}'
