"""Cost estimates of image requests from the catalog's published prices."""

from __future__ import annotations

import pytest

from fetchflow.settings import Settings
from steps.image_generation import ImageGenerationConfig, ImageGenerationStep
from steps.imaging.models.catalog import CATALOG
from steps.imaging.models.pricing import estimate_images


@pytest.mark.parametrize(
    ("model", "quality", "size", "aspect_ratio", "count", "cost", "detail"),
    [
        pytest.param("gpt-image-1-mini", "low", "1024x1024", None, 3, 0.015,
                     "3 x gpt-image-1-mini low 1024x1024 at $0.005", id="mini-low"),
        pytest.param("gpt-image-1-mini", "high", None, "1:1", 2, 0.072,
                     "2 x gpt-image-1-mini high 1024x1024 at $0.036", id="mini-ratio"),
        pytest.param("gemini-2.5-flash-image", "auto", None, "16:9", 2, 0.078,
                     "2 x gemini-2.5-flash-image auto 16:9 at $0.039", id="gemini"),
        pytest.param("preview", "auto", None, None, 5, 0.0, "5 x preview (free)", id="preview"),
        pytest.param("gpt-image-2", "high", "1536x1024", None, 1, None,
                     "1 x gpt-image-2 high 1536x1024, no published price", id="no-price"),
    ],
)  # fmt: skip
def test_estimate_images(
    model: str,
    quality: str,
    size: str | None,
    aspect_ratio: str | None,
    count: int,
    cost: float | None,
    detail: str,
) -> None:
    found = estimate_images(
        CATALOG[model],
        count=count,
        size=size,
        aspect_ratio=aspect_ratio,
        resolution=None,
        quality=quality,
    )

    assert found.cost_usd == (pytest.approx(cost) if cost is not None else None)
    assert (found.images, found.detail) == (count, detail)


def test_the_step_estimate_resolves_auto_with_the_keys_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = ImageGenerationConfig(prompt="a cat", count=2)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    free = ImageGenerationStep.estimate(config, settings)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    gemini = ImageGenerationStep.estimate(config, settings)

    assert free is not None and (free.cost_usd, free.detail) == (0.0, "2 x preview (free)")
    assert gemini is not None and gemini.cost_usd == pytest.approx(0.078)
    assert gemini.detail.startswith("2 x gemini-2.5-flash-image auto")


def test_a_named_model_without_its_key_has_an_unknown_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = ImageGenerationConfig(prompt="a cat", model="gpt-image-1-mini")

    found = ImageGenerationStep.estimate(config, Settings(_env_file=None))  # type: ignore[call-arg]

    assert found is not None and found.cost_usd is None
    assert found.detail.startswith("1 x gpt-image-1-mini (charge_type: personal needs your")
