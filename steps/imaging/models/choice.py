"""Which model a step runs: the one it names, or what ``model: auto`` picks.

``auto`` takes the first of :data:`~steps.imaging.models.catalog.AUTO_CANDIDATES` whose
provider has a key for the step's charge type (:mod:`steps.imaging.keys` says where keys
are, without reading one) and that can make the request; with no key at all it is the
offline preview. A named model whose key is missing is an error here, before any call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from fetchflow.errors import StepError
from steps.imaging.keys import key_sources, missing_key
from steps.imaging.models.catalog import AUTO, AUTO_CANDIDATES, CATALOG, PREVIEW, ModelSpec
from steps.imaging.models.rules import EditNeeds, Tuning, lookup_model, unsupported

if TYPE_CHECKING:
    from steps.imaging.settings import ImageSettings

__all__ = ["ImageOptions", "choose_for", "choose_model"]


class ImageOptions(Protocol):
    """The fields of an image step's config an estimate reads."""

    @property
    def model(self) -> str: ...

    @property
    def charge_type(self) -> str: ...

    @property
    def size(self) -> str | None: ...

    @property
    def aspect_ratio(self) -> str | None: ...

    @property
    def resolution(self) -> str | None: ...

    @property
    def quality(self) -> str: ...

    @property
    def background(self) -> str: ...

    @property
    def count(self) -> int: ...

    @property
    def api_key_secret(self) -> str | None: ...

    @property
    def tuning(self) -> Tuning: ...


def choose_model(
    model: str,
    *,
    charge_type: str,
    size: str,
    quality: str,
    background: str,
    settings: ImageSettings,
    environ: Mapping[str, str],
    secret_name: str | None = None,
    resolution: str | None = None,
    edit: EditNeeds | None = None,
    tuning: Tuning | None = None,
) -> ModelSpec:
    """The model to run: ``model`` itself, or what ``auto`` picks.

    ``edit`` is what an edit needs of its model (a mask, an outpaint ratio at
    ``resolution``): ``auto`` then only picks a model that can do it, by the rule the run
    refuses a named model with (:func:`~steps.imaging.models.rules.check_edit_needs`);
    likewise ``tuning`` (``steps``, ``guidance``, ...): only a model that takes them.

    ``auto`` takes the first of :data:`AUTO_CANDIDATES` whose provider has a key for the
    charge type and that can make the request; with no key at all it is the preview
    provider. With keys but no candidate able to serve the request it is an error, not the
    preview: a silent switch to drawings would hide the problem.

    Raises:
        StepError: A named model's key is missing, or ``auto`` finds keys but no model
            that can serve the request.
    """
    spec = lookup_model(model) if model != AUTO else None
    if spec is not None:
        if spec.provider not in ("preview", "local") and not key_sources(
            spec.provider, charge_type, settings, environ, secret_name
        ):
            raise missing_key(spec.provider, spec.name, charge_type)
        return spec
    reasons: list[str] = []
    for name in AUTO_CANDIDATES:
        candidate = CATALOG[name]
        if not key_sources(candidate.provider, charge_type, settings, environ, secret_name):
            continue
        why = unsupported(
            candidate,
            size=size,
            quality=quality,
            background=background,
            resolution=resolution,
            edit=edit,
            tuning=tuning,
        )
        if why is None:
            return candidate
        reasons.append(f"{name}: {why}")
    if not reasons:
        return CATALOG[PREVIEW]
    raise StepError(
        message="model: auto found image provider keys but no model that can serve this "
        "step: " + "; ".join(reasons),
        hint="name a model that supports these settings, or change them",
        retryable=False,
    )


def choose_for(
    options: ImageOptions, settings: ImageSettings, *, edit: EditNeeds | None = None
) -> ModelSpec:
    """:func:`choose_model` for a step's options (model, charge type, size, quality, ...).

    ``edit``: what an edit needs of its model (a mask, an outpaint ratio), or None.

    Raises:
        StepError: As :func:`choose_model`.
    """
    return choose_model(
        options.model,
        charge_type=options.charge_type,
        size=options.size or AUTO,
        quality=options.quality,
        background=options.background,
        settings=settings,
        environ=os.environ,
        secret_name=options.api_key_secret,
        resolution=options.resolution,
        edit=edit,
        tuning=options.tuning,
    )
