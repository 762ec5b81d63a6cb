"""``contact_sheet: true`` adds one record to an image step's static output length."""

from __future__ import annotations

import pytest

from fetchflow.errors import WorkflowInvalid
from fetchflow.registry import StepRegistry
from fetchflow.step import OutputLength
from fetchflow.templating import Templates
from fetchflow.workflow.checking import check_text
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
            OutputLength(4, ("count", "contact_sheet"), at_most=4, once=1),
        ),
        (
            {"contact_sheet": True},
            frozenset(),
            OutputLength(2, ("count", "contact_sheet"), at_most=2, once=1),
        ),
        (
            {"count": 2, "contact_sheet": "<< inputs.sheet >>"},
            frozenset({"contact_sheet"}),
            OutputLength(None, ("count", "contact_sheet"), at_most=3, once=1),
        ),
        (
            {"count": "<< inputs.n >>", "contact_sheet": True},
            frozenset({"count"}),
            OutputLength(None, ("count", "contact_sheet"), at_most=11, once=1),
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
        5, ("count", "images", "contact_sheet"), at_most=5, once=1
    )
    one = {"images": ["a.png", "b.png"], "each": False, "count": 2, "contact_sheet": True}
    assert ImageEditStep.output_length(one, frozenset()) == OutputLength(
        3, ("count", "contact_sheet"), at_most=3, once=1
    )


MATRIX_FLOW = """
name: sheets
steps:
  - id: grid
    type: image_generation
    matrix:
      product: [mug, tote, cap]
      style: [ink, oil]
    prompt: "A << matrix.style >> drawing of a << matrix.product >>"
    model: preview
    count: 2
    contact_sheet: true
  - id: index
    type: template
    template: "<< grid.output.INDEX.file_name >>"
"""


@pytest.mark.parametrize(("index", "valid"), [(12, True), (13, False)], ids=["sheet", "past"])
def test_a_matrix_has_one_sheet_for_all_its_combinations(index: int, valid: bool) -> None:
    text = MATRIX_FLOW.replace("INDEX", str(index))
    registry = StepRegistry.from_entry_points()
    if valid:  # 3 x 2 combinations x count 2 = 12 images (0-11), then the sheet
        check_text(text, "m.yaml", registry, Templates([]))
        return
    with pytest.raises(WorkflowInvalid) as caught:
        check_text(text, "m.yaml", registry, Templates([]))
    assert [problem.format() for problem in caught.value.problems] == [
        'm.yaml:15:19: step "index" (template) field "template": "grid.output.13.file_name": '
        "grid.output has 13 items (set by matrix and count and contact_sheet), so there is no "
        "item 13\n  hint: use an index from 0 to 12 (or -13 to -1), or change matrix or count "
        "or contact_sheet"
    ]
