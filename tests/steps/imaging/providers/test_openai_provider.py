"""OpenAIProvider through the real ``openai`` SDK against a fake Images API over HTTP.

Also the shared error helpers of ``steps.imaging.providers.redaction`` and ``.errors``
(redaction, trimming, endpoints, retry-after), which both providers use.
"""

from __future__ import annotations

import base64
import functools
import io
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime

import httpx2
import openai
import pytest
from fakes import fixtures
from fakes.fake_openai import FakeOpenAI, openai_error_body
from PIL import Image

from fetchflow.errors import ProviderError
from steps.imaging.pixels.formats import sniff_mime_type
from steps.imaging.providers.base import ImageRequest
from steps.imaging.providers.errors import ModerationBlocked, RateLimited, retry_after_seconds
from steps.imaging.providers.openai_images import OpenAIProvider, openai_error
from steps.imaging.providers.openai_requests import generation_params
from steps.imaging.providers.redaction import UpstreamError, public_endpoint, redact, trim_body

# The fixture, used by name (tests/steps is on sys.path: pytest puts a test module's
# folder there, so ``fakes`` imports the same under ``pytest`` and ``python -m pytest``).
fake_openai = fixtures.fake_openai

#: Recognisable on sight: must never appear in an error. The second one does not look
#: like a key at all, so only exact-value redaction can catch it.
KEY = "sk-fetchflow-test-KEY-0123456789abcdef"
PLAIN_KEY = "plain-secret-7f3a9c"

REQUEST = ImageRequest(
    model="gpt-image-2",
    prompt="a red fox in the snow",
    width=1536,
    height=1024,
    aspect_ratio=None,
    resolution=None,
    count=3,
    quality="high",
    background="opaque",
    moderation="low",
    output_format="jpeg",
    output_compression=80,
    seed=None,
)


def provider_for(fake: FakeOpenAI, key: str = KEY, timeout: float = 10.0) -> OpenAIProvider:
    return OpenAIProvider(api_key=key, base_url=fake.base_url, timeout=timeout)


def assert_no_secret(error: ProviderError, key: str = KEY) -> None:
    for text in (str(error), repr(error), error.body, error.message, error.hint):
        assert key not in text
        assert "Bearer" not in text


def test_importing_the_module_does_not_import_openai() -> None:
    code = (
        "import sys, steps.imaging.providers.openai_images; "
        "print('openai' in sys.modules, 'httpx2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- success ---------------------------------------------------------------------------


def test_generates_n_images_of_the_size_and_format_asked(fake_openai: FakeOpenAI) -> None:
    result = provider_for(fake_openai).generate(REQUEST)

    assert [image.mime_type for image in result.images] == ["image/jpeg"] * 3
    for image in result.images:
        with Image.open(io.BytesIO(image.data)) as decoded:
            assert (decoded.format, decoded.size) == ("JPEG", (1536, 1024))
    assert len({image.data for image in result.images}) == 3
    assert result.model == "gpt-image-2"
    assert result.usage == {
        "input_tokens": 6,
        "input_image_tokens": 0,
        "input_text_tokens": 6,
        "output_tokens": 3 * 4160 * 1536 * 1024 // 1024**2,
        "total_tokens": 6 + 3 * 4160 * 1536 * 1024 // 1024**2,
    }

    [sent] = fake_openai.requests
    assert sent.path == "/v1/images/generations"
    assert sent.credential == KEY
    assert "authorization" not in sent.headers
    assert sent.headers["x-stainless-retry-count"] == "0"
    assert sent.json == {
        "model": "gpt-image-2",
        "prompt": "a red fox in the snow",
        "n": 3,
        "size": "1536x1024",
        "quality": "high",
        "background": "opaque",
        "moderation": "low",
        "output_format": "jpeg",
        "output_compression": 80,
    }


def test_transparent_png_without_compression_or_size(fake_openai: FakeOpenAI) -> None:
    request = replace(
        REQUEST,
        width=None,
        height=None,
        count=1,
        background="transparent",
        output_format="png",
        output_compression=80,  # png takes none: left out, not refused by the API
    )
    [image] = provider_for(fake_openai).generate(request).images

    with Image.open(io.BytesIO(image.data)) as decoded:
        assert (decoded.format, decoded.size, decoded.mode) == ("PNG", (1024, 1024), "RGBA")
        assert decoded.getpixel((0, 0))[3] == 0  # type: ignore[index]
    [sent] = fake_openai.requests
    assert sent.json is not None
    assert sent.json["size"] == "auto"
    assert "output_compression" not in sent.json


@pytest.mark.parametrize(
    ("output_format", "compression", "sent"),
    [
        pytest.param("jpeg", 80, 80, id="jpeg-sends-compression"),
        pytest.param("webp", 0, 0, id="webp-sends-zero"),
        pytest.param("png", 80, None, id="png-never"),
        pytest.param("webp", None, None, id="unset-never"),
    ],
)
def test_compression_only_with_jpeg_or_webp(
    output_format: str, compression: int | None, sent: int | None
) -> None:
    params = generation_params(
        replace(REQUEST, output_format=output_format, output_compression=compression)
    )
    assert params.get("output_compression") == sent
    assert params["output_format"] == output_format


def test_never_sends_dalle_only_parameters() -> None:
    params = generation_params(replace(REQUEST, seed=7))
    assert set(params) == {
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "background",
        "moderation",
        "output_format",
        "output_compression",
    }


def test_base_url_from_openai_base_url(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    provider = OpenAIProvider(api_key=KEY)

    result = provider.generate(replace(REQUEST, count=1))

    assert len(result.images) == 1
    assert len(fake_openai.requests) == 1
    assert provider.endpoint == fake_openai.generations_url


def test_the_fake_records_multipart_edits(fake_openai: FakeOpenAI) -> None:
    # The future image_edit step sends multipart; the fake parses what the SDK sends.
    client = openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0)
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, "PNG")
    response = client.images.edit(
        model="gpt-image-1.5",
        prompt="make it blue",
        image=[("a.png", png.getvalue(), "image/png"), ("b.png", png.getvalue(), "image/png")],
        size="1024x1024",
    )

    assert response.data is not None
    assert len(response.data) == 1
    [sent] = fake_openai.requests
    assert sent.path == "/v1/images/edits"
    assert sent.fields["prompt"] == ["make it blue"]
    assert [f.filename for f in sent.files["image[]"]] == ["a.png", "b.png"]
    assert sent.files["image[]"][0].data == png.getvalue()


