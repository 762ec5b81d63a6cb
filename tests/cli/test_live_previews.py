"""Live previews through the real command: ``partial_images`` checked, streamed, shown.

The catalogue's sandbox points every key and base URL at the fake OpenAI server, which
streams as the real API does (``text/event-stream``, one flushed chunk per event). One run
of ``fetchflow run`` against the session's Prefect server checks what a user sees: the
partial images in the step's progress artifact (read back from the Prefect API), the final
image stored and kept while the stream of the next one breaks, and the error saying what
the broken stream may have cost. ``fetchflow validate`` refuses ``partial_images`` where
no model streams them, exit 2, before anything is called.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import test_bad_input_catalogue as catalogue
from test_bad_input_catalogue import Sandbox

fake_openai = catalogue.fake_openai
fake_gemini = catalogue.fake_gemini
probe_dir = catalogue.probe_dir
sandbox = catalogue.sandbox

DATA = Path(__file__).resolve().parents[1] / "data" / "previews"
HINT = (
    "remove partial_images, or use an OpenAI model that streams them (gpt-image-1-mini, "
    "gpt-image-1.5, chatgpt-image-latest, ...)"
)

VALIDATE_CASES = {
    "partial_images_on_gemini": (
        '7:5: step "hero" (image_generation) field "partial_images": partial_images: 2 is '
        "not supported by model gemini-2.5-flash-image (only OpenAI GPT image models stream "
        "partial images)",
        HINT,
    ),
    "partial_images_on_preview": (
        '8:5: step "hero" (image_edit) field "partial_images": partial_images: 1 is not '
        "supported by model preview (only OpenAI GPT image models stream partial images)",
        HINT,
    ),
    "partial_images_four": (
        '7:5: step "hero" (image_generation) field "partial_images": must be less than or '
        "equal to 3; got 4",
        "use a value <= 3",
    ),
}


@pytest.mark.parametrize(("stem", "expected"), VALIDATE_CASES.items(), ids=list(VALIDATE_CASES))
def test_validate_refuses_partial_images_where_no_model_streams_them(
    stem: str, expected: tuple[str, str], sandbox: Sandbox
) -> None:
    path = DATA / f"{stem}.yaml"

    outcome = sandbox.fetchflow("validate", str(path))

    first, hint = expected
    assert (outcome.code, outcome.stdout) == (2, "")
    assert outcome.stderr.splitlines() == [
        f"{path}:{first}",
        f"  hint: {hint}",
        f"{path}: 1 problem",
    ]
    sandbox.assert_nothing_happened(outcome)


def read_artifacts(flow_run_id: str) -> dict[str, Any]:
    """The artifacts of one flow run (its own and its task runs'), by key."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [flow_run_id]}},
                "sort": "KEY_ASC",
                "limit": 50,
                "offset": 0,
            },
        )
    return {str(item["key"]): item for item in response.json()}


@pytest.mark.prefect
def test_a_streamed_run_shows_partial_images_and_a_broken_stream_says_what_was_billed(
    sandbox: Sandbox, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = sandbox.openai
    fake.chunk_delay = 0.05  # the events arrive one by one, as from the real API
    fake.queue(fake.answer)  # image 1: 2 partial images, then the final one
    fake.queue_broken_stream(after_partials=1)  # image 2: the connection drops
    sandbox.env.update(
        PREFECT_API_URL=prefect_api,
        FETCHFLOW_PROVIDER_ATTEMPTS="1",
        FETCHFLOW_PROVIDER_CONCURRENCY="1",  # image 1, then image 2
    )

    outcome = sandbox.fetchflow("run", str(DATA / "streamed.yaml"), "--json")

    assert outcome.code == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr and "sk-catalogue-test-key" not in outcome.stderr
    report = json.loads(outcome.stdout)
    hero = report["steps"]["hero"]
    assert hero["status"] == "failed"
    url = fake.generations_url
    assert hero["error"].startswith(
        f'step "hero": openai {url}: the stream of image 2 of 2 broke after 1 partial image '
        "(peer closed connection without sending complete message body (incomplete chunked "
        "read)); OpenAI may bill the 1 partial image and the work done: no usage was reported "
        "before the break (gave up after 1 attempt in "
    )
    assert "; 1 of 2 images were made and kept before that: file://" in hero["error"]
    # The image paid for is the step's output so far, with its usage.
    (kept,) = hero["output"]
    assert (kept["index"], kept["usage"]["output_tokens"]) == (0, 272)
    # Each call streamed one image with its partial images.
    assert [(r.json or {}).get("n") for r in fake.requests] == [1, 1]
    assert [(r.json or {}).get("partial_images") for r in fake.requests] == [2, 2]
    assert [(r.json or {}).get("stream") for r in fake.requests] == [True, True]

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    artifacts = read_artifacts(report["run_id"])
    progress = artifacts["streamed-hero-progress"]
    assert progress["type"] == "progress"
    description = progress["description"]
    thumbnails = re.findall(
        r"!\[(image \d, partial \d of 2)\]\(data:image/(?:webp|jpeg);base64,", description
    )
    assert thumbnails == ["image 1, partial 2 of 2", "image 2, partial 1 of 2"]
    # Partial images are drafts: the store holds the one final image only.
    stored = [
        p for p in sandbox.store.rglob("*") if p.is_file() and p.suffix in {".png", ".webp", ".jpg"}
    ]
    assert len(stored) == 1
