"""A fake Gemini API: ``POST /{version}/models/{model}:generateContent``.

Answers in the real wire shape (``candidates[{content{role, parts[{inlineData{mimeType,
data}}]}, finishReason, index}]``, ``usageMetadata{...}``, ``modelVersion``,
``responseId``) with a real PNG of the size the aspect ratio and ``imageSize`` give, and
answers in words only when ``responseModalities`` leaves out ``IMAGE`` (as the real model
does). Errors use Google's shape ``{"error": {code, message, status, details[]}}``. The
``queue_*`` methods script rate limits (with ``RetryInfo``), a quota of zero, server
errors, safety stops, blocked prompts, text-only answers, bad keys, garbage bytes and
slow answers, finish reasons with a ``finishMessage``, and 200s that are not Gemini's JSON
(an HTML page from a wrong base URL, plain text, an empty body, JSON of another shape).
Like the real API, it refuses ``imageSize`` for ``gemini-2.5-flash-image`` (1K only) and a
size a model does not make.
"""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from typing import Any

from . import FakeServer, RecordedRequest, Reply, make_image
from .blocking import PromptBlocks

__all__ = ["IMAGE_SIZES_1K", "FakeGemini", "google_error_body"]

#: Pixel size of a 1K image per aspect ratio (Gemini's published table); 2K and 4K
#: double and quadruple each side.
IMAGE_SIZES_1K = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
_SCALE = {"1K": 1, "2K": 2, "4K": 4}
#: Models that take no ``imageSize`` (they make 1K only).
_NO_IMAGE_SIZE = frozenset({"gemini-2.5-flash-image"})
_PATH = re.compile(r"^/(?P<version>v1(?:beta|alpha)?)/models/(?P<model>[^/:?]+):generateContent$")
_TYPE = "type.googleapis.com/google.rpc."
_METRIC = "generativelanguage.googleapis.com/generate_content_"
_OVER_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. "
    "Quota exceeded for metric:"
)


