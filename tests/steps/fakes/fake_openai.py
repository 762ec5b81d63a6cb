"""A fake OpenAI Images API: ``POST /v1/images/generations`` and ``/v1/images/edits``.

Answers in the real wire shape (``created``, ``data[{b64_json}]``, ``output_format``,
``size``, ``quality``, ``background``, ``usage{...}``) with real PNG/JPEG/WEBP bytes of the
requested size, and refuses what the real API refuses for GPT image models
(``response_format``, ``style``, compression with png, unknown parameters) with the real
error shape ``{"error": {message, type, param, code}}``. The ``queue_*`` methods script the
failures: rate limits, quota, server errors, moderation blocks, bad keys, broken images,
empty answers, slow answers, and 200s that are not the API's JSON (an HTML page from a
wrong base URL, plain text, an empty body, JSON of another shape, an event stream).

A request with ``stream: true`` is answered as the real API streams (``text/event-stream``,
chunked, each event flushed on its own): ``partial_images`` partial images, then one
``*.completed`` event per image with the call's usage; :meth:`FakeOpenAI.queue_broken_stream`
cuts such a stream after some partial images and :meth:`FakeOpenAI.queue_stream_error` ends
it with an ``error`` event. :attr:`FakeOpenAI.chunk_delay` spaces the events out.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

from . import FakeServer, RecordedRequest, Reply, make_image
from .blocking import PromptBlocks

__all__ = ["FakeOpenAI", "openai_error_body"]

#: What ``images.generate`` may send for a GPT image model.
_GENERATE_PARAMS = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "background",
        "moderation",
        "output_format",
        "output_compression",
        "partial_images",
        "stream",
        "safety_identifier",
        "user",
    }
)
#: Output tokens per 1024x1024 image, by quality (the published GPT image table).
_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}


def openai_error_body(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    """``{"error": {...}}`` as the OpenAI API sends it."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _streamed(params: dict[str, Any]) -> bool:
    """Whether the request asks for a stream (JSON ``true``, multipart ``"true"``)."""
    return params.get("stream") in (True, "true", "True")


def _moderation_blocked(categories: tuple[str, ...], stage: str) -> Reply:
    """400 ``moderation_blocked`` with ``moderation_details``, as GPT image models send it."""
    body = openai_error_body(
        "Your request was rejected by the safety system. If you believe this is an error, "
        "contact us at help.openai.com and include the request ID req_fake123. "
        f"safety_violations=[{', '.join(categories)}].",
        "image_generation_user_error",
        "moderation_blocked",
    )
    body["error"]["moderation_details"] = {
        "moderation_stage": stage,
        "categories": list(categories),
    }
    return Reply(400, body)


def _bad_request(message: str, param: str, code: str = "invalid_value") -> Reply:
    return Reply(400, openai_error_body(message, "invalid_request_error", code, param))


