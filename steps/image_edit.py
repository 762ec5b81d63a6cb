"""Image edit step: change images with a prompt (OpenAI edits, Gemini, or the offline preview).

```yaml
- id: warmer
  type: image_edit
  images: "<< hero.output.0 >>"  # records, http(s) URLs or files under the project; a list
  prompt: make the background warmer, keep the subject
  model: gpt-image-1.5           # or auto / gemini-2.5-flash-image / preview
  mask: masks/sky.png            # optional: transparent pixels mark what to change
  outpaint: "16:9"               # optional, instead of mask: extend the canvas to a ratio
  input_fidelity: high           # optional: keep faces and logos (models that take it)
  each: false                    # true: one edit per image instead of one taking them all
  count: 2                       # images per edit
  # and the output options of image_generation: size or aspect_ratio + resolution,
  # quality, background, output_format, output_compression, seed, charge_type,
  # api_key_secret
```

Modes (provenance ``edit`` says which one made an image):

- **edit** one image: one reference and a prompt;
- **compose** several references into one scene (or the style of one onto another): a
  list of images, one edit taking them all, the first being the one edited;
- **inpaint**: a ``mask`` PNG the size of the first image, fully transparent (alpha 0)
  where to change it;
- **outpaint**: ``outpaint: "16:9"`` builds the larger canvas (the picture centred) and its
  mask, and asks for an image of that ratio;
- **remove_background**: no ``prompt`` and ``background: transparent``: a built-in
  instruction cuts the subject out, on models with transparent output (gpt-image-1.5);
- multi-step refinement: chain edits (``images: << v1.output.0 >>``); each version is its
  own record.

``each`` defaults to true for outpainting and background removal (one result per input
image) and to false otherwise (one edit taking every reference).

Output: one :class:`~steps.imaging.assets.ImageAsset` per image, like image_generation's;
the provenance adds ``edit`` (the mode), ``source_sha256`` and ``source`` (the edited
image), ``references`` (how many) and ``references_sha256`` (every reference's SHA-256, in
order). Records are read back through the run's store (no HTTP, no expiry); URLs are
fetched with the limits of :func:`~steps.imaging.net.fetching.fetch_reference`.

Checked before anything is paid for: statically, every rule of the output options, the
mask or outpaint against models without masks (Gemini), ``input_fidelity`` against the
model, the number of references when the list is written out; at run time, once the
references are read and ``auto`` has picked its model, their number, format (PNG, JPEG,
WEBP) and size, Gemini's 20 MB request limit, and the mask (an RGBA PNG under 4 MB the
size of the first image, with some fully transparent pixel).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from fetchflow.step import (
    CostEstimate,
    OutputLength,
    RuleViolation,
    StepContext,
    deferred,
    static_project_root,
)
from steps.imaging.models import rules
from steps.imaging.options import AspectRatio, ImageOutputConfig, prompt_as_text
from steps.imaging.sources.references import (
    ImagesValue,
    ReferencedImages,
    ReferenceValue,
    check_images_value,
    check_project_files,
    count_references,
    flatten_references,
)
from steps.imaging.step import ImagePlan, ImageStep

if TYPE_CHECKING:
    from fetchflow.settings import Settings
    from steps.imaging.models.catalog import ModelSpec
    from steps.imaging.production import MadeImage

__all__ = ["ImageEditConfig", "ImageEditStep"]


class _EditSubject(ReferencedImages):
    """The fields listed first (``fetchflow steps``, forms): what to edit and how."""

    images: ImagesValue = Field(
        description="The image(s) to edit: asset records (<< hero.output.0 >>), http(s) "
        "URLs, or files relative to the project folder; the first is the one edited."
    )
    prompt: str | None = Field(
        None,
        description="What to change (Jinja-templated); leave out with background: "
        "transparent to remove the background.",
    )


class ImageEditConfig(ImageOutputConfig, _EditSubject):
    """Fields of an ``image_edit`` step."""

    mask: ReferenceValue | None = Field(
        None,
        description="A PNG the size of the first image: fully transparent where to edit.",
    )
    outpaint: AspectRatio | None = Field(
        None, description="Extend the canvas to this aspect ratio (the step builds the mask)."
    )
    input_fidelity: Literal["high", "low"] | None = Field(
        None, description="How closely to keep the references' details (gpt-image-1.5: both)."
    )
    each: bool | None = Field(
        None,
        description="true: one edit per image; false: one edit taking them all. Default: "
        "true for outpaint and background removal, else false.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_moderation(cls, data: object) -> object:
        if isinstance(data, Mapping) and "moderation" in data:
            raise RuleViolation(
                "moderation does not apply to edits (OpenAI's image edits take no "
                "moderation setting)",
                fields=("moderation",),
                hint="remove moderation from this step",
            )
        return data

    @field_validator("prompt", mode="before")
    @classmethod
    def _values_read_as_text(cls, value: object, info: ValidationInfo) -> object:
        return prompt_as_text(value, info)

    @field_validator("mask", mode="before")
    @classmethod
    def _mask_is_one_reference(cls, value: object, info: ValidationInfo) -> object:
        if value is None or deferred(info, "mask"):
            return value
        if isinstance(value, list):
            raise RuleViolation(
                f"mask is one PNG, got a list of {len(value)}",
                fields=("mask",),
                hint="give one mask, e.g. mask: << masks.output.0 >> or mask: masks/sky.png",
            )
        check_images_value(value, "mask")
        check_project_files(value, "mask", static_project_root(info))
        return value

    @property
    def removes_background(self) -> bool:
        """No prompt: the edit removes the background with the built-in instruction."""
        return not (self.prompt and self.prompt.strip())

    @property
    def edits_each(self) -> bool:
        """Whether every image is edited on its own (``each``, or its default)."""
        if self.each is not None:
            return self.each
        return self.outpaint is not None or self.removes_background

    @model_validator(mode="after")
    def _prompt_or_background_removal(self, info: ValidationInfo) -> Self:
        if deferred(info, "prompt", "background"):
            return self
        if self.removes_background and self.background != "transparent":
            raise RuleViolation(
                "prompt is missing: an edit says what to change"
                + (" (prompt is empty)" if self.prompt is not None else ""),
                fields=("prompt", "background"),
                hint="add prompt: <what to change>, or background: transparent (and no "
                "prompt) to remove the background",
            )
        return self

    @model_validator(mode="after")
    def _prompt_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "prompt", "model") and self.prompt is not None:
            rules.check_prompt_length(rules.rules_spec(self.model), len(self.prompt))
        return self

    @model_validator(mode="after")
    def _mask_or_outpaint(self, info: ValidationInfo) -> Self:
        if deferred(info, "mask", "outpaint"):
            return self
        if self.mask is not None and self.outpaint is not None:
            raise RuleViolation(
                f"mask and outpaint are exclusive, got both (outpaint: {self.outpaint}); "
                "outpaint builds its own mask",
                fields=("mask", "outpaint"),
                hint="give mask to repaint an area, or outpaint to extend the canvas",
            )
        return self

    @model_validator(mode="after")
    def _outpaint_sets_the_ratio(self, info: ValidationInfo) -> Self:
        if deferred(info, "outpaint", "size", "aspect_ratio") or self.outpaint is None:
            return self
        other = "size" if self.size is not None else "aspect_ratio"
        value = self.size if self.size is not None else self.aspect_ratio
        if value is not None:
            raise RuleViolation(
                f"outpaint: {self.outpaint} sets the output's aspect ratio, but {other}: "
                f"{value} is given too",
                fields=(other, "outpaint"),
                hint="remove " + other + " (use resolution for a larger image)",
            )
        return self

    @model_validator(mode="after")
    def _mask_fits_model(self, info: ValidationInfo) -> Self:
        for field in ("mask", "outpaint"):
            if getattr(self, field) is not None and not deferred(info, field, "model"):
                rules.check_mask_support(rules.rules_spec(self.model), field)
        return self

    @model_validator(mode="after")
    def _outpaint_ratio_fits_model(self, info: ValidationInfo) -> Self:
        if self.outpaint is not None and not deferred(info, "outpaint", "model", "resolution"):
            rules.check_outpaint_ratio(rules.rules_spec(self.model), self.outpaint, self.resolution)
        return self

    @model_validator(mode="after")
    def _input_fidelity_fits_model(self, info: ValidationInfo) -> Self:
        if not deferred(info, "input_fidelity", "model"):
            rules.check_input_fidelity(rules.rules_spec(self.model), self.input_fidelity)
        return self

    @model_validator(mode="after")
    def _references_fit_model(self, info: ValidationInfo) -> Self:
        if deferred(info, "images", "model", "each", "outpaint", "prompt", "background"):
            return self
        if not self.edits_each:
            rules.check_reference_count(rules.rules_spec(self.model), count_references(self.images))
        return self


def _each_as_written(fields: Mapping[str, object], templated: frozenset[str]) -> bool | None:
    """Whether every image is edited on its own, as the fields say before the run (None: a
    template decides, or a field is invalid and reported on its own)."""
    each = fields.get("each")
    if "each" in templated or not isinstance(each, bool | None):
        return None
    if each is not None:
        return each
    if "outpaint" in templated or "prompt" in templated:
        return None
    prompt = fields.get("prompt")
    if fields.get("outpaint") is not None or prompt is None:
        return True  # outpainting, or removing the background: one result per image
    return not prompt.strip() if isinstance(prompt, str) else None


def _is_template(value: object) -> bool:
    from fetchflow.templating import is_template

    return isinstance(value, str) and is_template(value)


class ImageEditStep(ImageStep[ImageEditConfig]):
    """Edit images with a prompt: refine, compose, inpaint, outpaint, remove backgrounds."""

    approval_fields = ("prompt", "model", "count", "size", "aspect_ratio", "outpaint")

    @classmethod
    def edit_needs(cls, config: ImageOutputConfig) -> rules.EditNeeds:
        """What the edit asks of its model (a mask, an outpaint ratio): ``auto`` picks a
        model that can do it."""
        assert isinstance(config, ImageEditConfig)
        return rules.EditNeeds(mask=config.mask is not None, outpaint=config.outpaint)

    @classmethod
    def estimate(cls, config: BaseModel, settings: Settings) -> CostEstimate | None:
        """``count`` images per edit, priced from the catalog (references not counted).

        With ``each``, a list written out gives the number of edits; a templated one (an
        upstream output) is counted when the step runs, so only a free model has a cost.
        """
        from steps.imaging.models.pricing import estimate_request
        from steps.imaging.settings import image_settings

        assert isinstance(config, ImageEditConfig)
        if config.outpaint is not None:  # the run asks for the outpaint ratio
            config = config.model_copy(update={"aspect_ratio": config.outpaint})
        per_edit = estimate_request(config, image_settings(), edit=cls.edit_needs(config))
        images = config.images
        if not config.edits_each:
            return per_edit
        templated = [item for item in flatten_references(images) if _is_template(item)]
        if templated:  # an upstream output holds any number of images
            cost = 0.0 if per_edit.cost_usd == 0 else None
            return CostEstimate(
                cost, None, f"one edit per image of {templated[0]}: {per_edit.detail}"
            )
        edits = count_references(images)
        cost = None if per_edit.cost_usd is None else per_edit.cost_usd * edits
        images_made = None if per_edit.images is None else per_edit.images * edits
        return CostEstimate(cost, images_made, f"{edits} edit(s) of {per_edit.detail}")

    @classmethod
    def output_length(
        cls, fields: Mapping[str, object], templated: frozenset[str]
    ) -> OutputLength | None:
        """``count`` images per edit: one edit, or with ``each`` one per image written out;
        then the contact sheet with ``contact_sheet: true``; at most that many with
        ``on_moderation: skip``."""
        from steps.imaging.moderation import with_skips
        from steps.imaging.sheets import with_contact_sheet

        per_edit = OutputLength.counted(ImageEditConfig, fields, templated)
        each = _each_as_written(fields, templated)
        if per_edit is None or each is None:
            return None
        if not each:
            return with_skips(with_contact_sheet(per_edit, fields, templated), fields, templated)
        images = fields.get("images")
        if "images" in templated or images is None:
            return None  # an upstream output holds any number of images
        edits = count_references(images)
        made = None if per_edit.items is None else per_edit.items * edits
        most = None if per_edit.at_most is None else per_edit.at_most * edits
        length = OutputLength(made, ("count", "images"), at_most=most)
        return with_skips(with_contact_sheet(length, fields, templated), fields, templated)

    def plan(self, config: ImageEditConfig, spec: ModelSpec, ctx: StepContext) -> ImagePlan:
        """Read the references (and mask), check them against ``spec``: one plan per edit."""
        from steps.imaging.sources.edit_plan import BACKGROUND_REMOVAL_PROMPT, plan_edits
        from steps.imaging.sources.references import project_root_of, resolve_references

        root = project_root_of(ctx)
        references = resolve_references(config.images, ctx=ctx, project_root=root)
        mask = None
        if config.mask is not None:
            mask = resolve_references(config.mask, ctx=ctx, project_root=root)[0]
        groups = plan_edits(
            spec,
            references,
            each=config.edits_each,
            mask=mask,
            outpaint=config.outpaint,
            resolution=config.resolution,
            background_removal=config.removes_background,
            input_fidelity=config.input_fidelity,
        )

        def provenance(made: MadeImage) -> dict[str, str]:
            return groups[made.index // config.count].provenance()

        return ImagePlan(
            prompt=BACKGROUND_REMOVAL_PROMPT if config.removes_background else str(config.prompt),
            # moderation stays auto: edits send none
            options=replace(config.output, aspect_ratio=config.aspect_ratio or config.outpaint),
            edits=tuple(group.inputs for group in groups),
            provenance=provenance,
        )
