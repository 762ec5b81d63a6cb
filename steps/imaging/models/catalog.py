"""The image model catalog: one data table, no per-model ``if``.

Each :class:`ModelSpec` says what one model accepts (sizes or a size rule, counts,
qualities, background, prompt length, seed, aspect ratios and resolutions; the open-weight
options ``steps``, ``guidance``, ``negative_prompt``, ``strength`` and ``safety_checker``
with their ranges) and what it costs where a price is published. Rules
(:mod:`steps.imaging.models.rules`) and the step read this table only. Facts come from
/work/shared/PROVIDERS.md (openai 3.52, google-genai 3.4) and fal's model pages.

``aspect_ratio`` + ``resolution`` map to the closest size a model supports
(:func:`closest_size`), so one workflow runs on every provider.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "ASPECT_RATIOS",
    "AUTO",
    "AUTO_CANDIDATES",
    "CATALOG",
    "FAL_SIZES",
    "LOCAL_PREFIX",
    "LOCAL_SIZES",
    "PREVIEW",
    "QUALITIES",
    "RESOLUTIONS",
    "RETIRED",
    "ModelSpec",
    "NumberRange",
    "Retired",
    "SizeChoice",
    "SizeRule",
    "closest_size",
    "local_spec",
    "parse_size",
    "price_for",
]

AUTO = "auto"
PREVIEW = "preview"

#: Every ``aspect_ratio`` the step accepts (the ratios every Gemini image model takes,
#: 4:5 and 5:4 included: Google's size table for 2.5 Flash Image lists them).
ASPECT_RATIOS = ("1:1", "16:9", "4:3", "3:2", "5:4", "21:9", "9:16", "3:4", "2:3", "4:5")
#: Every ``resolution``; the long edge is about 1024, 2048 or 4096 pixels.
RESOLUTIONS = ("1K", "2K", "4K")
#: Every ``quality`` some model accepts (``xhigh``/``max``: GPT Image 2.5 only).
QUALITIES = ("auto", "low", "medium", "high", "xhigh", "max")

#: OpenAI edits: each reference under 50 MB (PROVIDERS.md §1, rule 13).
_OPENAI_EDIT_MAX_BYTES = 50 * 1024 * 1024 - 1
#: Gemini: a request with inline images must stay under 20 MB in all.
_GEMINI_REQUEST_MAX_BYTES = 20 * 1024 * 1024 - 1

_LONG_EDGE = {"1K": 1024, "2K": 2048, "4K": 4096}
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def parse_size(size: str) -> tuple[int, int] | None:
    """``"1536x1024"`` → ``(1536, 1024)``; ``"auto"`` or anything else → None."""
    match = _SIZE.match(size)
    return (int(match.group(1)), int(match.group(2))) if match else None


def ratio_value(aspect_ratio: str) -> float:
    """``"16:9"`` → 1.777…"""
    width, height = aspect_ratio.split(":")
    return int(width) / int(height)


@dataclass(frozen=True)
class SizeRule:
    """Free ``WxH`` sizes within limits (gpt-image-2 and later, the preview provider).

    Attributes:
        multiple: Both sides must be divisible by this.
        max_ratio: The longer side over the shorter at most this.
        max_width: Largest width (landscape orientation).
        max_height: Largest height (landscape orientation; portrait swaps the two).
        min_pixels: Fewest pixels.
        max_pixels: Most pixels.
    """

    multiple: int
    max_ratio: float
    max_width: int
    max_height: int
    min_pixels: int
    max_pixels: int

    def problem(self, width: int, height: int) -> str | None:
        """Why ``width x height`` breaks the rule, or None when it is fine."""
        if min(width, height) < 1:
            return "both sides must be at least 1 pixel"
        if width % self.multiple or height % self.multiple:
            return f"both sides must be multiples of {self.multiple}"
        if max(width, height) / min(width, height) > self.max_ratio:
            return f"the long side may be at most {self.max_ratio:g}x the short side"
        long_side, short_side = max(width, height), min(width, height)
        if long_side > self.max_width or short_side > self.max_height:
            limit = f"{self.max_width}x{self.max_height}"
            return f"at most {limit} (or {self.max_height}x{self.max_width} upright)"
        if not self.min_pixels <= width * height <= self.max_pixels:
            return f"between {self.min_pixels:,} and {self.max_pixels:,} pixels in total"
        return None

    def fit(self, ratio: float, long_edge: int) -> tuple[int, int]:
        """The allowed size with this ratio whose long edge is nearest ``long_edge``."""
        best: tuple[int, int] | None = None
        best_key = (0, 0)
        for edge in range(self.multiple, self.max_width + 1, self.multiple):
            short = max(1, round(edge / max(ratio, 1 / ratio) / self.multiple)) * self.multiple
            size = (edge, short) if ratio >= 1 else (short, edge)
            key = (abs(edge - long_edge), edge)
            if self.problem(*size) is None and (best is None or key < best_key):
                best, best_key = size, key
        if best is None:  # pragma: no cover - every catalog rule fits every listed ratio
            raise ValueError(f"no size with ratio {ratio:.3f} fits {self}")
        return best


@dataclass(frozen=True)
class NumberRange:
    """The values a numeric option takes on one model, bounds included.

    Attributes:
        low: The smallest value.
        high: The largest value.
    """

    low: float
    high: float

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int | float) and self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.low:g}-{self.high:g}"


@dataclass(frozen=True)
class ModelSpec:
    """What one image model accepts.

    Attributes:
        name: The model id users write (and the provider receives).
        provider: ``openai``, ``google``, ``fal`` or ``preview``.
        sizes: Fixed ``(width, height)`` sizes, when the model takes only those.
        size_rule: Free sizes within limits, when the model takes any ``WxH``.
        aspect_ratios: Ratios the model takes instead of sizes (Gemini); empty otherwise.
        resolutions: Resolutions it takes with a ratio (Gemini); empty otherwise.
        per_request: Most images one provider call returns.
        max_count: Most images one step may ask for (several calls when needed).
        qualities: Accepted ``quality`` values.
        transparent: Whether ``background: transparent`` works.
        native_formats: Formats the provider encodes itself; others are converted.
        partial_images: Whether the model streams partial images (``partial_images`` 1-3:
            OpenAI GPT image models, ``stream=True``; PROVIDERS.md rule 11).
        prompt_max_chars: Longest prompt (style included).
        seed: Whether the model takes a seed.
        prices: USD per image by ``(quality, "WxH")``; ``"*"`` matches any. Empty when no
            price is published.
        note: Shown in messages about this model.
        edit_max_images: Most reference images one edit call takes.
        edit_max_image_bytes: Largest reference file an edit takes (bytes, inclusive).
        edit_max_request_bytes: Most bytes of references one edit call may carry, or None.
        edit_formats: Reference file formats an edit takes.
        mask: Whether edits take a mask (inpainting, outpainting).
        input_fidelity: ``input_fidelity`` values edits take (empty: none).
        steps: The ``steps`` (denoising steps) it takes, or None when it takes none.
        guidance: The ``guidance`` (classifier-free guidance scale) it takes, or None.
        negative_prompt: Whether it takes a ``negative_prompt``.
        strength: The image-to-image ``strength`` its edits take, or None (an edit of a
            model with a strength is image-to-image: one reference).
        safety_checker: Whether its safety checker can be switched (``safety_checker``).
        price_per_megapixel: USD per started megapixel of output (1024x1024 is one), where
            the provider prices by area; ``prices`` is then empty.
    """

    name: str
    provider: str
    sizes: tuple[tuple[int, int], ...] = ()
    size_rule: SizeRule | None = None
    aspect_ratios: tuple[str, ...] = ()
    resolutions: tuple[str, ...] = ()
    per_request: int = 10
    max_count: int = 10
    qualities: tuple[str, ...] = ("auto", "low", "medium", "high")
    transparent: bool = True
    native_formats: tuple[str, ...] = ("png", "jpeg", "webp")
    partial_images: bool = False
    prompt_max_chars: int = 32_000
    seed: bool = False
    prices: Mapping[tuple[str, str], float] = field(default_factory=dict)
    note: str = ""
    edit_max_images: int = 16
    edit_max_image_bytes: int = _OPENAI_EDIT_MAX_BYTES
    edit_max_request_bytes: int | None = None
    edit_formats: tuple[str, ...] = ("png", "jpeg", "webp")
    mask: bool = True
    input_fidelity: tuple[str, ...] = ()
    steps: NumberRange | None = None
    guidance: NumberRange | None = None
    negative_prompt: bool = False
    strength: NumberRange | None = None
    safety_checker: bool = False
    price_per_megapixel: float | None = None

    @property
    def takes_ratio(self) -> bool:
        """Whether the model is asked by aspect ratio rather than pixel size."""
        return bool(self.aspect_ratios)

    def size_problem(self, width: int, height: int) -> str | None:
        """Why this model cannot make ``width x height``, or None."""
        if self.size_rule is not None:
            return self.size_rule.problem(width, height)
        if self.sizes and (width, height) not in self.sizes:
            return "use one of " + ", ".join(f"{w}x{h}" for w, h in self.sizes) + " or auto"
        if self.takes_ratio:
            return "it takes aspect_ratio (and resolution), not a pixel size"
        return None


@dataclass(frozen=True)
class Retired:
    """A model the provider no longer serves.

    Attributes:
        name: The model id.
        since: When it was retired or shut down (as the SDK says).
        replacement: What to use instead.
    """

    name: str
    since: str
    replacement: str


#: gpt-image-2 and later: any WxH, sides divisible by 16, ratio ≤ 3, ≤ 3840x2160, and the
#: pixel bounds third-party docs give (655,360-8,294,400).
GPT_IMAGE_2_SIZES = SizeRule(
    multiple=16,
    max_ratio=3,
    max_width=3840,
    max_height=2160,
    min_pixels=655_360,
    max_pixels=8_294_400,
)
#: What the offline preview draws: anything from 16x16 up to 4096x4096.
PREVIEW_SIZES = SizeRule(
    multiple=1,
    max_ratio=8,
    max_width=4096,
    max_height=4096,
    min_pixels=16 * 16,
    max_pixels=4096 * 4096,
)
_GPT_FIXED = ((1024, 1024), (1536, 1024), (1024, 1536))
_GEMINI_NOTE = "Gemini image models have no background setting"


def _gpt_fixed(
    name: str,
    prices: Mapping[tuple[str, str], float] | None = None,
    *,
    input_fidelity: tuple[str, ...] = ("high", "low"),
) -> ModelSpec:
    return ModelSpec(
        name,
        "openai",
        sizes=_GPT_FIXED,
        prices=prices or {},
        input_fidelity=input_fidelity,
        partial_images=True,
    )


def _gpt_free(name: str, *, extra_qualities: tuple[str, ...] = (), transparent: bool) -> ModelSpec:
    return ModelSpec(
        name,
        "openai",
        size_rule=GPT_IMAGE_2_SIZES,
        qualities=("auto", "low", "medium", "high", *extra_qualities),
        transparent=transparent,
        note="" if transparent else "transparent backgrounds are only a preview on this model",
        partial_images=True,
    )


def _gemini(
    name: str, resolutions: tuple[str, ...], references: int, price: float | None = None
) -> ModelSpec:
    return ModelSpec(
        name,
        "google",
        aspect_ratios=ASPECT_RATIOS,
        resolutions=resolutions,
        per_request=1,  # generate_content has no n: one image per call
        qualities=("auto",),
        transparent=False,
        native_formats=("png",),
        seed=True,  # GenerateContentConfig.seed
        prices={("*", "*"): price} if price is not None else {},
        note=_GEMINI_NOTE,
        edit_max_images=references,
        edit_max_image_bytes=_GEMINI_REQUEST_MAX_BYTES,
        edit_max_request_bytes=_GEMINI_REQUEST_MAX_BYTES,
        mask=False,  # edits are instructions only: no mask parameter
    )


#: What fal's FLUX and SDXL endpoints take as ``image_size: {width, height}``: sides
#: divisible by 16 (the latent grid), up to 2048 a side here (fal's named sizes are all
#: 1024 on the long side; larger ones cost more megapixels).
FAL_SIZES = SizeRule(
    multiple=16,
    max_ratio=4,
    max_width=2048,
    max_height=2048,
    min_pixels=256 * 256,
    max_pixels=2048 * 2048,
)


def _fal(
    name: str,
    *,
    per_request: int,
    price_per_megapixel: float | None,
    steps: NumberRange | None = None,
    guidance: NumberRange | None = None,
    negative_prompt: bool = False,
    strength: NumberRange | None = None,
    mask: bool = False,
    note: str = "",
) -> ModelSpec:
    return ModelSpec(
        name,
        "fal",
        size_rule=FAL_SIZES,
        per_request=per_request,
        qualities=("auto",),
        transparent=False,
        native_formats=("png", "jpeg"),
        seed=True,
        note=note or "fal's FLUX and SDXL endpoints have no background setting",
        edit_max_images=1 if strength is not None else 0,
        edit_max_image_bytes=_OPENAI_EDIT_MAX_BYTES,
        mask=mask,
        steps=steps,
        guidance=guidance,
        negative_prompt=negative_prompt,
        strength=strength,
        safety_checker=True,
        price_per_megapixel=price_per_megapixel,
    )


#: fal's hosted open-weight models (fal.ai model pages, read late November 2026: input
#: schemas and prices). FLUX [schnell] $0.003, [dev] $0.025, [pro] v1.1 $0.04 per
#: megapixel; fast-sdxl is billed per GPU second (no per-image price). Image-to-image and
#: inpainting run on the model's sibling endpoints (``steps.imaging.providers.fal_images``).
_FAL_SPECS = (
    _fal(
        "fal-ai/flux/schnell",
        per_request=4,
        price_per_megapixel=0.003,
        steps=NumberRange(1, 12),
    ),
    _fal(
        "fal-ai/flux/dev",
        per_request=4,
        price_per_megapixel=0.025,
        steps=NumberRange(1, 50),
        guidance=NumberRange(1, 20),
        strength=NumberRange(0.01, 1),
        mask=True,
    ),
    _fal("fal-ai/flux-pro/v1.1", per_request=4, price_per_megapixel=0.04),
    _fal(
        "fal-ai/fast-sdxl",
        per_request=8,
        price_per_megapixel=None,
        steps=NumberRange(1, 65),
        guidance=NumberRange(0, 20),
        negative_prompt=True,
        strength=NumberRange(0.05, 1),
        mask=True,
    ),
)

_SPECS = (
    # OpenAI's published per-image prices for gpt-image-1-mini (1024x1024; 1536 sizes cost
    # more and are not listed here, so they have no price).
    _gpt_fixed(
        "gpt-image-1-mini",
        {("low", "1024x1024"): 0.005, ("medium", "1024x1024"): 0.011, ("high", "1024x1024"): 0.036},
        input_fidelity=("low",),  # PROVIDERS.md rule 15: mini takes only low
    ),
    _gpt_fixed("gpt-image-1.5"),
    _gpt_fixed("chatgpt-image-latest"),
    # gpt-image-2: transparent is "in preview" and errored in May 2026 (PROVIDERS.md rule 9).
    _gpt_free("gpt-image-2", transparent=False),
    _gpt_free("gpt-image-2-2026-04-21", transparent=False),
    *(
        _gpt_free(name, extra_qualities=("xhigh", "max"), transparent=True)
        for name in (
            "gpt-image-2.5-sunburst",
            "gpt-image-2.5-flare",
            "gpt-image-2.5-sunburst-2026-09-08",
            "gpt-image-2.5-flare-2026-09-08",
        )
    ),
    # 2.6: the SDK lists the names only; assume the 2.5 size rule, standard qualities.
    _gpt_free("gpt-image-2.6-sunburst", transparent=True),
    _gpt_free("gpt-image-2.6-flare", transparent=True),
    # Google's published price: 1290 output tokens at $30/1M ≈ $0.039 per 1K image.
    # References per edit: Google documents up to 3 for 2.5 Flash Image, up to 14 for the
    # Gemini 3 image models.
    _gemini("gemini-2.5-flash-image", ("1K",), 3, price=0.039),
    _gemini("gemini-3-pro-image-preview", ("1K", "2K", "4K"), 14),
    _gemini("gemini-3.1-flash-image-preview", ("1K", "2K", "4K"), 14),
    ModelSpec(
        PREVIEW,
        "preview",
        size_rule=PREVIEW_SIZES,
        qualities=QUALITIES,
        native_formats=("png",),
        seed=True,
        prices={("*", "*"): 0.0},
        note="offline drawings marked PREVIEW",
        input_fidelity=("high", "low"),
        # The preview stands in for every model (``auto`` falls back to it): it takes the
        # open-weight options with the widest ranges any model has, and ignores them.
        steps=NumberRange(1, 150),
        guidance=NumberRange(0, 35),
        negative_prompt=True,
        strength=NumberRange(0, 1),
        safety_checker=True,
    ),
    *_FAL_SPECS,
)

#: Every model the step can run, by name.
CATALOG: Mapping[str, ModelSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})

#: ``model: local/<name>``: a diffusers model folder on the machine that runs the step
#: (``steps.imaging.providers.local_diffusers``); not listed in :data:`CATALOG`, whose names
#: are fixed: :func:`local_spec` makes the entry for any such name.
LOCAL_PREFIX = "local/"
#: What Stable Diffusion-class pipelines take: sides divisible by 8 (the VAE's latent grid),
#: up to 2048 a side (memory is the real limit; 32x32 is for tiny test pipelines).
LOCAL_SIZES = SizeRule(
    multiple=8,
    max_ratio=4,
    max_width=2048,
    max_height=2048,
    min_pixels=32 * 32,
    max_pixels=2048 * 2048,
)


_LOCAL_NAME = re.compile(r"^local/[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)*$", re.ASCII)


def local_spec(name: str) -> ModelSpec | None:
    """The entry of ``local/<name>`` (any folder name: the folder itself is checked before
    the run); None for any other model name, or a name no folder can have (``local/../x``)."""
    if not _LOCAL_NAME.match(name):
        return None
    return ModelSpec(
        name,
        "local",
        size_rule=LOCAL_SIZES,
        per_request=4,  # one batch on the GPU; more images are further calls
        qualities=("auto",),
        transparent=False,
        native_formats=("png",),
        seed=True,  # torch.Generator(device).manual_seed(seed)
        prices={("*", "*"): 0.0},
        note="runs on this machine with diffusers (fetchflow[local]); no background setting",
        edit_max_images=1,  # image-to-image and inpainting start from one image
        edit_max_image_bytes=_OPENAI_EDIT_MAX_BYTES,
        mask=True,
        steps=NumberRange(1, 150),
        guidance=NumberRange(0, 30),
        negative_prompt=True,
        strength=NumberRange(0.01, 1),
    )


#: Models the providers no longer serve (openai 3.52 ``image_model.py``).
RETIRED: Mapping[str, Retired] = MappingProxyType(
    {
        "dall-e-2": Retired("dall-e-2", "May 12, 2026", "gpt-image-1-mini"),
        "dall-e-3": Retired("dall-e-3", "May 12, 2026", "gpt-image-2"),
        "gpt-image-1": Retired("gpt-image-1", "Oct 23, 2026", "gpt-image-1.5"),
    }
)

#: ``model: auto`` tries these in order and takes the first whose provider has a key and
#: that can make what the step asks for (gpt-image-1.5 covers transparent backgrounds).
#: The fal models come last: a step asking for steps, guidance or a negative prompt gets
#: the first candidate that takes them (``rules.unsupported``).
AUTO_CANDIDATES = (
    "gpt-image-2",
    "gpt-image-1.5",
    "gemini-2.5-flash-image",
    "fal-ai/flux/dev",
    "fal-ai/fast-sdxl",
)


@dataclass(frozen=True)
class SizeChoice:
    """What to ask a model for.

    Attributes:
        width: Pixel width, or None for the provider's "auto" (or a ratio-only model).
        height: Pixel height, or None.
        aspect_ratio: The ratio, for ratio-taking models.
        resolution: The resolution, for ratio-taking models.
    """

    width: int | None
    height: int | None
    aspect_ratio: str | None = None
    resolution: str | None = None


def _closest_ratio(ratio: float, options: tuple[str, ...]) -> str:
    return min(options, key=lambda option: abs(ratio_value(option) / ratio - 1))


def closest_size(spec: ModelSpec, aspect_ratio: str, resolution: str | None) -> SizeChoice:
    """The size ``spec`` supports that is closest to ``aspect_ratio`` at ``resolution``.

    Fixed-size models get the size with the nearest ratio; free-size models the largest
    allowed size of that ratio with a long edge near 1024/2048/4096 (capped by the model);
    ratio models get the ratio (or their nearest) and the highest resolution they have up
    to the one asked for.
    """
    ratio = ratio_value(aspect_ratio)
    wanted = resolution or "1K"
    if spec.takes_ratio:
        known = [r for r in RESOLUTIONS if r in spec.resolutions]
        lower = [r for r in known if RESOLUTIONS.index(r) <= RESOLUTIONS.index(wanted)]
        return SizeChoice(
            None,
            None,
            aspect_ratio=_closest_ratio(ratio, spec.aspect_ratios),
            resolution=(lower or known)[-1],
        )
    if spec.size_rule is not None:
        width, height = spec.size_rule.fit(ratio, _LONG_EDGE[wanted])
        return SizeChoice(width, height)
    width, height = min(spec.sizes, key=lambda size: abs(size[0] / size[1] / ratio - 1))
    return SizeChoice(width, height)


def size_to_ratio(width: int, height: int, spec: ModelSpec) -> SizeChoice:
    """A pixel size asked of a ratio-only model: its nearest ratio and resolution."""
    long_edge = max(width, height)
    resolution = min(RESOLUTIONS, key=lambda r: abs(_LONG_EDGE[r] - long_edge))
    return closest_size(spec, _closest_ratio(width / height, ASPECT_RATIOS), resolution)


def price_for(spec: ModelSpec, quality: str, width: int, height: int) -> float | None:
    """USD for one image, when the provider publishes a price for it; else None.

    A model priced by area costs its price per megapixel for each started megapixel
    (1024x1024 is one).
    """
    if spec.price_per_megapixel is not None:
        megapixels = max(1, math.ceil(width * height / (1024 * 1024)))
        return round(spec.price_per_megapixel * megapixels, 6)
    size = f"{width}x{height}"
    for key in ((quality, size), (quality, "*"), ("*", size), ("*", "*")):
        if key in spec.prices:
            return spec.prices[key]
    return None
