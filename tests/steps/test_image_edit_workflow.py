"""image_edit chained in a workflow run as a real Prefect flow run (offline, preview model).

``tests/data/image_flows/edit_chain.yaml``: image_generation -> image_edit (outpaint to
16:9) -> image_edit (background removal) -> image_transform. Each step reads the previous
step's record through the run's store; what only a real run shows is that the records
flow through the templates and every file they name is in the store, as described.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from fetchflow.registry import StepRegistry
from fetchflow.run.report import RunReport
from fetchflow.settings import Settings
from fetchflow.storage import LocalStore
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs

pytestmark = pytest.mark.prefect

FLOWS = Path(__file__).resolve().parents[1] / "data" / "image_flows"
REGISTRY = StepRegistry.from_entry_points()


def run_workflow(name: str, home: Path) -> tuple[RunReport, LocalStore]:
    """Check ``image_flows/<name>.yaml`` and run it as a flow run; the store it wrote to."""
    from fetchflow.orchestration.runner import run_plan

    plan = check_file(FLOWS / f"{name}.yaml", REGISTRY)
    settings = Settings(home=home, store=str(home / "assets"))
    report = run_plan(plan, resolve_inputs(plan.header, {}), settings=settings, drain=False)
    return report, LocalStore(home / "assets", spool_dir=settings.spool_dir)


def only_record(report: RunReport, step_id: str) -> dict[str, object]:
    step = report.steps[step_id]
    assert step.status == "completed", step.error
    assert isinstance(step.output, list) and len(step.output) == 1
    record = step.output[0]
    assert isinstance(record, dict)
    return record


def stored_image(store: LocalStore, record: dict[str, object]) -> Image.Image:
    """The record's file, read from the store, checked against the record."""
    data = store.read(str(record["storage_uri"]))
    assert hashlib.sha256(data).hexdigest() == record["sha256"]
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (record["width"], record["height"])
    assert image.format == "PNG" and record["file_type"] == "image/png"
    return image


def test_generate_outpaint_cut_out_and_shrink_in_one_run(
    prefect_api: str,
    scrub_environ: Callable[[pytest.MonkeyPatch], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    scrub_environ(monkeypatch)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)  # Settings reads ./.env: a developer's one must not count

    report, store = run_workflow("edit_chain", home)

    assert report.status == "completed", report.message
    hero, wide, cutout, thumb = (
        only_record(report, step_id) for step_id in ("hero", "wide", "cutout", "thumb")
    )
    assert stored_image(store, hero).size == (512, 512)

    wide_image = stored_image(store, wide)
    width, height = wide_image.size
    assert abs(width - height * 16 / 9) <= 1
    provenance = wide["provenance"]
    assert isinstance(provenance, dict)
    assert provenance["edit"] == "outpaint" and provenance["source_sha256"] == hero["sha256"]
    assert wide["model"] == "preview" and wide["step_id"] == "wide"

    cut_image = stored_image(store, cutout)
    assert cut_image.size == (width, height)
    provenance = cutout["provenance"]
    assert isinstance(provenance, dict)
    assert provenance["edit"] == "remove_background"
    assert provenance["source_sha256"] == wide["sha256"]
    assert cut_image.mode == "RGBA"
    assert cut_image.getchannel("A").getextrema() == (0, 255)  # cut out around a subject

    thumb_image = stored_image(store, thumb)
    assert thumb_image.width == 256 and abs(thumb_image.height - 256 * height / width) <= 1
    provenance = thumb["provenance"]
    assert isinstance(provenance, dict) and provenance["source_sha256"] == cutout["sha256"]
    assert thumb["model"] == "pillow"
    assert thumb_image.mode == "RGBA" and thumb_image.getchannel("A").getextrema()[0] == 0
