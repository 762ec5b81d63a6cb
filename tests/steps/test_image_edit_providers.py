"""Image edits through the providers: the real SDKs against the fake APIs, and the preview.

OpenAI edits are one multipart ``POST /v1/images/edits`` (repeated ``image[]`` parts, a
``mask`` part, text fields); Gemini edits are ``generateContent`` calls whose user turn
holds the prompt then one ``inlineData`` part per reference. Errors map as for generate.
"""

from __future__ import annotations

import pytest
from fakes import fixtures
from fakes.fake_gemini import FakeGemini
from fakes.fake_openai import FakeOpenAI
from fakes.images import decode, hole_mask, inline, jpeg, png

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import (
    EditRequest,
    ImageEditor,
    ImageRequest,
    ProviderImage,
)
from steps.imaging.providers.errors import RateLimited
from steps.imaging.providers.google_images import GeminiProvider
from steps.imaging.providers.openai_images import OpenAIProvider
from steps.imaging.providers.openai_requests import edit_params, input_fidelity_for
from steps.imaging.providers.preview import PreviewProvider

fake_openai = fixtures.fake_openai
fake_gemini = fixtures.fake_gemini

KEY = "sk-fetchflow-edit-KEY-0123456789abcdef"


REF_A = ProviderImage(png(64, 64, (200, 30, 30, 255)), "image/png")
REF_B = ProviderImage(jpeg(48, 32, (30, 200, 30)), "image/jpeg")
MASK = ProviderImage(hole_mask(64, 64), "image/png")

EDIT = EditRequest(
    model="gpt-image-1.5",
    prompt="put a hat on the fox",
    width=1024,
    height=1536,
    aspect_ratio=None,
    resolution=None,
    count=2,
    quality="high",
    background="opaque",
    moderation="low",
    output_format="jpeg",
    output_compression=70,
    seed=None,
    images=[REF_A, REF_B],
    mask=MASK,
    input_fidelity="high",
)


# -- OpenAI ----------------------------------------------------------------------------


def test_openai_edit_sends_one_multipart_request_with_images_and_mask(
    fake_openai: FakeOpenAI,
) -> None:
    provider = OpenAIProvider(api_key=KEY, base_url=fake_openai.base_url)
    try:
        result = provider.edit(EDIT)
    finally:
        provider.close()

    assert isinstance(provider, ImageEditor) and provider.supports_mask
    [request] = fake_openai.requests
    assert request.path == "/v1/images/edits"
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert request.credential == KEY
    images = request.files["image[]"]
    assert [f.data for f in images] == [REF_A.data, REF_B.data]
    assert [f.content_type for f in images] == ["image/png", "image/jpeg"]
    [mask] = request.files["mask"]
    assert mask.data == MASK.data and mask.content_type == "image/png"
    fields = {name: values[-1] for name, values in request.fields.items()}
    assert fields == {
        "model": "gpt-image-1.5",
        "prompt": "put a hat on the fox",
        "n": "2",
        "size": "1024x1536",
        "quality": "high",
        "background": "opaque",
        "output_format": "jpeg",
        "output_compression": "70",
        "input_fidelity": "high",
    }
    assert "moderation" not in request.fields and "response_format" not in request.fields

    assert result.model == "gpt-image-1.5"
    assert [image.mime_type for image in result.images] == ["image/jpeg", "image/jpeg"]
    assert decode(result.images[0].data).size == (1024, 1536)
    assert result.usage is not None and result.usage["input_image_tokens"] == 323


def test_openai_edit_without_mask_png_and_a_model_without_input_fidelity(
    fake_openai: FakeOpenAI,
) -> None:
    request = EditRequest(
        **{
            **EDIT.__dict__,
            "model": "gpt-image-2",
            "mask": None,
            "output_format": "png",
            "width": None,
            "height": None,
            "count": 1,
            "images": [REF_A],
        }
    )
    provider = OpenAIProvider(api_key=KEY, base_url=fake_openai.base_url)
    try:
        result = provider.edit(request)
    finally:
        provider.close()

    [sent] = fake_openai.requests
    assert len(sent.files["image[]"]) == 1 and "mask" not in sent.files
    assert sent.fields["size"] == ["auto"]
    assert "output_compression" not in sent.fields and "input_fidelity" not in sent.fields
    assert len(result.images) == 1 and result.images[0].mime_type == "image/png"


@pytest.mark.parametrize(
    ("model", "value", "sent"),
    [
        ("gpt-image-1.5", "high", "high"),
        ("gpt-image-1.5", "low", "low"),
        ("gpt-image-1-mini", "low", "low"),
        ("gpt-image-1-mini", "high", None),
        ("gpt-image-2", "high", None),
        ("gpt-image-2", "low", None),
        ("gpt-image-1.5", None, None),
    ],
)
def test_input_fidelity_is_sent_only_where_the_model_takes_it(
    model: str, value: str | None, sent: str | None
) -> None:
    assert input_fidelity_for(model, value) == sent


def test_edit_params_refuse_an_edit_without_images() -> None:
    with pytest.raises(ValueError, match="at least one reference image"):
        edit_params(EditRequest(**{**EDIT.__dict__, "images": []}))