class FakeOpenAI(PromptBlocks, FakeServer):
    """The fake OpenAI API; ``base_url`` is what ``openai.OpenAI(base_url=...)`` takes."""

    #: Seconds between two events of a streamed answer.
    chunk_delay: float = 0.0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"{self.root}/v1"

    @property
    def generations_url(self) -> str:
        """The full URL of the generations endpoint."""
        return f"{self.base_url}/images/generations"

    # -- success -------------------------------------------------------------------------

    def answer(self, request: RecordedRequest) -> Reply:
        """A real-shaped success, or the 400 the real API gives for a bad parameter."""
        if request.credential is None:
            return Reply(
                401,
                openai_error_body("You didn't provide an API key.", "invalid_request_error", None),
            )
        params = self._params(request)
        if params is not None:
            reply = self._generate(params, edit=request.path.endswith("/edits"))
            if reply.status == 200 and _streamed(params):
                return self._stream(request, reply)
            return reply
        return Reply(
            404,
            openai_error_body(f"Invalid URL (POST {request.path})", "invalid_request_error", None),
        )

    @staticmethod
    def _params(request: RecordedRequest) -> dict[str, Any] | None:
        """The request's parameters (JSON, or multipart fields for an edit), or None."""
        if request.path == "/v1/images/generations" and request.json is not None:
            return request.json
        if request.path == "/v1/images/edits" and request.files:
            return {name: values[-1] for name, values in request.fields.items()}
        return None

    def _plain(self, request: RecordedRequest) -> Reply:
        """The plain (not streamed) success for ``request``."""
        return self._generate(self._params(request) or {}, edit=request.path.endswith("/edits"))

    def _stream(
        self,
        request: RecordedRequest,
        plain: Reply,
        *,
        partials: int | None = None,
        end: str = "completed",
        error: dict[str, Any] | None = None,
    ) -> Reply:
        """``plain`` (a success) as the real API streams it.

        Args:
            request: The streamed request.
            plain: The plain success for it.
            partials: Partial images to send (default: the request's ``partial_images``,
                for each image).
            end: ``completed`` (the final images), ``cut`` (the connection drops after the
                partial images) or ``error`` (an ``error`` event).
            error: The ``error`` event's object (with ``end="error"``).
        """
        params = self._params(request) or {}
        kind = "image_edit" if request.path.endswith("/edits") else "image_generation"
        body: Any = plain.body
        width, height = (int(v) for v in body["size"].split("x"))
        common = {
            "background": body["background"],
            "created_at": body["created"],
            "output_format": body["output_format"],
            "quality": body["quality"],
            "size": body["size"],
        }
        wanted = int(params.get("partial_images") or 0)
        events: list[dict[str, Any]] = []
        for image in body["data"]:
            for index in range(wanted if partials is None else partials):
                draft = make_image(width, height, body["output_format"], shade=5 + index)
                events.append(
                    {
                        **common,
                        "type": f"{kind}.partial_image",
                        "b64_json": base64.b64encode(draft).decode(),
                        "partial_image_index": index,
                    }
                )
            if end == "completed":
                events.append(
                    {
                        **common,
                        "type": f"{kind}.completed",
                        "b64_json": image["b64_json"],
                        "usage": body["usage"],
                    }
                )
            else:
                break  # the first image's stream is cut short
        if end == "error":
            events.append({"type": "error", "error": error or {}})
        chunks = tuple(
            f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events
        )
        return Reply(200, chunks=chunks, chunk_delay=self.chunk_delay, cut=end == "cut")

    def _generate(self, params: dict[str, Any], *, edit: bool = False) -> Reply:
        rule = self.blocking(str(params.get("prompt", "")))
        if rule is not None:  # block_prompts: a marker word in the prompt
            return _moderation_blocked(rule.categories, rule.stage)
        unknown = sorted(set(params) - _GENERATE_PARAMS - {"image[]", "mask", "input_fidelity"})
        if unknown:
            return _bad_request(
                f"Unknown parameter: '{unknown[0]}'.", unknown[0], "unknown_parameter"
            )
        model = str(params.get("model", ""))
        if not model.startswith(("gpt-image-", "chatgpt-image-")):
            return _bad_request(
                f"Invalid value: '{model}'. Supported values are: 'gpt-image-1', "
                "'gpt-image-1-mini', 'gpt-image-1.5', 'gpt-image-2' and 'chatgpt-image-latest'.",
                "model",
            )
        partial_images = int(params.get("partial_images") or 0)
        if not 0 <= partial_images <= 3 or (partial_images and not _streamed(params)):
            return _bad_request(
                "Invalid 'partial_images': expected 0-3, and only with stream=true.",
                "partial_images",
            )
        n = int(params.get("n") or 1)
        if not 1 <= n <= 10:
            return _bad_request(
                f"Invalid 'n': integer below minimum value. Expected 1-10, got {n}.", "n"
            )
        output_format = params.get("output_format") or "png"
        if params.get("output_compression") is not None and output_format == "png":
            return _bad_request(
                "Compression less than 100 is not supported for PNG output format.",
                "output_compression",
            )
        background = params.get("background") or "auto"
        if background == "transparent" and output_format == "jpeg":
            return _bad_request(
                "Transparent background is not supported for JPEG output format.", "background"
            )
        size = params.get("size") or "auto"
        width, height = (1024, 1024) if size == "auto" else (int(v) for v in size.split("x"))
        quality = params.get("quality") or "auto"
        resolved_quality = "medium" if quality == "auto" else quality
        images = [
            make_image(
                width, height, output_format, transparent=background == "transparent", shade=i
            )
            for i in range(n)
        ]
        text_tokens = len(str(params.get("prompt", "")).split())
        image_tokens = 323 if edit else 0
        per_image = _OUTPUT_TOKENS.get(resolved_quality, 1056) * width * height // (1024 * 1024)
        return Reply(
            200,
            {
                "created": 1_767_225_600,
                "background": "transparent" if background == "transparent" else "opaque",
                "data": [{"b64_json": base64.b64encode(image).decode()} for image in images],
                "output_format": output_format,
                "quality": resolved_quality,
                "size": f"{width}x{height}",
                "usage": {
                    "input_tokens": text_tokens + image_tokens,
                    "input_tokens_details": {
                        "image_tokens": image_tokens,
                        "text_tokens": text_tokens,
                    },
                    "output_tokens": per_image * n,
                    "total_tokens": text_tokens + image_tokens + per_image * n,
                },
            },
        )

    # -- scripted failures ---------------------------------------------------------------

    def queue_rate_limit(
        self, retry_after: str | None = None, retry_after_ms: str | None = None
    ) -> None:
        """429 ``rate_limit_exceeded`` with the given headers."""
        headers = {"x-ratelimit-limit-images": "5", "x-ratelimit-remaining-images": "0"}
        if retry_after is not None:
            headers["retry-after"] = retry_after
        if retry_after_ms is not None:
            headers["retry-after-ms"] = retry_after_ms
        message = (
            "Rate limit reached for gpt-image-2 in organization org-fake on images per minute "
            "(IPM): Limit 5, Used 5, Requested 1."
        )
        self.queue(
            lambda _: Reply(
                429, openai_error_body(message, "requests", "rate_limit_exceeded"), headers
            )
        )

    def queue_insufficient_quota(self) -> None:
        """429 ``insufficient_quota``: out of credit."""
        message = "You exceeded your current quota, please check your plan and billing details."
        self.queue(
            lambda _: Reply(
                429, openai_error_body(message, "insufficient_quota", "insufficient_quota")
            )
        )

    def queue_server_error(self, status: int = 500) -> None:
        """500 (``server_error``) or 503 (overloaded)."""
        message = (
            "The server had an error while processing your request. Sorry about that!"
            if status == 500
            else "The engine is currently overloaded, please try again later."
        )
        self.queue(lambda _: Reply(status, openai_error_body(message, "server_error", None)))

    def queue_moderation_blocked(
        self, categories: tuple[str, ...] = ("sexual",), stage: str = "input"
    ) -> None:
        """400 ``moderation_blocked`` with ``moderation_details``, as GPT image models send it."""
        self.queue(lambda _: _moderation_blocked(categories, stage))

    def queue_invalid_api_key(self) -> None:
        """401 ``invalid_api_key`` whose message echoes the whole key (worse than the real API)."""
        self.queue(
            lambda request: Reply(
                401,
                openai_error_body(
                    f"Incorrect API key provided: {request.credential}. You can find your API "
                    "key at https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
            )
        )

    def queue_truncated_base64(self) -> None:
        """A success whose first image's base64 is cut off mid-way."""

        def truncated(request: RecordedRequest) -> Reply:
            reply = self.answer(request)
            item = reply.body["data"][0]  # type: ignore[index]
            item["b64_json"] = item["b64_json"][: len(item["b64_json"]) // 2 + 1]
            return reply

        self.queue(truncated)

    def queue_garbage_image(self) -> None:
        """A success whose images decode to bytes that are no image."""

        def garbage(request: RecordedRequest) -> Reply:
            reply = self.answer(request)
            for item in reply.body["data"]:  # type: ignore[index]
                item["b64_json"] = base64.b64encode(b"<html>upstream proxy error</html>").decode()
            return reply

        self.queue(garbage)

    def queue_empty_data(self) -> None:
        """A 200 with ``data: []``."""
        self.queue(lambda _: Reply(200, {"created": 1_767_225_600, "data": []}))

    def queue_slow(self, seconds: float) -> None:
        """A success sent only after ``seconds``."""
        self.queue(lambda request: replace(self.answer(request), delay=seconds))

    def queue_not_json(self, body: bytes | object, content_type: str = "text/html") -> None:
        """A 200 whose body is ``body`` (bytes as they are, anything else as JSON)."""
        self.queue(lambda _: Reply(200, body, {"content-type": content_type}))

    def queue_event_stream(self, *, partials: int = 1, final: bool = True) -> None:
        """A 200 ``text/event-stream`` as a streamed call answers: partial images, the final one.

        Each event is ``event: image_generation.<kind>`` (``image_edit.<kind>`` for an edit)
        then one ``data:`` line of JSON with ``type``, ``b64_json`` and, on the final event,
        ``usage``; the images are those a plain answer to the request holds.
        """

        def stream(request: RecordedRequest) -> Reply:
            kind = "image_edit" if request.path.endswith("/edits") else "image_generation"
            plain: Any = self.answer(request).body
            image = plain["data"][0]["b64_json"]
            events = [
                {"type": f"{kind}.partial_image", "b64_json": image, "partial_image_index": i}
                for i in range(partials)
            ]
            if final:
                events.append(
                    {
                        "type": f"{kind}.completed",
                        "b64_json": image,
                        "output_format": plain["output_format"],
                        "size": plain["size"],
                        "usage": plain["usage"],
                    }
                )
            text = "".join(
                f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events
            )
            return Reply(200, text.encode(), {"content-type": "text/event-stream"})

        self.queue(stream)

    def queue_broken_stream(self, after_partials: int) -> None:
        """A streamed answer whose connection drops after ``after_partials`` partial images."""
        self.queue(
            lambda request: self._stream(
                request,
                self._plain(request),
                partials=after_partials,
                end="cut",
            )
        )

    def queue_stream_error(
        self,
        after_partials: int,
        code: str = "server_error",
        message: str = "The server had an error.",
    ) -> None:
        """A streamed answer that ends with an ``error`` event after ``after_partials`` partials.

        ``code="moderation_blocked"`` is a refusal at the output stage, with
        ``moderation_details`` as GPT image models send them.
        """
        error: dict[str, Any] = {"message": message, "type": "image_generation_error", "code": code}
        if code == "moderation_blocked":
            error["type"] = "image_generation_user_error"
            error["moderation_details"] = {"moderation_stage": "output", "categories": ["violence"]}
        self.queue(
            lambda request: self._stream(
                request,
                self._plain(request),
                partials=after_partials,
                end="error",
                error=error,
            )
        )

    def queue_unstreamed(self) -> None:
        """The plain JSON answer to a streamed request (a gateway that ignores ``stream``)."""
        self.queue(self._plain)
