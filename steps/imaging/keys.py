"""Whose key pays: ``charge_type`` resolved to one provider key, without ever showing it.

- ``personal``: the user's own key: a Prefect Secret block named by ``api_key_secret``, or
  the SDK's own variables (``OPENAI_API_KEY``; ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``,
  GOOGLE first as google-genai does). Base URLs: ``OPENAI_BASE_URL``,
  ``GOOGLE_GEMINI_BASE_URL``; ``FAL_KEY`` for fal (whose SDK reads its hosts itself).
- ``hosted``: the operator's keys from the image settings
  (``FETCHFLOW_HOSTED_OPENAI_API_KEY``, ...), usage recorded against the workflow.

A missing key is a :class:`~fetchflow.errors.StepError`; one charge type never falls back to
the other. Keys never appear in messages: only where a key was looked for. Which model runs
is :mod:`steps.imaging.models.choice`'s business; it asks here which providers have a key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fetchflow.errors import StepError

if TYPE_CHECKING:
    from steps.imaging.settings import ImageSettings

__all__ = ["ENV_BASE_URLS", "ENV_KEYS", "Credential", "key_sources", "missing_key", "resolve"]

#: The SDKs' own key variables, in the order the SDK prefers them.
ENV_KEYS: Mapping[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "fal": ("FAL_KEY",),
}
#: The SDKs' own base-URL variables.
ENV_BASE_URLS: Mapping[str, str] = {
    "openai": "OPENAI_BASE_URL",
    "google": "GOOGLE_GEMINI_BASE_URL",
}
_HOSTED_FIELDS = {"openai": "hosted_openai", "google": "hosted_gemini", "fal": "hosted_fal"}


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


def _header_safe(key: str, source: str) -> str:
    """``key`` (stripped) when an HTTP header can carry it: visible ASCII and inner spaces.

    Raises:
        StepError: A line break, control character or non-ASCII letter inside the key (the
            SDK would fail on it after sending nothing, and echo the key in its message).
    """
    for position, char in enumerate(key, 1):
        if char != " " and not "!" <= char <= "~":
            raise StepError(
                message=f"{source} holds a character no HTTP header can carry (character "
                f"{position} of the key: a line break, a control character or a non-ASCII "
                "letter)",
                hint=f"set {source} to the key alone, as the provider shows it",
                retryable=False,
            )
    return key


def _env_key(environ: Mapping[str, str], name: str) -> str | None:
    """The key in variable ``name`` without the whitespace around it (a pasted key's line
    break or spaces, which no HTTP header may carry); None when empty or only whitespace.

    Raises:
        StepError: The key holds a character no HTTP header can carry.
    """
    key = environ.get(name, "").strip()
    return _header_safe(key, name) if key else None


def _hosted_variable(provider: str) -> str:
    return f"FETCHFLOW_{_HOSTED_FIELDS[provider].upper()}_API_KEY"


def _hosted(settings: ImageSettings, provider: str) -> tuple[str | None, str | None]:
    prefix = _HOSTED_FIELDS[provider]
    key = getattr(settings, f"{prefix}_api_key", None)
    base_url = getattr(settings, f"{prefix}_base_url", None)
    secret = key.get_secret_value().strip() if key is not None else ""
    return (_header_safe(secret, _hosted_variable(provider)) if secret else None), base_url


def key_sources(
    provider: str,
    charge_type: str,
    settings: ImageSettings,
    environ: Mapping[str, str],
    secret_name: str | None,
) -> str | None:
    """Where a key for ``provider`` would come from, without reading any secret; or None."""
    if charge_type == "hosted":
        key, _ = _hosted(settings, provider)
        return _hosted_variable(provider) if key else None
    if secret_name:
        return f'Secret block "{secret_name}"'
    return next((name for name in ENV_KEYS[provider] if _env_key(environ, name)), None)


def missing_key(provider: str, model: str, charge_type: str) -> StepError:
    """The error for ``model``, whose ``provider`` has no key for this charge type."""
    if charge_type == "hosted":
        variable = _hosted_variable(provider)
        return StepError(
            message=f"charge_type: hosted needs the operator's {provider} key for model "
            f"{model}, and {variable} is not set",
            hint=f"set {variable} in the environment or .env, or use charge_type: personal "
            "with your own key",
            retryable=False,
        )
    variables = " or ".join(ENV_KEYS[provider])
    return StepError(
        message=f"charge_type: personal needs your {provider} key for model {model}, "
        f"and {variables} is not set",
        hint=f"export {ENV_KEYS[provider][0]}=..., name a Prefect Secret block with "
        "api_key_secret:, or use charge_type: hosted if the operator provides keys",
        retryable=False,
    )


def resolve(
    provider: str,
    model: str,
    charge_type: str,
    settings: ImageSettings,
    environ: Mapping[str, str],
    *,
    secret_name: str | None = None,
    read_secret: Callable[[str], str] | None = None,
) -> Credential:
    """The key to call ``provider`` with for ``model``.

    Raises:
        StepError: No key for this charge type (never borrowed from the other one).
    """
    if charge_type == "hosted":
        key, base_url = _hosted(settings, provider)
        if not key:
            raise missing_key(provider, model, charge_type)
        return Credential(provider, key, base_url, _hosted_variable(provider))
    # fal's SDK takes no base URL: its hosts come from FAL_RUN_HOST at import
    variable = ENV_BASE_URLS.get(provider)
    base = (environ.get(variable) if variable else None) or None
    if secret_name:
        if read_secret is None:
            raise StepError(
                message=f'cannot read the Secret block "{secret_name}" named by api_key_secret',
                hint="run the workflow with fetchflow run (secrets are Prefect Secret blocks)",
                retryable=False,
            )
        secret = _header_safe(read_secret(secret_name).strip(), f'Secret block "{secret_name}"')
        return Credential(provider, secret, base, f'Secret block "{secret_name}"')
    for name in ENV_KEYS[provider]:
        if key := _env_key(environ, name):
            return Credential(provider, key, base, name)
    raise missing_key(provider, model, charge_type)