# -- errors over the wire ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "status", "retryable", "match"),
    [
        pytest.param(
            lambda f: f.queue_rate_limit(retry_after="7"),
            429,
            True,
            r"429 rate_limit_exceeded: rate limited: .*\n  hint: wait 7 s",
            id="429-retry-after",
        ),
        pytest.param(
            lambda f: f.queue_rate_limit(retry_after_ms="1500"),
            429,
            True,
            r"rate limited: Rate limit reached .*\n  hint: wait 1.5 s",
            id="429-retry-after-ms",
        ),
        pytest.param(
            lambda f: f.queue_insufficient_quota(),
            429,
            False,
            r"429 insufficient_quota: the account is out of quota.*\n  hint: .*billing",
            id="429-insufficient-quota",
        ),
        pytest.param(
            lambda f: f.queue_server_error(500), 500, True, r"500 .*server error", id="500"
        ),
        pytest.param(lambda f: f.queue_server_error(503), 503, True, r"503 .*overloaded", id="503"),
        pytest.param(
            lambda f: f.queue_moderation_blocked(("sexual", "violence"), "input"),
            400,
            False,
            r"400 moderation_blocked: the safety system refused the prompt "
            r"\(stage: input; categories: sexual, violence\)",
            id="400-moderation",
        ),
        pytest.param(
            lambda f: f.queue_invalid_api_key(),
            401,
            False,
            r"401 invalid_api_key: the API key was rejected.*\n  hint: .*OPENAI_API_KEY",
            id="401",
        ),
    ],
)
@pytest.mark.parametrize("key", [KEY, PLAIN_KEY], ids=["sk-key", "plain-key"])
def test_http_errors_are_mapped_once_without_leaking_the_key(
    fake_openai: FakeOpenAI,
    script: object,
    status: int,
    retryable: bool,
    match: str,
    key: str,
) -> None:
    script(fake_openai)  # type: ignore[operator]

    with pytest.raises(ProviderError, match=match) as caught:
        provider_for(fake_openai, key=key).generate(REQUEST)

    error = caught.value
    assert (error.provider, error.status, error.retryable) == ("openai", status, retryable)
    assert error.endpoint == fake_openai.generations_url
    assert str(error).startswith(f"openai {fake_openai.generations_url}: {status}")
    # The SDK's exception is chained as its type and redacted message (it may echo the key).
    assert isinstance(error.__cause__, UpstreamError)
    assert str(error.__cause__).startswith("openai.")
    assert error.body.startswith('{"message":')
    assert len(error.body) <= 300
    assert len(fake_openai.requests) == 1  # the SDK retried nothing
    assert_no_secret(error, key)


