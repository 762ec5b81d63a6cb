"""What every stored image says of how it was made: an XMP packet, and C2PA when configured.

Each image a step stores carries one XMP packet, written by :func:`stamp` in place of
whatever metadata the file held (:func:`~steps.imaging.pixels.metadata.replace_metadata`):

- ``Iptc4xmpExt:DigitalSourceType``: ``trainedAlgorithmicMedia`` for a generation,
  ``compositeWithTrainedAlgorithmicMedia`` for an edit; a transform or upscale keeps its
  source's (resizing does not change how the picture was made), and writes none when the
  source said none (a photo we know nothing of).
- ``Iptc4xmpExt:AISystemUsed``: the model that answered (a transform keeps its source's).
- ``xmp:CreatorTool``: ``fetchflow <version>``.
- ``Iptc4xmpExt:AIPromptInformation``: the prompt, only when the step opts in
  (``provenance: {include_prompt: true}``).

Nothing else: no key, no URL, no file name, no time (the same inputs give the same bytes).
With a signing certificate configured, :mod:`steps.imaging.signing` adds a C2PA manifest
built from the same :class:`Provenance`. Pure, but for that signing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from xml.sax.saxutils import quoteattr

from fetchflow import __version__
from steps.imaging.pixels.metadata import read_xmp, replace_metadata

if TYPE_CHECKING:
    from steps.imaging.production import ImageJob, MadeImage
    from steps.imaging.signing import Signing

__all__ = [
    "COMPOSITE",
    "CREATOR_TOOL",
    "DRAWN",
    "DRAWN_COMPOSITE",
    "GENERATED",
    "Action",
    "Ingredient",
    "Provenance",
    "derived",
    "of_made_image",
    "stamp",
    "xmp_packet",
]

_CV = "http://cv.iptc.org/newscodes/digitalsourcetype/"
#: IPTC's digital source type of an image a model made from a prompt.
GENERATED = _CV + "trainedAlgorithmicMedia"
#: IPTC's digital source type of an image a model made from other images (an edit).
COMPOSITE = _CV + "compositeWithTrainedAlgorithmicMedia"
#: The preview model's: drawn by a program, no trained model involved.
DRAWN = _CV + "algorithmicMedia"
#: The preview model's edits: a mix of images, none made by a trained model.
DRAWN_COMPOSITE = _CV + "compositeSynthetic"
#: What ``xmp:CreatorTool`` says.
CREATOR_TOOL = f"fetchflow {__version__}"

#: What a step did: C2PA's action for it is ``c2pa.<action>``.
Action = Literal["created", "edited", "resized", "upscaled"]

_NAMESPACES = {
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
}


@dataclass(frozen=True)
class Ingredient:
    """An image another was made from (C2PA ingredients; never in the XMP).

    Attributes:
        data: Its bytes.
        mime_type: Its MIME type.
        title: A name safe to publish (``images[0]``: never a URL or a path).
        relationship: ``parentOf`` (the image edited or transformed) or ``componentOf``.
    """

    data: bytes
    mime_type: str
    title: str
    relationship: Literal["parentOf", "componentOf"]


@dataclass(frozen=True)
class Provenance:
    """How one image was made, as its metadata says it.

    Attributes:
        action: What the step did.
        source_type: The IPTC digital source type (a full ``cv.iptc.org`` URI), or None
            when unknown (a transform of an image that said none).
        model: The AI model that made the pixels, or None.
        software: What did the step's work when no AI model did (``pillow``), or None.
        prompt: The prompt, when the step opted in; else None.
        ingredients: The images it was made from (edits, transforms, upscales).
    """

    action: Action
    source_type: str | None
    model: str | None
    software: str | None = None
    prompt: str | None = None
    ingredients: tuple[Ingredient, ...] = ()


def _fields(provenance: Provenance) -> list[tuple[str, str]]:
    fields = [("xmp:CreatorTool", CREATOR_TOOL)]
    if provenance.source_type is not None:
        fields.append(("Iptc4xmpExt:DigitalSourceType", provenance.source_type))
    if provenance.model is not None:
        fields.append(("Iptc4xmpExt:AISystemUsed", provenance.model))
    if provenance.prompt is not None:
        fields.append(("Iptc4xmpExt:AIPromptInformation", provenance.prompt))
    return fields


def xmp_packet(provenance: Provenance) -> bytes:
    """The XMP packet for ``provenance``: the same bytes for the same provenance."""
    namespaces = " ".join(f"xmlns:{prefix}={quoteattr(uri)}" for prefix, uri in _NAMESPACES.items())
    properties = "".join(
        f"\n   <{name}>{_escape(value)}</{name}>" for name, value in _fields(provenance)
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        f'  <rdf:Description rdf:about="" {namespaces}>{properties}\n'
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    ).encode()


def _escape(value: str) -> str:
    # XML 1.0 has no place for most control characters: a prompt may hold them.
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", " ", value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _read_property(packet: str, name: str) -> str | None:
    """``name``'s simple value in ``packet``, written as an element or an attribute."""
    local = re.escape(name.split(":")[1])
    prefix = r"[A-Za-z0-9_.-]+:"
    element = re.search(rf"<{prefix}{local}>([^<]*)</{prefix}{local}>", packet)
    if element:
        return _unescape(element.group(1).strip())
    attribute = re.search(rf"\s{prefix}{local}=(\"[^\"]*\"|'[^']*')", packet)
    return _unescape(attribute.group(1)[1:-1].strip()) if attribute else None


