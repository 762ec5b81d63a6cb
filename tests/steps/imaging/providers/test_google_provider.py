"""GeminiProvider through the real ``google-genai`` SDK against a fake Gemini API over HTTP."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from dataclasses import replace

import httpx2
import pytest
from fakes import fixtures
from fakes.fake_gemini import FakeGemini, google_error_body
from google.genai import errors
from PIL import Image

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import ImageRequest
from steps.imaging.providers.errors import RateLimited
from steps.imaging.providers.google_images import GeminiProvider, google_error
from steps.imaging.providers.redaction import UpstreamError

# The fixture, used by name (tests/steps is on sys.path: pytest puts a test module's
# folder there, so ``fakes`` imports the same under ``pytest`` and ``python -m pytest``).
fake_gemini = fixtures.fake_gemini

#: Recognisable on sight: must never appear in an error. The second one does not look
#: like a key at all, so only exact-value redaction can catch it.
KEY = "AIzaFetchflowTestKey0123456789abcdef"
PLAIN_KEY = "plain-gemini-secret-42"
MODEL = "gemini-2.5-flash-image"

REQUEST = ImageRequest(
    model=MODEL,
    prompt="a red fox in the snow",
    width=None,
    height=None,
    aspect_ratio="16:9",
    resolution="1K",
    count=1,
    quality="auto",
    background="auto",
    moderation="auto",
    output_format="png",
    output_compression=None,
    seed=None,
)


def provider_for(fake: FakeGemini, key: str = KEY, timeout: float = 10.0) -> GeminiProvider:
    return GeminiProvider(api_key=key, base_url=fake.base_url, timeout=timeout)


def assert_no_secret(error: ProviderError, key: str = KEY) -> None:
    for text in (str(error), repr(error), error.body, error.message, error.hint):
        assert key not in text


def test_importing_the_module_does_not_import_the_sdk() -> None:
    code = (
        "import sys, steps.imaging.providers.google_images; "
        "print('google.genai' in sys.modules, 'httpx2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- success ---------------------------------------------------------------------------


def test_count_images_take_count_calls_with_successive_seeds(fake_gemini: FakeGemini) -> None:
    provider = provider_for(fake_gemini)
    result = provider.generate(replace(REQUEST, count=2, seed=41))

    assert [image.mime_type for image in result.images] == ["image/png", "image/png"]
    for image in result.images:
        with Image.open(io.BytesIO(image.data)) as decoded:
            assert (decoded.format, decoded.size) == ("PNG", (1344, 768))
    assert result.images[0].data != result.images[1].data
    assert result.model == MODEL
    assert result.usage == {
        "prompt_token_count": 14,
        "candidates_token_count": 2580,
        "total_token_count": 2594,
    }

    assert [sent.path for sent in fake_gemini.requests] == [
        f"/v1/models/{MODEL}:generateContent"
    ] * 2
    assert provider.endpoint(MODEL) == fake_gemini.url_for(MODEL)
    first, second = fake_gemini.requests
    assert first.credential == KEY
    assert "x-goog-api-key" not in first.headers
    assert first.json == {
        "contents": [{"parts": [{"text": "a red fox in the snow"}], "role": "user"}],
        "generationConfig": {
            "seed": 41,
            "responseModalities": ["IMAGE"],
            "imageConfig": {"aspectRatio": "16:9"},  # 2.5 Flash Image takes no imageSize
        },
    }
    assert second.json is not None
    assert second.json["generationConfig"]["seed"] == 42


def test_without_ratio_size_or_seed_nothing_is_sent_for_them(fake_gemini: FakeGemini) -> None:
    request = replace(REQUEST, aspect_ratio=None, resolution=None)
    [image] = provider_for(fake_gemini).generate(request).images

    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.size == (1024, 1024)
    [sent] = fake_gemini.requests
    assert sent.json is not None
    assert sent.json["generationConfig"] == {"responseModalities": ["IMAGE"], "imageConfig": {}}


def test_thought_images_are_not_results(fake_gemini: FakeGemini) -> None:
    fake_gemini.queue_thought_then_image()

    [image] = provider_for(fake_gemini).generate(REQUEST).images

    assert image.mime_type == "image/png"


def test_base_url_from_google_gemini_base_url(
    fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_gemini.base_url)
    provider = GeminiProvider(api_key=KEY)

    assert len(provider.generate(REQUEST).images) == 1
    assert len(fake_gemini.requests) == 1
    assert provider.endpoint(MODEL) == fake_gemini.url_for(MODEL)


# -- errors over the wire ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "status", "retryable", "match"),
    [
        pytest.param(
            lambda f: f.queue_rate_limit(retry_delay="7s"),
            429,
            True,
            r"429 RESOURCE_EXHAUSTED: rate limited: .*\n  hint: wait 7 s",
            id="429-retry-info",
        ),
        pytest.param(
            lambda f: f.queue_rate_limit(retry_delay=None, retry_after="3"),
            429,
            True,
            r"rate limited: .*\n  hint: wait 3 s",
            id="429-retry-after",
        ),
        pytest.param(
            lambda f: f.queue_quota_zero(),
            429,
            False,
            r"429 RESOURCE_EXHAUSTED: the project has no quota for this model: .*limit: 0"
            r".*\n  hint: enable billing",
            id="429-quota-zero",
        ),
        pytest.param(
            lambda f: f.queue_server_error(500), 500, True, r"500 INTERNAL: server error", id="500"
        ),
        pytest.param(
            lambda f: f.queue_server_error(503),
            503,
            True,
            r"503 UNAVAILABLE: server error: The model is overloaded",
            id="503",
        ),
        pytest.param(
            lambda f: f.queue_invalid_api_key(),
            400,
            False,
            r"400 INVALID_ARGUMENT: the API key was rejected: API key not valid.*"
            r"\n  hint: .*GEMINI_API_KEY",
            id="400-api-key-invalid",
        ),
    ],
)
@pytest.mark.parametrize("key", [KEY, PLAIN_KEY], ids=["aiza-key", "plain-key"])
def test_http_errors_are_mapped_once_without_leaking_the_key(
    fake_gemini: FakeGemini,
    script: object,
    status: int,
    retryable: bool,
    match: str,
    key: str,
) -> None:
    script(fake_gemini)  # type: ignore[operator]

    with pytest.raises(ProviderError, match=match) as caught:
        provider_for(fake_gemini, key=key).generate(replace(REQUEST, count=3))

    error = caught.value
    assert (error.provider, error.status, error.retryable) == ("google", status, retryable)
    assert error.endpoint == fake_gemini.url_for(MODEL)
    # The SDK's exception is chained as its type and redacted message (it may echo the key).
    assert isinstance(error.__cause__, UpstreamError)
    assert str(error.__cause__).startswith("google.genai.errors.")
    assert error.body.startswith('{"error":{"code":')
    assert len(error.body) <= 300
    assert len(fake_gemini.requests) == 1  # no SDK retry, and no second image attempted
    assert_no_secret(error, key)


def test_rate_limit_keeps_retry_after(fake_gemini: FakeGemini) -> None:
    fake_gemini.queue_rate_limit(retry_delay="12.5s", retry_after="99")

    with pytest.raises(RateLimited, match="rate limited") as caught:
        provider_for(fake_gemini).generate(REQUEST)

    assert caught.value.retry_after == 12.5  # Google's RetryInfo wins over the header


@pytest.mark.parametrize(
    ("script", "retryable", "match"),
    [
        pytest.param(
            lambda f: f.queue_safety_stop("IMAGE_SAFETY"),
            False,
            r"the safety system filtered the generated image \(finish_reason IMAGE_SAFETY; "
            r"categories: HARM_CATEGORY_SEXUALLY_EXPLICIT\); finishMessage: \"Unable to show "
            r"the generated image\. .*\"\n  hint: the image was made, then withheld, and may "
            r"have been billed; rephrase the prompt",
            id="image-safety",
        ),
        pytest.param(
            lambda f: f.queue_safety_stop("PROHIBITED_CONTENT"),
            False,
            r"refused the prompt \(finish_reason PROHIBITED_CONTENT; categories: ",
            id="prohibited-content",
        ),
        pytest.param(
            lambda f: f.queue_prompt_blocked("SAFETY"),
            False,
            r"the safety system refused the prompt \(block_reason SAFETY\)",
            id="prompt-blocked",
        ),
        pytest.param(
            lambda f: f.queue_text_only("I can't draw that, here is a poem."),
            False,
            r"the model answered without an image \(finish_reason STOP\): "
            r"\"I can't draw that, here is a poem.\"",
            id="text-only",
        ),
        pytest.param(
            lambda f: f.queue_text_only("", "NO_IMAGE"),
            False,
            r"the model answered without an image \(finish_reason NO_IMAGE\)\n",
            id="no-image",
        ),
        pytest.param(
            lambda f: f.queue_text_only("draft", "IMAGE_OTHER"),
            True,
            r"the model stopped without an image \(finish_reason IMAGE_OTHER\): \"draft\"",
            id="image-other",
        ),
        pytest.param(
            lambda f: f.queue_garbage_image(),
            True,
            r"image 1 of 1 is not a PNG, JPEG, WEBP or GIF image, got 21 bytes",
            id="garbage-bytes",
        ),
    ],
)
def test_answers_without_an_image_are_errors(
    fake_gemini: FakeGemini, script: object, retryable: bool, match: str
) -> None:
    script(fake_gemini)  # type: ignore[operator]

    with pytest.raises(ProviderError, match=match) as caught:
        provider_for(fake_gemini).generate(REQUEST)

    error = caught.value
    assert (error.status, error.retryable) == (200, retryable)
    assert error.endpoint == fake_gemini.url_for(MODEL)
    assert_no_secret(error)


def test_a_failed_call_stops_the_rest(fake_gemini: FakeGemini) -> None:
    fake_gemini.queue(fake_gemini.answer)  # the first image succeeds ...
    fake_gemini.queue_server_error(503)  # ... the second call fails

    with pytest.raises(ProviderError, match="503 UNAVAILABLE"):
        provider_for(fake_gemini).generate(replace(REQUEST, count=4))

    assert len(fake_gemini.requests) == 2


def test_timeout_is_retryable_and_names_the_endpoint(fake_gemini: FakeGemini) -> None:
    fake_gemini.queue_slow(5)
    started = time.monotonic()

    with pytest.raises(ProviderError, match=r"no answer within 0.3 s") as caught:
        provider_for(fake_gemini, timeout=0.3).generate(REQUEST)

    assert time.monotonic() - started < 3
    error = caught.value
    assert (error.retryable, error.status) == (True, None)
    assert error.endpoint == fake_gemini.url_for(MODEL)
    assert fake_gemini.url_for(MODEL) in str(error)
    assert isinstance(error.__cause__, UpstreamError)
    assert "Timeout" in str(error.__cause__)
    assert len(fake_gemini.requests) == 1


def test_unreachable_server_is_retryable() -> None:
    with FakeGemini() as gone:
        base_url = gone.base_url
    provider = GeminiProvider(api_key=KEY, base_url=base_url, timeout=2)

    with pytest.raises(ProviderError, match=r"could not connect") as caught:
        provider.generate(REQUEST)

    assert caught.value.retryable is True
    assert caught.value.endpoint == f"{base_url}/v1/models/{MODEL}:generateContent"


# -- the mapping table, without a server -------------------------------------------------

URL = f"http://u:p@gemini.example/v1/models/{MODEL}:generateContent?key=abc"


def api_error(status: int, status_name: str, *details: dict[str, object]) -> errors.APIError:
    body = google_error_body(status, status_name, f"nope for {KEY}", *details)
    response = httpx2.Response(status, json=body, request=httpx2.Request("POST", URL))
    kind = errors.ClientError if status < 500 else errors.ServerError
    return kind(status, body, response)


@pytest.mark.parametrize(
    ("error", "retryable", "kind", "match"),
    [
        pytest.param(api_error(429, "RESOURCE_EXHAUSTED"), True, RateLimited, "rate", id="429"),
        pytest.param(api_error(401, "UNAUTHENTICATED"), False, ProviderError, "key", id="401"),
        pytest.param(api_error(403, "PERMISSION_DENIED"), False, ProviderError, "key", id="403"),
        pytest.param(api_error(404, "NOT_FOUND"), False, ProviderError, "nope", id="404"),
        pytest.param(api_error(400, "FAILED_PRECONDITION"), False, ProviderError, "nope", id="400"),
        pytest.param(api_error(408, "DEADLINE_EXCEEDED"), True, ProviderError, "server", id="408"),
        pytest.param(api_error(500, "INTERNAL"), True, ProviderError, "server", id="500"),
        pytest.param(api_error(504, "DEADLINE_EXCEEDED"), True, ProviderError, "server", id="504"),
    ],
)
def test_google_error_table(
    error: errors.APIError, retryable: bool, kind: type[ProviderError], match: str
) -> None:
    mapped = google_error(error, api_key=KEY, endpoint="unused", timeout=1)

    assert type(mapped) is kind
    assert (mapped.retryable, mapped.status) == (retryable, error.code)
    assert match in mapped.message
    assert mapped.endpoint == f"http://gemini.example/v1/models/{MODEL}:generateContent"
    assert_no_secret(mapped)


def test_google_error_for_connection_failures() -> None:
    refused = httpx2.ConnectError(f"refused for {KEY}", request=httpx2.Request("POST", URL))

    mapped = google_error(refused, api_key=KEY, endpoint="unused", timeout=1)

    assert mapped.message == (
        f"google http://gemini.example/v1/models/{MODEL}:generateContent: could not connect "
        "(refused for [redacted])"
    )
    assert mapped.retryable is True


# -- finish reasons: one table, Google's finishMessage quoted -------------------------------

FILTERED = "Unable to show the generated image. The image was filtered out."


@pytest.mark.parametrize(
    ("reason", "text", "retryable", "first", "hint"),
    [
        pytest.param(
            "IMAGE_SAFETY",
            None,
            False,
            f"the safety system filtered the generated image (finish_reason IMAGE_SAFETY); "
            f'finishMessage: "{FILTERED}"',
            "the image was made, then withheld, and may have been billed; rephrase the prompt "
            "(not retried: the same prompt tends to be filtered again)",
            id="image-safety",
        ),
        pytest.param(
            "IMAGE_PROHIBITED_CONTENT",
            None,
            False,
            "the safety system filtered the generated image as prohibited content "
            f'(finish_reason IMAGE_PROHIBITED_CONTENT); finishMessage: "{FILTERED}"',
            "the image was made, then withheld, and may have been billed; rephrase the prompt "
            "(not retried: the same prompt tends to be filtered again)",
            id="image-prohibited",
        ),
        pytest.param(
            "SAFETY",
            None,
            False,
            "the safety system refused the prompt (finish_reason SAFETY); "
            f'finishMessage: "{FILTERED}"',
            "rephrase the prompt; the same prompt is refused again, so it is not retried",
            id="safety",
        ),
        pytest.param(
            "BLOCKLIST",
            None,
            False,
            "the answer was stopped for a term on a blocklist (finish_reason BLOCKLIST); "
            f'finishMessage: "{FILTERED}"',
            "remove the blocked term from the prompt; not retried: the same prompt is stopped "
            "again",
            id="blocklist",
        ),
        pytest.param(
            "RECITATION",
            None,
            False,
            "the answer was stopped as a recitation of existing content (finish_reason "
            f'RECITATION); finishMessage: "{FILTERED}"',
            "ask for something original rather than a copy of an existing work; not retried",
            id="recitation",
        ),
        pytest.param(
            "OTHER",
            "half",
            True,
            'the model stopped without an image (finish_reason OTHER): "half"; finishMessage: '
            f'"{FILTERED}"',
            "the model failed to finish the image; trying again usually helps",
            id="other",
        ),
        pytest.param(
            "SOMETHING_NEW",
            None,
            False,
            "the model stopped without an image for a reason fetchflow does not know "
            f'(SOMETHING_NEW) (finish_reason SOMETHING_NEW); finishMessage: "{FILTERED}"',
            "read Google's finish message; not retried: the call may have been billed and the "
            "same request may stop the same way",
            id="unknown",
            # The SDK warns about a reason it does not know either; the answer still parses.
            marks=pytest.mark.filterwarnings(
                "ignore:SOMETHING_NEW is not a valid FinishReason:UserWarning"
            ),
        ),
    ],
)
def test_each_finish_reason_has_its_own_message_with_the_finish_message(
    fake_gemini: FakeGemini, reason: str, text: str | None, retryable: bool, first: str, hint: str
) -> None:
    fake_gemini.queue_stop(reason, FILTERED, text)

    with pytest.raises(ProviderError) as caught:
        provider_for(fake_gemini).generate(REQUEST)

    error = caught.value
    assert error.format() == (f"google {fake_gemini.url_for(MODEL)}: {first}\n  hint: {hint}")
    assert (error.status, error.retryable) == (200, retryable)


# -- 2xx answers that are not Gemini's JSON -------------------------------------------------

GEMINI_HINT = (
    "check that GOOGLE_GEMINI_BASE_URL (FETCHFLOW_HOSTED_GEMINI_BASE_URL for charge_type: "
    "hosted) points at the Gemini API, https://generativelanguage.googleapis.com, or a "
    "gateway that answers like it; not retried: the provider answered 200, so the call may "
    "have been billed"
)


@pytest.mark.parametrize(
    ("body", "content_type", "first"),
    [
        pytest.param(
            b"<html><body>Welcome to nginx!</body></html>",
            "text/html",
            "200 text/html: the answer is not JSON: <html><body>Welcome to nginx!</body></html>",
            id="html-page",
        ),
        pytest.param(b"OK", "text/plain", "200 text/plain: the answer is not JSON: OK", id="text"),
        pytest.param(
            b"",
            "application/json",
            "200 application/json: the answer is not JSON: (empty body)",
            id="empty-body",
        ),
        pytest.param(
            {"choices": []},
            "application/json",
            "200 application/json: the answer is not a generateContent answer (no candidates; "
            'keys: choices): {"choices": []}',
            id="other-json",
        ),
        pytest.param(
            [1],
            "application/json",
            "200 application/json: the answer is not a generateContent answer (not a JSON "
            "object): [1]",
            id="json-list",
        ),
        pytest.param(
            b'data: {"candidates": []}\n\n',
            "text/event-stream",
            "200 text/event-stream: the answer is an event stream, not one JSON answer: "
            'data: {"candidates": []}',
            id="event-stream",
        ),
    ],
)
def test_a_200_that_is_not_gemini_json_is_a_provider_error_never_retried(
    fake_gemini: FakeGemini, body: object, content_type: str, first: str
) -> None:
    fake_gemini.queue_not_json(body, content_type)

    with pytest.raises(ProviderError) as caught:
        provider_for(fake_gemini).generate(REQUEST)

    error = caught.value
    assert error.format() == f"google {fake_gemini.url_for(MODEL)}: {first}\n  hint: {GEMINI_HINT}"
    assert (error.status, error.retryable) == (200, False)
    assert len(fake_gemini.requests) == 1
    assert_no_secret(error)


# -- what each model is sent -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "ratio", "resolution", "image_config", "size"),
    [
        pytest.param(
            "gemini-3.1-flash-image-preview",
            "1:1",
            "2K",
            {"aspectRatio": "1:1", "imageSize": "2K"},
            (2048, 2048),
            id="3.1-flash-2K",
        ),
        pytest.param(
            "gemini-2.5-flash-image",
            "4:5",
            "1K",
            {"aspectRatio": "4:5"},
            (896, 1152),
            id="2.5-flash-4:5-no-image-size",
        ),
        pytest.param(
            "gemini-3-pro-image-preview",
            "5:4",
            "4K",
            {"aspectRatio": "5:4", "imageSize": "4K"},
            (4608, 3584),
            id="3-pro-5:4-4K",
        ),
    ],
)
def test_each_model_gets_the_ratio_and_the_image_size_it_takes(
    fake_gemini: FakeGemini,
    model: str,
    ratio: str,
    resolution: str,
    image_config: dict[str, str],
    size: tuple[int, int],
) -> None:
    request = replace(REQUEST, model=model, aspect_ratio=ratio, resolution=resolution)

    [image] = provider_for(fake_gemini).generate(request).images

    [sent] = fake_gemini.requests
    assert sent.json is not None
    assert sent.json["generationConfig"]["imageConfig"] == image_config
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.size == size
