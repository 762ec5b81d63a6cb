"""Provider faults end to end: the fake servers over HTTP, the real SDKs, fetchflow's retries.

The image step runs as the runner runs it (``ImageGenerationStep().run`` with a real
:class:`~fetchflow.storage.LocalStore`), pointed at the fakes with the SDKs' own variables.
Waits are kept short with ``FETCHFLOW_PROVIDER_MAX_DELAY_SECONDS`` (a small cap on every
backoff) and Retry-After values of a fraction of a second; the sleeps are real. The pure
loop is in ``test_retrying.py``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes import RecordedRequest, Reply, fixtures
from fakes.fake_gemini import FakeGemini
from fakes.fake_openai import FakeOpenAI
from pydantic import TypeAdapter

from fetchflow.errors import ProviderError
from fetchflow.settings import Settings
from fetchflow.step import StepContext
from fetchflow.storage import LocalStore
from fetchflow.templating import Templates
from steps.image_generation import ImageAsset, ImageGenerationConfig, ImageGenerationStep
from steps.imaging.models.catalog import CATALOG
from steps.imaging.options import OutputOptions
from steps.imaging.partial import KeptImage, PartialImages
from steps.imaging.production import MadeImage, plan_job, produce
from steps.imaging.providers.errors import RateLimited
from steps.imaging.providers.google_images import GeminiProvider
from steps.imaging.providers.openai_images import OpenAIProvider
from steps.imaging.providers.retrying import RetryPolicy
from steps.imaging.settings import ImageSettings, use_image_settings

fake_openai = fixtures.fake_openai
fake_gemini = fixtures.fake_gemini

OPENAI_KEY = "sk-test-SECRET-faults-0123456789"
GEMINI_KEY = "AIzaTestSECRETfaults0123456789"
LOGGER = "fetchflow.test.provider_faults"
#: One image from each provider; Gemini makes one image per call.
OPENAI_STEP = {"prompt": "a paper crane", "model": "gpt-image-2", "size": "1024x1024"}
GEMINI_STEP = {"prompt": "a paper crane", "model": "gemini-2.5-flash-image", "aspect_ratio": "1:1"}
ATTEMPT_LINE = re.compile(r"^attempt (\d+)/(\d+) after (.+) from (\S+) (\S+): waiting ([\d.]+) s")


@pytest.fixture(autouse=True)
def clean_environment(
    scrub_environ: Callable[[pytest.MonkeyPatch], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No provider key, base URL or FETCHFLOW_* setting from the machine; no ``.env`` read."""
    scrub_environ(monkeypatch)
    monkeypatch.chdir(tmp_path)


@dataclass(frozen=True)
class Faulty:
    """A fake provider server and the step fields that call it."""

    provider: str
    fake: FakeOpenAI | FakeGemini
    step: dict[str, object]


