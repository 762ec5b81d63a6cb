"""Streamed OpenAI calls (``partial_images``) through the real ``openai`` SDK and the fake.

The fake streams as the real API does (``text/event-stream``, chunked, one event per chunk);
the SDK parses the events; :class:`OpenAIProvider` hands each partial image on as it
arrives and returns the final image with its usage. A stream that breaks is a retryable
:class:`StreamBroken` saying how many partial images had come and what that may have cost;
:func:`produce` keeps the images already made, and its retry loop says in the log that a
retry is paid again.
"""

from __future__ import annotations

import io
import logging

import pytest
from fakes import fixtures
from fakes.fake_openai import FakeOpenAI
from PIL import Image

from fetchflow.errors import ProviderError
from steps.imaging.models.catalog import CATALOG
from steps.imaging.options import OutputOptions
from steps.imaging.partial import KeptImage, PartialImages
from steps.imaging.production import MadeImage, plan_job, produce, requests_for
from steps.imaging.providers.base import (
    EditRequest,
    ImageRequest,
    PartialImage,
    ProviderImage,
    StreamBroken,
)
from steps.imaging.providers.openai_images import OpenAIProvider
from steps.imaging.providers.retrying import RetryPolicy

fake_openai = fixtures.fake_openai

KEY = "sk-fetchflow-stream-KEY-0123456789"

REQUEST = ImageRequest(
    model="gpt-image-1.5",
    prompt="a red fox in the snow",
    width=1024,
    height=1024,
    aspect_ratio=None,
    resolution=None,
    count=1,
    quality="low",
    background="auto",
    moderation="auto",
    output_format="png",
    output_compression=None,
    seed=None,
    partial_images=2,
    label="image 1 of 1",
)


def provider_for(fake: FakeOpenAI) -> OpenAIProvider:
    return OpenAIProvider(api_key=KEY, base_url=fake.base_url, timeout=10.0)


