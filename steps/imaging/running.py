"""What every billable image step does at run time, once its job is planned.

:func:`pick_model` chooses the model and key (``auto`` resolved, the preview notice said
once per run), :func:`open_provider` makes its client with a timeout bounded by the step's,
and :func:`make_images` runs :func:`~steps.imaging.production.produce` with the image
settings' retry policy and provider gate, storing each verified image as an
:class:`~steps.imaging.assets.ImageAsset` as soon as it arrives, and logging hosted usage
(also for the images a failed step kept).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from steps.imaging.assets import ImageAsset, record_hosted_usage, store_image
from steps.imaging.models.catalog import AUTO, PREVIEW, ModelSpec

if TYPE_CHECKING:
    from fetchflow.step import StepContext
    from steps.imaging.blocked_calls import BlockedCalls, Fallback
    from steps.imaging.models.rules import EditNeeds, Tuning
    from steps.imaging.options import ImageOutputConfig
    from steps.imaging.production import ImageJob, MadeImage
    from steps.imaging.providers.base import ImageProvider, PartialImage
    from steps.imaging.settings import ImageSettings

__all__ = [
    "PREVIEW_NOTICE",
    "PROVIDER_TIMEOUT_SECONDS",
    "make_images",
    "open_provider",
    "pick_model",
    "preflight_key",
]

#: Seconds before the first retry of a failed provider call (doubled for each further one).
_FIRST_RETRY_SECONDS = 1.0

#: How long one provider call may take (less when the step's timeout_seconds is shorter).
PROVIDER_TIMEOUT_SECONDS = 120.0

PREVIEW_NOTICE = (
    "no image provider configured: using the offline preview provider (images are marked PREVIEW)"
)

_announced: set[str] = set()
_announced_lock = threading.Lock()


def _image_settings() -> ImageSettings:
    """The image settings, read once; pydantic-settings is imported only when a step runs
    (``fetchflow validate`` never needs it)."""
    from steps.imaging.settings import image_settings

    return image_settings()


def _announce_preview_once(ctx: StepContext) -> None:
    with _announced_lock:
        if ctx.run_id in _announced:
            return
        _announced.add(ctx.run_id)
    ctx.logger.warning(PREVIEW_NOTICE)


def preflight_key(raw_config: Mapping[str, object] | ImageOutputConfig) -> None:
    """Check the image settings, and that the key the step's ``charge_type`` needs is there.

    Then import the SDK of the model the step would run (``auto`` resolved with today's
    keys): the import is paid before the run starts, not inside its first step. Fields
    still holding templates are not known yet; their checks wait for ``run``.

    Raises:
        SettingsInvalid: A ``FETCHFLOW_*`` image setting is invalid, or the C2PA
            certificate and key configured do not sign.
        StepError: The named model's key is missing for this charge type.
    """
    from fetchflow.errors import StepError
    from fetchflow.step import StepConfig
    from fetchflow.templating import is_template
    from steps.imaging.models.choice import choose_model

    settings = _image_settings()  # an invalid image setting is said before anything runs
    _check_signing(settings)
    raw = raw_config.model_dump() if isinstance(raw_config, StepConfig) else raw_config
    fields = ("model", "charge_type", "api_key_secret")
    if any(isinstance(raw.get(name), str) and is_template(str(raw[name])) for name in fields):
        return
    model, charge_type = str(raw.get("model", AUTO)), str(raw.get("charge_type", "personal"))
    secret = raw.get("api_key_secret")
    _preflight_fallback(raw.get("on_moderation"), model, charge_type, secret, settings)

    def choose(tuning: Tuning | None = None) -> ModelSpec:
        return choose_model(
            model,
            charge_type=charge_type,
            size="auto",
            quality="auto",
            background="auto",
            settings=settings,
            environ=os.environ,
            secret_name=secret if isinstance(secret, str) else None,
            tuning=tuning,
        )

    if model != AUTO:
        _import_sdk_of(choose())
        return
    # auto never fails for want of a key (it falls back to preview), nor here for a
    # request it cannot serve (the run says so with the step's real fields)...
    try:
        spec = choose()
    except StepError:
        return
    tuning = _written_tuning(raw)
    if tuning is not None:
        # ...except for open-weight options written as literals that no model with a key
        # takes (guidance: 25 with an OpenAI and a fal key): said now, not mid-run.
        spec = choose(tuning)
    _import_sdk_of(spec)


def _written_tuning(raw: Mapping[str, object]) -> Tuning | None:
    """The open-weight options as the step writes them; None when none is set or one is a
    template (known only when the step runs) or not of its type (reported statically)."""
    from fetchflow.templating import is_template
    from steps.imaging.models.rules import TUNING_FIELDS, Tuning

    given = {name: raw[name] for name in TUNING_FIELDS if raw.get(name) is not None}
    if not given or any(isinstance(v, str) and is_template(v) for v in given.values()):
        return None

    def number(name: str) -> float | None:
        value = given.get(name)
        return None if value is None else float(str(value))

    try:
        steps, guidance, strength = number("steps"), number("guidance"), number("strength")
    except ValueError:
        return None
    if steps is not None and not steps.is_integer():
        return None
    negative, checker = given.get("negative_prompt"), given.get("safety_checker")
    if not isinstance(negative, str | None) or not isinstance(checker, bool | None):
        return None
    return Tuning(None if steps is None else int(steps), guidance, negative, strength, checker)


def _preflight_fallback(
    policy: object, model: str, charge_type: str, secret: object, settings: ImageSettings
) -> None:
    """The key of ``on_moderation``'s ``fallback_model``, checked before the run (not when a
    block calls for it). Its own provider's key: the step's ``api_key_secret`` only when
    both models are of the same provider.

    Raises:
        StepError: The fallback model's key is missing for this charge type.
    """
    from dataclasses import replace

    from fetchflow.errors import StepError
    from fetchflow.templating import is_template
    from steps.imaging.models.catalog import CATALOG
    from steps.imaging.models.choice import choose_model

    name = policy.get("fallback_model") if isinstance(policy, Mapping) else None
    if not isinstance(name, str) or is_template(name) or name not in CATALOG:
        return  # none, or a bad one the static check reports
    own = CATALOG.get(model)
    same = own is not None and own.provider == CATALOG[name].provider
    try:
        spec = choose_model(
            name,
            charge_type=charge_type,
            size="auto",
            quality="auto",
            background="auto",
            settings=settings,
            environ=os.environ,
            secret_name=secret if same and isinstance(secret, str) else None,
        )
    except StepError as error:
        raise replace(
            error,
            message=f"on_moderation: fallback_model {name}: {error.message}",
            hint=f"{error.hint}; or choose another fallback_model",
        ) from error
    _import_sdk_of(spec)


def plan_fallback(config: ImageOutputConfig, job: ImageJob, ctx: StepContext) -> Fallback | None:
    """``on_moderation``'s fallback model planned for ``job`` (its provider opened only when a
    block calls for it), or None without one."""
    from steps.imaging.blocked_calls import Fallback
    from steps.imaging.models.catalog import CATALOG
    from steps.imaging.moderation import FallbackOnModeration
    from steps.imaging.production import plan_job

    policy = config.on_moderation
    if not isinstance(policy, FallbackOnModeration):
        return None
    spec = CATALOG[policy.fallback_model]
    planned = plan_job(spec, prompt=job.prompt, options=job.options, edits=job.edits)
    own_secret = spec.provider == job.spec.provider
    keyed = config if own_secret else config.model_copy(update={"api_key_secret": None})
    return Fallback(planned, lambda: open_provider(spec, keyed, ctx))


def _check_signing(settings: ImageSettings) -> None:
    """Prove the C2PA certificate and key, when configured, before the run (not at its
    first image, after paying for it)."""
    from steps.imaging.signing import signing_from

    signing_from(settings)


def _import_sdk_of(spec: ModelSpec) -> None:
    """Import the SDK ``spec``'s provider calls with, before the run (not in its first step).

    A local model's folder and libraries are checked here too: missing, they are an error
    before the run.
    """
    if spec.provider == "local":
        from steps.imaging.providers.local_diffusers import preflight_local

        settings = _image_settings()
        preflight_local(spec.name, settings.local_model_dir, settings.local_device)
        return
    from steps.imaging.providers.clients import import_sdk

    import_sdk(spec.provider)


def pick_model(
    config: ImageOutputConfig, ctx: StepContext, *, edit: EditNeeds | None = None
) -> ModelSpec:
    """The model the step runs: ``config.model``, or what ``auto`` picks with today's keys.

    ``edit``: what an edit needs of its model (a mask, an outpaint ratio), which ``auto``
    takes into account.

    Raises:
        StepError: The named model's key is missing, or ``auto`` finds keys but no model
            that serves the request.
    """
    from steps.imaging.models.choice import choose_for

    spec = choose_for(config, _image_settings(), edit=edit)
    if spec.name == PREVIEW and config.model == AUTO:
        _announce_preview_once(ctx)
    if config.seed is not None and not spec.seed:
        ctx.logger.info("model %s takes no seed: seed %s is not used", spec.name, config.seed)
    if config.partial_images and not spec.partial_images:
        ctx.logger.info(
            "model %s streams no partial images: partial_images %s is not used (progress only)",
            spec.name,
            config.partial_images,
        )
    return spec


def open_provider(spec: ModelSpec, config: ImageOutputConfig, ctx: StepContext) -> ImageProvider:
    """The provider client for ``spec``, with the key ``config.charge_type`` names."""
    from steps.imaging.keys import resolve
    from steps.imaging.providers import make_provider

    if spec.provider in ("preview", "local"):  # no key: nothing is billed
        return make_provider(spec.provider)
    credential = resolve(
        spec.provider,
        spec.name,
        config.charge_type,
        _image_settings(),
        os.environ,
        secret_name=config.api_key_secret,
        read_secret=ctx.secret,
    )
    return make_provider(
        spec.provider,
        credential.api_key,
        credential.base_url,
        # A blocked socket read cannot be interrupted: never wait past the step's own
        # timeout.
        timeout=min(PROVIDER_TIMEOUT_SECONDS, ctx.timeout_seconds or math.inf),
        key_source=credential.source,
    )


def make_images(
    job: ImageJob,
    provider: ImageProvider,
    ctx: StepContext,
    *,
    prompt_sha256: str,
    provenance: Callable[[MadeImage], Mapping[str, str]] | None = None,
    fallback: Fallback | None = None,
) -> list[ImageAsset]:
    """Make every image of ``job`` and store each one as soon as it is verified.

    Args:
        job: What to make.
        provider: Who makes it (closed when done).
        ctx: The step's context: store, logger, progress.
        prompt_sha256: SHA-256 of the final prompt, in each record.
        provenance: More provenance for one image (what it was made from), or None.
        fallback: ``on_moderation``'s fallback model (:func:`plan_fallback`), or None.

    Raises:
        ProviderError, StepError, StorageError: As :func:`~.production.produce` raises.
        PartialImages: Some images were made and stored before a later failure.
    """
    from steps.imaging.blocked_calls import BlockedCalls
    from steps.imaging.partial import KeptImage, PartialImages
    from steps.imaging.production import produce
    from steps.imaging.provenance import of_made_image
    from steps.imaging.providers.retrying import ProviderGate, RetryPolicy

    earlier = _kept_before(ctx, job, prompt_sha256)
    assets: list[ImageAsset] = []

    def keep(made: MadeImage) -> KeptImage:
        asset = store_image(
            ctx,
            made,
            provider=_provider_of(made, job, fallback),
            prompt_sha256=prompt_sha256,
            options=job.options,
            origin=of_made_image(job, made),
            extra_provenance=_with_verdict(made, provenance(made) if provenance else None),
        )
        assets.append(asset)
        # The JSON record is what the step outputs for this image; a later failure hands
        # these on (PartialImages.kept), and the run's checkpoint has it at once (a killed
        # process loses nothing paid for).
        record = asset.model_dump(mode="json")
        ctx.keep(record)
        if ctx.progress is not None:
            ctx.progress.advance()
        return KeptImage(asset.storage_uri, record)

    settings = _image_settings()
    hosted = job.options.charge_type == "hosted"
    retry = RetryPolicy(
        attempts=settings.provider_attempts,
        base_delay=min(_FIRST_RETRY_SECONDS, settings.provider_max_delay_seconds),
        max_delay=settings.provider_max_delay_seconds,
    )
    gate = ProviderGate(job.spec.provider, settings.provider_concurrency, ctx.logger)
    if ctx.progress is not None:
        ctx.progress.start(job.total)
    blocked = BlockedCalls(job.options.on_moderation, job, fallback=fallback, logger=ctx.logger)
    try:
        produce(
            job,
            provider,
            keep,
            retry=retry,
            gate=gate,
            logger=ctx.logger,
            earlier=[KeptImage(asset.storage_uri, record) for asset, record in earlier],
            on_partial=_show_partials(ctx, job),
            moderation=blocked,
        )
    except PartialImages:
        if hosted:
            record_hosted_usage(ctx, assets, blocked.blocks)  # the kept images were paid for
        raise
    finally:
        provider.close()
        if fallback is not None:
            fallback.close()
        if not hosted:
            _log_blocked(ctx, blocked)
    if hosted:
        record_hosted_usage(ctx, assets, blocked.blocks)
    return sorted([asset for asset, _ in earlier] + assets, key=lambda asset: asset.index)


def _show_partials(ctx: StepContext, job: ImageJob) -> Callable[[int, PartialImage], None] | None:
    """What shows each partial image in the step's progress as it arrives (never stored: a
    partial image is a draft, not an output), or None when there is nothing to show."""
    from fetchflow.step import Previews

    progress = ctx.progress
    if not isinstance(progress, Previews):
        return None
    if not (job.options.partial_images and job.spec.partial_images):
        return None

    def show(index: int, partial: PartialImage) -> None:
        progress.preview(
            index, f"partial {partial.number} of {job.options.partial_images}", partial.data
        )

    return show


def _provider_of(made: MadeImage, job: ImageJob, fallback: Fallback | None) -> str:
    """The provider that made ``made``: the fallback model's for an image it made."""
    moderation = made.moderation
    if fallback is not None and moderation is not None and moderation.outcome == "fallback":
        return fallback.job.spec.provider
    return job.spec.provider


