"""fal through the real ``fal-client`` SDK, in ``fetchflow run`` subprocesses, against a
fake fal queue served over HTTPS (:mod:`tests.steps.fakes.fake_fal`).

The SDK reads its hosts (``FAL_RUN_HOST``, ``FAL_QUEUE_RUN_HOST``) once at import and
always calls https, so each run is a subprocess whose environment points it at the fake,
with ``SSL_CERT_FILE`` naming the fake's CA: nothing of the SDK is patched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.steps.fakes.fake_fal import FakeFal

REPO = Path(__file__).resolve().parents[4]
FAL_KEY = "fal-test-key-0d4c9e1f:7a7b6c5d4e3f"

pytestmark = pytest.mark.prefect


@pytest.fixture
def fake_fal(tmp_path: Path) -> Iterator[FakeFal]:
    with FakeFal(tmp_path / "ca") as fake:
        yield fake


def _run(
    flow: str, fake: FakeFal, clean_env: Mapping[str, str], prefect_api: str, home: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {
        **clean_env,
        **fake.sdk_env(),
        "FAL_KEY": FAL_KEY,
        "FETCHFLOW_HOME": str(home),
        "PREFECT_API_URL": prefect_api,
        "PYTHONPATH": str(REPO),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", "--json", flow],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.stdout, done.stderr
    return done, json.loads(done.stdout)


def _secret_nowhere(done: subprocess.CompletedProcess[str], home: Path) -> None:
    assert FAL_KEY not in done.stdout + done.stderr
    for path in home.rglob("*.json"):
        assert FAL_KEY not in path.read_text(encoding="utf-8"), path


def test_example_runs_on_fal_with_steps_guidance_and_seed(
    fake_fal: FakeFal, clean_env: Mapping[str, str], prefect_api: str, tmp_path: Path
) -> None:
    done, report = _run("flows/open_models.yaml", fake_fal, clean_env, prefect_api, tmp_path)
    assert done.returncode == 0, done.stderr
    assert report["status"] == "completed"
    # model: auto with steps and guidance and a fal key: FLUX [dev], one queued call
    [call] = fake_fal.calls
    assert call.model == "fal-ai/flux/dev"
    assert call.authorization == f"Key {FAL_KEY}"
    assert call.body == {
        "prompt": "Watercolour illustration of a paper boat on a puddle, soft morning light",
        "num_images": 2,
        "image_size": "landscape_4_3",  # aspect_ratio 4:3 -> fal's named 1024x768
        "seed": 1234,
        "num_inference_steps": 28,
        "guidance_scale": 3.5,
        "enable_safety_checker": True,
        "output_format": "png",
        "sync_mode": True,
    }
    assert fake_fal.lines[0] == "POST /fal-ai/flux/dev"
    assert fake_fal.lines[-1].startswith("GET /fal-ai/flux/requests/")  # owner/alias only
    drafts = report["steps"]["draft"]["output"]
    assert [(d["model"], d["provider"], d["seed"]) for d in drafts] == [
        ("fal-ai/flux/dev", "fal", 1234),
        ("fal-ai/flux/dev", "fal", 1235),
    ]
    assert [d["provenance"]["nsfw"] for d in drafts] == ["false", "false"]
    assert [(d["width"], d["height"], d["cost_usd"]) for d in drafts] == [(1024, 768, 0.025)] * 2
    large = report["steps"]["large"]["output"]
    assert [(d["width"], d["height"]) for d in large] == [(2048, 1536)] * 2
    _secret_nowhere(done, tmp_path)


def test_same_seed_same_request_and_what_fal_refuses(
    fake_fal: FakeFal, clean_env: Mapping[str, str], prefect_api: str, tmp_path: Path
) -> None:
    done, report = _run("tests/data/fal/cases.yaml", fake_fal, clean_env, prefect_api, tmp_path)
    steps = report["steps"]
    bodies = [call.body for call in fake_fal.calls if call.model == "fal-ai/fast-sdxl"]
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # the same seed, the same request
    assert bodies[0]["negative_prompt"] == "blurry, text"
    assert steps["twin_a"]["output"][0]["sha256"] == steps["twin_b"]["output"][0]["sha256"]
    endpoint = f"fal https://{fake_fal.host}"
    # a ModerationBlocked (stage output, category nsfw): on_moderation's default fails it
    flagged, hint = steps["flagged"]["error"].split("\n", 1)
    assert flagged == (
        f'step "flagged": image 1 of 1: blocked at output (nsfw): {endpoint}/fal-ai/flux/'
        "schnell: the safety checker flagged image(s) 1 of 1 (has_nsfw_concepts); fal returns "
        "them blacked out"
    )
    assert hint.startswith("  hint: rephrase the prompt; the same prompt is flagged again")
    assert steps["refused"]["error"] == (
        f'step "refused": {endpoint}/fal-ai/flux/dev: 422: num_inference_steps: ensure this '
        "value is less than or equal to 50\n"
        "  hint: fix the request the provider complains about (param: num_inference_steps)"
    )
    # refusals are not retried: one submit each
    prompts = [str(call.body["prompt"]) for call in fake_fal.calls]
    assert prompts.count("[nsfw] a red kite") == 1 and prompts.count("[422] a red kite") == 1
    _secret_nowhere(done, tmp_path)


def test_fal_is_not_imported_by_validate(clean_env: Mapping[str, str]) -> None:
    code = (
        "import sys, runpy; sys.argv = ['fetchflow', 'validate', 'flows/open_models.yaml']\n"
        "try:\n    runpy.run_module('fetchflow.cli', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "print('fal_client' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**clean_env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.splitlines()[-1] == "False", done.stdout + done.stderr
