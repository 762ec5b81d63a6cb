"""Reading what OpenAI's Images API answered with a 2xx: the images, or why there are none.

:func:`read_answer` takes the raw answer (status, ``content-type``, bytes), not the SDK's
parsed object: the SDK hands back a bare string for an HTML page or an event stream, and
the image step needs to say what came back instead of failing on ``'str' object has no
attribute 'data'``.

=============================================  =========  ===================================
What came back                                 retryable  result
=============================================  =========  ===================================
JSON ``{data: [{b64_json}, ...], usage}``      -          the images and the token usage
JSON with ``data: []``                         yes        "holds no images"
JSON of another shape, HTML, text, no body     no         :meth:`~.errors.RawAnswer.unexpected`
``text/event-stream`` with ``*.completed``     -          the final images, kept (paid for)
``text/event-stream`` without a final image    no         :meth:`~.errors.RawAnswer.unexpected`
an item with a URL or no ``b64_json``          no         "has no b64_json"
bad base64, bytes that are no image            yes        garbled answer
=============================================  =========  ===================================

A call that asked for partial images reads its stream event by event
(:class:`StreamReader`): each partial image goes to the request's ``on_partial`` as it
arrives, each ``*.completed`` event is a final image with its usage.

A 2xx that is not the API's JSON is never retried: the provider (or whatever answers at
``OPENAI_BASE_URL``) said yes, so the call may have been billed, and a wrong base URL
answers the same way every time.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import (
    PartialCallback,
    PartialImage,
    ProviderImage,
    ProviderResult,
    StreamBroken,
)
from steps.imaging.providers.errors import RawAnswer, image_from_bytes

__all__ = ["BASE_URL_CHECK", "StreamReader", "read_answer", "usage_counts"]

PROVIDER = "openai"
#: What to check when the answer is not the Images API's.
BASE_URL_CHECK = (
    "check that OPENAI_BASE_URL (FETCHFLOW_HOSTED_OPENAI_BASE_URL for charge_type: hosted) "
    "points at the OpenAI API, https://api.openai.com/v1, or a gateway that answers like it"
)
#: Stream events that carry a finished image (generations, edits).
_COMPLETED = frozenset({"image_generation.completed", "image_edit.completed"})
_PARTIAL = frozenset({"image_generation.partial_image", "image_edit.partial_image"})


def read_answer(answer: RawAnswer, *, model: str) -> ProviderResult:
    """The images of a 2xx answer, or the :class:`ProviderError` saying why there are none.

    Args:
        answer: The answer as received (status, ``content-type``, body, endpoint, secrets).
        model: The model asked for.

    Returns:
        The decoded images, in the order returned, with the token usage.

    Raises:
        ProviderError: See the module's table.
    """
    status, endpoint, content = answer.status, answer.endpoint, answer.content
    unexpected = answer.unexpected
    if _is_event_stream(answer.content_type, content):
        return _read_stream(content, endpoint=endpoint, model=model, unexpected=unexpected)
    try:
        body = json.loads(content)
    except (UnicodeDecodeError, ValueError):
        raise unexpected("the answer is not JSON") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise unexpected(f"the answer is not an Images API answer ({_shape(body)})")
    if not data:
        raise ProviderError(
            message=f"{PROVIDER} {endpoint}: the answer holds no images (empty data list)",
            hint="the provider sent an incomplete answer; trying again usually helps",
            provider=PROVIDER,
            endpoint=endpoint,
            status=status,
        )
    images = [
        _decode(item, index, len(data), endpoint, status)
        for index, item in enumerate(data, start=1)
    ]
    usage = body.get("usage")
    return ProviderResult(
        images=images,
        usage=usage_counts(usage) if isinstance(usage, Mapping) else None,
        model=model,
    )


def _is_event_stream(content_type: str, content: bytes) -> bool:
    if content_type.split(";", 1)[0].strip().lower() == "text/event-stream":
        return True
    return content.lstrip().startswith((b"event:", b"data:"))


def _shape(body: object) -> str:
    """What a JSON body is, in a few words: ``an object with keys error, id``."""
    if isinstance(body, dict):
        if "data" not in body:
            keys = ", ".join(sorted(str(key) for key in body)[:6]) or "none"
            return f"an object without a data list; keys: {keys}"
        data = body["data"]
        if not isinstance(data, list):
            return f"data is {_kind(data)}, not a list"
        return "data holds items that are not objects"
    return f"{_kind(body)}, not an object"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {str: "a string", list: "a list", bool: "a boolean", int: "a number"}
    return names.get(type(value), "a number" if isinstance(value, float) else "an object")


def _decode(
    item: Mapping[str, object], index: int, total: int, endpoint: str, status: int
) -> ProviderImage:
    b64 = item.get("b64_json")
    if not isinstance(b64, str) or not b64:
        found = "a URL" if item.get("url") else "nothing"
        raise ProviderError(
            message=f"{PROVIDER} {endpoint}: image {index} of {total} has no b64_json, got {found}",
            hint="GPT image models always answer base64; check that base_url points at an "
            "OpenAI-compatible Images API",
            provider=PROVIDER,
            endpoint=endpoint,
            status=status,
            retryable=False,
        )
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderError(
            message=f"{PROVIDER} {endpoint}: image {index} of {total} is not valid base64 "
            f"({exc}; {len(b64)} characters)",
            hint="the answer was cut short or garbled; trying again usually helps",
            provider=PROVIDER,
            endpoint=endpoint,
            status=status,
        ) from exc
    return image_from_bytes(raw, index=index, total=total, provider=PROVIDER, endpoint=endpoint)


def _events(content: bytes) -> list[dict[str, object]]:
    """The JSON ``data:`` of each server-sent event; the event name fills a missing ``type``."""
    events = []
    text = content.decode("utf-8", errors="replace").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        name, lines = "", []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                lines.append(value)
        try:
            event = json.loads("\n".join(lines)) if lines else None
        except ValueError:
            continue
        if isinstance(event, dict):
            event.setdefault("type", name)
            events.append(event)
    return events


def _read_stream(
    content: bytes,
    *,
    endpoint: str,
    model: str,
    unexpected: Callable[[str], ProviderError],
) -> ProviderResult:
    """The final images of an image event stream: they were made and paid for, so kept."""
    events = _events(content)
    finals = [event for event in events if event.get("type") in _COMPLETED]
    if not finals:
        partials = sum(1 for event in events if event.get("type") in _PARTIAL)
        raise unexpected(
            f"the answer is an event stream ({len(events)} events, {partials} partial "
            "images) without a final image"
        )
    images = [
        _decode(event, index, len(finals), endpoint, 200)
        for index, event in enumerate(finals, start=1)
    ]
    usage: dict[str, int] = {}
    for event in finals:
        reported = event.get("usage")
        counts = usage_counts(reported) if isinstance(reported, Mapping) else None
        for key, value in (counts or {}).items():
            usage[key] = usage.get(key, 0) + value
    return ProviderResult(images=images, usage=usage or None, model=model)


_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class StreamReader:
    """The events of one streamed call (``stream=True``), taken one at a time as they arrive.

    A partial image goes to ``on_partial`` at once (a draft for display: one that cannot be
    decoded is skipped, never an error); a ``*.completed`` event is a final image, decoded
    and checked as a plain answer's images are, its usage added up.

    Args:
        endpoint: The URL called, as errors show it.
        model: The model asked for.
        asked: Images asked for (for messages).
        on_partial: Receives each partial image, or None.
    """

    def __init__(
        self, *, endpoint: str, model: str, asked: int, on_partial: PartialCallback | None
    ) -> None:
        self.endpoint = endpoint
        self.model = model
        self.asked = asked
        self.partials = 0
        self.images: list[ProviderImage] = []
        self.usage: dict[str, int] = {}
        self._on_partial = on_partial

    def take(self, event: Mapping[str, object]) -> None:
        """One event (as JSON data): a partial image, a final image, or another (ignored)."""
        kind = event.get("type")
        if kind in _PARTIAL:
            self.partials += 1
            data = _b64(event.get("b64_json"))
            if data is not None and self._on_partial is not None:
                mime = _MIME.get(str(event.get("output_format")), "image/png")
                self._on_partial(PartialImage(self.partials, data, mime))
        elif kind in _COMPLETED:
            self.images.append(_decode(event, len(self.images) + 1, self.asked, self.endpoint, 200))
            reported = event.get("usage")
            counts = usage_counts(reported) if isinstance(reported, Mapping) else None
            for key, value in (counts or {}).items():
                self.usage[key] = self.usage.get(key, 0) + value

    def result(self, *, label: str = "") -> ProviderResult:
        """The final images and their usage.

        Args:
            label: Which image the call was making, for the error.

        Raises:
            StreamBroken: The stream ended without a final image.
        """
        if not self.images:
            raise self.broken("it ended without a final image", label=label)
        return ProviderResult(images=self.images, usage=self.usage or None, model=self.model)

    def billed(self) -> str:
        """What the call may have cost so far, in a few words."""
        what = (
            f"the {self._partials_text()} and the work done" if self.partials else "the work done"
        )
        return f"OpenAI may bill {what}: no usage was reported before the break"

    def broken(self, cause: str, *, label: str = "") -> StreamBroken:
        """The error of a stream that stopped before its final image, saying what it cost.

        Args:
            cause: What stopped it (``peer closed connection ...``), already redacted.
            label: Which image the call was making (``image 2 of 3``), or "".
        """
        of = f" of {label}" if label else ""
        after = f"after {self._partials_text()}" if self.partials else "before any partial image"
        billed = self.billed()
        return StreamBroken(
            message=f"{PROVIDER} {self.endpoint}: the stream{of} broke {after} ({cause}); {billed}",
            hint="trying again usually helps (and is billed again); partial_images: 0 asks "
            "for the finished image alone",
            provider=PROVIDER,
            endpoint=self.endpoint,
            status=200,
            partials=self.partials,
            billed=billed,
        )

    def _partials_text(self) -> str:
        return f"{self.partials} partial image" + ("" if self.partials == 1 else "s")


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def usage_counts(usage: Mapping[str, object]) -> dict[str, int] | None:
    """Token counts of an answer's ``usage``, flattened; a field left out is left out here."""

    def details(name: str) -> Mapping[str, object]:
        value = usage.get(name)
        return value if isinstance(value, Mapping) else {}

    fields = {
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "input_image_tokens": details("input_tokens_details").get("image_tokens"),
        "input_text_tokens": details("input_tokens_details").get("text_tokens"),
        "output_image_tokens": details("output_tokens_details").get("image_tokens"),
        "output_text_tokens": details("output_tokens_details").get("text_tokens"),
    }
    counts = {
        key: value
        for key, value in fields.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }
    return counts or None
