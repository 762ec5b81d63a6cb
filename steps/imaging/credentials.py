"""Whose key pays: ``charge_type`` resolved to one provider key, and ``model: auto`` chosen.

- ``personal``: the user's own key: a Prefect Secret block named by ``api_key_secret``, or
  the SDK's own variables (``OPENAI_API_KEY``; ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``,
  GOOGLE first as google-genai does). Base URLs: ``OPENAI_BASE_URL``,
  ``GOOGLE_GEMINI_BASE_URL``.
- ``hosted``: the operator's keys from fetchflow settings
  (``FETCHFLOW_HOSTED_OPENAI_API_KEY``, ...), usage recorded against the workflow.

A missing key is a :class:`~fetchflow.errors.StepError`; one charge type never falls back to
the other. Keys never appear in messages: only where a key was looked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fetchflow.errors import StepError
from steps.imaging.catalog import AUTO, AUTO_CANDIDATES, CATALOG, PREVIEW, ModelSpec
from steps.imaging.rules import EditNeeds, lookup_model, unsupported

if TYPE_CHECKING:
    from fetchflow.settings import Settings
    from steps.imaging.estimate import ImageOptions

__all__ = ["Credential", "choose_for", "choose_model", "key_sources", "resolve_credential"]

#: The SDKs' own key variables, in the order the SDK prefers them.
ENV_KEYS: Mapping[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
}
#: The SDKs' own base-URL variables.
ENV_BASE_URLS: Mapping[str, str] = {
    "openai": "OPENAI_BASE_URL",
    "google": "GOOGLE_GEMINI_BASE_URL",
}
_HOSTED_FIELDS = {"openai": "hosted_openai", "google": "hosted_gemini"}


@dataclass(frozen=True)
class Credential:
    """A key to call one provider with.

    Attributes:
        provider: ``openai`` or ``google``.
        api_key: The key (never printed: excluded from repr).
        base_url: An endpoint other than the provider's default, or None.
        source: Where the key came from, for messages (``OPENAI_API_KEY``, ...).
    """

    provider: str
    api_key: str = field(repr=False)
    base_url: str | None
    source: str


def _hosted(settings: Settings, provider: str) -> tuple[str | None, str | None]:
    prefix = _HOSTED_FIELDS[provider]
    key = getattr(settings, f"{prefix}_api_key", None)
    base_url = getattr(settings, f"{prefix}_base_url", None)
    return (key.get_secret_value() if key is not None else None), base_url


def key_sources(
    provider: str,
    charge_type: str,
    settings: Settings,
    environ: Mapping[str, str],
    secret_name: str | None,
) -> str | None:
    """Where a key for ``provider`` would come from, without reading any secret; or None."""
    if charge_type == "hosted":
        key, _ = _hosted(settings, provider)
        return f"FETCHFLOW_{_HOSTED_FIELDS[provider].upper()}_API_KEY" if key else None
    if secret_name:
        return f'Secret block "{secret_name}"'
    return next((name for name in ENV_KEYS[provider] if environ.get(name)), None)


def missing_key(spec: ModelSpec, charge_type: str) -> StepError:
    """The error for a model whose provider has no key for this charge type."""
    if charge_type == "hosted":
        variable = f"FETCHFLOW_{_HOSTED_FIELDS[spec.provider].upper()}_API_KEY"
        return StepError(
            message=f"charge_type: hosted needs the operator's {spec.provider} key for model "
            f"{spec.name}, and {variable} is not set",
            hint=f"set {variable} in the environment or .env, or use charge_type: personal "
            "with your own key",
            retryable=False,
        )
    variables = " or ".join(ENV_KEYS[spec.provider])
    return StepError(
        message=f"charge_type: personal needs your {spec.provider} key for model {spec.name}, "
        f"and {variables} is not set",
        hint=f"export {ENV_KEYS[spec.provider][0]}=..., name a Prefect Secret block with "
        "api_key_secret:, or use charge_type: hosted if the operator provides keys",
        retryable=False,
    )


def resolve_credential(
    spec: ModelSpec,
    charge_type: str,
    settings: Settings,
    environ: Mapping[str, str],
    *,
    secret_name: str | None = None,
    read_secret: Callable[[str], str] | None = None,
) -> Credential:
    """The key to call ``spec``'s provider with.

    Raises:
        StepError: No key for this charge type (never borrowed from the other one).
    """
    if charge_type == "hosted":
        key, base_url = _hosted(settings, spec.provider)
        if not key:
            raise missing_key(spec, charge_type)
        return Credential(
            spec.provider,
            key,
            base_url,
            key_sources(spec.provider, charge_type, settings, environ, None) or "",
        )
    base = environ.get(ENV_BASE_URLS[spec.provider]) or None
    if secret_name:
        if read_secret is None:
            raise StepError(
                message=f'cannot read the Secret block "{secret_name}" named by api_key_secret',
                hint="run the workflow with fetchflow run (secrets are Prefect Secret blocks)",
                retryable=False,
            )
        return Credential(
            spec.provider, read_secret(secret_name), base, f'Secret block "{secret_name}"'
        )
    for name in ENV_KEYS[spec.provider]:
        if environ.get(name):
            return Credential(spec.provider, environ[name], base, name)
    raise missing_key(spec, charge_type)


def choose_model(
    model: str,
    *,
    charge_type: str,
    size: str,
    quality: str,
    background: str,
    settings: Settings,
    environ: Mapping[str, str],
    secret_name: str | None = None,
    resolution: str | None = None,
    edit: EditNeeds | None = None,
) -> ModelSpec:
    """The model to run: ``model`` itself, or what ``auto`` picks.

    ``edit`` is what an edit needs of its model (a mask, an outpaint ratio at
    ``resolution``): ``auto`` then only picks a model that can do it, by the rule the run
    refuses a named model with (:func:`~steps.imaging.rules.check_edit_needs`).

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
        if spec.provider != "preview" and not key_sources(
            spec.provider, charge_type, settings, environ, secret_name
        ):
            raise missing_key(spec, charge_type)
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
    options: ImageOptions, settings: Settings, *, edit: EditNeeds | None = None
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
    )
