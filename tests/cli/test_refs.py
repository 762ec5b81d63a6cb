"""``fetchflow refs``, the variable picker, through the real command (``python -m
fetchflow.cli`` in a subprocess): what each step can use, with types and descriptions from
the output schemas, and with ``--run`` the values a real run produced (the offline
``preview`` model against the session's Prefect server). Never imports Prefect.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from test_bad_input_catalogue import (  # noqa: F401
    Outcome,
    Sandbox,
    fake_gemini,
    fake_openai,
    probe_dir,
    sandbox,
)

from fetchflow.registry import StepRegistry
from fetchflow.run.checkpoints import Checkpoints
from fetchflow.run.reuse import step_fingerprint
from fetchflow.storage import LocalStore
from fetchflow.workflow.checking import check_file

DATA = Path(__file__).resolve().parents[1] / "data" / "refs"
PICKER, OTHER, BROKEN = DATA / "picker.yaml", DATA / "other.yaml", DATA / "broken.yaml"
ASSET_FIELDS = [
    "id",
    "file_url",
    "file_name",
    "file_size",
    "file_type",
    "width",
    "height",
    "sha256",
    "storage_uri",
    "step_id",
    "run_id",
    "created_at",
    "model",
]


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:  # noqa: F811
    """The catalogue's sandbox: fake providers, import probe, its own home and store."""
    return sandbox


def refs(box: Sandbox, *args: str) -> Outcome:
    """``fetchflow refs``: no traceback, and Prefect never imported."""
    outcome = box.fetchflow("refs", *args)
    assert "Traceback" not in outcome.stderr
    assert "internal error" not in outcome.stderr
    assert outcome.prefect_modules == [], args
    return outcome


def rows(text: str) -> dict[str, list[str]]:
    """The listing's rows by path: ``{path: [type, description or value]}``."""
    found = {}
    for line in text.splitlines():
        if line.startswith("  "):
            path, *rest = re.split(r"\s{2,}", line.strip())
            found[path] = rest
    return found


def document(box: Sandbox, *args: str) -> dict[str, object]:
    outcome = refs(box, *args, "--json")
    assert outcome.code == 0, outcome.stderr
    parsed: dict[str, object] = json.loads(outcome.stdout)
    return parsed


def by_step(parsed: dict[str, object]) -> dict[str, dict[str, object]]:
    steps = parsed["steps"]
    assert isinstance(steps, list)
    return {step["id"]: step for step in steps}


def put_run(box: Sandbox, path: Path, run_id: str) -> None:
    """A run's record as a run writes it (no step finished)."""
    plan = check_file(path, StepRegistry.from_entry_points())
    store = LocalStore(box.store, spool_dir=box.tmp / "spool")
    fingerprints = {sid: step_fingerprint(step) for sid, step in plan.steps.items()}
    Checkpoints(lambda: store, run_id).start(plan, {}, fingerprints)


# -- the listing -----------------------------------------------------------------------------


def test_a_step_lists_inputs_the_steps_it_may_read_and_run_with_types(box: Sandbox) -> None:
    outcome = refs(box, str(PICKER), "note")

    assert outcome.code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines[0] == "note (template) reads hero · may also read brief, side"
    listed = rows(outcome.stdout)
    assert listed["inputs.product"] == ["string", 'What the shot shows. (default: "blue vase")']
    assert listed["inputs.tags"] == ["list", '(default: ["studio"])']
    assert listed["hero.output"][0] == "list[object]"
    assert listed["hero.output"][1].startswith("2 items. The output of hero.")
    assert listed["hero.output.N.file_url"][0] == "string"
    assert listed["hero.output.N.file_url"][1].startswith("A URL to fetch the file")
    assert listed["hero.output.N.file_size"] == ["integer", "Size in bytes."]
    assert listed["hero.output.N.width"] == ["integer | null", "Width in pixels, for images."]
    assert listed["brief.output"][0] == "string"
    assert listed["run.started_at"] == ["string", "When the run started, ISO 8601 in UTC."]
    assert [path for path in listed if path.startswith("run.")] == [
        "run.id",
        "run.name",
        "run.started_at",
    ]
    # Its own output is not listed, and the columns line up.
    assert "note.output" not in listed
    body = [line for line in lines[1:] if line.startswith("  ")]
    type_columns = {
        line.index(row[0], 2 + len(path))
        for line, (path, row) in zip(body, listed.items(), strict=True)
    }
    assert len(type_columns) == 1


def test_a_step_never_sees_itself_or_the_steps_downstream_of_it(box: Sandbox) -> None:
    steps = by_step(document(box, str(PICKER)))

    def outputs(step: str) -> list[str]:
        references = steps[step]["references"]
        assert isinstance(references, list)
        return [r["path"] for r in references if r["path"].endswith(".output")]

    assert list(steps) == ["brief", "hero", "side", "note"]
    assert outputs("brief") == ["side.output"]
    assert outputs("hero") == ["brief.output", "side.output"]
    assert outputs("side") == ["brief.output", "hero.output", "note.output"]
    assert outputs("note") == ["brief.output", "hero.output", "side.output"]
    assert steps["note"]["upstream"] == ["hero"]
    assert steps["note"]["readable"] == ["brief", "hero", "side"]


