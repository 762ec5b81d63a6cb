"""The README's model table, written from the catalog (a test keeps the README equal to it).

One row per model: its provider, what sizes it takes, and which of the options that only some
models take it accepts (with their ranges), and its published price. ``local/<folder>``
stands for every local diffusers model (they share one entry shape).
"""

from __future__ import annotations

from steps.imaging.models.catalog import CATALOG, ModelSpec, NumberRange, local_spec

__all__ = ["model_table", "upscaler_table"]

_COLUMNS = (
    "model",
    "provider",
    "sizes",
    "`seed`",
    "`steps`",
    "`guidance`",
    "`negative_prompt`",
    "`strength` (edits)",
    "`mask`",
    "`partial_images`",
    "`safety_checker`",
    "price",
)
_PROVIDERS = {
    "openai": "OpenAI",
    "google": "Gemini",
    "fal": "fal",
    "preview": "offline",
    "local": "diffusers (this machine)",
}
_NO = "–"
_YES = "yes"


def _sizes(spec: ModelSpec) -> str:
    if spec.aspect_ratios:
        return f"{len(spec.aspect_ratios)} ratios × {', '.join(spec.resolutions) or '1K'}"
    if spec.size_rule is not None:
        rule = spec.size_rule
        return f"any WxH, multiples of {rule.multiple}, up to {rule.max_width}x{rule.max_height}"
    return ", ".join(f"{width}x{height}" for width, height in spec.sizes) or "auto"


def _range(value: NumberRange | None) -> str:
    return _NO if value is None else str(value)


def _flag(value: bool) -> str:
    return _YES if value else _NO


def _price(spec: ModelSpec) -> str:
    if spec.price_per_megapixel is not None:
        return f"${spec.price_per_megapixel:g} per started megapixel"
    prices = sorted(set(spec.prices.values()))
    if not prices:
        return "not published (no estimate)"
    if prices == [0.0]:
        return "free"
    low, high = prices[0], prices[-1]
    return f"${low:g} per image" if low == high else f"${low:g}–${high:g} per image"


def _row(name: str, spec: ModelSpec) -> str:
    edits = spec.edit_max_images > 0
    cells = (
        f"`{name}`",
        _PROVIDERS.get(spec.provider, spec.provider),
        _sizes(spec),
        _flag(spec.seed),
        _range(spec.steps),
        _range(spec.guidance),
        _flag(spec.negative_prompt),
        _range(spec.strength) if edits else "no edits",
        _flag(spec.mask and edits),
        "1-3" if spec.partial_images else _NO,
        _flag(spec.safety_checker),
        _price(spec),
    )
    return "| " + " | ".join(cells) + " |"


def model_table() -> str:
    """The markdown table of every catalog model and ``local/<folder>``, catalog order."""
    rows = [_row(name, spec) for name, spec in CATALOG.items()]
    local = local_spec("local/folder")
    if local is not None:
        rows.append(_row("local/<folder>", local))
    header = "| " + " | ".join(_COLUMNS) + " |"
    rule = "|" + "---|" * len(_COLUMNS)
    return "\n".join([header, rule, *rows]) + "\n"


def upscaler_table() -> str:
    """The markdown table of ``image_upscale``'s models (``auto`` runs ``pillow``)."""
    from steps.imaging.upscalers import UPSCALERS

    rows = []
    for name, upscaler in UPSCALERS.items():
        per_mp = upscaler.usd_per_megapixel
        price = (
            "free"
            if per_mp == 0
            else "not published (no estimate)"
            if per_mp is None
            else f"${per_mp:g} per started output megapixel"
        )
        provider = "Pillow Lanczos, offline" if not upscaler.billable else upscaler.provider
        factors = ", ".join(str(factor) for factor in upscaler.factors)
        rows.append(f"| `{name}` | {provider} | {factors} | {price} |")
    header = "| model | runs on | factors | price |\n|---|---|---|---|"
    return "\n".join([header, *rows]) + "\n"
