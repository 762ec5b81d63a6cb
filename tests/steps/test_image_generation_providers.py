"""The image_generation step end to end against the fake providers, through the real SDKs.

Each test drives the step as a user does: a workflow file from ``tests/data/image_flows/``,
the static check (``check_file``), the pre-run checks, then the step's own ``run`` with a
real :class:`~fetchflow.storage.LocalStore` in ``tmp_path``. The SDKs are pointed at the fake
servers with their own variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``GEMINI_API_KEY``,
``GOOGLE_GEMINI_BASE_URL``) or fetchflow's hosted settings. No Prefect here: the runs through
``run_plan`` are in ``test_image_generation_workflow.py``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes import fixtures
from fakes.fake_gemini import FakeGemini
from fakes.fake_openai import FakeOpenAI
from fakes.provenance import same_picture
from PIL import Image

from fetchflow.errors import ProviderError, StepError
from fetchflow.registry import StepRegistry
from fetchflow.run.execution import render_config
from fetchflow.run.preflight import preflight
from fetchflow.settings import Settings
from fetchflow.step import StepContext
from fetchflow.storage import LocalStore
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs
from fetchflow.workflow.plan import Plan
from steps.image_generation import PREVIEW_NOTICE, ImageAsset, ImageGenerationStep
from steps.imaging.partial import PartialImages
from steps.imaging.providers.errors import ModerationBlocked, RateLimited
from steps.imaging.settings import ImageSettings, use_image_settings

fake_openai = fixtures.fake_openai
fake_gemini = fixtures.fake_gemini

REPO = Path(__file__).resolve().parents[2]
FLOWS = REPO / "tests" / "data" / "image_flows"
REGISTRY = StepRegistry.from_entry_points()

#: Recognisable keys: none may ever appear in a record, a file, an error or a log line.
OPENAI_KEY = "sk-test-SECRET-0123456789"
GEMINI_KEY = "AIzaTestSECRETgemini0123456789"
HOSTED_KEY = "sk-hosted-OPERATOR-9876543210"

#: Variables a developer's shell may hold that would change what these tests see.
LOGGER = "fetchflow.test.image_providers"


@pytest.fixture(autouse=True)
def clean_environment(
    scrub_environ: Callable[[pytest.MonkeyPatch], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No provider key, base URL or FETCHFLOW_* setting from the machine; no ``.env`` read."""
    scrub_environ(monkeypatch)
    monkeypatch.chdir(tmp_path)  # Settings reads ./.env: a developer's one must not count


@dataclass(frozen=True)
class Workspace:
    """A home, a local asset store and the settings that name them."""

    root: Path
    store: LocalStore

    def settings(self, **image_settings: Any) -> Settings:
        """The engine's settings; ``image_settings`` become the image steps' own."""
        use_image_settings(ImageSettings(**image_settings))
        return Settings(home=self.root / "home", store=str(self.store.root))

    def files(self) -> list[Path]:
        """Every file under the workspace: assets, spool, anything a store might add."""
        return sorted(path for path in self.root.rglob("*") if path.is_file())

    def assets(self) -> list[Path]:
        return sorted(p for p in self.store.root.rglob("*") if p.is_file())


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    return Workspace(root, LocalStore(root / "assets", spool_dir=root / "home" / "spool"))


def load(name: str) -> Plan:
    return check_file(FLOWS / f"{name}.yaml", REGISTRY)


def run_step(
    plan: Plan,
    step_id: str,
    workspace: Workspace,
    settings: Settings | None = None,
    run_id: str | None = None,
) -> list[ImageAsset]:
    """Render the step's templates, validate its config and call ``run``, as the runner does."""
    step = plan.steps[step_id]
    run_id = run_id or str(uuid.uuid4())
    started = datetime(2026, 1, 1, tzinfo=UTC)
    scope = {
        "inputs": resolve_inputs(plan.header, {}),
        "run": {"id": run_id, "name": "test-run", "started_at": started.isoformat()},
    }
    ctx = StepContext(
        step_id=step_id,
        step_type=step.type,
        run_id=run_id,
        run_name="test-run",
        workflow=plan.name,
        started_at=started,
        logger=logging.getLogger(LOGGER),
        settings=settings or workspace.settings(),
        templates=plan.templates,
        scope=scope,
        open_store=lambda: workspace.store,
    )
    config = step.step_cls.config_model.model_validate(render_config(step, plan.templates, scope))
    assets = step.step_cls().run(config, ctx)
    assert all(isinstance(asset, ImageAsset) for asset in assets)
    return assets


