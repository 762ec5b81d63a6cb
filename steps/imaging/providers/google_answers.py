"""Reading what Gemini's ``generateContent`` answered with a 2xx: the image, or why not.

Two checks, in order:

1. :func:`check_body`: the raw answer must be a JSON object shaped like a
   ``GenerateContentResponse`` (``candidates`` or ``promptFeedback``). An HTML page from a
   wrong ``GOOGLE_GEMINI_BASE_URL``, plain text, an empty body or JSON of another shape is a
   :meth:`~.errors.RawAnswer.unexpected`, never retried (a 2xx may have been billed).
2. :func:`images_of`: the image parts of the first candidate; without one, the reason, from
   :data:`FINISH_REASONS` (the one table of Gemini's finish reasons) or the prompt's
   ``blockReason``. Messages quote Google's ``finishMessage`` and the model's text.

``google.genai`` types are only named for type checking here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetchflow.errors import ProviderError
from steps.imaging.providers.base import ProviderImage
from steps.imaging.providers.errors import ModerationBlocked, RawAnswer, image_from_bytes
from steps.imaging.providers.redaction import redact, trim_body

if TYPE_CHECKING:
    from google.genai import types

__all__ = [
    "BASE_URL_CHECK",
    "FINISH_REASONS",
    "Stop",
    "check_body",
    "finish_message",
    "images_of",
    "usage_of",
]

PROVIDER = "google"
#: What to check when the answer is not Gemini's.
BASE_URL_CHECK = (
    "check that GOOGLE_GEMINI_BASE_URL (FETCHFLOW_HOSTED_GEMINI_BASE_URL for charge_type: "
    "hosted) points at the Gemini API, https://generativelanguage.googleapis.com, or a "
    "gateway that answers like it"
)


@dataclass(frozen=True)
class Stop:
    """What one finish reason means for an answer without an image.

    Attributes:
        what: The message's words (``the safety system filtered the generated image``).
        hint: What to do.
        retryable: Whether the same request can get an image on another try.
        stage: For a moderation block, its stage (``input``: the prompt was refused;
            ``output``: the image made was withheld); None for other reasons.
    """

    what: str
    hint: str
    retryable: bool
    stage: str | None = None


_REPHRASE = "rephrase the prompt; the same prompt is refused again, so it is not retried"
_FILTERED = (
    "the image was made, then withheld, and may have been billed; rephrase the prompt (not "
    "retried: the same prompt tends to be filtered again)"
)
_DECLINED = Stop(
    "the model answered without an image",
    "make the prompt ask for a picture plainly; retrying the same prompt tends to get the "
    "same answer",
    retryable=False,
)
_UNSPECIFIED = Stop(
    "the model stopped without an image",
    "the model failed to finish the image; trying again usually helps",
    retryable=True,
)

#: Gemini's finish reasons (google-genai ``FinishReason``) for a candidate without an image.
FINISH_REASONS: dict[str, Stop] = {
    "STOP": _DECLINED,
    "NO_IMAGE": _DECLINED,
    "FINISH_REASON_UNSPECIFIED": _DECLINED,
    "": _DECLINED,
    "SAFETY": Stop("the safety system refused the prompt", _REPHRASE, False, "input"),
    "PROHIBITED_CONTENT": Stop("the safety system refused the prompt", _REPHRASE, False, "input"),
    "BLOCKLIST": Stop(
        "the answer was stopped for a term on a blocklist",
        "remove the blocked term from the prompt; not retried: the same prompt is stopped again",
        retryable=False,
    ),
    "SPII": Stop(
        "the answer was stopped for sensitive personal information",
        "leave personal details (ID numbers, addresses, ...) out of the prompt; not retried",
        retryable=False,
    ),
    "RECITATION": Stop(
        "the answer was stopped as a recitation of existing content",
        "ask for something original rather than a copy of an existing work; not retried",
        retryable=False,
    ),
    "LANGUAGE": Stop(
        "the prompt's language is not supported",
        "write the prompt in a language the model supports (English works); not retried",
        retryable=False,
    ),
    "IMAGE_SAFETY": Stop(
        "the safety system filtered the generated image", _FILTERED, False, "output"
    ),
    "IMAGE_PROHIBITED_CONTENT": Stop(
        "the safety system filtered the generated image as prohibited content",
        _FILTERED,
        False,
        "output",
    ),
    "IMAGE_RECITATION": Stop(
        "the generated image was withheld as a recitation of existing content",
        "ask for something original rather than a copy of an existing work; the image may "
        "have been billed, and it is not retried",
        retryable=False,
    ),
    "MODEL_ARMOR": Stop(
        "Model Armor blocked the answer", "check the project's Model Armor policy", False
    ),
    "ESCALATION": Stop(
        "an escalation rule filtered the request", "see the project's escalation rules", False
    ),
    "PUP_LIMITED_DISABLED": Stop(
        "the account is limited or disabled for Prohibited Use Policy violations",
        "see the account's status in Google AI Studio; retrying will not help",
        retryable=False,
    ),
    "MAX_TOKENS": Stop(
        "the answer reached its token limit before an image",
        "shorten the prompt; not retried: the same request ends the same way",
        retryable=False,
    ),
    "IMAGE_OTHER": _UNSPECIFIED,
    "OTHER": _UNSPECIFIED,
    "MALFORMED_RESPONSE": _UNSPECIFIED,
}


def _unknown(reason: str) -> Stop:
    return Stop(
        f"the model stopped without an image for a reason fetchflow does not know ({reason})",
        "read Google's finish message; not retried: the call may have been billed and the "
        "same request may stop the same way",
        retryable=False,
    )


def check_body(answer: RawAnswer) -> dict[str, object]:
    """Refuse a 2xx body that is not a ``GenerateContentResponse`` (not retryable).

    Returns:
        The decoded body.

    Raises:
        ProviderError: From :meth:`~.errors.RawAnswer.unexpected`, saying what came back.
    """
    unexpected = answer.unexpected
    if answer.content_type.split(";", 1)[0].strip().lower() == "text/event-stream":
        raise unexpected("the answer is an event stream, not one JSON answer")
    try:
        body = json.loads(answer.content)
    except (UnicodeDecodeError, ValueError):
        raise unexpected("the answer is not JSON") from None
    if not isinstance(body, dict):
        raise unexpected("the answer is not a generateContent answer (not a JSON object)")
    candidates, feedback = body.get("candidates"), body.get("promptFeedback")
    if not isinstance(candidates, list) and not isinstance(feedback, dict):
        keys = ", ".join(sorted(str(key) for key in body)[:6]) or "none"
        raise unexpected(
            f"the answer is not a generateContent answer (no candidates; keys: {keys})"
        )
    return body


def finish_message(body: Mapping[str, object] | None) -> str | None:
    """The first candidate's ``finishMessage`` (the SDK drops it while parsing)."""
    candidates = body.get("candidates") if body is not None else None
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    message = first.get("finishMessage") if isinstance(first, Mapping) else None
    return message if isinstance(message, str) else None


