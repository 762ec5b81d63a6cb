"""Drafts in a step's progress artifact (:meth:`StepProgress.preview`), in a real flow run.

The latest draft of each item is shown as a small inline thumbnail below the count, is
kept when the step is done, and replaces the item's earlier draft; a draft that is no image
is left out with a warning, never an error.
"""

from __future__ import annotations

import base64
import io
import logging
import re

import pytest
from PIL import Image

from tests.orchestration.test_artifacts import read_artifacts, run_flow

__all__ = ["run_flow"]  # the fixture, used by name


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.prefect
def test_the_latest_draft_of_each_item_is_a_thumbnail_in_the_progress_artifact(
    run_flow: object, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect import task

    from fetchflow.orchestration.artifacts import PREVIEW_PX, StepProgress

    @task(name="drafts", persist_result=False)
    def drafts() -> None:
        progress = StepProgress(workflow="shots", step_id="hero", min_interval=0)
        progress.start(3)
        progress.preview(0, "partial 1 of 2", png((255, 0, 0)))
        progress.preview(2, "partial 1 of 2", b"<html>not an image</html>")
        progress.preview(0, "partial 2 of 2", png((0, 0, 255)))
        progress.preview(1, "partial 1 of 2", png((0, 255, 0)))
        progress.advance(3)

    with caplog.at_level(logging.WARNING):
        artifacts = read_artifacts(run_flow(lambda: drafts.submit().wait()))  # type: ignore[operator]

    progress = artifacts["shots-hero-progress"]
    assert progress.data == 100
    description = str(progress.description)
    assert description.startswith("3 of 3 done\n\n**Live previews** (partial images as they ")
    shown = re.findall(r"!\[([^\]]+)\]\((data:image/[a-z]+;base64,[^)]+)\)", description)
    assert [label for label, _ in shown] == ["image 1, partial 2 of 2", "image 2, partial 1 of 2"]
    assert "| image 1 | image 2 |" in description
    first = base64.b64decode(shown[0][1].split(",", 1)[1])
    with Image.open(io.BytesIO(first)) as thumbnail:
        assert max(thumbnail.size) == PREVIEW_PX
        assert thumbnail.convert("RGB").getpixel((5, 5))[2] > 200  # the blue, latest draft
    assert "draft of item 3 not shown:" in caplog.text
