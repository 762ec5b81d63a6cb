"""The contact sheet of an image step (``contact_sheet: true``): one more record, last.

:func:`add_contact_sheet` reads the step's images back through the run's store, lays them
out with :func:`fetchflow.matrix_grid.plan_grid` (a matrix step's rows and columns are its
axes; otherwise the images side by side, numbered), draws the grid
(:func:`~steps.imaging.pixels.contact_sheet.draw_contact_sheet`) and stores it as
``<step>-contact-sheet.png``, content-addressed like every image. It calls no provider and
costs nothing: its record has ``cost_usd`` 0, ``provider`` ``fetchflow``, no model, and
``provenance["kind"]`` ``contact_sheet`` (what downstream steps and the UI tell it apart
by), with how many images it shows and their SHA-256s. Its ``index`` is its position: after
every image. Its file's metadata says what it is (:mod:`steps.imaging.provenance`): a
composite of AI images (``compositeWithTrainedAlgorithmicMedia``; the preview's:
``compositeSynthetic``), with the images as C2PA ingredients when signing is configured.

A step without a matrix draws it at the end of its own run; a matrix step draws one for all
its combinations in :meth:`~steps.imaging.step.ImageStep.finish_matrix` (a combination's
own run draws none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from fetchflow.errors import RunError, StepError
from fetchflow.matrix_grid import CONTACT_SHEET_KIND, is_contact_sheet, plan_grid
from fetchflow.step import OutputLength
from steps.imaging.assets import ChargeType, ImageAsset

if TYPE_CHECKING:
    from fetchflow.step import StepContext
    from steps.imaging.provenance import Provenance

__all__ = ["SHEET_PROVIDER", "add_contact_sheet", "in_matrix", "with_contact_sheet"]

#: The ``provider`` of a contact sheet's record: made here, no provider called.
SHEET_PROVIDER = "fetchflow"
_FIELD = "contact_sheet"


def with_contact_sheet(
    length: OutputLength | None, fields: Mapping[str, object], templated: frozenset[str]
) -> OutputLength | None:
    """An image step's static output length plus the sheet's record when ``contact_sheet``
    asks for one (while it is a template: unknown, at most one more). A matrix step makes
    one sheet for all its combinations (``once``)."""
    if length is None:
        return None
    if _FIELD in templated:
        most = None if length.at_most is None else length.at_most + 1
        return OutputLength(None, (*length.fields, _FIELD), at_most=most, once=1)
    if fields.get(_FIELD) is not True:
        return length
    items = None if length.items is None else length.items + 1
    most = None if length.at_most is None else length.at_most + 1
    return OutputLength(items, (*length.fields, _FIELD), at_most=most, once=1, why=length.why)


def in_matrix(ctx: StepContext) -> bool:
    """Whether this run is one combination of a matrix step (its scope has ``matrix``)."""
    return bool(ctx.scope.get("matrix"))


def add_contact_sheet(
    assets: Sequence[ImageAsset], ctx: StepContext, *, charge_type: ChargeType
) -> list[ImageAsset]:
    """``assets`` with their contact sheet's record appended (none when there is no image).

    Raises:
        StorageError: An image cannot be read back, or the sheet cannot be stored; its
            ``partial_output`` holds the images' records (they were paid for: kept).
    """
    try:
        return _add_contact_sheet(assets, ctx, charge_type=charge_type)
    except RunError as error:
        if error.partial_output is None:
            error.partial_output = [asset.model_dump(mode="json") for asset in assets]
        raise


def _add_contact_sheet(
    assets: Sequence[ImageAsset], ctx: StepContext, *, charge_type: ChargeType
) -> list[ImageAsset]:
    from steps.imaging.pixels.contact_sheet import draw_contact_sheet
    from steps.imaging.provenance import stamp
    from steps.imaging.signing import current_signing

    images = [asset for asset in assets if not is_contact_sheet(asset.model_dump())]
    if not images:
        return list(assets)
    grid = plan_grid([asset.matrix for asset in images], ctx.combinations)
    title = f"{ctx.step_id} · {len(images)} image{'s' * (len(images) != 1)}"
    shown = {index for row in grid.cells for cell in row for index in cell}
    data = [
        ctx.store.read(asset.storage_uri) if i in shown else b"" for i, asset in enumerate(images)
    ]
    drawn = draw_contact_sheet(grid, data, title=title)
    width, height = _png_size(drawn)
    sheet = stamp(drawn, "image/png", _origin(images, data, shown), current_signing())
    prompts = list(dict.fromkeys(asset.prompt_sha256 for asset in images))
    prompt_sha256 = (
        prompts[0] if len(prompts) == 1 else hashlib.sha256("\n".join(prompts).encode()).hexdigest()
    )
    record = ctx.store.put(
        sheet,
        file_name=f"{ctx.step_id}-contact-sheet.png",
        file_type="image/png",
        step_id=ctx.step_id,
        run_id=ctx.run_id,
        width=width,
        height=height,
        provenance={
            "kind": CONTACT_SHEET_KIND,
            "images": str(len(images)),
            "shown": str(grid.shown),
            "images_sha256": " ".join(asset.sha256 for asset in images),
            "layout": grid.corner,
            "output_format": "png",
        },
    )
    try:
        asset = ImageAsset(
            **record.model_dump(),
            prompt_sha256=prompt_sha256,
            seed=None,
            index=len(assets),
            usage=None,
            cost_usd=0.0,
            charge_type=charge_type,
            provider=SHEET_PROVIDER,
        )
    except ValueError as error:  # pragma: no cover - a bug, not a user error
        raise StepError(message=f"cannot describe the contact sheet: {error}") from error
    ctx.logger.info("contact sheet of %d image(s) stored as %s", len(images), record.file_name)
    return [*assets, asset]


def _origin(images: Sequence[ImageAsset], data: Sequence[bytes], shown: set[int]) -> Provenance:
    """What the sheet's metadata says: a composite of the images it shows (their model when
    they share one), put together by Pillow; with signing, each image is an ingredient."""
    from steps.imaging.provenance import COMPOSITE, DRAWN_COMPOSITE, Ingredient, Provenance

    models = {asset.model for asset in images}
    preview = all(asset.provider == "preview" for asset in images)
    return Provenance(
        "edited",
        DRAWN_COMPOSITE if preview else COMPOSITE,
        models.pop() if len(models) == 1 else None,
        software="pillow",
        ingredients=tuple(
            Ingredient(data[index], images[index].file_type, f"output[{index}]", "componentOf")
            for index in sorted(shown)
        ),
    )


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the sheet was just drawn: no decoding)."""
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