def colour(data: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as image:
        return tuple(image.convert("RGB").getpixel((0, 0)))


def test_a_streamed_generation_hands_on_each_partial_image_then_returns_the_final_one(
    fake_openai: FakeOpenAI,
) -> None:
    partials: list[PartialImage] = []

    result = provider_for(fake_openai).generate(
        ImageRequest(**{**vars(REQUEST), "on_partial": partials.append})
    )

    sent = fake_openai.requests[0].json or {}
    assert (sent["stream"], sent["partial_images"], sent["n"]) == (True, 2, 1)
    assert [(p.number, p.mime_type) for p in partials] == [(1, "image/png"), (2, "image/png")]
    # Real images, each a draft of its own (the fake shades them), not the final one.
    finals = [colour(image.data) for image in result.images]
    assert len({colour(p.data) for p in partials} | set(finals)) == 3
    assert result.usage is not None and result.usage["output_tokens"] == 272


def test_a_streamed_edit_sends_multipart_and_reads_the_edit_events(
    fake_openai: FakeOpenAI,
) -> None:
    partials: list[PartialImage] = []
    reference = _png()
    request = EditRequest(
        **{**vars(REQUEST), "partial_images": 1, "on_partial": partials.append},
        images=[ProviderImage(reference, "image/png")],
    )

    result = provider_for(fake_openai).edit(request)

    sent = fake_openai.requests[0]
    assert sent.path == "/v1/images/edits"
    assert (sent.fields["stream"], sent.fields["partial_images"]) == (["true"], ["1"])
    assert [p.number for p in partials] == [1] and len(result.images) == 1
    assert sent.files["image[]"][0].data == reference


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), (200, 10, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_stream_cut_after_two_partial_images_says_what_may_have_been_billed(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.queue_broken_stream(after_partials=2)
    partials: list[PartialImage] = []

    with pytest.raises(StreamBroken) as caught:
        provider_for(fake_openai).generate(
            ImageRequest(**{**vars(REQUEST), "on_partial": partials.append})
        )

    error = caught.value
    assert str(error) == (
        f"openai {fake_openai.generations_url}: the stream of image 1 of 1 broke after 2 "
        "partial images (peer closed connection without sending complete message body "
        "(incomplete chunked read)); OpenAI may bill the 2 partial images and the work done: "
        "no usage was reported before the break\n"
        "  hint: trying again usually helps (and is billed again); partial_images: 0 asks "
        "for the finished image alone"
    )
    assert (error.retryable, error.partials, error.status) == (True, 2, 200)
    assert [p.number for p in partials] == [1, 2]
    assert KEY not in str(error) and KEY not in repr(error.__cause__)


def test_an_error_event_in_the_stream_is_a_retryable_break(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_stream_error(after_partials=1)

    with pytest.raises(
        StreamBroken,
        match=r"broke after 1 partial image \(the stream sent an "
        r"error: The server had an error\.\); OpenAI may bill the 1 partial ",
    ):
        provider_for(fake_openai).generate(REQUEST)


def test_a_refusal_inside_the_stream_is_a_moderation_block_not_retried(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.queue_stream_error(
        after_partials=1, code="moderation_blocked", message="Your request was rejected."
    )

    with pytest.raises(ProviderError) as caught:
        provider_for(fake_openai).generate(REQUEST)

    assert not isinstance(caught.value, StreamBroken)
    assert caught.value.retryable is False
    assert "moderation_blocked" in caught.value.message
    assert caught.value.message.endswith(
        "; OpenAI may bill the 1 partial image and the work done: no usage was reported "
        "before the break"
    )


def test_partial_images_make_one_image_per_call_only_where_the_model_streams() -> None:
    options = OutputOptions(count=3, size="1024x1024", partial_images=2)

    streamed = requests_for(plan_job(CATALOG["gpt-image-1.5"], prompt="p", options=options))
    gemini = requests_for(
        plan_job(CATALOG["gemini-2.5-flash-image"], prompt="p", options=OutputOptions(count=2))
    )

    assert [(first, r.count, r.partial_images) for first, r in streamed] == [
        (0, 1, 2),
        (1, 1, 2),
        (2, 1, 2),
    ]
    assert [r.partial_images for _, r in gemini] == [0, 0]


def test_a_broken_stream_is_retried_and_the_log_says_the_retry_is_paid_again(
    fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_openai.queue_broken_stream(after_partials=1)
    job = plan_job(
        CATALOG["gpt-image-1.5"],
        prompt="p",
        options=OutputOptions(count=1, size="1024x1024", partial_images=2),
    )
    made: list[MadeImage] = []
    seen: list[tuple[int, int]] = []

    def keep(image: MadeImage) -> KeptImage:
        made.append(image)
        return KeptImage(f"image {image.index}", {"index": image.index})

    with caplog.at_level(logging.WARNING):
        produce(
            job,
            provider_for(fake_openai),
            keep,
            retry=RetryPolicy(attempts=2, base_delay=0.01, sleep=lambda _: None),
            on_partial=lambda index, partial: seen.append((index, partial.number)),
        )

    assert len(fake_openai.requests) == 2 and len(made) == 1
    assert seen == [(0, 1), (0, 1), (0, 2)]  # the broken attempt's draft, then the retry's
    assert "the stream of image 1 of 1 broke after 1 partial image" in caplog.text
    assert "OpenAI may bill the 1 partial image and the work done" in caplog.text


def test_a_stream_broken_after_paid_images_keeps_them(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(fake_openai.answer)  # image 1 streams to its end
    fake_openai.queue_broken_stream(after_partials=1)  # image 2 breaks
    job = plan_job(
        CATALOG["gpt-image-1.5"],
        prompt="p",
        options=OutputOptions(count=2, size="1024x1024", partial_images=1),
    )

    with pytest.raises(PartialImages) as caught:
        produce(
            job,
            provider_for(fake_openai),
            lambda image: KeptImage(f"stored {image.index}", {"index": image.index}),
        )

    assert caught.value.kept == [{"index": 0}]
    assert caught.value.message.startswith(
        f"openai {fake_openai.generations_url}: the stream of image 2 of 2 broke after 1 "
        "partial image ("
    )
    assert caught.value.message.endswith("; 1 of 2 images were made and kept before that: stored 0")


def test_a_stream_that_stalls_past_the_timeout_is_a_break(fake_openai: FakeOpenAI) -> None:
    fake_openai.chunk_delay = 1.0  # each event comes a second after the one before
    provider = OpenAIProvider(api_key=KEY, base_url=fake_openai.base_url, timeout=0.3)

    with pytest.raises(StreamBroken) as caught:
        provider.generate(REQUEST)

    assert caught.value.message == (
        f"openai {fake_openai.generations_url}: the stream of image 1 of 1 broke after 1 "
        "partial image (no event within 0.3 s); OpenAI may bill the 1 partial image and the "
        "work done: no usage was reported before the break"
    )
    assert caught.value.retryable


def test_a_gateway_that_ignores_stream_is_read_as_a_plain_answer(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_unstreamed()
    partials: list[PartialImage] = []

    result = provider_for(fake_openai).generate(
        ImageRequest(**{**vars(REQUEST), "on_partial": partials.append})
    )

    assert (len(result.images), partials) == (1, [])
    assert result.usage is not None and result.usage["output_tokens"] == 272
