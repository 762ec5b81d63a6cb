"""C2PA manifests (Content Credentials), signed with the operator's certificate.

Configured by ``FETCHFLOW_C2PA_CERT`` and ``FETCHFLOW_C2PA_KEY`` (PEM files; algorithm
``FETCHFLOW_C2PA_ALGORITHM``, time-stamp authority ``FETCHFLOW_C2PA_TSA_URL``). The official
``c2pa-python`` SDK (the ``c2pa`` extra) is imported here only, the first time a signer is
loaded: ``fetchflow validate`` and ``--help`` never load it, nor does a run without signing.

:func:`signing_from` reads and proves the pair once per process (it signs a one-pixel image):
a missing file, a key that is not the certificate's, or a certificate C2PA refuses
(self-signed, wrong key usage) is one :class:`~fetchflow.errors.SettingsInvalid` naming the
setting, raised by the image steps' preflight before anything billable runs. The key's
content is never in a message, a log or a record.

The manifest follows the step's :class:`~steps.imaging.provenance.Provenance`: a generation
is ``c2pa.created`` with its digital source type; an edit is ``c2pa.opened`` (the edited
image, ``parentOf``) then ``c2pa.edited`` (the other references, ``componentOf``); a
transform or upscale is ``c2pa.opened`` (its source) then ``c2pa.resized``. Signed
manifests hold a random instance id and signature: signed bytes differ from run to run.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fetchflow import __version__
from fetchflow.errors import SettingsInvalid, StepError, with_hint

if TYPE_CHECKING:
    from steps.imaging.provenance import Provenance
    from steps.imaging.settings import ImageSettings

__all__ = ["Signing", "current_signing", "manifest_for", "signing_from"]

_CERT, _KEY = "FETCHFLOW_C2PA_CERT", "FETCHFLOW_C2PA_KEY"
_lock = threading.Lock()
_loaded: dict[tuple[object, ...], Signing] = {}
#: A 1x1 PNG the pair is proven on.
_PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478"
    "9c63f8cfc000000301010018dd8db00000000049454e44ae426082"
)


@dataclass(frozen=True)
class Signing:
    """A certificate chain and its key, proven to sign.

    Attributes:
        certificate: The PEM chain, the signer's certificate first.
        key: The private key PEM (a secret: out of ``repr``).
        algorithm: ``es256``, ...
        tsa_url: The time-stamp authority, or None.
    """

    certificate: bytes
    key: bytes = field(repr=False)
    algorithm: str
    tsa_url: str | None

    def sign(self, data: bytes, file_type: str, provenance: Provenance) -> bytes:
        """``data`` with a C2PA manifest for ``provenance`` embedded.

        Raises:
            StepError: The SDK refused (not retryable; the reason, never the key).
        """
        try:
            return self._sign(data, file_type, manifest_for(provenance), provenance)
        except Exception as error:  # the SDK's C2paError and its native errors
            raise StepError(
                message=f"cannot sign the image's C2PA manifest: {_reason(error)}",
                hint=f"check {_CERT} and {_KEY}",
                retryable=False,
            ) from None

    def _sign(
        self, data: bytes, file_type: str, manifest: dict[str, Any], provenance: Provenance
    ) -> bytes:
        import c2pa

        info = c2pa.C2paSignerInfo(self.algorithm, self.certificate, self.key, self.tsa_url)
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
            for ingredient in provenance.ingredients:
                builder.add_ingredient(
                    {
                        "title": ingredient.title,
                        "relationship": ingredient.relationship,
                        "label": ingredient.title,
                    },
                    ingredient.mime_type,
                    io.BytesIO(ingredient.data),
                )
            out = io.BytesIO()
            builder.sign(signer, file_type, io.BytesIO(data), out)
            return out.getvalue()


def _reason(error: Exception) -> str:
    """The SDK's words, trimmed, with anything that looks like PEM content removed."""
    text = re.sub(r"-----BEGIN[^-]*-----.*?(-----END[^-]*-----|$)", "[PEM]", str(error), flags=re.S)
    return " ".join(text.split())[:300] or type(error).__name__