def test_rate_limit_keeps_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_rate_limit(retry_after_ms="2500", retry_after="9")

    with pytest.raises(RateLimited, match="rate limited") as caught:
        provider_for(fake_openai).generate(REQUEST)

    assert caught.value.retry_after == 2.5  # the millisecond header is the precise one


def test_bad_request_keeps_the_providers_message(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ProviderError, match=r"400 invalid_value: Invalid value: 'dall-e-3'") as e:
        provider_for(fake_openai).generate(replace(REQUEST, model="dall-e-3"))

    assert (e.value.retryable, e.value.status) == (False, 400)
    assert e.value.hint == "fix the request the provider complains about (param: model)"


@pytest.mark.parametrize(
    ("script", "match"),
    [
        pytest.param(
            FakeOpenAI.queue_truncated_base64,
            r"image 1 of 3 is not valid base64 \(.*\)\n  hint: the answer was cut short",
            id="truncated-base64",
        ),
        pytest.param(
            FakeOpenAI.queue_garbage_image,
            r"image 1 of 3 is not a PNG, JPEG, WEBP or GIF image, got 33 bytes starting b'<html>",
            id="garbage-bytes",
        ),
        pytest.param(
            FakeOpenAI.queue_empty_data,
            r"the answer holds no images \(empty data list\)",
            id="empty-data",
        ),
    ],
)
def test_unusable_answers_are_retryable_errors(
    fake_openai: FakeOpenAI, script: object, match: str
) -> None:
    script(fake_openai)  # type: ignore[operator]

    with pytest.raises(ProviderError, match=match) as caught:
        provider_for(fake_openai).generate(REQUEST)

    assert (caught.value.retryable, caught.value.status) == (True, 200)
    assert caught.value.endpoint == fake_openai.generations_url


def test_timeout_is_retryable_and_names_the_endpoint(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_slow(5)
    started = time.monotonic()

    with pytest.raises(ProviderError, match=r"no answer within 0.3 s") as caught:
        provider_for(fake_openai, timeout=0.3).generate(REQUEST)

    assert time.monotonic() - started < 3
    error = caught.value
    assert (error.retryable, error.status, error.endpoint) == (
        True,
        None,
        fake_openai.generations_url,
    )
    assert fake_openai.generations_url in str(error)
    assert isinstance(error.__cause__, UpstreamError)
    assert str(error.__cause__).startswith("openai.APITimeoutError: ")
    assert len(fake_openai.requests) == 1


def test_unreachable_server_is_retryable() -> None:
    with FakeOpenAI() as gone:
        base_url = gone.base_url
    provider = OpenAIProvider(api_key=KEY, base_url=base_url, timeout=2)

    with pytest.raises(ProviderError, match=r"could not connect") as caught:
        provider.generate(REQUEST)

    assert caught.value.retryable is True
    assert caught.value.endpoint == f"{base_url}/images/generations"


# -- the mapping table, without a server -------------------------------------------------

URL = "http://user:pw@api.example/v1/images/generations?key=abc"


@functools.cache
def sdk_client() -> openai.OpenAI:
    # One client for the whole table: making one costs ~0.1 s (an SSL context).
    return openai.OpenAI(api_key=KEY, base_url="http://api.example/v1", max_retries=0)


def status_error(status: int, body: dict[str, object], **headers: str) -> openai.APIStatusError:
    """The exception the SDK raises for this response (its own status -> class mapping)."""
    request = httpx2.Request("POST", URL)
    response = httpx2.Response(status, json=body, headers=headers, request=request)
    return sdk_client()._make_status_error_from_response(response)


@pytest.mark.parametrize(
    ("status", "code", "retryable", "kind", "match"),
    [
        pytest.param(429, "rate_limit_exceeded", True, RateLimited, "rate limited", id="429"),
        pytest.param(429, "insufficient_quota", False, ProviderError, "out of quota", id="quota"),
        pytest.param(
            400, "moderation_blocked", False, ModerationBlocked, "safety", id="moderation"
        ),
        pytest.param(
            400, "content_policy_violation", False, ModerationBlocked, "safety", id="dalle-policy"
        ),
        pytest.param(401, "invalid_api_key", False, ProviderError, "rejected", id="401"),
        pytest.param(403, "unsupported_country", False, ProviderError, "may not", id="403"),
        pytest.param(404, "model_not_found", False, ProviderError, "no such", id="404"),
        pytest.param(408, None, True, ProviderError, "server error", id="408"),
        pytest.param(409, None, True, ProviderError, "server error", id="409"),
        pytest.param(500, None, True, ProviderError, "server error", id="500"),
        pytest.param(502, None, True, ProviderError, "server error", id="502"),
    ],
)
def test_openai_error_table(
    status: int, code: str | None, retryable: bool, kind: type[ProviderError], match: str
) -> None:
    body = openai_error_body(f"no such thing, key {KEY}", "invalid_request_error", code)
    error = openai_error(
        status_error(status, body["error"]),
        api_key=KEY,
        endpoint="unused",
        timeout=1,
    )

    assert type(error) is kind
    assert (error.retryable, error.status) == (retryable, status)
    assert match in error.message
    assert error.endpoint == "http://api.example/v1/images/generations"
    assert_no_secret(error)


def test_openai_error_for_timeouts_and_connections() -> None:
    request = httpx2.Request("POST", URL)
    timeout = openai_error(
        openai.APITimeoutError(request), api_key=KEY, endpoint="unused", timeout=2.5
    )
    refused = openai.APIConnectionError(request=request)
    refused.__cause__ = httpx2.ConnectError(f"refused for {KEY}")
    connection = openai_error(refused, api_key=KEY, endpoint="unused", timeout=2.5)

    assert (
        timeout.message == "openai http://api.example/v1/images/generations: no answer within 2.5 s"
    )
    assert connection.message == (
        "openai http://api.example/v1/images/generations: could not connect "
        "(refused for [redacted])"
    )
    assert timeout.retryable and connection.retryable


# -- shared helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "public"),
    [
        (
            "https://api.openai.com/v1/images/generations",
            "https://api.openai.com/v1/images/generations",
        ),
        ("http://u:p@127.0.0.1:8080/v1/x?key=s#f", "http://127.0.0.1:8080/v1/x"),
        ("http://[::1]:9/v1", "http://[::1]:9/v1"),
    ],
    ids=["plain", "credentials-query-fragment", "ipv6"],
)
def test_public_endpoint(url: str, public: str) -> None:
    assert public_endpoint(url) == public


