"""Every image a real ``fetchflow run`` stores carries our provenance, read back by readers we
did not write: exiftool for the XMP, c2pa-python's Reader for the signed C2PA manifest.
Nothing else survives (a photo's EXIF GPS), and no key, URL or prompt is written unless the
step opts in. A certificate C2PA refuses is said before any provider call."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

from fetchflow import __version__

# tests/steps/fakes, as test_bad_input_catalogue imports it (tests/steps is no package).
_STEP_TESTS = str(Path(__file__).resolve().parents[1] / "steps")
if _STEP_TESTS not in sys.path:
    sys.path.insert(0, _STEP_TESTS)

from fakes.provenance import (  # noqa: E402
    COMPOSITE,
    GENERATED,
    exiftool_tags,
    metadata_of,
    signing_chain,
)

FLOW = Path(__file__).resolve().parents[1] / "data" / "provenance" / "provenance.yaml"
TOOL = f"fetchflow {__version__}"


def photo() -> bytes:
    """A camera JPEG with the EXIF a photo carries: make, GPS."""
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (90, 120, 30)).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def run(sandbox: Sandbox, env: dict[str, str]) -> subprocess.CompletedProcess[str]:  # noqa: F811
    shutil.copy(FLOW, sandbox.tmp / "cwd" / "provenance.yaml")
    (sandbox.tmp / "cwd" / "photo.jpg").write_bytes(photo())
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", "provenance.yaml"],
        env=env,
        cwd=sandbox.tmp / "cwd",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )


def outputs(store: Path) -> dict[str, list[Path]]:
    """Each step's stored files, in output order, from the run's step records."""
    found: dict[str, list[Path]] = {}
    for record_file in sorted(store.glob("runs/*/steps/*.json")):
        record = json.loads(record_file.read_text(encoding="utf-8"))
        output = record.get("output")
        if isinstance(output, list):
            uris = [item["storage_uri"] for item in output if isinstance(item, dict)]
            found[record_file.stem] = [Path(uri.removeprefix("file://")) for uri in uris]
    return found


def c2pa_actions(path: Path, mime: str) -> tuple[str, list[str], list[tuple[str, str]], str]:
    """The manifest's validation state, action names, ingredients and digital source type."""
    import c2pa

    with c2pa.Reader(mime, io.BytesIO(path.read_bytes())) as reader:
        state = reader.get_validation_state()
        manifest = reader.get_active_manifest()
    actions = [
        action
        for assertion in manifest["assertions"]
        if assertion["label"].startswith("c2pa.actions")
        for action in assertion["data"]["actions"]
    ]
    ingredients = [(i["title"], i["relationship"]) for i in manifest.get("ingredients", [])]
    source = next((a["digitalSourceType"] for a in actions if "digitalSourceType" in a), "")
    return state, [a["action"] for a in actions], ingredients, source