def usage_of(response: types.GenerateContentResponse) -> dict[str, int]:
    """The answer's token counts that it reports."""
    metadata = response.usage_metadata
    if metadata is None:
        return {}
    counts = {
        "prompt_token_count": metadata.prompt_token_count,
        "candidates_token_count": metadata.candidates_token_count,
        "total_token_count": metadata.total_token_count,
    }
    return {key: value for key, value in counts.items() if value is not None}


def _name(value: object) -> str:
    """An SDK enum member (or an unknown raw string) as its wire name."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def _quote(text: str | None, secrets: tuple[str, ...], limit: int = 200) -> str:
    text = redact(" ".join((text or "").split()), secrets)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def images_of(
    response: types.GenerateContentResponse,
    endpoint: str,
    api_key: str,
    raw: Mapping[str, object] | None = None,
) -> list[ProviderImage]:
    """The image parts of the first candidate, or the reason there are none.

    Args:
        response: The SDK's parse of the answer.
        endpoint: The URL called, as errors show it.
        api_key: The key in use, masked wherever it might appear.
        raw: The answer's JSON as received, for what the SDK drops (``finishMessage``).

    Raises:
        ProviderError: Status 200; ``retryable`` as :data:`FINISH_REASONS` says (a blocked
            prompt is not; no candidates at all is).
    """
    secrets = (api_key,)
    body = trim_body(
        response.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude={"sdk_http_response"}
        ),
        secrets,
    )

    def fail(
        what: str,
        hint: str,
        *,
        retryable: bool,
        stage: str | None = None,
        categories: tuple[str, ...] = (),
    ) -> ProviderError:
        if stage is not None:  # a moderation block: the step's on_moderation decides
            return ModerationBlocked(
                message=f"{PROVIDER} {endpoint}: {what}",
                hint=hint,
                provider=PROVIDER,
                endpoint=endpoint,
                status=200,
                body=body,
                stage=stage,
                categories=categories,
            )
        return ProviderError(
            message=f"{PROVIDER} {endpoint}: {what}",
            hint=hint,
            retryable=retryable,
            provider=PROVIDER,
            endpoint=endpoint,
            status=200,
            body=body,
        )

    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _name(feedback.block_reason)
        said = _quote(feedback.block_reason_message, secrets)
        raise fail(
            f"the safety system refused the prompt (block_reason {reason})"
            + (f": {said}" if said else ""),
            _REPHRASE,
            retryable=False,
            stage="input",
        )
    if not response.candidates:
        raise fail(
            "the answer holds no candidates",
            "the provider sent an incomplete answer; trying again usually helps",
            retryable=True,
        )
    candidate = response.candidates[0]
    parts = [
        p for p in (candidate.content.parts if candidate.content else None) or [] if not p.thought
    ]
    blobs = [p.inline_data for p in parts if p.inline_data is not None]
    if blobs:
        return [
            image_from_bytes(
                blob.data or b"",
                index=number,
                total=len(blobs),
                provider=PROVIDER,
                endpoint=endpoint,
            )
            for number, blob in enumerate(blobs, start=1)
        ]

    reason = _name(candidate.finish_reason)
    stop = FINISH_REASONS.get(reason) or _unknown(reason)
    details = f"finish_reason {reason}" if reason else "no finish_reason"
    categories = sorted(
        _name(rating.category)
        for rating in candidate.safety_ratings or []
        if rating.blocked and rating.category is not None
    )
    if categories:
        details += f"; categories: {', '.join(categories)}"
    text = _quote(" ".join(p.text for p in parts if p.text), secrets)
    finish = _quote(candidate.finish_message or finish_message(raw), secrets)
    raise fail(
        f"{stop.what} ({details})"
        + (f': "{text}"' if text else "")
        + (f'; finishMessage: "{finish}"' if finish else ""),
        stop.hint,
        retryable=stop.retryable,
        stage=stop.stage,
        categories=tuple(categories),
    )