def test_redact_masks_the_key_and_key_looking_strings() -> None:
    text = f"key {PLAIN_KEY}, sk-proj-abcdef123456, AIzaSyA1234567890abcdefgh, Bearer tok.en-123"
    assert redact(text, [PLAIN_KEY, ""]) == "key [redacted], [redacted], [redacted], [redacted]"


def test_trim_body_is_one_redacted_line_of_at_most_300_characters() -> None:
    body = {"message": f"bad key {KEY}\n" + "x" * 500}
    trimmed = trim_body(body, [KEY])
    assert len(trimmed) == 300
    assert trimmed.startswith('{"message":"bad key [redacted]\\nxxx')
    assert trimmed.endswith("...")
    assert trim_body(None) == ""
    assert trim_body(b"plain  text\n body") == "plain text body"


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "12"}, 12.0),
        ({"retry-after": "Fri, 02 Jan 2026 03:04:35 GMT"}, 30.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
    ids=["ms", "seconds", "http-date", "garbage", "none"],
)
def test_retry_after_seconds(headers: dict[str, str], seconds: float | None) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert retry_after_seconds(headers, now=now) == seconds


@pytest.mark.parametrize(
    ("data", "mime_type"),
    [
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0....", "image/jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"GIF89a..", "image/gif"),
        (b"<html>", None),
        (b"", None),
    ],
    ids=["png", "jpeg", "webp", "gif", "html", "empty"],
)
def test_sniff_mime_type(data: bytes, mime_type: str | None) -> None:
    assert sniff_mime_type(data) == mime_type


# -- 2xx answers that are not the Images API's JSON ----------------------------------------

BASE_URL_HINT = (
    "  hint: check that OPENAI_BASE_URL (FETCHFLOW_HOSTED_OPENAI_BASE_URL for charge_type: "
    "hosted) points at the OpenAI API, https://api.openai.com/v1, or a gateway that answers "
    "like it; not retried: the provider answered 200, so the call may have been billed"
)
NGINX = b"<html>\n<head><title>Welcome to nginx!</title></head>\n<body>nginx</body>\n</html>\n"


