"""``on_moderation`` end to end: ``python -m fetchflow.cli`` against the fake providers.

The fakes block prompts by a marker word (``block_prompts``), at the input or output stage,
the first N times or after M passes; one run covers the policies that let a run go on
(skip, retry with a new seed, retry with the rephrase hint, fallback model), one the
default (fail), one ``validate`` the bad shapes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_bad_input_catalogue as catalogue
from test_bad_input_catalogue import Sandbox

from steps.imaging.moderation import REPHRASE_HINT

fake_openai = catalogue.fake_openai
fake_gemini = catalogue.fake_gemini
probe_dir = catalogue.probe_dir
sandbox = catalogue.sandbox

DATA = Path(__file__).resolve().parents[1] / "data" / "flows" / "moderation"


def run(sandbox: Sandbox, prefect_api: str, name: str) -> tuple[int, str, dict[str, object]]:
    """``fetchflow run FILE --json``, one provider call at a time (the block order is known)."""
    sandbox.env["PREFECT_API_URL"] = prefect_api
    sandbox.env["FETCHFLOW_PROVIDER_CONCURRENCY"] = "1"
    outcome = sandbox.fetchflow("run", str(DATA / f"{name}.yaml"), "--json")
    assert "Traceback" not in outcome.stderr, outcome.stderr
    return outcome.code, outcome.stderr, json.loads(outcome.stdout)


def prompts(requests: list[object], marker: str) -> list[dict[str, object]]:
    """The JSON bodies of the requests whose prompt holds ``marker``."""
    found = []
    for request in requests:
        body = getattr(request, "json", None) or {}
        if marker in json.dumps(body):
            found.append(body)
    return found


@pytest.mark.prefect
def test_skip_retry_and_fallback_go_on_and_say_what_happened_to_each_image(
    sandbox: Sandbox, prefect_api: str
) -> None:
    gemini, openai = sandbox.gemini, sandbox.openai
    gemini.block_prompts("SKIPME", after=1, times=1)  # image 2 of 3, at the input stage
    gemini.block_prompts("RETRYME", stage="output", times=2)  # made on the third try
    openai.block_prompts("REPHRASEME", times=1, categories=("violence",))
    openai.block_prompts("FALLME", categories=("self-harm",))  # always, on OpenAI

    code, stderr, report = run(sandbox, prefect_api, "policies")

    assert code == 0, stderr
    steps = report["steps"]
    assert isinstance(steps, dict)
    assert {step["status"] for step in steps.values()} == {"completed"}

    # skip: 3 calls, 2 images (1 and 3), the blocked one named in the notes
    skipped = steps["skipped"]
    assert len(prompts(gemini.requests, "SKIPME")) == 3
    assert [record["index"] for record in skipped["output"]] == [0, 2]
    assert [record["moderation"]["outcome"] for record in skipped["output"]] == ["made"] * 2
    assert skipped["notes"] == [
        "image 2 of 3: blocked at input by gemini-2.5-flash-image; skipped (on_moderation: skip)"
    ]

    # retry on a seeded model: exactly 2 + 1 calls, each with a new seed
    calls = prompts(gemini.requests, "RETRYME")
    seeds = [call["generationConfig"]["seed"] for call in calls]
    assert seeds == [7, 7 + 1_000_003, 7 + 2_000_006]
    (retried,) = steps["retried"]["output"]
    assert retried["seed"] == 7 + 2_000_006
    assert (
        retried["moderation"]
        == {
            "outcome": "retried",
            "attempts": 3,
            "blocks": [
                {
                    "model": "gemini-2.5-flash-image",
                    "stage": "output",
                    "categories": ["HARM_CATEGORY_DANGEROUS_CONTENT"],
                    "seed": seed,
                    "billed": True,  # output stage: the image was made, then withheld
                }
                for seed in seeds[:2]
            ],
            "rephrase": None,  # output-stage blocks on a seeded model: prompt unchanged
        }
    )

    # retry on a model without seeds: the rephrase hint appended, and kept in the record
    calls = prompts(openai.requests, "REPHRASEME")
    assert [call["prompt"] for call in calls] == [
        "a REPHRASEME battle scene",
        f"a REPHRASEME battle scene\n\n{REPHRASE_HINT}",
    ]
    (rephrased,) = steps["rephrased"]["output"]
    assert rephrased["moderation"]["outcome"] == "retried"
    assert rephrased["moderation"]["rephrase"] == REPHRASE_HINT
    assert rephrased["moderation"]["blocks"][0]["categories"] == ["violence"]

    # fallback: OpenAI once, then Gemini; the record is the fallback model's
    assert len(prompts(openai.requests, "FALLME")) == 1
    assert len(prompts(gemini.requests, "FALLME")) == 1
    (fellback,) = steps["fellback"]["output"]
    assert (fellback["model"], fellback["provider"]) == ("gemini-2.5-flash-image", "google")
    assert fellback["moderation"]["outcome"] == "fallback"
    assert fellback["moderation"]["attempts"] == 2
    assert "sk-catalogue-test-key" not in stderr


@pytest.mark.prefect
def test_fail_names_step_image_and_stage_and_keeps_the_earlier_image(
    sandbox: Sandbox, prefect_api: str
) -> None:
    sandbox.gemini.block_prompts("FAILME", after=1)  # image 1 made, image 2 blocked

    code, stderr, report = run(sandbox, prefect_api, "fail")

    assert code == 1
    assert len(sandbox.gemini.requests) == 2  # never retried, image 3 never asked
    hero = report["steps"]["hero"]  # type: ignore[index]
    assert hero["status"] == "failed"
    url = sandbox.gemini.url_for("gemini-2.5-flash-image")
    assert hero["error"] == (
        f'step "hero": image 2 of 3: blocked at input: google {url}: the safety system '
        "refused the prompt (block_reason SAFETY); 1 of 3 images were made and kept before "
        f"that: {hero['output'][0]['storage_uri']}\n"
        "  hint: rephrase the prompt; the same prompt is refused again, so it is not "
        "retried; or set on_moderation: skip, {retry: N} or {fallback_model: NAME}"
    )
    assert [record["index"] for record in hero["output"]] == [0]
    assert "Traceback" not in stderr


def test_validate_names_each_bad_policy_with_its_location(sandbox: Sandbox) -> None:
    outcome = sandbox.fetchflow("validate", str(DATA / "bad_policies.yaml"))

    assert outcome.code == 2
    where = f"{DATA / 'bad_policies.yaml'}:"
    field = '(image_generation) field "on_moderation":'
    assert outcome.stderr.splitlines() == [
        f'{where}7:5: step "bare_retry" {field} retry needs a number of tries',
        "  hint: write on_moderation: {retry: 2} (1 to 5 more tries)",
        f'{where}12:5: step "too_many" {field} retry must be a whole number from 1 to 5, got 9',
        "  hint: write on_moderation: {retry: 2} (1 to 5 more tries)",
        f'{where}17:5: step "unknown_model" {field} fallback_model: unknown image model '
        '"gemini-2.5-flash-imag"; did you mean "gemini-2.5-flash-image"?',
        "  hint: use fallback_model: gemini-2.5-flash-image",
        f'{where}23:5: step "cannot_do" {field} fallback_model gemini-2.5-flash-image cannot '
        "make what this step asks: background: transparent is not supported by model "
        "gemini-2.5-flash-image (Gemini image models have no background setting)",
        "  hint: choose a fallback model that takes the step's options, or change them",
        f'{where}28:5: step "both" {field} one policy only, got both retry and fallback_model',
        "  hint: use {retry: N} (the same model) or {fallback_model: NAME} (another model)",
        f'{where}37:16: step "reader" (image_edit) field "images": "skipping.output.2.file_url": '
        "skipping.output has at most 2 items (on_moderation: skip leaves a blocked image out), "
        "so there is no item 2",
        "  hint: use an index below 2",
        f"{DATA / 'bad_policies.yaml'}: 6 problems",
    ]
    sandbox.assert_nothing_happened(outcome)


@pytest.mark.prefect
def test_a_fallback_model_without_its_key_is_refused_before_anything_is_paid(
    sandbox: Sandbox, prefect_api: str
) -> None:
    del sandbox.env["GEMINI_API_KEY"]
    sandbox.env["PREFECT_API_URL"] = prefect_api

    outcome = sandbox.fetchflow("run", str(DATA / "fallback_without_key.yaml"))

    assert outcome.code == 2
    assert outcome.stderr.splitlines() == [
        f"fetchflow: {DATA / 'fallback_without_key.yaml'}:4: "
        'step "hero" (image_generation): on_moderation: fallback_model gemini-2.5-flash-image: '
        "charge_type: personal needs your google key for model gemini-2.5-flash-image, and "
        "GOOGLE_API_KEY or GEMINI_API_KEY is not set",
        "  hint: export GOOGLE_API_KEY=..., name a Prefect Secret block with api_key_secret:, "
        "or use charge_type: hosted if the operator provides keys; or choose another "
        "fallback_model",
    ]
    assert sandbox.openai.requests == [] and sandbox.gemini.requests == []
