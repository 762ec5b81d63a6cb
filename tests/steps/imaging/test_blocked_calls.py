"""``on_moderation`` applied to one blocked call: the pure core, with a scripted caller."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from fetchflow.settings import Settings
from fetchflow.step import StepContext
from fetchflow.templating import Templates
from steps.imaging.assets import record_hosted_usage
from steps.imaging.blocked_calls import BlockedCalls, Fallback, Unblocked
from steps.imaging.models.catalog import CATALOG
from steps.imaging.moderation import (
    REPHRASE_HINT,
    Block,
    FallbackOnModeration,
    OnModeration,
    RetryOnModeration,
)
from steps.imaging.options import OutputOptions
from steps.imaging.production import ImageJob, plan_job
from steps.imaging.providers.base import ImageProvider, ImageRequest, ProviderImage, ProviderResult
from steps.imaging.providers.errors import ModerationBlocked

LOG = logging.getLogger("fetchflow.test.blocked")


def job(model: str, policy: OnModeration, *, seed: int | None = None, count: int = 1) -> ImageJob:
    options = OutputOptions(count=count, seed=seed, on_moderation=policy)
    return plan_job(CATALOG[model], prompt="a storm", options=options)


def blocked(stage: str) -> ModerationBlocked:
    return ModerationBlocked(
        message="refused", hint="rephrase", stage=stage, categories=("violence",)
    )


class Script:
    """The calls made, answering each from ``answers`` (an error is raised)."""

    def __init__(self, *answers: ModerationBlocked | None) -> None:
        self.answers: Iterator[ModerationBlocked | None] = iter(answers)
        self.sent: list[tuple[ImageRequest, bool]] = []

    def __call__(
        self, provider: ImageProvider, request: ImageRequest, fallback: bool
    ) -> ProviderResult:
        self.sent.append((request, fallback))
        answer = next(self.answers)
        if answer is not None:
            raise answer
        images = [ProviderImage(b"png", "image/png")] * request.count
        return ProviderResult(images=images, usage={"output_tokens": 10}, model=request.model)


def first_request(made: ImageJob) -> ImageRequest:
    from steps.imaging.production import requests_for

    return requests_for(made)[0][1]


def handle(
    calls: BlockedCalls, script: Script, block: ModerationBlocked, made: ImageJob
) -> Unblocked | None:
    return calls.handle(
        block,
        first_request(made),
        first=0,
        describe="image 1 of 1",
        call=script,
        provider=cast(ImageProvider, object()),
    )


def test_fail_names_the_image_the_stage_and_the_other_policies() -> None:
    made = job("gpt-image-2", "fail")
    calls = BlockedCalls("fail", made, fallback=None, logger=LOG)

    with pytest.raises(ModerationBlocked, match="blocked at input") as caught:
        handle(calls, Script(), blocked("input"), made)

    assert caught.value.message == "image 1 of 1: blocked at input (violence): refused"
    assert caught.value.hint == (
        "rephrase; or set on_moderation: skip, {retry: N} or {fallback_model: NAME}"
    )
    assert [block.stage for block in calls.blocks] == ["input"]


def test_skip_makes_nothing_and_counts_an_output_block_as_possibly_billed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    made = job("gpt-image-2", "skip")
    calls = BlockedCalls("skip", made, fallback=None, logger=LOG)

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        assert handle(calls, Script(), blocked("output"), made) is None

    assert caplog.messages == [
        "image 1 of 1: blocked at output (violence) by gpt-image-2; skipped "
        "(on_moderation: skip); it was made, then withheld, and may have been billed"
    ]
    assert [block.billed for block in calls.blocks] == [True]


def test_retry_on_a_seeded_model_changes_the_seed_and_rephrases_after_an_input_block() -> None:
    policy = RetryOnModeration(retry=2)
    made = job("gemini-2.5-flash-image", policy, seed=7)
    calls = BlockedCalls(policy, made, fallback=None, logger=LOG)
    script = Script(blocked("output"), None)  # the first retry blocked, the second made

    unblocked = handle(calls, script, blocked("input"), made)

    sent = [request for request, _ in script.sent]
    assert [request.seed for request in sent] == [7 + 1_000_003, 7 + 2_000_006]
    # the first block was at the input stage: a new seed alone cannot pass it
    assert [request.prompt for request in sent] == [f"a storm\n\n{REPHRASE_HINT}"] * 2
    assert unblocked is not None and unblocked.request is script.sent[1][0]
    note = unblocked.note
    assert (note.outcome, note.attempts, note.rephrase) == ("retried", 3, REPHRASE_HINT)
    assert [(b.stage, b.seed, b.billed) for b in note.blocks] == [
        ("input", 7, False),
        ("output", 7 + 1_000_003, True),
    ]


def test_retry_gives_up_after_n_more_calls() -> None:
    policy = RetryOnModeration(retry=1)
    made = job("gpt-image-2", policy)
    calls = BlockedCalls(policy, made, fallback=None, logger=LOG)
    script = Script(blocked("input"))

    with pytest.raises(ModerationBlocked, match="on all 2 tries") as caught:
        handle(calls, script, blocked("input"), made)

    assert caught.value.message == (
        "image 1 of 1: blocked at input (violence) on all 2 tries; the last: refused"
    )
    assert len(script.sent) == 1 and script.sent[0][0].seed is None  # no seed on gpt-image-2


def test_fallback_asks_the_other_model_within_its_per_request_limit() -> None:
    policy = FallbackOnModeration(fallback_model="gemini-2.5-flash-image")
    made = job("gpt-image-2", policy, count=3)
    other = job("gemini-2.5-flash-image", policy, count=3)
    opened: list[str] = []

    def open_gemini() -> ImageProvider:
        opened.append("gemini")
        return cast(ImageProvider, object())

    fallback = Fallback(other, open_gemini)
    calls = BlockedCalls(policy, made, fallback=fallback, logger=LOG)
    script = Script(None, None, None)

    unblocked = handle(calls, script, blocked("input"), made)

    assert [(r.model, r.count, fb) for r, fb in script.sent] == [
        ("gemini-2.5-flash-image", 1, True)
    ] * 3  # Gemini makes one image per call
    assert opened == ["gemini"]
    assert unblocked is not None and len(unblocked.result.images) == 3
    assert unblocked.result.usage == {"output_tokens": 30}
    assert (unblocked.note.outcome, unblocked.note.attempts) == ("fallback", 4)
    assert unblocked.job is other


def test_the_hosted_usage_line_counts_blocked_calls_and_those_possibly_billed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = StepContext(
        step_id="hero",
        step_type="image_generation",
        run_id="run-1",
        run_name="r",
        workflow="wf",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        logger=LOG,
        settings=Settings(home=tmp_path),
        templates=Templates(),
        scope={},
    )
    blocks = [
        Block(model="gpt-image-2", stage="input"),
        Block(model="gpt-image-2", stage="output", billed=True),
    ]

    with caplog.at_level(logging.INFO, logger=LOG.name):
        record_hosted_usage(ctx, [], blocks)
        record_hosted_usage(ctx, [])  # no block: the line as it always was

    assert caplog.messages == [
        "hosted image usage: workflow=wf run=run-1 step=hero images=0 tokens=None cost_usd=0 "
        "moderation_blocked_calls=2 output_stage_possibly_billed=1",
        "hosted image usage: workflow=wf run=run-1 step=hero images=0 tokens=None cost_usd=0",
    ]