def google_error_body(
    code: int, status: str, message: str, *details: dict[str, Any]
) -> dict[str, Any]:
    """``{"error": {...}}`` as Google APIs send it."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


class FakeGemini(PromptBlocks, FakeServer):
    """The fake Gemini API; ``base_url`` is what ``HttpOptions(base_url=...)`` takes."""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (the SDK adds the version and path)."""
        return self.root

    def url_for(self, model: str, version: str = "v1") -> str:
        """The full URL of ``model``'s ``generateContent``."""
        return f"{self.root}/{version}/models/{model}:generateContent"

    # -- success -------------------------------------------------------------------------

    def answer(self, request: RecordedRequest) -> Reply:
        """A real-shaped success, or the error the real API gives."""
        match = _PATH.match(request.path)
        if match is None:
            return Reply(404, google_error_body(404, "NOT_FOUND", f"Not found: {request.path}"))
        if request.credential is None:
            return Reply(
                403,
                google_error_body(
                    403,
                    "PERMISSION_DENIED",
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity to "
                    "call this API.",
                ),
            )
        body = request.json or {}
        prompt = " ".join(
            str(part.get("text", ""))
            for content in body.get("contents", [])
            for part in content.get("parts", [])
        )
        rule = self.blocking(prompt)
        if rule is not None:  # block_prompts: a marker word in the prompt
            return self._blocked(match["model"], rule.stage)
        config = body.get("generationConfig", {})
        image_config = config.get("imageConfig", {})
        ratio = image_config.get("aspectRatio", "1:1")
        if ratio not in IMAGE_SIZES_1K:
            return Reply(
                400,
                google_error_body(400, "INVALID_ARGUMENT", f"Unsupported aspect ratio: {ratio}"),
            )
        size = image_config.get("imageSize")
        if size is not None and match["model"] in _NO_IMAGE_SIZE:
            return Reply(
                400,
                google_error_body(
                    400, "INVALID_ARGUMENT", f"Image size is not supported for {match['model']}."
                ),
            )
        scale = _SCALE.get(size or "1K")
        if scale is None:
            return Reply(
                400,
                google_error_body(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid value at 'generation_config.image_config.image_size'",
                ),
            )
        if "IMAGE" not in config.get("responseModalities", ["TEXT", "IMAGE"]):
            return self._success(
                match["model"], [{"text": "Here is a description of the picture."}]
            )
        width, height = IMAGE_SIZES_1K[ratio]
        png = make_image(width * scale, height * scale, "png", shade=int(config.get("seed", 0)))
        part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}}
        return self._success(match["model"], [part])

    @staticmethod
    def _success(model: str, parts: list[dict[str, Any]], finish_reason: str = "STOP") -> Reply:
        return Reply(
            200,
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": parts},
                        "finishReason": finish_reason,
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 7,
                    "candidatesTokenCount": 1290,
                    "totalTokenCount": 1297,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}],
                },
                "modelVersion": model,
                "responseId": "fake-response-1",
            },
        )

    @staticmethod
    def _blocked(model: str, stage: str) -> Reply:
        """Input: ``promptFeedback.blockReason: SAFETY``; output: ``IMAGE_SAFETY``."""
        usage = {"promptTokenCount": 7, "totalTokenCount": 7}
        if stage == "input":
            body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage}
        else:
            candidate = {
                "finishReason": "IMAGE_SAFETY",
                "index": 0,
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "blocked": True},
                ],
            }
            body = {"candidates": [candidate], "usageMetadata": usage}
        return Reply(200, {**body, "modelVersion": model})

    def _model(self, request: RecordedRequest) -> str:
        match = _PATH.match(request.path)
        return match["model"] if match else "unknown"

    # -- scripted failures ---------------------------------------------------------------

    def queue_rate_limit(
        self, retry_delay: str | None = "7s", retry_after: str | None = None
    ) -> None:
        """429 ``RESOURCE_EXHAUSTED`` with ``QuotaFailure`` and ``RetryInfo`` details."""
        details: list[dict[str, Any]] = [
            {
                "@type": _TYPE + "QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": _METRIC + "paid_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                        "quotaValue": "10",
                    }
                ],
            }
        ]
        if retry_delay is not None:
            details.append({"@type": _TYPE + "RetryInfo", "retryDelay": retry_delay})
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        message = f"{_OVER_QUOTA} {_METRIC}paid_tier_requests, limit: 10"
        self.queue(
            lambda _: Reply(
                429, google_error_body(429, "RESOURCE_EXHAUSTED", message, *details), headers
            )
        )

    def queue_quota_zero(self) -> None:
        """429 for a free-tier project: the model's quota is 0, waiting will not help."""
        message = (
            f"{_OVER_QUOTA} {_METRIC}free_tier_requests, limit: 0, model: gemini-2.5-flash-image"
        )
        violation = {
            "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            "quotaValue": "0",
        }
        details = (
            {"@type": _TYPE + "QuotaFailure", "violations": [violation]},
            {"@type": _TYPE + "RetryInfo", "retryDelay": "41s"},
        )
        self.queue(
            lambda _: Reply(429, google_error_body(429, "RESOURCE_EXHAUSTED", message, *details))
        )

    def queue_server_error(self, status: int = 500) -> None:
        """500 ``INTERNAL`` or 503 ``UNAVAILABLE`` (overloaded)."""
        name, message = (
            (
                "INTERNAL",
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            )
            if status == 500
            else ("UNAVAILABLE", "The model is overloaded. Please try again later.")
        )
        self.queue(lambda _: Reply(status, google_error_body(status, name, message)))

    def queue_invalid_api_key(self) -> None:
        """400 ``INVALID_ARGUMENT`` / ``API_KEY_INVALID``, echoing the key (worse than Google)."""
        self.queue(
            lambda request: Reply(
                400,
                google_error_body(
                    400,
                    "INVALID_ARGUMENT",
                    f"API key not valid. Please pass a valid API key. (got {request.credential})",
                    {
                        "@type": _TYPE + "ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    },
                ),
            )
        )

    def queue_safety_stop(self, finish_reason: str = "IMAGE_SAFETY") -> None:
        """A 200 whose candidate stopped for safety, with no content."""

        def stop(request: RecordedRequest) -> Reply:
            candidate = {
                "finishReason": finish_reason,
                "index": 0,
                "finishMessage": "Unable to show the generated image. The image was "
                "filtered out because it violated Google's Generative AI Prohibited Use policy.",
                "safetyRatings": [
                    {
                        "category": "HARM_CATEGORY_SEXUALLY_EXPLICIT",
                        "probability": "HIGH",
                        "blocked": True,
                    },
                    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
                ],
            }
            return Reply(
                200,
                {
                    "candidates": [candidate],
                    "modelVersion": self._model(request),
                    "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
                },
            )

        self.queue(stop)

    def queue_prompt_blocked(self, block_reason: str = "PROHIBITED_CONTENT") -> None:
        """A 200 with ``promptFeedback.blockReason`` and no candidates."""
        self.queue(
            lambda request: Reply(
                200,
                {
                    "promptFeedback": {"blockReason": block_reason},
                    "modelVersion": self._model(request),
                    "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
                },
            )
        )

    def queue_text_only(
        self,
        text: str = "I can't create that image, but here is a poem instead.",
        finish_reason: str = "STOP",
    ) -> None:
        """A 200 whose only part is text (``finishReason`` STOP, or e.g. NO_IMAGE / IMAGE_OTHER)."""
        self.queue(
            lambda request: self._success(self._model(request), [{"text": text}], finish_reason)
        )

    def queue_garbage_image(self) -> None:
        """A 200 whose ``inlineData`` decodes to bytes that are no image."""
        part = {
            "inlineData": {
                "mimeType": "image/png",
                "data": base64.b64encode(b"\x00\x01not an image at all").decode(),
            }
        }
        self.queue(lambda request: self._success(self._model(request), [part]))

    def queue_thought_then_image(self) -> None:
        """A success led by a draft image in a ``thought`` part, as thinking image models send."""

        def thinking(request: RecordedRequest) -> Reply:
            reply = self.answer(request)
            draft = make_image(64, 64, "jpeg")
            thought = {
                "inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(draft).decode()},
                "thought": True,
            }
            reply.body["candidates"][0]["content"]["parts"].insert(0, thought)  # type: ignore[index]
            return reply

        self.queue(thinking)

    def queue_slow(self, seconds: float) -> None:
        """A success sent only after ``seconds``."""
        self.queue(lambda request: replace(self.answer(request), delay=seconds))

    def queue_stop(
        self, finish_reason: str, finish_message: str | None = None, text: str | None = None
    ) -> None:
        """A 200 whose candidate stopped with ``finish_reason`` and no image."""

        def stop(request: RecordedRequest) -> Reply:
            candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
            if text is not None:
                candidate["content"] = {"role": "model", "parts": [{"text": text}]}
            if finish_message is not None:
                candidate["finishMessage"] = finish_message
            return Reply(
                200,
                {
                    "candidates": [candidate],
                    "modelVersion": self._model(request),
                    "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
                },
            )

        self.queue(stop)

    def queue_not_json(self, body: bytes | object, content_type: str = "text/html") -> None:
        """A 200 whose body is ``body`` (bytes as they are, anything else as JSON)."""
        self.queue(lambda _: Reply(200, body, {"content-type": content_type}))
