"""Reading back what an image says of its making, with readers fetchflow did not write.

:func:`exiftool_tags` runs Debian's ``exiftool`` (``libimage-exiftool-perl``, installed by
``scripts/ci-system-deps``); :func:`same_picture` checks a stored image is the provider's
picture, not re-encoded (Pillow decodes both), with our provenance in place of its
metadata.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image

__all__ = [
    "COMPOSITE",
    "GENERATED",
    "exiftool_tags",
    "metadata_of",
    "same_picture",
    "signing_chain",
]

GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


def exiftool_tags(*files: Path | bytes) -> list[dict[str, object]]:
    """Every metadata tag exiftool reads in each file, as ``{"Group1:Tag": value}``."""
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.fail("exiftool is missing: run scripts/ci-system-deps (libimage-exiftool-perl)")
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for number, item in enumerate(files):
            if isinstance(item, bytes):
                path = Path(folder) / f"image-{number}"
                path.write_bytes(item)
                item = path
            paths.append(str(item))
        done = subprocess.run(
            [exiftool, "-json", "-a", "-G1", "-s", "-All", "-warning", "-validate", *paths],
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    found: list[dict[str, object]] = json.loads(done.stdout)
    return found


#: What exiftool says of any file's structure (not metadata a writer chose).
_STRUCTURE = {"SourceFile", "ExifTool", "System", "Composite", "RIFF", "JFIF"}
_PNG_HEADER = {"ImageWidth", "ImageHeight", "BitDepth", "ColorType", "Compression", "Filter"}


def metadata_of(tags: dict[str, object]) -> dict[str, object]:
    """The tags a writer chose (XMP, EXIF, GPS, IPTC, text chunks, comments), without what
    exiftool says of the file's structure (size, format, JFIF header...)."""
    return {
        key: value
        for key, value in tags.items()
        if key.split(":")[0] not in _STRUCTURE
        and not (key.startswith("File:") and key != "File:Comment")
        and not (key.startswith("PNG:") and key[4:] in _PNG_HEADER | {"Interlace"})
    }


def same_picture(stored: bytes, sent: bytes) -> None:
    """``stored`` is ``sent``'s picture, not re-encoded, carrying an XMP packet."""
    with Image.open(io.BytesIO(stored)) as ours, Image.open(io.BytesIO(sent)) as theirs:
        assert (ours.format, ours.size, ours.mode) == (theirs.format, theirs.size, theirs.mode)
        assert ours.tobytes() == theirs.tobytes()  # a re-encoded JPEG or WebP would differ
        assert "DigitalSourceType" in str(ours.info.get("xmp", b""))


def signing_chain(folder: Path) -> tuple[Path, Path, bytes]:
    """A test CA and an ES256 signer it issued, as C2PA wants them (digitalSignature key
    usage, the email-protection EKU, not self-signed): the chain and key files, and the CA."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    start = datetime(2025, 1, 1, tzinfo=UTC)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fetchflow tests"),
            ]
        )

    def usage(*, sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=not sign,
            crl_sign=not sign,
            encipher_only=False,
            decipher_only=False,
        )

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("fetchflow test CA"))
        .issuer_name(name("fetchflow test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("fetchflow test signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    chain, secret = folder / "chain.pem", folder / "signer.key"
    chain.write_bytes(leaf.public_bytes(pem) + ca_pem)
    secret.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "ca.pem").write_bytes(ca_pem)
    return chain, secret, ca_pem
