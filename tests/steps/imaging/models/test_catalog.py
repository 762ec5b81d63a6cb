"""The model catalog: closest-size mapping, size rules, retired and unknown models, prices."""

from __future__ import annotations

import re

import pytest

from fetchflow.step import RuleViolation
from steps.imaging.models.catalog import (
    AUTO_CANDIDATES,
    CATALOG,
    GPT_IMAGE_2_SIZES,
    SizeChoice,
    closest_size,
    parse_size,
    price_for,
    size_to_ratio,
)
from steps.imaging.models.rules import lookup_model


@pytest.mark.parametrize(
    ("model", "ratio", "resolution", "expected"),
    [
        pytest.param("gpt-image-2", "1:1", "1K", SizeChoice(1024, 1024), id="free-square-1k"),
        pytest.param("gpt-image-2", "16:9", "1K", SizeChoice(1088, 608), id="free-wide-1k-min-px"),
        pytest.param("gpt-image-2", "16:9", "2K", SizeChoice(2048, 1152), id="free-wide-2k"),
        pytest.param("gpt-image-2", "16:9", "4K", SizeChoice(3840, 2160), id="free-wide-4k-capped"),
        pytest.param("gpt-image-2", "9:16", "4K", SizeChoice(2160, 3840), id="free-tall-4k"),
        pytest.param("gpt-image-2", "1:1", "4K", SizeChoice(2160, 2160), id="free-square-4k"),
        pytest.param("gpt-image-1.5", "16:9", "1K", SizeChoice(1536, 1024), id="fixed-wide"),
        pytest.param("gpt-image-1.5", "3:4", "4K", SizeChoice(1024, 1536), id="fixed-tall"),
        pytest.param("gpt-image-1.5", "1:1", None, SizeChoice(1024, 1024), id="fixed-square"),
        pytest.param(
            "gemini-2.5-flash-image",
            "21:9",
            "4K",
            SizeChoice(None, None, "21:9", "1K"),
            id="gemini-flash-1k-only",
        ),
        pytest.param(
            "gemini-3-pro-image-preview",
            "3:2",
            "2K",
            SizeChoice(None, None, "3:2", "2K"),
            id="gemini-pro-2k",
        ),
        pytest.param("preview", "16:9", "1K", SizeChoice(1024, 576), id="preview-wide"),
        pytest.param("preview", "2:3", "2K", SizeChoice(1365, 2048), id="preview-tall-2k"),
    ],
)
def test_closest_size(model: str, ratio: str, resolution: str | None, expected: SizeChoice) -> None:
    assert closest_size(CATALOG[model], ratio, resolution) == expected


def test_every_ratio_and_resolution_maps_to_an_allowed_size_on_every_model() -> None:
    for spec in CATALOG.values():
        for ratio in ("1:1", "16:9", "4:3", "3:2", "21:9", "9:16", "3:4", "2:3"):
            for resolution in ("1K", "2K", "4K"):
                choice = closest_size(spec, ratio, resolution)
                if choice.width is not None and choice.height is not None:
                    assert spec.size_problem(choice.width, choice.height) is None
                else:
                    assert choice.aspect_ratio in spec.aspect_ratios
                    assert choice.resolution in spec.resolutions


def test_a_pixel_size_maps_to_the_nearest_ratio_on_ratio_models() -> None:
    gemini = CATALOG["gemini-3-pro-image-preview"]
    assert size_to_ratio(1920, 1080, gemini) == SizeChoice(None, None, "16:9", "2K")
    assert size_to_ratio(1024, 1024, gemini) == SizeChoice(None, None, "1:1", "1K")


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        ("1024x1024", None),
        ("3840x2160", None),
        ("2160x3840", None),
        ("1000x1008", "both sides must be multiples of 16"),
        ("3072x960", "the long side may be at most 3x the short side"),
        ("4096x2048", "at most 3840x2160 (or 2160x3840 upright)"),
        ("512x512", "between 655,360 and 8,294,400 pixels in total"),
    ],
)
def test_gpt_image_2_size_rule(size: str, problem: str | None) -> None:
    dimensions = parse_size(size)
    assert dimensions is not None
    assert GPT_IMAGE_2_SIZES.problem(*dimensions) == problem


@pytest.mark.parametrize(
    ("model", "since", "replacement"),
    [
        ("dall-e-2", "May 12, 2026", "gpt-image-1-mini"),
        ("dall-e-3", "May 12, 2026", "gpt-image-2"),
        ("gpt-image-1", "Oct 23, 2026", "gpt-image-1.5"),
    ],
)
def test_retired_models_say_when_and_what_instead(model: str, since: str, replacement: str) -> None:
    with pytest.raises(
        RuleViolation, match=re.escape(f"model {model} was retired on {since}")
    ) as caught:
        lookup_model(model)
    assert caught.value.hint == f"use model: {replacement}"
    assert caught.value.fields == ("model",)


def test_unknown_models_get_a_did_you_mean_or_the_list() -> None:
    with pytest.raises(RuleViolation, match=r'did you mean "gemini-2\.5-flash-image"'):
        lookup_model("gemini-2.5-flash-imag")
    with pytest.raises(RuleViolation, match='unknown image model "stable-diffusion"') as caught:
        lookup_model("stable-diffusion")
    assert caught.value.hint.startswith("use model: auto, or one of: gpt-image-1-mini")


def test_auto_candidates_are_catalog_models_and_auto_is_not_one() -> None:
    assert all(name in CATALOG for name in AUTO_CANDIDATES)
    assert lookup_model("auto") is None


def test_prices_only_where_published() -> None:
    mini, gemini, preview = (
        CATALOG[n] for n in ("gpt-image-1-mini", "gemini-2.5-flash-image", "preview")
    )
    assert price_for(mini, "high", 1024, 1024) == 0.036
    assert price_for(mini, "high", 1536, 1024) is None
    assert price_for(mini, "auto", 1024, 1024) is None
    assert price_for(gemini, "auto", 1344, 768) == 0.039
    assert price_for(preview, "high", 64, 64) == 0.0
    assert price_for(CATALOG["gpt-image-2"], "high", 1024, 1024) is None
