"""Model-dependent rules of the image steps, as pure functions over the catalog.

Each function raises :class:`fetchflow.step.RuleViolation` naming the fields, the value
found and the way out; config validators call them, and so does ``model: auto`` when it
picks a model at run time (:func:`unsupported`).

``model: auto`` is checked statically against the preview provider's limits (the most
permissive model, and what ``auto`` falls back to); the model ``auto`` picks at run time
must then support the request, or the next candidate is tried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import gcd

from fetchflow.errors import closest
from fetchflow.step import RuleViolation
from steps.imaging.models.catalog import (
    ASPECT_RATIOS,
    AUTO,
    CATALOG,
    LOCAL_PREFIX,
    PREVIEW,
    RETIRED,
    ModelSpec,
    NumberRange,
    closest_size,
    local_spec,
    parse_size,
    ratio_value,
)

__all__ = [
    "TUNING_FIELDS",
    "EditNeeds",
    "Tuning",
    "check_background",
    "check_count",
    "check_edit_needs",
    "check_input_fidelity",
    "check_mask_support",
    "check_outpaint_ratio",
    "check_partial_images",
    "check_prompt_length",
    "check_quality",
    "check_reference_count",
    "check_seed",
    "check_size",
    "check_tuning",
    "check_tuning_field",
    "lookup_model",
    "rules_spec",
    "unsupported",
]


def _violation(message: str, fields: tuple[str, ...], hint: str) -> RuleViolation:
    return RuleViolation(message, fields=fields, hint=hint)


def lookup_model(name: str) -> ModelSpec | None:
    """The catalog entry for ``name``; None for ``auto``.

    Raises:
        RuleViolation: The model is retired (with its replacement) or unknown (with the
            closest known name).
    """
    if name == AUTO:
        return None
    spec = CATALOG.get(name) or local_spec(name)
    if spec is not None:
        return spec
    if name.startswith(LOCAL_PREFIX):
        raise _violation(
            f'model {name}: "{name.removeprefix(LOCAL_PREFIX)}" is not a model folder name',
            ("model",),
            "write model: local/<folder> (letters, digits, _ . -, / between parts), "
            "e.g. local/sd-turbo",
        )
    retired = RETIRED.get(name)
    if retired is not None:
        raise _violation(
            f"model {name} was retired on {retired.since} and no longer answers",
            ("model",),
            f"use model: {retired.replacement}",
        )
    suggestion = closest(name, [AUTO, *CATALOG])
    if suggestion:
        raise _violation(
            f'unknown image model "{name}"; did you mean "{suggestion}"?',
            ("model",),
            f"use model: {suggestion}",
        )
    raise _violation(
        f'unknown image model "{name}"',
        ("model",),
        "use model: auto, or one of: " + ", ".join(CATALOG),
    )


def rules_spec(model: str) -> ModelSpec:
    """The spec a config is checked against: the model's own, or preview's for ``auto``."""
    return lookup_model(model) or CATALOG[PREVIEW]


def check_size(spec: ModelSpec, size: str) -> None:
    """``size`` (``WxH`` or ``auto``) is one ``spec`` can make."""
    dimensions = parse_size(size)
    if dimensions is None:
        return
    problem = spec.size_problem(*dimensions)
    if problem is None:
        return
    if spec.takes_ratio:
        raise _violation(
            f"size: {size} does not apply to model {spec.name}: {problem}",
            ("size", "model"),
            "use aspect_ratio (1:1, 16:9, ...) with resolution instead of size",
        )
    raise _violation(
        f"size: {size} is not a size model {spec.name} can make: {problem}",
        ("size", "model"),
        "use aspect_ratio and resolution to get the closest size the model supports, "
        "or fix size as the message says",
    )


def check_count(spec: ModelSpec, count: int) -> None:
    """``count`` is within what one step may ask ``spec`` for."""
    if count > spec.max_count:
        raise _violation(
            f"count: {count} is more than model {spec.name} accepts (at most {spec.max_count})",
            ("count", "model"),
            f"use count: {spec.max_count} or less, or another model",
        )


def check_quality(spec: ModelSpec, quality: str) -> None:
    """``quality`` is one ``spec`` accepts."""
    if quality not in spec.qualities:
        raise _violation(
            f"quality: {quality} is not accepted by model {spec.name} "
            f"(it takes {', '.join(spec.qualities)})",
            ("quality", "model"),
            "use quality: auto" if "auto" in spec.qualities else "change quality",
        )


def check_prompt_length(spec: ModelSpec, length: int) -> None:
    """The final prompt (style included) fits ``spec``'s limit."""
    if length > spec.prompt_max_chars:
        raise _violation(
            f"prompt is {length:,} characters with style; model {spec.name} takes at most "
            f"{spec.prompt_max_chars:,}",
            ("prompt", "style", "model"),
            "shorten the prompt (or the style)",
        )


