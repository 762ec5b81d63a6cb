"""The base of the billable image steps: the run skeleton, written once.

:class:`ImageStep` is what ``image_generation`` and ``image_edit`` share. Its ``run`` is the
same for both: **pick the model** (``auto`` resolved with the keys configured, a missing key
said before anything is read or paid), **plan** (the subclass's :meth:`ImageStep.plan`: the
prompt, and for an edit the references read and checked), **open the provider** (after the
plan, so a refused reference never opens a client), then **make** the images (each stored
as soon as it is verified) and, with ``contact_sheet: true``, their contact sheet
(:mod:`steps.imaging.sheets`; a matrix step draws one for all its combinations in
:meth:`ImageStep.finish_matrix`). The output options travel as one
:class:`~steps.imaging.options.OutputOptions` from the config to the asset record.

``preflight`` reads the image settings (an invalid one is a
:class:`~fetchflow.errors.SettingsInvalid` before the run starts) and checks the key the
step's ``charge_type`` needs; ``estimate`` prices the model the run would pick.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from fetchflow.step import CostEstimate, Step, StepContext
from steps.imaging.assets import ImageAsset
from steps.imaging.options import ImageOutputConfig, OutputOptions

if TYPE_CHECKING:
    from fetchflow.settings import Settings
    from steps.imaging.models.catalog import ModelSpec
    from steps.imaging.models.rules import EditNeeds
    from steps.imaging.production import EditInputs, MadeImage

__all__ = ["ImagePlan", "ImageStep"]

ConfigT = TypeVar("ConfigT", bound=ImageOutputConfig)


@dataclass(frozen=True)
class ImagePlan:
    """What a step asks of the model it runs, once its inputs are read and checked.

    Attributes:
        prompt: The final prompt sent to the provider.
        options: The output options (usually ``config.output``).
        edits: Empty for a generation; one :class:`~steps.imaging.production.EditInputs`
            per separate edit.
        provenance: More provenance for one image (what it was made from), or None.
    """

    prompt: str
    options: OutputOptions
    edits: tuple[EditInputs, ...] = ()
    provenance: Callable[[MadeImage], Mapping[str, str]] | None = None


class ImageStep(Step[ConfigT, list[ImageAsset]]):
    """Base of the steps that pay a provider for images (generation, edit)."""

    billable = True
    produces_files = True

    @classmethod
    def edit_needs(cls, config: ImageOutputConfig) -> EditNeeds | None:
        """What the step needs of its model beyond the output options (``auto`` picks a
        model that can do it); None: nothing more."""
        return None

    @abstractmethod
    def plan(self, config: ConfigT, spec: ModelSpec, ctx: StepContext) -> ImagePlan:
        """Read and check the step's inputs for the model ``spec``; say what to make."""

    @classmethod
    def preflight(cls, raw_config: Mapping[str, object], settings: Settings) -> None:
        """Check the image settings and the key the step's ``charge_type`` needs.

        Fields still holding templates are not known yet; their checks wait for ``run``.

        Raises:
            SettingsInvalid: A ``FETCHFLOW_*`` image setting is invalid.
            StepError: The named model's key is missing for this charge type.
        """
        from steps.imaging.running import preflight_key

        preflight_key(raw_config)

    @classmethod
    def estimate(cls, config: BaseModel, settings: Settings) -> CostEstimate | None:
        """``count`` images of the model that would run, priced from the catalog."""
        from steps.imaging.models.pricing import estimate_request
        from steps.imaging.settings import image_settings

        assert isinstance(config, ImageOutputConfig)
        return estimate_request(config, image_settings(), edit=cls.edit_needs(config))

    def run(self, config: ConfigT, ctx: StepContext) -> list[ImageAsset]:
        """Pick the model, plan, open the provider, make the images and store each one."""
        from steps.imaging.production import plan_job
        from steps.imaging.running import make_images, open_provider, pick_model, plan_fallback
        from steps.imaging.sheets import add_contact_sheet, in_matrix

        spec = pick_model(config, ctx, edit=self.edit_needs(config))
        plan = self.plan(config, spec, ctx)
        provider = open_provider(spec, config, ctx)
        job = plan_job(spec, prompt=plan.prompt, options=plan.options, edits=plan.edits)
        assets = make_images(
            job,
            provider,
            ctx,
            prompt_sha256=hashlib.sha256(plan.prompt.encode()).hexdigest(),
            provenance=plan.provenance,
            fallback=plan_fallback(config, job, ctx),
        )
        if config.contact_sheet and not in_matrix(ctx):  # a matrix draws one for all
            return add_contact_sheet(assets, ctx, charge_type=config.charge_type)
        return assets

    def finish_matrix(
        self, config: ConfigT, output: list[ImageAsset], ctx: StepContext
    ) -> list[ImageAsset]:
        """With ``contact_sheet: true``, append one sheet of every combination's images
        (rows and columns are the matrix's axes)."""
        if not config.contact_sheet:
            return output
        from steps.imaging.sheets import add_contact_sheet

        assets = [ImageAsset.model_validate(asset) for asset in output]
        return add_contact_sheet(assets, ctx, charge_type=config.charge_type)