@pytest.mark.prefect
def test_every_stored_image_carries_our_provenance_and_nothing_else(
    sandbox: Sandbox,  # noqa: F811
    prefect_api: str,
) -> None:
    chain, key, _ca = signing_chain(sandbox.tmp)
    env = {
        **sandbox.env,
        "PREFECT_API_URL": prefect_api,
        "FETCHFLOW_C2PA_CERT": str(chain),
        "FETCHFLOW_C2PA_KEY": str(key),
    }
    done = run(sandbox, env)
    assert done.returncode == 0, done.stderr

    files = outputs(sandbox.store)
    assert {step: len(paths) for step, paths in files.items()} == {
        "hero": 1,
        "banner": 1,
        "retouch": 1,
        "thumbs": 2,
        "big": 1,
    }
    steps = ("hero", "banner", "retouch", "thumbs", "big")
    order = [(step, path) for step in steps for path in files[step]]
    names = [f"{step}-{number}" for number, (step, _) in enumerate(order)]
    read = dict(zip(names, exiftool_tags(*(path for _, path in order)), strict=True))
    by_step = {name: metadata_of(t) for name, t in read.items()}
    hero, banner, retouch, thumb_edit, thumb_photo, big = by_step.values()
    assert all(t["ExifTool:Validate"] == "OK" for t in read.values())

    def xmp(source: str | None, model: str | None, **more: str) -> dict[str, object]:
        fields: dict[str, object] = {"XMP-xmp:CreatorTool": TOOL}
        if source:
            fields["XMP-iptcExt:DigitalSourceType"] = source
        if model:
            fields["XMP-iptcExt:AISystemUsed"] = model
        fields.update(more)
        return fields

    def without_c2pa(found: dict[str, object]) -> dict[str, object]:
        # exiftool 12 lists the manifest's JUMBF boxes (as Jpeg2000); checked with c2pa below
        return {
            k: v for k, v in found.items() if not k.startswith(("JUMBF:", "CBOR:", "Jpeg2000:"))
        }

    assert without_c2pa(hero) == xmp(GENERATED, "gpt-image-1.5")
    assert without_c2pa(banner) == xmp(GENERATED, "gemini-2.5-flash-image")
    prompt = "Put the lantern on the table, EDIT-MARKER-5519"
    assert without_c2pa(retouch) == xmp(
        COMPOSITE, "gpt-image-1.5", **{"XMP-iptcExt:AIPromptInformation": prompt}
    )
    assert without_c2pa(thumb_edit) == xmp(COMPOSITE, "gpt-image-1.5")  # the source's kept
    assert without_c2pa(thumb_photo) == xmp(None, None)  # a photo: we say only who wrote it
    assert without_c2pa(big) == xmp(GENERATED, "gpt-image-1.5")

    # The signed manifests, read by the official SDK.
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}
    manifests = {
        name: c2pa_actions(path, mime[path.suffix])
        for name, (_, path) in zip(read, order, strict=True)
    }
    hero_m, banner_m, retouch_m, thumb_edit_m, thumb_photo_m, big_m = manifests.values()
    assert all(state in ("Valid", "Trusted") for state, *_ in manifests.values())
    assert hero_m[1:] == (["c2pa.created"], [], GENERATED)
    assert banner_m[1:] == (["c2pa.created"], [], GENERATED)
    assert retouch_m[1:] == (
        ["c2pa.opened", "c2pa.edited"],
        [("images[0]", "parentOf"), ("images[1]", "componentOf")],
        COMPOSITE,
    )
    for resized, title in (
        (thumb_edit_m, "images[0]"),
        (thumb_photo_m, "images[1]"),
        (big_m, "images[0]"),
    ):
        assert resized[1:3] == (["c2pa.opened", "c2pa.resized"], [(title, "parentOf")])

    # Nothing else: no key, no endpoint, no key file's content, the prompt only where asked.
    secret = b"".join(key.read_bytes().splitlines()[1:-1])
    for name, (_, path) in zip(read, order, strict=True):
        data = path.read_bytes()
        for needle in (
            b"sk-catalogue-test-key",
            b"gemini-catalogue-test-key",
            b"catalogue-key",
            sandbox.openai.base_url.encode(),
            sandbox.gemini.base_url.encode(),
            secret[:40],
            b"SecretCam",
            b"PROMPT-MARKER-7731",
            str(sandbox.tmp).encode(),
        ):
            assert needle not in data, (name, needle)
        # Where the step opted in, and in the C2PA history of the image made from it
        # (the edit is the transform's ingredient, its manifest kept as C2PA asks).
        assert (b"EDIT-MARKER-5519" in data) == (name in ("retouch-2", "thumbs-3")), name


def test_a_certificate_c2pa_refuses_is_said_before_any_call(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    chain, key, ca = signing_chain(sandbox.tmp)
    chain.write_bytes(ca)  # the CA alone: self-signed
    env = {**sandbox.env, "FETCHFLOW_C2PA_CERT": str(chain), "FETCHFLOW_C2PA_KEY": str(key)}
    done = run(sandbox, env)
    assert done.returncode == 2
    assert done.stderr.splitlines()[:2] == [
        "fetchflow: setting FETCHFLOW_C2PA_CERT/FETCHFLOW_C2PA_KEY: "
        f"{chain} and {key} do not sign a C2PA manifest: Signature: the certificate was "
        "self-signed",
        "  hint: use a certificate chain issued by a CA (C2PA refuses self-signed ones), with "
        "digitalSignature key usage, and the key that matches it",
    ]
    assert "Traceback" not in done.stderr
    assert b"".join(key.read_bytes().splitlines()[1:-1])[:40].decode() not in done.stderr
    assert sandbox.openai.requests == [] and sandbox.gemini.requests == []