def check_background(spec: ModelSpec, background: str) -> None:
    """``background: transparent`` only where ``spec`` can make it."""
    if background == "transparent" and not spec.transparent:
        why = f" ({spec.note})" if spec.note else ""
        raise _violation(
            f"background: transparent is not supported by model {spec.name}{why}",
            ("background", "model"),
            "use a model with transparent backgrounds (gpt-image-1.5, gpt-image-2.5-flare) "
            "or background: auto",
        )


def check_seed(spec: ModelSpec, seed: int | None) -> None:
    """``seed`` only where ``spec`` takes one."""
    if seed is not None and not spec.seed:
        raise _violation(
            f"seed: {seed} is not supported by model {spec.name}",
            ("seed", "model"),
            "remove seed (OpenAI image models take none), or use a Gemini model or preview",
        )


def check_partial_images(spec: ModelSpec, partial_images: int) -> None:
    """``partial_images`` above 0 only where ``spec`` streams them (PROVIDERS.md rule 11)."""
    if partial_images and not spec.partial_images:
        streaming = [m.name for m in CATALOG.values() if m.partial_images]
        raise _violation(
            f"partial_images: {partial_images} is not supported by model {spec.name} (only "
            "OpenAI GPT image models stream partial images)",
            ("partial_images", "model"),
            "remove partial_images, or use an OpenAI model that streams them ("
            + ", ".join(streaming[:3])
            + (", ..." if len(streaming) > 3 else "")
            + ")",
        )


def check_reference_count(spec: ModelSpec, count: int) -> None:
    """An edit sends at most ``spec.edit_max_images`` references in one call."""
    if count <= spec.edit_max_images:
        return
    if spec.edit_max_images == 0:
        editors = _takers(lambda m: m.edit_max_images > 0 and m.provider == spec.provider)
        raise _violation(
            f"model {spec.name} makes images from a prompt only: it does not edit images",
            ("model",),
            f"use a model that edits ({', '.join(editors[:3]) or 'gpt-image-1.5'})",
        )
    roomier = [
        m.name
        for m in sorted(CATALOG.values(), key=lambda m: m.provider != spec.provider)
        if m.edit_max_images >= count and m.provider != "preview"
    ]
    other = f", or a model that takes {count} ({', '.join(roomier[:3])})" if roomier else ""
    raise _violation(
        f"images: {count} references; model {spec.name} takes at most "
        f"{spec.edit_max_images} in one edit",
        ("images", "model"),
        f"give at most {spec.edit_max_images} images, or each: true to edit them one by one{other}",
    )


def check_mask_support(spec: ModelSpec, field: str) -> None:
    """``mask`` or ``outpaint`` (which sends a mask) only where ``spec`` takes a mask.

    A model that does not edit at all (FLUX schnell, FLUX pro) is refused as such first.
    """
    if not spec.mask:
        check_reference_count(spec, 1)
        raise _violation(
            f"{field} needs a model that takes a mask; model {spec.name} edits from the "
            "prompt alone",
            (field, "model"),
            "use an OpenAI model (gpt-image-1.5, gpt-image-2) or preview, or leave "
            f"{field} out and say in the prompt what to change",
        )