def serve(provider: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Faulty:
    """``provider``'s fake server, set up through the SDK's own variables."""
    if provider == "openai":
        fake: FakeOpenAI | FakeGemini = request.getfixturevalue("fake_openai")
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        return Faulty(provider, fake, OPENAI_STEP)
    fake = request.getfixturevalue("fake_gemini")
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
    return Faulty(provider, fake, GEMINI_STEP)


@pytest.fixture(params=["openai", "google"])
def faulty(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Faulty:
    """Each provider in turn."""
    return serve(request.param, request, monkeypatch)


def context(root: Path, **image_settings: Any) -> tuple[StepContext, LocalStore]:
    use_image_settings(ImageSettings(**image_settings))
    store = LocalStore(root / "assets", spool_dir=root / "spool")
    ctx = StepContext(
        step_id="hero",
        step_type="image_generation",
        run_id=str(uuid.uuid4()),
        run_name="faults",
        workflow="faults",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=logging.getLogger(LOGGER),
        settings=Settings(home=root / "home", store=str(store.root)),
        templates=Templates(),
        scope={},
        open_store=lambda: store,
    )
    return ctx, store


def run_step(ctx: StepContext, **fields: object) -> list[ImageAsset]:
    config = ImageGenerationConfig.model_validate(fields)
    return ImageGenerationStep().run(config, ctx)


def stored_files(store: LocalStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


def attempt_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    return [m for m in map(ATTEMPT_LINE.match, lines) if m]


# -- retried: rate limits, server errors, timeouts ------------------------------------------


def test_a_429_with_retry_after_then_success_waits_at_least_what_was_asked(
    faulty: Faulty, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    if isinstance(faulty.fake, FakeOpenAI):
        faulty.fake.queue_rate_limit(retry_after="0.25")
    else:
        faulty.fake.queue_rate_limit(retry_delay="0.25s")
    ctx, store = context(tmp_path, provider_max_delay_seconds=0.4)

    started = time.monotonic()
    assets = run_step(ctx, **faulty.step)
    took = time.monotonic() - started

    assert len(faulty.fake.requests) == 2
    assert took >= 0.25
    assert len(assets) == 1 and stored_files(store) == [store.path_of(assets[0].storage_uri)]
    [line] = attempt_lines(caplog)
    attempt, attempts, failure, provider, endpoint, wait = line.groups()
    assert (attempt, attempts, failure, provider) == ("2", "4", "429", faulty.provider)
    assert endpoint.startswith(faulty.fake.root)
    assert 0.25 <= float(wait) <= 0.4
    assert line.string.endswith("(image 1 of 1)")


def test_two_server_errors_then_success_is_three_requests(
    faulty: Faulty, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    faulty.fake.queue_server_error(500)
    faulty.fake.queue_server_error(503)
    ctx, store = context(tmp_path, provider_max_delay_seconds=0.05)

    assets = run_step(ctx, **faulty.step)

    assert len(faulty.fake.requests) == 3 and len(assets) == 1
    assert stored_files(store) == [store.path_of(assets[0].storage_uri)]
    assert [m.group(1, 3) for m in attempt_lines(caplog)] == [("2", "500"), ("3", "503")]
    succeeded = [r.getMessage() for r in caplog.records if "succeeded" in r.getMessage()]
    assert len(succeeded) == 1 and succeeded[0].startswith("attempt 3/4 succeeded after ")


@pytest.mark.parametrize("provider", ["openai", "google"])
def test_a_timeout_then_success_is_retried(
    provider: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    fake: FakeOpenAI | FakeGemini
    if provider == "openai":
        fake = request.getfixturevalue("fake_openai")
        client: OpenAIProvider | GeminiProvider = OpenAIProvider(
            OPENAI_KEY, fake.base_url, timeout=0.3
        )
    else:
        fake = request.getfixturevalue("fake_gemini")
        client = GeminiProvider(GEMINI_KEY, fake.base_url, timeout=0.3)
    fake.queue_slow(5)
    job = plan_job(
        CATALOG["gpt-image-2" if provider == "openai" else "gemini-2.5-flash-image"],
        prompt="a paper crane",
        options=OutputOptions(
            count=1,
            size="1024x1024" if provider == "openai" else None,
            aspect_ratio=None if provider == "openai" else "1:1",
            resolution=None,
            quality="auto",
            background="auto",
            moderation="auto",
            output_format="png",
            output_compression=None,
            seed=None,
        ),
    )
    made: list[MadeImage] = []

    def keep(image: MadeImage) -> KeptImage:
        made.append(image)
        return KeptImage(f"uri-{image.index}", {})

    started = time.monotonic()
    try:
        produce(
            job,
            client,
            keep,
            retry=RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.05),
            logger=logging.getLogger(LOGGER),
        )
    finally:
        client.close()

    assert time.monotonic() - started < 3  # the slow answer was not waited for
    assert len(fake.requests) == 2 and len(made) == 1
    [line] = attempt_lines(caplog)
    assert line.group(1, 3, 4) == ("2", "no answer", provider)


# -- never retried: refusals ----------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A scripted refusal and what the error says."""

    script: Callable[[Any], None]
    match: str


REFUSALS = {
    "openai-moderation": (
        "openai",
        Refusal(
            lambda fake: fake.queue_moderation_blocked(("violence",)),
            r"400 moderation_blocked: the safety system refused the prompt",
        ),
    ),
    "openai-insufficient-quota": (
        "openai",
        Refusal(
            lambda fake: fake.queue_insufficient_quota(),
            r"429 insufficient_quota: the account is out of quota",
        ),
    ),
    "openai-auth": (
        "openai",
        Refusal(
            lambda fake: fake.queue_invalid_api_key(),
            r"401 invalid_api_key: the API key was rejected",
        ),
    ),
    "gemini-safety": (
        "google",
        Refusal(
            lambda fake: fake.queue_safety_stop(),
            r"the safety system filtered the generated image \(finish_reason IMAGE_SAFETY",
        ),
    ),
    "gemini-quota-zero": (
        "google",
        Refusal(
            lambda fake: fake.queue_quota_zero(),
            r"429 RESOURCE_EXHAUSTED: the project has no quota for this model",
        ),
    ),
    "gemini-auth": (
        "google",
        Refusal(
            lambda fake: fake.queue_invalid_api_key(),
            r"400 INVALID_ARGUMENT: the API key was rejected",
        ),
    ),
}


@pytest.mark.parametrize(
    ("provider", "refusal"),
    [pytest.param(*value, id=name) for name, value in REFUSALS.items()],
)
def test_refusals_are_one_request_and_never_retried(
    provider: str,
    refusal: Refusal,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    faulty = serve(provider, request, monkeypatch)
    caplog.set_level(logging.INFO, LOGGER)
    refusal.script(faulty.fake)
    ctx, store = context(tmp_path, provider_max_delay_seconds=0.05)

    with pytest.raises(ProviderError, match=refusal.match) as caught:
        run_step(ctx, **faulty.step)

    assert len(faulty.fake.requests) == 1
    assert caught.value.retryable is False
    assert "gave up" not in caught.value.message and attempt_lines(caplog) == []
    assert stored_files(store) == []
    assert OPENAI_KEY not in caught.value.format() and GEMINI_KEY not in caught.value.format()


# -- giving up ------------------------------------------------------------------------------


def test_exhausted_attempts_say_how_many_and_the_last_status(
    faulty: Faulty, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    for status in (500, 503, 500):
        faulty.fake.queue_server_error(status)
    ctx, store = context(tmp_path, provider_attempts=3, provider_max_delay_seconds=0.05)

    with pytest.raises(
        ProviderError,
        match=r": 500 .*server error: .* \(gave up after 3 attempts in [\d.]+ s; last: 500\)\n"
        r"  hint: .*; FETCHFLOW_PROVIDER_ATTEMPTS allows more attempts",
    ) as caught:
        run_step(ctx, **faulty.step)

    assert len(faulty.fake.requests) == 3
    assert (caught.value.status, caught.value.retryable) == (500, False)  # no step retry
    assert [m.group(1, 2, 3) for m in attempt_lines(caplog)] == [
        ("2", "3", "500"),
        ("3", "3", "503"),
    ]
    assert stored_files(store) == []


def test_a_retry_after_longer_than_the_cap_is_not_waited_for(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    fake_openai.queue_rate_limit(retry_after="30")
    ctx, _ = context(tmp_path, provider_max_delay_seconds=2)

    started = time.monotonic()
    with pytest.raises(
        RateLimited, match=r"the provider asked to wait 30 s, longer than the 2 s allowed"
    ) as caught:
        run_step(ctx, **OPENAI_STEP)

    assert time.monotonic() - started < 1.5
    assert len(fake_openai.requests) == 1 and caught.value.retry_after == 30.0
    assert "FETCHFLOW_PROVIDER_MAX_DELAY_SECONDS" in caught.value.hint


# -- the per-provider call limit ------------------------------------------------------------


@pytest.mark.parametrize("limit", [2, 6], ids=["limit-2", "limit-6"])
def test_concurrent_steps_never_have_more_calls_in_flight_than_the_limit(
    limit: int,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    in_flight, seen = 0, [0]
    lock = threading.Lock()

    def slow(request: RecordedRequest) -> Reply:
        nonlocal in_flight
        with lock:
            in_flight += 1
            seen[0] = max(seen[0], in_flight)
        time.sleep(0.3)
        with lock:
            in_flight -= 1
        return fake_openai.answer(request)

    fake_openai.queue(*[slow] * 6)
    start = threading.Barrier(6)
    results: list[list[ImageAsset] | BaseException] = []

    def one_step(number: int) -> None:
        ctx, _ = context(tmp_path / f"step-{number}", provider_concurrency=limit)
        start.wait()
        try:
            results.append(run_step(ctx, **OPENAI_STEP))
        except BaseException as error:  # reported by the assertion below
            results.append(error)

    threads = [threading.Thread(target=one_step, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert all(isinstance(result, list) and len(result) == 1 for result in results), results
    assert len(fake_openai.requests) == 6
    if limit == 2:
        assert seen[0] == 2
    else:
        assert seen[0] > 2  # the fake does see concurrent calls when nothing holds them back
    waits = [r.getMessage() for r in caplog.records if "waiting for a free" in r.getMessage()]
    assert set(waits) <= {
        f"waiting for a free openai slot: {limit} calls at a time (FETCHFLOW_PROVIDER_CONCURRENCY)"
    }
    # Each step that found the slots taken said so once (one call each, so at most once).
    assert (1 <= len(waits) <= 6 - limit) if limit < 6 else waits == []


# -- partial success ------------------------------------------------------------------------


def use_gemini(monkeypatch: pytest.MonkeyPatch, fake: FakeGemini) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)


GEMINI_THREE = {**GEMINI_STEP, "count": 3, "seed": 7}
#: The three calls one at a time, so the scripted answers meet them in index order
#: (concurrent calls: tests/steps/test_concurrent_calls.py).
ONE_AT_A_TIME = {"provider_concurrency": 1}


def test_a_refused_third_call_keeps_the_two_images_made_and_hands_on_their_records(
    fake_gemini: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_gemini(monkeypatch, fake_gemini)
    fake_gemini.queue(fake_gemini.answer, fake_gemini.answer)
    fake_gemini.queue_safety_stop()
    ctx, store = context(tmp_path, provider_max_delay_seconds=0.05, **ONE_AT_A_TIME)

    with pytest.raises(
        PartialImages,
        match=r"the safety system filtered the generated image .*; 2 of 3 images were made and "
        r"kept "
        r"before that: file://\S+, file://\S+\n  hint: .*not retried",
    ) as caught:
        run_step(ctx, **GEMINI_THREE)

    error = caught.value
    assert len(fake_gemini.requests) == 3  # the refusal was not retried
    assert (error.asked, error.retryable) == (3, False)
    assert isinstance(error.__cause__, ProviderError) and error.__cause__.retryable is False
    assets = TypeAdapter(list[ImageAsset]).validate_python(error.kept)
    assert [(a.index, a.seed, a.provider) for a in assets] == [(0, 7, "google"), (1, 8, "google")]
    assert error.kept == ImageGenerationStep.dump_output(assets)  # exactly the step's output
    paths = [store.path_of(asset.storage_uri) for asset in assets]
    assert all(path.is_file() for path in paths)
    assert sorted(paths) == stored_files(store)  # the two, nothing else
    for asset, path in zip(assets, paths, strict=True):
        assert path.stat().st_size == asset.file_size


def test_a_failed_call_in_the_middle_is_retried_and_the_step_completes(
    fake_gemini: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_gemini(monkeypatch, fake_gemini)
    fake_gemini.queue(fake_gemini.answer)
    fake_gemini.queue_server_error(503)
    ctx, store = context(tmp_path, provider_max_delay_seconds=0.05, **ONE_AT_A_TIME)

    assets = run_step(ctx, **GEMINI_THREE)

    seeds = [r.json["generationConfig"]["seed"] for r in fake_gemini.requests if r.json]
    assert seeds == [7, 8, 8, 9]  # the retry repeats the failed call, not the whole step
    assert [a.index for a in assets] == [0, 1, 2] and len(stored_files(store)) == 3


def test_hosted_usage_of_the_kept_images_is_recorded_when_a_later_call_fails(
    fake_gemini: FakeGemini, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    fake_gemini.queue(fake_gemini.answer)
    fake_gemini.queue_invalid_api_key()
    ctx, _ = context(
        tmp_path,
        hosted_gemini_api_key=GEMINI_KEY,
        hosted_gemini_base_url=fake_gemini.base_url,
        provider_max_delay_seconds=0.05,
        **ONE_AT_A_TIME,
    )

    with pytest.raises(PartialImages, match=r"1 of 3 images were made and kept") as caught:
        run_step(ctx, **GEMINI_THREE, charge_type="hosted")

    assert len(caught.value.kept) == 1 and caught.value.kept[0]["charge_type"] == "hosted"
    [usage] = [r.getMessage() for r in caplog.records if "hosted image usage" in r.getMessage()]
    assert f"run={ctx.run_id} step=hero images=1 " in usage
    assert GEMINI_KEY not in caplog.text


# -- answers a retry would pay for again ----------------------------------------------------


@pytest.mark.filterwarnings("ignore:NEW_REASON is not a valid FinishReason:UserWarning")
def test_an_unknown_finish_reason_is_one_request_and_quotes_the_finish_message(
    fake_gemini: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_gemini(monkeypatch, fake_gemini)
    fake_gemini.queue_stop("NEW_REASON", "Something new stopped this answer.")
    ctx, store = context(tmp_path, provider_max_delay_seconds=0.05)

    with pytest.raises(
        ProviderError,
        match=r"for a reason fetchflow does not know \(NEW_REASON\) \(finish_reason NEW_REASON\); "
        r'finishMessage: "Something new stopped this answer\."\n  hint: ',
    ) as caught:
        run_step(ctx, **GEMINI_STEP)

    assert len(fake_gemini.requests) == 1 and caught.value.retryable is False
    assert stored_files(store) == []


def test_an_event_stream_answer_keeps_its_final_image(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    fake_openai.queue_event_stream(partials=2)
    ctx, store = context(tmp_path, provider_max_delay_seconds=0.05)

    [asset] = run_step(ctx, **OPENAI_STEP)

    assert len(fake_openai.requests) == 1  # kept, not thrown away and bought again
    assert stored_files(store) == [store.path_of(asset.storage_uri)]
