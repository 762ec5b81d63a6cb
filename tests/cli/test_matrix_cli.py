"""``matrix:`` through the real command: validate counts the combinations and finds every
matrix problem where it is, ``--dry-run`` prices each combination, a run makes one record
per combination (axis values, combination order), zip pairs the axes, ``--resume``
after one failed combination makes exactly the one missing image, and so does ``--only``
(an edited prompt makes every combination again; ``--from`` after that makes none)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

# The fakes live in tests/steps/fakes, imported as ``fakes`` (as the step tests do).
_STEP_TESTS = str(Path(__file__).resolve().parents[1] / "steps")
if _STEP_TESTS not in sys.path:
    sys.path.insert(0, _STEP_TESTS)

from fakes import RecordedRequest, Reply  # noqa: E402
from fakes.fake_openai import openai_error_body  # noqa: E402
from test_bad_input_catalogue import (  # noqa: E402, F401
    Sandbox,
    fake_gemini,
    fake_openai,
    probe_dir,
    sandbox,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "matrix"
GRID = DATA / "grid.yaml"
COMBINATIONS = [
    {"product": product, "style": style}
    for product in ("mug", "tote", "poster")
    for style in ("watercolor", "studio photo")
]


def test_validate_counts_the_combinations_and_dry_run_prices_each(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    checked = sandbox.fetchflow("validate", str(GRID))

    assert (checked.code, checked.stderr) == (0, "")
    assert checked.stdout.splitlines() == [
        f"{GRID}: ok (3 steps)",
        "  hero: matrix of 6 combinations (product 3 × style 2)",
        "  pairs: matrix of 2 combinations (product 2 zip style 2)",
    ]

    dry = sandbox.fetchflow("run", str(GRID), "--dry-run")

    assert (dry.code, dry.stderr) == (0, "")
    lines = dry.stdout.splitlines()
    assert lines[2] == "  hero   image_generation   $0.0300  6 combinations"  # 6 × $0.005
    for values in COMBINATIONS:
        label = f"product={values['product']} style={values['style']}"
        price = "$0.0050  1 x gpt-image-1-mini low 1024x1024 at $0.005"
        assert f"           {label}: {price}" in lines
    assert "           product=tote style=oil: $0.0000  1 x preview (free)" in lines
    assert "estimated total: $0.0300" in lines
    sandbox.assert_nothing_happened(dry)

    over = sandbox.fetchflow("run", str(GRID), "--budget", "0.02")

    assert over.code == 2
    assert over.stderr.splitlines()[0] == (
        "fetchflow: the run is estimated at $0.0300, over its budget of $0.02 "
        "(most of it: hero, $0.0300)"
    )
    sandbox.assert_nothing_happened(over)


def test_every_matrix_problem_is_found_where_it_is(sandbox: Sandbox) -> None:  # noqa: F811
    broken = DATA / "broken.yaml"

    outcome = sandbox.fetchflow("validate", str(broken))

    assert (outcome.code, outcome.stdout) == (2, "")
    assert outcome.stderr.splitlines() == [
        f'{broken}:7:7: step "empty_axis" (template) field "matrix.style": a matrix axis '
        "needs at least one value, got an empty list",
        "  hint: list the values of style, or remove the axis",
        f'{broken}:12:7: step "not_a_list" (template) field "matrix.style": a matrix axis '
        'is a list of values, got "watercolor"',
        "  hint: write a list, e.g. style: [watercolor, studio photo], or a template that "
        "gives one",
        f'{broken}:17:7: step "bad_name" (template) field "matrix.art-style": matrix axis '
        "name 'art-style' is not an identifier (letters, digits, _); templates read it as "
        "matrix.<name>",
        "  hint: rename it to art_style",
        f'{broken}:24:7: step "zipped" (template) field "matrix.style": matrix_mode zip '
        "pairs the axes item by item, so they need as many values each: product has 3, "
        "style has 2",
        "  hint: give style 3 values, or use matrix_mode: product for every combination",
        f'{broken}:29:7: step "too_many" (template) field "matrix.a": the matrix makes '
        "289 combinations (a 17 × b 17), more than 256",
        "  hint: use fewer values, split the step in two, or use matrix_mode: zip; a matrix "
        "makes at most 256 combinations",
        f'{broken}:36:19: step "typo" (template) field "template": "matrix.styel": the '
        'matrix has no axis "styel"; did you mean "style"?',
        "  hint: use matrix.style",
        f'{broken}:39:19: step "no_matrix" (template) field "template": "matrix.style": '
        "matrix values exist only in a step with a matrix",
        "  hint: add matrix: {axis: [values]} to this step, or use inputs or a step's output",
        f'{broken}:43:18: step "axis_reads_matrix" (template) field "matrix.style": '
        '"matrix.style": a matrix axis cannot read matrix values',
        "  hint: give the axis its values as a list, or from inputs or a step's output",
        f'{broken}:47:5: step "mode_alone" (template) field "matrix_mode": matrix_mode is '
        "set but the step has no matrix",
        "  hint: add matrix: {axis: [values]}, or remove matrix_mode",
        f'{broken}:51:19: step "past_the_end" (template) field "template": "typo.output.2": '
        "typo.output has 2 items (set by matrix), so there is no item 2",
        "  hint: use an index from 0 to 1 (or -2 to -1), or change matrix",
        f"{broken}: 10 problems",
    ]
    sandbox.assert_nothing_happened(outcome)


def test_a_templated_axis_that_renders_badly_fails_before_any_call(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    flow = sandbox.tmp / "templated.yaml"
    flow.write_text(
        "name: templated\n"
        "inputs:\n"
        "  products: {type: list, default: []}\n"
        "steps:\n"
        "  - id: hero\n"
        "    type: image_generation\n"
        "    matrix:\n"
        "      product: << inputs.products >>\n"
        "    prompt: a << matrix.product >>\n"
        "    model: gpt-image-1-mini\n",
        encoding="utf-8",
    )

    outcome = sandbox.fetchflow("run", str(flow), "--budget", "1")

    assert outcome.code == 2
    assert outcome.stderr.splitlines() == [
        'fetchflow: cannot keep the budget of $1.00: the cost of hero (field "matrix.product": '
        "a matrix axis needs at least one value, got an empty list (rendered from "
        "'<< inputs.products >>')) cannot be estimated",
        "  hint: use models with a published price (fetchflow run --dry-run shows them), or "
        "run without a budget",
    ]
    sandbox.assert_nothing_happened(outcome)


def _run(box: Sandbox, prefect_api: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", str(GRID), "--json", *args],
        env={**box.env, "PREFECT_API_URL": prefect_api},
        cwd=box.tmp / "cwd",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )


def _prompt(request: RecordedRequest) -> str:
    return str((request.json or {}).get("prompt", ""))


def _fail_poster_watercolor(box: Sandbox) -> None:
    """Refuse the prompt of one combination (whenever its call comes), answer the rest."""

    def script(request: RecordedRequest) -> Reply:
        if _prompt(request).startswith("A watercolor of a poster"):
            return Reply(
                400,
                openai_error_body(
                    "Your prompt was refused.", "invalid_request_error", "invalid_prompt"
                ),
            )
        # Slow enough that combinations running at the same time overlap at the server.
        return dataclasses.replace(box.openai.answer(request), delay=0.3)

    box.openai.queue(*[script] * 6)


@pytest.mark.prefect
def test_a_failed_combination_keeps_the_others_and_resume_makes_only_it(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
) -> None:
    _fail_poster_watercolor(sandbox)

    first = _run(sandbox, prefect_api)

    assert first.returncode == 1, first.stderr
    document = json.loads(first.stdout)
    hero = document["steps"]["hero"]
    assert hero["status"] == "failed"
    assert hero["error"].startswith('step "hero": matrix product=poster style=watercolor: '), hero[
        "error"
    ]
    assert len(sandbox.openai.requests) == 6
    spans = sandbox.openai.spans  # the combinations ran concurrently
    assert max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans) >= 2
    kept = hero["output"]  # the five paid images, each with its combination
    assert [record["matrix"] for record in kept] == [
        c for c in COMBINATIONS if c != {"product": "poster", "style": "watercolor"}
    ]

    resumed = _run(sandbox, prefect_api, "--resume", document["run_id"])

    assert resumed.returncode == 0, resumed.stderr
    assert len(sandbox.openai.requests) == 7  # exactly the missing combination
    assert _prompt(sandbox.openai.requests[-1]) == "A watercolor of a poster"
    steps = json.loads(resumed.stdout)["steps"]
    records = steps["hero"]["output"]
    assert [record["matrix"] for record in records] == COMBINATIONS
    assert [record["file_name"] for record in records] == [
        "hero-mug-watercolor-1.png",
        "hero-mug-studio-photo-1.png",
        "hero-tote-watercolor-1.png",
        "hero-tote-studio-photo-1.png",
        "hero-poster-watercolor-1.png",
        "hero-poster-studio-photo-1.png",
    ]
    assert [r["sha256"] for r in records if r != records[4]] == [r["sha256"] for r in kept]
    pairs = steps["pairs"]["output"]  # zip: the first values together, then the second
    assert [record["matrix"] for record in pairs] == [
        {"product": "mug", "style": "ink"},
        {"product": "tote", "style": "oil"},
    ]
    assert steps["index"]["output"] == "hero-poster-studio-photo-1.png oil"


def _run_file(
    box: Sandbox, prefect_api: str, flow: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", str(flow), *args],
        env={**box.env, "PREFECT_API_URL": prefect_api},
        cwd=box.tmp / "cwd",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )


@pytest.mark.prefect
def test_only_and_from_redo_only_the_missing_or_changed_combinations(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
) -> None:
    flow = sandbox.tmp / "grid.yaml"
    flow.write_text(GRID.read_text(encoding="utf-8"), encoding="utf-8")
    _fail_poster_watercolor(sandbox)
    first = json.loads(_run_file(sandbox, prefect_api, flow, "--json").stdout)
    assert first["steps"]["hero"]["status"] == "failed"
    assert len(sandbox.openai.requests) == 6
    kept = first["steps"]["hero"]["output"]

    # --only hero: the five finished combinations come from that run, one call is made.
    again = _run_file(sandbox, prefect_api, flow, "--json", "--only", "hero")

    assert again.returncode == 0, again.stderr
    assert len(sandbox.openai.requests) == 7
    assert _prompt(sandbox.openai.requests[-1]) == "A watercolor of a poster"
    hero = json.loads(again.stdout)["steps"]["hero"]
    assert hero["notes"] == [f"5 of 6 combinations kept from run {first['run_id']}, 1 made now"]
    assert [record["matrix"] for record in hero["output"]] == COMBINATIONS
    # the same records (the fake draws every image alike: compare ids, not bytes)
    assert [r["id"] for r in hero["output"] if r != hero["output"][4]] == [r["id"] for r in kept]

    # An edited prompt: no combination's request is the same, each is made again.
    flow.write_text(
        flow.read_text(encoding="utf-8").replace(
            '"A << matrix.style >> of a << matrix.product >>"',
            '"A << matrix.style >> of a << matrix.product >>, on white"',
        ),
        encoding="utf-8",
    )
    edited = _run_file(sandbox, prefect_api, flow, "--json", "--only", "hero")

    assert edited.returncode == 0, edited.stderr
    assert len(sandbox.openai.requests) == 13
    assert _prompt(sandbox.openai.requests[-1]).endswith(", on white")
    notes = json.loads(edited.stdout)["steps"]["hero"]["notes"]
    assert notes == [
        "0 of 6 combinations kept, 6 made now (6 made again: their request changed since, "
        "e.g. an edited prompt or input: product=mug style=watercolor; product=mug "
        "style=studio photo; product=tote style=watercolor and 3 more)"
    ]

    # --from hero after that: every combination as it is now is made already; the
    # terminal says so under the step.
    start = _run_file(sandbox, prefect_api, flow, "--from", "hero")

    assert start.returncode == 0, start.stderr
    assert len(sandbox.openai.requests) == 13
    edited_id = json.loads(edited.stdout)["run_id"]
    assert f"      ! 6 of 6 combinations kept from run {edited_id}, 0 made now" in (
        start.stderr.splitlines()
    ), start.stderr


def test_at_most_with_on_moderation_skip_says_why_in_a_matrix_and_with_a_sheet(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    flow = DATA / "skip_at_most.yaml"

    outcome = sandbox.fetchflow("validate", str(flow))

    why = "(on_moderation: skip leaves a blocked image out)"
    assert (outcome.code, outcome.stdout) == (2, "")
    assert outcome.stderr.splitlines() == [
        f'{flow}:23:19: step "reader" (template) field "template": "shots.output.5": '
        f"shots.output has at most 5 items {why}, so there is no item 5",
        "  hint: use an index below 5",
        f'{flow}:23:40: step "reader" (template) field "template": "single.output.3": '
        f"single.output has at most 3 items {why}, so there is no item 3",
        "  hint: use an index below 3",
        f"{flow}: 2 problems",
    ]
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.prefect
def test_a_column_whose_every_combination_was_skipped_stays_in_the_grid_and_notes(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
) -> None:
    from prefect.client.orchestration import get_client

    sandbox.openai.block_prompts("forbidden")

    done = _run_file(sandbox, prefect_api, DATA / "skip_a_column.yaml", "--json")

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    step = document["steps"]["shots"]
    assert [r["file_name"] for r in step["output"]] == [
        "shots-ink-cat-1.png",
        "shots-oil-cat-1.png",
        "shots-contact-sheet.png",
    ]
    assert sorted(step["notes"]) == [
        f"style={style} thing=forbidden dog: image 1 of 1: blocked at input (violence) by "
        "gpt-image-1-mini; skipped (on_moderation: skip)"
        for style in ("ink", "oil")
    ]
    with get_client(sync_client=True) as client:
        found = client.request(
            "POST",
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [document["run_id"]]}}, "limit": 50},
        ).json()
    gallery = next(a["data"] for a in found if a["key"] == "skip-a-column-shots-output")
    table = gallery.split("| style \\\\ thing | cat | forbidden dog |\n|---|:---:|:---:|\n")[1]
    rows = table.split("\n\n", 1)[0].splitlines()
    assert [row.split(" | ")[0] for row in rows] == ["| **ink**", "| **oil**"]
    assert all(row.endswith(" | *no image* |") for row in rows)


def test_validate_checks_fields_that_read_only_the_matrix_in_each_combination(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    flow = DATA / "per_combination.yaml"

    outcome = sandbox.fetchflow("validate", str(flow))

    assert (outcome.code, outcome.stdout) == (2, "")
    refused = "is not accepted by model gemini-2.5-flash-image (it takes auto)"
    assert outcome.stderr.splitlines() == [
        f'{flow}:16:5: step "shots" (image_generation) field "quality": matrix '
        f"model=gemini-2.5-flash-image q=low: quality: low {refused}",
        "  hint: use quality: auto",
        f'{flow}:16:5: step "shots" (image_generation) field "quality": matrix '
        f"model=gemini-2.5-flash-image q=high: quality: high {refused}",
        "  hint: use quality: auto",
        f'{flow}:21:5: step "edits" (image_edit) field "images": matrix img=missing.png: '
        f'reference "missing.png" is not a file under the project folder {DATA.parent}',
        "  hint: check the path: it is relative to the folder holding templates/ (else the "
        "current folder)",
        f"{flow}: 3 problems",
    ]
    sandbox.assert_nothing_happened(outcome)