#: How far a fixed size may stray from an outpaint's ratio and still be that ratio.
OUTPAINT_RATIO_TOLERANCE = 0.01


def _ratio_text(width: int, height: int) -> str:
    divisor = gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def check_outpaint_ratio(spec: ModelSpec, outpaint: str, resolution: str | None) -> None:
    """``outpaint`` only to a ratio ``spec`` can return (a fixed-size model has three).

    The canvas is built at the ratio of the size asked for; a model whose closest size has
    another ratio would return an image of that other ratio, so the step is refused.
    """
    if spec.takes_ratio or not spec.mask or spec.size_rule is not None:
        # Ratio models take no mask (check_mask_support says so); free-size models are asked
        # for the closest size of the ratio, and the canvas is built at that size's ratio.
        return
    asked = closest_size(spec, outpaint, resolution)
    if asked.width is None or asked.height is None:
        return
    wanted = ratio_value(outpaint)
    if abs(asked.width / asked.height / wanted - 1) <= OUTPAINT_RATIO_TOLERANCE:
        return
    made = [_ratio_text(width, height) for width, height in spec.sizes]
    possible = [r for r in ASPECT_RATIOS if r in made]
    nearest = min(possible or made, key=lambda r: abs(ratio_value(r) / wanted - 1))
    sizes = ", ".join(f"{w}x{h}" for w, h in spec.sizes)
    raise _violation(
        f"outpaint: {outpaint} is not a ratio model {spec.name} can make (its sizes "
        f"{sizes} are {', '.join(made)}); the result would be "
        f"{_ratio_text(asked.width, asked.height)}",
        ("outpaint", "model"),
        f'use outpaint: "{nearest}", or a model with free sizes (gpt-image-2) for {outpaint}',
    )


def check_input_fidelity(spec: ModelSpec, value: str | None) -> None:
    """``input_fidelity`` only with a value ``spec`` takes (PROVIDERS.md rule 15)."""
    if value is None or value in spec.input_fidelity:
        return
    if not spec.input_fidelity:
        raise _violation(
            f"input_fidelity: {value} is not taken by model {spec.name}",
            ("input_fidelity", "model"),
            "remove input_fidelity (gpt-image-2 and later keep details without it; "
            "gpt-image-1.5 takes high or low)",
        )
    raise _violation(
        f"input_fidelity: {value} is not taken by model {spec.name} "
        f"(it takes {', '.join(spec.input_fidelity)})",
        ("input_fidelity", "model"),
        f"use input_fidelity: {spec.input_fidelity[0]}, or gpt-image-1.5 for high",
    )


@dataclass(frozen=True)
class EditNeeds:
    """What an edit asks of its model besides the output options.

    Attributes:
        mask: The edit sends a mask the user gave (inpainting).
        outpaint: The ratio the edit extends its image to (it sends a mask it builds), or
            None.
    """

    mask: bool = False
    outpaint: str | None = None


def check_edit_needs(spec: ModelSpec, needs: EditNeeds, resolution: str | None) -> None:
    """``spec`` takes the edit's mask, and can make its outpaint ratio at ``resolution``.

    The run's check of a named model and ``model: auto``'s test of each candidate.
    """
    if needs.mask:
        check_mask_support(spec, "mask")
    if needs.outpaint is not None:
        check_mask_support(spec, "outpaint")
        check_outpaint_ratio(spec, needs.outpaint, resolution)