def test_json_gives_every_field_of_the_asset_record_from_the_output_schema(box: Sandbox) -> None:
    steps = by_step(document(box, str(PICKER), "note"))

    assert list(steps) == ["note"]
    references = {r["path"]: r for r in steps["note"]["references"]}  # type: ignore[union-attr]
    item_fields = [
        path.removeprefix("hero.output.N.")
        for path in references
        if path.startswith("hero.output.N.")
    ]
    assert item_fields[: len(ASSET_FIELDS)] == ASSET_FIELDS
    assert references["hero.output"] == {
        "path": "hero.output",
        "type": "list[object]",
        "description": references["hero.output"]["description"],
        "items": "2",
    }
    assert references["hero.output.N.file_size"] == {
        "path": "hero.output.N.file_size",
        "type": "integer",
        "description": "Size in bytes.",
    }
    assert references["inputs.product"] == {
        "path": "inputs.product",
        "type": "string",
        "description": "What the shot shows.",
        "default": "blue vase",
    }
    assert references["run.id"]["type"] == "string"


# -- bad input -------------------------------------------------------------------------------


def test_an_unknown_step_exits_2_naming_the_closest(box: Sandbox) -> None:
    outcome = refs(box, str(PICKER), "heor")

    assert outcome.code == 2
    assert outcome.stdout == ""
    assert outcome.stderr == (
        f'fetchflow: no step "heor" in {PICKER}; did you mean "hero"?\n'
        f"  hint: use fetchflow refs {PICKER} hero\n"
    )


def test_an_unknown_run_exits_2_naming_the_closest_run_in_the_store(box: Sandbox) -> None:
    put_run(box, PICKER, "run-alpha-1234")

    outcome = refs(box, str(PICKER), "--run", "run-alpha-1243")

    assert outcome.code == 2
    assert outcome.stderr == (
        f"fetchflow: no run 'run-alpha-1243' in the asset store {box.store}; "
        "did you mean 'run-alpha-1234'?\n"
        "  hint: use --run run-alpha-1234\n"
    )


def test_a_malformed_run_id_exits_2(box: Sandbox) -> None:
    outcome = refs(box, str(PICKER), "--run", "../etc")

    assert outcome.code == 2
    assert outcome.stderr.startswith("fetchflow: run '../etc' is not a run id\n  hint: ")


def test_a_run_of_another_workflow_exits_2(box: Sandbox) -> None:
    put_run(box, OTHER, "run-of-other")

    outcome = refs(box, str(PICKER), "--run", "run-of-other")

    assert outcome.code == 2
    assert outcome.stderr == (
        "fetchflow: run 'run-of-other' is a run of workflow 'other', not 'picker'\n"
        f"  hint: give a run of picker (fetchflow runs {PICKER})\n"
    )


def test_an_invalid_workflow_exits_2_with_what_validate_says(box: Sandbox) -> None:
    outcome = refs(box, str(BROKEN))

    assert outcome.code == 2
    assert outcome.stderr == (
        f'{BROKEN}:9:19: step "note" (template) field "template": "brief.outptu": a step '
        'exposes only "output", got "outptu"\n  hint: use brief.output\n'
    )


# -- a real run's values ---------------------------------------------------------------------


@pytest.mark.prefect
def test_run_shows_the_values_a_real_run_produced(box: Sandbox, prefect_api: str) -> None:
    box.env["PREFECT_API_URL"] = prefect_api
    try:
        ran = box.fetchflow("run", str(PICKER), "--input", "product=red bowl")
    finally:
        del box.env["PREFECT_API_URL"]
    assert ran.code == 0, ran.stderr
    found = re.search(r"▶ \w+ · run (\S+)", ran.stderr)
    assert found, ran.stderr
    run_id = found.group(1)

    text = refs(box, str(PICKER), "note", "--run", run_id)
    parsed = document(box, str(PICKER), "note", "--run", run_id)

    assert text.code == 0, text.stderr
    listed = rows(text.stdout)
    assert listed["inputs.product"] == ["string", '"red bowl"']
    assert listed["brief.output"] == ["string", '"Studio shot of a red bowl."']
    assert listed["hero.output"] == ["list[object]", "[2 items]"]
    assert listed["hero.output.1.file_name"] == ["string", '"hero-2.png"']
    assert listed["hero.output.0.width"] == ["integer | null", "64"]
    assert listed["run.id"] == ["string", json.dumps(run_id)]
    assert listed["run.name"] == ["string", "—"]  # kept by Prefect only
    assert listed["side.output"] == ["string", '"A side note."']
    references = {r["path"]: r for r in by_step(parsed)["note"]["references"]}  # type: ignore[union-attr]
    urls = references["hero.output.N.file_url"]["values"]
    assert [value["path"] for value in urls] == [
        "hero.output.0.file_url",
        "hero.output.1.file_url",
    ]
    for value in urls:
        path = Path(url2pathname(urlparse(value["value"]).path))
        assert path.is_file() and path.is_relative_to(box.store)
    sizes = references["hero.output.N.file_size"]["values"]
    assert [value["value"] for value in sizes] == [
        Path(url2pathname(urlparse(url["value"]).path)).stat().st_size for url in urls
    ]
    assert parsed["run"] == run_id