def _unescape(text: str) -> str:
    entities = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&amp;": "&"}
    return re.sub(r"&(lt|gt|quot|apos|amp);", lambda m: entities[m.group(0)], text) or ""


def derived(
    action: Action, source: bytes, source_mime: str, *, software: str, title: str
) -> Provenance:
    """The provenance of an image a transform or upscale made from ``source``.

    Keeps the source's digital source type and AI system (the pixels are still the
    model's), as any XMP writer put them; None of each when the source said none.
    """
    packet = read_xmp(source)
    text = packet.decode("utf-8", "replace") if packet else ""
    source_type = _read_property(text, "Iptc4xmpExt:DigitalSourceType") or None
    model = _read_property(text, "Iptc4xmpExt:AISystemUsed") or None
    return Provenance(
        action=action,
        source_type=source_type,
        model=model,
        software=software,
        ingredients=(Ingredient(source, source_mime, title, "parentOf"),),
    )


def of_made_image(job: ImageJob, made: MadeImage) -> Provenance:
    """The provenance of an image a generation or an edit made.

    An edit's ingredients are what the provider received for it: the edited image
    (``images[0]``, ``parentOf``), then the other references (``componentOf``). The offline
    preview draws its images without a trained model, and says so (``algorithmicMedia``,
    ``compositeSynthetic``).
    """
    preview = job.spec.provider == "preview"
    prompt = job.prompt if job.options.provenance_prompt else None
    if not job.edits:
        kind = DRAWN if preview else GENERATED
        return Provenance("created", kind, made.model, prompt=prompt)
    inputs = job.edits[min(made.index // job.count, len(job.edits) - 1)]
    ingredients = tuple(
        Ingredient(
            image.data,
            image.mime_type,
            f"images[{number}]",
            "parentOf" if number == 0 else "componentOf",
        )
        for number, image in enumerate(inputs.images)
    )
    kind = DRAWN_COMPOSITE if preview else COMPOSITE
    return Provenance("edited", kind, made.model, prompt=prompt, ingredients=ingredients)


def stamp(
    data: bytes, file_type: str, provenance: Provenance, signing: Signing | None = None
) -> bytes:
    """``data`` with its metadata replaced by ``provenance`` (and signed, with ``signing``).

    Raises:
        StepError: The file is malformed, or signing failed (the message names the setting).
    """
    stamped = replace_metadata(data, xmp_packet(provenance))
    if signing is None:
        return stamped
    return signing.sign(stamped, file_type, provenance)
