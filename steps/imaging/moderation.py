"""What an image step does when the provider's safety system blocks an image.

``on_moderation`` on ``image_generation`` and ``image_edit``::

    on_moderation: fail                      # the default: the step fails (earlier images kept)
    on_moderation: skip                      # go on; the blocked image is listed, not made
    on_moderation: {retry: 2}                # up to 2 more tries of the blocked call
    on_moderation: {fallback_model: gemini-2.5-flash-image}   # one try on another model

A retry sends a new seed where the model takes one (:func:`retry_seed`); after an
input-stage block, or on a model without seeds, it appends :data:`REPHRASE_HINT` to the
prompt (a new seed cannot change a verdict on the prompt itself). Retry and fallback are
not combined: one policy per step. A policy that runs out (every retry blocked, the
fallback blocked too) fails the step as ``fail`` does.

Each image's outcome is in its record (:class:`ModerationNote`, ``ImageAsset.moderation``):
``made``, ``retried`` or ``fallback``, with the blocks met on the way; a skipped image has no
file and no record: the step warns ``image 2 of 3: blocked ... skipped``, which the terminal,
``--json`` (``notes``) and the step's gallery show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fetchflow.errors import closest
from fetchflow.step import OutputLength, RuleViolation
from steps.imaging.models import rules
from steps.imaging.models.catalog import AUTO

__all__ = [
    "REPHRASE_HINT",
    "Block",
    "FallbackOnModeration",
    "ModerationNote",
    "OnModeration",
    "RetryOnModeration",
    "check_fallback",
    "check_on_moderation",
    "describe_block",
    "rephrased",
    "retry_seed",
    "with_skips",
]

#: Appended to the prompt (after a blank line) by ``{retry: N}`` after an input-stage block
#: or on a model that takes no seed; kept in the record (``ModerationNote.rephrase``).
REPHRASE_HINT = (
    "Keep the image suitable for a general audience: no nudity, gore, violence or other "
    "content a safety filter would block."
)

#: Added to the seed per retry (a large odd step: far from the seeds ``count`` uses).
_SEED_STEP = 1_000_003


class RetryOnModeration(BaseModel):
    """``on_moderation: {retry: N}``: try a blocked call again, up to N more times."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retry: int = Field(
        ge=1,
        le=5,
        description="More tries of a blocked call (1-5): a new seed where the model takes "
        "one; a rephrase hint appended to the prompt after an input-stage block or on a "
        "model without seeds. Still blocked after them: the step fails.",
    )