def test_openai_edit_rate_limit_is_retryable_with_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_rate_limit(retry_after="3")
    provider = OpenAIProvider(api_key=KEY, base_url=fake_openai.base_url)
    try:
        with pytest.raises(RateLimited) as caught:
            provider.edit(EDIT)
    finally:
        provider.close()
    error = caught.value
    assert error.retryable and error.retry_after == 3 and error.status == 429
    assert error.endpoint == f"{fake_openai.base_url}/images/edits"
    assert len(fake_openai.requests) == 1  # the SDK's own retries are off
    assert KEY not in repr(error) and KEY not in str(error.__cause__)


def test_openai_edit_moderation_block_is_not_retryable(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_moderation_blocked(categories=("violence",))
    provider = OpenAIProvider(
        api_key=KEY, base_url=fake_openai.base_url, key_source="FETCHFLOW_OPENAI_KEY"
    )
    try:
        with pytest.raises(ProviderError) as caught:
            provider.edit(EDIT)
    finally:
        provider.close()
    error = caught.value
    assert not error.retryable and error.status == 400
    assert "safety system refused" in error.message and "violence" in error.message
    assert "/images/edits" in error.message


def test_openai_edit_bad_key_hint_names_the_key_source(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue_invalid_api_key()
    provider = OpenAIProvider(
        api_key=KEY, base_url=fake_openai.base_url, key_source="FETCHFLOW_OPENAI_KEY"
    )
    try:
        with pytest.raises(ProviderError) as caught:
            provider.edit(EDIT)
    finally:
        provider.close()
    assert "FETCHFLOW_OPENAI_KEY" in caught.value.hint
    assert KEY not in caught.value.message and KEY not in caught.value.body


def test_openai_generate_still_goes_to_generations(fake_openai: FakeOpenAI) -> None:
    request = ImageRequest(**{k: v for k, v in EDIT.__dict__.items() if k in _IMAGE_FIELDS})
    provider = OpenAIProvider(api_key=KEY, base_url=fake_openai.base_url)
    try:
        result = provider.generate(request)
    finally:
        provider.close()
    [sent] = fake_openai.requests
    assert sent.path == "/v1/images/generations" and sent.json is not None
    assert sent.json["moderation"] == "low"
    assert len(result.images) == 2


_IMAGE_FIELDS = frozenset(ImageRequest.__dataclass_fields__)


# -- Gemini ----------------------------------------------------------------------------

GEMINI_EDIT = EditRequest(
    **{
        **EDIT.__dict__,
        "model": "gemini-2.5-flash-image",
        "width": None,
        "height": None,
        "aspect_ratio": "16:9",
        "resolution": "1K",
        "output_format": "png",
        "output_compression": None,
        "mask": None,
        "input_fidelity": None,
    }
)


def test_gemini_edit_sends_prompt_then_inline_images_once_per_image(
    fake_gemini: FakeGemini,
) -> None:
    provider = GeminiProvider(api_key=KEY, base_url=fake_gemini.base_url)
    try:
        result = provider.edit(GEMINI_EDIT)
    finally:
        provider.close()

    assert isinstance(provider, ImageEditor) and not provider.supports_mask
    assert len(fake_gemini.requests) == 2  # count calls, one image each
    for sent in fake_gemini.requests:
        assert sent.path == "/v1/models/gemini-2.5-flash-image:generateContent"
        assert sent.json is not None
        [content] = sent.json["contents"]
        assert content["role"] == "user"
        text, first, second = content["parts"]
        assert text == {"text": "put a hat on the fox"}
        assert inline(first) == ("image/png", REF_A.data)
        assert inline(second) == ("image/jpeg", REF_B.data)
        config = sent.json["generationConfig"]
        assert config["responseModalities"] == ["IMAGE"]
        assert config["imageConfig"] == {
            "aspectRatio": "16:9"
        }  # 2.5 Flash Image takes no imageSize
    assert len(result.images) == 2
    assert decode(result.images[0].data).size == (1344, 768)
    assert result.usage is not None and result.usage["total_token_count"] == 2 * 1297


def test_gemini_edit_refuses_a_mask_before_any_call(fake_gemini: FakeGemini) -> None:
    provider = GeminiProvider(api_key=KEY, base_url=fake_gemini.base_url)
    try:
        with pytest.raises(ProviderError, match="take no mask") as caught:
            provider.edit(EditRequest(**{**GEMINI_EDIT.__dict__, "mask": MASK}))
    finally:
        provider.close()
    assert not caught.value.retryable
    assert fake_gemini.requests == []


def test_gemini_edit_rate_limit_is_retryable(fake_gemini: FakeGemini) -> None:
    fake_gemini.queue_rate_limit(retry_delay="7s")
    provider = GeminiProvider(api_key=KEY, base_url=fake_gemini.base_url)
    try:
        with pytest.raises(RateLimited) as caught:
            provider.edit(GEMINI_EDIT)
    finally:
        provider.close()
    assert caught.value.retryable and caught.value.retry_after == 7
    assert len(fake_gemini.requests) == 1
    assert KEY not in repr(caught.value)


def test_gemini_edit_safety_stop_is_not_retryable(fake_gemini: FakeGemini) -> None:
    fake_gemini.queue_safety_stop()
    provider = GeminiProvider(api_key=KEY, base_url=fake_gemini.base_url)
    try:
        with pytest.raises(
            ProviderError, match="safety system filtered the generated image"
        ) as caught:
            provider.edit(GEMINI_EDIT)
    finally:
        provider.close()
    assert not caught.value.retryable


# -- preview ---------------------------------------------------------------------------

PREVIEW_EDIT = EditRequest(
    **{
        **EDIT.__dict__,
        "model": "preview",
        "width": 96,
        "height": 64,
        "output_format": "png",
        "output_compression": None,
        "mask": None,
        "count": 1,
        "seed": 5,
    }
)


def test_preview_edit_is_deterministic_and_sized() -> None:
    provider = PreviewProvider()
    first = provider.edit(PREVIEW_EDIT)
    again = provider.edit(PREVIEW_EDIT)
    assert [i.data for i in first.images] == [i.data for i in again.images]
    image = decode(first.images[0].data)
    assert image.format == "PNG" and image.size == (96, 64) and image.mode == "RGB"
    assert first.model == "preview"

    own = provider.edit(EditRequest(**{**PREVIEW_EDIT.__dict__, "width": None, "height": None}))
    assert decode(own.images[0].data).size == (64, 64)  # the first reference's size

    two = provider.edit(EditRequest(**{**PREVIEW_EDIT.__dict__, "count": 2}))
    assert len(two.images) == 2 and two.images[0].data != two.images[1].data


def test_preview_edit_is_built_from_the_references() -> None:
    provider = PreviewProvider()
    red = decode(provider.edit(PREVIEW_EDIT).images[0].data).convert("RGB")
    blue_ref = ProviderImage(png(64, 64, (30, 30, 200, 255)), "image/png")
    blue = decode(
        provider.edit(EditRequest(**{**PREVIEW_EDIT.__dict__, "images": [blue_ref, REF_B]}))
        .images[0]
        .data
    ).convert("RGB")
    # Away from the text and the insets, the first reference's colour shows through.
    r, _, b = red.getpixel((90, 30))  # type: ignore[misc]
    assert r > b
    r, _, b = blue.getpixel((90, 30))  # type: ignore[misc]
    assert b > r


def test_preview_edit_is_marked_differently_from_a_plain_generate() -> None:
    provider = PreviewProvider()
    edited = provider.edit(PREVIEW_EDIT).images[0].data
    generated = (
        provider.generate(
            ImageRequest(**{k: v for k, v in PREVIEW_EDIT.__dict__.items() if k in _IMAGE_FIELDS})
        )
        .images[0]
        .data
    )
    assert edited != generated
    # The "EDIT" label sits in the top-left corner: a plain tinted reference has none.
    plain = provider.edit(EditRequest(**{**PREVIEW_EDIT.__dict__, "prompt": "", "seed": 5}))
    corner = decode(plain.images[0].data).crop((0, 0, 20, 8)).convert("RGB")
    assert len(set(corner.get_flattened_data())) > 1


def test_preview_edit_fills_the_masked_area() -> None:
    provider = PreviewProvider()
    request = EditRequest(**{**PREVIEW_EDIT.__dict__, "width": 64, "height": 64})
    plain = decode(provider.edit(request).images[0].data).convert("RGB")
    masked = decode(
        provider.edit(EditRequest(**{**request.__dict__, "mask": MASK})).images[0].data
    ).convert("RGB")
    assert provider.edit(EditRequest(**{**request.__dict__, "mask": MASK})).images[0].data == (
        provider.edit(EditRequest(**{**request.__dict__, "mask": MASK})).images[0].data
    )
    # Inside the transparent quarter (away from the EDIT label) pixels change...
    inside = [(x, y) for x in range(20, 31) for y in range(12, 20)]
    assert any(plain.getpixel(p) != masked.getpixel(p) for p in inside)
    # ...while the opaque part of the mask, away from the marking, is left as it was.
    assert plain.getpixel((60, 40)) == masked.getpixel((60, 40))


def test_preview_edit_honours_transparency() -> None:
    clear = ProviderImage(png(64, 64, (200, 30, 30, 0)), "image/png")
    provider = PreviewProvider()
    request = EditRequest(
        **{**PREVIEW_EDIT.__dict__, "images": [clear], "background": "transparent"}
    )
    image = decode(provider.edit(request).images[0].data)
    assert image.mode == "RGBA"
    low, high = image.getchannel("A").getextrema()  # type: ignore[misc]
    assert low == 0 and high == 255  # backdrop clear, marking opaque
    opaque = decode(
        provider.edit(EditRequest(**{**request.__dict__, "background": "opaque"})).images[0].data
    )
    assert opaque.mode == "RGB"


def test_preview_edit_refuses_no_references() -> None:
    with pytest.raises(ValueError, match="at least one reference"):
        PreviewProvider().edit(EditRequest(**{**PREVIEW_EDIT.__dict__, "images": []}))