def use_openai(monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI, key: str = OPENAI_KEY) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)


def use_gemini(monkeypatch: pytest.MonkeyPatch, fake: FakeGemini, key: str = GEMINI_KEY) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", key)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)


def openai_sent(fake: FakeOpenAI, index: int = 0) -> dict[str, Any]:
    """The body the fake answered request ``index`` with (its answers are deterministic)."""
    body = fake.answer(fake.requests[index]).body
    assert isinstance(body, dict)
    return body


def openai_images(fake: FakeOpenAI, index: int = 0) -> list[bytes]:
    return [base64.b64decode(item["b64_json"]) for item in openai_sent(fake, index)["data"]]


def gemini_image(fake: FakeGemini, index: int) -> bytes:
    body = fake.answer(fake.requests[index]).body
    assert isinstance(body, dict)
    return base64.b64decode(body["candidates"][0]["content"]["parts"][0]["inlineData"]["data"])


def stored(workspace: Workspace, asset: ImageAsset) -> bytes:
    path = workspace.store.path_of(asset.storage_uri)
    assert path.is_file() and path.is_relative_to(workspace.store.root)
    return path.read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- OpenAI ----------------------------------------------------------------------------------


def test_openai_three_pngs_are_stored_exactly_as_sent(
    fake_openai: FakeOpenAI, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_openai(monkeypatch, fake_openai)
    assets = run_step(load("openai_hero"), "hero", workspace)

    prompt = "Studio shot of a blue vase on white marble\n\nStyle: soft window light"
    [request] = fake_openai.requests
    assert request.path == "/v1/images/generations"
    assert request.credential == OPENAI_KEY
    # Exactly these: no response_format or style (GPT image models refuse them), no
    # output_compression with png.
    assert request.json == {
        "model": "gpt-image-2",
        "prompt": prompt,
        "n": 3,
        "size": "1536x1024",
        "quality": "high",
        "background": "opaque",
        "moderation": "auto",
        "output_format": "png",
    }
    sent = openai_images(fake_openai)
    assert [a.file_name for a in assets] == ["hero-1.png", "hero-2.png", "hero-3.png"]
    assert [a.index for a in assets] == [0, 1, 2]
    for asset, original in zip(assets, sent, strict=True):
        data = stored(workspace, asset)
        same_picture(data, original)  # png asked, png answered: not re-encoded
        assert asset.sha256 == sha256(data) and asset.file_size == len(data)
        assert asset.file_url == asset.storage_uri and asset.file_url.startswith("file://")
        assert (asset.width, asset.height, asset.file_type) == (1536, 1024, "image/png")
        assert picture(data).size == (1536, 1024)
        assert (asset.model, asset.provider, asset.charge_type) == (
            "gpt-image-2",
            "openai",
            "personal",
        )
        assert asset.prompt_sha256 == sha256(prompt.encode())
        assert asset.provenance["prompt_sha256"] == asset.prompt_sha256
        assert asset.seed is None  # GPT image models take no seed
        assert asset.cost_usd is None  # OpenAI publishes no per-image price for gpt-image-2
        assert asset.usage is not None and asset.usage["output_tokens"] > 0
    assert len({a.sha256 for a in assets}) == 3
    # The call's usage is split among its images and adds up exactly.
    usage = openai_sent(fake_openai)["usage"]
    for name, reported in (
        ("input_tokens", usage["input_tokens"]),
        ("output_tokens", usage["output_tokens"]),
        ("total_tokens", usage["total_tokens"]),
        ("input_text_tokens", usage["input_tokens_details"]["text_tokens"]),
    ):
        assert sum(a.usage[name] for a in assets if a.usage) == reported, name
    assert len(workspace.assets()) == 3


def test_openai_webp_and_jpeg_are_compressed_by_the_provider_and_kept_as_sent(
    fake_openai: FakeOpenAI, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_openai(monkeypatch, fake_openai)
    plan = load("openai_formats")
    [webp] = run_step(plan, "webp_shot", workspace)
    [jpeg] = run_step(plan, "jpeg_shot", workspace)

    webp_request, jpeg_request = fake_openai.requests
    assert webp_request.json is not None and jpeg_request.json is not None
    assert (webp_request.json["output_format"], webp_request.json["output_compression"]) == (
        "webp",
        80,
    )
    assert (jpeg_request.json["output_format"], jpeg_request.json["output_compression"]) == (
        "jpeg",
        60,
    )
    same_picture(stored(workspace, webp), openai_images(fake_openai, 0)[0])
    same_picture(stored(workspace, jpeg), openai_images(fake_openai, 1)[0])
    assert (webp.file_name, webp.file_type) == ("webp_shot-1.webp", "image/webp")
    assert (jpeg.file_name, jpeg.file_type) == ("jpeg_shot-1.jpg", "image/jpeg")
    assert picture(stored(workspace, webp)).format == "WEBP"
    assert picture(stored(workspace, jpeg)).format == "JPEG"
    assert jpeg.cost_usd == 0.005  # gpt-image-1-mini, low, 1024x1024: the published price


def test_an_answer_in_another_format_than_asked_is_converted(
    fake_openai: FakeOpenAI, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_openai(monkeypatch, fake_openai)

    def answers_png(request: Any) -> Any:
        assert request.json is not None
        as_png = {**request.json, "output_format": "png"}
        as_png.pop("output_compression")
        return fake_openai.answer(replace(request, json=as_png))

    fake_openai.queue(answers_png)
    [jpeg] = run_step(load("openai_formats"), "jpeg_shot", workspace)

    data = stored(workspace, jpeg)
    assert data != openai_images(fake_openai)[0]
    assert picture(data).format == "JPEG" and picture(data).size == (1024, 1024)
    assert (jpeg.file_type, jpeg.sha256) == ("image/jpeg", sha256(data))


# -- Gemini ----------------------------------------------------------------------------------


def test_gemini_two_seeded_wide_images_take_two_calls(
    fake_gemini: FakeGemini, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_gemini(monkeypatch, fake_gemini)
    assets = run_step(load("gemini_wide"), "banner", workspace)

    assert len(fake_gemini.requests) == 2
    # The two calls are made concurrently: they reach the fake in either order.
    sent = sorted(fake_gemini.requests, key=lambda r: r.json["generationConfig"]["seed"])  # type: ignore[index]
    for request, seed in zip(sent, (41, 42), strict=True):
        assert request.path.endswith("/models/gemini-2.5-flash-image:generateContent")
        assert request.credential == GEMINI_KEY
        assert request.json is not None
        config = request.json["generationConfig"]
        assert config["responseModalities"] == ["IMAGE"]
        assert config["imageConfig"] == {
            "aspectRatio": "16:9"
        }  # 2.5 Flash Image takes no imageSize
        assert config["seed"] == seed
    assert [a.seed for a in assets] == [41, 42]
    assert [a.index for a in assets] == [0, 1]
    for position, asset in enumerate(assets):
        data = stored(workspace, asset)
        same_picture(data, gemini_image(fake_gemini, fake_gemini.requests.index(sent[position])))
        assert asset.sha256 == sha256(data)
        assert (asset.width, asset.height) == (1344, 768) == picture(data).size
        assert (asset.model, asset.provider) == ("gemini-2.5-flash-image", "google")
        assert asset.cost_usd == 0.039
        assert asset.usage == {
            "prompt_token_count": 7,
            "candidates_token_count": 1290,
            "total_token_count": 1297,
        }
        assert asset.provenance["seed"] == str(asset.seed)
    assert assets[0].sha256 != assets[1].sha256


def test_gemini_png_is_converted_to_the_jpeg_asked(
    fake_gemini: FakeGemini, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_gemini(monkeypatch, fake_gemini)
    [asset] = run_step(load("gemini_jpeg"), "banner", workspace)

    data = stored(workspace, asset)
    assert picture(gemini_image(fake_gemini, 0)).format == "PNG"
    assert picture(data).format == "JPEG" and picture(data).size == (1024, 1024)
    assert (asset.file_name, asset.file_type) == ("banner-1.jpg", "image/jpeg")
    assert asset.sha256 == sha256(data)


# -- model: auto -----------------------------------------------------------------------------


def test_auto_prefers_openai_when_its_key_is_set(
    fake_openai: FakeOpenAI,
    fake_gemini: FakeGemini,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_openai(monkeypatch, fake_openai)
    use_gemini(monkeypatch, fake_gemini)
    [asset] = run_step(load("auto_two_steps"), "hero", workspace)

    assert [r.json["model"] for r in fake_openai.requests if r.json] == ["gpt-image-2"]
    assert fake_gemini.requests == []
    assert (asset.model, asset.provider) == ("gpt-image-2", "openai")
    same_picture(stored(workspace, asset), openai_images(fake_openai)[0])


def test_auto_with_only_a_gemini_key_uses_gemini(
    fake_openai: FakeOpenAI,
    fake_gemini: FakeGemini,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_gemini(monkeypatch, fake_gemini)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    [asset] = run_step(load("auto_two_steps"), "hero", workspace)

    assert fake_openai.requests == []
    [request] = fake_gemini.requests
    assert request.path.endswith("/models/gemini-2.5-flash-image:generateContent")
    assert (asset.model, asset.provider) == ("gemini-2.5-flash-image", "google")
    assert (asset.width, asset.height) == (1024, 1024)  # size 1024x1024 became 1:1 at 1K


def test_auto_without_any_key_draws_previews_and_says_so_once_per_run(
    fake_openai: FakeOpenAI,
    fake_gemini: FakeGemini,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_gemini.base_url)
    plan = load("auto_two_steps")
    first_run, second_run = str(uuid.uuid4()), str(uuid.uuid4())

    with caplog.at_level(logging.INFO, logger=LOGGER):
        [hero] = run_step(plan, "hero", workspace, run_id=first_run)
        [detail] = run_step(plan, "detail", workspace, run_id=first_run)
        notices_in_first_run = [r.getMessage() for r in caplog.records].count(PREVIEW_NOTICE)
        run_step(plan, "hero", workspace, run_id=second_run)

    assert notices_in_first_run == 1
    assert [r.getMessage() for r in caplog.records].count(PREVIEW_NOTICE) == 2
    assert fake_openai.requests == [] and fake_gemini.requests == []
    for asset in (hero, detail):
        assert (asset.model, asset.provider, asset.cost_usd) == ("preview", "preview", 0.0)
        assert picture(stored(workspace, asset)).size == (1024, 1024)


# -- charge_type -----------------------------------------------------------------------------


def test_personal_without_a_key_fails_before_any_request(
    fake_openai: FakeOpenAI, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    plan = load("personal_openai")
    settings = workspace.settings()
    missing = (
        r"charge_type: personal needs your openai key for model gpt-image-2, and "
        r"OPENAI_API_KEY is not set"
    )

    with pytest.raises(StepError, match=missing) as from_step:
        ImageGenerationStep.preflight(plan.steps["hero"].raw_config, settings)
    with pytest.raises(StepError, match=missing) as from_run_checks:
        preflight(plan, settings)
    with pytest.raises(StepError, match=missing):
        run_step(plan, "hero", workspace)

    assert from_step.value.retryable is False
    assert from_step.value.hint.startswith("export OPENAI_API_KEY=...")
    assert from_run_checks.value.format().startswith(
        f'{plan.file}:4: step "hero" (image_generation): {missing[:20]}'
    )
    assert fake_openai.requests == []
    assert workspace.assets() == []


def test_hosted_never_borrows_the_personal_key(
    fake_openai: FakeOpenAI, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_openai(monkeypatch, fake_openai)  # a personal key is there: it must not be used
    plan = load("hosted_openai")
    settings = workspace.settings()
    missing = (
        r"charge_type: hosted needs the operator's openai key for model gpt-image-2, and "
        r"FETCHFLOW_HOSTED_OPENAI_API_KEY is not set"
    )

    with pytest.raises(StepError, match=missing) as from_step:
        ImageGenerationStep.preflight(plan.steps["hero"].raw_config, settings)
    with pytest.raises(StepError, match=missing) as from_run_checks:
        preflight(plan, settings)
    with pytest.raises(StepError, match=missing):
        run_step(plan, "hero", workspace, settings)

    for error in (from_step.value, from_run_checks.value):
        assert OPENAI_KEY not in error.format()
    assert fake_openai.requests == []
    assert workspace.assets() == []


def test_hosted_calls_with_the_operator_key_and_records_the_usage(
    fake_openai: FakeOpenAI,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)  # the personal key, present but not used
    settings = workspace.settings(
        hosted_openai_api_key=HOSTED_KEY, hosted_openai_base_url=fake_openai.base_url
    )
    plan = load("hosted_openai")
    preflight(plan, settings)
    run_id = str(uuid.uuid4())

    with caplog.at_level(logging.INFO, logger=LOGGER):
        [asset] = run_step(plan, "hero", workspace, settings, run_id=run_id)

    [request] = fake_openai.requests
    assert request.credential == HOSTED_KEY
    assert (asset.charge_type, asset.provenance["charge_type"]) == ("hosted", "hosted")
    same_picture(stored(workspace, asset), openai_images(fake_openai)[0])
    [usage_line] = [
        r.getMessage() for r in caplog.records if "hosted image usage" in r.getMessage()
    ]
    assert usage_line.startswith(
        f"hosted image usage: workflow=hosted_openai run={run_id} step=hero images=1 tokens={{"
    )
    assert f"'total_tokens': {openai_sent(fake_openai)['usage']['total_tokens']}" in usage_line
    assert HOSTED_KEY not in caplog.text and OPENAI_KEY not in caplog.text


# -- faults ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One scripted failure of a provider's first call and what the step must raise."""

    provider: str
    script: Callable[[Any], None]
    error: type[ProviderError]
    match: str
    #: A passing fault (retried by the provider loop while it has attempts) or a refusal.
    transient: bool


OPENAI_FAULTS = {
    "openai-429": Fault(
        "openai",
        lambda fake: fake.queue_rate_limit(retry_after="3"),
        RateLimited,
        r"429 rate_limit_exceeded: rate limited: Rate limit reached for gpt-image-2",
        True,
    ),
    "openai-500": Fault(
        "openai",
        lambda fake: fake.queue_server_error(500),
        ProviderError,
        r"500 server_error: server error: The server had an error while processing",
        True,
    ),
    "openai-moderation": Fault(
        "openai",
        lambda fake: fake.queue_moderation_blocked(("violence",)),
        ModerationBlocked,
        r"400 moderation_blocked: the safety system refused the prompt "
        r"\(stage: input; categories: violence\)",
        False,
    ),
    "openai-truncated-base64": Fault(
        "openai",
        lambda fake: fake.queue_truncated_base64(),
        ProviderError,
        r"image 1 of 2 is not valid base64",
        True,
    ),
    "openai-garbage": Fault(
        "openai",
        lambda fake: fake.queue_garbage_image(),
        ProviderError,
        r"image 1 of 2 is not a PNG, JPEG, WEBP or GIF image, got 33 bytes starting b'<html>up'",
        True,
    ),
    "openai-empty-data": Fault(
        "openai",
        lambda fake: fake.queue_empty_data(),
        ProviderError,
        r"the answer holds no images \(empty data list\)",
        True,
    ),
}
GEMINI_FAULTS = {
    "gemini-429": Fault(
        "google",
        lambda fake: fake.queue_rate_limit(retry_delay="7s"),
        RateLimited,
        r"429 RESOURCE_EXHAUSTED: rate limited: You exceeded your current quota",
        True,
    ),
    "gemini-500": Fault(
        "google",
        lambda fake: fake.queue_server_error(500),
        ProviderError,
        r"500 INTERNAL: server error: An internal error has occurred",
        True,
    ),
    "gemini-safety-stop": Fault(
        "google",
        lambda fake: fake.queue_safety_stop(),
        ModerationBlocked,
        r"the safety system filtered the generated image \(finish_reason IMAGE_SAFETY; "
        r"categories: HARM_CATEGORY_SEXUALLY_EXPLICIT\)",
        False,
    ),
    "gemini-garbage": Fault(
        "google",
        lambda fake: fake.queue_garbage_image(),
        ProviderError,
        r"image 1 of 1 is not a PNG, JPEG, WEBP or GIF image, got 21 bytes",
        True,
    ),
}


@pytest.mark.parametrize(
    "fault",
    [pytest.param(fault, id=name) for name, fault in {**OPENAI_FAULTS, **GEMINI_FAULTS}.items()],
)
def test_a_failed_first_call_is_one_request_a_clear_error_and_nothing_stored(
    fault: Fault,
    request: pytest.FixtureRequest,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if fault.provider == "openai":
        fake: FakeOpenAI | FakeGemini = request.getfixturevalue("fake_openai")
        use_openai(monkeypatch, fake)  # type: ignore[arg-type]
        plan, step_id = load("personal_openai"), "hero"  # count 2: one call for both
    else:
        fake = request.getfixturevalue("fake_gemini")
        use_gemini(monkeypatch, fake)  # type: ignore[arg-type]
        plan, step_id = load("gemini_wide"), "banner"  # count 2: the first of two calls
    fault.script(fake)

    # One attempt allowed: fetchflow's own retries are in test_provider_faults.py. Calls
    # one at a time, so the fault meets the first (concurrent: test_concurrent_calls.py).
    settings = workspace.settings(provider_attempts=1, provider_concurrency=1)
    with pytest.raises(ProviderError, match=fault.match) as caught:
        run_step(plan, step_id, workspace, settings)

    error = caught.value
    assert type(error) is fault.error
    # The provider loop owns provider retries: what it raises, the step never retries.
    assert error.retryable is False
    assert error.provider == fault.provider and error.hint
    assert len(fake.requests) == 1  # the SDK's own retries are off
    assert workspace.assets() == []
    if fault.transient:
        assert "(gave up after 1 attempt in " in error.message
        assert error.hint.endswith("FETCHFLOW_PROVIDER_ATTEMPTS allows more attempts")
    else:
        assert "not retried" in error.hint
    if isinstance(error, RateLimited):
        assert error.retry_after == (3.0 if fault.provider == "openai" else 7.0)
    for text in (error.format(), repr(error), error.body):
        assert OPENAI_KEY not in text and GEMINI_KEY not in text


def test_a_later_failed_call_keeps_the_images_already_made(
    fake_gemini: FakeGemini, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_gemini(monkeypatch, fake_gemini)
    fake_gemini.queue(fake_gemini.answer, fake_gemini.answer)
    fake_gemini.queue_server_error(500)

    with pytest.raises(
        PartialImages,
        match=r"500 INTERNAL: server error: .*; 2 of 3 images were made and kept before that: "
        r"file://\S+, file://\S+\n  hint: Google had a problem answering",
    ) as caught:
        # One attempt allowed, so the 500 is final (retries: test_provider_faults.py); calls
        # one at a time, so it meets the third (concurrent: test_concurrent_calls.py).
        settings = workspace.settings(provider_attempts=1, provider_concurrency=1)
        run_step(load("gemini_three"), "hero", workspace, settings)

    assert [r.json["generationConfig"]["seed"] for r in fake_gemini.requests if r.json] == [7, 8, 9]
    assert caught.value.retryable is False  # the kept images are never paid for twice
    assert isinstance(caught.value.__cause__, ProviderError)
    kept = re.findall(r"file://\S+?(?=, |$)", caught.value.message)
    assert len(kept) == 2
    paths = [workspace.store.path_of(uri) for uri in kept]
    assert sorted(paths) == workspace.assets()  # exactly the two, nothing else
    for position, path in enumerate(paths):
        same_picture(path.read_bytes(), gemini_image(fake_gemini, position))
        assert path.name == f"{sha256(path.read_bytes())}.png"


# -- secrets ---------------------------------------------------------------------------------


def text_chunks(data: bytes) -> str:
    """Every metadata value Pillow reads from an image (PNG tEXt/zTXt/iTXt, EXIF, ...)."""
    image = picture(data)
    values = dict(image.info)
    values.update(getattr(image, "text", {}) or {})
    return json.dumps(values, default=repr)


@pytest.mark.parametrize("provider", ["openai", "google"])
def test_the_key_appears_in_no_record_file_error_or_log(
    provider: str,
    request: pytest.FixtureRequest,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if provider == "openai":
        fake: FakeOpenAI | FakeGemini = request.getfixturevalue("fake_openai")
        use_openai(monkeypatch, fake)  # type: ignore[arg-type]
        key, plan, step_id = OPENAI_KEY, load("openai_hero"), "hero"
    else:
        fake = request.getfixturevalue("fake_gemini")
        use_gemini(monkeypatch, fake)  # type: ignore[arg-type]
        key, plan, step_id = GEMINI_KEY, load("gemini_wide"), "banner"

    with caplog.at_level(logging.DEBUG):  # every logger: the SDKs' and httpx's too
        assets = run_step(plan, step_id, workspace)
        fake.queue_invalid_api_key()  # whose message echoes the key it was sent
        with pytest.raises(ProviderError, match=r"the API key was rejected") as caught:
            run_step(plan, step_id, workspace, workspace.settings(provider_concurrency=1))

    assert fake.requests[0].credential == key  # the key really went out
    assert assets and all(key not in asset.model_dump_json() for asset in assets)
    assert key not in json.dumps(ImageGenerationStep.dump_output(assets))
    files = workspace.files()
    assert len(files) == len(assets)  # the store keeps no sidecars: nothing else to leak into
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data
        assert key not in text_chunks(data)
    error = caught.value
    for text in (error.format(), str(error), repr(error), error.message, error.hint, error.body):
        assert key not in text
    assert "[redacted]" in error.message
    assert caplog.records, "the SDKs logged nothing at DEBUG: the log check would be empty"
    for record in caplog.records:
        assert key not in record.getMessage()
    assert key not in caplog.text


# -- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, clean_env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """The machine's environment minus Prefect, fetchflow, AWS and provider settings."""
    env = dict(clean_env)
    env["PYTHONPATH"] = str(REPO)
    env["FETCHFLOW_HOME"] = str(tmp_path / "home")
    env["NO_COLOR"] = "1"
    yield env


def test_cli_run_without_a_key_says_so_in_one_line_and_calls_nothing(
    fake_openai: FakeOpenAI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    cli_env["OPENAI_BASE_URL"] = fake_openai.base_url
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fetchflow.cli",
            "run",
            str(FLOWS / "personal_openai.yaml"),
            "--json",
        ],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )

    assert done.returncode == 2, done.stderr  # a settings problem: nothing ran
    document = json.loads(done.stdout)
    assert (document["workflow"], document["run_id"], document["status"]) == (
        "personal_openai",
        None,
        "failed",
    )
    where = f"{FLOWS / 'personal_openai.yaml'}:4"
    assert document["error"].startswith(
        f'{where}: step "hero" (image_generation): charge_type: personal needs your openai'
    )
    assert done.stderr.splitlines() == [
        f'fetchflow: {where}: step "hero" (image_generation): charge_type: personal needs '
        "your openai key for model "
        "gpt-image-2, and OPENAI_API_KEY is not set",
        "  hint: export OPENAI_API_KEY=..., name a Prefect Secret block with api_key_secret:, "
        "or use charge_type: hosted if the operator provides keys",
    ]
    assert "Traceback" not in done.stderr
    assert fake_openai.requests == []
    assert not (tmp_path / "home" / "prefect").exists(), "Prefect started for a missing key"
    assert not list((tmp_path / "home").rglob("*.png"))


@pytest.mark.parametrize("provider", ["openai", "google"])
def test_the_key_is_not_in_the_traceback_of_a_rejected_key(
    provider: str,
    request: pytest.FixtureRequest,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if provider == "openai":
        fake: FakeOpenAI | FakeGemini = request.getfixturevalue("fake_openai")
        use_openai(monkeypatch, fake)  # type: ignore[arg-type]
        key, plan, step_id = OPENAI_KEY, load("personal_openai"), "hero"
    else:
        fake = request.getfixturevalue("fake_gemini")
        use_gemini(monkeypatch, fake)  # type: ignore[arg-type]
        key, plan, step_id = GEMINI_KEY, load("gemini_wide"), "banner"
    fake.queue_invalid_api_key()

    with pytest.raises(ProviderError, match=r"the API key was rejected") as caught:
        run_step(plan, step_id, workspace, workspace.settings(provider_concurrency=1))

    assert key not in "".join(traceback.format_exception(caught.value))
