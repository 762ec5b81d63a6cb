"""``contact_sheet: true`` adds one record to an image step's static output length."""

from __future__ import annotations

import pytest

from fetchflow.step import OutputLength
from steps.image_edit import ImageEditStep
from steps.image_generation import ImageGenerationStep


@pytest.mark.parametrize(
    ("fields", "templated", "expected"),
    [
        ({"count": 3}, frozenset(), OutputLength(3, ("count",), at_most=3)),
        ({"count": 3, "contact_sheet": False}, frozenset(), OutputLength(3, ("count",), 3)),
        (
            {"count": 3, "contact_sheet": True},
            frozenset(),
            OutputLength(4, ("count", "contact_sheet"), at_most=4),
        ),
        (
            {"contact_sheet": True},
            frozenset(),
            OutputLength(2, ("count", "contact_sheet"), at_most=2),
        ),
        (
            {"count": 2, "contact_sheet": "<< inputs.sheet >>"},
            frozenset({"contact_sheet"}),
            OutputLength(None, ("count", "contact_sheet"), at_most=3),
        ),
        (
            {"count": "<< inputs.n >>", "contact_sheet": True},
            frozenset({"count"}),
            OutputLength(None, ("count", "contact_sheet"), at_most=11),
        ),
    ],
    ids=[
        "no-sheet",
        "sheet-off",
        "sheet-last",
        "count-default",
        "sheet-templated",
        "count-templated",
    ],
)
def test_generation_length(
    fields: dict[str, object], templated: frozenset[str], expected: OutputLength
) -> None:
    assert ImageGenerationStep.output_length(fields, templated) == expected


def test_edit_length_counts_the_sheet_once_for_every_edit() -> None:
    fields = {"images": ["a.png", "b.png"], "each": True, "count": 2, "contact_sheet": True}
    assert ImageEditStep.output_length(fields, frozenset()) == OutputLength(
        5, ("count", "images", "contact_sheet"), at_most=5
    )
    one = {"images": ["a.png", "b.png"], "each": False, "count": 2, "contact_sheet": True}
    assert ImageEditStep.output_length(one, frozenset()) == OutputLength(
        3, ("count", "contact_sheet"), at_most=3
    )