def unsupported(
    spec: ModelSpec,
    *,
    size: str,
    quality: str,
    background: str,
    resolution: str | None = None,
    edit: EditNeeds | None = None,
    tuning: Tuning | None = None,
) -> str | None:
    """Why ``spec`` cannot serve a ``model: auto`` request, or None when it can.

    Ratio-only models serve any pixel size (it maps to their nearest ratio); a seed never
    excludes a model (models without one ignore it). ``edit`` is what an edit needs (a mask,
    an outpaint ratio), checked by :func:`check_edit_needs` as the run checks a named model.
    ``tuning``: the open-weight options the step sets (``steps``, ``guidance``, ...): a
    model that does not take one, or not in that range, cannot serve it.
    """
    checks: list[Callable[[], None]] = [
        lambda: check_quality(spec, quality),
        lambda: check_background(spec, background),
    ]
    if not spec.takes_ratio:
        checks.append(lambda: check_size(spec, size))
    if edit is not None:
        checks.append(lambda: check_edit_needs(spec, edit, resolution))
    if tuning is not None:
        checks.append(lambda: check_tuning(spec, tuning))
    for check in checks:
        try:
            check()
        except ValueError as error:
            return str(error)
    return None


@dataclass(frozen=True)
class Tuning:
    """The open-weight options of a step, travelling together (None: not set).

    Attributes:
        steps: Denoising steps.
        guidance: Classifier-free guidance scale.
        negative_prompt: What the image should not show.
        strength: How far an image-to-image edit may move from its reference (0-1).
        safety_checker: Whether the provider's safety checker runs.
    """

    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    strength: float | None = None
    safety_checker: bool | None = None

    def given(self) -> dict[str, object]:
        """The options set, by field name."""
        return {name: value for name, value in vars(self).items() if value is not None}


#: The :class:`Tuning` fields, in the order they are checked.
TUNING_FIELDS = ("steps", "guidance", "negative_prompt", "strength", "safety_checker")

_TUNING_WORDS = {
    "steps": "denoising steps",
    "guidance": "a guidance scale",
    "negative_prompt": "a negative prompt",
    "strength": "an image-to-image strength",
    "safety_checker": "a safety checker switch",
}


def _takers(test: Callable[[ModelSpec], bool]) -> list[str]:
    """Catalog models (not the preview) passing ``test``, in catalog order."""
    return [m.name for m in CATALOG.values() if m.provider != "preview" and test(m)]


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value[:40]}"' if len(value) <= 40 else f'"{value[:40]}..."'
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_tuning_field(spec: ModelSpec, field: str, value: object) -> None:
    """One open-weight option (:data:`TUNING_FIELDS`) is taken by ``spec``, in its range.

    Raises:
        RuleViolation: ``spec`` takes no such option (the hint names models that do), or
            the value is outside ``spec``'s range (the message gives the range).
    """
    if value is None:
        return
    taken: object = getattr(spec, field)
    if taken is None or taken is False:
        takers = _takers(lambda m: getattr(m, field) not in (None, False))
        others = f"use a model that takes it ({', '.join(takers[:4])})" if takers else ""
        raise _violation(
            f"{field}: {_shown(value)} is not taken by model {spec.name} (it takes no "
            f"{_TUNING_WORDS[field].removeprefix('a ').removeprefix('an ')})",
            (field, "model"),
            f"remove {field}" + (f", or {others}" if others else ""),
        )
    if isinstance(taken, NumberRange) and value not in taken:
        wider = _takers(
            lambda m: isinstance(getattr(m, field), NumberRange) and value in getattr(m, field)
        )
        other = f", or a model that takes {_shown(value)} ({', '.join(wider[:3])})" if wider else ""
        raise _violation(
            f"{field}: {_shown(value)} is out of range for model {spec.name} (it takes {taken})",
            (field, "model"),
            f"use {field} between {taken.low:g} and {taken.high:g}{other}",
        )


def check_tuning(spec: ModelSpec, tuning: Tuning) -> None:
    """Every open-weight option set in ``tuning`` is one ``spec`` takes, in its range."""
    for field in TUNING_FIELDS:
        check_tuning_field(spec, field, getattr(tuning, field))