def _log_blocked(ctx: StepContext, blocked: BlockedCalls) -> None:
    """The step's blocked calls in its usage: each one is a request made; one blocked at the
    output stage may have been billed (the image was made, then withheld)."""
    if blocked.blocks:
        ctx.logger.info(
            "moderation usage: step=%s blocked_calls=%d output_stage_possibly_billed=%d",
            ctx.step_id,
            len(blocked.blocks),
            sum(block.billed for block in blocked.blocks),
        )


def _kept_before(
    ctx: StepContext, job: ImageJob, prompt_sha256: str
) -> list[tuple[ImageAsset, dict[str, object]]]:
    """The images of this very job an interrupted run made and kept (``ctx.kept``, given on
    ``--resume``): same provider, prompt and seed, an index the job asks for; or the same
    prompt, made on a moderation retry or by the fallback model."""
    from pydantic import ValidationError

    found: list[tuple[ImageAsset, dict[str, object]]] = []
    for record in ctx.kept if isinstance(ctx.kept, list) else []:
        try:
            asset = ImageAsset.model_validate(record)
        except ValidationError:
            continue
        seed = None if job.seed is None else job.seed + asset.index
        planned = (asset.provider, asset.prompt_sha256, asset.seed) == (
            job.spec.provider,
            prompt_sha256,
            seed,
        )
        # made on a retry (another seed) or by the fallback model (on_moderation)
        remade = asset.moderation.outcome != "made" and asset.prompt_sha256 == prompt_sha256
        if (planned or remade) and asset.index < job.total:
            found.append((asset, record))
    return found


def _with_verdict(made: MadeImage, extra: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """``extra`` plus the provider's safety checker verdict (``nsfw``), when it gave one."""
    if made.nsfw is None:
        return extra
    return {**(extra or {}), "nsfw": str(made.nsfw).lower()}