class FallbackOnModeration(BaseModel):
    """``on_moderation: {fallback_model: NAME}``: make a blocked call's images on another
    model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fallback_model: str = Field(
        description="A catalog model that takes the step's options, tried once per blocked "
        "call (its key must be configured). Blocked there too: the step fails."
    )


#: What a moderation block does to a step.
OnModeration = Literal["fail", "skip"] | RetryOnModeration | FallbackOnModeration


class Block(BaseModel):
    """One blocked attempt.

    Attributes:
        model: The model that refused.
        stage: ``input``, ``output`` or ``""`` (not said).
        categories: The categories named.
        seed: The seed sent, if any.
        billed: Whether the attempt may have been billed (an output-stage block: the image
            was made, then withheld).
    """

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="The model that refused.")
    stage: str = Field(description='input, output, or "" when the provider did not say.')
    categories: list[str] = Field(
        default_factory=list, description="The categories the provider named."
    )
    seed: int | None = Field(None, description="The seed sent, if any.")
    billed: bool = Field(
        False, description="Whether it may have been billed (an output-stage block)."
    )


class ModerationNote(BaseModel):
    """How moderation went for one image.

    Attributes:
        outcome: ``made`` (first try), ``retried`` (made on a later try), ``fallback`` (made
            by ``on_moderation``'s fallback model).
        attempts: Calls made for the image, blocked ones included.
        blocks: The blocked attempts, in order.
        rephrase: The text appended to the prompt for the try that made it, if any.
    """

    model_config = ConfigDict(frozen=True)

    outcome: Literal["made", "retried", "fallback"] = Field(
        "made", description="made (first try), retried or fallback (on_moderation)."
    )
    attempts: int = Field(1, description="Calls made for the image, blocked ones included.")
    blocks: list[Block] = Field(default_factory=list, description="The blocked attempts, in order.")
    rephrase: str | None = Field(
        None, description="The text appended to the prompt for the try that made it, if any."
    )


def rephrased(prompt: str) -> str:
    """``prompt`` with :data:`REPHRASE_HINT` appended after a blank line (once)."""
    if prompt.endswith(REPHRASE_HINT):
        return prompt
    return f"{prompt}\n\n{REPHRASE_HINT}"


def retry_seed(seed: int | None, retry: int, first: int) -> int:
    """The seed of retry number ``retry`` (1-based) of the call making image ``first``."""
    return ((seed if seed is not None else first) + retry * _SEED_STEP) % 2**32


def describe_block(stage: str, categories: tuple[str, ...] | list[str]) -> str:
    """``blocked at input (violence)``: a block in a few words."""
    where = f"at {stage}" if stage else "(stage not said)"
    return f"blocked {where}" + (f" ({', '.join(categories)})" if categories else "")


# -- the config's checks --------------------------------------------------------------------

_POLICIES = ("fail", "skip", "retry", "fallback_model")
_ANY = "use fail, skip, {retry: N} or {fallback_model: NAME}"
_RETRY_HINT = "write on_moderation: {retry: 2} (1 to 5 more tries)"
_FALLBACK_HINT = "write on_moderation: {fallback_model: gemini-2.5-flash-image} (a catalog model)"


def _violation(message: str, hint: str) -> RuleViolation:
    return RuleViolation(message, fields=("on_moderation",), hint=hint)


def check_on_moderation(value: object) -> object:
    """``on_moderation`` as written: one of the four shapes, or a message saying which.

    Raises:
        RuleViolation: An unknown policy or key (with the nearest one), ``retry`` without a
            number, both ``retry`` and ``fallback_model``, a number out of 1-5, a model
            name that is not text.
    """
    if isinstance(value, RetryOnModeration | FallbackOnModeration):
        return value
    if isinstance(value, str):
        if value in ("fail", "skip"):
            return value
        if value == "retry":
            raise _violation("retry needs a number of tries", _RETRY_HINT)
        if value in ("fallback", "fallback_model"):
            raise _violation(f"{value} needs the model to fall back to", _FALLBACK_HINT)
        near = closest(value, _POLICIES)
        raise _violation(
            f'on_moderation: unknown policy "{value}"'
            + (f'; did you mean "{near}"?' if near else ""),
            _ANY,
        )
    if not isinstance(value, Mapping):
        shown = "null" if value is None else f"{type(value).__name__} {value!r}"
        raise _violation(f"on_moderation must be text or a mapping, got {shown}", _ANY)
    keys = [str(key) for key in value]
    if "retry" in keys and "fallback_model" in keys:
        raise _violation(
            "one policy only, got both retry and fallback_model",
            "use {retry: N} (the same model) or {fallback_model: NAME} (another model)",
        )
    for key in keys:
        if key not in ("retry", "fallback_model"):
            near = closest(key, ["retry", "fallback_model"])
            raise _violation(
                f'on_moderation: unknown key "{key}"'
                + (f'; did you mean "{near}"?' if near else ""),
                "use {retry: N} or {fallback_model: NAME}",
            )
    if not keys:
        raise _violation("an empty mapping names no policy", _ANY)
    if "retry" in keys:
        tries = value["retry"]
        if isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= 5:
            raise _violation(
                f"retry must be a whole number from 1 to 5, got {tries!r}",
                _RETRY_HINT,
            )
        return RetryOnModeration(retry=tries)
    model = value["fallback_model"]
    if not isinstance(model, str) or not model:
        raise _violation(f"fallback_model must name a model, got {model!r}", _FALLBACK_HINT)
    return FallbackOnModeration(fallback_model=model)


def check_fallback(
    name: str,
    *,
    model: str,
    size: str | None,
    resolution: str | None,
    count: int,
    quality: str,
    background: str,
) -> None:
    """``{fallback_model: name}`` names a catalog model that can make what the step asks
    (its size, count, quality and background); a seed is not carried over to a model
    without one.

    Raises:
        RuleViolation: Unknown or retired (with the nearest name), ``auto``, the step's own
            model, or a model that cannot take the step's options.
    """
    if name == AUTO:
        raise _violation("fallback_model must name a model, got auto", _FALLBACK_HINT)
    try:
        spec = rules.lookup_model(name)
    except RuleViolation as error:
        raise _violation(
            f"fallback_model: {error.message}",
            error.hint.replace("use model:", "use fallback_model:"),
        ) from None
    assert spec is not None  # only auto looks up to None
    if name == model:
        raise _violation(
            f"fallback_model {name} is the step's own model",
            "name another model, or use on_moderation: {retry: N} to try the same one again",
        )
    problem = rules.unsupported(
        spec, size=size or AUTO, quality=quality, background=background, resolution=resolution
    )
    if problem is None:
        try:
            rules.check_count(spec, count)
        except RuleViolation as error:
            problem = str(error)
    if problem is not None:
        raise _violation(
            f"fallback_model {name} cannot make what this step asks: {problem}",
            "choose a fallback model that takes the step's options, or change them",
        )


def with_skips(
    length: OutputLength | None, fields: Mapping[str, object], templated: frozenset[str]
) -> OutputLength | None:
    """An image step's static output length under ``on_moderation: skip`` (or a template
    there): a skipped image leaves no item, so only "at most" is known."""
    if length is None:
        return None
    if "on_moderation" in templated:
        return replace(length, items=None, fields=(*length.fields, "on_moderation"))
    if fields.get("on_moderation") != "skip":
        return length
    at_most = length.at_most if length.items is None else length.items
    why = "on_moderation: skip leaves a blocked image out" if length.items is not None else ""
    return replace(length, items=None, at_most=at_most, why=why)
