"""Turning an edit step's references into provider inputs, with every limit checked first.

:func:`plan_edits` takes the references (and mask) a step read, checks them against the
model (how many, each file's format and size, the request's total for Gemini, the mask's
format and dimensions), builds the outpainting canvas and mask when asked, and returns one
:class:`~steps.imaging.production.EditInputs` per provider edit. Nothing here calls a
provider: every error is raised before anything is paid for, and none is retryable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fetchflow.errors import StepError
from fetchflow.step import RuleViolation
from steps.imaging.models.catalog import ModelSpec, closest_size
from steps.imaging.models.rules import EditNeeds, check_edit_needs, check_reference_count
from steps.imaging.pixels.decoding import open_image
from steps.imaging.pixels.formats import MIME_TYPES, sniff_format
from steps.imaging.production import EditInputs
from steps.imaging.providers.base import ProviderImage
from steps.imaging.sources.references import Reference

__all__ = [
    "BACKGROUND_REMOVAL_PROMPT",
    "EditGroup",
    "edit_mode",
    "plan_edits",
]

#: The instruction an edit without a prompt sends with ``background: transparent``.
BACKGROUND_REMOVAL_PROMPT = (
    "Remove the background completely and make it fully transparent. Keep the main subject "
    "exactly as it is: same shape, proportions, colours, text and fine edges (hair, fur, "
    "glass). Do not add, move or restyle anything, and add no shadow or outline."
)


def edit_mode(*, outpaint: bool, mask: bool, background_removal: bool, references: int) -> str:
    """What kind of edit a call is, as provenance says it.

    ``outpaint``, ``inpaint`` (a mask), ``remove_background``, ``compose`` (several
    references in one call) or ``edit``.
    """
    if outpaint:
        return "outpaint"
    if mask:
        return "inpaint"
    if background_removal:
        return "remove_background"
    return "compose" if references > 1 else "edit"


@dataclass(frozen=True)
class EditGroup:
    """One provider edit: its inputs and the references it was made from.

    Attributes:
        inputs: What the provider receives.
        references: The references, in order (the first is the edited one).
        mode: :func:`edit_mode`'s word for it.
    """

    inputs: EditInputs
    references: tuple[Reference, ...]
    mode: str

    def provenance(self) -> dict[str, str]:
        """What each image of this edit records of its sources."""
        first = self.references[0]
        return {
            "edit": self.mode,
            "source_sha256": first.sha256,
            "source": first.source,
            "references": str(len(self.references)),
            "references_sha256": ",".join(ref.sha256 for ref in self.references),
        }


def _refused(message: str, hint: str) -> StepError:
    return StepError(message=message, hint=hint, retryable=False)


def _where(number: int, reference: Reference) -> str:
    return f"images[{number}] ({reference.source})"


def _check_reference(spec: ModelSpec, number: int, reference: Reference) -> str:
    found = sniff_format(reference.data)
    where = _where(number, reference)
    if found not in spec.edit_formats:
        kind = found or "not a PNG, JPEG or WEBP image"
        raise _refused(
            f"{where} is {kind}; model {spec.name} edits {', '.join(spec.edit_formats)} only",
            "convert it first with an image_transform step (output_format: png)",
        )
    size = len(reference.data)
    if size > spec.edit_max_image_bytes:
        raise _refused(
            f"{where} is {size:,} bytes; model {spec.name} takes references up to "
            f"{spec.edit_max_image_bytes:,} bytes",
            "make it smaller first with an image_transform step (width, or output_format "
            "webp with output_compression)",
        )
    # Decoded once here: a truncated file or a decompression bomb is refused before it
    # is sent (and paid for), naming the field and the file.
    open_image(reference.data, what=where)
    return found


def _check_group(spec: ModelSpec, references: Sequence[Reference]) -> None:
    try:
        check_reference_count(spec, len(references))
    except RuleViolation as error:
        raise _refused(error.message, error.hint) from None
    total = sum(len(ref.data) for ref in references)
    limit = spec.edit_max_request_bytes
    if limit is not None and total > limit:
        raise _refused(
            f"images: {len(references)} references of {total:,} bytes in all; model "
            f"{spec.name} takes at most {limit:,} bytes in one request",
            "send fewer or smaller images (an image_transform step can shrink them)",
        )


def _size(data: bytes, what: str) -> tuple[int, int]:
    size: tuple[int, int] = open_image(data, what=what).size
    return size


def _image(reference: Reference, image_format: str) -> ProviderImage:
    return ProviderImage(data=reference.data, mime_type=MIME_TYPES[image_format])


def plan_edits(
    spec: ModelSpec,
    references: Sequence[Reference],
    *,
    each: bool,
    mask: Reference | None = None,
    outpaint: str | None = None,
    resolution: str | None = None,
    background_removal: bool = False,
    input_fidelity: str | None = None,
) -> list[EditGroup]:
    """The provider edits of one step, every limit checked before any call.

    Args:
        spec: The model that will run.
        references: The images read, in order.
        each: One edit per reference (True) or one edit taking them all (False).
        mask: The mask, applying to the first image of each edit, or None.
        outpaint: Extend the first image of each edit to this ratio (``"16:9"``): the
            canvas and its mask are built here, at the exact ratio of the size the model
            is asked for (a model that cannot make that ratio is refused).
        resolution: The step's ``resolution``, which picks the size asked with
            ``outpaint``.
        background_removal: The edit has no prompt: the built-in instruction is sent.
        input_fidelity: Sent only where the model takes the value.

    Raises:
        StepError: Not retryable: too many references, a reference in a format or of a
            size the model refuses, a request over the model's byte limit, a mask that is
            not an RGBA PNG of the first image's size, a mask or outpaint on a model
            without masks.
    """
    from steps.imaging.pixels.canvas import check_mask, outpaint_canvas

    try:
        check_edit_needs(spec, EditNeeds(mask is not None, outpaint), resolution)
    except RuleViolation as error:
        raise _refused(error.message, error.hint) from None
    canvas_ratio: str | float | None = outpaint
    if outpaint is not None:
        asked = closest_size(spec, outpaint, resolution)
        if asked.width and asked.height:  # the canvas has the ratio of the size asked
            canvas_ratio = asked.width / asked.height
    formats = [_check_reference(spec, number, ref) for number, ref in enumerate(references)]
    batches = [[i] for i in range(len(references))] if each else [list(range(len(references)))]
    fidelity = input_fidelity if input_fidelity in spec.input_fidelity else None
    groups: list[EditGroup] = []
    for batch in batches:
        chosen = [references[i] for i in batch]
        _check_group(spec, chosen)
        images = [_image(references[i], formats[i]) for i in batch]
        mask_image: ProviderImage | None = None
        if outpaint is not None and canvas_ratio is not None:
            where = _where(batch[0], chosen[0])
            canvas, canvas_mask = outpaint_canvas(chosen[0].data, canvas_ratio, what=where)
            if _size(canvas, "the canvas") == _size(chosen[0].data, where):  # nothing to paint
                raise _refused(
                    f"images[{batch[0]}] ({chosen[0].source}) is already {outpaint}: "
                    "outpaint would add nothing",
                    "remove outpaint, or give a ratio the image does not have yet",
                )
            if len(canvas) > spec.edit_max_image_bytes:
                raise _refused(
                    f"images[{batch[0]}] ({chosen[0].source}): its {outpaint} outpainting "
                    f"canvas is {len(canvas):,} bytes; model {spec.name} takes references up "
                    f"to {spec.edit_max_image_bytes:,} bytes",
                    "make the image smaller first with an image_transform step (width)",
                )
            images[0] = ProviderImage(data=canvas, mime_type="image/png")
            mask_image = ProviderImage(data=canvas_mask, mime_type="image/png")
        elif mask is not None:
            check_mask(
                mask.data,
                chosen[0].data,
                mask_source=mask.source,
                first_image=_where(batch[0], chosen[0]),
            )
            mask_image = ProviderImage(data=mask.data, mime_type="image/png")
        mode = edit_mode(
            outpaint=outpaint is not None,
            mask=mask is not None,
            background_removal=background_removal,
            references=len(chosen),
        )
        inputs = EditInputs(tuple(images), mask_image, fidelity)
        groups.append(EditGroup(inputs, tuple(chosen), mode))
    return groups