@pytest.mark.parametrize(
    ("body", "content_type", "first"),
    [
        pytest.param(
            NGINX,
            "text/html; charset=utf-8",
            "200 text/html: the answer is not JSON: <html> <head><title>Welcome to nginx!"
            "</title></head> <body>nginx</body> </html>",
            id="html-page",
        ),
        pytest.param(b"OK", "text/plain", "200 text/plain: the answer is not JSON: OK", id="text"),
        pytest.param(
            b"", "", "200 no content-type: the answer is not JSON: (empty body)", id="empty-body"
        ),
        pytest.param(
            b"",
            "application/json",
            "200 application/json: the answer is not JSON: (empty body)",
            id="empty-json",
        ),
        pytest.param(
            b'{"data": [{"b64_json": "iVBOR',
            "application/json",
            '200 application/json: the answer is not JSON: {"data": [{"b64_json": "iVBOR',
            id="cut-json",
        ),
        pytest.param(
            {"id": "chatcmpl-1", "choices": []},
            "application/json",
            "200 application/json: the answer is not an Images API answer (an object without "
            'a data list; keys: choices, id): {"id": "chatcmpl-1", "choices": []}',
            id="chat-completion",
        ),
        pytest.param(
            {"data": "x"},
            "application/json",
            'the answer is not an Images API answer (data is a string, not a list): {"data": "x"}',
            id="data-string",
        ),
        pytest.param(
            {"data": ["aGk="]},
            "application/json",
            "the answer is not an Images API answer (data holds items that are not objects)",
            id="data-of-strings",
        ),
        pytest.param(
            [1, 2],
            "application/json",
            "the answer is not an Images API answer (a list, not an object): [1, 2]",
            id="json-list",
        ),
        pytest.param(
            "hello",
            "application/json",
            'the answer is not an Images API answer (a string, not an object): "hello"',
            id="json-string",
        ),
        pytest.param(
            None,
            "application/json",
            "the answer is not an Images API answer (null, not an object): null",
            id="json-null",
        ),
    ],
)
@pytest.mark.parametrize("call", ["generate", "edit"])
def test_a_200_that_is_not_the_images_api_json_is_a_provider_error_never_retried(
    fake_openai: FakeOpenAI, body: object, content_type: str, first: str, call: str
) -> None:
    fake_openai.queue_not_json(body, content_type)
    provider = provider_for(fake_openai)
    endpoint = f"{fake_openai.base_url}/images/{'generations' if call == 'generate' else 'edits'}"

    with pytest.raises(ProviderError) as caught:
        if call == "generate":
            provider.generate(REQUEST)
        else:
            provider.edit(edit_request())

    error = caught.value
    message, hint = error.format().split("\n")
    assert message.startswith(f"openai {endpoint}: ") and first in message
    assert hint == BASE_URL_HINT
    assert (error.status, error.retryable, error.endpoint) == (200, False, endpoint)
    assert len(fake_openai.requests) == 1
    assert_no_secret(error)


def edit_request() -> object:
    from steps.imaging.providers.base import EditRequest, ProviderImage

    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, "PNG")
    return EditRequest(
        **{**vars(REQUEST), "model": "gpt-image-1.5", "width": 1024, "height": 1024},
        images=[ProviderImage(png.getvalue(), "image/png")],
    )


def test_a_body_echoing_the_key_is_redacted_in_the_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_not_json(f"<p>Authorization: Bearer {KEY}</p>".encode(), "text/html")

    with pytest.raises(ProviderError, match=r"200 text/html: the answer is not JSON: <p>") as e:
        provider_for(fake_openai).generate(REQUEST)

    assert e.value.body == "<p>Authorization: Bearer [redacted]</p>"
    assert KEY not in e.value.format() and KEY not in repr(e.value)


@pytest.mark.parametrize("call", ["generate", "edit"])
def test_an_event_stream_with_a_final_image_keeps_the_image(
    fake_openai: FakeOpenAI, call: str
) -> None:
    fake_openai.queue_event_stream(partials=2)
    provider = provider_for(fake_openai)

    if call == "generate":
        result = provider.generate(replace(REQUEST, count=1))
    else:
        result = provider.edit(replace(edit_request(), count=1))  # type: ignore[type-var]

    [sent] = fake_openai.requests
    plain = fake_openai.answer(sent).body
    [image] = result.images
    assert image.data == base64.b64decode(plain["data"][0]["b64_json"])  # type: ignore[index]
    assert image.mime_type == "image/jpeg"
    assert (
        result.usage is not None
        and result.usage["total_tokens"]
        == (
            plain["usage"]["total_tokens"]  # type: ignore[index]
        )
    )


def test_an_event_stream_without_a_final_image_says_it_may_have_been_billed(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.queue_event_stream(partials=2, final=False)

    with pytest.raises(ProviderError) as caught:
        provider_for(fake_openai).generate(REQUEST)

    message, hint = caught.value.format().split("\n")
    assert message.startswith(
        f"openai {fake_openai.generations_url}: 200 text/event-stream: the answer is an event "
        "stream (2 events, 2 partial images) without a final image: event: "
        "image_generation.partial_image data: "
    )
    assert hint == BASE_URL_HINT
    assert caught.value.retryable is False