def manifest_for(provenance: Provenance) -> dict[str, Any]:
    """The C2PA manifest definition (``c2pa.actions.v2``) of ``provenance``."""
    agent = {"name": provenance.model or provenance.software or "fetchflow"}
    parents = [i.title for i in provenance.ingredients if i.relationship == "parentOf"]
    parts = [i.title for i in provenance.ingredients if i.relationship == "componentOf"]
    actions: list[dict[str, Any]] = []
    if parents:
        actions.append({"action": "c2pa.opened", "parameters": {"ingredientIds": parents}})
    main: dict[str, Any] = {"action": f"c2pa.{provenance.action}", "softwareAgent": agent}
    if provenance.action == "upscaled":
        main = {**main, "action": "c2pa.resized", "description": "upscaled"}
    if provenance.source_type is not None and provenance.action in ("created", "edited"):
        main["digitalSourceType"] = provenance.source_type
    parameters: dict[str, Any] = {}
    if parts:
        parameters["ingredientIds"] = parts
    if provenance.prompt is not None:
        parameters["prompt"] = provenance.prompt  # the step opted in
    if parameters:
        main["parameters"] = parameters
    actions.append(main)
    return {
        "claim_generator_info": [{"name": "fetchflow", "version": __version__}],
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}],
    }


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SettingsInvalid(
            with_hint(
                f"setting {setting}: cannot read {path} ({error.strerror or error})",
                f"point {setting} at a readable PEM file",
            )
        ) from None


def signing_from(settings: ImageSettings) -> Signing | None:
    """The C2PA signing the settings configure (proven once per process), or None.

    Raises:
        SettingsInvalid: Only one of the two files is set, one cannot be read, or the
            pair does not sign (the reason from the SDK; never the key's content).
    """
    cert, key = settings.c2pa_cert, settings.c2pa_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing, given = (_CERT, _KEY) if cert is None else (_KEY, _CERT)
        raise SettingsInvalid(
            with_hint(
                f"setting {missing}: not set, but {given} is (C2PA signing needs both)",
                f"set {missing} too, or unset {given}",
            )
        )
    certificate, secret = _read(_CERT, cert), _read(_KEY, key)
    tsa = settings.c2pa_tsa_url
    memo = (certificate, secret, settings.c2pa_algorithm, tsa)
    with _lock:
        found = _loaded.get(memo)
    if found is not None:
        return found
    signing = Signing(certificate, secret, settings.c2pa_algorithm, tsa)
    try:
        from steps.imaging.provenance import GENERATED, Provenance

        signing._sign(
            _PIXEL,
            "image/png",
            manifest_for(Provenance("created", GENERATED, None)),
            Provenance("created", GENERATED, None),
        )
    except ImportError:
        raise SettingsInvalid(
            with_hint(
                f"setting {_CERT}: C2PA signing needs the c2pa-python package",
                "pip install 'fetchflow[c2pa]'",
            )
        ) from None
    except Exception as error:
        raise SettingsInvalid(
            with_hint(
                f"setting {_CERT}/{_KEY}: {cert} and {key} do not sign a C2PA manifest: "
                f"{_reason(error)}",
                "use a certificate chain issued by a CA (C2PA refuses self-signed ones), "
                "with digitalSignature key usage, and the key that matches it",
            )
        ) from None
    with _lock:
        _loaded[memo] = signing
    return signing


def current_signing() -> Signing | None:
    """:func:`signing_from` the image settings in force, for a step that is running.

    Raises:
        StepError: Not retryable: the settings are invalid (what preflight says of them).
    """
    from steps.imaging.settings import image_settings

    try:
        return signing_from(image_settings())
    except SettingsInvalid as error:
        message, _, hint = str(error).partition("\n  hint: ")
        raise StepError(message=message, hint=hint, retryable=False) from None
