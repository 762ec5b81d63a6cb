"""The image steps' own settings: provider keys and call limits, reference-URL limits.

Read like the engine's (``FETCHFLOW_<NAME>`` in the environment or ``.env``, listed in
``.env.example``), but held here: the engine knows no particular step.
:func:`image_settings` reads them once per process and environment; the image steps'
``preflight`` reads them before a run starts, so an invalid value is one
:class:`~fetchflow.errors.SettingsInvalid` (exit 2) before anything billable runs.
Code that runs steps itself, tests included, can set them with :func:`use_image_settings`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from fetchflow.settings import SettingsModel, read_settings

__all__ = ["ImageSettings", "image_settings", "use_image_settings"]

_MIB = 1024 * 1024


class ImageSettings(SettingsModel):
    """How the image steps call providers and fetch reference images."""

    provider_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="How many calls to one image provider (openai, google) may be in flight "
        "at the same time in this process; further calls wait for a free slot. The offline "
        "preview provider is not limited.",
    )
    provider_attempts: int = Field(
        default=4,
        ge=1,
        le=10,
        description="How many times one image provider call is tried (first try included) "
        "when it fails with a 429, a 5xx, a timeout or a connection error, with exponential "
        "backoff and jitter. Refusals (moderation, quota, auth, bad request) are never retried.",
    )
    provider_max_delay_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="The longest wait between two attempts of an image provider call, in "
        "seconds; a provider that asks (Retry-After) to wait longer is not retried.",
    )

    allow_private_urls: bool = Field(
        default=False,
        description="Whether reference image URLs may point at loopback, private, link-local "
        "(cloud metadata included), multicast or reserved addresses. Off by default so a "
        "workflow cannot make fetchflow read from its own network.",
    )
    max_reference_bytes: int = Field(
        default=50 * _MIB,
        ge=1024,
        le=500 * _MIB,
        description="The largest reference image fetched from a URL, in bytes (1 KiB to "
        "500 MiB); a larger one is refused before or while it is read.",
    )

    hosted_openai_api_key: SecretStr | None = Field(
        default=None,
        description="The operator's OpenAI key, used by image steps with charge_type: hosted "
        "(usage is recorded against the workflow). Never logged or stored.",
    )
    hosted_openai_base_url: str | None = Field(
        default=None,
        description="An OpenAI-compatible endpoint for hosted image calls (default: the "
        "OpenAI SDK's, which also reads OPENAI_BASE_URL).",
    )
    hosted_gemini_api_key: SecretStr | None = Field(
        default=None,
        description="The operator's Gemini API key, used by image steps with charge_type: "
        "hosted (usage is recorded against the workflow). Never logged or stored.",
    )
    hosted_gemini_base_url: str | None = Field(
        default=None,
        description="A Gemini-compatible endpoint for hosted image calls (default: the "
        "google-genai SDK's, which also reads GOOGLE_GEMINI_BASE_URL).",
    )
    hosted_fal_api_key: SecretStr | None = Field(
        default=None,
        description="The operator's fal key, used by image steps on fal models with "
        "charge_type: hosted (usage is recorded against the workflow). Never logged or stored.",
    )

    c2pa_cert: Path | None = Field(
        default=None,
        description="A PEM file with the C2PA signing certificate chain (the signer's "
        "certificate first, then its issuers; not self-signed). With FETCHFLOW_C2PA_KEY, "
        "every stored image carries a signed C2PA manifest.",
    )
    c2pa_key: Path | None = Field(
        default=None,
        description="A PEM file with the private key of FETCHFLOW_C2PA_CERT (PKCS#8). A "
        "secret: its path is named in messages, its content never.",
    )
    c2pa_algorithm: Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"] = (
        Field(default="es256", description="The signing algorithm of FETCHFLOW_C2PA_KEY.")
    )
    c2pa_tsa_url: str | None = Field(
        default=None,
        description="A time-stamp authority (RFC 3161) URL that countersigns each C2PA "
        "manifest (default: none; each image then carries no trusted time).",
    )

    local_model_dir: Path | None = Field(
        default=None,
        description="The folder holding diffusers model folders for model: local/<name> "
        "(each as save_pretrained writes it, with model_index.json); a name not found there "
        "is looked up in the Hugging Face cache. Nothing is downloaded during a run.",
    )
    local_device: Literal["auto", "cuda", "mps", "cpu"] = Field(
        default="auto",
        description="Where local/<name> models run: cuda, mps, cpu, or auto (cuda, then mps, "
        "then cpu).",
    )


_lock = threading.Lock()
_chosen: ImageSettings | None = None
_read: dict[tuple[object, ...], ImageSettings] = {}


def _environment() -> tuple[object, ...]:
    """What the settings are read from: the ``FETCHFLOW_*`` variables and the folder whose
    ``.env`` is read (the working folder)."""
    variables = sorted((k, v) for k, v in os.environ.items() if k.startswith("FETCHFLOW_"))
    return (Path.cwd(), *variables)


def image_settings() -> ImageSettings:
    """The image settings in force: those given to :func:`use_image_settings`, else read
    from the environment and ``.env`` (once per process for one environment).

    Raises:
        SettingsInvalid: A ``FETCHFLOW_*`` image setting is invalid (each bad one named).
    """
    with _lock:
        if _chosen is not None:
            return _chosen
        key = _environment()
        found = _read.get(key)
    if found is None:
        found = read_settings(ImageSettings)
        with _lock:
            _read[key] = found
    return found


def use_image_settings(settings: ImageSettings | None) -> ImageSettings | None:
    """Make ``settings`` the image settings of this process (None: read the environment again).

    For code that runs steps itself and passes the engine's ``Settings`` in code too.

    Returns:
        The settings given before, to put back.
    """
    global _chosen
    with _lock:
        before, _chosen = _chosen, settings
    return before
