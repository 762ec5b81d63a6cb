"""Rendering a step's fields at run time: a failed template says which reference failed."""

from __future__ import annotations

import pytest

from fetchflow.errors import TemplateError
from fetchflow.registry import StepRegistry
from fetchflow.run.execution import render_config
from fetchflow.templating import Templates
from fetchflow.workflow.checking import check_text

HINT = (
    "check the references in this field against the upstream outputs (fetchflow validate "
    "checks list indexes only against lengths written out, such as count: 2; a length set "
    "by a template is known once its step has run)"
)

WORKFLOW = """\
name: a count set by an input
inputs:
  count: {type: integer, default: 2}
steps:
  - id: hero
    type: image_generation
    prompt: a vase
    count: "<< inputs.count >>"
  - id: caption
    type: template
    template: "%s"
"""

TWO_IMAGES = [{"file_url": "https://x/0.png"}, {"file_url": "https://x/1.png"}]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param(
            "<< hero.output.5.file_url >>",
            '"hero.output.5.file_url": hero.output has 2 items, so there is no item 5',
            id="fast-path",
        ),
        pytest.param(
            "<< hero.output[-3].file_url | upper >>",
            '"hero.output[-3].file_url": hero.output has 2 items, so there is no item -3',
            id="full-parse-negative",
        ),
        pytest.param(
            "<< hero.output.1.seed >>",
            "'dict object' has no attribute 'seed'",
            id="other-failures-keep-jinja-words",
        ),
    ],
)
def test_an_index_past_a_templated_count_fails_clearly_at_run_time(
    template: str, message: str
) -> None:
    plan = check_text(
        WORKFLOW % template, "w.yaml", StepRegistry.from_entry_points(), Templates([])
    )
    scope = {"inputs": {"count": 2}, "hero": {"output": TWO_IMAGES}}

    with pytest.raises(TemplateError) as caught:
        render_config(plan.steps["caption"], plan.templates, scope)

    assert caught.value.message == f'field "template": template failed: {message}'
    assert caught.value.hint == HINT
